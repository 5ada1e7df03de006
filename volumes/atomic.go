package volumes

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
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

// fileEntry is one file to write: a path relative to the volume, of one
// segment or more (a key=* object of a multi-object volume is a directory,
// a collection's objects can be in folders).
type fileEntry struct {
	Path string
	Data []byte
	UID  int
	GID  int
	Mode os.FileMode
}

// writeSteps names the points where a test can interrupt writeAtomic.
const (
	stepPayload = "payload" // the new ..<timestamp> directory is complete
	stepSwap    = "swap"    // ..data points at it
	stepLinks   = "links"   // the visible names point into ..data
)

// writeAtomic publishes files in dir. crash, when not nil, is called after
// each step and stops the write when it returns an error (tests only).
func writeAtomic(dir string, files []fileEntry, now time.Time, crash func(step string) error) error {
	if crash == nil {
		crash = func(string) error { return nil }
	}
	// Leftovers of an interrupted write.
	if err := os.Remove(filepath.Join(dir, dataDirTmpName)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("atomic write: %w", err)
	}
	oldTarget, _ := os.Readlink(filepath.Join(dir, dataDirName))

	tsName := ".." + now.UTC().Format("2006_01_02_15_04_05.000000000")
	if tsName == oldTarget {
		tsName += "_1"
	}
	tsDir := filepath.Join(dir, tsName)
	if err := mkdirReadable(tsDir); err != nil {
		return fmt.Errorf("atomic write: %w", err)
	}
	for _, f := range files {
		if err := writeEntry(tsDir, f); err != nil {
			_ = os.RemoveAll(tsDir)
			return err
		}
	}
	if err := crash(stepPayload); err != nil {
		return err
	}

	tmpLink := filepath.Join(dir, dataDirTmpName)
	if err := os.Symlink(tsName, tmpLink); err != nil {
		_ = os.RemoveAll(tsDir)
		return fmt.Errorf("atomic write: %w", err)
	}
	if err := os.Rename(tmpLink, filepath.Join(dir, dataDirName)); err != nil {
		_ = os.Remove(tmpLink)
		_ = os.RemoveAll(tsDir)
		return fmt.Errorf("atomic write: %w", err)
	}
	if err := crash(stepSwap); err != nil {
		return err
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
			return fmt.Errorf("atomic write: %w", err)
		}
		if err := os.Rename(tmp, link); err != nil {
			_ = os.Remove(tmp)
			return fmt.Errorf("atomic write: %w", err)
		}
	}
	if err := crash(stepLinks); err != nil {
		return err
	}

	// Names that left the set, and old payload directories.
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("atomic write: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		switch {
		case name == dataDirName || name == tsName:
		case strings.HasPrefix(name, ".."):
			_ = os.RemoveAll(filepath.Join(dir, name))
		case !visible[name]:
			if target, err := os.Readlink(filepath.Join(dir, name)); err == nil && strings.HasPrefix(target, dataDirName+"/") {
				_ = os.Remove(filepath.Join(dir, name))
			}
		}
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
func writeEntry(root string, f fileEntry) error {
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
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", f.Path, err)
	}
	_, werr := fh.Write(f.Data)
	if cerr := fh.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Chown(path, f.UID, f.GID)
	}
	if werr == nil {
		werr = os.Chmod(path, f.Mode)
	}
	if werr != nil {
		return fmt.Errorf("write %s: %w", f.Path, werr)
	}
	return nil
}
