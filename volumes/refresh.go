package volumes

import (
	"context"
	"errors"
	"fmt"
	"github.com/dsv-plugin/dsv/render"
	"time"

	"github.com/dsv-plugin/dsv/metrics"
	"github.com/dsv-plugin/dsv/secrets"
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

// startRefresh runs the volume's loop when it has something to do: a
// refresh interval, or leases to renew.
func (d *Driver) startRefresh(v *vol) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if v.stopRefresh != nil || (d.refreshInterval(v.opts, v.dynamic) == 0 && len(v.leases) == 0 && len(v.retiring) == 0 && len(v.status.Stale) == 0) {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	v.stopRefresh = cancel
	d.loops.Add(1)
	go func() {
		defer d.loops.Done()
		d.refreshLoop(ctx, v)
	}()
}

// refreshLoop re-reads a mounted volume at its interval, renews its leases
// at about two thirds of their TTL (with jitter), and swaps in new content
// when anything changed or a lease could not be renewed. Failures keep the
// last good content and back off exponentially.
func (d *Driver) refreshLoop(ctx context.Context, v *vol) {
	log := d.log.With().Str("volume", v.name).Logger()
	d.mu.Lock()
	interval := d.refreshInterval(v.opts, v.dynamic)
	stale := len(v.status.Stale) > 0
	d.mu.Unlock()
	renewFailures := 0
	nextRefresh := time.Time{}
	switch {
	case interval > 0:
		nextRefresh = d.cfg.Now().Add(interval)
	case stale:
		// Mounted from last good values: read again until the store
		// answers, with backoff.
		nextRefresh = d.cfg.Now().Add(staleRetry)
	}
	renewAt := d.renewSchedule(v)
	for {
		next := nextRefresh
		if !renewAt.IsZero() && (next.IsZero() || renewAt.Before(next)) {
			next = renewAt
		}
		if at := d.retireDue(v); !at.IsZero() && (next.IsZero() || at.Before(next)) {
			next = at
		}
		if next.IsZero() {
			<-ctx.Done()
			return
		}
		timer := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		case <-v.kick:
			timer.Stop()
			if !renewAt.IsZero() {
				renewAt = d.cfg.Now()
			}
		}

		d.revokeRetired(v)
		refetch := false
		if !renewAt.IsZero() && !d.cfg.Now().Before(renewAt) {
			select {
			case <-v.kick: // a request to renew now, being met
			default:
			}
			if !d.renewLeases(ctx, v) {
				refetch = true
				renewFailures++
			} else {
				renewFailures = 0
			}
			renewAt = d.renewSchedule(v)
		}
		if (!nextRefresh.IsZero() && !d.cfg.Now().Before(nextRefresh)) || refetch {
			err := d.refreshOnce(ctx, v, refetch)
			if errors.Is(err, context.Canceled) {
				return
			}
			failures := d.recordRefresh(v, err)
			if err != nil {
				log.Warn().Err(err).Int("failures", failures).Msg("refresh failed; keeping the last good content")
			}
			if interval > 0 {
				nextRefresh = d.cfg.Now().Add(backoff(interval, failures))
			} else if err != nil {
				nextRefresh = d.cfg.Now().Add(backoff(staleRetry, failures))
			} else {
				nextRefresh = time.Time{}
			}
			renewAt = d.renewSchedule(v)
		}
		// A lease that could not be renewed and was not replaced (the read
		// failed, or only containers from before a restart hold the
		// volume) is still due: try again after a backoff, not at once.
		if refetch {
			if !renewAt.IsZero() && !renewAt.After(d.cfg.Now()) {
				renewAt = d.cfg.Now().Add(backoff(5*time.Second, renewFailures-1))
			} else {
				renewFailures = 0
			}
		}
	}
}

// backoff doubles the wait per consecutive failure, up to maxBackoff.
func backoff(base time.Duration, failures int) time.Duration {
	d := base
	for i := 0; i < failures && d < maxBackoff; i++ {
		d *= 2
	}
	return min(d, max(base, maxBackoff))
}

// errFrozen: the volume's tmpfs cannot be written (see vol.frozen).
var errFrozen = errors.New("the tmpfs was mounted read-only by an older dsv and containers still hold it; the new content is written once they stop")

// refreshOnce re-reads every object (bypassing the cache) and swaps the
// files in when anything changed. force swaps even leased content whose
// digest is equal, because its lease is gone. Every backend call in it,
// ALLOW's lookups included, ends by TIMEOUT: the volume's lock is held, and
// docker run and stop of the volume wait for it. Revocations run after the
// lock is released.
func (d *Driver) refreshOnce(ctx context.Context, v *vol, force bool) error {
	var drop []render.HeldLease
	defer func() { d.revoke(v.name, &render.Content{Leases: drop}) }()
	v.op.Lock()
	defer v.op.Unlock()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	d.mu.Lock()
	mounted, frozen, opts, old := v.mounted, v.frozen, v.opts, v.digest
	d.mu.Unlock()
	if !mounted {
		// Only containers from before a restart hold this volume; their
		// tmpfs is out of reach, so there is nothing to swap.
		return nil
	}

	rctx, cancel := context.WithTimeout(ctx, d.cfg.Fetcher.Timeout()+mountSlack)
	c, err := d.renderer.Render(rctx, opts, true)
	cancel()
	if err != nil {
		if c != nil {
			drop = c.Leases
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	now := d.cfg.Now().UTC()
	var stale error
	if len(c.Stale) > 0 {
		stale = staleError(c.Stale)
	}
	d.mu.Lock()
	v.status.Stale = c.Stale
	d.mu.Unlock()
	if c.Digest == old && !force {
		drop = c.Leases // unchanged: the new leases are not needed
		d.mu.Lock()
		if stale == nil {
			v.status.FetchedAt = now
		}
		v.status.Versions = c.Versions
		d.mu.Unlock()
		return stale
	}
	if frozen {
		drop = c.Leases
		return errFrozen
	}
	if opts.Layout == render.LayoutFile {
		d.log.Warn().Str("volume", v.name).Msg("rewriting a layout=file volume in place: readers may see a partial file; use layout=dir")
	}
	swapped, werr := d.writeFiles(d.fs.Side(v.name), opts, c.Files, false)
	if !swapped {
		// Readers still see the old files, which still need their leases.
		drop = c.Leases
		return werr
	}
	// Readers see the new files (even if the write's clean-up failed):
	// the volume holds the new leases; the old ones retire.
	d.mu.Lock()
	retired := len(v.retiring)
	drop = d.retireLocked(v, v.leases, now)
	v.leases = c.Leases
	v.digest = c.Digest
	v.dynamic = v.dynamic || c.Dynamic
	v.status.Versions = c.Versions
	v.status.FetchedAt = now
	v.status.ChangedAt = now
	serr := d.saveLocked()
	d.mu.Unlock()
	d.log.Info().Str("volume", v.name).Int("files", len(c.Files)).Msg("content changed; swapped atomically")
	d.cfg.Metrics.Swapped(v.name)
	if spec := d.cfg.Defaults.NotifyOf(opts); !spec.IsZero() && d.cfg.Notifier != nil {
		res := d.cfg.Notifier.Notify(ctx, v.name, spec)
		d.mu.Lock()
		v.status.Notified = &res
		// The grace of the replaced leases starts once the containers
		// were told.
		for i := retired; i < len(v.retiring); i++ {
			v.retiring[i].RevokeAt = res.At.Add(d.leaseGrace(opts))
		}
		serr = errors.Join(serr, d.saveLocked())
		d.mu.Unlock()
	}
	return errors.Join(werr, serr, stale)
}

// leaseGrace is how long v keeps a lease of replaced content.
func (d *Driver) leaseGrace(o render.Options) time.Duration {
	if o.LeaseGraceSet {
		return o.LeaseGrace
	}
	return d.cfg.LeaseGrace
}

// retireLocked puts leases of replaced content aside until their grace
// ends: the app's open connections (a database session) may still use
// them, as with Vault Agent and the CSI driver, which never revoke on a
// re-render. It returns those to revoke now (no grace). d.mu must be held.
func (d *Driver) retireLocked(v *vol, leases []render.HeldLease, now time.Time) []render.HeldLease {
	grace := d.leaseGrace(v.opts)
	if grace <= 0 {
		return leases
	}
	for _, l := range leases {
		if l.Lease.ID == "" {
			continue
		}
		v.retiring = append(v.retiring, retiredLease{HeldLease: l, RevokeAt: now.Add(grace)})
		d.log.Info().Str("volume", v.name).Str("lease", leasePrefix(l.Lease.ID)).Str("grace", grace.String()).Msg("lease of replaced content kept for its grace period")
	}
	return nil
}

// retireDue is when the first retiring lease of v is due; zero if none.
func (d *Driver) retireDue(v *vol) time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	var at time.Time
	for _, r := range v.retiring {
		if at.IsZero() || r.RevokeAt.Before(at) {
			at = r.RevokeAt
		}
	}
	return at
}

// revokeRetired revokes the retiring leases of v whose grace has ended.
func (d *Driver) revokeRetired(v *vol) {
	now := d.cfg.Now()
	var due []render.HeldLease
	d.mu.Lock()
	var keep []retiredLease
	for _, r := range v.retiring {
		if now.Before(r.RevokeAt) {
			keep = append(keep, r)
			continue
		}
		due = append(due, r.HeldLease)
	}
	v.retiring = keep
	if len(due) > 0 {
		_ = d.saveLocked()
	}
	d.mu.Unlock()
	d.revoke(v.name, &render.Content{Leases: due})
}

// recordRefresh updates the status after a refresh; it returns the number
// of consecutive failures.
func (d *Driver) recordRefresh(v *vol, err error) int {
	d.cfg.Metrics.Refreshed(v.name, err)
	d.mu.Lock()
	defer d.mu.Unlock()
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

// renewSchedule is when the earliest lease is due for renewal: two thirds
// of its duration after it was granted or last renewed, minus up to 10%
// jitter; now for a lease whose terms' start is unknown. Zero when there is
// nothing to renew.
func (d *Driver) renewSchedule(v *vol) time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	var at time.Time
	for _, l := range v.leases {
		if l.Lease.Duration <= 0 {
			continue
		}
		if l.Since.IsZero() {
			return d.cfg.Now()
		}
		wait := time.Duration(float64(l.Lease.Duration) * 2 / 3 * (1 - 0.1*d.cfg.Jitter()))
		t := l.Since.Add(wait)
		if at.IsZero() || t.Before(at) {
			at = t
		}
	}
	return at
}

// renewLeases renews every lease of the volume. It returns false when one
// could not be renewed (not renewable, at its max TTL, revoked): the
// content must then be fetched anew.
func (d *Driver) renewLeases(ctx context.Context, v *vol) bool {
	d.mu.Lock()
	leases := append([]render.HeldLease(nil), v.leases...)
	d.mu.Unlock()
	ok := true
	renewed := make([]render.HeldLease, 0, len(leases))
	for _, l := range leases {
		lm, isLM := d.cfg.Registry.LeaseManager(l.Ref.Backend)
		if !isLM || !l.Lease.Renewable {
			d.cfg.Metrics.LeaseRenewal(v.name, l.Ref.Backend, metrics.RenewalNotRenewable)
			ok = false
			renewed = append(renewed, l)
			continue
		}
		asked := d.cfg.Now().UTC()
		rctx, cancel := context.WithTimeout(ctx, d.cfg.Fetcher.Timeout())
		nl, err := lm.Renew(rctx, l.Ref, l.Lease)
		cancel()
		if err != nil || nl.Duration < l.Lease.Duration/2 {
			// Failed, or capped by its max TTL: fetch a fresh secret now,
			// before the old one expires.
			if err != nil {
				d.log.Warn().Str("volume", v.name).Str("lease", leasePrefix(l.Lease.ID)).Err(err).Msg("lease renewal failed; fetching a fresh secret")
				d.cfg.Metrics.LeaseRenewal(v.name, l.Ref.Backend, metrics.RenewalFailed)
			} else {
				d.log.Info().Str("volume", v.name).Str("lease", leasePrefix(l.Lease.ID)).Msg("lease near its max TTL; fetching a fresh secret")
				d.cfg.Metrics.LeaseRenewal(v.name, l.Ref.Backend, metrics.RenewalMaxTTL)
			}
			ok = false
			if err == nil {
				l.Lease, l.Since = nl, asked
			}
			renewed = append(renewed, l)
			continue
		}
		l.Lease, l.Since = nl, asked
		renewed = append(renewed, l)
		d.log.Debug().Str("volume", v.name).Str("lease", leasePrefix(l.Lease.ID)).Str("ttl", nl.Duration.String()).Msg("lease renewed")
		d.cfg.Metrics.LeaseRenewal(v.name, l.Ref.Backend, metrics.RenewalRenewed)
	}
	d.mu.Lock()
	if len(v.leases) == len(leases) {
		v.leases = renewed
	}
	v.status.RenewedAt = d.cfg.Now().UTC()
	_ = d.saveLocked()
	d.mu.Unlock()
	return ok
}

// revoke hands back the leases of content that is not (or no longer) used.
func (d *Driver) revoke(volume string, c *render.Content) {
	if c == nil {
		return
	}
	for _, l := range c.Leases {
		lm, ok := d.cfg.Registry.LeaseManager(l.Ref.Backend)
		if !ok || l.Lease.ID == "" {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), d.cfg.Fetcher.Timeout())
		err := lm.Revoke(ctx, l.Ref, l.Lease.ID)
		cancel()
		if err != nil {
			d.log.Warn().Str("volume", volume).Str("lease", leasePrefix(l.Lease.ID)).Err(err).Msg("lease revocation failed")
			continue
		}
		d.log.Info().Str("volume", volume).Str("lease", leasePrefix(l.Lease.ID)).Msg("lease revoked")
	}
}

// resume runs at start-up: volumes whose tmpfs survived get their refresh
// loop again; leases of volumes that containers still use are renewed
// again; the others are revoked.
func (d *Driver) resume() {
	var loops []*vol
	revoke := map[string][]render.HeldLease{}
	d.mu.Lock()
	for _, v := range d.vols {
		switch {
		case (len(v.leases) > 0 || len(v.retiring) > 0) && len(v.ids) == 0 && len(v.stale) == 0:
			revoke[v.name] = v.end()
		case v.mounted || len(v.leases) > 0 || len(v.retiring) > 0:
			loops = append(loops, v)
			// Leases read by the previous process: their issuer (a
			// Vault login token) may have gone with it. Renew first
			// thing, which replaces them if so; asked before the loop
			// starts, so its first renewal meets the request.
			if len(v.leases) > 0 {
				kick(v)
			}
		}
	}
	_ = d.saveLocked()
	d.mu.Unlock()
	// The loops start once the state is saved: a renewal due at once
	// saves too.
	for _, v := range loops {
		d.startRefresh(v)
	}
	for name, leases := range revoke {
		go d.revoke(name, &render.Content{Leases: leases})
	}
}

// kick asks v's loop to renew its leases now.
func kick(v *vol) {
	select {
	case v.kick <- struct{}{}:
	default:
	}
}

// watchIssuers renews at once the leases of a backend whose issuer ended
// (secrets.IssuerNotifier: a Vault login token reached its end, and its
// leases with it): Renew then fails for the leases it issued, and a fresh
// secret replaces them before they are gone.
func (d *Driver) watchIssuers() {
	ctx, cancel := context.WithCancel(context.Background())
	d.stopWatch = cancel
	for _, name := range d.cfg.Registry.Names() {
		b, _ := d.cfg.Registry.Get(name)
		n, ok := b.(secrets.IssuerNotifier)
		if !ok {
			continue
		}
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-n.IssuerEnded():
				}
				d.mu.Lock()
				for _, v := range d.vols {
					for _, l := range v.leases {
						if l.Ref.Backend == name {
							kick(v)
							break
						}
					}
				}
				d.mu.Unlock()
				d.log.Info().Str("backend", name).Msg("a login that issued leases ended; renewing them now")
			}
		}()
	}
}
