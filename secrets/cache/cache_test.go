package cache

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dsv-plugin/dsv/secrets"
	"github.com/dsv-plugin/dsv/secrets/gate"
)

// slowBackend answers after a delay, so concurrent reads overlap, and counts
// its reads per name.
type slowBackend struct {
	delay  time.Duration
	leased bool
	fail   atomic.Bool
	mu     sync.Mutex
	reads  map[string]int
	serial atomic.Int64
	// revoked records the leases the fetcher handed back.
	revoked map[string]bool
}

func (b *slowBackend) Name() string               { return "slow" }
func (b *slowBackend) Validate(secrets.Ref) error { return nil }
func (b *slowBackend) Fetch(ctx context.Context, ref secrets.Ref) (secrets.Secret, error) {
	b.mu.Lock()
	b.reads[ref.Name]++
	b.mu.Unlock()
	if ref.Key != "" {
		return secrets.Secret{}, errors.New("the fetcher must extract keys itself")
	}
	select {
	case <-time.After(b.delay):
	case <-ctx.Done():
		return secrets.Secret{}, secrets.FromContext(ctx, ref)
	}
	if b.fail.Load() {
		return secrets.Secret{}, secrets.Fail(ref, secrets.ErrUnavailable, "", nil)
	}
	n := b.serial.Add(1)
	sec := secrets.Secret{Value: []byte(fmt.Sprintf(`{"name":%q,"n":%d}`, ref.Name, n)), Version: fmt.Sprint(n)}
	if b.leased {
		sec.Lease = &secrets.Lease{ID: fmt.Sprintf("lease-%d", n), Duration: time.Minute, Renewable: true}
	}
	return sec, nil
}

func (b *slowBackend) Renew(_ context.Context, _ secrets.Ref, l secrets.Lease) (secrets.Lease, error) {
	return l, nil
}

func (b *slowBackend) Revoke(_ context.Context, _ secrets.Ref, id string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.revoked == nil {
		b.revoked = map[string]bool{}
	}
	b.revoked[id] = true
	return nil
}

func (b *slowBackend) revokedLeases() map[string]bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[string]bool{}
	for id := range b.revoked {
		out[id] = true
	}
	return out
}

func (b *slowBackend) total() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, c := range b.reads {
		n += c
	}
	return n
}

func newFetcher(t *testing.T, b *slowBackend, ttl time.Duration) *Fetcher {
	t.Helper()
	if b.reads == nil {
		b.reads = map[string]int{}
	}
	reg, err := secrets.NewRegistry(b)
	if err != nil {
		t.Fatal(err)
	}
	f, err := New(reg, Config{TTL: ttl, MaxEntries: 3, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestConcurrentFetchesCollapse(t *testing.T) {
	b := &slowBackend{delay: 50 * time.Millisecond}
	f := newFetcher(t, b, time.Minute)
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ref := secrets.Ref{Backend: "slow", Name: fmt.Sprintf("s%d", i%5), Key: "name"}
			sec, err := f.Fetch(context.Background(), ref, false)
			if err != nil {
				t.Error(err)
				return
			}
			if string(sec.Value) != ref.Name {
				t.Errorf("got %q for %s", sec.Value, ref.Name)
			}
		}()
	}
	wg.Wait()
	if n := b.total(); n != 5 {
		t.Fatalf("50 fetches of 5 secrets made %d backend reads, want 5", n)
	}
	st := f.Stats()
	if st.Reads != 5 || st.Hits+st.Shared < 45 {
		t.Errorf("stats = %+v", st)
	}
}

func TestCacheTTLAndFresh(t *testing.T) {
	b := &slowBackend{}
	f := newFetcher(t, b, 100*time.Millisecond)
	ref := secrets.Ref{Backend: "slow", Name: "a"}
	first, _ := f.Fetch(context.Background(), ref, false)
	again, _ := f.Fetch(context.Background(), ref, false)
	if first.Version != again.Version || b.total() != 1 {
		t.Fatalf("second fetch within the TTL read the backend (%d reads)", b.total())
	}
	beforeStore := time.Now()
	fresh, _ := f.Fetch(context.Background(), ref, true)
	if fresh.Version == first.Version || b.total() != 2 {
		t.Fatal("a fresh fetch was answered from the cache")
	}
	cached, _ := f.Fetch(context.Background(), ref, false)
	if cached.Version != fresh.Version {
		t.Fatal("a fresh fetch did not refresh the cache")
	}
	// Wait for the TTL's timer to drop the value, however late a busy
	// machine runs it; never before the TTL.
	deadline := time.Now().Add(10 * time.Second)
	for f.Len() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("a value stayed in the cache 10s past its TTL of 100ms")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if gone := time.Since(beforeStore); gone < 100*time.Millisecond {
		t.Fatalf("the value was dropped %v after it was stored, before its TTL", gone)
	}
	if _, _ = f.Fetch(context.Background(), ref, false); b.total() != 3 {
		t.Fatal("an expired value was reused")
	}
}

func TestCacheBounded(t *testing.T) {
	b := &slowBackend{}
	f := newFetcher(t, b, time.Minute)
	for i := range 10 {
		if _, err := f.Fetch(context.Background(), secrets.Ref{Backend: "slow", Name: fmt.Sprint(i)}, false); err != nil {
			t.Fatal(err)
		}
	}
	if f.Len() != 3 {
		t.Fatalf("cache holds %d values, want its bound 3", f.Len())
	}
}

func TestZeroTTLStillCollapses(t *testing.T) {
	b := &slowBackend{delay: 50 * time.Millisecond}
	f := newFetcher(t, b, 0)
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = f.Fetch(context.Background(), secrets.Ref{Backend: "slow", Name: "x"}, false)
		}()
	}
	wg.Wait()
	if b.total() != 1 || f.Len() != 0 {
		t.Fatalf("reads = %d, cached = %d; want 1 read and nothing kept", b.total(), f.Len())
	}
}

func TestLeasedSecretsAreNeverShared(t *testing.T) {
	b := &slowBackend{delay: 50 * time.Millisecond, leased: true}
	f := newFetcher(t, b, time.Minute)
	var mu sync.Mutex
	leases := map[string]bool{}
	var wg sync.WaitGroup
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sec, err := f.Fetch(context.Background(), secrets.Ref{Backend: "slow", Name: "db"}, false)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			leases[sec.Lease.ID] = true
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(leases) != 5 || f.Len() != 0 {
		t.Fatalf("5 fetches got %d distinct leases and cached %d; want 5 and 0", len(leases), f.Len())
	}
	// Every lease the backend issued went to a caller, or back to the
	// backend: none is left that nobody holds. Revocations run after the
	// callers have their answers: wait for them to end.
	f.releases.Wait()
	revoked := b.revokedLeases()
	for id := range leases {
		if revoked[id] {
			t.Errorf("lease %s was handed out and revoked", id)
		}
	}
	if issued := int(b.serial.Load()); issued != len(leases)+len(revoked) {
		t.Fatalf("%d leases issued, %d handed out, %d revoked: %d left that nobody holds", issued, len(leases), len(revoked), issued-len(leases)-len(revoked))
	}
}

// TestUnclaimedLeasesAreRevoked: a lease read for a caller that gave up
// waiting, or whose key was missing, is revoked, not left behind.
func TestUnclaimedLeasesAreRevoked(t *testing.T) {
	b := &slowBackend{delay: 100 * time.Millisecond, leased: true}
	f := newFetcher(t, b, time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := f.Fetch(ctx, secrets.Ref{Backend: "slow", Name: "db"}, false); !errors.Is(err, secrets.ErrTimeout) {
		t.Fatalf("err = %v, want the caller's timeout", err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for !b.revokedLeases()["lease-1"] {
		if time.Now().After(deadline) {
			t.Fatal("the lease read for a caller that gave up was not revoked")
		}
		time.Sleep(10 * time.Millisecond)
	}

	if _, err := f.Fetch(context.Background(), secrets.Ref{Backend: "slow", Name: "db", Key: "missing"}, false); !errors.Is(err, secrets.ErrBadValue) {
		t.Fatalf("missing key: %v", err)
	}
	if !b.revokedLeases()["lease-2"] {
		t.Fatal("the lease of a value whose key was missing was not revoked")
	}
}

func TestErrorsAreNotCachedAndNameTheKey(t *testing.T) {
	b := &slowBackend{}
	f := newFetcher(t, b, time.Minute)
	b.fail.Store(true)
	_, err := f.Fetch(context.Background(), secrets.Ref{Backend: "slow", Name: "a", Key: "k"}, false)
	if !errors.Is(err, secrets.ErrUnavailable) || err.Error() != `slow secret "a" key "k": backend unreachable` {
		t.Fatalf("err = %v", err)
	}
	b.fail.Store(false)
	if _, err := f.Fetch(context.Background(), secrets.Ref{Backend: "slow", Name: "a"}, false); err != nil {
		t.Fatalf("an error was cached: %v", err)
	}
	_, err = f.Fetch(context.Background(), secrets.Ref{Backend: "slow", Name: "a", Key: "missing"}, false)
	if !errors.Is(err, secrets.ErrBadValue) {
		t.Fatalf("missing key: %v", err)
	}
}

func TestTimeout(t *testing.T) {
	b := &slowBackend{delay: time.Hour, reads: map[string]int{}}
	reg, _ := secrets.NewRegistry(b)
	f, _ := New(reg, Config{Timeout: 50 * time.Millisecond})
	_, err := f.Fetch(context.Background(), secrets.Ref{Backend: "slow", Name: "a"}, false)
	if !errors.Is(err, secrets.ErrTimeout) {
		t.Fatalf("err = %v, want a timeout", err)
	}
}

// TestReadsAndLeaseCallsGoThroughTheGate: with gates, a read the store
// throttles once is tried again and succeeds, and so is a lease call
// through Through; without, both fail at the first throttled answer.
func TestReadsAndLeaseCallsGoThroughTheGate(t *testing.T) {
	throttledOnce := func() func(secrets.Ref) error {
		var n atomic.Int32
		return func(ref secrets.Ref) error {
			if n.Add(1) == 1 {
				return secrets.Fail(ref, secrets.ErrThrottled, "read less often", nil)
			}
			return nil
		}
	}
	for _, withGates := range []bool{false, true} {
		t.Run(fmt.Sprint("gates=", withGates), func(t *testing.T) {
			b := &throttlingBackend{answer: throttledOnce()}
			reg, err := secrets.NewRegistry(b)
			if err != nil {
				t.Fatal(err)
			}
			cfg := Config{Timeout: 5 * time.Second}
			if withGates {
				if cfg.Gates, err = gate.New(gate.Config{Base: time.Millisecond}); err != nil {
					t.Fatal(err)
				}
			}
			f, err := New(reg, cfg)
			if err != nil {
				t.Fatal(err)
			}
			ref := secrets.Ref{Backend: "throttling", Name: "db"}
			_, readErr := f.Fetch(context.Background(), ref, true)
			lease := throttledOnce()
			calls := 0
			leaseErr := f.Through(context.Background(), ref, func(context.Context) error { calls++; return lease(ref) })
			if withGates {
				if readErr != nil || leaseErr != nil || b.calls.Load() != 2 || calls != 2 {
					t.Fatalf("read: %v after %d calls, lease call: %v after %d; want both to succeed at the second", readErr, b.calls.Load(), leaseErr, calls)
				}
				return
			}
			if !errors.Is(readErr, secrets.ErrThrottled) || !errors.Is(leaseErr, secrets.ErrThrottled) || b.calls.Load() != 1 || calls != 1 {
				t.Fatalf("read: %v after %d calls, lease call: %v after %d; want both throttled at once", readErr, b.calls.Load(), leaseErr, calls)
			}
		})
	}
}

// throttlingBackend answers each Fetch by answer.
type throttlingBackend struct {
	answer func(secrets.Ref) error
	calls  atomic.Int32
}

func (b *throttlingBackend) Name() string               { return "throttling" }
func (b *throttlingBackend) Validate(secrets.Ref) error { return nil }
func (b *throttlingBackend) Fetch(_ context.Context, ref secrets.Ref) (secrets.Secret, error) {
	b.calls.Add(1)
	if err := b.answer(ref); err != nil {
		return secrets.Secret{}, err
	}
	return secrets.Secret{Value: []byte("v"), Version: "1"}, nil
}
