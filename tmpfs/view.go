package tmpfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Volumes are the tmpfs of every volume. Each volume's tmpfs is mounted
// twice:
//
//   - its side, Writer/NAME: read-write, under a private mount, so it
//     propagates nowhere (no container, not the host). Only the plugin
//     writes, and only through it.
//   - its view, Root/NAME: a read-only bind of the same tmpfs under Root
//     (the managed plugin's PropagatedMount), which Docker mounts into
//     containers.
//
// The view is read-only by its mount flag, set before it is attached under
// Root (a bind made of a read-only mount is read-only from its first
// moment, in every namespace it propagates to), and the flag is never
// changed again: no remount, so nothing a container holds open (a file of
// a replaced version) can keep it writable, as a superblock remount could
// (EBUSY).
type Volumes struct {
	Root    string // views; containers see them
	Writer  string // sides; private to the plugin
	Mounter Mounter
	// Size and Inodes cap each volume's tmpfs.
	Size   int64
	Inodes int
}

// stage is where a view is made read-only before it is attached under
// Root: inside the private Writer, so the writable moment is seen by no one.
const stage = ".stage"

// Init creates the roots and makes Writer private. Neither root may hold
// the other: sides under Root would be shown to containers and the host,
// writable; views under the private Writer would propagate nowhere, so
// Docker could not mount them.
func (v *Volumes) Init() error {
	for _, dir := range []string{v.Root, v.Writer} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
	}
	if err := v.checkApart(); err != nil {
		return err
	}
	if err := os.Chmod(v.Writer, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", v.Writer, err)
	}
	return v.Mounter.MakePrivate(v.Writer)
}

// checkApart checks that Root and Writer do not hold each other, by their
// real paths (through symlinks).
func (v *Volumes) checkApart() error {
	root, err := filepath.EvalSymlinks(v.Root)
	if err != nil {
		return fmt.Errorf("resolve %s: %w", v.Root, err)
	}
	writer, err := filepath.EvalSymlinks(v.Writer)
	if err != nil {
		return fmt.Errorf("resolve %s: %w", v.Writer, err)
	}
	switch {
	case within(writer, root):
		return fmt.Errorf("the writer folder %s (%s) is inside the mounts folder %s (%s): every volume's writable tmpfs would be shown to containers and the host; choose a writer folder outside it", v.Writer, writer, v.Root, root)
	case within(root, writer):
		return fmt.Errorf("the mounts folder %s (%s) is inside the writer folder %s (%s), which is made a private mount: Docker could not mount the volumes; choose a writer folder outside it", v.Root, root, v.Writer, writer)
	}
	return nil
}

// within reports whether path is dir or below it; both are clean and
// absolute.
func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// View is the read-only mount point of a volume, under Root.
func (v *Volumes) View(name string) string { return filepath.Join(v.Root, name) }

// Side is the read-write mount point of a volume, under Writer.
func (v *Volumes) Side(name string) string { return filepath.Join(v.Writer, name) }

// Create mounts a fresh tmpfs at the volume's side. Nothing is visible to
// containers until Publish.
func (v *Volumes) Create(name string) error {
	side := v.Side(name)
	if err := os.MkdirAll(side, 0o755); err != nil {
		return fmt.Errorf("create mount point: %w", err)
	}
	// A leftover mount here would hide the fresh one; take it off first.
	if err := v.Mounter.Unmount(side); err != nil {
		return err
	}
	if err := v.Mounter.MountTmpfs(side, v.Size, v.Inodes); err != nil {
		_ = os.Remove(side)
		return err
	}
	return nil
}

// Publish attaches the read-only view of a volume's side under Root.
func (v *Volumes) Publish(name string) error {
	view := v.View(name)
	if err := os.MkdirAll(view, 0o755); err != nil {
		return fmt.Errorf("create mount point: %w", err)
	}
	return v.stageReadOnly(name, func(st string) error {
		if err := v.Mounter.Unmount(view); err != nil {
			return err
		}
		return v.Mounter.Bind(st, view, true)
	})
}

// stageReadOnly binds the volume's side read-only at its stage, inside the
// private Writer, calls attach with it, and takes the stage down.
func (v *Volumes) stageReadOnly(name string, attach func(stage string) error) error {
	st := filepath.Join(v.Writer, stage, name)
	if err := os.MkdirAll(st, 0o755); err != nil {
		return fmt.Errorf("create mount point: %w", err)
	}
	defer func() {
		_ = v.Mounter.Unmount(st)
		_ = os.Remove(st)
	}()
	if err := v.Mounter.Bind(v.Side(name), st, true); err != nil {
		return err
	}
	return attach(st)
}

// Attach is AttachView for callers that need only Writable.
func (v *Volumes) Attach(name string) (writable bool, err error) {
	a, err := v.AttachView(name)
	return a.Writable, err
}

// Attached is what AttachView found.
type Attached struct {
	// Writable: the tmpfs takes writes through its side. A tmpfs made
	// read-only as a whole (by a dsv from before the views) does not, and
	// must not be made writable under the containers that hold it.
	Writable bool
	// ViewWasWritable: the view itself took writes (a tmpfs mounted by a
	// dsv from before the views and left read-write, by a failed remount
	// or a kill mid-refresh). AttachView covered it with a read-only bind,
	// so every later container gets a read-only mount; a container that
	// mounted it before keeps its writable mount until SealHolders makes
	// it read-only, or the container stops.
	ViewWasWritable bool
}

// AttachView rebuilds the side of a volume whose view survived a restart
// of the plugin (its side lived in the old process's mount namespace): a
// read-write bind of the view's tmpfs. When the Mounter is a
// ReadOnlyReader, it also checks that the view is read-only and, when it
// is not, seals it with no moment where the view is missing: a read-only
// bind of the side, staged in the private Writer, is mounted on top of
// the writable view (Unmount takes both off).
func (v *Volumes) AttachView(name string) (Attached, error) {
	side := v.Side(name)
	if err := os.MkdirAll(side, 0o755); err != nil {
		return Attached{}, fmt.Errorf("create mount point: %w", err)
	}
	if err := v.Mounter.Unmount(side); err != nil {
		return Attached{}, err
	}
	if err := v.Mounter.Bind(v.View(name), side, false); err != nil {
		_ = os.Remove(side)
		return Attached{}, err
	}
	a := Attached{Writable: writable(side)}
	flags, ok := v.Mounter.(ReadOnlyReader)
	if !ok {
		return a, nil
	}
	view := v.View(name)
	ro, err := flags.ReadOnly(view)
	if err != nil || ro {
		return a, err
	}
	a.ViewWasWritable = true
	if err := v.stageReadOnly(name, func(st string) error { return v.Mounter.Bind(st, view, true) }); err != nil {
		return a, fmt.Errorf("volume %q: seal the writable view: %w", name, err)
	}
	if ro, err := flags.ReadOnly(view); err != nil || !ro {
		return a, fmt.Errorf("volume %q: the view at %s still takes writes after it was sealed (%v)", name, view, err)
	}
	return a, nil
}

// Destroy wipes a volume's files through its side, then takes the view and
// the side down and removes their directories. The memory is freed once
// the last container that holds the view lets go.
func (v *Volumes) Destroy(name string) error {
	side := v.Side(name)
	if entries, err := os.ReadDir(side); err == nil {
		for _, e := range entries {
			_ = os.RemoveAll(filepath.Join(side, e.Name()))
		}
	}
	var errs []error
	for _, dir := range []string{v.View(name), side} {
		if err := v.Mounter.Unmount(dir); err != nil {
			errs = append(errs, err)
		}
		_ = os.Remove(dir)
	}
	return errors.Join(errs...)
}

// Mounted lists the volumes that have a view under Root, and those that
// have a side under Writer (a restarted process that kept its mount
// namespace, as in legacy mode, still has them). Deeper mounts (a file
// bind, a leftover) are reported as leftovers, deepest first.
func (v *Volumes) Mounted() (views, sides map[string]bool, leftovers []string, err error) {
	views, sides = map[string]bool{}, map[string]bool{}
	for _, r := range []struct {
		root string
		into map[string]bool
	}{{v.Root, views}, {v.Writer, sides}} {
		mounts, err := v.Mounter.MountsUnder(r.root)
		if err != nil {
			return nil, nil, nil, err
		}
		for _, mp := range mounts {
			rel, err := filepath.Rel(r.root, mp)
			if err != nil || strings.HasPrefix(rel, "..") {
				continue
			}
			if strings.Contains(rel, "/") || rel == stage {
				leftovers = append(leftovers, mp)
				continue
			}
			r.into[rel] = true
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(leftovers)))
	return views, sides, leftovers, nil
}
