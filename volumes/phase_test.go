package volumes

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/docker/go-plugins-helpers/volume"
	"github.com/rs/zerolog"

	"github.com/dsv-plugin/dsv/render"
	"github.com/dsv-plugin/dsv/secrets"
	"github.com/dsv-plugin/dsv/secrets/cache"
)

// TestRefreshPhaseSpread: volumes mounted in the same second (a node's
// engine restarted, a fleet restarted at once) have their first refresh
// spread over the second half of the interval, by each volume's jitter,
// and then every interval: never more than one interval after the last
// read. Without the phase, every first refresh falls on mount time plus
// the interval, and so does every later one, on every node.
func TestRefreshPhaseSpread(t *testing.T) {
	const (
		n        = 100
		interval = 5 * time.Minute
	)
	dir := t.TempDir()
	clock := &modelClock{now: time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)}
	backend := &fakeBackend{name: "fake", values: map[string]string{"db": "v1"}, errs: map[string]error{}}
	reg, err := secrets.NewRegistry(backend)
	if err != nil {
		t.Fatal(err)
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	mounter := newFakeMounter(filepath.Join(dir, "tmpfs"))
	start := func() *Driver {
		store, err := NewStore(filepath.Join(dir, "state", "state.json"))
		if err != nil {
			t.Fatal(err)
		}
		f, err := cache.New(reg, cache.Config{TTL: time.Minute, Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		d, err := New(Config{
			Root: filepath.Join(dir, "mnt"), Writer: filepath.Join(dir, "rw"),
			Store: store, Registry: reg, Defaults: render.Defaults{Backend: "fake"},
			Fetcher: f, TmpfsSize: 1 << 20, Mounter: mounter, Refresh: interval,
			Logger: zerolog.New(testLogOut()), Now: clock.Now, Jitter: rnd.Float64,
			manualLoops: true,
		})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	// spread mounts every volume at the clock's now and checks when
	// their first refreshes are due.
	spread := func(d *Driver, round string) {
		t.Helper()
		now := clock.Now()
		bins := make([]int, 5) // fifths of (interval/2, interval]
		for i := range n {
			name := fmt.Sprintf("v%03d", i)
			if _, err := d.Mount(&volume.MountRequest{Name: name, ID: round}); err != nil {
				t.Fatal(err)
			}
			v, _ := d.lookup(name)
			v.mu.Lock()
			in := v.refreshAt.Sub(now)
			v.mu.Unlock()
			if in <= interval/2 || in > interval {
				t.Fatalf("%s: %s's first refresh is due in %v, want within (%v, %v]", round, name, in, interval/2, interval)
			}
			bins[min(4, int((in-interval/2)*5/(interval/2)))]++
		}
		t.Logf("%s: first refreshes per fifth of (interval/2, interval]: %v", round, bins)
		// 20 a fifth on average; a phase that follows the mount puts
		// all 100 in the last.
		for i, c := range bins {
			if c < n/5/2 {
				t.Errorf("%s: first refreshes per fifth of the second half of the interval: %v; fifth %d has %d", round, bins, i+1, c)
			}
		}
	}

	d := start()
	for i := range n {
		if err := d.Create(&volume.CreateRequest{Name: fmt.Sprintf("v%03d", i), Options: map[string]string{"secret": "db", "layout": "dir", "filename": "db"}}); err != nil {
			t.Fatal(err)
		}
	}
	spread(d, "first")

	// A refresh at its due time schedules the next one interval later:
	// the phase stays, and no read is more than an interval after the last.
	v, _ := d.lookup("v007")
	v.mu.Lock()
	due := v.refreshAt
	v.mu.Unlock()
	clock.set(due)
	before := backend.fetchCount()
	d.turn(context.Background(), v)
	if backend.fetchCount() != before+1 {
		t.Fatalf("the refresh at %v read %d times", due, backend.fetchCount()-before)
	}
	v.mu.Lock()
	next := v.refreshAt
	v.mu.Unlock()
	if next.Sub(due) != interval {
		t.Errorf("after a refresh, the next is due in %v, want the interval %v", next.Sub(due), interval)
	}

	// A plugin restart (every node's engine restarted at once) spreads
	// the phases anew: nothing of the old schedule lines them up.
	d.Close()
	clock.set(clock.Now().Add(time.Hour))
	d = start()
	defer d.Close()
	spread(d, "after a restart")
}
