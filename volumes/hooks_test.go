package volumes

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/go-plugins-helpers/volume"

	"github.com/dsv-plugin/dsv/notify"
	"github.com/dsv-plugin/dsv/secrets"
	"github.com/dsv-plugin/dsv/secrets/lastgood"
)

// recordingNotifier records each notification with what the volume's
// file held when it came.
type recordingNotifier struct {
	mu    sync.Mutex
	file  string
	calls []string
}

func (n *recordingNotifier) Notify(_ context.Context, vol string, spec notify.Spec) notify.Result {
	b, _ := os.ReadFile(n.file)
	n.mu.Lock()
	defer n.mu.Unlock()
	n.calls = append(n.calls, fmt.Sprintf("%s %s %s", vol, spec, b))
	return notify.Result{At: time.Now(), Containers: 1}
}

func (n *recordingNotifier) got() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.calls...)
}

// The hooks the lead's volumes/ keeps: notify is refused at create
// without engine access; with it, each swap that changed the files is
// one notification, sent once the new files are in place; unchanged
// refreshes send none; the status shows the last one.
func TestNotifyHooks(t *testing.T) {
	h := newHarnessWith(t, 30*time.Millisecond)
	err := h.drv.Create(&volume.CreateRequest{Name: "n1", Options: map[string]string{"layout": "dir", "filename": "s", "notify": "SIGHUP"}})
	if err == nil || !strings.Contains(err.Error(), "engine.source=/var/run/docker.sock") {
		t.Fatalf("create with notify and no engine: %v, want an error naming engine.source", err)
	}

	h.stopAll()
	rec := &recordingNotifier{}
	h.notifier = rec
	h.drv = h.start()
	h.backend.set("n1", "v1")
	h.create("n1", map[string]string{"layout": "dir", "filename": "s", "notify": "SIGHUP"})
	mp := h.mount("n1", "c1")
	rec.file = filepath.Join(mp, "s")
	eventually(t, 5*time.Second, "unchanged refreshes", func() bool { return h.backend.fetchCount() >= 4 })
	if got := rec.got(); len(got) != 0 {
		t.Fatalf("notifications without a change: %q", got)
	}
	h.backend.set("n1", "v2")
	eventually(t, 5*time.Second, "one notification", func() bool { return len(rec.got()) == 1 })
	n := h.backend.fetchCount()
	eventually(t, 5*time.Second, "more unchanged refreshes", func() bool { return h.backend.fetchCount() >= n+4 })
	if got := rec.got(); len(got) != 1 || got[0] != "n1 SIGHUP v2" {
		t.Fatalf("notifications %q, want one, sent when the file held v2", got)
	}
	g, _ := h.drv.Get(&volume.GetRequest{Name: "n1"})
	if g.Volume.Status["notify"] != "SIGHUP" || g.Volume.Status["lastNotification"] == nil {
		t.Errorf("status %v", g.Volume.Status)
	}
}

// A mount in an outage serves the last good value, says stale, and the
// volume reads again until the store answers.
func TestStaleHooks(t *testing.T) {
	h := newHarnessWith(t, 0)
	h.stopAll()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	st, err := lastgood.Open(t.TempDir(), key, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	h.lastGood = st
	h.drv = h.start()
	h.backend.set("s1", "good")
	h.create("s1", map[string]string{"layout": "dir", "filename": "s", "stale-if-error": "1h"})
	h.mount("s1", "c1")
	h.unmount("s1", "c1")
	h.backend.setErr("s1", secrets.Fail(secrets.Ref{Backend: "fake", Name: "s1"}, secrets.ErrUnavailable, "", errors.New("connection refused")))
	mp := h.mount("s1", "c2")
	if got := readFile(t, filepath.Join(mp, "s")); got != "good" {
		t.Fatalf("mounted %q in the outage, want the last good value", got)
	}
	g, _ := h.drv.Get(&volume.GetRequest{Name: "s1"})
	if g.Volume.Status["stale"] == nil {
		t.Fatalf("status %v, want stale", g.Volume.Status)
	}
	h.backend.setErr("s1", nil)
	h.backend.set("s1", "fresh")
	eventually(t, 20*time.Second, "the fresh value swapped in", func() bool {
		b, _ := os.ReadFile(filepath.Join(mp, "s"))
		return string(b) == "fresh"
	})
	g, _ = h.drv.Get(&volume.GetRequest{Name: "s1"})
	if g.Volume.Status["stale"] != nil {
		t.Errorf("status %v after recovery, want no stale", g.Volume.Status)
	}
}
