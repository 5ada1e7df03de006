package vault

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/hashicorp/vault/api"

	"github.com/dsv-plugin/dsv/secrets"
)

// op says what a failed request was for, so that the error can say which
// policy or setting to fix.
type op struct {
	// kind of request: opRead, opWrite, opMounts, opRenew, opRevoke.
	kind string
	// path is the API path a policy must grant, e.g. secret/data/app/db.
	path string
}

const (
	opRead   = "read"
	opWrite  = "write"
	opMounts = "mounts"
	opRenew  = "renew"
	opRevoke = "revoke"
)

// causeError is an underlying error reduced to a message that holds no URL
// (a revoke URL holds a lease id) and no secret, still matching errors.As.
type causeError struct {
	msg string
	err error
}

func (e *causeError) Error() string { return e.msg }
func (e *causeError) Unwrap() error { return e.err }

// classify turns a failed Vault request into a *secrets.Error of ref.
// A failed login is already a *secrets.Error: it gets ref's name.
func (d *Driver) classify(ctx context.Context, ref secrets.Ref, o op, err error) error {
	if e := secrets.FromContext(ctx, ref); e != nil {
		return d.timedOut(ctx, ref, o, e)
	}
	var se *secrets.Error
	if errors.As(err, &se) {
		c := *se
		c.Ref = ref
		return &c
	}
	var re *api.ResponseError
	if errors.As(err, &re) {
		return classifyResponse(ref, o, re)
	}
	return d.transportError(ref, err)
}

// classifyResponse classifies an error answer of Vault.
func classifyResponse(ref secrets.Ref, o op, re *api.ResponseError) error {
	cause := responseCause(re)
	if plainToTLS(re) {
		return secrets.Fail(ref, secrets.ErrUnavailable, "vault serves HTTPS there; use https:// in VAULT_ADDR", cause)
	}
	switch re.StatusCode {
	case http.StatusForbidden:
		return secrets.Fail(ref, secrets.ErrAccessDenied, deniedHint(o), cause)
	case http.StatusNotFound:
		return secrets.Fail(ref, secrets.ErrNotFound, fmt.Sprintf("no secret at %s; check the path and the namespace", o.path), cause)
	case http.StatusBadRequest:
		switch o.kind {
		case opRenew:
			return secrets.Fail(ref, secrets.ErrNotFound, "the lease has expired or was revoked; read the secret again", cause)
		}
		return secrets.Fail(ref, secrets.ErrNotFound, "vault rejected the request; check the secret, method and param.* options", cause)
	case http.StatusTooManyRequests:
		return secrets.Fail(ref, secrets.ErrThrottled, "vault is rate limiting requests (also when tried again until TIMEOUT); read less often: raise CACHE_TTL or the refresh interval, lower STORE_CONCURRENCY, or raise vault's rate limit quota", cause)
	case http.StatusServiceUnavailable:
		return secrets.Fail(ref, secrets.ErrUnavailable, "vault is sealed or has no active node; try again once it is unsealed", cause)
	}
	return secrets.Fail(ref, secrets.ErrUnavailable, "vault failed; try again later", cause)
}

// plainToTLS reports Go's answer to plain HTTP sent to its TLS port.
func plainToTLS(re *api.ResponseError) bool {
	if re.StatusCode != http.StatusBadRequest {
		return false
	}
	for _, m := range re.Errors {
		if strings.Contains(m, "HTTP request to an HTTPS server") {
			return true
		}
	}
	return false
}

// deniedHint names the capability the token's policies need.
func deniedHint(o op) string {
	switch o.kind {
	case opWrite:
		return fmt.Sprintf("the token's policies must grant update on %q", o.path)
	case opMounts:
		return fmt.Sprintf("no secrets engine is mounted at this path, or the token's policies grant nothing under its mount; grant read on the secret's path, %q", o.path)
	case opRenew:
		return `the token's policies must grant update on "sys/leases/renew" (the default policy does)`
	case opRevoke:
		return fmt.Sprintf("the token's policies must grant update on %q", o.path)
	}
	return fmt.Sprintf("the token's policies must grant read on %q", o.path)
}

// responseCause reduces Vault's answer to its status and messages: the
// api's own text holds the request URL.
func responseCause(re *api.ResponseError) error {
	msgs := make([]string, 0, len(re.Errors))
	for _, m := range re.Errors {
		if m = strings.TrimSpace(m); m != "" {
			msgs = append(msgs, secrets.Clip(m, 200))
		}
	}
	msg := fmt.Sprintf("vault answered %d %s", re.StatusCode, http.StatusText(re.StatusCode))
	if len(msgs) > 0 {
		msg += ": " + strings.Join(msgs, "; ")
	}
	return &causeError{msg: msg, err: re}
}

// transportError classifies a request that got no answer.
func (d *Driver) transportError(ref secrets.Ref, err error) error {
	cause := err
	var ue *url.Error
	if errors.As(err, &ue) {
		cause = &causeError{msg: ue.Op + " " + d.addr + ": " + ue.Err.Error(), err: err}
	}
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var verifyErr *tls.CertificateVerificationError
	var recordErr tls.RecordHeaderError
	switch {
	case errors.As(err, &unknownCA), errors.As(err, &verifyErr):
		return secrets.Fail(ref, secrets.ErrUnavailable,
			"vault's TLS certificate is not trusted; set VAULT_CACERT (or VAULT_CAPATH) to its CA, and VAULT_TLS_SERVER_NAME if the address is not in the certificate", cause)
	case errors.As(err, &hostErr):
		return secrets.Fail(ref, secrets.ErrUnavailable,
			"vault's TLS certificate does not name the host in VAULT_ADDR; fix VAULT_ADDR or set VAULT_TLS_SERVER_NAME", cause)
	case errors.As(err, &recordErr), strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		return secrets.Fail(ref, secrets.ErrUnavailable, "vault does not speak TLS there; use http:// in VAULT_ADDR, or the right port", cause)
	}
	var netErr net.Error
	if ue != nil || errors.As(err, &netErr) {
		return secrets.Fail(ref, secrets.ErrUnavailable,
			fmt.Sprintf("could not reach vault at %s; check VAULT_ADDR and the host's network", d.addr), cause)
	}
	return secrets.Fail(ref, secrets.ErrUnavailable, "", cause)
}

// isForbidden reports a 403 answer: a policy denial, or an invalid token.
func isForbidden(err error) bool {
	var re *api.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusForbidden
}

// statusOf returns the HTTP status of a Vault error answer, or 0.
func statusOf(err error) int {
	var re *api.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode
	}
	return 0
}

// authFail is a login failure; classify gives it the reference that
// needed the login.
func authFail(kind error, hint string, cause error) *secrets.Error {
	return &secrets.Error{Kind: kind, Hint: hint, Err: cause}
}
