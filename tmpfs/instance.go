package tmpfs

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// A volume's tmpfs is one instance of it: Create mounts a new one each time
// the volume goes up. The instance is marked with the volume's name and an
// id the caller keeps in its state, so that a tmpfs found later by its
// device number alone (a container that ran across a plugin upgrade holds
// the only mount left of it, see AttachFrom) is proved to be that instance
// before anything is written into it: anonymous device numbers are reused
// once a tmpfs is freed.
//
// The mark is an extended attribute of the tmpfs root in the trusted
// namespace: only a process with CAP_SYS_ADMIN reads or lists it, so a
// container sees no extra entry in the volume (`ls -A`, `docker cp`, an app
// that reads every file of the folder) and cannot forge it.
const instanceXattr = "trusted.dsv.instance"

// ErrUnmarked is returned for a tmpfs that carries no instance mark: made
// by a dsv from before the marks, or on a kernel whose tmpfs has no
// extended attributes (CONFIG_TMPFS_XATTR).
var ErrUnmarked = errors.New("the tmpfs carries no instance mark")

// NewInstanceID returns a fresh random instance id (32 hex digits).
func NewInstanceID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("instance id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// CreateInstance mounts a fresh tmpfs at the volume's side, as Create does,
// and marks it as the volume's instance instanceID. marked is false, with
// no error, when the kernel takes no mark (EPERM without CAP_SYS_ADMIN,
// EOPNOTSUPP without tmpfs extended attributes): the tmpfs works, but can
// never be attached from a container after an upgrade.
func (v *Volumes) CreateInstance(name, instanceID string) (marked bool, err error) {
	if instanceID == "" {
		return false, fmt.Errorf("volume %q: empty instance id", name)
	}
	if err := v.Create(name); err != nil {
		return false, err
	}
	err = unix.Setxattr(v.Side(name), instanceXattr, instanceMark(name, instanceID), unix.XATTR_CREATE)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EOPNOTSUPP):
		return false, nil
	default:
		_ = v.Destroy(name)
		return false, fmt.Errorf("volume %q: mark the tmpfs as instance %s: %w", name, instanceID, err)
	}
}

// Instance reads the instance id of the tmpfs at a volume's side (after
// Create, Attach or AttachFrom), checking that it is the volume's.
func (v *Volumes) Instance(name string) (string, error) {
	mark, err := readMark(v.Side(name))
	if err != nil {
		return "", fmt.Errorf("volume %q: %w", name, err)
	}
	got, id, ok := bytes.Cut(mark, []byte{'\n'})
	if !ok || string(got) != name {
		return "", fmt.Errorf("volume %q: the tmpfs at %s is marked for another volume", name, v.Side(name))
	}
	return string(id), nil
}

// Device is the device number (st_dev) of the tmpfs at a volume's side:
// what FindHolders looks for in other processes' mount tables once the
// plugin's own mounts of it are gone. Record it with the instance id.
func (v *Volumes) Device(name string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(v.Side(name), &st); err != nil {
		return 0, fmt.Errorf("volume %q: %w", name, err)
	}
	return st.Dev, nil
}

// instanceMark is the mark's value: the volume name, a newline, the id.
// Volume names hold no newline (render.ValidateVolumeName).
func instanceMark(name, instanceID string) []byte {
	return []byte(name + "\n" + instanceID)
}

// readMark reads the instance mark of the directory at path.
func readMark(path string) ([]byte, error) {
	buf := make([]byte, 256)
	n, err := unix.Getxattr(path, instanceXattr, buf)
	return markResult(buf, n, err)
}

// readMarkFd reads the instance mark of the directory open at fd.
func readMarkFd(fd int) ([]byte, error) {
	buf := make([]byte, 256)
	n, err := unix.Fgetxattr(fd, instanceXattr, buf)
	return markResult(buf, n, err)
}

func markResult(buf []byte, n int, err error) ([]byte, error) {
	switch {
	case errors.Is(err, unix.ENODATA), errors.Is(err, unix.EOPNOTSUPP):
		return nil, ErrUnmarked
	case err != nil:
		return nil, fmt.Errorf("read the instance mark: %w", err)
	}
	return buf[:n], nil
}

// checkMark opens the tmpfs root at dirfd (an O_PATH descriptor, as
// open_tree returns) and checks its mark and device.
func checkMark(dirfd int, name, instanceID string, dev uint64) error {
	fd, err := unix.Openat(dirfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open the tmpfs: %w", err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("stat the tmpfs: %w", err)
	}
	if st.Dev != dev {
		return fmt.Errorf("the mount is device %d:%d, not %d:%d", unix.Major(st.Dev), unix.Minor(st.Dev), unix.Major(dev), unix.Minor(dev))
	}
	mark, err := readMarkFd(fd)
	if err != nil {
		return err
	}
	if !bytes.Equal(mark, instanceMark(name, instanceID)) {
		return fmt.Errorf("the tmpfs is another instance (a reused device number): its mark does not name instance %s of volume %q", instanceID, name)
	}
	return nil
}

// writable reports whether files can be created in dir.
func writable(dir string) bool {
	probe, err := os.CreateTemp(dir, "..probe-*")
	if err != nil {
		return false
	}
	probe.Close()
	_ = os.Remove(probe.Name())
	return true
}
