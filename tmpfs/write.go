package tmpfs

import (
	"errors"
	"fmt"
	"os"
	"path"
	"time"

	"golang.org/x/sys/unix"
)

// Budget is what one version of a volume's files may use: Bytes (in
// pages, as tmpfs counts) and InodeBudget inodes. A volume's tmpfs holds
// twice that (Volumes.Size, Volumes.Inodes), plus InodeSlack for its root
// and the ..data link: a refresh writes the new version beside the old
// before it switches, so a volume that mounts can always be refreshed.
const (
	InodeBudget = 1024
	InodeSlack  = 8
)

// Mode is how a version of a volume's files is written.
type Mode int

const (
	// Atomic writes a version directory and switches ..data to it: readers
	// see the old files or the new ones, never a mix.
	Atomic Mode = iota
	// Plain writes the files themselves, once: content that never changes
	// (no refresh, no lease), so `docker cp` copies a file, not a link.
	Plain
	// InPlace rewrites the one file of a layout=file volume, which Docker
	// binds by itself: it cannot be swapped.
	InPlace
)

// budget is one version's share of the tmpfs.
func (v *Volumes) budget() int64 { return v.Size / 2 }

// Fits checks that one version of files stays within the budget.
func (v *Volumes) Fits(files []File) error {
	page := int64(os.Getpagesize())
	var pages int64
	dirs := map[string]bool{}
	for _, f := range files {
		pages += (int64(len(f.Data)) + page - 1) / page
		if dir := path.Dir(f.Path); dir != "." {
			dirs[dir] = true
		}
	}
	// A file and the symlink that shows it; a subdirectory and its link;
	// the version's directory.
	inodes := 2*len(files) + 2*len(dirs) + 1
	if limit := v.budget(); pages*page > limit || inodes > InodeBudget {
		return fmt.Errorf("the secrets do not fit the volume's %d KiB tmpfs: %d files, %d KiB; at most %d KiB and about %d files",
			limit/1024, len(files), pages*page/1024, limit/1024, (InodeBudget-1)/2)
	}
	return nil
}

// Write puts one version of a volume's files into its side. swapped
// reports whether readers see the new files, even on an error (a clean-up
// after the switch failed). ENOSPC is said in words.
func (v *Volumes) Write(name string, files []File, mode Mode, now time.Time, crash func(step string) error) (swapped bool, err error) {
	if err := v.Fits(files); err != nil {
		return false, err
	}
	dir := v.Side(name)
	switch mode {
	case InPlace:
		if len(files) != 1 {
			return false, fmt.Errorf("a layout=file volume holds one file, not %d", len(files))
		}
		err = WriteInPlace(dir, files[0])
		swapped = err == nil
	case Plain:
		err = WritePlain(dir, files)
		swapped = err == nil
	default:
		swapped, err = WriteAtomic(dir, files, now, crash)
	}
	if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) {
		return swapped, fmt.Errorf("the secrets do not fit the volume's %d KiB tmpfs", v.budget()/1024)
	}
	return swapped, err
}

// Fill mounts a fresh tmpfs for a volume, marked as instanceID (see
// CreateInstance), writes its files through the side and publishes the
// read-only view. On any failure it leaves nothing behind: no mount, no
// directory, no partial file.
func (v *Volumes) Fill(name, instanceID string, files []File, mode Mode, now time.Time, crash func(step string) error) (marked bool, err error) {
	if marked, err = v.CreateInstance(name, instanceID); err != nil {
		return false, err
	}
	defer func() {
		if err != nil {
			_ = v.Destroy(name)
		}
	}()
	if _, err := v.Write(name, files, mode, now, crash); err != nil {
		return false, err
	}
	return marked, v.Publish(name)
}
