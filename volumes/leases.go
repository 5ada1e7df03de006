package volumes

import (
	"context"
	"time"

	"github.com/dsv-plugin/dsv/metrics"
	"github.com/dsv-plugin/dsv/render"
	"github.com/dsv-plugin/dsv/secrets"
)

// The leases a volume holds: renewed at about two thirds of their TTL
// while any mount may read their content, retired with a grace when a
// refresh replaces it, and revoked once nothing uses them: by the
// revoker, which keeps each revocation in the state until it is done, so
// that neither the volume's lock nor a restart can lose or delay it.

// leaseGrace is how long v keeps a lease of replaced content.
func (d *Driver) leaseGrace(o render.Options) time.Duration {
	if o.LeaseGraceSet {
		return o.LeaseGrace
	}
	return d.cfg.LeaseGrace
}

// retire puts the leases of content that in no longer shows aside until
// their grace ends: the app's open connections (a database session) may
// still use them, as with Vault Agent and the CSI driver, which never
// revoke on a re-render. Without a grace they are revoked now.
func (d *Driver) retire(v *vol, in *instance, leases []render.HeldLease, now time.Time) {
	grace := d.leaseGrace(v.opts)
	if grace <= 0 {
		d.revoker.add(v.name, leases)
		return
	}
	v.retire(in, leases, now.Add(grace))
	for _, l := range leases {
		if l.Lease.ID != "" {
			d.log.Info().Str("volume", v.name).Str("lease", leasePrefix(l.Lease.ID)).Str("grace", grace.String()).Msg("lease of replaced content kept for its grace period")
		}
	}
}

// renewDue is when v's leases are next due for renewal: two thirds of the
// shortest lease's duration after its terms began, minus up to 10%
// jitter (per volume, so that volumes and nodes do not renew in the same
// second); now for a lease whose terms' start is unknown or on request;
// never before a failed renewal's backoff ends. Zero: nothing to renew.
func (d *Driver) renewDue(v *vol, now time.Time) time.Time {
	v.mu.Lock()
	defer v.mu.Unlock()
	var at time.Time
	for _, in := range v.instances {
		for _, l := range in.leases {
			if l.Lease.Duration <= 0 {
				continue
			}
			t := v.scheduledLocked(l)
			if l.Since.IsZero() || v.renewNow {
				t = now
			}
			if at.IsZero() || t.Before(at) {
				at = t
			}
		}
	}
	if !at.IsZero() && at.Before(v.renewRetryAt) {
		at = v.renewRetryAt
	}
	return at
}

// scheduledLocked is when a lease is due by its terms: two thirds of its
// duration after they began, minus the volume's jitter; v.mu held.
func (v *vol) scheduledLocked(l render.HeldLease) time.Time {
	return l.Since.Add(time.Duration(float64(l.Lease.Duration) * 2 / 3 * (1 - 0.1*v.jitter)))
}

// renewLeases renews every lease of every instance of v, without any
// lock held. A lease that cannot be renewed (not renewable, failed, capped
// by its max TTL) marks its instance for a fresh read; a renewal that
// returns after its lease moved on (an unmount, a swap) changes nothing.
func (d *Driver) renewLeases(ctx context.Context, v *vol) {
	failed := false
	now := d.cfg.Now()
	v.mu.Lock()
	replaceNow := v.replaceNow
	v.mu.Unlock()
	for _, r := range v.toRenew() {
		l := r.lease
		lm, isLM := d.cfg.Registry.LeaseManager(l.Ref.Backend)
		if !isLM || !l.Lease.Renewable {
			// Nothing to ask: replaced when due by its terms or when its
			// issuer ended, not at every renewal of the volume's other
			// leases nor at a restart (a certificate is not re-issued by
			// every plugin upgrade).
			v.mu.Lock()
			due := l.Since.IsZero() || !now.Before(v.scheduledLocked(l))
			v.mu.Unlock()
			if !due && !replaceNow {
				continue
			}
			d.cfg.Metrics.LeaseRenewal(v.name, l.Ref.Backend, metrics.RenewalNotRenewable)
			v.renewed(r, nil, true)
			failed = true
			continue
		}
		asked := d.cfg.Now().UTC()
		rctx, cancel := context.WithTimeout(ctx, d.cfg.Fetcher.Timeout())
		var nl secrets.Lease
		err := d.cfg.Fetcher.Through(rctx, l.Ref, func(ctx context.Context) error {
			var err error
			nl, err = lm.Renew(ctx, l.Ref, l.Lease)
			return err
		})
		cancel()
		if ctx.Err() != nil {
			return
		}
		switch {
		case err != nil:
			d.log.Warn().Str("volume", v.name).Str("lease", leasePrefix(l.Lease.ID)).Err(err).Msg("lease renewal failed; fetching a fresh secret")
			d.cfg.Metrics.LeaseRenewal(v.name, l.Ref.Backend, metrics.RenewalFailed)
			v.renewed(r, nil, true)
			failed = true
		case nl.Duration < l.Lease.Duration/2:
			// Capped by its max TTL: fetch a fresh secret now, before the
			// old one expires.
			d.log.Info().Str("volume", v.name).Str("lease", leasePrefix(l.Lease.ID)).Msg("lease near its max TTL; fetching a fresh secret")
			d.cfg.Metrics.LeaseRenewal(v.name, l.Ref.Backend, metrics.RenewalMaxTTL)
			l.Lease, l.Since = nl, asked
			v.renewed(r, &l, true)
			failed = true
		default:
			l.Lease, l.Since = nl, asked
			if v.renewed(r, &l, false) {
				d.log.Debug().Str("volume", v.name).Str("lease", leasePrefix(l.Lease.ID)).Str("ttl", nl.Duration.String()).Msg("lease renewed")
			}
			d.cfg.Metrics.LeaseRenewal(v.name, l.Ref.Backend, metrics.RenewalRenewed)
		}
	}
	now = d.cfg.Now()
	v.mu.Lock()
	v.renewNow, v.replaceNow = false, false
	v.status.RenewedAt = now.UTC()
	if failed {
		// Not renewed and maybe not replaced (the read failed, or the
		// instance is detached): try again after a backoff, not at once.
		v.renewRetryAt = now.Add(backoff(5*time.Second, v.renewFailures))
		v.renewFailures++
	} else {
		v.renewRetryAt, v.renewFailures = time.Time{}, 0
	}
	v.mu.Unlock()
	_ = d.save()
}

// kick asks v's loop to renew its leases now, and to replace those that
// cannot be renewed: their issuer ended.
func kick(v *vol) {
	v.mu.Lock()
	v.renewNow, v.replaceNow = true, true
	v.mu.Unlock()
	select {
	case v.kick <- struct{}{}:
	default:
	}
}

// watchIssuers renews at once the leases of a backend whose issuer ended
// (secrets.IssuerNotifier: a Vault login token reached its end, and its
// leases with it): Renew then fails for the leases it issued, and a fresh
// secret replaces them before they are gone.
func (d *Driver) watchIssuers(ctx context.Context) {
	for _, name := range d.cfg.Registry.Names() {
		b, _ := d.cfg.Registry.Get(name)
		n, ok := b.(secrets.IssuerNotifier)
		if !ok {
			continue
		}
		d.bg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-n.IssuerEnded():
				}
				for _, v := range d.all() {
					for _, r := range v.toRenew() {
						if r.lease.Ref.Backend == name {
							kick(v)
							break
						}
					}
				}
				d.log.Info().Str("backend", name).Msg("a login that issued leases ended; renewing them now")
			}
		})
	}
}

// leasePrefix shows enough of a lease id to find it, not all of it.
func leasePrefix(id string) string {
	if len(id) > 24 {
		return id[:24] + "…"
	}
	return id
}
