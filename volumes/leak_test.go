package volumes

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/docker/go-plugins-helpers/volume"
)

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(fds)
}

// settle waits for goroutines that are on their way out (refresh loops
// told to stop, timers) and returns the count.
func settle(want int) int {
	n := runtime.NumGoroutine()
	for deadline := time.Now().Add(3 * time.Second); n > want && time.Now().Before(deadline); n = runtime.NumGoroutine() {
		time.Sleep(10 * time.Millisecond)
	}
	return n
}

// TestMountCyclesLeakNothing mounts and unmounts 1,000 times on real tmpfs
// mounts (root only): a file volume, a refreshed directory volume shared by
// two mount ids, and a mount that fails. Afterwards the mount table, the
// open file descriptors and the goroutines are back to where they started.
func TestMountCyclesLeakNothing(t *testing.T) {
	h := newKernelHarness(t, 20*time.Millisecond)
	h.backend.set("file-secret", "v")
	h.backend.set("dir-secret", `{"user":"u","password":"p"}`)
	h.create("file-vol", map[string]string{"secret": "file-secret"})
	h.create("dir-vol", map[string]string{"secret": "dir-secret", "key": "*"})
	h.create("missing-vol", map[string]string{"secret": "no-such-secret"})

	cycle := func(i int) {
		a, b := fmt.Sprintf("a%d", i), fmt.Sprintf("b%d", i)
		h.mount("file-vol", a)
		h.mount("dir-vol", a)
		h.mount("dir-vol", b)
		if _, err := h.drv.Mount(&volume.MountRequest{Name: "missing-vol", ID: a}); err == nil {
			t.Fatal("mount of a missing secret succeeded")
		}
		h.unmount("file-vol", a)
		h.unmount("dir-vol", b)
		h.unmount("dir-vol", a)
	}
	// Warm up once: lazily started pools and timers are not leaks.
	cycle(-1)
	goroutines, fds := settle(0), openFDs(t)

	const cycles = 1000
	for i := range cycles {
		cycle(i)
	}
	mounts := append(kernelMountsUnder(t, h.root), kernelMountsUnder(t, h.writer)...)
	if len(mounts) > 0 {
		t.Errorf("after %d cycles, tmpfs mounts remain: %s", cycles, strings.Join(mounts, ", "))
	}
	if n := openFDs(t); n > fds {
		t.Errorf("after %d cycles, %d open file descriptors, %d before", cycles, n, fds)
	}
	if n := settle(goroutines); n > goroutines {
		buf := make([]byte, 1<<16)
		t.Errorf("after %d cycles, %d goroutines, %d before:\n%s", cycles, n, goroutines, buf[:runtime.Stack(buf, true)])
	}
	entries := listDir(t, h.root)
	if len(entries) > 0 {
		t.Errorf("after %d cycles, %d directories remain under the mount root", cycles, len(entries))
	}
	t.Logf("%d cycles (6 mount calls each): %d goroutines, %d fds, no mount left", cycles, settle(goroutines), openFDs(t))
}
