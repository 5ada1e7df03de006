package vault

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dsv-plugin/dsv/secrets"
)

// callLimit is how long a call may take beyond its deadline here: a busy
// machine's scheduling, never a request's. A call that waits for Vault
// instead takes the client's own 60 s.
const callLimit = 3 * time.Second

// deadline is the TIMEOUT (or the caller's deadline) of these tests.
const deadline = 300 * time.Millisecond

// TestCallsEndAtTheirDeadline: against a Vault that accepts requests and
// never answers, each call of the backend (ALLOW's canonical-name lookup,
// a fetch, the logins and re-logins on their way, a lease's renewal and
// revocation) returns a timeout by its deadline: the caller's, or the
// TIMEOUT setting when the caller has none (as ALLOW's lookup during a
// refresh), whatever the client's retries and its 60 s per request.
func TestCallsEndAtTheirDeadline(t *testing.T) {
	ref := secrets.Ref{Backend: Name, Name: "kv/app"}
	fetch := func(r secrets.Ref) func(context.Context, *Driver) error {
		return func(ctx context.Context, d *Driver) error {
			_, err := d.Fetch(ctx, r)
			return err
		}
	}
	canonical := func(ctx context.Context, d *Driver) error {
		_, err := d.Canonical(ctx, ref)
		return err
	}
	lease := secrets.Ref{Backend: Name, Name: "database/creds/app"}
	approle := func(t *testing.T, f *fakeVault, c *Config) {
		c.Auth = AuthAppRole
		writeFile(t, c.RoleIDFile, "rid")
		writeFile(t, c.SecretIDFile, "sid")
		f.roles["rid"] = "sid"
	}
	is := func(p string) func(string) bool { return func(path string) bool { return path == p } }
	under := func(p string) func(string) bool { return func(path string) bool { return strings.HasPrefix(path, p) } }

	tests := []struct {
		name  string
		setup func(t *testing.T, f *fakeVault, c *Config)
		// prime runs before the stall, against a Vault that answers.
		prime func(t *testing.T, f *fakeVault, d *Driver)
		stall func(path string) bool
		call  func(context.Context, *Driver) error
	}{
		{name: "canonical name: mount lookup", stall: under("sys/internal/ui/mounts/"), call: canonical},
		{name: "canonical name: login", stall: is("auth/token/lookup-self"), call: canonical},
		{name: "fetch: mount lookup", stall: under("sys/internal/ui/mounts/"), call: fetch(ref)},
		{name: "fetch: read", stall: is("kv/app"), call: fetch(ref)},
		{
			name:  "fetch: write",
			stall: is("pki/issue/web"),
			call:  fetch(secrets.Ref{Backend: Name, Name: "pki/issue/web", Params: map[string]string{"method": "write"}}),
		},
		{name: "token login", stall: is("auth/token/lookup-self"), call: fetch(ref)},
		{name: "approle login", setup: approle, stall: is("auth/approle/login"), call: fetch(ref)},
		{
			name: "unwrapping the secret-id",
			setup: func(t *testing.T, f *fakeVault, c *Config) {
				approle(t, f, c)
				c.SecretIDWrapped = true
			},
			stall: is("sys/wrapping/unwrap"), call: fetch(ref),
		},
		{
			// A Swarm service's identity, or a volume's identity option.
			name: "identity login",
			setup: func(t *testing.T, f *fakeVault, c *Config) {
				writeIdentity(t, c.IdentitiesDir, "web", "rid-web", "sid-web")
				f.roles["rid-web"] = "sid-web"
			},
			stall: is("auth/approle/login"),
			call:  fetch(secrets.Ref{Backend: Name, Name: "kv/app", Params: map[string]string{"identity": "web"}}),
		},
		{
			// Vault answers 403: is the token still good?
			name: "token check after a denial",
			prime: func(t *testing.T, f *fakeVault, d *Driver) {
				if _, err := d.Fetch(ctxFor(t), ref); err != nil {
					t.Fatal(err)
				}
				f.mu.Lock()
				defer f.mu.Unlock()
				f.deny["kv/app"] = true
			},
			stall: is("auth/token/lookup-self"), call: fetch(ref),
		},
		{
			name:  "re-login after a rejected token",
			setup: approle,
			prime: func(t *testing.T, f *fakeVault, d *Driver) {
				if _, err := d.Fetch(ctxFor(t), ref); err != nil {
					t.Fatal(err)
				}
				f.setValid(d.session("").current(), false)
			},
			stall: is("auth/approle/login"), call: fetch(ref),
		},
		{
			name:  "lease renewal",
			stall: is("sys/leases/renew"),
			call: func(ctx context.Context, d *Driver) error {
				_, err := d.Renew(ctx, lease, secrets.Lease{ID: "database/creds/app/abc", Duration: time.Minute})
				return err
			},
		},
		{
			name:  "lease revocation",
			stall: under("sys/leases/revoke/"),
			call:  func(ctx context.Context, d *Driver) error { return d.Revoke(ctx, lease, "database/creds/app/abc") },
		},
	}
	for _, tt := range tests {
		for _, by := range []string{"caller", "TIMEOUT"} {
			t.Run(tt.name+"/"+by, func(t *testing.T) {
				t.Parallel()
				f := newFakeVault(t)
				f.answer("GET", "kv/app", 200, `{"data":{"x":"1"}}`)
				d, _ := fakeDriver(t, f, func(c *Config) {
					c.Client.MaxRetries = 2 // the default
					if by == "TIMEOUT" {
						c.Timeout = deadline
					}
					if tt.setup != nil {
						tt.setup(t, f, c)
					}
				})
				if tt.prime != nil {
					tt.prime(t, f, d)
				}
				var stalled atomic.Int64
				f.stallWhere(func(path string) bool {
					if tt.stall(path) {
						stalled.Add(1)
						return true
					}
					return false
				})
				ctx := context.Background()
				if by == "caller" {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, deadline)
					defer cancel()
				}
				err := callWithin(t, deadline+callLimit, func() error { return tt.call(ctx, d) })
				if stalled.Load() == 0 {
					t.Fatalf("the call did not reach the stalled request; it returned %v", err)
				}
				// A timeout, or the failed try it gave up after (the
				// denial that made it check the token).
				if !errors.Is(err, secrets.ErrTimeout) && !strings.Contains(fmt.Sprint(err), "gave up at the TIMEOUT plugin setting") {
					t.Fatalf("error = %v, want a timeout", err)
				}
			})
		}
	}
}

// callWithin runs call and fails the test if it has not returned within
// limit; the call is left to end with the test's server.
func callWithin(t *testing.T, limit time.Duration, call func() error) error {
	t.Helper()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- call() }()
	select {
	case err := <-done:
		t.Logf("returned after %v", time.Since(start).Round(time.Millisecond))
		return err
	case <-time.After(limit):
		t.Fatalf("the call has not returned after %v", limit)
		return nil
	}
}

// TestLoginOutlivesItsStarter: the login that one caller starts serves
// every caller that waits for it, so it runs to the TIMEOUT setting, not
// to the deadline of the caller that happened to start it.
func TestLoginOutlivesItsStarter(t *testing.T) {
	f := newFakeVault(t)
	f.answer("GET", "kv/app", 200, `{"data":{"x":"1"}}`)
	slow := make(chan struct{})
	answer := sync.OnceFunc(func() { close(slow) })
	t.Cleanup(answer) // before the server's Close, which waits for the handler
	var logins atomic.Int64
	d, _ := fakeDriver(t, f, func(c *Config) { c.Timeout = 10 * time.Second })
	f.stallWhere(func(path string) bool {
		if path == "auth/token/lookup-self" && logins.Add(1) == 1 {
			<-slow // the login's answer comes late
		}
		return false
	})
	ref := secrets.Ref{Backend: Name, Name: "kv/app"}

	hasty, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	first := make(chan error, 1)
	go func() {
		_, err := d.Fetch(hasty, ref)
		first <- err
	}()
	for logins.Load() == 0 { // the first caller's login is in flight
		time.Sleep(time.Millisecond)
	}
	second := make(chan error, 1)
	go func() {
		_, err := d.Fetch(ctxFor(t), ref)
		second <- err
	}()
	if err := <-first; !errors.Is(err, secrets.ErrTimeout) {
		t.Fatalf("first Fetch() = %v, want its own timeout", err)
	}
	answer()
	if err := <-second; err != nil {
		t.Fatalf("second Fetch() = %v: the first caller's deadline ended the login it waited for", err)
	}
	if n := logins.Load(); n != 1 {
		t.Fatalf("%d logins, want the one both callers shared", n)
	}
}
