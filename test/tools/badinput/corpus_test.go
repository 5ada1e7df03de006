package badinput_test

import (
	"encoding/json"
	"fmt"
	"github.com/dsv-plugin/dsv/render"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/go-plugins-helpers/volume"
	"github.com/rs/zerolog"

	"github.com/dsv-plugin/dsv/secrets"
	"github.com/dsv-plugin/dsv/secrets/awssm"
	"github.com/dsv-plugin/dsv/secrets/azure"
	"github.com/dsv-plugin/dsv/secrets/cache"
	"github.com/dsv-plugin/dsv/secrets/file"
	"github.com/dsv-plugin/dsv/secrets/gcp"
	"github.com/dsv-plugin/dsv/secrets/ssm"
	"github.com/dsv-plugin/dsv/secrets/vault"
	"github.com/dsv-plugin/dsv/test/tools/badinput"
	"github.com/dsv-plugin/dsv/volumes"
)

// noMounts is a tmpfs.Mounter that fails the test on any mount: Create
// must not mount anything.
type noMounts struct {
	mu    sync.Mutex
	calls []string
}

func (m *noMounts) record(call string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls = append(m.calls, call)
	return fmt.Errorf("unexpected %s", call)
}

func (m *noMounts) MountTmpfs(dir string, _ int64, _ int) error { return m.record("MountTmpfs " + dir) }
func (m *noMounts) Bind(src, dst string, _ bool) error          { return m.record("Bind " + src + " " + dst) }
func (m *noMounts) MakePrivate(string) error                    { return nil }
func (m *noMounts) Unmount(dir string) error                    { return m.record("Unmount " + dir) }
func (m *noMounts) MountsUnder(string) ([]string, error)        { return nil, nil }

// plugin is the real driver over the real backends, as cmd/dsv builds it,
// with temporary folders and no network: Create contacts no backend.
type plugin struct {
	drv     *volumes.Driver
	state   string
	mounter *noMounts
}

func newPlugin(t *testing.T) *plugin {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{"files", "templates", "vault/identities/web"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"role-id", "secret-id"} {
		if err := os.WriteFile(filepath.Join(dir, "vault/identities/web", f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	log := zerolog.New(io.Discard)
	vd, err := vault.New(vault.Config{
		Auth:          vault.AuthToken,
		TokenFile:     filepath.Join(dir, "vault/token"),
		AppRolePath:   vault.DefaultAppRolePath,
		RoleIDFile:    filepath.Join(dir, "vault/role-id"),
		SecretIDFile:  filepath.Join(dir, "vault/secret-id"),
		IdentitiesDir: filepath.Join(dir, "vault/identities"),
		Client:        &vault.ClientConfig{Address: "http://127.0.0.1:1"},
	}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(vd.Close)
	azd, err := azure.New(azure.Config{}, log)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := secrets.NewRegistry(
		file.New(filepath.Join(dir, "files"), log),
		awssm.New(awssm.Config{DefaultRegion: "us-east-1", Logger: log}),
		ssm.New(ssm.Config{DefaultRegion: "us-east-1", Logger: log}),
		vd,
		azd,
		gcp.New(gcp.Config{CredentialsFile: filepath.Join(dir, "gcp/credentials.json")}, log),
	)
	if err != nil {
		t.Fatal(err)
	}
	fetcher, err := cache.New(reg, cache.Config{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	p := &plugin{state: filepath.Join(dir, "state", "state.json"), mounter: &noMounts{}}
	store, err := volumes.NewStore(p.state)
	if err != nil {
		t.Fatal(err)
	}
	p.drv, err = volumes.New(volumes.Config{
		Root:      filepath.Join(dir, "mnt"),
		Writer:    filepath.Join(dir, "rw"),
		Store:     store,
		Registry:  reg,
		Defaults:  render.Defaults{Backend: file.Name, Templates: render.DirTemplates(filepath.Join(dir, "templates"))},
		Fetcher:   fetcher,
		TmpfsSize: 2 << 20,
		Mounter:   p.mounter,
		Logger:    log,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.drv.Close)
	return p
}

// stateVolumes reads the volume names the state file holds, and its text.
func (p *plugin) stateVolumes(t *testing.T) (map[string]json.RawMessage, string) {
	t.Helper()
	b, err := os.ReadFile(p.state)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Volumes map[string]json.RawMessage `json:"volumes"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	return f.Volumes, string(b)
}

// TestCorpusRefusedAtCreate runs every case through the real driver's
// Create: it must fail, name the problem, and leave no trace of the volume
// in List, Get or the state file.
func TestCorpusRefusedAtCreate(t *testing.T) {
	cases := badinput.Cases()
	if len(cases) < 60 {
		t.Fatalf("the corpus has %d cases, want at least 60", len(cases))
	}
	p := newPlugin(t)
	// A valid volume first, so that the state file exists and every check
	// below reads a real one.
	if err := p.drv.Create(&volume.CreateRequest{Name: "badinput-control", Options: map[string]string{"secret": "db"}}); err != nil {
		t.Fatalf("a valid volume is refused: %v", err)
	}
	seen := map[string]bool{}
	for i, c := range cases {
		if seen[c.Name] {
			t.Errorf("two cases are called %q", c.Name)
		}
		seen[c.Name] = true
		if len(c.Want) == 0 {
			t.Errorf("case %q wants nothing of the error", c.Name)
		}
		name := c.Volume
		if name == "" {
			name = fmt.Sprintf("badinput-%03d", i)
		}
		t.Run(c.Name, func(t *testing.T) {
			err := p.drv.Create(&volume.CreateRequest{Name: name, Options: c.Options})
			if err == nil {
				t.Fatalf("Create(%q, %q) succeeded, want an error", shorten(name), shortenMap(c.Options))
			}
			for _, w := range c.Want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", shorten(err.Error()), w)
				}
			}
			if len(err.Error()) > 8<<10 {
				t.Errorf("error is %d bytes long: it floods the terminal", len(err.Error()))
			}
			if _, gerr := p.drv.Get(&volume.GetRequest{Name: name}); gerr == nil {
				t.Errorf("Get finds the refused volume")
			}
			list, lerr := p.drv.List()
			if lerr != nil {
				t.Fatal(lerr)
			}
			for _, v := range list.Volumes {
				if v.Name == name {
					t.Errorf("List shows the refused volume")
				}
			}
			vols, text := p.stateVolumes(t)
			if _, ok := vols[name]; ok {
				t.Errorf("the state file holds the refused volume")
			}
			if c.Volume == "" && strings.Contains(text, name) {
				t.Errorf("the state file mentions %q", name)
			}
		})
	}
	vols, _ := p.stateVolumes(t)
	if len(vols) != 1 {
		t.Errorf("the state file holds %d volumes, want only the valid one", len(vols))
	}
	if len(p.mounter.calls) > 0 {
		t.Errorf("Create mounted: %v", p.mounter.calls)
	}
}

// TestCorpusVariantsAccepted guards the corpus against refusing for the
// wrong reason: the valid input each group of cases starts from is
// accepted by the same driver.
func TestCorpusVariantsAccepted(t *testing.T) {
	p := newPlugin(t)
	valid := []map[string]string{
		{"secret": "db"},
		{"backend": "aws", "secret": "prod/db"},
		{"backend": "aws", "secret": "prod/db", "version-id": "a1b2c3d4-5678-90ab-cdef-EXAMPLE11111"},
		{"backend": "vault", "secret": "secret/app/db"},
		{"backend": "vault", "secret": "secret/app/db", "identity": "web", "namespace": "team-a", "wrap-ttl": "5m"},
		{"backend": "vault", "secret": "pki/issue/web", "method": "write", "param.common_name": "a"},
		{"template": `{{ secret "file" "db" }}`},
		{"template": `{{ define "x" }}{{ secret "file" "db" "user" }}{{ end }}{{ template "x" }}{{ with secret "file" "db" }}{{ . }}{{ end }}`},
		{"file.db": "secret=db,mode=0400,uid=1000,gid=1000,format=json"},
		{"secret": "db", "layout": "dir", "refresh": "1m", "filename": "db.txt"},
		{"secret": "db", "key": "*"},
		{"backend": "ssm", "secret": "/prod/db:3"},
		{"backend": "ssm", "secret": "/prod/app/", "recursive": "true", "refresh": "1m"},
	}
	for i, opts := range valid {
		name := fmt.Sprintf("valid-%02d", i)
		if err := p.drv.Create(&volume.CreateRequest{Name: name, Options: opts}); err != nil {
			t.Errorf("Create(%v) = %v, want it accepted", opts, err)
		}
	}
}

func shorten(s string) string {
	if len(s) > 200 {
		return s[:200] + fmt.Sprintf("…(%d bytes)", len(s))
	}
	return s
}

func shortenMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[shorten(k)] = shorten(v)
	}
	return out
}

// TestMixedBackendVolumesAccepted: a volume's backend options are defaults
// for the files of its backend only, so one volume may mix backends with
// volume-level region, version-stage or namespace.
func TestMixedBackendVolumesAccepted(t *testing.T) {
	p := newPlugin(t)
	for name, opts := range map[string]map[string]string{
		"mixed-namespace": {"backend": "vault", "namespace": "team-a", "file.a": "secret=secret/app/db", "file.b": "secret=prod/x,backend=aws"},
		"mixed-region":    {"backend": "aws", "region": "eu-west-1", "version-stage": "AWSPREVIOUS", "file.a": "secret=prod/x", "file.b": "secret=secret/app/db,backend=vault", "file.c": "secret=db-password,backend=file"},
	} {
		if err := p.drv.Create(&volume.CreateRequest{Name: name, Options: opts}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	// The volume's own backend still gets them, and still checks them.
	err := p.drv.Create(&volume.CreateRequest{Name: "bad-region", Options: map[string]string{"backend": "aws", "region": "nowhere-1", "file.a": "secret=prod/x"}})
	if err == nil || !strings.Contains(err.Error(), "region") {
		t.Fatalf("a bad volume-level region for an aws file: %v", err)
	}
}
