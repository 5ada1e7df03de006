package vault

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/dsv-plugin/dsv/secrets"
	"github.com/dsv-plugin/dsv/secrets/cache"
	"github.com/dsv-plugin/dsv/test/fakes/faultproxy"
	"github.com/dsv-plugin/dsv/test/servers/pgtest"
	"github.com/dsv-plugin/dsv/test/servers/vaulttest"
)

// These tests run the backend against a real Vault v1.13 dev server (see
// test/servers/vaulttest), through the shared fetcher where the key option or
// caching matters.

// syncBuffer collects a driver's log; goroutines may write to it after the
// test has ended, which t.Log forbids.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// realDriver returns a driver for s that logs in with the token in its
// token file (the root token unless mod changes it).
func realDriver(t *testing.T, s *vaulttest.Server, mod func(*Config)) (*Driver, *syncBuffer) {
	t.Helper()
	dir := t.TempDir()
	cfg := Config{
		Auth:          AuthToken,
		TokenFile:     filepath.Join(dir, "token"),
		AppRolePath:   "approle",
		RoleIDFile:    filepath.Join(dir, "role-id"),
		SecretIDFile:  filepath.Join(dir, "secret-id"),
		IdentitiesDir: filepath.Join(dir, "identities"),
		Client:        clientOf(s),
	}
	writeFile(t, cfg.TokenFile, vaulttest.RootToken)
	if mod != nil {
		mod(&cfg)
	}
	logs := &syncBuffer{}
	d, err := New(cfg, zerolog.New(logs).Level(zerolog.DebugLevel))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.Close()
		if t.Failed() {
			t.Logf("driver log:\n%s", logs)
		}
	})
	return d, logs
}

// clientOf is the client configuration of s, as s.Config is the api's:
// no retries, and the CA of a TLS server.
func clientOf(s *vaulttest.Server) *ClientConfig {
	c := DefaultClientConfig()
	c.Address = s.Addr
	c.MaxRetries = 0
	c.CACert = s.CACert
	return c
}

// fetcher returns the shared fetcher over d, as volumes use it.
func fetcher(t *testing.T, d *Driver) (*cache.Fetcher, *secrets.Registry) {
	t.Helper()
	reg, err := secrets.NewRegistry(d)
	if err != nil {
		t.Fatal(err)
	}
	f, err := cache.New(reg, cache.Config{TTL: time.Minute, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return f, reg
}

// parse builds a reference from volume options, as volumes do at create.
func parse(t *testing.T, reg *secrets.Registry, opts map[string]string) secrets.Ref {
	t.Helper()
	opts["backend"] = Name
	ref, _, problems := secrets.ParseRef("vol", opts, "file", reg)
	if len(problems) > 0 {
		t.Fatalf("ParseRef(%v) = %v", opts, problems)
	}
	return ref
}

func wantErr(t *testing.T, err error, kind error, contains string) {
	t.Helper()
	var se *secrets.Error
	if !errors.As(err, &se) || !errors.Is(err, kind) {
		t.Fatalf("error = %v, want a *secrets.Error of kind %v", err, kind)
	}
	if !strings.Contains(err.Error(), contains) {
		t.Fatalf("error = %q, want it to contain %q", err, contains)
	}
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestIntegrationKV(t *testing.T) {
	t.Parallel()
	s := vaulttest.Start(t)
	for i, pass := range []string{"one", "two", "three", "four"} {
		data := map[string]any{"user": "app", "pass": pass}
		if i == 3 {
			data["port"] = 5432
		}
		s.PutKV2(t, "secret", "app/db", data)
	}
	s.DeleteKV2Versions(t, "secret", "app/db", 2)
	s.DestroyKV2Versions(t, "secret", "app/db", 3)
	s.PutKV2(t, "secret", "gone", map[string]any{"a": "b"})
	s.DeleteKV2Versions(t, "secret", "gone", 1)
	s.EnableKV(t, "kv1", 1)
	s.PutKV1(t, "kv1", "app/db", map[string]any{"user": "v1", "pass": "pw1"})
	s.EnableKV(t, "team/kv", 2)
	s.PutKV2(t, "team/kv", "app", map[string]any{"token": "t"})

	d, _ := realDriver(t, s, nil)
	f, reg := fetcher(t, d)
	latest := `{"pass":"four","port":5432,"user":"app"}`
	tests := []struct {
		name        string
		opts        map[string]string
		want        string
		wantVersion string
		wantKind    error
		wantErr     string
	}{
		{name: "v2 latest", opts: map[string]string{"secret": "secret/app/db"}, want: latest, wantVersion: "4"},
		{name: "v2 with data/", opts: map[string]string{"secret": "secret/data/app/db"}, want: latest, wantVersion: "4"},
		{name: "v2 version", opts: map[string]string{"secret": "secret/app/db", "version-id": "1"}, want: `{"pass":"one","user":"app"}`, wantVersion: "1"},
		{name: "v2 key", opts: map[string]string{"secret": "secret/app/db", "key": "pass"}, want: "four", wantVersion: "4"},
		{name: "v2 key of a number", opts: map[string]string{"secret": "secret/app/db", "key": "port"}, want: "5432", wantVersion: "4"},
		{name: "v2 key of a version", opts: map[string]string{"secret": "secret/app/db", "version-id": "1", "key": "pass"}, want: "one", wantVersion: "1"},
		{name: "v2 nested mount", opts: map[string]string{"secret": "team/kv/app", "key": "token"}, want: "t", wantVersion: "1"},
		{name: "v1", opts: map[string]string{"secret": "kv1/app/db"}, want: `{"pass":"pw1","user":"v1"}`, wantVersion: "kv1"},
		{name: "v1 key", opts: map[string]string{"secret": "kv1/app/db", "key": "pass"}, want: "pw1", wantVersion: "kv1"},
		{name: "v2 deleted version", opts: map[string]string{"secret": "secret/app/db", "version-id": "2"}, wantKind: secrets.ErrNotFound, wantErr: "version 2 was deleted; undelete it"},
		{name: "v2 destroyed version", opts: map[string]string{"secret": "secret/app/db", "version-id": "3"}, wantKind: secrets.ErrNotFound, wantErr: "version 3 was destroyed"},
		{name: "v2 unknown version", opts: map[string]string{"secret": "secret/app/db", "version-id": "9"}, wantKind: secrets.ErrNotFound, wantErr: "no version 9 at secret/data/app/db"},
		{name: "v2 latest deleted", opts: map[string]string{"secret": "secret/gone"}, wantKind: secrets.ErrNotFound, wantErr: "version 1, the latest, was deleted"},
		{name: "v2 missing path", opts: map[string]string{"secret": "secret/app/none"}, wantKind: secrets.ErrNotFound, wantErr: "no secret at secret/data/app/none"},
		{name: "v1 missing path", opts: map[string]string{"secret": "kv1/none"}, wantKind: secrets.ErrNotFound, wantErr: "no secret at"},
		{name: "v1 version", opts: map[string]string{"secret": "kv1/app/db", "version-id": "1"}, wantKind: secrets.ErrNotFound, wantErr: `"kv1/" is KV version 1`},
		{name: "no mount", opts: map[string]string{"secret": "nomount/app"}, wantKind: secrets.ErrAccessDenied, wantErr: "no secrets engine is mounted"},
		{name: "missing key", opts: map[string]string{"secret": "secret/app/db", "key": "password"}, wantKind: secrets.ErrBadValue, wantErr: `its keys are: "pass", "port", "user"`},
		{name: "write to kv", opts: map[string]string{"secret": "secret/app/db", "method": "write", "param.pass": "x"}, wantKind: secrets.ErrBadValue, wantErr: "overwrite"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ref := parse(t, reg, tt.opts)
			got, err := f.Fetch(fetchCtx(t), ref, false)
			if tt.wantKind != nil {
				wantErr(t, err, tt.wantKind, tt.wantErr)
				t.Logf("error: %v", err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got.Value) != tt.want || got.Version != tt.wantVersion {
				t.Fatalf("Fetch() = %s version %q, want %s version %q", got.Value, got.Version, tt.want, tt.wantVersion)
			}
		})
	}
	// The write was refused before reaching Vault.
	if got := s.Read(t, "secret/data/app/db"); jsonOf(t, got.Data["data"]) != latest {
		t.Fatalf("secret/app/db after a refused write = %v", got.Data["data"])
	}
	// One mount lookup per mount: the others came from the cache.
	if n := len(d.mounts); n != 3 {
		t.Errorf("cached mounts = %d, want 3 (secret/, kv1/, team/kv/; none for nomount/)", n)
	}

	// The names ALLOW judges: a KV v2 secret without data/, whatever the
	// volume wrote; other paths as written.
	for in, want := range map[string]string{
		"secret/data/app/db": "secret/app/db",
		"secret/app/db":      "secret/app/db",
		"secret/data/data/x": "secret/data/x",
		"team/kv/data/app":   "team/kv/app",
		"kv1/data/app":       "kv1/data/app", // KV v1: data/ is a folder
		"kv1/app/db":         "kv1/app/db",
	} {
		got, err := d.Canonical(fetchCtx(t), secrets.Ref{Backend: Name, Name: in})
		if err != nil || got != want {
			t.Errorf("Canonical(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func fetchCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestIntegrationPolicies(t *testing.T) {
	t.Parallel()
	s := vaulttest.Start(t)
	s.PutKV2(t, "secret", "app/db", map[string]any{"pass": "pw"})
	s.PutKV2(t, "secret", "other", map[string]any{"pass": "x"})
	s.EnableKV(t, "kv1", 1)
	s.PutKV1(t, "kv1", "x", map[string]any{"a": "b"})
	s.PutPolicy(t, "app", `path "secret/data/app/db" { capabilities = ["read"] }`)
	token := s.Token(t, vaulttest.TokenOptions{Policies: []string{"app"}, TTL: time.Hour})

	d, logs := realDriver(t, s, func(c *Config) { writeFile(t, c.TokenFile, token) })
	ctx := fetchCtx(t)
	if _, err := d.Fetch(ctx, secrets.Ref{Backend: Name, Name: "secret/app/db"}); err != nil {
		t.Fatal(err)
	}
	_, err := d.Fetch(ctx, secrets.Ref{Backend: Name, Name: "secret/other"})
	wantErr(t, err, secrets.ErrAccessDenied, `the token's policies must grant read on "secret/data/other"`)
	_, err = d.Fetch(ctx, secrets.Ref{Backend: Name, Name: "kv1/x"})
	wantErr(t, err, secrets.ErrAccessDenied, "no secrets engine is mounted at this path, or the token's policies grant nothing under its mount")
	if n := d.session("").logins(); n != 1 {
		t.Errorf("logins = %d, want 1: a policy denial is not an expired token", n)
	}
	if strings.Contains(logs.String(), token) {
		t.Error("the log holds the token")
	}
}

func TestIntegrationTokenFile(t *testing.T) {
	t.Parallel()
	s := vaulttest.Start(t)
	s.PutKV2(t, "secret", "app", map[string]any{"a": "b"})
	s.PutPolicy(t, "app", `path "secret/data/app" { capabilities = ["read"] }`)
	first := s.Token(t, vaulttest.TokenOptions{Policies: []string{"app"}, TTL: time.Hour})
	d, _ := realDriver(t, s, func(c *Config) { writeFile(t, c.TokenFile, first) })
	ref := secrets.Ref{Backend: Name, Name: "secret/app"}
	if _, err := d.Fetch(fetchCtx(t), ref); err != nil {
		t.Fatal(err)
	}

	// Rotation: the old token is revoked, a new one is in the file.
	s.RevokeToken(t, first)
	second := s.Token(t, vaulttest.TokenOptions{Policies: []string{"app"}, TTL: time.Hour})
	writeFile(t, d.cfg.TokenFile, second)
	if _, err := d.Fetch(fetchCtx(t), ref); err != nil {
		t.Fatalf("Fetch() after rotation = %v", err)
	}
	if got := d.session("").current(); got != second {
		t.Fatal("the driver does not use the rotated token")
	}

	// A revoked token with no replacement: a clear error.
	s.RevokeToken(t, second)
	_, err := d.Fetch(fetchCtx(t), ref)
	wantErr(t, err, secrets.ErrAccessDenied, "vault rejects the token from "+d.cfg.TokenFile)
}

func TestIntegrationTokenRenewal(t *testing.T) {
	t.Parallel()
	s := vaulttest.Start(t)
	s.PutKV2(t, "secret", "app", map[string]any{"a": "b"})
	s.PutPolicy(t, "app", `path "secret/data/app" { capabilities = ["read"] }`)
	ref := secrets.Ref{Backend: Name, Name: "secret/app"}

	t.Run("token file", func(t *testing.T) {
		t.Parallel()
		token := s.Token(t, vaulttest.TokenOptions{Policies: []string{"app"}, TTL: 2 * time.Second, ExplicitMaxTTL: time.Minute})
		d, _ := realDriver(t, s, func(c *Config) { writeFile(t, c.TokenFile, token) })
		if _, err := d.Fetch(fetchCtx(t), ref); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3500 * time.Millisecond) // past the token's first TTL
		if s.LookupToken(t, token) == nil {
			t.Fatal("the token expired: it was not renewed")
		}
		if _, err := d.Fetch(fetchCtx(t), ref); err != nil {
			t.Fatal(err)
		}
		if n := d.session("").logins(); n != 1 {
			t.Fatalf("logins = %d, want 1", n)
		}
	})

	t.Run("approle until max ttl", func(t *testing.T) {
		t.Parallel()
		s.EnableAuth(t, "approle-renew", "approle")
		roleID := s.CreateAppRole(t, "approle-renew", "app", vaulttest.RoleOptions{
			Policies: []string{"app"}, TokenTTL: 2 * time.Second, TokenMaxTTL: 5 * time.Second,
		})
		d, _ := realDriver(t, s, func(c *Config) {
			c.Auth = AuthAppRole
			c.AppRolePath = "approle-renew"
			writeFile(t, c.RoleIDFile, roleID)
			writeFile(t, c.SecretIDFile, s.SecretID(t, "approle-renew", "app"))
		})
		if _, err := d.Fetch(fetchCtx(t), ref); err != nil {
			t.Fatal(err)
		}
		first := d.session("").current()
		time.Sleep(3 * time.Second) // past the 2s TTL: renewed
		if s.LookupToken(t, first) == nil {
			t.Fatal("the AppRole token expired after its TTL: it was not renewed")
		}
		time.Sleep(3 * time.Second) // past the 5s max TTL: gone
		if s.LookupToken(t, first) != nil {
			t.Fatal("the AppRole token outlived its max TTL")
		}
		if _, err := d.Fetch(fetchCtx(t), ref); err != nil {
			t.Fatalf("Fetch() after the token's max TTL = %v", err)
		}
		if n := d.session("").logins(); n != 2 {
			t.Fatalf("logins = %d, want 2", n)
		}
	})
}

func TestIntegrationAppRole(t *testing.T) {
	t.Parallel()
	s := vaulttest.Start(t)
	s.PutKV2(t, "secret", "app", map[string]any{"a": "b"})
	s.PutPolicy(t, "app", `path "secret/data/app" { capabilities = ["read"] }`)
	s.EnableAuth(t, "approle", "approle")
	roleID := s.CreateAppRole(t, "approle", "app", vaulttest.RoleOptions{Policies: []string{"app"}, TokenTTL: time.Hour})
	ref := secrets.Ref{Backend: Name, Name: "secret/app", Key: "a"}

	t.Run("secret-id", func(t *testing.T) {
		d, _ := realDriver(t, s, func(c *Config) {
			c.Auth = AuthAppRole
			writeFile(t, c.RoleIDFile, roleID)
			writeFile(t, c.SecretIDFile, s.SecretID(t, "approle", "app"))
		})
		got, err := d.Fetch(fetchCtx(t), ref)
		if err != nil || string(got.Value) != "b" {
			t.Fatalf("Fetch() = %q, %v", got.Value, err)
		}
	})

	t.Run("wrapped secret-id", func(t *testing.T) {
		wrapping := s.WrappedSecretID(t, "approle", "app", time.Minute)
		var cfg Config
		d, logs := realDriver(t, s, func(c *Config) {
			c.Auth = AuthAppRole
			c.SecretIDWrapped = true
			writeFile(t, c.RoleIDFile, roleID)
			writeFile(t, c.SecretIDFile, wrapping)
			cfg = *c
		})
		if _, err := d.Fetch(fetchCtx(t), ref); err != nil {
			t.Fatal(err)
		}
		// The token is revoked: the re-login reuses the unwrapped secret-id,
		// since the wrapping token works only once.
		s.RevokeToken(t, d.session("").current())
		if _, err := d.Fetch(fetchCtx(t), ref); err != nil {
			t.Fatalf("Fetch() after the token was revoked = %v", err)
		}
		if n := d.session("").logins(); n != 2 {
			t.Fatalf("logins = %d, want 2", n)
		}
		if strings.Contains(logs.String(), wrapping) {
			t.Error("the log holds the wrapping token")
		}
		// A restarted plugin cannot use the same wrapping token again.
		cfg.Client = clientOf(s)
		d2, err := New(cfg, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		defer d2.Close()
		_, err = d2.Fetch(fetchCtx(t), ref)
		wantErr(t, err, secrets.ErrAccessDenied, "already unwrapped or has expired")
	})

	t.Run("bad secret-id", func(t *testing.T) {
		d, _ := realDriver(t, s, func(c *Config) {
			c.Auth = AuthAppRole
			writeFile(t, c.RoleIDFile, roleID)
			writeFile(t, c.SecretIDFile, "00000000-0000-0000-0000-000000000000")
		})
		_, err := d.Fetch(fetchCtx(t), ref)
		wantErr(t, err, secrets.ErrAccessDenied, "AppRole login of the plugin at auth/approle failed")
	})
}

func TestIntegrationIdentities(t *testing.T) {
	t.Parallel()
	s := vaulttest.Start(t)
	s.PutKV2(t, "secret", "a", map[string]any{"v": "for a"})
	s.PutKV2(t, "secret", "b", map[string]any{"v": "for b"})
	s.PutPolicy(t, "read-a", `path "secret/data/a" { capabilities = ["read"] }`)
	s.PutPolicy(t, "read-b", `path "secret/data/b" { capabilities = ["read"] }`)
	s.EnableAuth(t, "approle", "approle")
	roleA := s.CreateAppRole(t, "approle", "a", vaulttest.RoleOptions{Policies: []string{"read-a"}, TokenTTL: time.Hour})
	roleB := s.CreateAppRole(t, "approle", "b", vaulttest.RoleOptions{Policies: []string{"read-b"}, TokenTTL: time.Hour})
	// The plugin's own token reads nothing.
	plain := s.Token(t, vaulttest.TokenOptions{TTL: time.Hour})
	d, _ := realDriver(t, s, func(c *Config) {
		writeFile(t, c.TokenFile, plain)
		writeIdentity(t, c.IdentitiesDir, "a", roleA, s.SecretID(t, "approle", "a"))
		writeIdentity(t, c.IdentitiesDir, "b", roleB, s.SecretID(t, "approle", "b"))
	})
	f, reg := fetcher(t, d)

	tests := []struct {
		identity, secret string
		want             string
	}{
		{identity: "a", secret: "secret/a", want: "for a"},
		{identity: "b", secret: "secret/b", want: "for b"},
		{identity: "a", secret: "secret/b"},
		{identity: "b", secret: "secret/a"},
		{identity: "", secret: "secret/a"},
	}
	for _, tt := range tests {
		t.Run(tt.identity+" reads "+tt.secret, func(t *testing.T) {
			opts := map[string]string{"secret": tt.secret, "key": "v"}
			if tt.identity != "" {
				opts["identity"] = tt.identity
			}
			got, err := f.Fetch(fetchCtx(t), parse(t, reg, opts), false)
			if tt.want == "" {
				wantErr(t, err, secrets.ErrAccessDenied, "")
				return
			}
			if err != nil || string(got.Value) != tt.want {
				t.Fatalf("Fetch() = %q, %v, want %q", got.Value, err, tt.want)
			}
		})
	}
	if d.session("a").current() == d.session("b").current() {
		t.Fatal("identities share a token")
	}
	err := d.Validate(secrets.Ref{Backend: Name, Name: "secret/a", Params: map[string]string{"identity": "c"}})
	if err == nil || !strings.Contains(err.Error(), filepath.Join(d.cfg.IdentitiesDir, "c")) {
		t.Fatalf("Validate(identity=c) = %v, want an error naming the directory", err)
	}
}

func TestIntegrationWrapping(t *testing.T) {
	t.Parallel()
	s := vaulttest.Start(t)
	s.PutKV2(t, "secret", "app/db", map[string]any{"pass": "pw"})
	d, _ := realDriver(t, s, nil)
	f, reg := fetcher(t, d)
	ref := parse(t, reg, map[string]string{"secret": "secret/app/db", "wrap-ttl": "60s"})

	first, err := f.Fetch(fetchCtx(t), ref, false)
	if err != nil {
		t.Fatal(err)
	}
	second, err := f.Fetch(fetchCtx(t), ref, false)
	if err != nil {
		t.Fatal(err)
	}
	if !first.NoReuse || bytes.Equal(first.Value, second.Value) || first.Version == "" {
		t.Fatalf("wrapped fetches: NoReuse %v, same token %v, version %q: want single-use tokens named by accessor",
			first.NoReuse, bytes.Equal(first.Value, second.Value), first.Version)
	}
	got := s.Unwrap(t, string(first.Value))
	if data := jsonOf(t, got.Data["data"]); data != `{"pass":"pw"}` {
		t.Fatalf("unwrapped data = %s", data)
	}
}

func TestIntegrationTLS(t *testing.T) {
	s := vaulttest.Start(t, vaulttest.TLS())
	s.PutKV2(t, "secret", "app", map[string]any{"a": "b"})
	ref := secrets.Ref{Backend: Name, Name: "secret/app", Key: "a"}

	// Configured as the plugin is: through the environment.
	t.Setenv("VAULT_ADDR", s.Addr)
	t.Setenv("VAULT_CACERT", s.CACert)
	d, _ := realDriver(t, s, func(c *Config) { c.Client = nil })
	got, err := d.Fetch(fetchCtx(t), ref)
	if err != nil || string(got.Value) != "b" {
		t.Fatalf("Fetch() over TLS with VAULT_CACERT = %q, %v", got.Value, err)
	}

	t.Setenv("VAULT_CACERT", "")
	d, _ = realDriver(t, s, func(c *Config) { c.Client = nil })
	_, err = d.Fetch(fetchCtx(t), ref)
	wantErr(t, err, secrets.ErrUnavailable, "set VAULT_CACERT")
}

func TestIntegrationNamespaceHeader(t *testing.T) {
	t.Parallel()
	// Vault OSS ignores namespaces; a proxy in front of it checks that the
	// backend sends them, while the real server answers.
	s := vaulttest.Start(t)
	s.PutKV2(t, "secret", "app", map[string]any{"a": "b"})
	target, err := url.Parse(s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[string]string{} // path -> namespace
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.URL.Path] = r.Header.Get("X-Vault-Namespace")
		mu.Unlock()
		proxy.ServeHTTP(w, r)
	}))
	defer srv.Close()
	d, _ := realDriver(t, s, func(c *Config) {
		c.Client.Address = srv.URL
		c.Namespace = "plugin-ns"
	})
	ref := secrets.Ref{Backend: Name, Name: "secret/app", Params: map[string]string{"namespace": "team-a"}}
	if _, err := d.Fetch(fetchCtx(t), ref); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := map[string]string{
		"/v1/auth/token/lookup-self":            "plugin-ns",
		"/v1/sys/internal/ui/mounts/secret/app": "team-a",
		"/v1/secret/data/app":                   "team-a",
	}
	for p, ns := range want {
		if seen[p] != ns {
			t.Errorf("%s sent namespace %q, want %q (all: %v)", p, seen[p], ns, seen)
		}
	}
}

func TestIntegrationWrite(t *testing.T) {
	t.Parallel()
	s := vaulttest.Start(t)
	s.Enable(t, "pki", "pki", nil)
	s.Write(t, "pki/root/generate/internal", map[string]any{"common_name": "example.com", "ttl": "1h"})
	s.Write(t, "pki/roles/web", map[string]any{"allowed_domains": "example.com", "allow_subdomains": true, "max_ttl": "1h"})
	d, _ := realDriver(t, s, nil)
	f, reg := fetcher(t, d)

	ref := parse(t, reg, map[string]string{"secret": "pki/issue/web", "method": "write", "param.common_name": "a.example.com", "param.ttl": "10m"})
	whole, err := f.Fetch(fetchCtx(t), ref, false)
	if err != nil {
		t.Fatal(err)
	}
	var issued map[string]any
	if err := json.Unmarshal(whole.Value, &issued); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"certificate", "private_key", "issuing_ca", "serial_number"} {
		if issued[k] == nil {
			t.Errorf("issued certificate lacks %q", k)
		}
	}
	ref.Key = "certificate"
	cert, err := f.Fetch(fetchCtx(t), ref, false)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(cert.Value), "-----BEGIN CERTIFICATE-----") || !whole.NoReuse {
		t.Fatalf("key certificate = %.40q, NoReuse %v: want a PEM certificate issued per volume", cert.Value, whole.NoReuse)
	}
	if cert.Value != nil && strings.Contains(string(whole.Value), string(cert.Value)) {
		t.Fatal("a second write reused the first certificate")
	}

	bad := parse(t, reg, map[string]string{"secret": "pki/issue/web", "method": "write", "param.common_name": "evil.test"})
	_, err = f.Fetch(fetchCtx(t), bad, false)
	wantErr(t, err, secrets.ErrNotFound, "param.*")
}

// startDatabase runs PostgreSQL and a Vault whose database engine issues
// logins of role database/creds/app with these TTLs.
func startDatabase(t *testing.T, ttl, maxTTL time.Duration) (*pgtest.Server, *vaulttest.Server) {
	t.Helper()
	pg := pgtest.Start(t)
	s := vaulttest.Start(t)
	s.Enable(t, "database", "database", nil)
	s.ConfigurePostgres(t, "database", "pg", pg.URL(), pgtest.SuperUser, pg.Password, "app")
	s.CreateDatabaseRole(t, "database", "app", vaulttest.DatabaseRole{
		DBName:             "pg",
		CreationStatements: []string{`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`},
		DefaultTTL:         ttl,
		MaxTTL:             maxTTL,
	})
	return pg, s
}

func TestIntegrationDatabase(t *testing.T) {
	t.Parallel()
	pg, s := startDatabase(t, 10*time.Second, time.Minute)
	d, _ := realDriver(t, s, nil)
	f, reg := fetcher(t, d)
	ref := parse(t, reg, map[string]string{"secret": "database/creds/app"})
	ctx := fetchCtx(t)

	sec, err := f.Fetch(ctx, ref, false)
	if err != nil {
		t.Fatal(err)
	}
	if sec.Lease == nil || !sec.Lease.Renewable || sec.Lease.Duration != 10*time.Second || !sec.Unique() {
		t.Fatalf("lease = %+v, want a renewable 10s lease, never reused", sec.Lease)
	}
	var creds struct{ Username, Password string }
	if err := json.Unmarshal(sec.Value, &creds); err != nil || creds.Username == "" || creds.Password == "" {
		t.Fatalf("creds = %v (%v)", creds.Username, err)
	}
	if err := pg.CanLogin(ctx, creds.Username, creds.Password); err != nil {
		t.Fatalf("the issued credentials do not log in to PostgreSQL: %v", err)
	}
	// Another volume gets its own credentials.
	other, err := f.Fetch(ctx, ref, false)
	if err != nil || other.Lease == nil || other.Lease.ID == sec.Lease.ID {
		t.Fatalf("second fetch: %v, lease %+v: want a lease of its own", err, other.Lease)
	}

	before := s.LeaseExpiry(t, sec.Lease.ID)
	time.Sleep(1100 * time.Millisecond)
	renewed, err := d.Renew(ctx, ref, *sec.Lease)
	if err != nil {
		t.Fatal(err)
	}
	after := s.LeaseExpiry(t, sec.Lease.ID)
	if renewed.ID != sec.Lease.ID || renewed.Duration <= 0 || !after.After(before) {
		t.Fatalf("Renew() = %+v; expiry %v -> %v: want the lease extended", renewed, before, after)
	}

	if err := d.Revoke(ctx, ref, sec.Lease.ID); err != nil {
		t.Fatal(err)
	}
	if pg.RoleExists(t, creds.Username) {
		t.Fatal("the PostgreSQL role survived the revocation")
	}
	if err := pg.CanLogin(ctx, creds.Username, creds.Password); err == nil {
		t.Fatal("revoked credentials still log in")
	}
	if err := d.Revoke(ctx, ref, sec.Lease.ID); err != nil {
		t.Fatalf("Revoke() of a revoked lease = %v, want nil", err)
	}
	_, err = d.Renew(ctx, ref, *sec.Lease)
	wantErr(t, err, secrets.ErrNotFound, "read the secret again")
	if err := d.Revoke(ctx, ref, other.Lease.ID); err != nil {
		t.Fatal(err)
	}
}

// TestIntegrationLeaseIssuer: Vault ends a lease with the token that read
// it. A lease records its token (by a hash of its accessor); when an
// AppRole token reaches its max TTL the driver says so (IssuerEnded), and
// Renew refuses the leases of the old token, so that their holders read
// fresh ones. A re-login with the same token (a token file) keeps them.
func TestIntegrationLeaseIssuer(t *testing.T) {
	t.Parallel()
	pg, s := startDatabase(t, time.Hour, 2*time.Hour)
	s.PutPolicy(t, "creds", `path "database/creds/app" { capabilities = ["read"] }`)
	s.EnableAuth(t, "approle", "approle")
	roleID := s.CreateAppRole(t, "approle", "app", vaulttest.RoleOptions{Policies: []string{"creds"}, TokenTTL: 2 * time.Second, TokenMaxTTL: 5 * time.Second})
	ref := secrets.Ref{Backend: Name, Name: "database/creds/app"}

	t.Run("approle token at its max TTL", func(t *testing.T) {
		d, _ := realDriver(t, s, func(c *Config) {
			c.Auth = AuthAppRole
			writeFile(t, c.RoleIDFile, roleID)
			writeFile(t, c.SecretIDFile, s.SecretID(t, "approle", "app"))
		})
		first, err := d.Fetch(fetchCtx(t), ref)
		if err != nil {
			t.Fatal(err)
		}
		if first.Lease == nil || first.Lease.Issuer == "" {
			t.Fatalf("lease %+v: want its issuer", first.Lease)
		}
		if strings.Contains(first.Lease.Issuer, d.session("").current()) {
			t.Fatal("the issuer shows the token")
		}
		select {
		case <-d.IssuerEnded():
		case <-time.After(15 * time.Second):
			t.Fatal("no IssuerEnded within 15s of a token with a 5s max TTL")
		}
		_, err = d.Renew(fetchCtx(t), ref, *first.Lease)
		if err == nil || !strings.Contains(err.Error(), "has ended") {
			t.Fatalf("Renew() of a lease of the ended token = %v, want it refused", err)
		}
		second, err := d.Fetch(fetchCtx(t), ref)
		if err != nil || second.Lease == nil || second.Lease.Issuer == first.Lease.Issuer {
			t.Fatalf("Fetch() after the re-login = %+v, %v: want a lease of the new token", second.Lease, err)
		}
		if _, err := d.Renew(fetchCtx(t), ref, *second.Lease); err != nil {
			t.Fatalf("Renew() of the new token's lease = %v", err)
		}
		// What the refusal is for: Vault revoked the old token's lease.
		var creds struct{ Username, Password string }
		if err := json.Unmarshal(first.Value, &creds); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(10 * time.Second); pg.CanLogin(fetchCtx(t), creds.Username, creds.Password) == nil; time.Sleep(200 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the first credentials still log in 10s after their token ended")
			}
		}
	})

	t.Run("token file: the same token after a re-login", func(t *testing.T) {
		d, _ := realDriver(t, s, nil)
		sec, err := d.Fetch(fetchCtx(t), ref)
		if err != nil {
			t.Fatal(err)
		}
		se := d.session("")
		se.drop(se.logins())
		<-d.IssuerEnded()
		if _, err := d.Renew(fetchCtx(t), ref, *sec.Lease); err != nil {
			t.Fatalf("Renew() after a re-login with the same token = %v", err)
		}
	})
}

// TestIntegrationStalledVault: a real Vault behind a proxy that holds every
// request (a Vault that accepts connections and hangs). With the TIMEOUT
// setting, each call returns a timeout by it even when its caller gives no
// deadline (ALLOW's lookup during a refresh): a mount lookup, a read, an
// identity's login, a lease's renewal and revocation. Once Vault answers
// again, so does the backend.
func TestIntegrationStalledVault(t *testing.T) {
	t.Parallel()
	s := vaulttest.Start(t)
	s.PutKV2(t, "secret", "app", map[string]any{"a": "b"})
	s.EnableKV(t, "other", 2)
	s.PutKV2(t, "other", "app", map[string]any{"a": "c"})
	s.EnableAuth(t, "approle", "approle")
	s.PutPolicy(t, "app", `path "secret/data/app" { capabilities = ["read"] }`)
	roleID := s.CreateAppRole(t, "approle", "web", vaulttest.RoleOptions{Policies: []string{"app"}, TokenTTL: time.Hour})
	proxy, err := faultproxy.Start(s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	const timeout = 500 * time.Millisecond
	d, _ := realDriver(t, s, func(c *Config) {
		c.Client.Address = proxy.URL()
		c.Client.MaxRetries = 2 // the default
		c.Timeout = timeout
		writeIdentity(t, c.IdentitiesDir, "web", roleID, s.SecretID(t, "approle", "web"))
	})
	ref := secrets.Ref{Backend: Name, Name: "secret/app"}
	if _, err := d.Fetch(fetchCtx(t), ref); err != nil { // logged in, mount known
		t.Fatal(err)
	}

	if err := proxy.Delay(time.Hour); err != nil {
		t.Fatal(err)
	}
	lease := secrets.Ref{Backend: Name, Name: "database/creds/app"}
	calls := []struct {
		name string
		call func(context.Context) error
	}{
		{name: "canonical name of an unknown mount", call: func(ctx context.Context) error {
			_, err := d.Canonical(ctx, secrets.Ref{Backend: Name, Name: "other/app"})
			return err
		}},
		{name: "read", call: func(ctx context.Context) error { _, err := d.Fetch(ctx, ref); return err }},
		{name: "identity login", call: func(ctx context.Context) error {
			_, err := d.Fetch(ctx, secrets.Ref{Backend: Name, Name: "secret/app", Params: map[string]string{"identity": "web"}})
			return err
		}},
		{name: "renewal", call: func(ctx context.Context) error {
			_, err := d.Renew(ctx, lease, secrets.Lease{ID: "database/creds/app/x", Duration: time.Minute})
			return err
		}},
		{name: "revocation", call: func(ctx context.Context) error { return d.Revoke(ctx, lease, "database/creds/app/x") }},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			before := proxy.Requests()
			err := callWithin(t, timeout+callLimit, func() error { return c.call(context.Background()) })
			if !errors.Is(err, secrets.ErrTimeout) {
				t.Fatalf("error = %v, want a timeout", err)
			}
			if proxy.Requests() == before {
				t.Fatal("no request reached the proxy")
			}
		})
	}

	if err := proxy.Pass(); err != nil {
		t.Fatal(err)
	}
	got, err := d.Fetch(fetchCtx(t), secrets.Ref{Backend: Name, Name: "secret/app", Params: map[string]string{"identity": "web"}})
	if err != nil || !strings.Contains(string(got.Value), `"a":"b"`) {
		t.Fatalf("Fetch() once vault answers = %v", err)
	}
}
