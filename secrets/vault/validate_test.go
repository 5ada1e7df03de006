package vault

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/dsv-plugin/dsv/secrets"
)

// testDriver returns a driver whose identities live in a temp dir holding
// "web" (complete) and "half" (no secret-id). Nothing listens at its
// address.
func testDriver(t testing.TB) *Driver {
	t.Helper()
	dir := t.TempDir()
	writeIdentity(t, dir, "web", "role", "secret")
	writeIdentity(t, dir, "half", "role", "")
	cfg := Config{
		Auth:          AuthToken,
		TokenFile:     filepath.Join(dir, "token"),
		AppRolePath:   "approle",
		RoleIDFile:    filepath.Join(dir, "role-id"),
		SecretIDFile:  filepath.Join(dir, "secret-id"),
		IdentitiesDir: dir,
		Client:        &ClientConfig{Address: "http://127.0.0.1:1"},
	}
	d, err := New(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d
}

// writeIdentity creates an identity directory; an empty value leaves its
// file out.
func writeIdentity(t testing.TB, dir, name, roleID, secretID string) {
	t.Helper()
	id := filepath.Join(dir, name)
	if err := os.MkdirAll(id, 0o700); err != nil {
		t.Fatal(err)
	}
	for file, v := range map[string]string{"role-id": roleID, "secret-id": secretID} {
		if v == "" {
			continue
		}
		if err := os.WriteFile(filepath.Join(id, file), []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func TestParams(t *testing.T) {
	d := testDriver(t)
	reg, err := secrets.NewRegistry(d)
	if err != nil {
		t.Fatal(err)
	}
	raw := map[string]string{
		"backend": "vault", "secret": "pki/issue/web", "method": "write",
		"param.common_name": "a.example.com", "param.ttl": "1h", "namespace": "team-a", "identity": "web",
		"wrap-ttl": "60", "mode": "0400",
	}
	ref, rest, problems := secrets.ParseRef("vol", raw, "file", reg)
	if len(problems) > 0 {
		t.Fatalf("ParseRef() problems = %v", problems)
	}
	if len(rest) != 1 || rest["mode"] != "0400" {
		t.Errorf("ParseRef() rest = %v, want only mode", rest)
	}
	req, err := parseRequest(ref)
	if err != nil {
		t.Fatal(err)
	}
	want := request{
		path: "pki/issue/web", namespace: "team-a", identity: "web", write: true,
		params: map[string]string{"common_name": "a.example.com", "ttl": "1h"}, wrapTTL: time.Minute,
	}
	if req.path != want.path || req.namespace != want.namespace || req.identity != want.identity ||
		req.write != want.write || req.wrapTTL != want.wrapTTL || len(req.params) != 2 ||
		req.params["common_name"] != "a.example.com" || req.params["ttl"] != "1h" {
		t.Fatalf("parseRequest() = %+v, want %+v", req, want)
	}
}

func TestValidate(t *testing.T) {
	d := testDriver(t)
	tests := []struct {
		name string
		ref  secrets.Ref
		want []string // empty: valid; else each must appear in the error
	}{
		{name: "kv path", ref: secrets.Ref{Name: "secret/app/db"}},
		{name: "kv v2 data path", ref: secrets.Ref{Name: "secret/data/app/db", VersionID: "3"}},
		{name: "dynamic", ref: secrets.Ref{Name: "database/creds/app"}},
		{name: "write", ref: secrets.Ref{Name: "pki/issue/web", Params: map[string]string{"method": "write", "param.common_name": "x"}}},
		{name: "read params", ref: secrets.Ref{Name: "secret/app", Params: map[string]string{"param.version": "1"}}},
		{name: "identity", ref: secrets.Ref{Name: "secret/app", Params: map[string]string{"identity": "web"}}},
		{name: "namespace", ref: secrets.Ref{Name: "secret/app", Params: map[string]string{"namespace": "team-a/app/"}}},
		{name: "wrap duration", ref: secrets.Ref{Name: "secret/app", Params: map[string]string{"wrap-ttl": "5m"}}},
		{name: "key", ref: secrets.Ref{Name: "secret/app", Key: "pass"}},

		{name: "empty path", ref: secrets.Ref{Name: ""}, want: []string{`option "secret"`, "required"}},
		{name: "leading slash", ref: secrets.Ref{Name: "/secret/app"}, want: []string{`option "secret"`, "leading /"}},
		{name: "api prefix", ref: secrets.Ref{Name: "v1/secret/app"}, want: []string{`option "secret"`, "v1/"}},
		{name: "dotdot", ref: secrets.Ref{Name: "secret/../sys/x"}, want: []string{`option "secret"`, `".."`}},
		{name: "dot", ref: secrets.Ref{Name: "secret/./x"}, want: []string{`option "secret"`, `"."`}},
		{name: "the plugin's own token", ref: secrets.Ref{Name: "auth/token/lookup-self", Key: "id"}, want: []string{`option "secret"`, "auth/", "own Vault token"}},
		{name: "minting tokens", ref: secrets.Ref{Name: "auth/token/create", Params: map[string]string{"method": "write"}}, want: []string{`option "secret"`, "auth/"}},
		{name: "vault's configuration", ref: secrets.Ref{Name: "sys/config/state/sanitized"}, want: []string{`option "secret"`, "sys/"}},
		{name: "the token's cubbyhole", ref: secrets.Ref{Name: "cubbyhole/x"}, want: []string{`option "secret"`, "cubbyhole/"}},
		{name: "identity oidc token", ref: secrets.Ref{Name: "identity/oidc/token/web", Key: "token"}, want: []string{`option "secret"`, "identity/", "OIDC tokens in its name"}},
		{name: "identity oidc authorize", ref: secrets.Ref{Name: "identity/oidc/provider/default/authorize", Params: map[string]string{"param.client_id": "x"}}, want: []string{`option "secret"`, "identity/"}},
		{name: "identity entity", ref: secrets.Ref{Name: "identity/entity/name/plugin"}, want: []string{`option "secret"`, "identity/"}},
		// Vault Enterprise (and OpenBao) read leading segments that name a
		// namespace as the namespace: these are namespace team-a's own
		// mounts.
		{name: "namespaced sys", ref: secrets.Ref{Name: "team-a/sys/config/state/sanitized"}, want: []string{`option "secret"`, `reads "team-a" as a namespace`, "sys/ of that namespace"}},
		{name: "namespaced token minting", ref: secrets.Ref{Name: "team-a/auth/token/create", Params: map[string]string{"method": "write"}}, want: []string{`option "secret"`, `"team-a"`, "auth/", "mints new ones"}},
		{name: "namespaced lookup-self", ref: secrets.Ref{Name: "team-a/app/auth/token/lookup-self", Key: "id"}, want: []string{`option "secret"`, `"team-a/app" as a namespace`}},
		{name: "namespaced unwrap", ref: secrets.Ref{Name: "team-a/sys/wrapping/unwrap", Params: map[string]string{"method": "write", "param.token": "x"}}, want: []string{`option "secret"`, "sys/"}},
		{name: "namespaced oidc token", ref: secrets.Ref{Name: "team-a/identity/oidc/token/web"}, want: []string{`option "secret"`, "identity/"}},
		{name: "namespaced cubbyhole", ref: secrets.Ref{Name: "team-a/cubbyhole/x"}, want: []string{`option "secret"`, "cubbyhole/"}},
		{name: "namespace option then sys", ref: secrets.Ref{Name: "sys/config/state/sanitized", Params: map[string]string{"namespace": "team-a"}}, want: []string{`option "secret"`, "sys/"}},
		{name: "namespace option ending in sys", ref: secrets.Ref{Name: "config/state/sanitized", Params: map[string]string{"namespace": "team-a/sys"}}, want: []string{`option "namespace"`, "sys is Vault's own mount"}},
		{name: "namespace option auth", ref: secrets.Ref{Name: "token/create", Params: map[string]string{"namespace": "auth/", "method": "write"}}, want: []string{`option "namespace"`, "auth is Vault's own mount"}},
		{name: "upper case", ref: secrets.Ref{Name: "SYS/config/state/sanitized"}, want: []string{`option "secret"`, "sys/"}},
		{name: "mixed case namespaced", ref: secrets.Ref{Name: "team-a/Auth/token/create"}, want: []string{`option "secret"`, "auth/"}},
		{name: "space around the mount", ref: secrets.Ref{Name: "team-a/ sys /raw/x"}, want: []string{`option "secret"`, "sys/"}},
		{name: "dot before sys", ref: secrets.Ref{Name: "./sys/raw/x"}, want: []string{`option "secret"`}},
		{name: "dotdot to sys", ref: secrets.Ref{Name: "team-a/x/../sys/raw"}, want: []string{`option "secret"`}},
		{name: "a secret named auth", ref: secrets.Ref{Name: "secret/app/auth"}},
		{name: "a namespaced secret named sys", ref: secrets.Ref{Name: "team-a/secret/sys"}},
		{name: "a secret named like a mount", ref: secrets.Ref{Name: "secret/authors/system"}},
		{name: "double slash", ref: secrets.Ref{Name: "secret//x"}, want: []string{`option "secret"`, "empty path segment"}},
		{name: "trailing slash", ref: secrets.Ref{Name: "secret/x/"}, want: []string{`option "secret"`, "empty path segment"}},
		{name: "newline", ref: secrets.Ref{Name: "secret/x\ny"}, want: []string{`option "secret"`, "control"}},
		{name: "version zero", ref: secrets.Ref{Name: "secret/x", VersionID: "0"}, want: []string{`option "version-id"`, "version number"}},
		{name: "version word", ref: secrets.Ref{Name: "secret/x", VersionID: "latest"}, want: []string{`option "version-id"`}},
		{name: "version with write", ref: secrets.Ref{Name: "pki/issue/x", VersionID: "2", Params: map[string]string{"method": "write"}}, want: []string{`option "version-id"`, "method=write"}},
		{name: "version stage", ref: secrets.Ref{Name: "secret/x", VersionStage: "AWSCURRENT"}, want: []string{`option "version-stage"`, "not supported by the vault backend"}},
		{name: "region", ref: secrets.Ref{Name: "secret/x", Region: "us-east-1"}, want: []string{`option "region"`, "not supported by the vault backend"}},
		{name: "method", ref: secrets.Ref{Name: "secret/x", Params: map[string]string{"method": "delete"}}, want: []string{`option "method"`, "read or write"}},
		{name: "wrap ttl word", ref: secrets.Ref{Name: "secret/x", Params: map[string]string{"wrap-ttl": "soon"}}, want: []string{`option "wrap-ttl"`, "duration"}},
		{name: "wrap ttl zero", ref: secrets.Ref{Name: "secret/x", Params: map[string]string{"wrap-ttl": "0"}}, want: []string{`option "wrap-ttl"`, "at least 1s"}},
		{name: "wrap ttl fraction", ref: secrets.Ref{Name: "secret/x", Params: map[string]string{"wrap-ttl": "1500ms"}}, want: []string{`option "wrap-ttl"`, "whole seconds"}},
		{name: "key with wrap", ref: secrets.Ref{Name: "secret/x", Key: "a", Params: map[string]string{"wrap-ttl": "60"}}, want: []string{`option "key"`, "wrap-ttl"}},
		{name: "namespace", ref: secrets.Ref{Name: "secret/x", Params: map[string]string{"namespace": "a b"}}, want: []string{`option "namespace"`}},
		{name: "identity name", ref: secrets.Ref{Name: "secret/x", Params: map[string]string{"identity": "../web"}}, want: []string{`option "identity"`, "not an identity name"}},
		{name: "identity dotdot", ref: secrets.Ref{Name: "secret/x", Params: map[string]string{"identity": ".."}}, want: []string{`option "identity"`}},
		{name: "unknown identity", ref: secrets.Ref{Name: "secret/x", Params: map[string]string{"identity": "db"}}, want: []string{`option "identity"`, `unknown identity "db"`, filepath.Join(d.cfg.IdentitiesDir, "db")}},
		{name: "identity without secret-id", ref: secrets.Ref{Name: "secret/x", Params: map[string]string{"identity": "half"}}, want: []string{`option "identity"`, "no secret-id file"}},
		{
			name: "every problem at once",
			ref:  secrets.Ref{Name: "/x", VersionID: "v", Region: "r", Params: map[string]string{"method": "get", "wrap-ttl": "x", "identity": "nope"}},
			want: []string{`"secret"`, `"version-id"`, `"region"`, `"method"`, `"wrap-ttl"`, `"identity"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.ref.Backend = "vault"
			err := d.Validate(tt.ref)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate() = nil, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, does not contain %q", err, w)
				}
			}
		})
	}
}

func TestParseTTL(t *testing.T) {
	for in, want := range map[string]time.Duration{"60": time.Minute, "1": time.Second, "90s": 90 * time.Second, "2h": 2 * time.Hour} {
		if got, err := parseTTL(in); err != nil || got != want {
			t.Errorf("parseTTL(%q) = %v, %v, want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-5", "0s", "1.5", "5 m", "500ms"} {
		if _, err := parseTTL(in); err == nil {
			t.Errorf("parseTTL(%q) = nil error", in)
		}
	}
}

// FuzzValidate checks that no option value makes Validate panic, that a
// valid path has no traversal, and that errors do not flood: each value
// is quoted at most once, shortened.
func FuzzValidate(f *testing.F) {
	for _, s := range []string{"secret/app/db", "/x", "a/../b", "a//b", "database/creds/app", "\x00", "v1/x", strings.Repeat("a/", 600),
		"team-a/sys/config/state", "team-a/auth/token/create", "identity/oidc/token/web", "a/b/Identity/oidc/token/x", "x/./sys/y", "Cubbyhole/x", "secret/app/auth"} {
		f.Add(s, "1", "read", "60s", "web", "team-a")
	}
	f.Add("config/state", "1", "read", "60s", "web", "team-a/SYS")
	d := testDriver(f)
	f.Fuzz(func(t *testing.T, path, version, method, wrap, identity, namespace string) {
		ref := secrets.Ref{Backend: "vault", Name: path, VersionID: version, Params: map[string]string{
			"method": method, "wrap-ttl": wrap, "identity": identity, "namespace": namespace,
		}}
		err := d.Validate(ref)
		if validPath(path) == nil {
			for _, seg := range strings.Split(path, "/") {
				if seg == ".." || seg == "." || seg == "" {
					t.Fatalf("validPath(%q) = nil with segment %q", path, seg)
				}
			}
			if strings.HasPrefix(path, "/") {
				t.Fatalf("validPath(%q) = nil with a leading /", path)
			}
			// Whatever namespaces lead it, the path reaches none of
			// Vault's own mounts: none is named before its last segment.
			segs := strings.Split(path, "/")
			for i, seg := range segs[:len(segs)-1] {
				if reservedMount(seg) != "" {
					t.Fatalf("validPath(%q) = nil with %q at segment %d", path, seg, i)
				}
			}
			if reservedMount(segs[0]) != "" {
				t.Fatalf("validPath(%q) = nil under a reserved mount", path)
			}
		}
		if validNamespace(namespace) == nil {
			for _, seg := range strings.Split(namespace, "/") {
				if reservedMount(seg) != "" {
					t.Fatalf("validNamespace(%q) = nil with %q", namespace, seg)
				}
			}
		}
		if err != nil && len(err.Error()) > 4096 {
			t.Fatalf("Validate() error is %d bytes long", len(err.Error()))
		}
		if identityRE.MatchString(identity) && identity != "." && identity != ".." && err == nil && identity != "web" {
			t.Fatalf("Validate() accepted unknown identity %q", identity)
		}
	})
}

func TestMountPrefixAndAPIPath(t *testing.T) {
	tests := []struct {
		name      string
		path      string
		mountPath string
		kv        int
		wantPre   string
		wantPath  string
		wantErr   bool
	}{
		{name: "v2", path: "secret/app/db", mountPath: "secret/", kv: 2, wantPre: "secret/", wantPath: "secret/data/app/db"},
		{name: "v2 with data", path: "secret/data/app/db", mountPath: "secret/", kv: 2, wantPre: "secret/", wantPath: "secret/data/app/db"},
		{name: "v2 nested mount", path: "team/kv/app", mountPath: "team/kv/", kv: 2, wantPre: "team/kv/", wantPath: "team/kv/data/app"},
		{name: "v2 secret named data-x", path: "secret/data-x", mountPath: "secret/", kv: 2, wantPre: "secret/", wantPath: "secret/data/data-x"},
		{name: "v2 mount root", path: "secret", mountPath: "secret/", kv: 2, wantPre: "secret/", wantErr: true},
		{name: "v2 data root", path: "secret/data", mountPath: "secret/", kv: 2, wantPre: "secret/", wantErr: true},
		// A mount in a child namespace is reported with the namespace first.
		{name: "v2 child namespace", path: "secret/app", mountPath: "child/secret/", kv: 2, wantPre: "secret/", wantPath: "secret/data/app"},
		{name: "v2 child namespace in path", path: "child/secret/app", mountPath: "child/secret/", kv: 2, wantPre: "child/secret/", wantPath: "child/secret/data/app"},
		{name: "v1", path: "kv/app", mountPath: "kv/", kv: 1, wantPre: "kv/", wantPath: "kv/app"},
		{name: "dynamic", path: "database/creds/app", mountPath: "database/", kv: 0, wantPre: "database/", wantPath: "database/creds/app"},
		{name: "prefix is not a segment", path: "secretive/x", mountPath: "secret/", kv: 2, wantPre: "", wantPath: "secretive/x"},
		{name: "unknown mount", path: "x/y", mountPath: "", kv: 2, wantPre: "", wantPath: "x/y"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pre := mountPrefix(tt.path, tt.mountPath)
			if pre != tt.wantPre {
				t.Fatalf("mountPrefix(%q, %q) = %q, want %q", tt.path, tt.mountPath, pre, tt.wantPre)
			}
			got, err := apiPath(mountInfo{prefix: pre, kv: tt.kv}, tt.path)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("apiPath() = %q, want an error", got)
				}
				return
			}
			if err != nil || got != tt.wantPath {
				t.Fatalf("apiPath() = %q, %v, want %q", got, err, tt.wantPath)
			}
		})
	}
}

func TestRevokePolicyPath(t *testing.T) {
	if got := revokePolicyPath("database/creds/app/AbCdEf123"); got != "sys/leases/revoke/database/creds/app/*" {
		t.Fatalf("revokePolicyPath() = %q", got)
	}
	if got := revokePolicyPath("opaque"); got != "sys/leases/revoke/*" {
		t.Fatalf("revokePolicyPath(opaque) = %q", got)
	}
}
