package tmpfs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// privateOnly is a Mounter for Init alone: MakePrivate does nothing.
type privateOnly struct{ Mounter }

func (privateOnly) MakePrivate(string) error { return nil }

// TestInitKeepsRootsApart: the writer folder may not be inside the mounts
// folder (its writable sides would propagate to containers), nor the
// mounts folder inside the private writer folder, even through a symlink.
func TestInitKeepsRootsApart(t *testing.T) {
	for _, tt := range []struct {
		name, root, writer string
		link               string // base/link -> base/mnt, when set
		want               string // in the error; empty: Init succeeds
	}{
		{name: "apart", root: "mnt", writer: "rw"},
		{name: "siblings sharing a prefix", root: "mnt", writer: "mnt2"},
		{name: "writer under root", root: "mnt", writer: "mnt/rw", want: "is inside the mounts folder"},
		{name: "same folder", root: "mnt", writer: "mnt", want: "is inside the mounts folder"},
		{name: "root under writer", root: "rw/mnt", writer: "rw", want: "is inside the writer folder"},
		{name: "writer under root through a symlink", root: "mnt", writer: "link/rw", link: "mnt", want: "is inside the mounts folder"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			base := t.TempDir()
			if tt.link != "" {
				if err := os.MkdirAll(filepath.Join(base, tt.link), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(filepath.Join(base, tt.link), filepath.Join(base, "link")); err != nil {
					t.Fatal(err)
				}
			}
			v := &Volumes{Root: filepath.Join(base, tt.root), Writer: filepath.Join(base, tt.writer), Mounter: privateOnly{}}
			err := v.Init()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Init: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Init = %v, want an error saying %q", err, tt.want)
			}
		})
	}
}
