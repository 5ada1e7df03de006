package tmpfs

import (
	"errors"
	"fmt"
	"github.com/dsv-plugin/dsv/tmpfs/tmpfstest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func files(kv ...string) []File {
	var out []File
	for i := 0; i < len(kv); i += 2 {
		out = append(out, File{Path: kv[i], Data: []byte(kv[i+1]), UID: os.Getuid(), GID: os.Getgid(), Mode: 0o440})
	}
	return out
}

func hidden(t testing.TB, dir string) []string {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "..") {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out
}

func TestAtomicWriter(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	if _, err := WriteAtomic(dir, files("a", "1", "b", "2", "keys/x", "3"), now, nil); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(tmpfstest.Visible(t, dir)); got != "map[a:1 b:2 keys/x:3]" {
		t.Fatalf("after the first write a reader sees %s", got)
	}
	if target, _ := os.Readlink(filepath.Join(dir, "a")); target != "..data/a" {
		t.Fatalf("a -> %q, want ..data/a", target)
	}
	st, _ := os.Stat(filepath.Join(dir, "a"))
	if st.Mode().Perm() != 0o440 {
		t.Errorf("mode = %o", st.Mode().Perm())
	}

	// Second write: b changes, a goes away, c arrives; old payload removed.
	if _, err := WriteAtomic(dir, files("b", "20", "c", "30", "keys/x", "3"), now.Add(time.Second), nil); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(tmpfstest.Visible(t, dir)); got != "map[b:20 c:30 keys/x:3]" {
		t.Fatalf("after the second write a reader sees %s", got)
	}
	if h := hidden(t, dir); len(h) != 2 {
		t.Fatalf("hidden entries %v, want ..data and one payload", h)
	}
}

func TestAtomicWriterCrashBetweenSteps(t *testing.T) {
	for _, step := range []string{StepPayload, StepSwap, StepLinks} {
		t.Run(step, func(t *testing.T) {
			dir := t.TempDir()
			now := time.Now()
			if _, err := WriteAtomic(dir, files("a", "old", "b", "old"), now, nil); err != nil {
				t.Fatal(err)
			}
			crash := errors.New("crash")
			swapped, err := WriteAtomic(dir, files("a", "new", "b", "new", "c", "new"), now.Add(time.Second), func(s string) error {
				if s == step {
					return crash
				}
				return nil
			})
			if !errors.Is(err, crash) {
				t.Fatalf("err = %v", err)
			}
			// Whoever holds what the files depend on (leases) must know
			// whether readers see the new set.
			if want := step != StepPayload; swapped != want {
				t.Errorf("after a crash at %s: swapped = %t, want %t", step, swapped, want)
			}
			// Whatever the step, a reader sees one consistent set.
			got := tmpfstest.Visible(t, dir)
			a, b := got["a"], got["b"]
			if a != b {
				t.Fatalf("after a crash at %s a reader sees a mix: %v", step, got)
			}
			// The next write recovers and cleans up.
			if _, err := WriteAtomic(dir, files("a", "next", "b", "next"), now.Add(2*time.Second), nil); err != nil {
				t.Fatalf("write after a crash at %s: %v", step, err)
			}
			if got := fmt.Sprint(tmpfstest.Visible(t, dir)); got != "map[a:next b:next]" {
				t.Fatalf("after recovery a reader sees %s", got)
			}
			if h := hidden(t, dir); len(h) != 2 {
				t.Fatalf("leftovers after recovery: %v", h)
			}
		})
	}
}

// TestAtomicWriterNoTornReads reads a two-file set while it is rewritten
// many times; every read must see both files from the same generation.
func TestAtomicWriterNoTornReads(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	if _, err := WriteAtomic(dir, files("one", "0", "two", "0"), now, nil); err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var torn, reads atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				// Read through ..data once, as an app that opens the dir would.
				target, err := os.Readlink(filepath.Join(dir, dataDirName))
				if err != nil {
					continue
				}
				one, err1 := os.ReadFile(filepath.Join(dir, target, "one"))
				two, err2 := os.ReadFile(filepath.Join(dir, target, "two"))
				if err1 != nil || err2 != nil {
					continue // the generation was removed under us: not torn, just gone
				}
				reads.Add(1)
				if string(one) != string(two) {
					torn.Add(1)
				}
			}
		}()
	}
	for i := 1; i <= 300; i++ {
		v := fmt.Sprint(i)
		if _, err := WriteAtomic(dir, files("one", v, "two", v), now.Add(time.Duration(i)*time.Millisecond), nil); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	if torn.Load() != 0 || reads.Load() == 0 {
		t.Fatalf("%d torn reads out of %d", torn.Load(), reads.Load())
	}
}

// TestAtomicWriterDirsUnderUmask: directories are 0755 under the legacy
// unit's UMask=0077 too, or a non-root container could not reach its files.
func TestAtomicWriterDirsUnderUmask(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	dir := t.TempDir()
	files := []File{
		{Path: "a", Data: []byte("1"), Mode: 0o444},
		{Path: "db/user", Data: []byte("u"), Mode: 0o444},
	}
	if _, err := WriteAtomic(dir, files, time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	data, err := filepath.EvalSymlinks(filepath.Join(dir, dataDirName))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{data, filepath.Join(data, "db")} {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o755 {
			t.Errorf("%s is %v under umask 077, want 0755", d, fi.Mode().Perm())
		}
	}
}

// TestAtomicOverPlain: a volume first written plain (WritePlain: a folder
// db/, files a and gone) and then atomically shows every name it keeps at
// every moment, the folder too, and loses the plain files that left the
// set.
func TestAtomicOverPlain(t *testing.T) {
	dir := t.TempDir()
	if err := WritePlain(dir, files("db/user", "u1", "a", "1", "gone", "x")); err != nil {
		t.Fatal(err)
	}
	links := 0
	check := func(step string) error {
		if step != StepLink {
			return nil
		}
		links++
		for _, name := range []string{"db/user", "a"} {
			if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
				t.Errorf("before a name is linked, %s is missing: %v", name, err)
			}
		}
		return nil
	}
	if _, err := WriteAtomic(dir, files("db/user", "u2", "a", "2"), time.Now(), check); err != nil {
		t.Fatal(err)
	}
	if links != 2 {
		t.Fatalf("%d names linked, want 2", links)
	}
	if got := fmt.Sprint(tmpfstest.Visible(t, dir)); got != "map[a:2 db/user:u2]" {
		t.Fatalf("after the atomic write a reader sees %s", got)
	}
	if h := hidden(t, dir); len(h) != 2 {
		t.Fatalf("hidden entries %v, want ..data and one payload", h)
	}
}

// TestAtomicCrashAfterExchange: a write that stopped once a plain folder
// was exchanged with its link (the folder left at ..data_tmp) does not
// stop the next write.
func TestAtomicCrashAfterExchange(t *testing.T) {
	dir := t.TempDir()
	if err := WritePlain(dir, files("db/user", "u1")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, dataDirTmpName, "db"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteAtomic(dir, files("db/user", "u2"), time.Now(), nil); err != nil {
		t.Fatalf("write after a stop with a folder at %s: %v", dataDirTmpName, err)
	}
	if got := fmt.Sprint(tmpfstest.Visible(t, dir)); got != "map[db/user:u2]" {
		t.Fatalf("a reader sees %s", got)
	}
}

// TestWriteInPlaceNoFollow: the existing file of a file-layout volume is
// rewritten only if it is a regular file: never through a symlink.
func TestWriteInPlaceNoFollow(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	victim := filepath.Join(outside, "victim")
	if err := os.WriteFile(victim, []byte("untouched"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(dir, "secret")); err != nil {
		t.Fatal(err)
	}
	err := WriteInPlace(dir, files("secret", "value")[0])
	if err == nil {
		t.Fatal("WriteInPlace wrote through a symlink")
	}
	if b, _ := os.ReadFile(victim); string(b) != "untouched" {
		t.Fatalf("the symlink's target now holds %q", b)
	}
	// A regular file is rewritten in place (same inode).
	if err := os.Remove(filepath.Join(dir, "secret")); err != nil {
		t.Fatal(err)
	}
	if err := WriteInPlace(dir, files("secret", "v1")[0]); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(filepath.Join(dir, "secret"))
	if err := WriteInPlace(dir, files("secret", "v2")[0]); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(filepath.Join(dir, "secret"))
	if b, _ := os.ReadFile(filepath.Join(dir, "secret")); string(b) != "v2" || !os.SameFile(before, after) {
		t.Fatalf("rewrite in place: %q, same inode %t", b, os.SameFile(before, after))
	}
}
