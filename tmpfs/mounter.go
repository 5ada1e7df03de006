// Package tmpfs holds a volume's files: a tmpfs per volume with a private
// read-write side that only the plugin writes through and a read-only view
// that containers get, and the writers that publish files into it (plain,
// in place, or atomically through a ..data symlink as the kubelet does).
package tmpfs

import (
	"errors"
	"fmt"
	"path/filepath"
	"sort"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// Mounter is the seam between the volumes and the kernel's mount table.
type Mounter interface {
	// MountTmpfs mounts a fresh tmpfs of at most sizeBytes and inodes at
	// dir.
	MountTmpfs(dir string, sizeBytes int64, inodes int) error
	// Bind mounts what is mounted at src at dst too, read-only or
	// read-write. The flag is the mount's own (the superblock stays
	// writable): the other mounts of the same tmpfs keep theirs, and a
	// bind made of a read-only mount is read-only from its first moment.
	Bind(src, dst string, readOnly bool) error
	// MakePrivate makes dir a mount point whose mounts below propagate to
	// no other mount namespace (and receive none).
	MakePrivate(dir string) error
	// Unmount detaches whatever is mounted at dir.
	Unmount(dir string) error
	// MountsUnder lists the mount points strictly below root.
	MountsUnder(root string) ([]string, error)
}

// ReadOnlyReader is a Mounter that can tell whether a mount point takes
// writes. Volumes.AttachView uses it, when the Mounter has it, to find a
// view that containers could write to.
type ReadOnlyReader interface {
	// ReadOnly reports whether dir is read-only: by its mount's flag or
	// its superblock's.
	ReadOnly(dir string) (bool, error)
}

// flags keep the secret tmpfs inert: no devices, no set-uid, no exec. A
// bind remount repeats them, or it would clear them.
const flags = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC

// Kernel mounts for real; it needs CAP_SYS_ADMIN.
type Kernel struct{}

var (
	_ Mounter        = Kernel{}
	_ ReadOnlyReader = Kernel{}
)

// MountTmpfs mounts a tmpfs whose root is 0755 root:root, so only root can
// write and every uid can reach the files, which carry their own modes.
func (Kernel) MountTmpfs(dir string, sizeBytes int64, inodes int) error {
	data := fmt.Sprintf("size=%d,nr_inodes=%d,mode=0755,uid=0,gid=0", sizeBytes, inodes)
	if err := unix.Mount("tmpfs", dir, "tmpfs", flags, data); err != nil {
		return fmt.Errorf("mount tmpfs at %s: %w", dir, err)
	}
	return nil
}

// Bind is a bind mount, then a bind remount that sets (or clears) the
// mount's read-only flag; the superblock is never touched, so the remount
// never fails with EBUSY, whatever a container holds open.
func (Kernel) Bind(src, dst string, readOnly bool) error {
	if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s at %s: %w", src, dst, err)
	}
	f := uintptr(unix.MS_REMOUNT | unix.MS_BIND | flags)
	if readOnly {
		f |= unix.MS_RDONLY
	}
	if err := unix.Mount("", dst, "", f, ""); err != nil {
		_ = unix.Unmount(dst, unix.MNT_DETACH)
		return fmt.Errorf("remount %s (read-only=%t): %w", dst, readOnly, err)
	}
	return nil
}

// MakePrivate binds dir on itself unless it is a mount point already (a
// restarted plugin finds the one it made), then makes it private.
func (Kernel) MakePrivate(dir string) error {
	mounted, err := mountinfo.Mounted(dir)
	if err != nil {
		return fmt.Errorf("read mount table: %w", err)
	}
	if !mounted {
		if err := unix.Mount(dir, dir, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind %s on itself: %w", dir, err)
		}
	}
	if err := unix.Mount("", dir, "", unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make %s private: %w", dir, err)
	}
	return nil
}

// maxStacked bounds the mounts Unmount takes off one mount point.
const maxStacked = 16

// Unmount detaches the mount; MNT_DETACH because a dying container may still
// hold a reference for a moment, and the memory is freed with the last one.
// Mounts stacked on the same point (a view sealed by AttachView covers the
// writable one below it) all come off, top first.
func (Kernel) Unmount(dir string) error {
	for range maxStacked {
		err := unix.Unmount(dir, unix.MNT_DETACH)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("unmount %s: %w", dir, err)
		}
	}
	return fmt.Errorf("unmount %s: still a mount point after %d unmounts", dir, maxStacked)
}

// ReadOnly reads the flags statfs reports for dir: ST_RDONLY is set when
// the mount or its superblock is read-only.
func (Kernel) ReadOnly(dir string) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return false, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return st.Flags&unix.ST_RDONLY != 0, nil
}

// MountsUnder reads the mount table (github.com/moby/sys/mountinfo, as
// Docker does).
func (Kernel) MountsUnder(root string) ([]string, error) {
	root = filepath.Clean(root)
	infos, err := mountinfo.GetMounts(mountinfo.PrefixFilter(root))
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	var out []string
	seen := map[string]bool{}
	for _, m := range infos {
		if m.Mountpoint != root && !seen[m.Mountpoint] {
			seen[m.Mountpoint] = true
			out = append(out, m.Mountpoint)
		}
	}
	sort.Strings(out)
	return out, nil
}
