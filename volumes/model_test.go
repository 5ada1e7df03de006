package volumes

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/go-plugins-helpers/volume"
	"github.com/rs/zerolog"
	"pgregory.net/rapid"

	"github.com/dsv-plugin/dsv/render"
	"github.com/dsv-plugin/dsv/secrets"
	"github.com/dsv-plugin/dsv/secrets/cache"
)

// The model-based test of a volume's lifecycle: random sequences of what
// Docker, the store and time do, run against the real driver (the real
// volumes package over a fake mount table and a fake lease store), with
// the invariants of the lifecycle checked after every step. rapid shrinks
// a failing sequence to a short one and prints how to replay it
// (-rapid.seed, or the failfile it names).
//
//	I1 every lease whose content a container may read is renewed before it
//	   expires and never revoked (retiring ones: not before their grace);
//	I2 every lease no container can read is revoked within its grace plus
//	   one turn of the loop, or has expired;
//	I3 the tmpfs is mounted exactly while a mount holds it; the counts
//	   match Docker's Mount and Unmount calls;
//	I4 a restart reloads the same instances, counts and leases;
//	I5 no call to the store is made with a volume's lock held.

const (
	modelTTL    = time.Hour
	modelMaxTTL = 3 * time.Hour
	modelGrace  = 10 * time.Minute
)

// modelClock is the fake time every part of the driver reads.
type modelClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *modelClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *modelClock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.After(c.now) {
		c.now = t
	}
}

// modelLease is the store's record of one lease.
type modelLease struct {
	id       string
	expires  time.Time // end of its current terms
	maxEnd   time.Time // its max TTL
	revoked  bool
	revokeAt time.Time
}

// modelStore is a lease-issuing store (a Vault database role): every read
// issues a new lease of modelTTL, renewable up to modelMaxTTL; the value
// changes only when it is rotated. Failures are injected one at a time;
// a renewal can be held back (slow) and answered later.
type modelStore struct {
	clock *modelClock
	// held, when set, reports whether a lock of the driver is held: no
	// call may be made with one held (I5).
	held func(op string) string

	mu        sync.Mutex
	leases    map[string]*modelLease
	serial    int
	version   int
	failFetch bool
	failRenew bool
	failRevok bool
	violation string
	// slow: the next renewal computes its answer at once and then waits
	// for release before returning it.
	slow    bool
	blocked chan struct{}
	release chan struct{}
}

func newModelStore(c *modelClock) *modelStore {
	return &modelStore{clock: c, leases: map[string]*modelLease{}}
}

func (s *modelStore) check(op string) {
	if s.held == nil {
		return
	}
	if what := s.held(op); what != "" {
		s.mu.Lock()
		if s.violation == "" {
			s.violation = fmt.Sprintf("I5: %s called with %s held", op, what)
		}
		s.mu.Unlock()
	}
}

func (s *modelStore) Name() string               { return "model" }
func (s *modelStore) Validate(secrets.Ref) error { return nil }

func (s *modelStore) Fetch(_ context.Context, _ secrets.Ref) (secrets.Secret, error) {
	s.check("Fetch")
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failFetch {
		s.failFetch = false
		return secrets.Secret{}, errors.New("store unavailable")
	}
	s.serial++
	now := s.clock.Now()
	id := fmt.Sprintf("lease-%d", s.serial)
	s.leases[id] = &modelLease{id: id, expires: now.Add(modelTTL), maxEnd: now.Add(modelMaxTTL)}
	return secrets.Secret{
		Value:   []byte(fmt.Sprintf("v%d", s.version)),
		Version: fmt.Sprintf("v%d", s.version),
		Lease:   &secrets.Lease{ID: id, Duration: modelTTL, Renewable: true},
	}, nil
}

func (s *modelStore) Renew(_ context.Context, _ secrets.Ref, l secrets.Lease) (secrets.Lease, error) {
	s.check("Renew")
	s.mu.Lock()
	now := s.clock.Now()
	var out secrets.Lease
	var err error
	ml, ok := s.leases[l.ID]
	switch {
	case !ok || ml.revoked || !now.Before(ml.expires):
		err = fmt.Errorf("lease %s not found", l.ID)
	case s.failRenew:
		s.failRenew = false
		err = errors.New("store unavailable")
	default:
		ml.expires = now.Add(min(modelTTL, ml.maxEnd.Sub(now)))
		out = secrets.Lease{ID: l.ID, Duration: ml.expires.Sub(now), Renewable: true}
	}
	slow, blocked, release := s.slow, s.blocked, s.release
	s.slow = false
	s.mu.Unlock()
	if slow {
		close(blocked)
		<-release
	}
	return out, err
}

func (s *modelStore) Revoke(_ context.Context, _ secrets.Ref, id string) error {
	s.check("Revoke")
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failRevok {
		s.failRevok = false
		return errors.New("store unavailable")
	}
	if ml, ok := s.leases[id]; ok && !ml.revoked {
		ml.revoked, ml.revokeAt = true, s.clock.Now()
	}
	return nil
}

// modelMount is one mount Docker holds: its ID and the instance it got.
type modelMount struct {
	id       string
	instance string
}

// model is the test's state: the driver, the store, and what Docker holds.
type lifeModel struct {
	t       modelT
	dir     string
	clock   *modelClock
	store   *modelStore
	reg     *secrets.Registry
	mounter *fakeMounter
	drv     *Driver
	// mounts are the mounts Docker holds, oldest first; lost are mounts
	// whose Unmount Docker never sent (the plugin was down): the driver
	// counts them until Remove.
	mounts []modelMount
	lost   []modelMount
	// slowDone is closed when a held-back renewal returned; nil when
	// none is in flight.
	slowDone chan struct{}
}

const modelVolume = "db"

// modelT is what the model needs of a test: a *rapid.T, or a *testing.T
// for the named scenarios.
type modelT interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
}

func newModel(t modelT, dir string) *lifeModel {
	clock := &modelClock{now: time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)}
	m := &lifeModel{t: t, dir: dir, clock: clock, store: newModelStore(clock), mounter: newFakeMounter(filepath.Join(dir, "tmpfs"))}
	reg, err := secrets.NewRegistry(m.store)
	if err != nil {
		t.Fatal(err)
	}
	m.reg = reg
	m.start()
	m.create()
	return m
}

func (m *lifeModel) start() {
	store, err := NewStore(filepath.Join(m.dir, "state", "state.json"))
	if err != nil {
		m.t.Fatal(err)
	}
	f, err := cache.New(m.reg, cache.Config{TTL: 0, Timeout: time.Second})
	if err != nil {
		m.t.Fatal(err)
	}
	d, err := New(Config{
		Root: filepath.Join(m.dir, "mnt"), Writer: filepath.Join(m.dir, "rw"),
		Store: store, Registry: m.reg, Defaults: render.Defaults{Backend: "model"},
		Fetcher: f, TmpfsSize: 1 << 20, Mounter: m.mounter, LeaseGrace: modelGrace,
		Logger: zerolog.New(testLogOut()), Now: m.clock.Now, Jitter: func() float64 { return 0.5 },
		manualLoops: true,
	})
	if err != nil {
		m.t.Fatal(err)
	}
	m.drv = d
	m.store.held = func(op string) string { return heldLocks(d, op) }
}

// heldLocks names a lock of d held during a call to the store: the
// driver's map, a volume's data, or (for renewals and revocations) a
// volume's op. The test runs one step at a time, so a lock that cannot
// be taken is held by the caller.
func heldLocks(d *Driver, op string) string {
	if !d.mu.TryLock() {
		return "the driver's lock"
	}
	vols := make([]*vol, 0, len(d.vols))
	for _, v := range d.vols {
		vols = append(vols, v)
	}
	d.mu.Unlock()
	for _, v := range vols {
		if !v.mu.TryLock() {
			return fmt.Sprintf("volume %s's lock", v.name)
		}
		v.mu.Unlock()
		if op != "Fetch" {
			if !v.op.TryLock() {
				return fmt.Sprintf("volume %s's op lock", v.name)
			}
			v.op.Unlock()
		}
	}
	return ""
}

func (m *lifeModel) create() {
	err := m.drv.Create(&volume.CreateRequest{Name: modelVolume, Options: map[string]string{
		"backend": "model", "secret": "database/creds/app", "layout": "dir", "filename": "creds", "refresh": "20m",
	}})
	if err != nil {
		m.t.Fatal(err)
	}
}

func (m *lifeModel) vol() *vol {
	v, err := m.drv.lookup(modelVolume)
	if err != nil {
		m.t.Fatalf("volume gone: %v", err)
	}
	return v
}

// settle is what the driver's goroutines do at once after a step: the
// revoker runs what is queued.
func (m *lifeModel) settle() {
	m.drv.revoker.runDue(context.Background())
}

// finishSlow lets a held-back renewal return and waits for it.
func (m *lifeModel) finishSlow() {
	if m.slowDone == nil {
		return
	}
	close(m.store.release)
	<-m.slowDone
	m.slowDone = nil
}

// advance moves the clock to now+by, turning the volume's loop and the
// revoker at every moment something is due on the way, as their timers
// would.
func (m *lifeModel) advance(by time.Duration) {
	to := m.clock.Now().Add(by)
	for range 10000 {
		next := m.drv.revoker.nextAt()
		v := m.vol()
		v.mu.Lock()
		looping := v.looping
		v.mu.Unlock()
		if looping {
			if at := m.drv.nextDue(v); !at.IsZero() && (next.IsZero() || at.Before(next)) {
				next = at
			}
		}
		if next.IsZero() || next.After(to) {
			m.clock.set(to)
			return
		}
		m.clock.set(next)
		if looping {
			m.drv.turn(context.Background(), v)
		}
		m.settle()
	}
	m.t.Fatal("the loop never comes to rest: something is due again and again")
}

// instanceOf is the published instance's id: what a mount just got.
func (m *lifeModel) published() string {
	v := m.vol()
	v.mu.Lock()
	defer v.mu.Unlock()
	if in := v.live(); in != nil {
		return in.id
	}
	return ""
}

// instanceOrder is each instance's place, oldest first.
func (m *lifeModel) instanceOrder() map[string]int {
	v := m.vol()
	v.mu.Lock()
	defer v.mu.Unlock()
	out := map[string]int{}
	for i, in := range v.instances {
		out[in.id] = i
	}
	return out
}

// check verifies the invariants.
func (m *lifeModel) check() {
	t := m.t
	m.store.mu.Lock()
	violation := m.store.violation
	m.store.mu.Unlock()
	if violation != "" {
		t.Fatal(violation)
	}
	v := m.vol()
	now := m.clock.Now()
	v.mu.Lock()
	instances := map[string]*instance{}
	for _, in := range v.instances {
		instances[in.id] = in
	}
	// I3: counts per ID match Docker's (held and lost mounts).
	want := map[string]int{}
	for _, mm := range append(slices.Clone(m.mounts), m.lost...) {
		want[mm.id]++
		if _, ok := instances[mm.instance]; !ok {
			v.mu.Unlock()
			t.Fatalf("I3: mount %s holds instance %s, which the driver forgot", mm.id, mm.instance)
		}
	}
	got := map[string]int{}
	var published *instance
	for _, in := range v.instances {
		if in.count() == 0 {
			v.mu.Unlock()
			t.Fatalf("I3: instance %s kept with no mount", in.id)
		}
		for id, n := range in.mounts {
			got[id] += n
		}
		if in.published {
			if published != nil {
				v.mu.Unlock()
				t.Fatal("I3: two published instances")
			}
			published = in
		}
	}
	if fmt.Sprint(want) != fmt.Sprint(got) {
		v.mu.Unlock()
		t.Fatalf("I3: driver counts %v, Docker holds %v", got, want)
	}
	view, side := filepath.Join(m.drv.cfg.Root, modelVolume), filepath.Join(m.drv.cfg.Writer, modelVolume)
	if (published != nil) != m.mounter.isMounted(view) || (published != nil && published.writable) != m.mounter.isMounted(side) {
		v.mu.Unlock()
		t.Fatalf("I3: published=%v, view mounted=%v, side mounted=%v", published != nil, m.mounter.isMounted(view), m.mounter.isMounted(side))
	}
	// Which leases mounts may read, and which retiring leases are kept.
	read := map[string]*instance{}
	retiring := map[string]time.Time{}
	for _, in := range v.instances {
		for _, l := range in.leases {
			read[l.Lease.ID] = in
		}
		for _, r := range in.retiring {
			retiring[r.Lease.ID] = r.RevokeAt
		}
	}
	v.mu.Unlock()
	queued := map[string]pendingRevocation{}
	for _, p := range m.drv.revoker.pending() {
		queued[p.Lease.ID] = p
	}
	m.store.mu.Lock()
	defer m.store.mu.Unlock()
	for id, ml := range m.store.leases {
		in, isRead := read[id]
		revokeAt, isRetiring := retiring[id]
		switch {
		case isRead:
			// I1. A detached instance cannot be refilled: its lease ends
			// at its max TTL.
			if ml.revoked {
				t.Fatalf("I1: lease %s of content a container reads was revoked", id)
			}
			if !now.Before(ml.expires) && !(!in.writable && !now.Before(ml.maxEnd)) {
				t.Fatalf("I1: lease %s of content a container reads expired at %s (max %s); now %s", id, ml.expires.Format(time.TimeOnly), ml.maxEnd.Format(time.TimeOnly), now.Format(time.TimeOnly))
			}
		case isRetiring:
			if ml.revoked && ml.revokeAt.Before(revokeAt) {
				t.Fatalf("I1: retiring lease %s revoked before its grace ended", id)
			}
			if now.After(revokeAt) {
				t.Fatalf("I2: retiring lease %s kept past its grace (%s); now %s", id, revokeAt.Format(time.TimeOnly), now.Format(time.TimeOnly))
			}
		default:
			// I2: nothing reads it: revoked, expired, or its revocation
			// failed and is retried after a backoff not yet over.
			if ml.revoked || !now.Before(ml.expires) {
				continue
			}
			if p, ok := queued[id]; ok && p.Tries > 0 && now.Before(p.NextAt) {
				continue
			}
			t.Fatalf("I2: lease %s is used by no container and neither revoked nor expired", id)
		}
	}
}

// flagSet reports whether the command line set the flag.
func flagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// snapshot describes the volume's instances for I4: ids, counts and
// leases, in a stable text.
func snapshotOf(v *vol) string {
	v.mu.Lock()
	defer v.mu.Unlock()
	var parts []string
	for _, in := range v.instances {
		var ls, rs []string
		for _, l := range in.leases {
			ls = append(ls, l.Lease.ID)
		}
		for _, r := range in.retiring {
			rs = append(rs, r.Lease.ID+"@"+r.RevokeAt.Format(time.TimeOnly))
		}
		ids := make([]string, 0, len(in.mounts))
		for id, n := range in.mounts {
			ids = append(ids, fmt.Sprintf("%s×%d", id, n))
		}
		sort.Strings(ids)
		parts = append(parts, fmt.Sprintf("%s mounts=%v leases=%v retiring=%v", in.id, ids, ls, rs))
	}
	return strings.Join(parts, "; ")
}

// The events. Each returns false when it cannot happen now (nothing
// mounted, ...), for the generator to skip.

// mount is Docker's Mount of id; a failed read leaves Docker holding
// nothing.
func (m *lifeModel) mount(id string) {
	_, err := m.drv.Mount(&volume.MountRequest{Name: modelVolume, ID: id})
	m.settle()
	if err == nil {
		m.mounts = append(m.mounts, modelMount{id: id, instance: m.published()})
	}
}

// unmount is Docker's Unmount of id, which ends Docker's most recent
// mount of that ID (a docker cp ends before its container).
func (m *lifeModel) unmount(id string) bool {
	var ended modelMount
	found := false
	for i := len(m.mounts) - 1; i >= 0; i-- {
		if m.mounts[i].id == id {
			ended, found = m.mounts[i], true
			m.mounts = append(m.mounts[:i], m.mounts[i+1:]...)
			break
		}
	}
	if !found {
		return false
	}
	order := m.instanceOrder()
	if err := m.drv.Unmount(&volume.UnmountRequest{Name: modelVolume, ID: id}); err != nil {
		m.t.Fatal(err)
	}
	// The driver cannot tell a mount whose Unmount was lost from a live
	// one of the same ID: it released the newest instance that ID holds.
	// If that was a lost mount's, the count of the mount that ended is
	// the lost one now.
	newest := -1
	for i, l := range m.lost {
		if l.id == id && order[l.instance] > order[ended.instance] && (newest < 0 || order[l.instance] > order[m.lost[newest].instance]) {
			newest = i
		}
	}
	if newest >= 0 {
		m.lost[newest] = ended
	}
	m.settle()
	return true
}

// lose ends Docker's i-th mount without an Unmount: the container ended
// while the plugin was down (moby #46508).
func (m *lifeModel) lose(i int) {
	m.lost = append(m.lost, m.mounts[i])
	m.mounts = append(m.mounts[:i], m.mounts[i+1:]...)
}

// remove is Docker's Remove, which it sends only when no container
// references the volume; the volume is then created again.
func (m *lifeModel) remove() bool {
	if len(m.mounts) > 0 {
		return false
	}
	if err := m.drv.Remove(&volume.RemoveRequest{Name: modelVolume}); err != nil {
		m.t.Fatalf("Remove: %v", err)
	}
	m.lost = nil
	m.settle()
	m.create()
	return true
}

// restart stops the plugin and starts a new one on the saved state. The
// side lived in the old process's mount namespace; a disable or an
// upgrade also takes the views (Docker unmounts the propagated mount), a
// crash keeps them. The state reloaded must say what it said (I4).
func (m *lifeModel) restart(viewsKept bool) {
	m.finishSlow()
	before := snapshotOf(m.vol())
	m.drv.Close()
	for _, root := range []string{m.drv.cfg.Writer, m.drv.cfg.Root} {
		if root == m.drv.cfg.Root && viewsKept {
			continue
		}
		mps, _ := m.mounter.MountsUnder(root)
		for _, mp := range mps {
			_ = m.mounter.Unmount(mp)
		}
	}
	m.start()
	if after := snapshotOf(m.vol()); after != before {
		m.t.Fatalf("I4: before the restart: %s\nafter: %s", before, after)
	}
	m.settle()
}

// rotate changes the secret's value in the store.
func (m *lifeModel) rotate() {
	m.store.mu.Lock()
	m.store.version++
	m.store.mu.Unlock()
}

// failNext makes the store's next call of a kind fail.
func (m *lifeModel) failNext(call string) {
	m.store.mu.Lock()
	defer m.store.mu.Unlock()
	switch call {
	case "fetch":
		m.store.failFetch = true
	case "renew":
		m.store.failRenew = true
	case "revoke":
		m.store.failRevok = true
	}
}

// startSlow starts a renewal that is answered only after the next
// events (a slow store): the answer is made at once, returned later.
func (m *lifeModel) startSlow() bool {
	if m.slowDone != nil {
		return false
	}
	v := m.vol()
	if len(v.toRenew()) == 0 {
		return false
	}
	m.store.mu.Lock()
	m.store.slow, m.store.blocked, m.store.release = true, make(chan struct{}), make(chan struct{})
	blocked := m.store.blocked
	m.store.mu.Unlock()
	done := make(chan struct{})
	m.slowDone = done
	go func() {
		defer close(done)
		m.drv.renewLeases(context.Background(), v)
	}()
	select {
	case <-blocked:
	case <-done:
	}
	return true
}

// liveLeases are the store's leases neither revoked nor expired.
func (m *lifeModel) liveLeases() []string {
	m.store.mu.Lock()
	defer m.store.mu.Unlock()
	now := m.clock.Now()
	var out []string
	for id, l := range m.store.leases {
		if !l.revoked && now.Before(l.expires) {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// modelDir is where a model keeps its state: memory when it can (the
// state is saved with fsync at every step).
func modelDir(t *testing.T) string {
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "dsv-model-"); err == nil {
			t.Cleanup(func() { os.RemoveAll(d) })
			return d
		}
	}
	return t.TempDir()
}

func TestLifecycleModel(t *testing.T) {
	base := modelDir(t)
	// Failures print the seed to replay; no fail file in the source tree.
	if f := flag.Lookup("rapid.nofailfile"); f != nil {
		_ = f.Value.Set("true")
	}
	// Thousands of sequences unless -rapid.checks says otherwise: a break
	// of the renewal's generation check took ~400 to show.
	if f := flag.Lookup("rapid.checks"); f != nil && !flagSet("rapid.checks") && os.Getenv("RAPID_CHECKS") == "" {
		_ = f.Value.Set("2000")
	}
	runs := 0
	rapid.Check(t, func(t *rapid.T) {
		runs++
		m := newModel(t, filepath.Join(base, fmt.Sprint(runs)))
		defer func() {
			m.finishSlow()
			m.drv.Close()
		}()
		ids := rapid.SampledFrom([]string{"a", "b", "c"})
		skipIf := func(t *rapid.T, cannot bool, why string) {
			if cannot {
				t.Skip(why)
			}
		}
		t.Repeat(map[string]func(*rapid.T){
			"":      func(t *rapid.T) { m.check() },
			"mount": func(t *rapid.T) { m.mount(ids.Draw(t, "id")) },
			"unmount": func(t *rapid.T) {
				skipIf(t, len(m.mounts) == 0, "nothing mounted")
				m.unmount(rapid.SampledFrom(m.mounts).Draw(t, "mount").id)
			},
			"lose an unmount": func(t *rapid.T) {
				skipIf(t, len(m.mounts) == 0, "nothing mounted")
				m.lose(rapid.IntRange(0, len(m.mounts)-1).Draw(t, "mount"))
			},
			"remove":  func(t *rapid.T) { skipIf(t, !m.remove(), "Docker removes only volumes no container references") },
			"restart": func(t *rapid.T) { m.restart(rapid.Bool().Draw(t, "views kept")) },
			"advance": func(t *rapid.T) {
				m.advance(rapid.SampledFrom([]time.Duration{time.Second, time.Minute, 10 * time.Minute, 45 * time.Minute, 2 * time.Hour}).Draw(t, "by"))
			},
			"rotate":         func(t *rapid.T) { m.rotate() },
			"fail next call": func(t *rapid.T) { m.failNext(rapid.SampledFrom([]string{"fetch", "renew", "revoke"}).Draw(t, "call")) },
			"slow renewal":   func(t *rapid.T) { skipIf(t, !m.startSlow(), "one at a time, of a lease") },
			"slow renewal returns": func(t *rapid.T) {
				skipIf(t, m.slowDone == nil, "none in flight")
				m.finishSlow()
			},
		})
	})
}
