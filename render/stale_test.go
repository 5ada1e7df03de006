package render

import (
	"context"
	"crypto/rand"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dsv-plugin/dsv/secrets"
	"github.com/dsv-plugin/dsv/secrets/cache"
	"github.com/dsv-plugin/dsv/secrets/lastgood"
)

// flakyBackend answers each read with its current value or error.
type flakyBackend struct {
	mu    sync.Mutex
	value string
	err   error
}

func (b *flakyBackend) Name() string               { return "flaky" }
func (b *flakyBackend) Validate(secrets.Ref) error { return nil }
func (b *flakyBackend) set(value string, kind error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.value, b.err = value, kind
}
func (b *flakyBackend) Fetch(_ context.Context, ref secrets.Ref) (secrets.Secret, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return secrets.Secret{}, secrets.Fail(ref, b.err, "", nil)
	}
	return secrets.Secret{Value: []byte(b.value), Version: b.value}, nil
}

// TestStaleIfError: a read that fails because the store is unavailable
// is answered with the last good value while it is younger than the
// window, marked stale with its age and the error; after the window, the
// error names the outage and the age; not found and access denied are
// never masked, and drop the value.
func TestStaleIfError(t *testing.T) {
	b := &flakyBackend{}
	reg, err := secrets.NewRegistry(b)
	if err != nil {
		t.Fatal(err)
	}
	f, err := cache.New(reg, cache.Config{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	store, err := lastgood.Open(t.TempDir(), key, false, clock)
	if err != nil {
		t.Fatal(err)
	}
	r := &Renderer{Defaults: Defaults{Backend: "flaky", StaleIfError: time.Hour}, Registry: reg, Fetcher: f, LastGood: store, Now: clock, Limit: 1 << 20}
	opts, err := ParseOptions("vol", map[string]string{"secret": "db", "layout": "dir"}, r.Defaults, reg)
	if err != nil {
		t.Fatal(err)
	}
	render := func() (*Content, error) { return r.Render(context.Background(), opts, true) }

	b.set("good", nil)
	c, err := render()
	if err != nil || len(c.Stale) != 0 || string(c.Files[0].Data) != "good" {
		t.Fatalf("fresh render: %v, %+v", err, c)
	}
	for _, kind := range []error{secrets.ErrUnavailable, secrets.ErrTimeout} {
		now = now.Add(10 * time.Minute)
		b.set("", kind)
		c, err = render()
		if err != nil || string(c.Files[0].Data) != "good" || len(c.Stale) != 1 {
			t.Fatalf("render with the store %v: %v, %+v", kind, err, c)
		}
		if s := c.Stale[0]; s.Object != `flaky secret "db"` || s.Age < 10*time.Minute || !strings.Contains(s.Err, kind.Error()) {
			t.Errorf("Stale = %+v", s)
		}
	}
	now = now.Add(time.Hour)
	c, err = render()
	if err == nil || !strings.Contains(err.Error(), "timed out") || !strings.Contains(err.Error(), "its last good value was read 1h20m0s ago, longer than stale-if-error=1h0m0s") {
		t.Fatalf("render after the window: %v, %+v", err, c)
	}

	// A new good value; then the store says the secret is gone, or not
	// ours: never masked, and the last good value goes with it.
	for _, kind := range []error{secrets.ErrNotFound, secrets.ErrAccessDenied} {
		b.set("good2", nil)
		if _, err := render(); err != nil {
			t.Fatal(err)
		}
		b.set("", kind)
		if _, err := render(); err == nil || !strings.Contains(err.Error(), kind.Error()) {
			t.Fatalf("render with %v: %v", kind, err)
		}
		b.set("", secrets.ErrUnavailable)
		if _, err := render(); err == nil || !strings.Contains(err.Error(), "no good value of it was kept") {
			t.Fatalf("render when unavailable after %v: %v, want no stale value", kind, err)
		}
	}

	// Off (the window 0): an outage fails the read as before.
	b.set("good3", nil)
	r.Defaults.StaleIfError = 0
	if _, err := render(); err != nil {
		t.Fatal(err)
	}
	b.set("", secrets.ErrUnavailable)
	if _, err := render(); err == nil || strings.Contains(err.Error(), "stale-if-error") {
		t.Fatalf("render without stale-if-error: %v", err)
	}
}
