package vault

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/dsv-plugin/dsv/secrets"
)

// Renew extends a lease by its duration, with the identity and namespace of
// ref, and returns its new terms. Vault caps the duration at the lease's
// maximum TTL: a shorter duration than asked means the end is near. A lease
// that has expired or was revoked is ErrNotFound: read the secret again.
func (d *Driver) Renew(ctx context.Context, ref secrets.Ref, lease secrets.Lease) (secrets.Lease, error) {
	ctx, cancel := d.bound(ctx)
	defer cancel()
	ctx = withAttempts(ctx)
	req, err := parseRequest(ref)
	if err != nil {
		return secrets.Lease{}, secrets.Fail(ref, secrets.ErrBadValue, "", err)
	}
	s := d.session(req.identity)
	ns := d.namespace(req)
	increment := int(lease.Duration / time.Second)
	var sec *secret
	err = d.call(ctx, s, func(token string) error {
		// Vault ends a lease with the token that read it: one read with a
		// token this process no longer holds (it ended, or the plugin
		// restarted and logged in anew) cannot be kept alive.
		if now := s.issuerOf(token); lease.Issuer != "" && now != "" && now != lease.Issuer {
			return errIssuerEnded
		}
		var err error
		sec, err = d.api.renewLease(ctx, ns, token, lease.ID, increment)
		return err
	})
	log := d.log.With().Str("secret", ref.Name).Str("namespace", ns).Str("identity", s.label()).Str("lease", leasePrefix(lease.ID)).Logger()
	if errors.Is(err, errIssuerEnded) {
		return secrets.Lease{}, secrets.Fail(ref, secrets.ErrUnavailable, "a fresh secret replaces it", err)
	}
	if err != nil {
		err = d.classify(ctx, ref, op{kind: opRenew, path: "sys/leases/renew"}, err)
		log.Debug().Err(err).Msg("lease renewal failed")
		return secrets.Lease{}, err
	}
	if sec == nil {
		return secrets.Lease{}, secrets.Fail(ref, secrets.ErrUnavailable, "vault answered the renewal with nothing", nil)
	}
	out := secrets.Lease{
		ID:        sec.LeaseID,
		Duration:  time.Duration(sec.LeaseDuration) * time.Second,
		Renewable: sec.Renewable,
	}
	if out.ID == "" {
		out.ID = lease.ID
	}
	out.Issuer = lease.Issuer
	log.Debug().Dur("lease_ttl", out.Duration).Bool("renewable", out.Renewable).Msg("lease renewed")
	return out, nil
}

// errIssuerEnded: the lease was read with a login token that has ended.
var errIssuerEnded = errors.New("the vault token that read this lease has ended, and the lease with it")

// Revoke ends a lease with the identity and namespace of ref. It uses
// sys/leases/revoke/LEASE_ID, so that a policy can allow revoking the
// leases of one path only (sys/leases/revoke/database/creds/app/*). An
// unknown or expired lease is not an error.
func (d *Driver) Revoke(ctx context.Context, ref secrets.Ref, leaseID string) error {
	ctx, cancel := d.bound(ctx)
	defer cancel()
	ctx = withAttempts(ctx)
	req, err := parseRequest(ref)
	if err != nil {
		return secrets.Fail(ref, secrets.ErrBadValue, "", err)
	}
	s := d.session(req.identity)
	ns := d.namespace(req)
	err = d.call(ctx, s, func(token string) error {
		_, err := d.api.write(ctx, ns, token, "sys/leases/revoke/"+leaseID, nil, "")
		return err
	})
	log := d.log.With().Str("secret", ref.Name).Str("namespace", ns).Str("identity", s.label()).Str("lease", leasePrefix(leaseID)).Logger()
	if err != nil {
		if statusOf(err) == 400 || statusOf(err) == 404 {
			log.Debug().Msg("lease already gone")
			return nil
		}
		err = d.classify(ctx, ref, op{kind: opRevoke, path: revokePolicyPath(leaseID)}, err)
		log.Debug().Err(err).Msg("lease revocation failed")
		return err
	}
	log.Debug().Msg("lease revoked")
	return nil
}

// revokePolicyPath is the policy path that allows revoking leaseID: its
// path without the random last segment.
func revokePolicyPath(leaseID string) string {
	if i := strings.LastIndexByte(leaseID, '/'); i >= 0 {
		return "sys/leases/revoke/" + leaseID[:i+1] + "*"
	}
	return "sys/leases/revoke/*"
}
