package volumes

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/dsv-plugin/dsv/secrets"
	"github.com/dsv-plugin/dsv/secrets/cache"
)

// fakeMounter keeps a mount table in memory; directories are plain ones.
type fakeMounter struct {
	mu       sync.Mutex
	mounted  map[string]bool // dir -> read-only
	failOn   string          // "mount" or "ro": fail that call
	mountLog []string
}

func newFakeMounter() *fakeMounter { return &fakeMounter{mounted: map[string]bool{}} }

func (m *fakeMounter) MountTmpfs(dir string, _ int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failOn == "mount" {
		return errors.New("mount tmpfs: operation not permitted")
	}
	if _, ok := m.mounted[dir]; ok {
		return fmt.Errorf("%s already mounted", dir)
	}
	m.mounted[dir] = false
	m.mountLog = append(m.mountLog, "mount "+dir)
	return nil
}

func (m *fakeMounter) SetReadOnly(dir string, ro bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.mounted[dir]; !ok {
		return fmt.Errorf("%s not mounted", dir)
	}
	if ro && m.failOn == "ro" {
		return errors.New("remount: device busy")
	}
	m.mounted[dir] = ro
	return nil
}

func (m *fakeMounter) Unmount(dir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.mounted[dir]; ok {
		m.mountLog = append(m.mountLog, "unmount "+dir)
	}
	delete(m.mounted, dir)
	return nil
}

func (m *fakeMounter) MountsUnder(root string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for dir := range m.mounted {
		if strings.HasPrefix(dir, root+"/") {
			out = append(out, dir)
		}
	}
	sort.Strings(out)
	return out, nil
}

func (m *fakeMounter) isMounted(dir string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.mounted[dir]
	return ok
}

// fakeBackend serves values from a map and counts fetches.
type fakeBackend struct {
	mu      sync.Mutex
	name    string
	values  map[string]string
	errs    map[string]error
	block   chan struct{} // when set, Fetch waits for it or the context
	fetches int
}

func (b *fakeBackend) Name() string { return b.name }

func (b *fakeBackend) Validate(ref secrets.Ref) error {
	if strings.HasPrefix(ref.Name, "invalid") {
		return fmt.Errorf("option %q: %q is not a valid name", "secret", ref.Name)
	}
	return nil
}

func (b *fakeBackend) Fetch(ctx context.Context, ref secrets.Ref) (secrets.Secret, error) {
	b.mu.Lock()
	b.fetches++
	block := b.block
	v, ok := b.values[ref.Name]
	err := b.errs[ref.Name]
	b.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return secrets.Secret{}, secrets.FromContext(ctx, ref)
		}
	}
	if err != nil {
		return secrets.Secret{}, err
	}
	if !ok {
		return secrets.Secret{}, secrets.Fail(ref, secrets.ErrNotFound, "check the name", nil)
	}
	return secrets.Secret{Value: []byte(v), Version: "v1"}, nil
}

func (b *fakeBackend) fetchCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.fetches
}

// harness builds a driver over fakes in a temp dir.
type harness struct {
	t       *testing.T
	root    string
	state   string
	mounter *fakeMounter
	backend *fakeBackend
	reg     *secrets.Registry
	drv     *Driver
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	dir := t.TempDir()
	h := &harness{
		t:       t,
		root:    filepath.Join(dir, "mnt"),
		state:   filepath.Join(dir, "state", "state.json"),
		mounter: newFakeMounter(),
		backend: &fakeBackend{name: "fake", values: map[string]string{}, errs: map[string]error{}},
	}
	reg, err := secrets.NewRegistry(h.backend, &fakeBackend{name: "other"})
	if err != nil {
		t.Fatal(err)
	}
	h.reg = reg
	h.drv = h.start()
	return h
}

// start builds a driver from the state on disk, as a plugin restart does.
func (h *harness) start() *Driver {
	h.t.Helper()
	store, err := NewStore(h.state)
	if err != nil {
		h.t.Fatal(err)
	}
	f, err := cache.New(h.reg, cache.Config{TTL: 0, Timeout: 200 * time.Millisecond})
	if err != nil {
		h.t.Fatal(err)
	}
	d, err := New(Config{
		Root:      h.root,
		Store:     store,
		Registry:  h.reg,
		Defaults:  Defaults{Backend: "fake"},
		Fetcher:   f,
		TmpfsSize: 1 << 20,
		Mounter:   h.mounter,
		Logger:    zerolog.New(io.Discard),
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return d
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
