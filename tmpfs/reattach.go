package tmpfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// Reattaching a detached instance.
//
// When a managed plugin is disabled (the first step of every upgrade),
// Docker unmounts its propagated mount, views and all, and the new process
// finds no trace of a tmpfs that running containers still hold: their
// mounts of it are the only ones left, each in the container's own mount
// namespace. FindHolders finds them by the tmpfs's device number in every
// process's mount table, and AttachFrom makes a writable side of the
// tmpfs again from one of them:
//
//  1. on a goroutine locked to its OS thread, unshare(CLONE_FS): a thread
//     that shares its root and working directory with others may not
//     change mount namespace;
//  2. setns into the holder's mount namespace (/proc/PID/ns/mnt), and
//     open_tree(OPEN_TREE_CLONE) of its mount: a new, detached copy of
//     that one mount (open_tree through /proc/PID/root is refused, EINVAL:
//     the mount must be in the caller's namespace);
//  3. setns back to the plugin's namespace; check the copy's device and
//     instance mark (a reused device number must never make the plugin
//     write into another tmpfs); mount_setattr clears MOUNT_ATTR_RDONLY on
//     the copy only (the container's mount stays read-only); move_mount
//     puts it at the volume's side;
//  4. the goroutine ends still locked, so the runtime ends the thread.
//
// It needs the new mount API (open_tree and move_mount, Linux 5.2;
// mount_setattr, Linux 5.12), the holder's PID in the plugin's PID
// namespace (a managed plugin: "pidhost"), CAP_SYS_ADMIN and
// CAP_SYS_CHROOT (setns into a mount namespace), and ptrace access to the
// holder (opening /proc/PID/ns/mnt): CAP_SYS_PTRACE when the holder runs
// as another user, is not dumpable, or holds capabilities the plugin does
// not.

// Holder is a mount of a volume's tmpfs in another mount namespace (a
// container's), as FindHolders reports it.
type Holder struct {
	// PIDs are the processes that see the mount, lowest first; they share
	// one mount namespace. Any of them serves; the lowest (a container's
	// init) is tried first.
	PIDs []int
	// Mountpoint is where they see it, relative to their root.
	Mountpoint string
	// Root is the part of the tmpfs the mount shows: "/" for the whole of
	// it (a dir-layout volume); "/NAME" for one file (a file-layout
	// volume) or a folder (a subpath mount), which cannot be attached.
	Root string
	// Dev is the tmpfs's device number.
	Dev uint64
	// ReadOnly is the mount's own read-only flag.
	ReadOnly bool
}

// Attachable reports whether the mount shows the whole tmpfs, which
// AttachFrom needs.
func (h Holder) Attachable() bool { return h.Root == "/" }

// FindHolders lists the mounts of the tmpfs with device number dev in
// every process's mount table, one per mount (processes in one namespace
// share a mount, hence its mount id), except the calling process's own.
// Processes are those of the caller's PID namespace: a managed plugin
// without "pidhost" sees none of the containers'.
func FindHolders(dev uint64) ([]Holder, error) {
	return findHolders("/proc", dev)
}

func findHolders(proc string, dev uint64) ([]Holder, error) {
	own, err := readMountinfo(filepath.Join(proc, "self", "mountinfo"), nil)
	if err != nil {
		return nil, fmt.Errorf("read the plugin's own mount table: %w", err)
	}
	ownIDs := map[int]bool{}
	for _, m := range own {
		ownIDs[m.ID] = true
	}
	entries, err := os.ReadDir(proc)
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	major, minor := int(unix.Major(dev)), int(unix.Minor(dev))
	isDev := func(m *mountinfo.Info) (skip, stop bool) {
		return m.Major != major || m.Minor != minor, false
	}
	byID := map[int]*Holder{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		mounts, err := readMountinfo(filepath.Join(proc, e.Name(), "mountinfo"), isDev)
		if err != nil {
			continue // gone since the listing, or a kernel thread
		}
		for _, m := range mounts {
			if ownIDs[m.ID] {
				continue
			}
			h := byID[m.ID]
			if h == nil {
				h = &Holder{Mountpoint: m.Mountpoint, Root: m.Root, Dev: dev, ReadOnly: slices.Contains(strings.Split(m.Options, ","), "ro")}
				byID[m.ID] = h
			}
			h.PIDs = append(h.PIDs, pid)
		}
	}
	out := make([]Holder, 0, len(byID))
	for _, h := range byID {
		sort.Ints(h.PIDs)
		out = append(out, *h)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].PIDs[0] != out[j].PIDs[0] {
			return out[i].PIDs[0] < out[j].PIDs[0]
		}
		return out[i].Mountpoint < out[j].Mountpoint
	})
	return out, nil
}

func readMountinfo(path string, filter mountinfo.FilterFunc) ([]*mountinfo.Info, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return mountinfo.GetMountsFromReader(f, filter)
}

// maxHolderPIDs bounds the processes AttachFrom tries in one holder.
const maxHolderPIDs = 8

// AttachFrom makes the volume's side again from a holder's mount of its
// tmpfs (see the comment above Holder): a writable copy of that mount at
// Writer/NAME, once the copy is proved to be instance instanceID of the
// volume. The holder's own mount stays read-only. On any failure nothing
// is mounted at the side.
func (v *Volumes) AttachFrom(name, instanceID string, h Holder) error {
	if !h.Attachable() {
		return fmt.Errorf("volume %q: the mount at %s in process %v shows %s of the tmpfs, not all of it (a file-layout volume or a subpath): it cannot be attached", name, h.Mountpoint, h.PIDs, h.Root)
	}
	if len(h.PIDs) == 0 {
		return fmt.Errorf("volume %q: no process holds the mount at %s", name, h.Mountpoint)
	}
	side := v.Side(name)
	if err := os.MkdirAll(side, 0o755); err != nil {
		return fmt.Errorf("volume %q: create mount point: %w", name, err)
	}
	if err := v.Mounter.Unmount(side); err != nil {
		return fmt.Errorf("volume %q: %w", name, err)
	}
	check := func(fd int) error { return checkMark(fd, name, instanceID, h.Dev) }
	var errs []error
	for i, pid := range h.PIDs {
		if i == maxHolderPIDs {
			break
		}
		err := cloneMount(pid, h.Mountpoint, side, check)
		if err == nil {
			errs = nil
			break
		}
		errs = append(errs, err)
		// Another process of the namespace may be open to the plugin (a
		// process that changed user is not dumpable) or still alive; any
		// other failure would be the same from each.
		var pe *processError
		if !errors.As(err, &pe) {
			break
		}
	}
	if len(errs) > 0 {
		_ = os.Remove(side)
		return fmt.Errorf("volume %q: attach the tmpfs from the mount at %s: %w", name, h.Mountpoint, errors.Join(errs...))
	}
	if !writable(side) {
		_ = v.Mounter.Unmount(side)
		_ = os.Remove(side)
		return fmt.Errorf("volume %q: the tmpfs attached from the mount at %s takes no writes (read-only as a whole)", name, h.Mountpoint)
	}
	return nil
}

// processError is a failure to reach one process's mount namespace:
// another process of the same namespace may do.
type processError struct {
	pid int
	err error
}

func (e *processError) Error() string { return fmt.Sprintf("process %d: %v", e.pid, e.err) }
func (e *processError) Unwrap() error { return e.err }

// cloneMount runs cloneOnThread on a thread of its own, which ends with
// it: the thread's filesystem state is unshared from the process's, so it
// is never given back to the runtime (the goroutine exits locked).
func cloneMount(pid int, mountpoint, dst string, check func(fd int) error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		done <- cloneOnThread(pid, mountpoint, dst, check)
	}()
	return <-done
}

// cloneOnThread copies the mount at mountpoint in process pid's mount
// namespace, writable, to dst in the caller's. The thread must be locked.
func cloneOnThread(pid int, mountpoint, dst string, check func(fd int) error) error {
	// The namespace to come back to is this thread's own: the process's,
	// since every thread that changed its namespace has ended. The thread
	// group leader's (/proc/self) is not used: the runtime keeps the main
	// thread, wedged, when a goroutine exits locked on it.
	home, err := unix.Open("/proc/thread-self/ns/mnt", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open the plugin's own mount namespace: %w", err)
	}
	defer unix.Close(home)
	target, err := unix.Open(fmt.Sprintf("/proc/%d/ns/mnt", pid), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		switch {
		case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ESRCH):
			err = fmt.Errorf("the process is gone: %w", err)
		case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
			err = fmt.Errorf("opening its mount namespace needs ptrace access: CAP_SYS_PTRACE when it runs as another user, is not dumpable, or holds capabilities the plugin does not: %w", err)
		}
		return &processError{pid: pid, err: err}
	}
	defer unix.Close(target)
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return fmt.Errorf("unshare the thread's filesystem state: %w", err)
	}
	if err := unix.Setns(target, unix.CLONE_NEWNS); err != nil {
		if errors.Is(err, unix.EPERM) {
			err = fmt.Errorf("entering another mount namespace needs CAP_SYS_ADMIN and CAP_SYS_CHROOT: %w", err)
		}
		return fmt.Errorf("enter the mount namespace of process %d: %w", pid, err)
	}
	tree, treeErr := unix.OpenTree(unix.AT_FDCWD, mountpoint, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_SYMLINK_NOFOLLOW)
	if err := unix.Setns(home, unix.CLONE_NEWNS); err != nil {
		if treeErr == nil {
			unix.Close(tree)
		}
		return fmt.Errorf("come back to the plugin's mount namespace: %w", err)
	}
	if treeErr != nil {
		if errors.Is(treeErr, unix.ENOSYS) {
			treeErr = fmt.Errorf("the kernel has no open_tree (the mount API of Linux 5.2): %w", treeErr)
		}
		return fmt.Errorf("copy the mount at %s in process %d: %w", mountpoint, pid, treeErr)
	}
	// Until move_mount attaches it, the copy is detached: closing the
	// descriptor takes it down.
	defer unix.Close(tree)
	if err := check(tree); err != nil {
		return err
	}
	attr := unix.MountAttr{
		Attr_clr:    unix.MOUNT_ATTR_RDONLY,
		Attr_set:    unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOEXEC,
		Propagation: unix.MS_PRIVATE,
	}
	if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		if errors.Is(err, unix.ENOSYS) {
			err = fmt.Errorf("the kernel has no mount_setattr (Linux 5.12): %w", err)
		}
		return fmt.Errorf("make the copy writable: %w", err)
	}
	if err := unix.MoveMount(tree, "", unix.AT_FDCWD, dst, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("attach the copy at %s: %w", dst, err)
	}
	return nil
}
