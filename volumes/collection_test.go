package volumes

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/docker/go-plugins-helpers/volume"

	"github.com/dsv-plugin/dsv/secrets"
	"github.com/dsv-plugin/dsv/tmpfs/tmpfstest"
)

// A collection (secrets.Collector: the fake backend's names ending in '/',
// an SSM path) is one file per object, in folders for names with '/'
// (render/collection_test.go has the parsing).

func TestMountCollection(t *testing.T) {
	h := newHarness(t)
	h.backend.set("app/", `{"db":"pw","api/token":"t1","api/deep/x":"x1","user":"{\"a\":1}"}`)

	h.create("app", map[string]string{"secret": "app/"})
	mp := h.mount("app", "c1")
	want := map[string]string{"db": "pw", "api/token": "t1", "api/deep/x": "x1", "user": `{"a":1}`}
	if got := tmpfstest.Visible(t, mp); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("volume holds %v, want %v", got, want)
	}
	st, err := os.Stat(filepath.Join(mp, "api", "deep"))
	if err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("folder api/deep: %v, mode %v; want 0755", err, st.Mode())
	}

	h.create("multi", map[string]string{"file.app": "secret=app/", "file.db": "secret=app/,key=db"})
	mp = h.mount("multi", "c1")
	want = map[string]string{"app/db": "pw", "app/api/token": "t1", "app/api/deep/x": "x1", "app/user": `{"a":1}`, "db": "pw"}
	if got := tmpfstest.Visible(t, mp); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("multi volume holds %v, want %v", got, want)
	}
}

// TestCollectionNamesThatCannotBeFiles: such a name is reported by name,
// and nothing is written.
func TestCollectionNamesThatCannotBeFiles(t *testing.T) {
	tests := []struct {
		name  string
		value string
		want  string
	}{
		{name: "reserved", value: `{"ok":"1","..data":"x"}`, want: `"..data" cannot be a file`},
		{name: "reserved part", value: `{"ok":"1","a/../b":"x"}`, want: `"a/../b" cannot be a file: its part ".." is reserved`},
		{name: "empty part", value: `{"ok":"1","a//b":"x"}`, want: `"a//b" cannot be a file: its part must not be empty`},
		{name: "file and folder", value: `{"a":"1","a-b":"2","a/b":"3"}`, want: `"a" cannot be both a file and the folder of "a/b"`},
		{name: "long part", value: `{"` + strings.Repeat("x", 256) + `":"1"}`, want: "longer than 255"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.backend.set("app/", tt.value)
			h.create("app", map[string]string{"secret": "app/"})
			_, err := h.drv.Mount(&volume.MountRequest{Name: "app", ID: "c1"})
			if !errors.Is(err, secrets.ErrBadValue) || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "no file was written") {
				t.Fatalf("Mount() error = %v, want a bad value saying %q", err, tt.want)
			}
			if entries := listDir(t, filepath.Join(h.root, "app")); len(entries) != 0 {
				t.Errorf("the volume holds %d entries after the refusal", len(entries))
			}
		})
	}
}
