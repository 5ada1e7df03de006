//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
)

// restartFixture is three volumes holding the canary, one of them used by a
// running container while the plugin or dockerd restarts.
type restartFixture struct {
	vols    []string
	running string // container using vols[0]
}

func newRestartFixture(t *testing.T, sc *scope, label string) restartFixture {
	t.Helper()
	file := env.name(label)
	if err := env.writeFile(file, []byte(env.canary)); err != nil {
		t.Fatal(err)
	}
	secret := env.name(label)
	createSecret(t, secret, env.canary)
	f := restartFixture{vols: []string{
		sc.createVolume(label+"-file", "secret="+file),
		sc.createVolume(label+"-aws", "backend=aws", "secret="+secret),
		sc.createVolume(label+"-dir", "secret="+file, "layout=dir", "filename=s"),
	}}
	f.running = sc.start(label+"-running", "--stop-timeout", "1", "-v", f.vols[0]+":/run/secrets/s")
	wantExecCanary(t, f.running)
	wantMounts(t, f.vols[0], 1)
	return f
}

// mount returns the docker run options that mount vols[i] and the path of
// its secret in the container.
func (f restartFixture) mount(i int) (opts []string, path string) {
	if i == 2 {
		return []string{"-v", f.vols[i] + ":/run/secrets"}, "/run/secrets/s"
	}
	return []string{"-v", f.vols[i] + ":/run/secrets/s"}, "/run/secrets/s"
}

func wantExecCanary(t *testing.T, container string) {
	t.Helper()
	out := mustDocker(t, "exec", container, "sha256sum", "/run/secrets/s")
	if got := strings.Fields(out); len(got) == 0 || got[0] != canaryHash() {
		t.Fatalf("docker exec %s sha256sum /run/secrets/s = %q, want the canary's hash %s", container, out, canaryHash())
	}
	canaryMounts.Add(1)
}

// afterRestart checks what must hold once the plugin is back: every volume
// is listed and mounts in a new container, and is removed once unused.
func (f restartFixture) afterRestart(t *testing.T, sc *scope) {
	t.Helper()
	listed := mustDocker(t, "volume", "ls", "-q", "--filter", "driver="+env.driver)
	for _, v := range f.vols {
		if !strings.Contains("\n"+listed, "\n"+v+"\n") {
			t.Errorf("docker volume ls does not list %s after the restart:\n%s", v, listed)
		}
	}
	for i := range f.vols {
		opts, path := f.mount(i)
		sc.wantCanary(opts, path)
	}
	// The new containers are gone: only the one from before the restart may
	// still hold a tmpfs, and none of the other volumes.
	for _, v := range f.vols[1:] {
		wantNoHostMount(t, v)
	}
	mustDocker(t, "rm", "-f", f.running)
	for _, v := range f.vols {
		wantNoHostMount(t, v)
		mustDocker(t, "volume", "rm", v)
		if volumeExists(t, v) {
			t.Errorf("volume %s still exists after docker volume rm", v)
		}
	}
}

// TestRestartResilience restarts the plugin, then dockerd, with volumes
// defined and one in use.
func TestRestartResilience(t *testing.T) {
	t.Run("plugin disable and enable", func(t *testing.T) {
		sc := newScope(t)
		f := newRestartFixture(t, sc, "prestart")
		mustDocker(t, "plugin", "disable", "-f", env.plugin)
		sc.onCleanup(ensurePluginEnabled)
		mustDocker(t, "plugin", "enable", env.plugin)

		// The running container keeps the tmpfs it was given.
		wantExecCanary(t, f.running)
		t.Logf("after the plugin restart, %s Status: %v", f.vols[0], inspectVolume(t, f.vols[0]).Status)
		f.afterRestart(t, sc)
	})

	t.Run("dockerd restart", func(t *testing.T) {
		sc := newScope(t)
		f := newRestartFixture(t, sc, "drestart")
		before := inspectVolume(t, f.vols[0]).Status
		logStart := logSize(env.daemon.logPath)
		if err := env.daemon.restart(env.plugin); err != nil {
			t.Fatalf("restart dockerd: %v", err)
		}
		state := strings.TrimSpace(mustDocker(t, "inspect", "--format", "{{.State.Status}}", f.running))
		after := inspectVolume(t, f.vols[0]).Status
		t.Logf("protocol: container %s was %s by the restart; %s Status before %v, after %v", f.running, state, f.vols[0], before, after)
		t.Logf("protocol: plugin log lines about %s since the restart began:\n%s", f.vols[0], logLinesSince(env.daemon.logPath, logStart, f.vols[0]))
		if state == "running" {
			t.Errorf("container %s still runs after dockerd's restart without live-restore", f.running)
		}
		f.afterRestart(t, sc)
	})
}

// ensurePluginEnabled enables the plugin if a failed test left it disabled.
func ensurePluginEnabled() {
	if r := dockerCtx(context.Background(), "plugin", "inspect", "--format", "{{.Enabled}}", env.plugin); strings.TrimSpace(r.stdout) == "false" {
		if r := dockerCtx(context.Background(), "plugin", "enable", env.plugin); r.err != nil {
			logf("re-enable the plugin: %v", r)
		}
	}
}

func logSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// logLinesSince returns the lines of a log written after offset that
// mention s.
func logLinesSince(path string, offset int64, s string) string {
	b, err := os.ReadFile(path)
	if err != nil || int64(len(b)) < offset {
		return ""
	}
	var out []string
	for _, l := range bytes.Split(b[offset:], []byte("\n")) {
		if bytes.Contains(l, []byte(s)) {
			out = append(out, string(l))
		}
	}
	return strings.Join(out, "\n")
}
