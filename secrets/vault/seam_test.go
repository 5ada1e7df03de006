package vault

import (
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/rs/zerolog"

	"github.com/dsv-plugin/dsv/secrets"
)

// sentinel is a secret value; no error or log may hold it.
const sentinel = "hunter2-SENTINEL-value"

// fakeDriver returns a driver for f that logs in with the token in its
// token file, "tok", which f accepts. logs receives the driver's debug log.
func fakeDriver(t *testing.T, f *fakeVault, mod func(*Config)) (*Driver, *syncBuffer) {
	t.Helper()
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("tok\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f.setValid("tok", true)
	conf := api.DefaultConfig()
	conf.Address = f.srv.URL
	conf.MaxRetries = 0
	cfg := Config{
		Auth:          AuthToken,
		TokenFile:     tokenFile,
		AppRolePath:   "approle",
		RoleIDFile:    filepath.Join(dir, "role-id"),
		SecretIDFile:  filepath.Join(dir, "secret-id"),
		IdentitiesDir: filepath.Join(dir, "identities"),
		API:           conf,
	}
	if mod != nil {
		mod(&cfg)
	}
	logs := &syncBuffer{} // a login may log after its caller has returned
	d, err := New(cfg, zerolog.New(logs).Level(zerolog.DebugLevel))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d, logs
}

func ctxFor(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

const kv2Body = `{"request_id":"r1","data":{"data":{"user":"app","pass":"` + sentinel + `"},"metadata":{"version":3,"deletion_time":"","destroyed":false}}}`

func TestFetchSends(t *testing.T) {
	tests := []struct {
		name      string
		cfgNS     string
		ref       secrets.Ref
		answer    string // METHOD path the fake answers
		body      string
		wantQuery string
		wantNS    string
		wantWrap  string
		wantBody  map[string]any
		wantValue string
		wantVer   string
	}{
		{
			name: "kv v2 path gets data/", ref: secrets.Ref{Name: "secret/app/db"},
			answer: "GET secret/data/app/db", body: kv2Body,
			wantValue: `{"pass":"` + sentinel + `","user":"app"}`, wantVer: "3",
		},
		{
			name: "kv v2 path with data/", ref: secrets.Ref{Name: "secret/data/app/db"},
			answer: "GET secret/data/app/db", body: kv2Body,
			wantValue: `{"pass":"` + sentinel + `","user":"app"}`, wantVer: "3",
		},
		{
			name: "kv v2 version", ref: secrets.Ref{Name: "secret/app/db", VersionID: "3"},
			answer: "GET secret/data/app/db", body: kv2Body, wantQuery: "version=3",
			wantValue: `{"pass":"` + sentinel + `","user":"app"}`, wantVer: "3",
		},
		{
			name: "kv v1", ref: secrets.Ref{Name: "kv/app"},
			answer: "GET kv/app", body: `{"request_id":"r2","lease_duration":2764800,"data":{"x":"1"}}`,
			wantValue: `{"x":"1"}`, wantVer: "kv1",
		},
		{
			name: "read params", ref: secrets.Ref{Name: "database/creds/app", Params: map[string]string{"param.ttl": "1h"}},
			answer: "GET database/creds/app", body: `{"request_id":"r3","lease_id":"database/creds/app/abc","lease_duration":60,"renewable":true,"data":{"username":"u"}}`,
			wantQuery: "ttl=1h", wantValue: `{"username":"u"}`, wantVer: "r3",
		},
		{
			name: "write", ref: secrets.Ref{Name: "pki/issue/web", Params: map[string]string{"method": "write", "param.common_name": "a.example.com"}},
			answer: "PUT pki/issue/web", body: `{"request_id":"r4","data":{"certificate":"C"}}`,
			wantBody: map[string]any{"common_name": "a.example.com"}, wantValue: `{"certificate":"C"}`, wantVer: "r4",
		},
		{
			name: "namespace setting", cfgNS: "team-a", ref: secrets.Ref{Name: "kv/app"},
			answer: "GET kv/app", body: `{"data":{"x":"1"}}`, wantNS: "team-a", wantValue: `{"x":"1"}`, wantVer: "kv1",
		},
		{
			name: "namespace option wins", cfgNS: "team-a", ref: secrets.Ref{Name: "kv/app", Params: map[string]string{"namespace": "team-b/app"}},
			answer: "GET kv/app", body: `{"data":{"x":"1"}}`, wantNS: "team-b/app", wantValue: `{"x":"1"}`, wantVer: "kv1",
		},
		{
			name: "wrapped", ref: secrets.Ref{Name: "secret/app/db", Params: map[string]string{"wrap-ttl": "2m"}},
			answer: "GET secret/data/app/db", body: `{"wrap_info":{"token":"hvs.wrapping","accessor":"acc1","ttl":120}}`,
			wantWrap: "120", wantValue: "hvs.wrapping", wantVer: "acc1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeVault(t)
			method, path, _ := strings.Cut(tt.answer, " ")
			f.answer(method, path, 200, tt.body)
			d, _ := fakeDriver(t, f, func(c *Config) { c.Namespace = tt.cfgNS })
			tt.ref.Backend = Name
			if err := d.Validate(tt.ref); err != nil {
				t.Fatal(err)
			}
			got, err := d.Fetch(ctxFor(t), tt.ref)
			if err != nil {
				t.Fatal(err)
			}
			if string(got.Value) != tt.wantValue || got.Version != tt.wantVer {
				t.Errorf("Fetch() = %q version %q, want %q version %q", got.Value, got.Version, tt.wantValue, tt.wantVer)
			}
			reqs := f.requestsTo(path)
			if len(reqs) != 1 {
				t.Fatalf("requests to %s = %d, want 1 (all: %+v)", path, len(reqs), f.requests())
			}
			r := reqs[0]
			if r.Method != method || r.Query != tt.wantQuery || r.Token != "tok" || r.WrapTTL != tt.wantWrap {
				t.Errorf("request = %+v, want %s query %q token tok wrap %q", r, method, tt.wantQuery, tt.wantWrap)
			}
			for _, rr := range f.requests() {
				// Every request, the mount lookup and the login included,
				// goes to the volume's namespace (logins: the setting's).
				want := tt.wantNS
				if rr.Path == "auth/token/lookup-self" {
					want = tt.cfgNS
				}
				if rr.Namespace != want {
					t.Errorf("%s %s sent namespace %q, want %q", rr.Method, rr.Path, rr.Namespace, want)
				}
				if rr.Path != path && rr.WrapTTL != "" {
					t.Errorf("%s %s was wrapped", rr.Method, rr.Path)
				}
			}
			for k, v := range tt.wantBody {
				if r.Body[k] != v {
					t.Errorf("body[%q] = %v, want %v", k, r.Body[k], v)
				}
			}
			if (tt.wantWrap != "" || strings.Contains(tt.body, "lease_id")) && !got.Unique() {
				t.Error("a wrapped or leased secret must not be reused")
			}
		})
	}
}

func TestFetchReauthAfterRejectedToken(t *testing.T) {
	f := newFakeVault(t)
	f.answer("GET", "kv/app", 200, `{"data":{"x":"1"}}`)
	d, _ := fakeDriver(t, f, nil)
	ref := secrets.Ref{Backend: Name, Name: "kv/app"}
	if _, err := d.Fetch(ctxFor(t), ref); err != nil {
		t.Fatal(err)
	}
	// The token is revoked and a new one put in the file: the next fetch
	// sees 403, finds the token rejected, reads the file again, retries.
	f.setValid("tok", false)
	f.setValid("tok2", true)
	if err := os.WriteFile(d.cfg.TokenFile, []byte("tok2"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Fetch(ctxFor(t), ref); err != nil {
		t.Fatalf("Fetch() after token rotation = %v", err)
	}
	reads := f.requestsTo("kv/app")
	if len(reads) != 3 || reads[1].Token != "tok" || reads[2].Token != "tok2" {
		t.Fatalf("reads = %+v, want tok, tok (rejected), tok2", reads)
	}
	if n := d.session("").logins(); n != 2 {
		t.Fatalf("logins = %d, want 2", n)
	}
}

func TestFetchPolicyDenialKeepsToken(t *testing.T) {
	f := newFakeVault(t)
	f.deny["secret/data/app/db"] = true
	d, _ := fakeDriver(t, f, nil)
	ref := secrets.Ref{Backend: Name, Name: "secret/app/db"}
	_, err := d.Fetch(ctxFor(t), ref)
	if !errors.Is(err, secrets.ErrAccessDenied) {
		t.Fatalf("Fetch() = %v, want access denied", err)
	}
	if !strings.Contains(err.Error(), `read on "secret/data/app/db"`) {
		t.Errorf("Fetch() = %q, want a hint naming the policy path", err)
	}
	// lookup-self proved the token good: no second login, no retry.
	if n := d.session("").logins(); n != 1 {
		t.Errorf("logins = %d, want 1", n)
	}
	if n := len(f.requestsTo("secret/data/app/db")); n != 1 {
		t.Errorf("reads = %d, want 1", n)
	}
}

func TestFetchErrors(t *testing.T) {
	tests := []struct {
		name     string
		ref      secrets.Ref
		status   int
		body     string
		wantKind error
		want     string
	}{
		{name: "missing kv v2", ref: secrets.Ref{Name: "secret/app/none"}, status: 0, wantKind: secrets.ErrNotFound, want: "secret/data/app/none"},
		{name: "no mount", ref: secrets.Ref{Name: "nomount/x"}, wantKind: secrets.ErrAccessDenied, want: "no secrets engine is mounted"},
		{name: "server error", ref: secrets.Ref{Name: "kv/app"}, status: 500, body: `{"errors":["internal error"]}`, wantKind: secrets.ErrUnavailable, want: "internal error"},
		{name: "sealed", ref: secrets.Ref{Name: "kv/app"}, status: 503, body: `{"errors":["Vault is sealed"]}`, wantKind: secrets.ErrUnavailable, want: "sealed"},
		{name: "bad request", ref: secrets.Ref{Name: "pki/issue/web", Params: map[string]string{"method": "write"}}, status: 400, body: `{"errors":["common_name is required"]}`, wantKind: secrets.ErrNotFound, want: "param.*"},
		{name: "write on kv", ref: secrets.Ref{Name: "secret/app", Params: map[string]string{"method": "write"}}, wantKind: secrets.ErrBadValue, want: "overwrite"},
		{name: "version on kv v1", ref: secrets.Ref{Name: "kv/app", VersionID: "2"}, wantKind: secrets.ErrNotFound, want: "KV version 1"},
		{name: "version on database", ref: secrets.Ref{Name: "database/creds/app", VersionID: "2"}, wantKind: secrets.ErrNotFound, want: "database engine"},
		{name: "mount root", ref: secrets.Ref{Name: "secret"}, wantKind: secrets.ErrNotFound, want: "KV mount itself"},
		{name: "no data", ref: secrets.Ref{Name: "kv/app"}, status: 200, body: `{"warnings":["w"]}`, wantKind: secrets.ErrBadValue, want: "no data"},
		{name: "not wrapped", ref: secrets.Ref{Name: "kv/app", Params: map[string]string{"wrap-ttl": "60"}}, status: 200, body: `{"data":{"x":"1"}}`, wantKind: secrets.ErrBadValue, want: "did not wrap"},
		{
			name: "deleted", ref: secrets.Ref{Name: "secret/app", VersionID: "2"}, status: 404,
			body:     `{"data":{"data":null,"metadata":{"version":2,"deletion_time":"2024-01-01T00:00:00Z","destroyed":false}}}`,
			wantKind: secrets.ErrNotFound, want: "version 2 was deleted; undelete it",
		},
		{
			name: "destroyed", ref: secrets.Ref{Name: "secret/app"}, status: 404,
			body:     `{"data":{"data":null,"metadata":{"version":4,"deletion_time":"","destroyed":true}}}`,
			wantKind: secrets.ErrNotFound, want: "version 4, the latest, was destroyed",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeVault(t)
			if tt.status != 0 {
				path, _ := apiPath(mountInfo{prefix: "secret/", kv: 2}, tt.ref.Name)
				if !strings.HasPrefix(tt.ref.Name, "secret") {
					path = tt.ref.Name
				}
				method := "GET"
				if tt.ref.Params["method"] == "write" {
					method = "PUT"
				}
				f.answer(method, path, tt.status, tt.body)
			}
			d, logs := fakeDriver(t, f, nil)
			tt.ref.Backend = Name
			_, err := d.Fetch(ctxFor(t), tt.ref)
			var se *secrets.Error
			if !errors.As(err, &se) || !errors.Is(err, tt.wantKind) {
				t.Fatalf("Fetch() = %v, want a *secrets.Error of kind %v", err, tt.wantKind)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Fetch() = %q, want it to contain %q", err, tt.want)
			}
			if !strings.HasPrefix(err.Error(), `vault secret "`+tt.ref.Name+`"`) {
				t.Errorf("Fetch() = %q, want it to name the secret", err)
			}
			if strings.Contains(err.Error(), f.srv.URL+"/v1") || strings.Contains(logs.String(), "tok\"") {
				t.Errorf("error or log holds a URL path or the token: %q\n%s", err, logs)
			}
		})
	}
}

func TestFetchTransportErrors(t *testing.T) {
	t.Run("unreachable", func(t *testing.T) {
		f := newFakeVault(t)
		d, _ := fakeDriver(t, f, nil)
		f.srv.Close()
		_, err := d.Fetch(ctxFor(t), secrets.Ref{Backend: Name, Name: "kv/app"})
		if !errors.Is(err, secrets.ErrUnavailable) || !strings.Contains(err.Error(), "VAULT_ADDR") {
			t.Fatalf("Fetch() = %v, want unavailable naming VAULT_ADDR", err)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		release := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
		defer srv.Close()
		defer close(release)
		f := &fakeVault{srv: srv, valid: map[string]bool{}}
		d, _ := fakeDriver(t, f, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		_, err := d.Fetch(ctx, secrets.Ref{Backend: Name, Name: "kv/app"})
		if !errors.Is(err, secrets.ErrTimeout) {
			t.Fatalf("Fetch() = %v, want a timeout", err)
		}
	})
	t.Run("https to plain http", func(t *testing.T) {
		f := newFakeVault(t)
		f.srv.URL = strings.Replace(f.srv.URL, "http://", "https://", 1)
		d, _ := fakeDriver(t, f, nil)
		_, err := d.Fetch(ctxFor(t), secrets.Ref{Backend: Name, Name: "kv/app"})
		if !errors.Is(err, secrets.ErrUnavailable) || !strings.Contains(err.Error(), "use http://") {
			t.Fatalf("Fetch() = %v, want unavailable suggesting http://", err)
		}
	})
	t.Run("untrusted certificate", func(t *testing.T) {
		srv := quietTLSServer()
		defer srv.Close()
		f := &fakeVault{srv: srv, valid: map[string]bool{}}
		d, _ := fakeDriver(t, f, nil)
		_, err := d.Fetch(ctxFor(t), secrets.Ref{Backend: Name, Name: "kv/app"})
		if !errors.Is(err, secrets.ErrUnavailable) || !strings.Contains(err.Error(), "VAULT_CACERT") {
			t.Fatalf("Fetch() = %v, want unavailable naming VAULT_CACERT", err)
		}
	})
	t.Run("plain http to tls", func(t *testing.T) {
		srv := quietTLSServer()
		defer srv.Close()
		f := &fakeVault{srv: httptest.NewUnstartedServer(nil), valid: map[string]bool{}}
		f.srv.URL = strings.Replace(srv.URL, "https://", "http://", 1)
		d, _ := fakeDriver(t, f, nil)
		_, err := d.Fetch(ctxFor(t), secrets.Ref{Backend: Name, Name: "kv/app"})
		if !errors.Is(err, secrets.ErrUnavailable) || !strings.Contains(err.Error(), "use https://") {
			t.Fatalf("Fetch() = %v, want unavailable suggesting https://", err)
		}
	})
}

func TestLogin(t *testing.T) {
	tests := []struct {
		name     string
		setup    func(t *testing.T, f *fakeVault, c *Config)
		wantKind error
		want     string
	}{
		{
			name: "no token file",
			setup: func(t *testing.T, f *fakeVault, c *Config) {
				c.TokenFile = filepath.Join(t.TempDir(), "missing")
			},
			wantKind: secrets.ErrAccessDenied, want: "no vault token",
		},
		{
			name: "rejected token",
			setup: func(t *testing.T, f *fakeVault, c *Config) {
				c.Token = "bad-token"
			},
			wantKind: secrets.ErrAccessDenied, want: "VAULT_TOKEN setting: it is invalid or expired",
		},
		{
			// Vault (or a proxy) answers 200 with no body: no token, and
			// no panic.
			name: "empty token lookup",
			setup: func(t *testing.T, f *fakeVault, c *Config) {
				f.emptyLookup = true
			},
			wantKind: secrets.ErrUnavailable, want: "token lookup with nothing",
		},
		{
			name: "approle",
			setup: func(t *testing.T, f *fakeVault, c *Config) {
				c.Auth = AuthAppRole
				writeFile(t, c.RoleIDFile, "rid")
				writeFile(t, c.SecretIDFile, "sid")
				f.roles["rid"] = "sid"
			},
		},
		{
			name: "approle bad secret-id",
			setup: func(t *testing.T, f *fakeVault, c *Config) {
				c.Auth = AuthAppRole
				writeFile(t, c.RoleIDFile, "rid")
				writeFile(t, c.SecretIDFile, "nope")
				f.roles["rid"] = "sid"
			},
			wantKind: secrets.ErrAccessDenied, want: "AppRole login of the plugin at auth/approle failed",
		},
		{
			name: "approle no role-id",
			setup: func(t *testing.T, f *fakeVault, c *Config) {
				c.Auth = AuthAppRole
			},
			wantKind: secrets.ErrAccessDenied, want: "role-id of the plugin",
		},
		{
			name: "wrapped secret-id",
			setup: func(t *testing.T, f *fakeVault, c *Config) {
				c.Auth = AuthAppRole
				c.SecretIDWrapped = true
				writeFile(t, c.RoleIDFile, "rid")
				writeFile(t, c.SecretIDFile, "wrap1")
				f.roles["rid"] = "sid"
				f.wrapped["wrap1"] = map[string]any{"secret_id": "sid"}
			},
		},
		{
			name: "used wrapping token",
			setup: func(t *testing.T, f *fakeVault, c *Config) {
				c.Auth = AuthAppRole
				c.SecretIDWrapped = true
				writeFile(t, c.RoleIDFile, "rid")
				writeFile(t, c.SecretIDFile, "wrap1")
			},
			wantKind: secrets.ErrAccessDenied, want: "already unwrapped or has expired",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeVault(t)
			f.answer("GET", "kv/app", 200, `{"data":{"x":"1"}}`)
			d, logs := fakeDriver(t, f, func(c *Config) { tt.setup(t, f, c) })
			_, err := d.Fetch(ctxFor(t), secrets.Ref{Backend: Name, Name: "kv/app"})
			if tt.wantKind == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, tt.wantKind) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Fetch() = %v, want %v containing %q", err, tt.wantKind, tt.want)
			}
			for _, s := range []string{"bad-token", "sid", "wrap1", "rid"} {
				if strings.Contains(err.Error(), `"`+s+`"`) || strings.Contains(logs.String(), `"`+s+`"`) {
					t.Errorf("error or log holds credential %q: %v\n%s", s, err, logs)
				}
			}
		})
	}
}

func TestWrappedSecretIDUnwrappedOnce(t *testing.T) {
	f := newFakeVault(t)
	f.answer("GET", "kv/app", 200, `{"data":{"x":"1"}}`)
	d, _ := fakeDriver(t, f, func(c *Config) {
		c.Auth = AuthAppRole
		c.SecretIDWrapped = true
		writeFile(t, c.RoleIDFile, "rid")
		writeFile(t, c.SecretIDFile, "wrap1")
	})
	f.roles["rid"] = "sid"
	f.wrapped["wrap1"] = map[string]any{"secret_id": "sid"}
	ref := secrets.Ref{Backend: Name, Name: "kv/app"}
	for i := range 3 {
		if _, err := d.Fetch(ctxFor(t), ref); err != nil {
			t.Fatalf("fetch %d: %v", i, err)
		}
		// Vault rejects the token: the re-login must not unwrap again.
		f.setValid(d.session("").current(), false)
	}
	if n := len(f.requestsTo("sys/wrapping/unwrap")); n != 1 {
		t.Fatalf("unwraps = %d, want 1", n)
	}
	if f.logins != 3 {
		t.Fatalf("logins = %d, want 3 (one per fetch)", f.logins)
	}
}

func TestIdentityUsesItsOwnLogin(t *testing.T) {
	f := newFakeVault(t)
	f.answer("GET", "kv/app", 200, `{"data":{"x":"1"}}`)
	d, _ := fakeDriver(t, f, func(c *Config) { c.Namespace = "team" })
	writeIdentity(t, d.cfg.IdentitiesDir, "web", "rid-web", "sid-web")
	f.roles["rid-web"] = "sid-web"
	ref := secrets.Ref{Backend: Name, Name: "kv/app", Params: map[string]string{"identity": "web", "namespace": "team/app"}}
	if err := d.Validate(ref); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Fetch(ctxFor(t), ref); err != nil {
		t.Fatal(err)
	}
	logins := f.requestsTo("auth/approle/login")
	if len(logins) != 1 || logins[0].Namespace != "team" || logins[0].Body["role_id"] != "rid-web" {
		t.Fatalf("logins = %+v, want one with rid-web in namespace team", logins)
	}
	reads := f.requestsTo("kv/app")
	if len(reads) != 1 || reads[0].Token != "approle-token-1" || reads[0].Namespace != "team/app" {
		t.Fatalf("reads = %+v, want the identity's token in namespace team/app", reads)
	}
	if len(f.requestsTo("auth/token/lookup-self")) != 0 {
		t.Fatal("the plugin's own token was used for an identity volume")
	}
}

func TestLeaseRequests(t *testing.T) {
	f := newFakeVault(t)
	f.answer("PUT", "sys/leases/renew", 200, `{"lease_id":"database/creds/app/abc","lease_duration":30,"renewable":true}`)
	f.answer("PUT", "sys/leases/revoke/database/creds/app/abc", 204, "")
	d, logs := fakeDriver(t, f, nil)
	ref := secrets.Ref{Backend: Name, Name: "database/creds/app", Params: map[string]string{"namespace": "team"}}
	got, err := d.Renew(ctxFor(t), ref, secrets.Lease{ID: "database/creds/app/abc", Duration: 45 * time.Second, Renewable: true})
	if err != nil {
		t.Fatal(err)
	}
	if got != (secrets.Lease{ID: "database/creds/app/abc", Duration: 30 * time.Second, Renewable: true}) {
		t.Errorf("Renew() = %+v", got)
	}
	renew := f.requestsTo("sys/leases/renew")
	if len(renew) != 1 || renew[0].Namespace != "team" || renew[0].Body["lease_id"] != "database/creds/app/abc" || renew[0].Body["increment"] != float64(45) {
		t.Errorf("renew request = %+v, want lease_id, increment 45, namespace team", renew)
	}
	if err := d.Revoke(ctxFor(t), ref, "database/creds/app/abc"); err != nil {
		t.Fatal(err)
	}
	revoke := f.requestsTo("sys/leases/revoke/database/creds/app/abc")
	if len(revoke) != 1 || revoke[0].Namespace != "team" || revoke[0].Method != "PUT" {
		t.Errorf("revoke request = %+v", revoke)
	}
	// Gone leases.
	f.answer("PUT", "sys/leases/renew", 400, `{"errors":["lease not found"]}`)
	if _, err := d.Renew(ctxFor(t), ref, secrets.Lease{ID: "database/creds/app/gone"}); !errors.Is(err, secrets.ErrNotFound) || !strings.Contains(err.Error(), "read the secret again") {
		t.Errorf("Renew(gone) = %v, want not found", err)
	}
	f.answer("PUT", "sys/leases/revoke/database/creds/app/gone", 400, `{"errors":["invalid lease"]}`)
	if err := d.Revoke(ctxFor(t), ref, "database/creds/app/gone"); err != nil {
		t.Errorf("Revoke(gone) = %v, want nil", err)
	}
	f.deny["sys/leases/revoke/database/creds/app/denied"] = true
	err = d.Revoke(ctxFor(t), ref, "database/creds/app/denied")
	if !errors.Is(err, secrets.ErrAccessDenied) || !strings.Contains(err.Error(), `"sys/leases/revoke/database/creds/app/*"`) {
		t.Errorf("Revoke(denied) = %v, want access denied naming the policy path", err)
	}
	if strings.Contains(err.Error(), "denied\"") || strings.Contains(logs.String(), "app/abc") {
		t.Errorf("a full lease id leaked: %v\n%s", err, logs)
	}
}

func TestNoSecretInLogs(t *testing.T) {
	f := newFakeVault(t)
	f.answer("GET", "secret/data/app/db", 200, kv2Body)
	f.answer("GET", "database/creds/app", 200, `{"lease_id":"database/creds/app/`+sentinel+`","lease_duration":60,"data":{"password":"`+sentinel+`"}}`)
	d, logs := fakeDriver(t, f, nil)
	for _, ref := range []secrets.Ref{
		{Backend: Name, Name: "secret/app/db", Key: "pass"},
		{Backend: Name, Name: "secret/app/db", Key: "missing"},
		{Backend: Name, Name: "database/creds/app"},
	} {
		_, err := d.Fetch(ctxFor(t), ref)
		if err != nil && strings.Contains(err.Error(), sentinel) {
			t.Errorf("error holds the secret: %v", err)
		}
	}
	if strings.Contains(logs.String(), sentinel) || strings.Contains(logs.String(), `"tok"`) {
		t.Errorf("log holds the secret or the token:\n%s", logs)
	}
	if !strings.Contains(logs.String(), `"lease":"database"`) || !strings.Contains(logs.String(), `"kv_version":2`) {
		t.Errorf("debug log lacks the fetch metadata:\n%s", logs)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// quietTLSServer is a TLS server that does not log failed handshakes.
func quietTLSServer() *httptest.Server {
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	return srv
}

func TestFetchWithoutMountsEndpoint(t *testing.T) {
	// Like the Vault CLI: without the endpoint, paths are used as given
	// (KV v1 semantics), and version-id cannot apply.
	f := newFakeVault(t)
	f.noMounts = true
	f.answer("GET", "secret/data/app", 200, kv2Body)
	d, _ := fakeDriver(t, f, nil)
	got, err := d.Fetch(ctxFor(t), secrets.Ref{Backend: Name, Name: "secret/data/app"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(got.Value), `"metadata"`) {
		t.Errorf("Fetch() = %s, want the answer's data as is", got.Value)
	}
	_, err = d.Fetch(ctxFor(t), secrets.Ref{Backend: Name, Name: "secret/data/app", VersionID: "1"})
	if !errors.Is(err, secrets.ErrNotFound) || !strings.Contains(err.Error(), "not known to be KV v2") {
		t.Errorf("Fetch(version-id) = %v, want not found: not known to be KV v2", err)
	}
	if n := len(f.requestsTo("sys/internal/ui/mounts/secret/data/app")); n != 2 {
		t.Errorf("mount lookups = %d, want 2: an unknown mount is not cached", n)
	}
}

// TestFetchRetriesUntilTimeout: when the api's retries (of 503, 429 and
// refused connections) run past the call's deadline, the error says why the
// tries failed, not only that time ran out.
func TestFetchRetriesUntilTimeout(t *testing.T) {
	retrying := func(c *Config) {
		c.API.MaxRetries = 10
		c.API.MinRetryWait = 20 * time.Millisecond
		c.API.MaxRetryWait = 20 * time.Millisecond
	}
	fetch := func(t *testing.T, d *Driver) error {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		_, err := d.Fetch(ctx, secrets.Ref{Backend: Name, Name: "kv/app"})
		return err
	}
	for _, tt := range []struct {
		status int
		body   string
		want   string
		kind   error
	}{
		{status: 503, body: `{"errors":["Vault is sealed"]}`, want: "sealed", kind: secrets.ErrUnavailable},
		{status: 429, body: `{"errors":["rate limit quota exceeded"]}`, want: "rate limiting", kind: secrets.ErrThrottled},
	} {
		t.Run(strconv.Itoa(tt.status), func(t *testing.T) {
			f := newFakeVault(t)
			f.answer("GET", "kv/app", tt.status, tt.body)
			d, _ := fakeDriver(t, f, retrying)
			err := fetch(t, d)
			if !errors.Is(err, tt.kind) || !errors.Is(err, secrets.ErrUnavailable) || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "gave up at the TIMEOUT plugin setting after") {
				t.Fatalf("Fetch() = %v, want %v (unavailable) saying %q and that it gave up at TIMEOUT", err, tt.kind, tt.want)
			}
			if n := len(f.requestsTo("kv/app")); n < 2 {
				t.Fatalf("%d requests: the api did not retry", n)
			}
		})
	}
	t.Run("refused", func(t *testing.T) {
		f := newFakeVault(t)
		d, _ := fakeDriver(t, f, retrying)
		f.srv.Close()
		if err := fetch(t, d); !errors.Is(err, secrets.ErrUnavailable) || !strings.Contains(err.Error(), "could not reach vault") {
			t.Fatalf("Fetch() = %v, want unavailable: could not reach vault", err)
		}
	})
	t.Run("a slow answer is a timeout", func(t *testing.T) {
		release := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
		defer srv.Close()
		defer close(release)
		d, _ := fakeDriver(t, &fakeVault{srv: srv, valid: map[string]bool{}}, retrying)
		if err := fetch(t, d); !errors.Is(err, secrets.ErrTimeout) {
			t.Fatalf("Fetch() = %v, want a timeout", err)
		}
	})
}

// TestFetchRefusesVaultsOwnMounts: a path that passes validPath but that
// Vault places in one of its own mounts (however a proxy or a future Vault
// spells it) is refused before it is read, and for ALLOW's lookup too.
func TestFetchRefusesVaultsOwnMounts(t *testing.T) {
	for _, engine := range []string{"system", "ns_system", "token", "ns_token", "cubbyhole", "ns_cubbyhole", "identity", "ns_identity"} {
		t.Run(engine, func(t *testing.T) {
			f := newFakeVault(t)
			f.mounts["ops/"] = fakeMount{engine: engine}
			f.answer("GET", "ops/x", 200, `{"data":{"token":"`+sentinel+`"}}`)
			d, _ := fakeDriver(t, f, nil)
			ref := secrets.Ref{Backend: Name, Name: "ops/x"}
			_, err := d.Fetch(ctxFor(t), ref)
			if !errors.Is(err, secrets.ErrBadValue) || !strings.Contains(err.Error(), "dsv does not serve") {
				t.Fatalf("Fetch() = %v, want a refusal", err)
			}
			if _, err := d.Canonical(ctxFor(t), ref); !errors.Is(err, secrets.ErrBadValue) {
				t.Fatalf("Canonical() = %v, want a refusal", err)
			}
			if n := len(f.requestsTo("ops/x")); n != 0 {
				t.Fatalf("%d reads of ops/x, want none", n)
			}
		})
	}
}
