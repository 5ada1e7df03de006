package volumes

import (
	"context"
	"errors"
	"fmt"
	"github.com/dsv-plugin/dsv/render"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/go-plugins-helpers/volume"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/dsv-plugin/dsv/secrets"
	"github.com/dsv-plugin/dsv/secrets/cache"
	"github.com/dsv-plugin/dsv/secrets/gate"
	"github.com/dsv-plugin/dsv/secrets/lastgood"
	"github.com/dsv-plugin/dsv/tmpfs"
)

// fakeMounter keeps a mount table in memory. A tmpfs is a directory of its
// own under base, and every mount point (the tmpfs's first, and each bind
// of it) is a symlink to that directory: its content outlives a mount
// point, as a tmpfs does while another mount shows it.
type fakeMounter struct {
	mu       sync.Mutex
	base     string
	mounted  map[string]bool   // mount point -> read-only
	binds    map[string]string // mount point -> the tmpfs directory it shows
	failOn   string            // "mount" or "bind": fail that call
	mountLog []string
	rwLog    []string // every mount point ever mounted read-write
	n        int
}

// everWritable lists the mount points under root that were ever mounted
// read-write.
func (m *fakeMounter) everWritable(root string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, dir := range m.rwLog {
		if strings.HasPrefix(dir, root+"/") {
			out = append(out, dir)
		}
	}
	return out
}

func newFakeMounter(base string) *fakeMounter {
	return &fakeMounter{base: base, mounted: map[string]bool{}, binds: map[string]string{}}
}

var _ tmpfs.Mounter = (*fakeMounter)(nil)

// attach makes the mount point dir show target; m.mu must be held.
func (m *fakeMounter) attach(target, dir string, ro bool) error {
	if _, ok := m.mounted[dir]; ok {
		return fmt.Errorf("%s already mounted", dir)
	}
	if err := os.Remove(dir); err != nil {
		return err
	}
	if err := os.Symlink(target, dir); err != nil {
		return err
	}
	m.mounted[dir] = ro
	m.binds[dir] = target
	if !ro {
		m.rwLog = append(m.rwLog, dir)
	}
	return nil
}

func (m *fakeMounter) MountTmpfs(dir string, _ int64, _ int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failOn == "mount" {
		return errors.New("mount tmpfs: operation not permitted")
	}
	m.n++
	backing := filepath.Join(m.base, fmt.Sprintf("tmpfs-%d", m.n))
	if err := os.MkdirAll(backing, 0o755); err != nil {
		return err
	}
	if err := m.attach(backing, dir, false); err != nil {
		return err
	}
	m.mountLog = append(m.mountLog, "mount "+dir)
	return nil
}

func (m *fakeMounter) Bind(src, dst string, ro bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failOn == "bind" {
		return errors.New("bind: operation not permitted")
	}
	target, ok := m.binds[src]
	if !ok {
		return fmt.Errorf("bind %s: not mounted", src)
	}
	if err := m.attach(target, dst, ro); err != nil {
		return err
	}
	m.mountLog = append(m.mountLog, "bind "+dst)
	return nil
}

func (m *fakeMounter) MakePrivate(string) error { return nil }

func (m *fakeMounter) Unmount(dir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.binds[dir]; !ok {
		return nil
	}
	m.mountLog = append(m.mountLog, "unmount "+dir)
	if err := os.Remove(dir); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	delete(m.binds, dir)
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

// writable reports whether dir is mounted read-write.
func (m *fakeMounter) writable(dir string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	ro, ok := m.mounted[dir]
	return ok && !ro
}

// fakeBackend serves values from a map and counts fetches.
type fakeBackend struct {
	mu      sync.Mutex
	name    string
	values  map[string]string
	errs    map[string]error
	block   chan struct{} // when set, Fetch waits for it or the context
	deaf    bool          // with block: Fetch ignores the context
	fetches int
}

func (b *fakeBackend) Name() string { return b.name }

// IsCollection makes a name ending in '/' a collection (secrets.Collector),
// whose value the test sets as the JSON object of its objects.
func (b *fakeBackend) IsCollection(ref secrets.Ref) bool { return strings.HasSuffix(ref.Name, "/") }

func (b *fakeBackend) Validate(ref secrets.Ref) error {
	if strings.HasPrefix(ref.Name, "invalid") {
		return fmt.Errorf("option %q: %q is not a valid name", "secret", ref.Name)
	}
	return nil
}

func (b *fakeBackend) Fetch(ctx context.Context, ref secrets.Ref) (secrets.Secret, error) {
	b.mu.Lock()
	b.fetches++
	block, deaf := b.block, b.deaf
	v, ok := b.values[ref.Name]
	err := b.errs[ref.Name]
	b.mu.Unlock()
	if block != nil && deaf {
		<-block
	} else if block != nil {
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

func (b *fakeBackend) set(name, value string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.values[name] = value
}

func (b *fakeBackend) setErr(name string, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.errs[name] = err
}

func (b *fakeBackend) fetchCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.fetches
}

// leaseBackend issues a new leased credential at every fetch, and records
// renewals and revocations.
type leaseBackend struct {
	mu        sync.Mutex
	ttl       time.Duration
	serial    int
	renewable bool
	renewErr  error
	// throttle: renewals still to answer throttled (secrets.ErrThrottled).
	throttle int
	fetchErr error
	tries    int // renewal attempts, failed ones included
	renewals map[string]int
	revoked  map[string]bool
	ended    chan struct{} // IssuerEnded
}

func (b *leaseBackend) IssuerEnded() <-chan struct{} { return b.ended }

func newLeaseBackend(ttl time.Duration) *leaseBackend {
	return &leaseBackend{ttl: ttl, renewable: true, renewals: map[string]int{}, revoked: map[string]bool{}, ended: make(chan struct{}, 1)}
}

func (b *leaseBackend) Name() string               { return "leased" }
func (b *leaseBackend) Validate(secrets.Ref) error { return nil }
func (b *leaseBackend) Fetch(_ context.Context, ref secrets.Ref) (secrets.Secret, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fetchErr != nil {
		return secrets.Secret{}, b.fetchErr
	}
	b.serial++
	id := fmt.Sprintf("database/creds/app/lease-%d", b.serial)
	return secrets.Secret{
		Value:   []byte(fmt.Sprintf(`{"username":"u%d","password":"p%d"}`, b.serial, b.serial)),
		Version: id,
		Lease:   &secrets.Lease{ID: id, Duration: b.ttl, Renewable: b.renewable},
	}, nil
}

func (b *leaseBackend) Renew(_ context.Context, _ secrets.Ref, l secrets.Lease) (secrets.Lease, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.tries++
	if b.throttle > 0 {
		b.throttle--
		return secrets.Lease{}, secrets.Fail(secrets.Ref{Backend: "leased"}, secrets.ErrThrottled, "renew less often", nil)
	}
	if b.renewErr != nil {
		return secrets.Lease{}, b.renewErr
	}
	b.renewals[l.ID]++
	return secrets.Lease{ID: l.ID, Duration: b.ttl, Renewable: true}, nil
}

func (b *leaseBackend) Revoke(_ context.Context, _ secrets.Ref, id string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.revoked[id] = true
	return nil
}

func (b *leaseBackend) snapshot() (renewals map[string]int, revoked map[string]bool, issued int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	renewals, revoked = map[string]int{}, map[string]bool{}
	for k, v := range b.renewals {
		renewals[k] = v
	}
	for k, v := range b.revoked {
		revoked[k] = v
	}
	return renewals, revoked, b.serial
}

// harness builds a driver over fakes in a temp dir.
type harness struct {
	t       *testing.T
	root    string
	writer  string
	state   string
	mounter *fakeMounter
	backend *fakeBackend
	leased  *leaseBackend
	reg     *secrets.Registry
	drv     *Driver
	refresh time.Duration
	ttl     time.Duration
	// kernel, when set, replaces the fake mounter (real tmpfs; needs root).
	kernel tmpfs.Mounter
	// notifier and lastGood, when set, are the driver's (notify,
	// stale-if-error).
	notifier Notifier
	lastGood *lastgood.Store
	// gates, when set, is the fetcher's (secrets/gate).
	gates *gate.Gates
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	return newHarnessWith(t, 0)
}

// newHarnessWith sets the plugin-wide REFRESH interval (tests may go below
// the 1s minimum that options enforce).
func newHarnessWith(t *testing.T, refresh time.Duration) *harness {
	t.Helper()
	dir := t.TempDir()
	h := &harness{
		t:       t,
		root:    filepath.Join(dir, "mnt"),
		writer:  filepath.Join(dir, "rw"),
		state:   filepath.Join(dir, "state", "state.json"),
		mounter: newFakeMounter(filepath.Join(dir, "tmpfs")),
		backend: &fakeBackend{name: "fake", values: map[string]string{}, errs: map[string]error{}},
		leased:  newLeaseBackend(300 * time.Millisecond),
	}
	reg, err := secrets.NewRegistry(h.backend, &fakeBackend{name: "other"}, h.leased)
	if err != nil {
		t.Fatal(err)
	}
	h.reg = reg
	h.refresh = refresh
	h.drv = h.start()
	t.Cleanup(h.stopAll)
	return h
}

// newKernelHarness is newHarnessWith over real tmpfs mounts; it skips the
// test unless it runs as root (CI does).
func newKernelHarness(t *testing.T, refresh time.Duration) *harness {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount tmpfs; CI runs it as root")
	}
	h := newHarnessWith(t, refresh)
	h.stopAll()
	h.kernel = tmpfs.Kernel{}
	h.drv = h.start()
	// The driver makes its writer directory a private mount point and
	// keeps it (a restarted plugin finds it); the test takes it down.
	t.Cleanup(func() {
		for _, root := range []string{h.root, h.writer} {
			mounts, _ := tmpfs.Kernel{}.MountsUnder(root)
			for _, mp := range mounts {
				_ = unix.Unmount(mp, unix.MNT_DETACH)
			}
		}
		_ = unix.Unmount(h.writer, unix.MNT_DETACH)
	})
	return h
}

// start builds a driver from the state on disk, as a plugin restart does.
func (h *harness) start() *Driver {
	h.t.Helper()
	store, err := NewStore(h.state)
	if err != nil {
		h.t.Fatal(err)
	}
	f, err := cache.New(h.reg, cache.Config{TTL: h.ttl, Timeout: 200 * time.Millisecond, Gates: h.gates})
	if err != nil {
		h.t.Fatal(err)
	}
	var mounter tmpfs.Mounter = h.mounter
	if h.kernel != nil {
		mounter = h.kernel
	}
	d, err := New(Config{
		Root:      h.root,
		Writer:    h.writer,
		Store:     store,
		Registry:  h.reg,
		Defaults:  render.Defaults{Backend: "fake"},
		Fetcher:   f,
		Refresh:   h.refresh,
		TmpfsSize: 1 << 20,
		Mounter:   mounter,
		Logger:    zerolog.New(testLogOut()),
		Notifier:  h.notifier,
		LastGood:  h.lastGood,
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

// stopAll ends every refresh loop, as a plugin shutdown does.
func (h *harness) stopAll() { h.drv.Close() }

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s", what, within)
}

// set changes the backend's behaviour while a test runs.
func (b *leaseBackend) set(f func(b *leaseBackend)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f(b)
}

// renewTries is the number of renewal attempts so far.
func (b *leaseBackend) renewTries() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.tries
}

// status is the volume's status as docker volume inspect shows it.
func (h *harness) status(name string) map[string]any {
	h.t.Helper()
	g, err := h.drv.Get(&volume.GetRequest{Name: name})
	if err != nil {
		h.t.Fatal(err)
	}
	return g.Volume.Status
}

// testLogOut is where the driver logs in tests: nowhere, unless
// DSV_TEST_LOG=1 asks for stderr.
func testLogOut() io.Writer {
	if os.Getenv("DSV_TEST_LOG") == "1" {
		return os.Stderr
	}
	return io.Discard
}

// listDir lists a folder for a "nothing left" check: a folder that is gone
// holds nothing; a listing that fails otherwise fails the test, which
// would else pass on an empty answer.
func listDir(t testing.TB, dir string) []os.DirEntry {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("list %s: %v", dir, err)
	}
	return entries
}

// kernelMountsUnder lists the real mounts under root; a failed read of the
// mount table fails the test.
func kernelMountsUnder(t testing.TB, root string) []string {
	t.Helper()
	m, err := tmpfs.Kernel{}.MountsUnder(root)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// log is every mount, bind and unmount so far.
func (m *fakeMounter) log() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.mountLog...)
}

// drvVol is the driver's volume of that name, nil when it has none.
func (h *harness) drvVol(t testing.TB, name string) *vol {
	t.Helper()
	v, err := h.drv.lookup(name)
	if err != nil {
		return nil
	}
	return v
}
