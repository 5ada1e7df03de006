package gate

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dsv-plugin/dsv/metrics"
	"github.com/dsv-plugin/dsv/secrets"
)

// limitedStore is a store stub that answers at most rate calls per second
// (a token bucket of burst tokens) and throttles the rest, as AWS does.
type limitedStore struct {
	rate  float64
	burst float64

	mu        sync.Mutex
	tokens    float64
	last      time.Time
	calls     int
	throttled int
	inFlight  int
	maxFlight int
}

func newLimitedStore(rate, burst float64) *limitedStore {
	return &limitedStore{rate: rate, burst: burst, tokens: burst, last: time.Now()}
}

func (s *limitedStore) fetch(ref secrets.Ref) error {
	s.mu.Lock()
	s.calls++
	s.inFlight++
	s.maxFlight = max(s.maxFlight, s.inFlight)
	now := time.Now()
	s.tokens = min(s.burst, s.tokens+now.Sub(s.last).Seconds()*s.rate)
	s.last = now
	ok := s.tokens >= 1
	if ok {
		s.tokens--
	} else {
		s.throttled++
	}
	s.mu.Unlock()
	// An answer takes a moment, so that calls overlap.
	time.Sleep(2 * time.Millisecond)
	s.mu.Lock()
	s.inFlight--
	s.mu.Unlock()
	if !ok {
		return secrets.Fail(ref, secrets.ErrThrottled, "read less often", errors.New("ThrottlingException: Rate exceeded"))
	}
	return nil
}

// TestThrottledCallsSucceedWithinDeadline: 40 concurrent reads of a store
// that answers 20 a second and throttles the rest all succeed within
// their deadline, through the shared backoff; the store sees a bounded
// number of throttled calls. Without the gate most of them fail at once.
func TestThrottledCallsSucceedWithinDeadline(t *testing.T) {
	const n = 40
	run := func(g *Gates) (failed int, st *limitedStore, took time.Duration) {
		st = newLimitedStore(20, 5)
		var wg sync.WaitGroup
		var fails atomic.Int32
		start := time.Now()
		for i := range n {
			wg.Go(func() {
				ref := secrets.Ref{Backend: "aws", Name: "obj" + string(rune('a'+i%26))}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if err := g.Do(ctx, ref, func(context.Context) error { return st.fetch(ref) }); err != nil {
					fails.Add(1)
					if !errors.Is(err, secrets.ErrThrottled) {
						t.Errorf("Do() = %v, want nil or throttled", err)
					}
				}
			})
		}
		wg.Wait()
		return int(fails.Load()), st, time.Since(start)
	}
	t.Run("without a gate", func(t *testing.T) {
		failed, _, _ := run(nil)
		if failed == 0 {
			t.Fatal("every call succeeded: the stub does not throttle, the test proves nothing")
		}
	})
	t.Run("through the gate", func(t *testing.T) {
		m := metrics.New(metrics.Config{})
		g, err := New(Config{Concurrency: 8, Base: 50 * time.Millisecond, Cap: time.Second, Metrics: m})
		if err != nil {
			t.Fatal(err)
		}
		failed, st, took := run(g)
		if failed != 0 {
			t.Fatalf("%d of %d calls failed", failed, n)
		}
		// 40 answers at 20/s after a burst of 5 take ~1.75s; the backoff
		// may add to it but stays well within the 10s deadline.
		if took > 8*time.Second {
			t.Errorf("the calls took %v", took)
		}
		// Each throttled answer lengthens everybody's backoff, waited by
		// at most 8 callers at once: the store throttles fewer calls than
		// it answers (31 to 34 for 40 in three runs), not the retries of
		// 40 callers spinning (with a reset of the backoff at each
		// success: 98 to 111).
		if st.throttled > 3*n/2 {
			t.Errorf("the store throttled %d of %d calls: the retries are not held back", st.throttled, st.calls)
		}
		if st.maxFlight > 8 {
			t.Errorf("%d calls in flight, over the cap of 8", st.maxFlight)
		}
		t.Logf("%d calls, %d throttled, %v", st.calls, st.throttled, took)
		body := scrape(t, m)
		if !strings.Contains(body, `dsv_store_throttled_total{backend="aws"}`) && st.throttled > 0 {
			t.Errorf("throttled answers not counted:\n%s", body)
		}
	})
}

// TestConcurrencyCap: no more than Concurrency calls to one store are in
// flight; another store has slots of its own.
func TestConcurrencyCap(t *testing.T) {
	for _, limit := range []int{1, 3} {
		g, err := New(Config{Concurrency: limit})
		if err != nil {
			t.Fatal(err)
		}
		var inFlight, peak, other atomic.Int32
		var wg sync.WaitGroup
		for i := range 30 {
			wg.Go(func() {
				ref := secrets.Ref{Backend: "vault", Name: "kv/app"}
				_ = g.Do(context.Background(), ref, func(context.Context) error {
					now := inFlight.Add(1)
					for {
						p := peak.Load()
						if now <= p || peak.CompareAndSwap(p, now) {
							break
						}
					}
					time.Sleep(time.Millisecond)
					inFlight.Add(-1)
					return nil
				})
				if i == 0 {
					// Another store is not held up by this one's cap.
					_ = g.Do(context.Background(), secrets.Ref{Backend: "aws", Name: "x"}, func(context.Context) error { other.Add(1); return nil })
				}
			})
		}
		wg.Wait()
		if p := peak.Load(); p > int32(limit) || p < 1 {
			t.Errorf("Concurrency %d: %d calls were in flight at once", limit, p)
		}
		if other.Load() != 1 {
			t.Error("the other store's call did not run")
		}
	}
	// 0 is no cap: all 30 run at once.
	g, _ := New(Config{})
	var started sync.WaitGroup
	started.Add(30)
	release := make(chan struct{})
	var wg sync.WaitGroup
	for range 30 {
		wg.Go(func() {
			_ = g.Do(context.Background(), secrets.Ref{Backend: "vault"}, func(context.Context) error {
				started.Done()
				<-release
				return nil
			})
		})
	}
	started.Wait() // hangs, and the test times out, if any is held back
	close(release)
	wg.Wait()
	if _, err := New(Config{Concurrency: -1}); err == nil {
		t.Error("New accepted a negative concurrency")
	}
}

// TestDeadlineEndsWait: a call waiting for a slot, or for a throttling
// store's backoff, returns when its context ends, with an error that
// says what it waited for and names the setting.
func TestDeadlineEndsWait(t *testing.T) {
	ref := secrets.Ref{Backend: "aws", Name: "prod/db"}
	t.Run("slot", func(t *testing.T) {
		g, _ := New(Config{Concurrency: 1})
		hold, held := make(chan struct{}), make(chan struct{})
		go func() {
			_ = g.Do(context.Background(), ref, func(context.Context) error { close(held); <-hold; return nil })
		}()
		<-held
		defer close(hold)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		called := false
		err := g.Do(ctx, ref, func(context.Context) error { called = true; return nil })
		if called || !errors.Is(err, secrets.ErrUnavailable) || !strings.Contains(err.Error(), "STORE_CONCURRENCY") || !strings.Contains(err.Error(), `aws secret "prod/db"`) {
			t.Fatalf("Do() = %v (called %v), want unavailable naming the object and STORE_CONCURRENCY", err, called)
		}
	})
	t.Run("backoff", func(t *testing.T) {
		// Rand 0.99: each wait is nearly its ceiling.
		g, _ := New(Config{Base: time.Second, Cap: time.Minute, Rand: func() float64 { return 0.99 }})
		throttle := func(context.Context) error { return secrets.Fail(ref, secrets.ErrThrottled, "read less often", nil) }
		ctx, cancel := context.WithTimeout(context.Background(), 3500*time.Millisecond)
		defer cancel()
		calls := 0
		start := time.Now()
		err := g.Do(ctx, ref, func(ctx context.Context) error { calls++; return throttle(ctx) })
		// Tries at 0, ~1s, ~3s; the next would be at ~7s: past the
		// deadline, so the call gives up at once with its last answer.
		if !errors.Is(err, secrets.ErrThrottled) || !strings.Contains(err.Error(), "read less often") {
			t.Fatalf("Do() = %v, want the throttled answer", err)
		}
		if calls != 3 {
			t.Errorf("%d tries, want 3 (waits of ~1s and ~2s within 3.5s)", calls)
		}
		if el := time.Since(start); el > 3500*time.Millisecond {
			t.Errorf("returned after %v, at or after the deadline", el)
		}
		// Another call, while the store is in backoff, waits too; with no
		// time for a try it says why, and never reached the store.
		ctx2, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel2()
		err = g.Do(ctx2, ref, func(context.Context) error { calls++; return nil })
		if calls != 3 || !errors.Is(err, secrets.ErrThrottled) || !strings.Contains(err.Error(), "TIMEOUT") {
			t.Fatalf("Do() = %v (tries %d), want throttled without a try", err, calls)
		}
	})
}

// TestBackoffSharedAndShortened: a throttled answer makes the store's next
// calls wait, up to min(Cap, Base·2^n); successes shorten it step by
// step, other errors leave it.
func TestBackoffSharedAndShortened(t *testing.T) {
	ref := secrets.Ref{Backend: "gcp", Name: "p"}
	g, _ := New(Config{Base: 10 * time.Millisecond, Cap: 40 * time.Millisecond, Rand: func() float64 { return 0.999 }})
	gt := g.of("gcp")
	for range 5 {
		gt.answered(true)
	}
	if gt.streak != 5 {
		t.Fatalf("streak %d after 5 throttled answers", gt.streak)
	}
	start := time.Now()
	if err := g.Do(context.Background(), ref, func(context.Context) error { return nil }); err != nil {
		t.Fatal(err)
	}
	// Base·2^4 = 160ms, capped at 40ms.
	if el := time.Since(start); el < 35*time.Millisecond || el > 2*time.Second {
		t.Errorf("a call during the backoff waited %v, want ~40ms (the cap)", el)
	}
	if gt.streak != 4 {
		t.Errorf("streak %d after a success, want 4", gt.streak)
	}
	// Another store is not in backoff.
	start = time.Now()
	_ = g.Do(context.Background(), secrets.Ref{Backend: "azure"}, func(context.Context) error { return nil })
	if el := time.Since(start); el > 30*time.Millisecond {
		t.Errorf("another store's call waited %v", el)
	}
	// An error that is not throttling is returned as it is, not retried.
	notFound := secrets.Fail(ref, secrets.ErrNotFound, "", nil)
	calls := 0
	if err := g.Do(context.Background(), ref, func(context.Context) error { calls++; return notFound }); err != notFound || calls != 1 {
		t.Errorf("Do() = %v after %d calls, want the not-found error after 1", err, calls)
	}
	// Nor does it say the store recovered.
	if gt.streak != 4 {
		t.Errorf("streak %d after a not-found answer, want 4", gt.streak)
	}
}

func scrape(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}
