package volumes

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Mounter is the seam between the driver and the kernel's mount table.
type Mounter interface {
	// MountTmpfs mounts a fresh tmpfs of at most sizeBytes and inodes at
	// dir.
	MountTmpfs(dir string, sizeBytes int64, inodes int) error
	// SetReadOnly remounts the tmpfs at dir read-only (or back to read-write).
	SetReadOnly(dir string, ro bool) error
	// Unmount detaches whatever is mounted at dir.
	Unmount(dir string) error
	// MountsUnder lists the mount points strictly below root.
	MountsUnder(root string) ([]string, error)
}

// tmpfsFlags keep the secret tmpfs inert: no devices, no set-uid, no exec.
const tmpfsFlags = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC

// KernelMounter mounts for real; it needs CAP_SYS_ADMIN.
type KernelMounter struct{}

var _ Mounter = KernelMounter{}

// MountTmpfs mounts a tmpfs whose root is 0755 root:root, so only root can
// write and every uid can reach the files, which carry their own modes.
func (KernelMounter) MountTmpfs(dir string, sizeBytes int64, inodes int) error {
	data := fmt.Sprintf("size=%d,nr_inodes=%d,mode=0755,uid=0,gid=0", sizeBytes, inodes)
	if err := unix.Mount("tmpfs", dir, "tmpfs", tmpfsFlags, data); err != nil {
		return fmt.Errorf("mount tmpfs at %s: %w", dir, err)
	}
	return nil
}

// SetReadOnly flips the superblock, so even root in a container gets EROFS.
func (KernelMounter) SetReadOnly(dir string, ro bool) error {
	flags := uintptr(unix.MS_REMOUNT | tmpfsFlags)
	if ro {
		flags |= unix.MS_RDONLY
	}
	if err := unix.Mount("", dir, "", flags, ""); err != nil {
		return fmt.Errorf("remount %s (read-only=%t): %w", dir, ro, err)
	}
	return nil
}

// Unmount detaches the mount; MNT_DETACH because a dying container may still
// hold a reference for a moment, and the memory is freed with the last one.
func (KernelMounter) Unmount(dir string) error {
	if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", dir, err)
	}
	return nil
}

// MountsUnder reads /proc/self/mountinfo.
func (KernelMounter) MountsUnder(root string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	defer f.Close()
	return mountsUnder(f, root)
}

// mountsUnder parses mountinfo lines; field 5 is the mount point, with
// spaces and other specials octal-escaped.
func mountsUnder(f *os.File, root string) ([]string, error) {
	root = filepath.Clean(root) + "/"
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountinfo(fields[4])
		if strings.HasPrefix(mp, root) {
			out = append(out, mp)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	return out, nil
}

func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var n int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%3o", &n); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
