//go:build e2e

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// wantNoMountIDs checks that the plugin's state file holds no mount id for
// vol: a failed mount must not be remembered as one.
func wantNoMountIDs(t testing.TB, vol string) {
	t.Helper()
	state := filepath.Join(env.dockerRoot, "plugins", env.pluginID, "rootfs", "var", "lib", "dsv", "state.json")
	b, err := os.ReadFile(state)
	if err != nil {
		t.Fatalf("read the plugin's state: %v", err)
	}
	var st struct {
		Volumes map[string]struct {
			MountIDs []string `json:"mountIds"`
		} `json:"volumes"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("the plugin's state %s: %v", state, err)
	}
	if ids := st.Volumes[vol].MountIDs; len(ids) > 0 {
		t.Errorf("state file lists mount ids %v for %s after a failed mount", ids, vol)
	}
}

// TestTmpfsCap: secrets that do not fit the volume's tmpfs (2 MiB, 1024
// inodes) fail the mount with a clear error and leave nothing behind.
func TestTmpfsCap(t *testing.T) {
	sc := newScope(t)
	// Three files of 900 KiB each (the file store reads at most 1 MiB per
	// object): 2.7 MiB for a 2 MiB tmpfs.
	var opts []string
	for i := range 3 {
		name := env.name(fmt.Sprintf("big%d", i))
		if err := env.writeFile(name, bytes.Repeat([]byte{'a' + byte(i)}, 900<<10)); err != nil {
			t.Fatal(err)
		}
		opts = append(opts, fmt.Sprintf("file.part%d=%s", i, name))
	}
	big := sc.createVolume("toobig", opts...)
	r := sc.runFail([]string{"-v", big + ":/run/secrets"}, "true")
	wantContains(t, "docker run's error", r.stderr, big, "do not fit", "tmpfs")
	wantNoHostMount(t, big)
	wantMounts(t, big, 0)
	wantNoMountIDs(t, big)

	// 1,100 fields, one file each: more than the tmpfs's inodes.
	fields := map[string]int{}
	for i := range 1100 {
		fields["k"+strconv.Itoa(i)] = i
	}
	b, _ := json.Marshal(fields)
	many := env.name("manykeys")
	if err := env.writeFile(many, b); err != nil {
		t.Fatal(err)
	}
	manyVol := sc.createVolume("manykeys", "secret="+many, "key=*")
	r = sc.runFail([]string{"-v", manyVol + ":/run/secrets"}, "true")
	wantContains(t, "docker run's error", r.stderr, manyVol, "do not fit")
	wantNoHostMount(t, manyVol)
	wantNoMountIDs(t, manyVol)

	// Within the cap, the same volume options work.
	ok := sc.createVolume("fits", opts[0], opts[1])
	if out := sc.mustRun([]string{"-v", ok + ":/run/secrets"}, "sh", "-c", "wc -c /run/secrets/part0 /run/secrets/part1 | tail -1"); !strings.Contains(out, strconv.Itoa(2*900<<10)) {
		t.Fatalf("want two 900 KiB files, wc says %q", out)
	}
}

// pluginPid finds the plugin's process: /dsv in the plugin's cgroup.
func pluginPid(t testing.TB) int {
	t.Helper()
	var found []int
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if err != nil || !bytes.HasPrefix(cmd, []byte("/dsv\x00")) {
			continue
		}
		cg, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cgroup"))
		if err == nil && bytes.Contains(cg, []byte(env.pluginID)) {
			found = append(found, pid)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one process of plugin %.12s, found %v", env.pluginID, found)
	}
	return found[0]
}

// TestPluginKilled: the plugin process dies by SIGKILL while containers use
// its volumes. Running containers keep their files; Docker starts the
// plugin again, and every volume mounts, unmounts and is removed without
// "found references to volume" errors.
func TestPluginKilled(t *testing.T) {
	sc := newScope(t)
	sc.onCleanup(ensurePluginEnabled)
	f := newRestartFixture(t, sc, "killed")
	pid := pluginPid(t)
	logStart := logSize(env.daemon.logPath)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 %d: %v", pid, err)
	}
	t.Logf("killed plugin process %d", pid)
	wantExecCanary(t, f.running)

	// Docker restarts a plugin that exits on its own; wait for the new
	// process to answer.
	var newPid int
	eventually(t, 30*time.Second, "the plugin runs again", func() string {
		r := docker(t, "volume", "inspect", f.vols[1])
		if r.err != nil {
			return r.String()
		}
		newPid = pluginPid(t)
		if newPid == pid {
			return "still the killed process"
		}
		return ""
	})
	t.Logf("plugin process %d answers; log since the kill:\n%s", newPid, logLinesSince(env.daemon.logPath, logStart, "plugin="+env.pluginID[:12]))
	wantExecCanary(t, f.running)
	f.afterRestart(t, sc)
	if l := logLinesSince(env.daemon.logPath, logStart, "found references to volume"); l != "" {
		t.Errorf("dockerd logged:\n%s", l)
	}
}
