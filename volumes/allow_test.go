package volumes

import (
	"errors"
	"github.com/dsv-plugin/dsv/render"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/go-plugins-helpers/volume"

	"github.com/dsv-plugin/dsv/secrets"
	"github.com/dsv-plugin/dsv/secrets/allowlist"
)

// restartWith restarts the driver on the same state and mounts, as a plugin
// restart does, with edit applied to its Config. edit may only set fields
// that New does not read (Allow, Defaults).
func (h *harness) restartWith(edit func(*Config)) {
	h.t.Helper()
	h.drv.Close()
	d := h.start()
	edit(&d.cfg)
	d.renderer = newRenderer(d.cfg)
	h.drv = d
}

// allowing restarts the driver with the ALLOW setting spec.
func (h *harness) allowing(spec string) {
	h.t.Helper()
	l, err := allowlist.Parse(spec, h.reg.Names())
	if err != nil {
		h.t.Fatal(err)
	}
	h.restartWith(func(c *Config) { c.Allow = l })
}

func TestAllowRefusesCreate(t *testing.T) {
	tests := []struct {
		name    string
		opts    map[string]string
		wantErr []string
	}{
		{
			name:    "one secret",
			opts:    map[string]string{"secret": "prod/other/db"},
			wantErr: []string{`volume "v1": fake secret "prod/other/db": access denied: not allowed by the plugin's ALLOW setting (allowed for fake: prod/app/*, shared)`},
		},
		{
			name:    "the secret defaults to the volume name",
			opts:    nil,
			wantErr: []string{`fake secret "v1": access denied`},
		},
		{
			name:    "a backend without patterns",
			opts:    map[string]string{"backend": "other", "secret": "prod/app/db"},
			wantErr: []string{`other secret "prod/app/db": access denied: not allowed by the plugin's ALLOW setting (ALLOW has no pattern for the other backend)`},
		},
		{
			name: "every refused file of a many-file volume",
			opts: map[string]string{"file.ok": "prod/app/db", "file.a": "secret=prod/a,key=user", "file.b": "secret=prod/a,key=password", "file.c": "prod/app/x/y"},
			wantErr: []string{`fake secret "prod/a": access denied`, `fake secret "prod/app/x/y": access denied`,
				"(allowed for fake: prod/app/*, shared); fake secret"},
		},
		{
			name:    "a secret a template reads",
			opts:    map[string]string{"template": `{{ secret "fake" "prod/app/db" "user" }}:{{ secret "fake" "root/db" "password" }}`},
			wantErr: []string{`volume "v1": fake secret "root/db": access denied`},
		},
		{
			name:    "a secret a template file reads",
			opts:    map[string]string{"template-file": "app.tmpl"},
			wantErr: []string{`volume "v1": fake secret "root/db": access denied`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			tmpl := t.TempDir()
			if err := os.WriteFile(filepath.Join(tmpl, "app.tmpl"), []byte(`{{ secret "fake" "root/db" }}`), 0o600); err != nil {
				t.Fatal(err)
			}
			l, err := allowlist.Parse("fake:prod/app/* fake:shared", h.reg.Names())
			if err != nil {
				t.Fatal(err)
			}
			h.restartWith(func(c *Config) {
				c.Allow = l
				c.Defaults.Templates = render.DirTemplates(tmpl)
			})
			h.create("shared", nil) // state exists: the refusal must leave it as it was
			before := readFile(t, h.state)

			err = h.drv.Create(&volume.CreateRequest{Name: "v1", Options: tt.opts})
			if err == nil {
				t.Fatal("Create succeeded, want a refusal")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if !errors.Is(err, secrets.ErrAccessDenied) || !errors.Is(err, allowlist.ErrNotAllowed) {
				t.Errorf("error %v is not access denied", err)
			}
			if _, err := h.drv.Get(&volume.GetRequest{Name: "v1"}); err == nil {
				t.Error("the refused volume exists")
			}
			if after := readFile(t, h.state); after != before {
				t.Errorf("the refusal changed the state file:\n%s\nwas\n%s", after, before)
			}
			h.drv = h.start()
			if _, err := h.drv.Get(&volume.GetRequest{Name: "v1"}); err == nil {
				t.Error("the refused volume exists after a restart")
			}
			if n := h.backend.fetchCount(); n != 0 {
				t.Errorf("the backend was read %d times", n)
			}
		})
	}
}

func TestAllowAcceptsCreate(t *testing.T) {
	h := newHarness(t)
	h.allowing("fake:prod/app/*, other:**")
	h.create("v1", map[string]string{"file.a": "prod/app/db", "file.b": "backend=other,secret=x/y/z",
		"template.c": `{{ secret "fake" "prod/app/api" }}`})
	h.backend.set("prod/app/db", "a")
	h.backend.set("prod/app/api", "c")
	// "other" serves nothing: the mount gets past ALLOW to the backend.
	_, err := h.drv.Mount(&volume.MountRequest{Name: "v1", ID: "c1"})
	if err == nil || !strings.Contains(err.Error(), `other secret "x/y/z": not found`) {
		t.Fatalf("Mount = %v, want the backend's not found", err)
	}
}

// TestAllowTightenedAfterCreate: a volume created under an empty ALLOW, then
// the plugin restarted with a restrictive one: a mount fails, leaves nothing
// and reads nothing; a container from before the restart keeps its tmpfs
// but no new container joins it.
func TestAllowTightenedAfterCreate(t *testing.T) {
	h := newHarness(t)
	h.backend.set("prod/db", "pw")
	h.backend.set("live", "x")
	h.create("db", map[string]string{"secret": "prod/db"})
	h.create("live", nil)
	mp := h.mount("live", "old")

	h.allowing("fake:prod/app/**")
	fetches := h.backend.fetchCount()
	for _, tt := range []struct{ volume, want string }{
		{volume: "db", want: `volume "db": fake secret "prod/db": access denied: not allowed by the plugin's ALLOW setting (allowed for fake: prod/app/**)`},
		{volume: "live", want: `volume "live": fake secret "live": access denied`},
	} {
		_, err := h.drv.Mount(&volume.MountRequest{Name: tt.volume, ID: "new"})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Fatalf("Mount(%s) = %v\nwant %s", tt.volume, err, tt.want)
		}
		if !errors.Is(err, secrets.ErrAccessDenied) {
			t.Errorf("error %v is not access denied", err)
		}
		got, _ := h.drv.Get(&volume.GetRequest{Name: tt.volume})
		if got.Volume.Status["lastError"] == nil {
			t.Errorf("%s: status has no lastError: %v", tt.volume, got.Volume.Status)
		}
	}
	if h.mounter.isMounted(filepath.Join(h.root, "db")) {
		t.Error("a refused mount left a tmpfs")
	}
	if _, err := os.Stat(filepath.Join(h.root, "db")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused mount left its directory: %v", err)
	}
	if n := h.backend.fetchCount(); n != fetches {
		t.Errorf("refused mounts read the backend %d times", n-fetches)
	}
	if !strings.Contains(readFile(t, h.state), `"old"`) || strings.Contains(readFile(t, h.state), `"new"`) {
		t.Errorf("state after refused mounts:\n%s", readFile(t, h.state))
	}
	if readFile(t, mp) != "x" {
		t.Error("the container from before the restart lost its file")
	}
	h.unmount("live", "old")
	if h.mounter.isMounted(filepath.Dir(mp)) {
		t.Error("tmpfs kept after the last unmount")
	}

	// Loosened again: the same volumes mount.
	h.allowing("")
	if got := readFile(t, h.mount("db", "c2")); got != "pw" {
		t.Errorf("after ALLOW was emptied the volume holds %q", got)
	}
}

// TestAllowCheckedAtRefresh: a template file edited, while mounted, to read
// a secret ALLOW refuses: the refresh fails before reading it and keeps the
// last good content.
func TestAllowCheckedAtRefresh(t *testing.T) {
	h := newHarnessWith(t, 30*time.Millisecond)
	tmpl := t.TempDir()
	file := filepath.Join(tmpl, "app.tmpl")
	if err := os.WriteFile(file, []byte(`{{ secret "fake" "app/db" }}`), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := allowlist.Parse("fake:app/*", h.reg.Names())
	if err != nil {
		t.Fatal(err)
	}
	h.restartWith(func(c *Config) {
		c.Allow = l
		c.Defaults.Templates = render.DirTemplates(tmpl)
	})
	// root/db is not served: were it read, the error would be "not found".
	h.backend.set("app/db", "good")
	h.create("app", map[string]string{"layout": "dir", "template-file": "app.tmpl"})
	mp := h.mount("app", "c1")
	if got := readFile(t, filepath.Join(mp, "app.tmpl")); got != "good" {
		t.Fatalf("volume holds %q", got)
	}
	if err := os.WriteFile(file, []byte(`{{ secret "fake" "root/db" }}`), 0o600); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "a refresh refused by ALLOW", func() bool {
		g, _ := h.drv.Get(&volume.GetRequest{Name: "app"})
		e, _ := g.Volume.Status["lastError"].(string)
		return strings.Contains(e, `fake secret "root/db": access denied: not allowed by the plugin's ALLOW setting`)
	})
	if got := readFile(t, filepath.Join(mp, "app.tmpl")); got != "good" {
		t.Errorf("after the refusal the volume holds %q, want the last good content", got)
	}
}
