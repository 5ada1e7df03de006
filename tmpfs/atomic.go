package tmpfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The atomic writer publishes a directory volume's files the way the kubelet
// does (kubernetes pkg/volume/util/atomic_writer.go): the files are written
// into a fresh hidden directory ..<timestamp>, a symlink ..data is pointed at
// it with one rename, and each visible name is a symlink into ..data. A
// reader therefore sees the old set or the new set, never a mix or a partial
// file; a crash between steps leaves the old set visible and the next write
// cleans up.
const (
	dataDirName    = "..data"
	dataDirTmpName = "..data_tmp"
)

// File is one file to write: a path relative to the volume, of one segment
// or more (a key=* object of a multi-object volume is a directory, a
// collection's objects can be in folders).
type File struct {
	Path string
	Data []byte
	UID  int
	GID  int
	Mode os.FileMode
}

// The points where a test can interrupt WriteAtomic.
const (
	StepPayload = "payload" // the new ..<timestamp> directory is complete
	StepSwap    = "swap"    // ..data points at it
	StepLinks   = "links"   // the visible names point into ..data
	// StepLink is called before each visible name is pointed into ..data:
	// what the name showed is still there.
	StepLink = "link"
)

// WriteAtomic publishes files in dir. crash, when not nil, is called after
// each step and stops the write when it returns an error (tests only).
// swapped reports whether ..data points at the new files, even when err
// is set: from then on readers see them, and what they depend on (leases)
// must be kept.
func WriteAtomic(dir string, files []File, now time.Time, crash func(step string) error) (swapped bool, err error) {
	if crash == nil {
		crash = func(string) error { return nil }
	}
	// Leftovers of an interrupted write.
	// (A folder, when it stopped after exchanging a plain folder.)
	if err := os.RemoveAll(filepath.Join(dir, dataDirTmpName)); err != nil {
		return false, fmt.Errorf("atomic write: %w", err)
	}
	oldTarget, _ := os.Readlink(filepath.Join(dir, dataDirName))

	tsName := ".." + now.UTC().Format("2006_01_02_15_04_05.000000000")
	if tsName == oldTarget {
		tsName += "_1"
	}
	tsDir := filepath.Join(dir, tsName)
	if err := mkdirReadable(tsDir); err != nil {
		return false, fmt.Errorf("atomic write: %w", err)
	}
	for _, f := range files {
		if err := writeEntry(tsDir, f); err != nil {
			_ = os.RemoveAll(tsDir)
			return false, err
		}
	}
	if err := crash(StepPayload); err != nil {
		return false, err
	}

	tmpLink := filepath.Join(dir, dataDirTmpName)
	if err := os.Symlink(tsName, tmpLink); err != nil {
		_ = os.RemoveAll(tsDir)
		return false, fmt.Errorf("atomic write: %w", err)
	}
	if err := os.Rename(tmpLink, filepath.Join(dir, dataDirName)); err != nil {
		_ = os.Remove(tmpLink)
		_ = os.RemoveAll(tsDir)
		return false, fmt.Errorf("atomic write: %w", err)
	}
	if err := crash(StepSwap); err != nil {
		return true, err
	}

	// Visible names: one symlink per top-level entry, into ..data.
	visible := map[string]bool{}
	for _, f := range files {
		top, _, _ := strings.Cut(f.Path, "/")
		visible[top] = true
	}
	for name := range visible {
		link := filepath.Join(dir, name)
		want := filepath.Join(dataDirName, name)
		if got, err := os.Readlink(link); err == nil && got == want {
			continue
		}
		tmp := filepath.Join(dir, dataDirTmpName)
		if err := os.Symlink(want, tmp); err != nil {
			return true, fmt.Errorf("atomic write: %w", err)
		}
		if err := crash(StepLink); err != nil {
			_ = os.Remove(tmp)
			return true, err
		}
		if err := replaceWithLink(tmp, link); err != nil {
			return true, fmt.Errorf("atomic write: %w", err)
		}
	}
	if err := crash(StepLinks); err != nil {
		return true, err
	}

	// Names that left the set, and old payload directories.
	entries, err := os.ReadDir(dir)
	if err != nil {
		return true, fmt.Errorf("atomic write: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		switch {
		case name == dataDirName || name == tsName:
		case strings.HasPrefix(name, ".."):
			_ = os.RemoveAll(filepath.Join(dir, name))
		case !visible[name]:
			// A link into ..data, or a plain file or folder written by
			// WritePlain before the volume was written atomically.
			_ = os.RemoveAll(filepath.Join(dir, name))
		}
	}
	return true, nil
}

// replaceWithLink renames the symlink tmp to link. A plain folder at link
// (a volume first written plain, see WritePlain) cannot be renamed over:
// it is exchanged with the symlink in one step (RENAME_EXCHANGE), so the
// name never shows nothing, and removed from tmp afterwards.
func replaceWithLink(tmp, link string) error {
	if st, err := os.Lstat(link); err == nil && st.IsDir() {
		if err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, link, unix.RENAME_EXCHANGE); err != nil {
			_ = os.Remove(tmp)
			return fmt.Errorf("exchange %s with its link: %w", filepath.Base(link), err)
		}
		return os.RemoveAll(tmp)
	}
	if err := os.Rename(tmp, link); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return nil
}

// WritePlain writes files as they are, for content that never changes once
// mounted (no refresh, no lease): what a container sees (and `docker cp`
// copies) is a file, not a symlink into ..data, as with Swarm's secrets.
// Each file is written under a temporary name and renamed, so no reader
// sees a partial one.
func WritePlain(dir string, files []File) error {
	for _, f := range files {
		final := filepath.Join(dir, f.Path)
		tmp := f
		tmp.Path = filepath.Join(filepath.Dir(f.Path), ".."+filepath.Base(f.Path)+".tmp")
		if err := writeEntry(dir, tmp); err != nil {
			_ = os.Remove(filepath.Join(dir, tmp.Path))
			return err
		}
		if err := os.Rename(filepath.Join(dir, tmp.Path), final); err != nil {
			_ = os.Remove(filepath.Join(dir, tmp.Path))
			return fmt.Errorf("write %s: %w", f.Path, err)
		}
	}
	return nil
}

// WriteInPlace writes the single file of a file-layout volume: under a
// temporary name, then renamed, so no reader sees a partial file. Once the
// file is bind-mounted into a container a rename no longer reaches it, so a
// later rewrite (a lease that ended) truncates and rewrites the same inode.
func WriteInPlace(dir string, f File) error {
	final := filepath.Join(dir, f.Path)
	st, err := os.Lstat(final)
	if err != nil {
		return WritePlain(dir, []File{f})
	}
	// Only the regular file WritePlain made: never through a symlink
	// (O_NOFOLLOW), nor into a FIFO or a device.
	if !st.Mode().IsRegular() {
		return fmt.Errorf("rewrite secret file %s: not a regular file (%s)", f.Path, st.Mode().Type())
	}
	fh, err := os.OpenFile(final, os.O_WRONLY|os.O_TRUNC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("rewrite secret file %s: %w", f.Path, err)
	}
	_, werr := fh.Write(f.Data)
	if cerr := fh.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return fmt.Errorf("rewrite secret file: %w", werr)
	}
	return nil
}

// mkdirReadable makes a directory 0755 whatever the process's umask (the
// legacy systemd unit runs with UMask=0077): any container user must reach
// the files, whose own modes say who may read them.
func mkdirReadable(path string) error {
	if err := os.Mkdir(path, 0o755); err != nil {
		return err
	}
	return os.Chmod(path, 0o755)
}

// writeEntry writes one file with its owner and mode, creating the folders
// of its path.
func writeEntry(root string, f File) error {
	path := filepath.Join(root, f.Path)
	dir := root
	for _, seg := range strings.Split(filepath.Dir(f.Path), "/") {
		if seg == "." {
			break
		}
		dir = filepath.Join(dir, seg)
		if err := mkdirReadable(dir); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("write %s: %w", f.Path, err)
		}
	}
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", f.Path, err)
	}
	// Owner and mode are set on the open file (fchown, fchmod), never by
	// path: the path could name something else by then.
	_, werr := fh.Write(f.Data)
	if werr == nil {
		werr = fh.Chown(f.UID, f.GID)
	}
	if werr == nil {
		werr = fh.Chmod(f.Mode)
	}
	if cerr := fh.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return fmt.Errorf("write %s: %w", f.Path, werr)
	}
	return nil
}
