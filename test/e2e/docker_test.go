//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
)

// commandTimeout bounds one docker command; docker run of a failing mount
// must return well within it.
const commandTimeout = 2 * time.Minute

// result is one finished command.
type result struct {
	args    []string
	stdout  string
	stderr  string
	err     error
	elapsed time.Duration
}

// String renders a result for failure messages: the command, its exit, and
// both outputs.
func (r result) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "`%s`", strings.Join(r.args, " "))
	if r.err != nil {
		fmt.Fprintf(&b, " failed after %s: %v", r.elapsed.Round(time.Millisecond), r.err)
	} else {
		fmt.Fprintf(&b, " succeeded after %s", r.elapsed.Round(time.Millisecond))
	}
	fmt.Fprintf(&b, "\n  stdout: %q\n  stderr: %q", clip(r.stdout), clip(r.stderr))
	return b.String()
}

func clip(s string) string {
	const max = 4000
	if len(s) > max {
		return s[:max] + "...(clipped)"
	}
	return s
}

// command runs name with args and captures its output.
func command(ctx context.Context, name string, args ...string) result {
	start := time.Now()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	r := result{
		args:    append([]string{name}, args...),
		stdout:  stdout.String(),
		stderr:  stderr.String(),
		err:     err,
		elapsed: time.Since(start),
	}
	outputs.scan(r)
	return r
}

// outputs checks every command's stdout and stderr for the canary as the
// command ends: docker's errors, inspect output, logs. checkCanary reports
// what it found.
var outputs outputScan

type outputScan struct {
	mu      sync.Mutex
	scanned int
	leaks   []string
}

func (o *outputScan) scan(r result) {
	if env == nil || env.canary == "" {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.scanned++
	if strings.Contains(r.stdout, env.canary) || strings.Contains(r.stderr, env.canary) {
		o.leaks = append(o.leaks, "`"+strings.Join(r.args, " ")+"`")
	}
}

// report returns the number of outputs scanned and the commands whose
// output held the canary.
func (o *outputScan) report() (int, []string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.scanned, append([]string(nil), o.leaks...)
}

func dockerCtx(ctx context.Context, args ...string) result {
	return command(ctx, "docker", args...)
}

// docker runs the docker CLI under commandTimeout.
func docker(t testing.TB, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	return dockerCtx(ctx, args...)
}

// mustDocker runs docker and fails the test unless it succeeds; it returns
// stdout.
func mustDocker(t testing.TB, args ...string) string {
	t.Helper()
	r := docker(t, args...)
	if r.err != nil {
		t.Fatalf("%v", r)
	}
	return r.stdout
}

// dockerFails runs docker and fails the test unless it fails.
func dockerFails(t testing.TB, args ...string) result {
	t.Helper()
	r := docker(t, args...)
	if r.err == nil {
		t.Fatalf("want a failure, got %v", r)
	}
	return r
}

// wantContains reports every wanted substring missing from got.
func wantContains(t testing.TB, what, got string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Errorf("%s does not mention %q:\n%s", what, w, got)
		}
	}
}

// scope owns the containers, volumes and compose projects of one test and
// removes them when it ends: containers first, as they pin volumes.
type scope struct {
	t          testing.TB
	containers []string
	volumes    []string
	cleanups   []func()
}

func newScope(t testing.TB) *scope {
	sc := &scope{t: t}
	t.Cleanup(sc.cleanup)
	return sc
}

// volume reserves a unique volume name that the scope removes.
func (sc *scope) volume(label string) string {
	n := env.name(label)
	sc.volumes = append(sc.volumes, n)
	return n
}

// container reserves a unique container name that the scope removes.
func (sc *scope) container(label string) string {
	n := env.name(label)
	sc.containers = append(sc.containers, n)
	return n
}

// onCleanup adds a cleanup that runs before containers and volumes go.
func (sc *scope) onCleanup(f func()) { sc.cleanups = append(sc.cleanups, f) }

func (sc *scope) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for i := len(sc.cleanups) - 1; i >= 0; i-- {
		sc.cleanups[i]()
	}
	if len(sc.containers) > 0 {
		dockerCtx(ctx, append([]string{"rm", "-f"}, sc.containers...)...)
	}
	for _, v := range sc.volumes {
		r := dockerCtx(ctx, "volume", "rm", "-f", v)
		if r.err != nil && !strings.Contains(strings.ToLower(r.stderr), "no such volume") {
			sc.t.Errorf("cleanup: %v", r)
		}
	}
}

// runArgs builds `docker run` arguments: a named, labelled container of the
// test image without network.
func (sc *scope) runArgs(name string, detach bool, opts []string, cmd ...string) []string {
	args := []string{"run", "--name", name, "--label", containerLabel, "--network", "none"}
	if detach {
		args = append(args, "-d")
	} else {
		args = append(args, "--rm")
	}
	args = append(args, opts...)
	args = append(args, env.image)
	return append(args, cmd...)
}

// run runs a container to completion and returns the result; opts go
// between `docker run` and the image.
func (sc *scope) run(opts []string, cmd ...string) result {
	sc.t.Helper()
	return docker(sc.t, sc.runArgs(sc.container("run"), false, opts, cmd...)...)
}

// mustRun runs a container and fails the test unless it succeeds; it returns
// stdout.
func (sc *scope) mustRun(opts []string, cmd ...string) string {
	sc.t.Helper()
	r := sc.run(opts, cmd...)
	if r.err != nil {
		sc.t.Fatalf("%v", r)
	}
	return r.stdout
}

// runFail runs a container and fails the test unless docker run fails.
func (sc *scope) runFail(opts []string, cmd ...string) result {
	sc.t.Helper()
	r := sc.run(opts, cmd...)
	if r.err == nil {
		sc.t.Fatalf("want docker run to fail, got %v", r)
	}
	return r
}

// start starts a long-running container (sleep 300) and returns its name.
func (sc *scope) start(label string, opts ...string) string {
	sc.t.Helper()
	name := sc.container(label)
	mustDocker(sc.t, sc.runArgs(name, true, opts, "sleep", "300")...)
	return name
}

// createVolume runs docker volume create -d PLUGIN with -o options.
func (sc *scope) createVolume(label string, opts ...string) string {
	sc.t.Helper()
	name := sc.volume(label)
	args := []string{"volume", "create", "-d", env.plugin}
	for _, o := range opts {
		args = append(args, "-o", o)
	}
	mustDocker(sc.t, append(args, name)...)
	return name
}

// volumeInfo is `docker volume inspect` output.
type volumeInfo struct {
	Name       string         `json:"Name"`
	Driver     string         `json:"Driver"`
	Mountpoint string         `json:"Mountpoint"`
	Status     map[string]any `json:"Status"`
	Options    map[string]any `json:"Options"`
	Scope      string         `json:"Scope"`
}

// mounts is the plugin's mount count from Status, -1 when absent.
func (v volumeInfo) mounts() int {
	n, ok := v.Status["mounts"].(float64)
	if !ok {
		return -1
	}
	return int(n)
}

func inspectVolume(t testing.TB, name string) volumeInfo {
	t.Helper()
	out := mustDocker(t, "volume", "inspect", name)
	var vs []volumeInfo
	if err := json.Unmarshal([]byte(out), &vs); err != nil || len(vs) != 1 {
		t.Fatalf("docker volume inspect %s: want one volume, got %q (%v)", name, out, err)
	}
	return vs[0]
}

// volumeExists reports whether docker knows the volume.
func volumeExists(t testing.TB, name string) bool {
	t.Helper()
	r := docker(t, "volume", "inspect", name)
	if r.err == nil {
		return true
	}
	if !strings.Contains(strings.ToLower(r.stderr), "no such volume") {
		t.Fatalf("docker volume inspect %s: unexpected failure: %v", name, r)
	}
	return false
}

// eventually polls cond until it returns "" or the deadline passes, then
// fails with cond's last complaint.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		msg := cond()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not true after %s: %s", what, timeout, msg)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// wantMounts waits until the volume's Status reports n mounts.
func wantMounts(t testing.TB, vol string, n int) {
	t.Helper()
	eventually(t, 15*time.Second, fmt.Sprintf("volume %s Status.mounts == %d", vol, n), func() string {
		v := inspectVolume(t, vol)
		if got := v.mounts(); got != n {
			return fmt.Sprintf("Status = %v", v.Status)
		}
		return ""
	})
}

// mountEntry is one mount of the host's mount table.
type mountEntry struct {
	mountPoint string
	fsType     string
	readOnly   bool // the mount's own flag (a read-only view)
	line       string
}

// hostMounts reads the host's mount table (github.com/moby/sys/mountinfo).
func hostMounts() ([]mountEntry, error) {
	infos, err := mountinfo.GetMounts(nil)
	if err != nil {
		return nil, err
	}
	out := make([]mountEntry, 0, len(infos))
	for _, m := range infos {
		out = append(out, mountEntry{
			mountPoint: m.Mountpoint,
			fsType:     m.FSType,
			readOnly:   slices.Contains(strings.Split(m.Options, ","), "ro"),
			line:       fmt.Sprintf("%s %s %s - %s", m.Mountpoint, m.Options, m.FSType, m.VFSOptions),
		})
	}
	return out, nil
}

// volumeHostMounts lists the host's mounts of a volume's tmpfs under any
// plugin's propagated mount.
func volumeHostMounts(t testing.TB, vol string) []string {
	t.Helper()
	ms, err := hostMounts()
	if err != nil {
		t.Fatalf("read host mount table: %v", err)
	}
	var out []string
	for _, m := range ms {
		if strings.Contains(m.mountPoint+"/", "/propagated-mount/"+vol+"/") {
			out = append(out, m.line)
		}
	}
	return out
}

// wantNoHostMount waits until no tmpfs of vol is left on the host.
func wantNoHostMount(t testing.TB, vol string) {
	t.Helper()
	eventually(t, 10*time.Second, "no host mount of volume "+vol, func() string {
		if ms := volumeHostMounts(t, vol); len(ms) > 0 {
			return "mounted: " + strings.Join(ms, "\n")
		}
		return ""
	})
}

// propagatedMount is the host side of the plugin's PropagatedMount.
func propagatedMount() string {
	return filepath.Join(env.dockerRoot, "plugins", env.pluginID, "propagated-mount")
}
