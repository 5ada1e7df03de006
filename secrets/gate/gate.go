// Package gate stands between a node and each secret store it reads, so
// that a fleet of nodes does not stampede a store: it caps the calls in
// flight to one store (STORE_CONCURRENCY), and when the store throttles a
// call (secrets.ErrThrottled) every call of the node to that store waits
// out one shared backoff, exponential with full jitter, and the throttled
// call is tried again within its context's deadline (TIMEOUT). A mount
// during a storm then succeeds late rather than fails.
//
// Reads go through it in the cache; lease renewals and revocations through
// cache.Fetcher.Through. One Gates serves every store; a store is a backend
// name. The AWS
// clients no longer retry throttling themselves (see awsjson.ResolveRetryer):
// each throttled answer of aws and ssm costs one call of the store. Vault's,
// Google's and Azure's clients still make their few retries first.
package gate

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/dsv-plugin/dsv/metrics"
	"github.com/dsv-plugin/dsv/secrets"
)

// Defaults of the backoff after a throttled answer.
const (
	// DefaultBase is the first backoff's upper bound.
	DefaultBase = 100 * time.Millisecond
	// DefaultCap bounds every backoff: under TIMEOUT's default of 5s, a
	// throttled call still gets a few more tries.
	DefaultCap = 2 * time.Second
)

// Config tunes the gates.
type Config struct {
	// Concurrency caps the calls in flight to one store; 0: no cap. The
	// STORE_CONCURRENCY setting.
	Concurrency int
	// Base and Cap bound the backoff: after n throttled answers in a row
	// a call waits rand(0, min(Cap, Base·2^n)). Zero: the defaults.
	Base, Cap time.Duration
	// Metrics counts throttled answers and waits; nil counts nothing.
	Metrics *metrics.Metrics
	// Rand returns a number in [0,1), from any goroutine; rand.Float64
	// when nil.
	Rand func() float64
}

// Gates holds one gate per store, made on first use. Safe for concurrent
// use.
type Gates struct {
	cfg Config

	mu    sync.Mutex
	gates map[string]*gate
}

// New returns the gates of cfg; a negative Concurrency is an error.
func New(cfg Config) (*Gates, error) {
	if cfg.Concurrency < 0 {
		return nil, errors.New("gate: concurrency must not be negative")
	}
	if cfg.Base <= 0 {
		cfg.Base = DefaultBase
	}
	if cfg.Cap <= 0 {
		cfg.Cap = DefaultCap
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Float64
	}
	return &Gates{cfg: cfg, gates: map[string]*gate{}}, nil
}

// gate is one store's: its slots and its backoff.
type gate struct {
	// slots holds a token per call in flight; nil: no cap.
	slots chan struct{}

	mu sync.Mutex
	// streak counts throttled answers, less one per success: the
	// exponent of the backoff.
	streak int
}

func (g *Gates) of(store string) *gate {
	g.mu.Lock()
	defer g.mu.Unlock()
	gt, ok := g.gates[store]
	if !ok {
		gt = &gate{}
		if g.cfg.Concurrency > 0 {
			gt.slots = make(chan struct{}, g.cfg.Concurrency)
		}
		g.gates[store] = gt
	}
	return gt
}

// Do runs call, a call to ref's store, through the store's gate: it waits
// for a slot and for the store's backoff, and tries again while the store
// answers that it throttled the call, until ctx ends. Its error is call's,
// or, when ctx ended first, the last throttled answer or an error that
// says what the call waited for. A nil *Gates runs call at once.
func (g *Gates) Do(ctx context.Context, ref secrets.Ref, call func(context.Context) error) error {
	if g == nil {
		return call(ctx)
	}
	gt := g.of(ref.Backend)
	var throttled error // the last throttled answer
	for {
		release, err := g.acquire(ctx, gt, ref, throttled)
		if err != nil {
			return err
		}
		// The backoff is waited holding the slot: at most Concurrency
		// calls wait to try again, so the store sees at most Concurrency
		// tries per backoff, not one per caller.
		if err := g.backoff(ctx, gt, ref, throttled); err != nil {
			release()
			return err
		}
		err = call(ctx)
		release()
		if !errors.Is(err, secrets.ErrThrottled) {
			if err == nil {
				gt.answered(false)
			}
			return err
		}
		gt.answered(true)
		g.cfg.Metrics.StoreThrottled(ref.Backend)
		throttled = err
		if ctx.Err() != nil {
			return err
		}
	}
}

// answered records an answer of the store: a throttled one lengthens the
// backoff, a success shortens it by one step. Not a reset: under
// sustained throttling most answers are successes, and a reset by each
// would send every waiter back at once.
func (gt *gate) answered(throttled bool) {
	gt.mu.Lock()
	defer gt.mu.Unlock()
	switch {
	case throttled:
		gt.streak = min(gt.streak+1, 30)
	case gt.streak > 0:
		gt.streak--
	}
}

// throttling reports whether the store's last answers were throttled.
func (gt *gate) throttling() bool {
	gt.mu.Lock()
	defer gt.mu.Unlock()
	return gt.streak > 0
}

// backoff waits, while the store is throttling, a random time up to
// min(Cap, Base·2^streak) (full jitter: the waiters of a node and of the
// fleet spread out). It returns an error when ctx ends first.
func (g *Gates) backoff(ctx context.Context, gt *gate, ref secrets.Ref, throttled error) error {
	gt.mu.Lock()
	streak := gt.streak
	gt.mu.Unlock()
	if streak == 0 {
		return nil
	}
	ceiling := g.cfg.Cap
	if shift := streak - 1; shift < 30 && g.cfg.Base<<shift < ceiling {
		ceiling = g.cfg.Base << shift
	}
	wait := time.Duration(g.cfg.Rand() * float64(ceiling))
	if wait <= 0 {
		return nil
	}
	if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < wait {
		// No try before the deadline: the same failure, sooner.
		return g.gaveUp(ref, throttled, ctx.Err())
	}
	start := time.Now()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		g.cfg.Metrics.GateWait(ref.Backend, metrics.WaitBackoff, time.Since(start))
		return g.gaveUp(ref, throttled, ctx.Err())
	case <-t.C:
	}
	g.cfg.Metrics.GateWait(ref.Backend, metrics.WaitBackoff, time.Since(start))
	return nil
}

// gaveUp is the error of a call whose context ended in the store's
// backoff: its own last throttled answer, else one that says the store
// throttled the node's other calls.
func (g *Gates) gaveUp(ref secrets.Ref, throttled, cause error) error {
	if throttled != nil {
		return throttled
	}
	if cause == nil {
		cause = context.DeadlineExceeded
	}
	return secrets.Fail(ref, secrets.ErrThrottled,
		"the store throttled this node's calls, which wait for it to recover; read less often (CACHE_TTL, the refresh interval), lower STORE_CONCURRENCY or raise TIMEOUT",
		fmt.Errorf("not tried before the deadline: %w", cause))
}

// acquire takes one of the store's slots, waiting while STORE_CONCURRENCY
// calls are in flight; release gives it back.
func (g *Gates) acquire(ctx context.Context, gt *gate, ref secrets.Ref, throttled error) (release func(), err error) {
	if gt.slots == nil {
		return func() {}, nil
	}
	select {
	case gt.slots <- struct{}{}:
		return func() { <-gt.slots }, nil
	default:
	}
	start := time.Now()
	select {
	case gt.slots <- struct{}{}:
		g.cfg.Metrics.GateWait(ref.Backend, metrics.WaitConcurrency, time.Since(start))
		return func() { <-gt.slots }, nil
	case <-ctx.Done():
		g.cfg.Metrics.GateWait(ref.Backend, metrics.WaitConcurrency, time.Since(start))
		if throttled != nil {
			return nil, throttled
		}
		if gt.throttling() {
			// The slots are held by calls waiting out the backoff.
			return nil, g.gaveUp(ref, nil, ctx.Err())
		}
		return nil, secrets.Fail(ref, secrets.ErrUnavailable,
			"raise STORE_CONCURRENCY (0: no cap) or TIMEOUT, or read less often (CACHE_TTL, the refresh interval)",
			fmt.Errorf("waited for one of the %d calls in flight to the store (STORE_CONCURRENCY) until the deadline: %w", cap(gt.slots), ctx.Err()))
	}
}
