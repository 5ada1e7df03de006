package volumes

import (
	"context"
	"sync"
	"time"

	"github.com/dsv-plugin/dsv/render"
)

// pendingRevocation is a lease that no mount uses any more, to revoke.
// Persisted until done, so that a restart (a disable, an upgrade) right
// after an unmount does not lose it.
type pendingRevocation struct {
	Volume string `json:"volume"`
	render.HeldLease
	Tries  int       `json:"tries,omitempty"`
	NextAt time.Time `json:"nextAt,omitzero"`
}

// maxRevokeTries bounds the attempts at a lease whose end is unknown.
const maxRevokeTries = 20

// revoker revokes leases one at a time, off every volume's lock, with
// retries and backoff, until each is revoked or has expired anyway.
type revoker struct {
	d    *Driver
	wake chan struct{}

	mu    sync.Mutex
	queue []pendingRevocation
}

func newRevoker(d *Driver, pending []pendingRevocation) *revoker {
	return &revoker{d: d, wake: make(chan struct{}, 1), queue: pending}
}

// add queues the leases of content that nothing uses any more. The
// caller saves the state, which then holds them until they are done.
func (r *revoker) add(volume string, leases []render.HeldLease) {
	n := 0
	r.mu.Lock()
	for _, l := range leases {
		if _, ok := r.d.cfg.Registry.LeaseManager(l.Ref.Backend); !ok || l.Lease.ID == "" {
			continue
		}
		r.queue = append(r.queue, pendingRevocation{Volume: volume, HeldLease: l})
		n++
	}
	r.mu.Unlock()
	if n > 0 {
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
}

// discard queues leases that nothing uses (content not mounted, not
// swapped in, or past its grace) for revocation, and saves the state,
// which then holds them until they are done.
func (d *Driver) discard(volume string, leases []render.HeldLease) {
	d.revoker.add(volume, leases)
	_ = d.save()
}

// pending is the queue, for the state.
func (r *revoker) pending() []pendingRevocation {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]pendingRevocation(nil), r.queue...)
}

// run revokes what is due whenever something is queued or a retry is
// due, until ctx ends.
func (r *revoker) run(ctx context.Context) {
	for {
		next := r.runDue(ctx)
		var timer *time.Timer
		var fire <-chan time.Time
		if !next.IsZero() {
			timer = time.NewTimer(time.Until(next))
			fire = timer.C
		}
		select {
		case <-ctx.Done():
		case <-r.wake:
		case <-fire:
		}
		if timer != nil {
			timer.Stop()
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// runDue makes one attempt at each revocation that is due, with no lock
// held during the calls, and returns when the next retry is due (zero:
// none left). A lease revoked or expired leaves the queue; one that
// failed is tried again after a backoff.
func (r *revoker) runDue(ctx context.Context) time.Time {
	now := r.d.cfg.Now()
	r.mu.Lock()
	var due []pendingRevocation
	for _, p := range r.queue {
		if !now.Before(p.NextAt) {
			due = append(due, p)
		}
	}
	r.mu.Unlock()
	if len(due) == 0 {
		return r.nextAt()
	}
	done := map[string]bool{}
	retry := map[string]pendingRevocation{}
	for _, p := range due {
		if ctx.Err() != nil {
			break
		}
		lm, ok := r.d.cfg.Registry.LeaseManager(p.Ref.Backend)
		if !ok {
			done[p.Lease.ID] = true
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, r.d.cfg.Fetcher.Timeout())
		err := r.d.cfg.Fetcher.Through(cctx, p.Ref, func(ctx context.Context) error { return lm.Revoke(ctx, p.Ref, p.Lease.ID) })
		cancel()
		log := r.d.log.With().Str("volume", p.Volume).Str("lease", leasePrefix(p.Lease.ID)).Logger()
		if err == nil {
			log.Info().Msg("lease revoked")
			done[p.Lease.ID] = true
			continue
		}
		if ctx.Err() != nil {
			break
		}
		p.Tries++
		now := r.d.cfg.Now()
		end := p.Since.Add(p.Lease.Duration)
		if (!p.Since.IsZero() && p.Lease.Duration > 0 && !now.Before(end)) || p.Tries >= maxRevokeTries {
			log.Error().Err(err).Int("tries", p.Tries).Msg("lease revocation failed; given up (the lease has expired or cannot be revoked)")
			done[p.Lease.ID] = true
			continue
		}
		p.NextAt = now.Add(backoff(time.Second, p.Tries-1))
		log.Warn().Err(err).Int("tries", p.Tries).Time("retryAt", p.NextAt).Msg("lease revocation failed; retrying")
		retry[p.Lease.ID] = p
	}
	r.mu.Lock()
	keep := r.queue[:0:0]
	for _, p := range r.queue {
		switch q, ok := retry[p.Lease.ID]; {
		case done[p.Lease.ID]:
		case ok:
			keep = append(keep, q)
		default:
			keep = append(keep, p)
		}
	}
	r.queue = keep
	r.mu.Unlock()
	_ = r.d.save()
	return r.nextAt()
}

// nextAt is when the next queued revocation is due; zero: none queued.
func (r *revoker) nextAt() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	var at time.Time
	for _, p := range r.queue {
		if at.IsZero() || p.NextAt.Before(at) {
			at = p.NextAt
		}
	}
	if len(r.queue) > 0 && at.IsZero() {
		at = r.d.cfg.Now()
	}
	return at
}
