// Package cache is the one way volumes and the Swarm secret provider read
// secrets: it applies the backend timeout, collapses concurrent reads of one
// object into one backend call, keeps values in memory for a short TTL, and
// extracts JSON keys, so that many containers on few secrets cause few reads.
package cache

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/dsv-plugin/dsv/metrics"
	"github.com/dsv-plugin/dsv/secrets"
	"github.com/dsv-plugin/dsv/secrets/gate"
)

// Config tunes a Fetcher.
type Config struct {
	// TTL is how long a value is reused; 0 disables reuse, but concurrent
	// reads still collapse into one.
	TTL time.Duration
	// MaxEntries bounds the number of cached values.
	MaxEntries int
	// Timeout bounds every backend call.
	Timeout time.Duration
	// Metrics counts reads, hits and shared reads; nil counts nothing.
	Metrics *metrics.Metrics
	// Gates, when set, is what every read of a store goes through: the
	// cap on concurrent calls per store and the backoff of a store that
	// throttles (secrets/gate). Nil: reads go straight to the backend.
	Gates *gate.Gates
}

// entry is one cached value; its timer drops it when the TTL ends, so a value
// never stays in the cache longer than that.
type entry struct {
	sec     secrets.Secret
	expires time.Time
	timer   *time.Timer
}

// Stats counts what the fetcher did, for tests, benchmarks and logs.
type Stats struct {
	Reads  int64 // backend calls
	Hits   int64 // answered from the cache
	Shared int64 // answered by joining a read in flight
}

// Fetcher reads secrets through the registry's backends.
type Fetcher struct {
	reg *secrets.Registry
	cfg Config

	group singleflight.Group
	mu    sync.Mutex
	items map[string]*entry
	// releases counts the release goroutines running, so that a test can
	// wait for them rather than for a time.
	releases sync.WaitGroup

	reads, hits, shared atomic.Int64
}

// New returns a Fetcher. MaxEntries defaults to 1024.
func New(reg *secrets.Registry, cfg Config) (*Fetcher, error) {
	if cfg.Timeout <= 0 {
		return nil, errors.New("cache: timeout must be positive")
	}
	if cfg.TTL < 0 {
		return nil, errors.New("cache: TTL must not be negative")
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = 1024
	}
	return &Fetcher{reg: reg, cfg: cfg, items: map[string]*entry{}}, nil
}

// Timeout is the deadline the fetcher gives every backend call; lease
// renewals and revocations use it too.
func (f *Fetcher) Timeout() time.Duration { return f.cfg.Timeout }

// Through runs call, another call to ref's store than a read (a lease's
// renewal or revocation), through the store's gate: its cap on calls in
// flight, and the retries of a throttled call within ctx (see
// secrets/gate).
func (f *Fetcher) Through(ctx context.Context, ref secrets.Ref, call func(context.Context) error) error {
	return f.cfg.Gates.Do(ctx, ref, call)
}

// Stats returns the counters.
func (f *Fetcher) Stats() Stats {
	return Stats{Reads: f.reads.Load(), Hits: f.hits.Load(), Shared: f.shared.Load()}
}

// Fetch returns ref's value, with ref.Key extracted. fresh skips a cached
// value (a refresh must see a rotation at once) but still joins a read in
// flight and refreshes the cache. The returned Value must not be modified.
//
// A unique value (a lease, a single-use token) goes to exactly one caller:
// the first to claim it; the others of the same flight read their own. One
// nobody takes (its caller gave up waiting, or its key was missing) has its
// lease revoked, so no credential is left that no volume holds.
func (f *Fetcher) Fetch(ctx context.Context, ref secrets.Ref, fresh bool) (secrets.Secret, error) {
	whole := ref
	whole.Key = ""
	key := whole.CacheKey()

	if !fresh {
		if sec, ok := f.lookup(key); ok {
			f.hits.Add(1)
			f.cfg.Metrics.CacheHit(ref)
			return extract(ref, sec)
		}
	}
	ch := f.group.DoChan(key, func() (any, error) {
		sec, err := f.read(whole, key)
		return &flight{sec: sec}, err
	})
	var res singleflight.Result
	select {
	case res = <-ch:
	case <-ctx.Done():
		f.releases.Add(1)
		go f.release(whole, ch)
		return secrets.Secret{}, secrets.FromContext(ctx, ref)
	}
	if res.Err != nil {
		return secrets.Secret{}, rename(res.Err, ref)
	}
	fl := res.Val.(*flight)
	sec := fl.sec
	if sec.Unique() {
		if !fl.claimed.CompareAndSwap(false, true) {
			// A lease belongs to one volume: revoking it at one volume's
			// last unmount must not take another's credentials.
			var err error
			if sec, err = f.read(whole, key); err != nil {
				return secrets.Secret{}, rename(err, ref)
			}
		}
		out, err := extract(ref, sec)
		if err != nil {
			f.revoke(whole, sec)
		}
		return out, err
	}
	if res.Shared {
		f.shared.Add(1)
		f.cfg.Metrics.SharedRead(ref)
	}
	return extract(ref, sec)
}

// flight is the result of one backend read, shared by the callers that
// joined it; a unique value is claimed by one of them.
type flight struct {
	sec     secrets.Secret
	claimed atomic.Bool
}

// release waits for a flight its caller gave up on, and revokes a unique
// value's lease if no other caller claims it.
func (f *Fetcher) release(ref secrets.Ref, ch <-chan singleflight.Result) {
	defer f.releases.Done()
	res := <-ch
	if res.Err != nil {
		return
	}
	// Callers that joined the flight got the result at the same time as
	// this one; any that wants the value has claimed it by now or will
	// read its own. Give them the moment they need to try.
	time.Sleep(releaseGrace)
	fl := res.Val.(*flight)
	if fl.sec.Unique() && fl.claimed.CompareAndSwap(false, true) {
		f.revoke(ref, fl.sec)
	}
}

// releaseGrace is how long release leaves a finished flight to its other
// callers before taking its value back.
const releaseGrace = 100 * time.Millisecond

// revoke hands back the lease of a value no caller will use.
func (f *Fetcher) revoke(ref secrets.Ref, sec secrets.Secret) {
	if sec.Lease == nil || sec.Lease.ID == "" {
		return
	}
	lm, ok := f.reg.LeaseManager(ref.Backend)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), f.cfg.Timeout)
	defer cancel()
	_ = f.Through(ctx, ref, func(ctx context.Context) error { return lm.Revoke(ctx, ref, sec.Lease.ID) })
}

// read calls the backend under the timeout, through the store's gate (a
// throttled read is tried again within the timeout), and caches a
// lease-free result.
func (f *Fetcher) read(ref secrets.Ref, key string) (secrets.Secret, error) {
	backend, ok := f.reg.Get(ref.Backend)
	if !ok {
		return secrets.Secret{}, fmt.Errorf("backend %q is not available in this build of dsv", ref.Backend)
	}
	ctx, cancel := context.WithTimeout(context.Background(), f.cfg.Timeout)
	defer cancel()
	f.reads.Add(1)
	start := time.Now()
	var sec secrets.Secret
	err := f.cfg.Gates.Do(ctx, ref, func(ctx context.Context) error {
		var err error
		sec, err = backend.Fetch(ctx, ref)
		return err
	})
	if err != nil {
		// A backend that classified its failure knows best, also when the
		// deadline passed (e.g. "unreachable, gave up at TIMEOUT after 3
		// tries"); anything else that ran out of time is a timeout.
		var se *secrets.Error
		if cerr := secrets.FromContext(ctx, ref); cerr != nil && !errors.As(err, &se) {
			err = cerr
		}
		f.cfg.Metrics.BackendRead(ref, time.Since(start), err)
		return secrets.Secret{}, err
	}
	f.cfg.Metrics.BackendRead(ref, time.Since(start), nil)
	if !sec.Unique() {
		f.store(key, sec)
	}
	return sec, nil
}

func (f *Fetcher) lookup(key string) (secrets.Secret, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e, ok := f.items[key]
	if !ok || !time.Now().Before(e.expires) {
		return secrets.Secret{}, false
	}
	return e.sec, true
}

func (f *Fetcher) store(key string, sec secrets.Secret) {
	if f.cfg.TTL == 0 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if old, ok := f.items[key]; ok {
		old.timer.Stop()
		delete(f.items, key)
	}
	if len(f.items) >= f.cfg.MaxEntries {
		f.evictOldestLocked()
	}
	e := &entry{sec: sec, expires: time.Now().Add(f.cfg.TTL)}
	e.timer = time.AfterFunc(f.cfg.TTL, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.items[key] == e {
			delete(f.items, key)
		}
	})
	f.items[key] = e
}

func (f *Fetcher) evictOldestLocked() {
	var oldestKey string
	var oldest *entry
	for k, e := range f.items {
		if oldest == nil || e.expires.Before(oldest.expires) {
			oldestKey, oldest = k, e
		}
	}
	if oldest != nil {
		oldest.timer.Stop()
		delete(f.items, oldestKey)
	}
}

// Len is the number of cached values.
func (f *Fetcher) Len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.items)
}

// extract applies ref.Key to a whole value.
func extract(ref secrets.Ref, sec secrets.Secret) (secrets.Secret, error) {
	if ref.Key == "" {
		return sec, nil
	}
	v, err := secrets.ExtractKey(ref, sec.Value)
	if err != nil {
		return secrets.Secret{}, err
	}
	sec.Value = v
	return sec, nil
}

// rename makes a shared read's error name the caller's reference (its key).
func rename(err error, ref secrets.Ref) error {
	var se *secrets.Error
	if errors.As(err, &se) {
		c := *se
		c.Ref = ref
		return &c
	}
	return err
}
