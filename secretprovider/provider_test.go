package secretprovider

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	dockersecrets "github.com/docker/go-plugins-helpers/secrets"
	"github.com/rs/zerolog"

	"github.com/dsv-plugin/dsv/secrets"
	"github.com/dsv-plugin/dsv/secrets/allowlist"
	"github.com/dsv-plugin/dsv/secrets/cache"
	"github.com/dsv-plugin/dsv/secrets/file"
)

// idBackend is a backend with identities, like vault: it declares the
// identity param, knows the identities "web" and "api", serves any name, and
// leases names that start with "dynamic/" (a new value per read).
type idBackend struct {
	mu    sync.Mutex
	reads []secrets.Ref
	n     int
}

func (b *idBackend) Name() string     { return "ids" }
func (b *idBackend) Params() []string { return []string{OptIdentity, "namespace", "param."} }
func (b *idBackend) Validate(ref secrets.Ref) error {
	if id, ok := ref.Params[OptIdentity]; ok && id != "web" && id != "api" {
		return fmt.Errorf("option %q: unknown identity %q", OptIdentity, id)
	}
	return nil
}

func (b *idBackend) Fetch(_ context.Context, ref secrets.Ref) (secrets.Secret, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.reads = append(b.reads, ref)
	b.n++
	if strings.HasPrefix(ref.Name, "dynamic/") {
		return secrets.Secret{Value: fmt.Appendf(nil, "cred-%d", b.n), Version: "lease", Lease: &secrets.Lease{ID: fmt.Sprintf("lease/%d", b.n), Duration: time.Minute}}, nil
	}
	if ref.Name == "missing" {
		return secrets.Secret{}, secrets.Fail(ref, secrets.ErrNotFound, "", nil)
	}
	return secrets.Secret{Value: []byte("value-as-" + ref.Params[OptIdentity]), Version: "v1"}, nil
}

func (b *idBackend) lastRead(t *testing.T) secrets.Ref {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.reads) == 0 {
		t.Fatal("the backend was not read")
	}
	return b.reads[len(b.reads)-1]
}

// upper is a fake format, so tests see that dsv.format reaches Format.
func upper(format string, value []byte) ([]byte, error) {
	if format != "upper" {
		return nil, fmt.Errorf("unexpected format %q", format)
	}
	if bytes.Contains(value, []byte("not-upper")) {
		return nil, errors.New("the value cannot be upper-cased")
	}
	return bytes.ToUpper(value), nil
}

type harness struct {
	p       *Provider
	files   string
	ids     *idBackend
	fetcher *cache.Fetcher
	logs    *bytes.Buffer
}

func newHarness(t *testing.T, fromServiceName bool) *harness {
	t.Helper()
	h := &harness{files: t.TempDir(), ids: &idBackend{}, logs: &bytes.Buffer{}}
	log := zerolog.New(h.logs)
	reg, err := secrets.NewRegistry(file.New(h.files, log), h.ids)
	if err != nil {
		t.Fatal(err)
	}
	if h.fetcher, err = cache.New(reg, cache.Config{TTL: time.Minute, Timeout: 2 * time.Second}); err != nil {
		t.Fatal(err)
	}
	h.p, err = New(Config{
		Registry: reg, Fetcher: h.fetcher, DefaultBackend: file.Name,
		IdentityFromServiceName: fromServiceName,
		Format:                  upper, Formats: []string{"upper"},
		Logger: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *harness) write(t *testing.T, name, value string) {
	t.Helper()
	p := filepath.Join(h.files, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(value), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestGet covers the secret labels: defaults, the reference options,
// dsv.format, and every kind of refusal, each with the text Swarm shows.
func TestGet(t *testing.T) {
	h := newHarness(t, false)
	h.write(t, "db-password", "s3cr3t")
	h.write(t, "app/db.json", `{"user":"app","password":"pw"}`)
	h.write(t, "canary", "dsv-canary-not-upper")

	tests := []struct {
		name    string
		secret  string
		labels  map[string]string
		want    string
		wantErr []string // substrings of Err
	}{
		{name: "secret defaults to the swarm secret's name", secret: "db-password", want: "s3cr3t"},
		{name: "other labels are ignored", secret: "db-password", labels: map[string]string{"com.docker.stack.namespace": "st", "uid": "7"}, want: "s3cr3t"},
		{name: "secret and key", secret: "anything", labels: map[string]string{"dsv.secret": "app/db.json", "dsv.key": "password"}, want: "pw"},
		{name: "format", secret: "x", labels: map[string]string{"dsv.secret": "db-password", "dsv.format": "upper"}, want: "S3CR3T"},
		{name: "format raw", secret: "x", labels: map[string]string{"dsv.secret": "db-password", "dsv.format": "raw"}, want: "s3cr3t"},
		{name: "other backend", secret: "db", labels: map[string]string{"dsv.backend": "ids"}, want: "value-as-"},
		{name: "unknown format", secret: "db-password", labels: map[string]string{"dsv.format": "yaml"},
			wantErr: []string{`label "dsv.format": unknown format "yaml"; use one of: raw, upper`}},
		{name: "volume-only options", secret: "db-password", labels: map[string]string{
			"dsv.uid": "1000", "dsv.gid": "1", "dsv.mode": "0400", "dsv.layout": "dir", "dsv.filename": "f", "dsv.refresh": "1m",
			"dsv.template": "{{ . }}", "dsv.template-file": "t", "dsv.file.a": "b", "dsv.template.x": "y"},
			wantErr: []string{
				`label "dsv.uid": not for Swarm secrets: Swarm sets the file's owner itself: docker service create --secret source=NAME,target=FILE,uid=1000`,
				`label "dsv.gid": not for Swarm secrets`, `label "dsv.mode": not for Swarm secrets: Swarm sets the file's mode itself`,
				`label "dsv.layout": not for Swarm secrets: a Swarm secret is one file`, `label "dsv.filename": not for Swarm secrets`,
				`label "dsv.refresh": not for Swarm secrets: Swarm reads a secret once per task`,
				`label "dsv.template": not for Swarm secrets`, `label "dsv.template-file": not for Swarm secrets`,
				`label "dsv.file.a": not for Swarm secrets: a Swarm secret holds one value; use a dsv volume for many files`,
				`label "dsv.template.x": not for Swarm secrets`,
			}},
		{name: "unknown label lists the known ones", secret: "db-password", labels: map[string]string{"dsv.colour": "red"},
			wantErr: []string{`unknown label "dsv.colour"; known labels are: dsv.backend, dsv.secret, dsv.key, dsv.version-id, dsv.version-stage, dsv.region, dsv.format`}},
		{name: "known labels include the backend's params", secret: "db", labels: map[string]string{"dsv.backend": "ids", "dsv.colour": "red"},
			wantErr: []string{`dsv.format, dsv.identity, dsv.namespace, dsv.param.NAME`}},
		{name: "backend params are accepted", secret: "db", labels: map[string]string{"dsv.backend": "ids", "dsv.namespace": "team", "dsv.param.ttl": "1h"}, want: "value-as-"},
		{name: "key star", secret: "app/db.json", labels: map[string]string{"dsv.key": "*"},
			wantErr: []string{`label "dsv.key": "*" writes one file per key, but a Swarm secret is one file`}},
		{name: "ParseRef's problems name labels", secret: "x", labels: map[string]string{"dsv.secret": "", "dsv.key": ""},
			wantErr: []string{`label "dsv.key": must not be empty`, `label "dsv.secret": must not be empty`}},
		{name: "the backend's validation names labels", secret: "x", labels: map[string]string{"dsv.secret": "../etc/shadow", "dsv.region": "us-east-1"},
			wantErr: []string{`label "dsv.secret": "../etc/shadow" leaves or escapes`, `label "dsv.region" is not supported by the file backend`}},
		{name: "unknown backend", secret: "x", labels: map[string]string{"dsv.backend": "gcp", "dsv.identity": "web"},
			wantErr: []string{`label "dsv.backend": unknown backend "gcp"; use one of: file, ids`}},
		{name: "every problem at once", secret: "db-password", labels: map[string]string{"dsv.mode": "0400", "dsv.colour": "red", "dsv.format": "yaml"},
			wantErr: []string{`dsv: secret "db-password" for service "web": invalid labels: `, `"dsv.format"`, `"dsv.mode"`, `"dsv.colour"`}},
		{name: "backend error names the object", secret: "nope",
			wantErr: []string{`dsv: secret "nope" for service "web": file secret "nope": not found`}},
		{name: "key error", secret: "app/db.json", labels: map[string]string{"dsv.key": "pass"},
			wantErr: []string{`file secret "app/db.json" key "pass": unusable value`}},
		{name: "format error never quotes the value", secret: "canary", labels: map[string]string{"dsv.format": "upper"},
			wantErr: []string{`file secret "canary": label "dsv.format": the value cannot be upper-cased`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := h.p.Get(dockersecrets.Request{SecretName: tt.secret, SecretLabels: tt.labels, ServiceName: "web", TaskName: "web.1.abc"})
			if tt.wantErr == nil {
				if resp.Err != "" || string(resp.Value) != tt.want || resp.DoNotReuse {
					t.Fatalf("Get = %+v (value %q), want value %q", resp, resp.Value, tt.want)
				}
				return
			}
			if resp.Err == "" || resp.Value != nil {
				t.Fatalf("Get = value %q, err %q; want an error", resp.Value, resp.Err)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(resp.Err, w) {
					t.Errorf("Err does not contain %q:\n%s", w, resp.Err)
				}
			}
			if strings.Contains(resp.Err, "dsv-canary") {
				t.Errorf("Err holds the secret's value: %s", resp.Err)
			}
		})
	}
	if strings.Contains(h.logs.String(), "dsv-canary") || strings.Contains(h.logs.String(), "s3cr3t") {
		t.Errorf("the logs hold a secret value:\n%s", h.logs)
	}
}

// TestIdentity: the service chooses the identity (its dsv.identity label,
// or its name with SWARM_IDENTITY_FROM_SERVICE_NAME); a secret's dsv.identity
// label only restricts which services may read it.
func TestIdentity(t *testing.T) {
	tests := []struct {
		name            string
		fromServiceName bool
		service         string
		serviceLabels   map[string]string
		secretLabels    map[string]string
		wantIdentity    string // the identity param the backend saw; "" = none
		wantErr         []string
	}{
		{name: "none: the plugin's own login", service: "web", secretLabels: map[string]string{"dsv.backend": "ids"}},
		{name: "service label", service: "frontend", serviceLabels: map[string]string{"dsv.identity": "web", "other": "x"},
			secretLabels: map[string]string{"dsv.backend": "ids"}, wantIdentity: "web"},
		{name: "service name", fromServiceName: true, service: "api", secretLabels: map[string]string{"dsv.backend": "ids"}, wantIdentity: "api"},
		{name: "service name and matching label", fromServiceName: true, service: "api", serviceLabels: map[string]string{"dsv.identity": "api"},
			secretLabels: map[string]string{"dsv.backend": "ids"}, wantIdentity: "api"},
		{name: "service name and another label", fromServiceName: true, service: "api", serviceLabels: map[string]string{"dsv.identity": "web"},
			secretLabels: map[string]string{"dsv.backend": "ids"},
			wantErr:      []string{`service label "dsv.identity" of service "api" is "web", but SWARM_IDENTITY_FROM_SERVICE_NAME makes the service's name its identity`}},
		{name: "secret restricted, service matches", service: "frontend", serviceLabels: map[string]string{"dsv.identity": "web"},
			secretLabels: map[string]string{"dsv.backend": "ids", "dsv.identity": "web"}, wantIdentity: "web"},
		{name: "secret restricted, service name matches", fromServiceName: true, service: "web",
			secretLabels: map[string]string{"dsv.backend": "ids", "dsv.identity": "web"}, wantIdentity: "web"},
		{name: "secret label never grants", service: "other",
			secretLabels: map[string]string{"dsv.backend": "ids", "dsv.identity": "web"},
			wantErr:      []string{`label "dsv.identity": this secret may only be read with identity "web", and service "other" has no identity; deploy it with the service label dsv.identity=web`}},
		{name: "secret restricted, service differs", service: "frontend", serviceLabels: map[string]string{"dsv.identity": "api"},
			secretLabels: map[string]string{"dsv.backend": "ids", "dsv.identity": "web"},
			wantErr:      []string{`label "dsv.identity": this secret may only be read with identity "web", but service "frontend" has identity "api" (from service label "dsv.identity")`}},
		{name: "secret restricted, service name differs", fromServiceName: true, service: "api",
			secretLabels: map[string]string{"dsv.backend": "ids", "dsv.identity": "web"},
			wantErr:      []string{`has identity "api" (from the service's name (SWARM_IDENTITY_FROM_SERVICE_NAME))`}},
		{name: "unknown identity is the backend's error", service: "x", serviceLabels: map[string]string{"dsv.identity": "root"},
			secretLabels: map[string]string{"dsv.backend": "ids"}, wantErr: []string{`label "dsv.identity": unknown identity "root"`}},
		{name: "empty service label", service: "x", serviceLabels: map[string]string{"dsv.identity": ""},
			secretLabels: map[string]string{"dsv.backend": "ids"}, wantErr: []string{`service label "dsv.identity" of service "x": must not be empty`}},
		{name: "unknown service label", service: "x", serviceLabels: map[string]string{"dsv.backend": "ids"},
			secretLabels: map[string]string{"dsv.backend": "ids"}, wantErr: []string{`unknown service label "dsv.backend" of service "x"; the only dsv service label is dsv.identity`}},
		// A service with a Vault identity may also read secrets of
		// backends without identities.
		{name: "service label, backend without identities", service: "web", serviceLabels: map[string]string{"dsv.identity": "web"}},
		{name: "service name, backend without identities", fromServiceName: true, service: "web"},
		{name: "secret label, backend without identities", service: "web", secretLabels: map[string]string{"dsv.identity": "web"},
			wantErr: []string{`label "dsv.identity": backend "file" has no identities`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.fromServiceName)
			h.write(t, "db", "file-value")
			resp := h.p.Get(dockersecrets.Request{SecretName: "db", SecretLabels: tt.secretLabels, ServiceName: tt.service, ServiceLabels: tt.serviceLabels})
			if tt.wantErr != nil {
				if resp.Err == "" {
					t.Fatalf("Get = value %q, want an error", resp.Value)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(resp.Err, w) {
						t.Errorf("Err does not contain %q:\n%s", w, resp.Err)
					}
				}
				if len(h.ids.reads) > 0 {
					t.Errorf("the backend was read despite the error: %v", h.ids.reads)
				}
				return
			}
			if resp.Err != "" {
				t.Fatalf("Get: %s", resp.Err)
			}
			if tt.secretLabels["dsv.backend"] != "ids" {
				if string(resp.Value) != "file-value" || resp.DoNotReuse {
					t.Fatalf("Get = %q (DoNotReuse %v), want the file's value, reusable", resp.Value, resp.DoNotReuse)
				}
				return
			}
			// Read for this service: Swarm must not keep it where a task of
			// another service, refused by dsv, would find it.
			if resp.DoNotReuse != (tt.wantIdentity != "") {
				t.Errorf("DoNotReuse = %v for identity %q; want it exactly when an identity was used", resp.DoNotReuse, tt.wantIdentity)
			}
			ref := h.ids.lastRead(t)
			got, has := ref.Params[OptIdentity]
			if got != tt.wantIdentity || has != (tt.wantIdentity != "") {
				t.Errorf("the backend read with params %v, want identity %q", ref.Params, tt.wantIdentity)
			}
			if string(resp.Value) != "value-as-"+tt.wantIdentity {
				t.Errorf("value %q, want value-as-%s", resp.Value, tt.wantIdentity)
			}
		})
	}
}

// TestReuse: static values go through the shared cache (one read for many
// tasks) and may be reused by Swarm; single-use values are read per task and
// marked DoNotReuse.
func TestReuse(t *testing.T) {
	h := newHarness(t, false)
	get := func(secret, task string) dockersecrets.Response {
		return h.p.Get(dockersecrets.Request{SecretName: secret, SecretLabels: map[string]string{"dsv.backend": "ids"}, ServiceName: "svc", TaskName: task})
	}

	a, b := get("static", "svc.1"), get("static", "svc.2")
	if a.Err != "" || b.Err != "" || a.DoNotReuse || b.DoNotReuse || string(a.Value) != string(b.Value) {
		t.Fatalf("static: %+v, %+v; want the same value, reusable", a, b)
	}
	if st := h.fetcher.Stats(); st.Reads != 1 || st.Hits != 1 {
		t.Errorf("static: fetcher stats %+v, want 1 read and 1 cache hit", st)
	}

	c, d := get("dynamic/db", "svc.1"), get("dynamic/db", "svc.2")
	if c.Err != "" || d.Err != "" || !c.DoNotReuse || !d.DoNotReuse {
		t.Fatalf("dynamic: %+v, %+v; want DoNotReuse", c, d)
	}
	if string(c.Value) == string(d.Value) {
		t.Errorf("dynamic: both tasks got %q, want distinct values", c.Value)
	}
	if st := h.fetcher.Stats(); st.Reads != 3 {
		t.Errorf("dynamic: fetcher stats %+v, want one read per task (3 in all)", st)
	}
	if h.fetcher.Len() != 1 {
		t.Errorf("cache holds %d values, want only the static one", h.fetcher.Len())
	}
}

// TestNew refuses a formats list without a function to apply it.
func TestNew(t *testing.T) {
	reg, _ := secrets.NewRegistry()
	f, _ := cache.New(reg, cache.Config{Timeout: time.Second})
	if _, err := New(Config{Registry: reg, Fetcher: f, Formats: []string{"json"}}); err == nil {
		t.Error("New with Formats and no Format: want an error")
	}
	if _, err := New(Config{Registry: reg}); err == nil {
		t.Error("New without a fetcher: want an error")
	}
}

// FuzzLabels: any labels give a value or an error, never a panic, and an
// error never holds the value.
func FuzzLabels(f *testing.F) {
	f.Add("db", "dsv.key", "password", "dsv.identity", "web", "dsv.identity", "web")
	f.Add("", "dsv.backend", "ids", "dsv.format", "upper", "dsv.x", "")
	f.Add("a/../b", "dsv.secret", "../x", "dsv.mode", "0400", "dsv.identity", "")
	f.Add("db", "dsv.file.x", "y", "dsv.key", "*", "dsv.backend", "")
	f.Fuzz(func(t *testing.T, name, k1, v1, k2, v2, sk, sv string) {
		h := newHarness(t, len(name)%2 == 0)
		h.write(t, "db", "fuzz-canary-value")
		resp := h.p.Get(dockersecrets.Request{
			SecretName:    name,
			SecretLabels:  map[string]string{k1: v1, k2: v2},
			ServiceName:   "svc",
			ServiceLabels: map[string]string{sk: sv},
		})
		if resp.Err != "" && resp.Value != nil {
			t.Fatalf("both a value and an error: %+v", resp)
		}
		if strings.Contains(resp.Err, "fuzz-canary-value") {
			t.Fatalf("the error holds the value: %s", resp.Err)
		}
	})
}

// TestAllow: a secret outside the ALLOW setting is refused with an access
// denied error that names it and the patterns, and the backend is not read.
func TestAllow(t *testing.T) {
	h := newHarness(t, false)
	h.write(t, "app/db", "app-value")
	h.write(t, "root/db", "root-value")
	l, err := allowlist.Parse("file:app/*, ids:dynamic/**", []string{"file", "ids"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := h.p.cfg
	cfg.Allow = l
	if h.p, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		labels  map[string]string
		want    string
		wantErr string
	}{
		{name: "allowed", labels: map[string]string{"dsv.secret": "app/db"}, want: "app-value"},
		{name: "allowed in another backend", labels: map[string]string{"dsv.backend": "ids", "dsv.secret": "dynamic/a/b"}, want: "cred-1"},
		{name: "refused", labels: map[string]string{"dsv.secret": "root/db"},
			wantErr: `dsv: secret "s" for service "web": file secret "root/db": access denied: not allowed by the plugin's ALLOW setting (allowed for file: app/*)`},
		{name: "refused with a key", labels: map[string]string{"dsv.secret": "app/x/db", "dsv.key": "password"},
			wantErr: `file secret "app/x/db": access denied: not allowed by the plugin's ALLOW setting (allowed for file: app/*)`},
		{name: "refused in another backend", labels: map[string]string{"dsv.backend": "ids", "dsv.secret": "static"},
			wantErr: `ids secret "static": access denied: not allowed by the plugin's ALLOW setting (allowed for ids: dynamic/**)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reads := h.fetcher.Stats().Reads
			resp := h.p.Get(dockersecrets.Request{SecretName: "s", SecretLabels: tt.labels, ServiceName: "web"})
			if tt.wantErr == "" {
				if resp.Err != "" || string(resp.Value) != tt.want {
					t.Fatalf("Get = value %q, err %q; want %q", resp.Value, resp.Err, tt.want)
				}
				return
			}
			if resp.Value != nil || !strings.Contains(resp.Err, tt.wantErr) {
				t.Fatalf("Get = value %q, err %q\nwant err %s", resp.Value, resp.Err, tt.wantErr)
			}
			if n := h.fetcher.Stats().Reads - reads; n != 0 {
				t.Errorf("a refused secret caused %d backend reads", n)
			}
		})
	}
	if strings.Contains(h.logs.String(), "root-value") {
		t.Errorf("the logs hold a value:\n%s", h.logs)
	}
}
