package tmpfs

import (
	"bytes"
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
	// Covered: another mount sits on it at the same point (a view sealed
	// by AttachView, as the host sees it), so its path reaches that one:
	// it can be neither attached nor sealed, and no new mount is made of
	// it.
	Covered bool
}

// Attachable reports whether the mount shows the whole tmpfs and can be
// reached by its path, which AttachFrom needs.
func (h Holder) Attachable() bool { return h.Root == "/" && !h.Covered }

// FindHolders lists the mounts of the tmpfs with device number dev in
// every process's mount table, one per mount (processes in one namespace
// share a mount, hence its mount id), except the calling process's own.
// Processes are those of the caller's PID namespace: a managed plugin
// without "pidhost" sees none of the containers'.
func FindHolders(dev uint64) ([]Holder, error) {
	all, err := FindAllHolders([]uint64{dev})
	return all[dev], err
}

// FindAllHolders is FindHolders for several devices in one pass over the
// processes (a restart looks for every detached instance at once).
func FindAllHolders(devs []uint64) (map[uint64][]Holder, error) {
	return findHolders("/proc", devs)
}

func findHolders(proc string, devs []uint64) (map[uint64][]Holder, error) {
	own, err := readMountinfo(filepath.Join(proc, "self", "mountinfo"))
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
	// A table that holds none of the devices is not parsed: the field is
	// " MAJOR:MINOR ", and paths have their spaces escaped (\040).
	wanted := map[[2]int]uint64{}
	var needles [][]byte
	for _, dev := range devs {
		major, minor := int(unix.Major(dev)), int(unix.Minor(dev))
		wanted[[2]int{major, minor}] = dev
		needles = append(needles, fmt.Appendf(nil, " %d:%d ", major, minor))
	}
	byID := map[int]*Holder{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		table, err := os.ReadFile(filepath.Join(proc, e.Name(), "mountinfo"))
		if err != nil || !slices.ContainsFunc(needles, func(n []byte) bool { return bytes.Contains(table, n) }) {
			continue // gone since the listing, a kernel thread, or no holder
		}
		mounts, err := mountinfo.GetMountsFromReader(bytes.NewReader(table), nil)
		if err != nil {
			continue
		}
		var covered map[int]bool
		for _, m := range mounts {
			dev, ok := wanted[[2]int{m.Major, m.Minor}]
			if !ok || ownIDs[m.ID] {
				continue
			}
			h := byID[m.ID]
			if h == nil {
				if covered == nil {
					covered = coveredMounts(mounts)
				}
				h = &Holder{Mountpoint: m.Mountpoint, Root: m.Root, Dev: dev, ReadOnly: slices.Contains(strings.Split(m.Options, ","), "ro"), Covered: covered[m.ID]}
				byID[m.ID] = h
			}
			h.PIDs = append(h.PIDs, pid)
		}
	}
	out := map[uint64][]Holder{}
	for _, h := range byID {
		sort.Ints(h.PIDs)
		out[h.Dev] = append(out[h.Dev], *h)
	}
	for _, hs := range out {
		sort.Slice(hs, func(i, j int) bool {
			if hs[i].PIDs[0] != hs[j].PIDs[0] {
				return hs[i].PIDs[0] < hs[j].PIDs[0]
			}
			return hs[i].Mountpoint < hs[j].Mountpoint
		})
	}
	return out, nil
}

// coveredMounts lists the ids of the mounts of a table that another mount
// sits on at the same point.
func coveredMounts(mounts []*mountinfo.Info) map[int]bool {
	at := map[int]string{}
	for _, m := range mounts {
		at[m.ID] = m.Mountpoint
	}
	out := map[int]bool{}
	for _, m := range mounts {
		if mp, ok := at[m.Parent]; ok && mp == m.Mountpoint && m.Parent != m.ID {
			out[m.Parent] = true
		}
	}
	return out
}

func readMountinfo(path string) ([]*mountinfo.Info, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return mountinfo.GetMountsFromReader(f, nil)
}

// maxHolderPIDs bounds the processes tried in one holder.
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
	side := v.Side(name)
	if err := os.MkdirAll(side, 0o755); err != nil {
		return fmt.Errorf("volume %q: create mount point: %w", name, err)
	}
	if err := v.Mounter.Unmount(side); err != nil {
		return fmt.Errorf("volume %q: %w", name, err)
	}
	err := h.eachPID(func(pid int) error {
		return cloneMount(pid, h.Mountpoint, side, func(fd int) error { return checkMark(fd, name, instanceID, h.Dev) })
	})
	if err != nil {
		_ = os.Remove(side)
		return fmt.Errorf("volume %q: attach the tmpfs from the mount at %s: %w", name, h.Mountpoint, err)
	}
	if !writable(side) {
		_ = v.Mounter.Unmount(side)
		_ = os.Remove(side)
		return fmt.Errorf("volume %q: the tmpfs attached from the mount at %s takes no writes (read-only as a whole)", name, h.Mountpoint)
	}
	return nil
}

// SealHolders makes read-only every mount of the volume's tmpfs that
// another mount namespace holds writable: the containers that mounted a
// view that took writes (see Attached.ViewWasWritable). A covered mount
// (the host's copy of a sealed view) is left: its path reaches the seal. It sets the
// mount's own read-only flag in the container's namespace (mount_setattr,
// Linux 5.12); the kernel refuses it (EBUSY) while the container has a
// file of it open for writing. sealed lists the mounts made read-only;
// err joins the failures of the others.
func (v *Volumes) SealHolders(name string) (sealed []Holder, err error) {
	dev, err := v.Device(name)
	if err != nil {
		return nil, err
	}
	holders, err := FindHolders(dev)
	if err != nil {
		return nil, fmt.Errorf("volume %q: %w", name, err)
	}
	var errs []error
	for _, h := range holders {
		if h.ReadOnly || h.Covered {
			continue
		}
		if err := h.eachPID(func(pid int) error { return sealMount(pid, h.Mountpoint, dev) }); err != nil {
			errs = append(errs, fmt.Errorf("volume %q: make the writable mount at %s read-only: %w", name, h.Mountpoint, err))
			continue
		}
		h.ReadOnly = true
		sealed = append(sealed, h)
	}
	return sealed, errors.Join(errs...)
}

// eachPID calls fn with the holder's processes in turn until one serves:
// another process of the namespace may be open to the plugin (one that
// changed user is not dumpable) or still alive; any other failure would
// be the same from each, and ends the turn.
func (h Holder) eachPID(fn func(pid int) error) error {
	if len(h.PIDs) == 0 {
		return errors.New("no process holds the mount")
	}
	var errs []error
	for i, pid := range h.PIDs {
		if i == maxHolderPIDs {
			break
		}
		err := fn(pid)
		if err == nil {
			return nil
		}
		errs = append(errs, err)
		var pe *processError
		if !errors.As(err, &pe) {
			break
		}
	}
	return errors.Join(errs...)
}

// processError is a failure to reach one process's mount namespace:
// another process of the same namespace may do.
type processError struct {
	pid int
	err error
}

func (e *processError) Error() string { return fmt.Sprintf("process %d: %v", e.pid, e.err) }
func (e *processError) Unwrap() error { return e.err }

// cloneMount copies the mount at mountpoint in process pid's mount
// namespace, writable, to dst in the caller's, if check accepts it.
func cloneMount(pid int, mountpoint, dst string, check func(fd int) error) error {
	tree := -1
	err := inMountNamespace(pid, func() error {
		var err error
		tree, err = unix.OpenTree(unix.AT_FDCWD, mountpoint, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_SYMLINK_NOFOLLOW)
		if err != nil {
			tree = -1
			return fmt.Errorf("copy the mount at %s in process %d: %w", mountpoint, pid, noMountAPI(err, "open_tree (Linux 5.2)"))
		}
		return nil
	})
	if tree >= 0 {
		// Until move_mount attaches it, the copy is detached: closing the
		// descriptor takes it down.
		defer unix.Close(tree)
	}
	if err != nil {
		return err
	}
	if err := check(tree); err != nil {
		return err
	}
	attr := unix.MountAttr{
		Attr_clr:    unix.MOUNT_ATTR_RDONLY,
		Attr_set:    unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOEXEC,
		Propagation: unix.MS_PRIVATE,
	}
	if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		return fmt.Errorf("make the copy writable: %w", noMountAPI(err, "mount_setattr (Linux 5.12)"))
	}
	if err := unix.MoveMount(tree, "", unix.AT_FDCWD, dst, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("attach the copy at %s: %w", dst, err)
	}
	return nil
}

// sealMount sets the read-only flag of the mount at mountpoint in process
// pid's mount namespace, if it is device dev.
func sealMount(pid int, mountpoint string, dev uint64) error {
	return inMountNamespace(pid, func() error {
		fd, err := unix.OpenTree(unix.AT_FDCWD, mountpoint, unix.OPEN_TREE_CLOEXEC|unix.AT_SYMLINK_NOFOLLOW)
		if err != nil {
			return fmt.Errorf("open the mount at %s in process %d: %w", mountpoint, pid, noMountAPI(err, "open_tree (Linux 5.2)"))
		}
		defer unix.Close(fd)
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return fmt.Errorf("stat the mount at %s in process %d: %w", mountpoint, pid, err)
		}
		if st.Dev != dev {
			return fmt.Errorf("the mount at %s in process %d is another device now", mountpoint, pid)
		}
		attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
		if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, &attr); err != nil {
			if errors.Is(err, unix.EBUSY) {
				err = fmt.Errorf("a file of it is open for writing: %w", err)
			}
			return noMountAPI(err, "mount_setattr (Linux 5.12)")
		}
		return nil
	})
}

// noMountAPI names the system call a kernel without it lacks.
func noMountAPI(err error, call string) error {
	if errors.Is(err, unix.ENOSYS) {
		return fmt.Errorf("the kernel has no %s: %w", call, err)
	}
	return err
}

// inMountNamespace runs fn with the calling thread in process pid's mount
// namespace, and brings the thread back. It runs on a thread of its own
// that ends with it: the thread's filesystem state is unshared from the
// process's, so it is never given back to the runtime (the goroutine exits
// locked).
func inMountNamespace(pid int, fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		done <- enterOnThread(pid, fn)
	}()
	return <-done
}

// enterOnThread is inMountNamespace on the locked thread.
func enterOnThread(pid int, fn func() error) error {
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
	fnErr := fn()
	// Back home although the thread ends: the main thread, when it was
	// this one, is kept (wedged) instead, and must not pin a container's
	// namespace after the container is gone.
	if err := unix.Setns(home, unix.CLONE_NEWNS); err != nil {
		return errors.Join(fnErr, fmt.Errorf("come back to the plugin's mount namespace: %w", err))
	}
	return fnErr
}
