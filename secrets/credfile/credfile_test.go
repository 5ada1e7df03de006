package credfile

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestStamp(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	write := func(t *testing.T, name, data string) {
		t.Helper()
		if err := os.WriteFile(name, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Each step changes the files and says whether the stamp must change.
	steps := []struct {
		name    string
		change  func(t *testing.T)
		changed bool
	}{
		{name: "nothing", change: func(*testing.T) {}, changed: false},
		{name: "a appears", change: func(t *testing.T) { write(t, a, "one") }, changed: true},
		{name: "a read", change: func(t *testing.T) {
			if _, err := os.ReadFile(a); err != nil {
				t.Fatal(err)
			}
		}, changed: false},
		{name: "a grows", change: func(t *testing.T) { write(t, a, "one more") }, changed: true},
		{name: "a rewritten, same size, new mtime", change: func(t *testing.T) {
			write(t, a, "ONE MORE")
			later := time.Now().Add(time.Hour)
			if err := os.Chtimes(a, later, later); err != nil {
				t.Fatal(err)
			}
		}, changed: true},
		{name: "a replaced by a rename, same size and mtime", change: func(t *testing.T) {
			fi, err := os.Stat(a)
			if err != nil {
				t.Fatal(err)
			}
			tmp := filepath.Join(dir, "a.tmp")
			write(t, tmp, "one MORE")
			if err := os.Chtimes(tmp, fi.ModTime(), fi.ModTime()); err != nil {
				t.Fatal(err)
			}
			// Keep the old inode alive so that the new file cannot reuse it.
			keep := filepath.Join(dir, "a.old")
			if err := os.Link(a, keep); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, a); err != nil {
				t.Fatal(err)
			}
		}, changed: true},
		{name: "b appears", change: func(t *testing.T) { write(t, b, "two") }, changed: true},
		{name: "a goes away", change: func(t *testing.T) {
			if err := os.Remove(a); err != nil {
				t.Fatal(err)
			}
		}, changed: true},
	}
	stamp := Stamp(a, "", b)
	for _, s := range steps {
		s.change(t)
		next := Stamp(a, "", b)
		if got := next != stamp; got != s.changed {
			t.Errorf("%s: stamp %q -> %q, changed %v, want %v", s.name, stamp, next, got, s.changed)
		}
		stamp = next
	}
}

// TestStampPositions: a file's stamp belongs to its place in the list, so
// the same file under another name, or an absent one elsewhere, differs.
func TestStampPositions(t *testing.T) {
	f := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if Stamp(f, "") == Stamp("", f) {
		t.Errorf("Stamp(f, \"\") = Stamp(\"\", f) = %q", Stamp(f, ""))
	}
	if Stamp("") != Stamp(filepath.Join(t.TempDir(), "absent")) {
		t.Errorf("an empty name and an absent file stamp differently: %q, %q", Stamp(""), Stamp(filepath.Join(t.TempDir(), "absent")))
	}
}
