package volumes

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dsv-plugin/dsv/render"
	"github.com/dsv-plugin/dsv/tmpfs"
)

// maxBackoff caps the wait after failed refreshes.
const maxBackoff = 5 * time.Minute

// staleRetry is the first wait before a volume without a refresh interval
// reads again, after a failure or a mount from last good values.
const staleRetry = 5 * time.Second

// staleError: the refresh served last good values; the loop backs off
// and tries again until the store answers.
type staleError []render.StaleObject

func (e staleError) Error() string {
	msg := "the store is unavailable; serving last good values:"
	for _, s := range e {
		msg += fmt.Sprintf(" %s (read %s ago): %s;", s.Object, s.Age.Truncate(time.Second), s.Err)
	}
	return msg[:len(msg)-1]
}

// refreshInterval is a volume's effective refresh: its option, else the
// REFRESH setting; never for a file-layout volume, whose single
// bind-mounted file cannot be swapped atomically. REFRESH skips dynamic
// content: each read would issue new credentials and revoke those in use
// (their leases are renewed instead); a volume's own refresh option still
// re-issues, e.g. certificates, on purpose.
func (d *Driver) refreshInterval(o render.Options, dynamic bool) time.Duration {
	switch {
	case o.Layout == render.LayoutFile:
		return 0
	case o.RefreshSet:
		return o.Refresh
	case dynamic:
		return 0
	}
	return d.cfg.Refresh
}

// needsLoop reports whether v has anything for a loop to do: content to
// re-read, leases to renew or retiring leases to revoke.
func (d *Driver) needsLoop(v *vol) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.live() != nil && (d.refreshInterval(v.opts, v.dynamic) > 0 || len(v.status.Stale) > 0) {
		return true
	}
	for _, in := range v.instances {
		if len(in.leases) > 0 || len(in.retiring) > 0 {
			return true
		}
	}
	return false
}

// startLoop runs the volume's loop when it has something to do and none
// runs; it schedules the first re-read (see scheduleLocked).
func (d *Driver) startLoop(v *vol) {
	if !d.needsLoop(v) {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.looping || v.removed {
		return
	}
	d.scheduleLocked(v)
	v.looping = true
	if d.cfg.manualLoops {
		return
	}
	ctx, cancel := context.WithCancel(d.ctx)
	v.stopRefresh = cancel
	d.bg.Go(func() { d.loop(ctx, v) })
}

// scheduleLocked sets the first re-read of a volume; v.mu held. With an
// interval it comes at a point of (interval/2, interval] set by the
// volume's jitter, then every interval (turn): the schedule follows the
// mount, and after a storm (every node's engine restarted at once) every
// node would otherwise read every object in the same second, at every
// interval. Never later than one interval after the mount's read, so a
// rotation still reaches the files within the interval.
func (d *Driver) scheduleLocked(v *vol) {
	if !v.refreshAt.IsZero() {
		return
	}
	switch i := d.refreshInterval(v.opts, v.dynamic); {
	case i > 0:
		v.refreshAt = d.cfg.Now().Add(firstRefresh(i, v.jitter))
	case len(v.status.Stale) > 0:
		// Mounted from last good values: read again until the store
		// answers, with backoff.
		v.refreshAt = d.cfg.Now().Add(staleRetry)
	}
}

// firstRefresh is how long after a mount the first re-read of an interval
// comes, for a jitter in [0,1): in (interval/2, interval].
func firstRefresh(interval time.Duration, jitter float64) time.Duration {
	return interval - time.Duration(float64(interval)/2*jitter)
}

// stopLoop ends v's loop, if one runs.
func (v *vol) stopLoop() {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.stopRefresh != nil {
		v.stopRefresh()
		v.stopRefresh = nil
	}
	v.looping, v.refreshAt = false, time.Time{}
}

// loop waits for the next thing due on v and does it, until ctx ends.
func (d *Driver) loop(ctx context.Context, v *vol) {
	for {
		var fire <-chan time.Time
		var timer *time.Timer
		if next := d.nextDue(v); !next.IsZero() {
			timer = time.NewTimer(time.Until(next))
			fire = timer.C
		}
		select {
		case <-ctx.Done():
		case <-fire:
		case <-v.kick:
		}
		if timer != nil {
			timer.Stop()
		}
		if ctx.Err() != nil {
			return
		}
		d.turn(ctx, v)
	}
}

// nextDue is when something is next due on v: a re-read, a renewal, or
// the end of a retiring lease's grace. Zero: nothing.
func (d *Driver) nextDue(v *vol) time.Time {
	at := d.renewDue(v, d.cfg.Now())
	v.mu.Lock()
	defer v.mu.Unlock()
	earliest := func(t time.Time) {
		if !t.IsZero() && (at.IsZero() || t.Before(at)) {
			at = t
		}
	}
	earliest(v.refreshAt)
	for _, in := range v.instances {
		for _, r := range in.retiring {
			earliest(r.RevokeAt)
		}
	}
	return at
}

// turn does what is due on v now: retiring leases whose grace ended are
// revoked, leases due are renewed, and the content is re-read at its
// interval or when a lease could not be renewed. Failures keep the last
// good content and back off exponentially.
func (d *Driver) turn(ctx context.Context, v *vol) {
	now := d.cfg.Now()
	if due := v.dueRetired(now); len(due) > 0 {
		d.discard(v.name, due)
	}
	if at := d.renewDue(v, now); !at.IsZero() && !now.Before(at) {
		d.renewLeases(ctx, v)
	}
	v.mu.Lock()
	live := v.live()
	refetch := live != nil && live.refetch
	due := !v.refreshAt.IsZero() && !now.Before(v.refreshAt)
	interval := d.refreshInterval(v.opts, v.dynamic)
	v.mu.Unlock()
	if !due && !refetch {
		return
	}
	sw, err := d.refreshOnce(ctx, v, refetch)
	if errors.Is(err, context.Canceled) {
		return
	}
	if sw != nil {
		d.notify(ctx, v, sw)
	}
	failures := d.recordRefresh(v, err)
	if err != nil {
		d.log.Warn().Str("volume", v.name).Err(err).Int("failures", failures).Msg("refresh failed; keeping the last good content")
	}
	now = d.cfg.Now()
	v.mu.Lock()
	switch {
	case interval > 0:
		v.refreshAt = now.Add(backoff(interval, failures))
	case err != nil:
		v.refreshAt = now.Add(backoff(staleRetry, failures))
	default:
		v.refreshAt = time.Time{}
	}
	v.mu.Unlock()
}

// backoff doubles the wait per consecutive failure, up to maxBackoff.
func backoff(base time.Duration, failures int) time.Duration {
	d := base
	for i := 0; i < failures && d < maxBackoff; i++ {
		d *= 2
	}
	return min(d, max(base, maxBackoff))
}

// errFrozen: the volume's tmpfs cannot be written (see instance.frozen).
var errFrozen = errors.New("the tmpfs was mounted read-only by an older dsv and containers still hold it; the new content is written once they stop")

// swap is what a refresh that changed the files did: the instance, and
// the leases it retired.
type swap struct {
	in      *instance
	retired []render.HeldLease
}

// refreshOnce re-reads every object of the published instance (bypassing
// the cache) and swaps the files in when anything changed. force swaps
// even content whose digest is equal, because a lease of it is gone. It
// holds the volume's op across the read (a mount waits for it; every
// read ends by TIMEOUT) but no lock across a revocation or a
// notification: it returns the swap, for the caller to notify.
func (d *Driver) refreshOnce(ctx context.Context, v *vol, force bool) (*swap, error) {
	v.op.Lock()
	defer v.op.Unlock()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	v.mu.Lock()
	in := v.live()
	if in == nil {
		// Only containers from before a restart hold this volume; their
		// tmpfs is out of reach, so there is nothing to swap.
		v.mu.Unlock()
		return nil, nil
	}
	gen, frozen, old, opts := in.gen, in.frozen, in.digest, v.opts
	v.mu.Unlock()

	rctx, cancel := context.WithTimeout(ctx, d.cfg.Fetcher.Timeout()+mountSlack)
	c, err := d.renderer.Render(rctx, opts, true)
	cancel()
	if err != nil {
		if c != nil {
			d.discard(v.name, c.Leases)
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	// Served from last good values: the store is down. Counted as a
	// failure (the loop backs off and reads again), said in the status.
	var stale error
	if len(c.Stale) > 0 {
		stale = staleError(c.Stale)
	}
	now := d.cfg.Now().UTC()
	v.mu.Lock()
	v.status.Stale = c.Stale
	v.mu.Unlock()
	if c.Digest == old && !force {
		// Unchanged: the new leases are not needed.
		d.revoker.add(v.name, c.Leases)
		v.mu.Lock()
		if stale == nil {
			v.status.FetchedAt = now
		}
		v.status.Versions = c.Versions
		v.mu.Unlock()
		_ = d.save()
		return nil, stale
	}
	if frozen {
		d.discard(v.name, c.Leases)
		return nil, errFrozen
	}
	mode := tmpfs.Atomic
	if opts.Layout == render.LayoutFile {
		mode = tmpfs.InPlace
		d.log.Warn().Str("volume", v.name).Msg("rewriting a layout=file volume in place: readers may see a partial file; use layout=dir")
	}
	swapped, werr := d.fs.Write(v.name, c.Files, mode, d.cfg.Now(), d.cfg.CrashAfter)
	if !swapped {
		// Readers still see the old files, which still need their leases.
		d.discard(v.name, c.Leases)
		return nil, werr
	}
	// Readers see the new files (even if the write's clean-up failed):
	// the instance holds the new leases; the old ones retire.
	replaced, ok := v.swap(in, gen, c, now)
	if !ok {
		d.revoker.add(v.name, c.Leases)
	} else {
		d.retire(v, in, replaced, now)
	}
	serr := d.save()
	d.log.Info().Str("volume", v.name).Int("files", len(c.Files)).Msg("content changed; swapped atomically")
	d.cfg.Metrics.Swapped(v.name)
	return &swap{in: in, retired: replaced}, errors.Join(werr, serr, stale)
}

// notify tells the volume's containers of a swap (the notify option),
// with no lock held; the grace of the leases the swap retired starts once
// they were told. The status shows the last notification.
func (d *Driver) notify(ctx context.Context, v *vol, sw *swap) {
	spec := d.cfg.Defaults.NotifyOf(v.opts)
	if spec.IsZero() || d.cfg.Notifier == nil {
		return
	}
	res := d.cfg.Notifier.Notify(ctx, v.name, spec)
	v.mu.Lock()
	v.status.Notified = &res
	if len(sw.retired) > 0 && v.alive(sw.in) {
		at := res.At.Add(d.leaseGrace(v.opts))
		for i, r := range sw.in.retiring {
			for _, l := range sw.retired {
				if r.Lease.ID == l.Lease.ID && r.RevokeAt.Before(at) {
					sw.in.retiring[i].RevokeAt = at
				}
			}
		}
	}
	v.mu.Unlock()
	_ = d.save()
}

// recordRefresh updates the status after a refresh; it returns the number
// of consecutive failures.
func (d *Driver) recordRefresh(v *vol, err error) int {
	d.cfg.Metrics.Refreshed(v.name, err)
	v.mu.Lock()
	defer v.mu.Unlock()
	if err == nil {
		v.status.Failures = 0
		v.status.LastError = ""
		return 0
	}
	v.status.Failures++
	v.status.LastError = err.Error()
	v.status.LastErrorAt = d.cfg.Now().UTC()
	return v.status.Failures
}
