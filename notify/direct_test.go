package notify

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// Container IDs as the engine gives them: 64 hex digits.
func hexID(i int) string { return fmt.Sprintf("%064x", 0xabc000+i) }

func TestCgroupNames(t *testing.T) {
	id := hexID(1)
	other := hexID(2)
	for _, c := range []struct {
		name, file string
		want       bool
	}{
		{"cgroup v2, systemd driver", "0::/system.slice/docker-" + id + ".scope\n", true},
		{"cgroup v2, cgroupfs driver", "0::/docker/" + id + "\n", true},
		{"seen from a cgroup namespace", "0::/../docker-" + id + ".scope\n", true},
		{"podman", "0::/machine.slice/libpod-" + id + ".scope/container\n", true},
		{"cgroup v1, many hierarchies", "12:pids:/docker/" + id + "\n11:memory:/docker/" + id + "\n0::/system.slice/containerd.service\n", true},
		{"another container", "0::/system.slice/docker-" + other + ".scope\n", false},
		{"the ID inside a longer element", "0::/system.slice/docker-" + id + "0.scope\n", false},
		{"a prefix of the ID", "0::/docker/" + id[:12] + "\n", false},
		{"the host", "0::/init.scope\n", false},
		{"empty", "", false},
	} {
		if got := cgroupNames([]byte(c.file), id); got != c.want {
			t.Errorf("%s: cgroupNames(%q) = %v, want %v", c.name, c.file, got, c.want)
		}
	}
	if cgroupNames([]byte("0::/docker/abc\n"), "abc") {
		t.Error("a short ID matched: an ID shorter than 32 characters must never match")
	}
}

// trapper is a real process that records each SIGHUP it gets in a file.
type trapper struct {
	pid  int
	file string
}

func startTrapper(t *testing.T) trapper {
	t.Helper()
	dir := t.TempDir()
	rec := filepath.Join(dir, "hups")
	cmd := exec.Command("sh", "-c", `trap 'echo hup >> "$0"' HUP; touch "$0.ready"; while :; do sleep 1 & wait $!; done`, rec)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	waitFor(t, "the trap is set", func() bool { _, err := os.Stat(rec + ".ready"); return err == nil })
	return trapper{pid: cmd.Process.Pid, file: rec}
}

func (p trapper) hups() int {
	b, _ := os.ReadFile(p.file)
	return strings.Count(string(b), "hup")
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestNotifyDirect: a container whose main process is seen here, in the
// container's cgroup, is signalled through a pidfd and the engine's kill is
// not called; one whose PID's cgroup names another container, or whose
// process has ended, gets the engine's kill instead, and its process gets
// nothing from dsv directly.
func TestNotifyDirect(t *testing.T) {
	f, sock := newFakeEngine(t)
	proc := t.TempDir()
	old := procRoot
	procRoot = proc
	t.Cleanup(func() { procRoot = old })
	cgroup := func(pid int, id string) {
		dir := filepath.Join(proc, strconv.Itoa(pid))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "cgroup"), []byte("0::/system.slice/docker-"+id+".scope\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var direct []string
	var procs []trapper
	for i := range 3 {
		p := startTrapper(t)
		id := hexID(i)
		f.pids[id] = p.pid
		cgroup(p.pid, id)
		direct = append(direct, id)
		procs = append(procs, p)
	}
	// A reused PID: the process is there, but in another container.
	reused := startTrapper(t)
	mismatch := hexID(10)
	f.pids[mismatch] = reused.pid
	cgroup(reused.pid, hexID(11))
	// An ended process.
	ended := exec.Command("true")
	if err := ended.Run(); err != nil {
		t.Fatal(err)
	}
	dead := hexID(20)
	f.pids[dead] = ended.Process.Pid
	cgroup(ended.Process.Pid, dead)
	f.mounts["vol"] = append(slices.Clone(direct), mismatch, dead)

	n := New(sock, Config{Logger: zerolog.Nop()})
	var mu sync.Mutex
	sent := map[int]bool{}
	n.direct = func(pid int, id string, sig unix.Signal) error {
		err := signalDirect(pid, id, sig)
		if err == nil {
			mu.Lock()
			sent[pid] = true
			mu.Unlock()
		}
		return err
	}
	res := n.Notify(context.Background(), "vol", Spec{Signal: "SIGHUP"})
	if res.Containers != 5 || res.Failed != 0 || res.Skipped != 0 {
		t.Fatalf("Notify = %+v, want 5 containers, none failed or skipped", res)
	}
	for i, p := range procs {
		if !sent[p.pid] {
			t.Errorf("container %d's process was not signalled through a pidfd", i)
		}
		waitFor(t, fmt.Sprintf("container %d's process got its SIGHUP", i), func() bool { return p.hups() == 1 })
	}
	f.mu.Lock()
	for _, id := range direct {
		if got := f.signals[id]; len(got) != 0 {
			t.Errorf("container %s was signalled directly, yet the engine's kill was called too: %q", id[:12], got)
		}
	}
	for _, id := range []string{mismatch, dead} {
		if got := f.signals[id]; !slices.Equal(got, []string{"SIGHUP"}) {
			t.Errorf("container %s: engine kills %q, want one SIGHUP through the engine", id[:12], got)
		}
	}
	f.mu.Unlock()
	if sent[reused.pid] || sent[ended.Process.Pid] {
		t.Errorf("dsv signalled a process outside its container directly (sent to %v)", sent)
	}
	if got := reused.hups(); got != 0 {
		t.Errorf("the process in another container's cgroup recorded %d SIGHUPs", got)
	}
}
