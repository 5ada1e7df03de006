package tmpfs

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// Real-mount tests: they run as root (CI does) and skip otherwise.

func TestMain(m *testing.M) {
	if os.Getenv(holderEnv) != "" {
		holderMain()
		return
	}
	os.Exit(m.Run())
}

// newKernelVolumes returns Volumes over real tmpfs mounts in a temporary
// folder, initialised; every mount under it is taken down at the end.
func newKernelVolumes(t *testing.T) (*Volumes, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount tmpfs; CI runs it as root")
	}
	base := t.TempDir()
	v := &Volumes{
		Root:    filepath.Join(base, "root"),
		Writer:  filepath.Join(base, "writer"),
		Mounter: Kernel{},
		Size:    1 << 20,
		Inodes:  64,
	}
	if err := v.Init(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for i := 0; i < 8; i++ {
			mounts, _ := mountinfo.GetMounts(mountinfo.PrefixFilter(base))
			if len(mounts) == 0 {
				break
			}
			for _, m := range mounts {
				_ = unix.Unmount(m.Mountpoint, unix.MNT_DETACH)
			}
		}
	})
	return v, base
}

// mounted reports whether dir is a mount point.
func mounted(t *testing.T, dir string) bool {
	t.Helper()
	ok, err := mountinfo.Mounted(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return ok
}

// A holder is a child process in a mount namespace of its own that holds a
// read-only bind of a volume's view, as a container does: this test binary
// run again with holderEnv set. It answers "read PATH" and "write PATH" on
// its stdin with "ok DATA" or "err ERRNO".
const holderEnv = "DSV_TMPFS_TEST_HOLDER"

type holder struct {
	pid int
	in  io.Writer
	out *bufio.Scanner
}

// startHolder starts a holder that binds src at dst in its own namespace,
// read-only unless mode is "as-is" (then the bind keeps src's flag, as
// Docker's bind of a volume does), and then takes its copies of drop down
// (the plugin's mounts it inherited), so that dst is its only mount of the
// tmpfs.
func startHolder(t *testing.T, mode, src, dst string, drop ...string) *holder {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), holderEnv+"="+strings.Join(append([]string{mode, src, dst}, drop...), "\n"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	h := &holder{pid: cmd.Process.Pid, in: in, out: bufio.NewScanner(out)}
	if !h.out.Scan() || h.out.Text() != "ready" {
		t.Fatalf("holder did not start: %q %v", h.out.Text(), h.out.Err())
	}
	return h
}

func (h *holder) do(t *testing.T, cmd, path string) string {
	t.Helper()
	if _, err := fmt.Fprintf(h.in, "%s %s\n", cmd, path); err != nil {
		t.Fatal(err)
	}
	if !h.out.Scan() {
		t.Fatalf("holder: no answer to %s %s: %v", cmd, path, h.out.Err())
	}
	return h.out.Text()
}

func holderMain() {
	args := strings.Split(os.Getenv(holderEnv), "\n")
	mode, src, dst := args[0], args[1], args[2]
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "holder:", err)
		os.Exit(2)
	}
	if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
		fail(err)
	}
	if mode != "as-is" {
		if err := unix.Mount("", dst, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|flags, ""); err != nil {
			fail(err)
		}
	}
	for _, d := range args[3:] {
		if err := unix.Unmount(d, unix.MNT_DETACH); err != nil {
			fail(fmt.Errorf("unmount %s: %w", d, err))
		}
	}
	fmt.Println("ready")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		cmd, path, _ := strings.Cut(in.Text(), " ")
		var data []byte
		var err error
		switch cmd {
		case "read":
			data, err = os.ReadFile(path)
		case "write":
			err = os.WriteFile(path, []byte("planted"), 0o644)
		default:
			err = fmt.Errorf("unknown command %q", cmd)
		}
		var errno unix.Errno
		switch {
		case errors.As(err, &errno):
			fmt.Println("err", unix.ErrnoName(errno))
		case err != nil:
			fmt.Println("err", err)
		default:
			fmt.Println("ok", string(data))
		}
	}
}

// detachedVolume makes volume vol (instance id) with pw=v1, published, and
// a holder of its view at base/ctr (or of its file pw at base/ctr-file
// when file is set); then it takes the plugin's mounts of it down, as
// `docker plugin disable -f` does, so the holder's is the only one left.
func detachedVolume(t *testing.T, v *Volumes, base, id string, file bool) (*holder, uint64) {
	t.Helper()
	var err error
	if id != "" {
		var marked bool
		marked, err = v.CreateInstance("vol", id)
		if err == nil && !marked {
			t.Fatal("the tmpfs took no instance mark")
		}
	} else {
		err = v.Create("vol")
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := WritePlain(v.Side("vol"), files("pw", "v1")); err != nil {
		t.Fatal(err)
	}
	if err := v.Publish("vol"); err != nil {
		t.Fatal(err)
	}
	dev, err := v.Device("vol")
	if err != nil {
		t.Fatal(err)
	}
	src, dst := v.View("vol"), filepath.Join(base, "ctr")
	pw := filepath.Join(dst, "pw")
	if file {
		src, dst = filepath.Join(src, "pw"), dst+"-file"
		pw = dst
		if err := os.WriteFile(dst, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	} else if err := os.Mkdir(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	h := startHolder(t, "ro", src, dst, v.Writer, v.View("vol"))
	for _, dir := range []string{v.View("vol"), v.Side("vol")} {
		if err := v.Mounter.Unmount(dir); err != nil {
			t.Fatal(err)
		}
	}
	if got := h.do(t, "read", pw); got != "ok v1" {
		t.Fatalf("the holder reads %q once the plugin's mounts are gone", got)
	}
	return h, dev
}

func TestAttachFromHolder(t *testing.T) {
	v, base := newKernelVolumes(t)
	h, dev := detachedVolume(t, v, base, "inst-1", false)
	ctr := filepath.Join(base, "ctr")

	hold := onlyHolder(t, dev)
	if hold.Mountpoint != ctr || !hold.Attachable() || !hold.ReadOnly || hold.PIDs[0] != h.pid {
		t.Fatalf("FindHolders = %+v, want the holder %d's read-only mount at %s", hold, h.pid, ctr)
	}

	// Another instance (a device number reused), or another volume's:
	// refused, and nothing is mounted.
	for _, tt := range []struct{ name, id string }{{name: "vol", id: "inst-2"}, {name: "other", id: "inst-1"}} {
		err := v.AttachFrom(tt.name, tt.id, hold)
		if err == nil || !strings.Contains(err.Error(), "another instance") {
			t.Fatalf("AttachFrom(%s, %s) = %v, want a refusal naming another instance", tt.name, tt.id, err)
		}
		if mounted(t, v.Side(tt.name)) {
			t.Fatalf("AttachFrom(%s, %s) refused but left a mount at the side", tt.name, tt.id)
		}
	}

	// A process gone since the scan: the next one of the namespace serves.
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	hold.PIDs = append([]int{gone.Process.Pid}, hold.PIDs...)
	if err := v.AttachFrom("vol", "inst-1", hold); err != nil {
		t.Fatal(err)
	}
	if id, err := v.Instance("vol"); err != nil || id != "inst-1" {
		t.Fatalf("Instance = %q, %v", id, err)
	}
	if _, err := WriteAtomic(v.Side("vol"), files("pw", "v2"), time.Now(), nil); err != nil {
		t.Fatalf("write through the attached side: %v", err)
	}
	if got := h.do(t, "read", filepath.Join(ctr, "pw")); got != "ok v2" {
		t.Fatalf("the holder reads %q after a write through the attached side, want v2", got)
	}
	if got := h.do(t, "write", filepath.Join(ctr, "planted")); got != "err EROFS" {
		t.Fatalf("the holder's own write: %q, want EROFS (its mount stays read-only)", got)
	}
	// The side is the plugin's own now: not another holder.
	onlyHolder(t, dev)
}

// onlyHolder is the one mount of device dev that FindHolders finds.
func onlyHolder(t *testing.T, dev uint64) Holder {
	t.Helper()
	found, err := FindHolders(dev)
	// A namespace made elsewhere on the machine while the test's own
	// mounts were up (a container starting, another package's test) holds
	// copies of them, at the test's own mount points: not the holder the
	// test made.
	var holders []Holder
	for _, h := range found {
		if !strings.Contains(h.Mountpoint, "/root/") && !strings.Contains(h.Mountpoint, "/writer/") {
			holders = append(holders, h)
		}
	}
	if err != nil || len(holders) != 1 {
		t.Fatalf("FindHolders = %+v, %v; want one holder", found, err)
	}
	return holders[0]
}

// TestAttachFromUnmarked: a tmpfs without a mark (a dsv from before the
// marks) is never attached.
func TestAttachFromUnmarked(t *testing.T) {
	v, base := newKernelVolumes(t)
	_, dev := detachedVolume(t, v, base, "", false)
	err := v.AttachFrom("vol", "inst-1", onlyHolder(t, dev))
	if !errors.Is(err, ErrUnmarked) {
		t.Fatalf("AttachFrom an unmarked tmpfs = %v, want ErrUnmarked", err)
	}
	if mounted(t, v.Side("vol")) {
		t.Fatal("a refused attach left a mount at the side")
	}
}

// TestFindHoldersFileLayout: a container holding one file of the tmpfs (a
// file-layout volume) is found, but reported as not attachable.
func TestFindHoldersFileLayout(t *testing.T) {
	v, base := newKernelVolumes(t)
	_, dev := detachedVolume(t, v, base, "inst-1", true)
	h := onlyHolder(t, dev)
	if h.Root != "/pw" || h.Attachable() {
		t.Fatalf("holder of a file = %+v, want root /pw, not attachable", h)
	}
	if err := v.AttachFrom("vol", "inst-1", h); err == nil || !strings.Contains(err.Error(), "cannot be attached") {
		t.Fatalf("AttachFrom a file's mount = %v", err)
	}
}

// TestAttachViewSealsWritableView: a view that takes writes (a tmpfs a dsv
// from before the views mounted at Root and left read-write) is covered by
// a read-only bind when the side is attached again, so no later container
// gets it writable; one that holds it already keeps its writable mount
// (said so in Attached's doc). A superblock made read-only stays so.
func TestAttachViewSealsWritableView(t *testing.T) {
	for _, tt := range []struct {
		name                     string
		legacy                   func(v *Volumes, view string) error
		wantWritable, wantSealed bool
	}{
		{
			name:   "published view",
			legacy: func(v *Volumes, _ string) error { return v.Publish("vol") },
			// The view is read-only already: left as it is.
			wantWritable: true,
		},
		{
			name: "legacy read-write",
			legacy: func(v *Volumes, view string) error {
				return v.Mounter.Bind(v.Side("vol"), view, false)
			},
			wantWritable: true, wantSealed: true,
		},
		{
			name: "legacy read-only superblock",
			legacy: func(v *Volumes, view string) error {
				if err := v.Mounter.Bind(v.Side("vol"), view, false); err != nil {
					return err
				}
				return unix.Mount("", view, "", unix.MS_REMOUNT|unix.MS_RDONLY|flags, "")
			},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			v, base := newKernelVolumes(t)
			if err := v.Create("vol"); err != nil {
				t.Fatal(err)
			}
			if err := WritePlain(v.Side("vol"), files("pw", "v1")); err != nil {
				t.Fatal(err)
			}
			view := v.View("vol")
			if err := os.MkdirAll(view, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := tt.legacy(v, view); err != nil {
				t.Fatal(err)
			}
			// A container from before the restart, and the restart: the
			// old process's side is gone.
			ctr := filepath.Join(base, "ctr")
			if err := os.Mkdir(ctr, 0o755); err != nil {
				t.Fatal(err)
			}
			before := startHolder(t, "as-is", view, ctr, v.Writer)
			if err := v.Mounter.Unmount(v.Side("vol")); err != nil {
				t.Fatal(err)
			}

			a, err := v.AttachView("vol")
			if err != nil {
				t.Fatal(err)
			}
			if a.Writable != tt.wantWritable || a.ViewWasWritable != tt.wantSealed {
				t.Fatalf("AttachView = %+v, want Writable %t, ViewWasWritable %t", a, tt.wantWritable, tt.wantSealed)
			}
			if err := os.WriteFile(filepath.Join(view, "planted"), []byte("x"), 0o644); !errors.Is(err, syscall.EROFS) {
				t.Fatalf("a write through the view after AttachView: %v, want EROFS", err)
			}
			later := filepath.Join(base, "later")
			if err := os.Mkdir(later, 0o755); err != nil {
				t.Fatal(err)
			}
			after := startHolder(t, "as-is", view, later, v.Writer)
			if got := after.do(t, "write", filepath.Join(later, "planted")); got != "err EROFS" {
				t.Fatalf("a container mounting the view after AttachView writes: %q, want EROFS", got)
			}
			if tt.wantWritable {
				if err := WritePlain(v.Side("vol"), files("pw", "v2")); err != nil {
					t.Fatal(err)
				}
				if got := after.do(t, "read", filepath.Join(later, "pw")); got != "ok v2" {
					t.Fatalf("the sealed view shows %q, want the side's v2", got)
				}
			}
			// What AttachView cannot undo: a container that held the
			// writable view keeps it, until SealHolders.
			want := "err EROFS"
			if tt.wantSealed {
				want = "ok "
			}
			if got := before.do(t, "write", filepath.Join(ctr, "planted")); got != want {
				t.Fatalf("the container from before writes: %q, want %q", got, want)
			}
			if tt.wantWritable {
				sealed, err := v.SealHolders("vol")
				if err != nil {
					t.Fatal(err)
				}
				var at []string
				for _, h := range sealed {
					if h.PIDs[0] != before.pid || !h.ReadOnly {
						t.Errorf("sealed %+v: not the container from before", h)
					}
					at = append(at, h.Mountpoint)
				}
				if want := tt.wantSealed; want != slices.Contains(at, ctr) {
					t.Fatalf("SealHolders sealed %v; the container's mount at %s should be sealed: %t", at, ctr, want)
				}
				if got := before.do(t, "write", filepath.Join(ctr, "planted2")); got != "err EROFS" {
					t.Fatalf("the container from before writes after SealHolders: %q, want EROFS", got)
				}
				if got := before.do(t, "read", filepath.Join(ctr, "pw")); got != "ok v2" {
					t.Fatalf("the container from before reads %q after SealHolders, want v2", got)
				}
			}
			// Destroy takes every mount at the view off, the writable one
			// below the seal too.
			if err := v.Destroy("vol"); err != nil {
				t.Fatal(err)
			}
			if mounted(t, view) || mounted(t, v.Side("vol")) {
				t.Fatal("mounts left at the view or the side after Destroy")
			}
		})
	}
}

// TestFindAllHolders: one pass finds the holders of several tmpfs, each
// under its own device.
func TestFindAllHolders(t *testing.T) {
	va, baseA := newKernelVolumes(t)
	vb, baseB := newKernelVolumes(t)
	ha, devA := detachedVolume(t, va, baseA, "inst-a", false)
	hb, devB := detachedVolume(t, vb, baseB, "inst-b", false)
	all, err := FindAllHolders([]uint64{devA, devB})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		dev uint64
		pid int
		ctr string
	}{{dev: devA, pid: ha.pid, ctr: filepath.Join(baseA, "ctr")}, {dev: devB, pid: hb.pid, ctr: filepath.Join(baseB, "ctr")}} {
		if hs := all[tt.dev]; len(hs) != 1 || hs[0].PIDs[0] != tt.pid || hs[0].Mountpoint != tt.ctr || hs[0].Dev != tt.dev {
			t.Errorf("holders of %d = %+v, want process %d's mount at %s", tt.dev, hs, tt.pid, tt.ctr)
		}
	}
}
