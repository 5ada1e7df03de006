//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dsv-plugin/dsv/test/testproc"
)

// TestPodman serves Podman from the dsv binary in legacy mode, as the
// README's Podman section says: containers.conf maps a volume plugin name to
// dsv's socket, volumes are created first (`podman run` has no
// --volume-driver), and a container reads its secret from a tmpfs that is
// gone once the container is. Podman runs with a configuration and storage
// of the test's own (CONTAINERS_CONF, CONTAINERS_STORAGE_CONF).
func TestPodman(t *testing.T) {
	pm := newPodman(t, false)
	secret := env.name("podman")
	value := "podman-" + randomHex(8)
	if err := os.WriteFile(filepath.Join(pm.dir, "files", secret), []byte(value), 0o600); err != nil {
		t.Fatal(err)
	}
	vol := env.name("podman")
	pm.must(t, "volume", "create", "--driver", pm.driver, "-o", "backend=file", "-o", "secret="+secret, vol)
	t.Cleanup(func() { pm.run(context.Background(), "volume", "rm", "-f", vol) })

	if out := pm.must(t, "run", "--rm", "--network", "none", "-v", vol+":/run/secrets/token", env.image, "cat", "/run/secrets/token"); out != value {
		t.Errorf("podman run reads %q, want %q", out, value)
	}
	mnt := filepath.Join(pm.dir, "mounts", vol)
	wantNoTmpfs(t, mnt)

	// While a container runs, its volume is a tmpfs on the host; the tmpfs
	// goes with the container.
	ctr := env.name("podman")
	pm.must(t, "run", "-d", "--name", ctr, "--network", "none", "-v", vol+":/run/secrets/token", env.image, "sleep", "300")
	if out := pm.must(t, "exec", ctr, "cat", "/run/secrets/token"); out != value {
		t.Errorf("podman exec reads %q, want %q", out, value)
	}
	if ms := tmpfsAt(t, mnt); len(ms) != 1 {
		t.Errorf("want one tmpfs at %s while %s runs, got %q", mnt, ctr, ms)
	}
	if out := pm.must(t, "volume", "inspect", "--format", "{{.Driver}} {{.Status.mounts}}", vol); strings.TrimSpace(out) != pm.driver+" 1" {
		t.Errorf("podman volume inspect %s: driver and mounts %q, want %q", vol, out, pm.driver+" 1")
	}
	pm.must(t, "rm", "-f", "-t", "0", ctr)
	wantNoTmpfs(t, mnt)

	pm.must(t, "volume", "rm", vol)
	if out := pm.must(t, "volume", "ls", "--format", "{{.Name}}"); strings.Contains(out, vol) {
		t.Errorf("podman volume ls still lists %s after podman volume rm:\n%s", vol, out)
	}
}

// podman is a Podman of the test's own, using a dsv in legacy mode.
type podman struct {
	dir    string // configuration, storage, and dsv's socket, state, mounts and files
	driver string // the volume plugin name in containers.conf
	env    []string
}

// newPodman sets up the test's Podman and starts dsv in legacy mode for it;
// with service, `podman system service` serves Podman's Docker-compatible
// API first, and dsv gets it as its engine (ENGINE_SOCKET), as README's
// legacy mode says for notify.
func newPodman(t *testing.T, service bool) *podman {
	t.Helper()
	if _, err := exec.LookPath("podman"); err != nil {
		t.Fatalf("podman not found (apt-get install podman): %v", err)
	}
	dir := t.TempDir()
	pm := &podman{dir: dir, driver: "dsv"}
	for _, d := range []string{"files", "templates", "mounts", "cni"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sock := filepath.Join(dir, "dsv.sock")
	// default_ulimits: this sandbox's hard limits are below Podman's
	// defaults. Locks in files, not in /dev/shm; networks in a folder of
	// the test's own. The database and the events log stay where they
	// follow graphroot and tmp_dir: the cleanup process conmon starts at a
	// container's exit is given those two, and with another static_dir it
	// looked in another database (podman run then waited 20 s for the exit
	// code).
	conf := fmt.Sprintf(`[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
netns = "none"

[network]
network_config_dir = %q

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
lock_type = "file"
tmp_dir = %q

[engine.volume_plugins]
%s = %q
`, filepath.Join(dir, "cni"), filepath.Join(dir, "tmp"), pm.driver, sock)
	storage := fmt.Sprintf("[storage]\ndriver = \"vfs\"\ngraphroot = %q\nrunroot = %q\n",
		filepath.Join(dir, "graph"), filepath.Join(dir, "run"))
	for name, content := range map[string]string{"containers.conf": conf, "storage.conf": storage} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Podman reads DOCKER_CONFIG for registry logins: the current engine's
	// leg points it at a folder without a config.json, which Podman then
	// fails to stat. Podman gets neither Docker variable.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DOCKER_CONFIG=") && !strings.HasPrefix(kv, "DOCKER_HOST=") {
			pm.env = append(pm.env, kv)
		}
	}
	pm.env = append(pm.env,
		"CONTAINERS_CONF="+filepath.Join(dir, "containers.conf"),
		"CONTAINERS_STORAGE_CONF="+filepath.Join(dir, "storage.conf"))

	var dsvEnv []string
	if service {
		api := filepath.Join(dir, "podman.sock")
		startPodmanService(t, pm, api)
		dsvEnv = append(dsvEnv, "ENGINE_SOCKET="+api)
	}
	startLegacyDsv(t, dir, sock, dsvEnv...)
	// Last in, first out: containers and volumes go while dsv still
	// serves, and nothing stays mounted under the folder.
	t.Cleanup(func() {
		if ms := mountsUnder(t, dir); len(ms) > 0 {
			t.Errorf("still mounted after the test:\n%s", strings.Join(ms, "\n"))
		}
		if err := unmountUnder(dir); err != nil {
			t.Error(err)
		}
	})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		pm.run(ctx, "rm", "-a", "-f", "-t", "0")
		pm.run(ctx, "volume", "rm", "-a", "-f")
	})

	cmd := exec.Command("test/busybox-image.sh", "--podman")
	cmd.Dir = env.repo
	cmd.Env = append(pm.env, "DSV_TEST_IMAGE="+env.image)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("test/busybox-image.sh --podman: %v\n%s", err, out)
	}
	return pm
}

// run runs podman with the test's configuration.
func (pm *podman) run(ctx context.Context, args ...string) result {
	cmd := exec.CommandContext(ctx, "podman", args...)
	cmd.Env = pm.env
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	err := cmd.Run()
	r := result{args: append([]string{"podman"}, args...), stdout: stdout.String(), stderr: stderr.String(), err: err, elapsed: time.Since(start)}
	outputs.scan(r)
	return r
}

// must runs podman and fails the test unless it succeeds; it returns stdout.
func (pm *podman) must(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	r := pm.run(ctx, args...)
	if r.err != nil {
		t.Fatalf("%v", r)
	}
	return r.stdout
}

// startLegacyDsv builds the dsv binary and runs it unmanaged, as
// `make install-legacy` does, with its socket, state, mounts and files under
// dir; it stops it when the test ends.
func startLegacyDsv(t *testing.T, dir, sock string, extraEnv ...string) {
	t.Helper()
	bin := filepath.Join(dir, "dsv")
	build := exec.Command("go", "build", "-trimpath", "-o", bin, "./cmd/dsv")
	build.Dir = env.repo
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/dsv: %v\n%s", err, out)
	}
	out := &testproc.TailBuffer{Max: 16 << 10}
	cmd := exec.Command(bin, "-socket", sock, "-state", filepath.Join(dir, "state", "state.json"),
		"-mounts", filepath.Join(dir, "mounts"), "-files", filepath.Join(dir, "files"), "-templates", filepath.Join(dir, "templates"))
	cmd.Env = append(append(os.Environ(), "LOG_LEVEL=debug"), extraEnv...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("dsv (legacy mode) exited: %v\n%s", err, out)
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("dsv (legacy mode) did not stop on SIGTERM\n%s", out)
		}
		if t.Failed() {
			t.Logf("dsv (legacy mode) output:\n%s", out)
		}
	})

	waitAnswers(t, "dsv (legacy mode)", sock, http.MethodPost, "/Plugin.Activate", 30*time.Second, exited, out)
}

// waitAnswers waits until the server on the unix socket sock answers 200
// to method path, failing the test if the process (exited) ends first.
func waitAnswers(t *testing.T, what, sock, method, path string, timeout time.Duration, exited chan error, out *testproc.TailBuffer) {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
	eventually(t, timeout, what+" answers on "+sock, func() string {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("%s exited before answering: %v\n%s", what, err, out)
		default:
		}
		req, err := http.NewRequest(method, "http://local"+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			return err.Error()
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return resp.Status
		}
		return ""
	})
}

// tmpfsAt lists the host's tmpfs mounts at path.
func tmpfsAt(t *testing.T, path string) []string {
	t.Helper()
	ms, err := hostMounts()
	if err != nil {
		t.Fatalf("read host mount table: %v", err)
	}
	var out []string
	for _, m := range ms {
		if m.mountPoint == path && m.fsType == "tmpfs" {
			out = append(out, m.line)
		}
	}
	return out
}

// mountsUnder lists the host's mounts below dir.
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	ms, err := hostMounts()
	if err != nil {
		t.Fatalf("read host mount table: %v", err)
	}
	var out []string
	for _, m := range ms {
		if strings.HasPrefix(m.mountPoint, dir+"/") {
			out = append(out, m.line)
		}
	}
	return out
}

// wantNoTmpfs waits until nothing is mounted at path.
func wantNoTmpfs(t *testing.T, path string) {
	t.Helper()
	eventually(t, 10*time.Second, "no tmpfs at "+path, func() string {
		if ms := tmpfsAt(t, path); len(ms) > 0 {
			return "mounted: " + strings.Join(ms, "\n")
		}
		return ""
	})
}

// startPodmanService runs `podman system service` on the unix socket api,
// with the test's Podman configuration, until the test ends.
func startPodmanService(t *testing.T, pm *podman, api string) {
	t.Helper()
	cmd := exec.Command("podman", "system", "service", "--time=0", "unix://"+api)
	cmd.Env = pm.env
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", api)
		},
	}}
	p, err := testproc.Start(context.Background(), cmd, testproc.Options{
		Name:       "podman system service",
		Ready:      func(ctx context.Context) error { return testproc.GetOK(ctx, client, "http://podman/_ping") },
		Timeout:    60 * time.Second,
		StopSignal: syscall.SIGTERM,
		Grace:      30 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	p.Cleanup(t)
}

// TestPodmanNotify: dsv in legacy mode with Podman's Docker-compatible API
// (`podman system service`) as its engine: a rotation signals each running
// container of the volume once, after the new value is readable, the same
// calls serving as with Docker.
func TestPodmanNotify(t *testing.T) {
	pm := newPodman(t, true)
	secret := env.name("podman-notify")
	file := filepath.Join(pm.dir, "files", secret)
	if err := os.WriteFile(file, []byte("v0"), 0o600); err != nil {
		t.Fatal(err)
	}
	vol := env.name("podman-notify")
	pm.must(t, "volume", "create", "--driver", pm.driver, "-o", "backend=file", "-o", "secret="+secret,
		"-o", "layout=dir", "-o", "filename=x", "-o", "refresh=1s", "-o", "notify=SIGHUP", vol)
	out := t.TempDir()
	var hosts []string
	for i := range 2 {
		host := fmt.Sprintf("%s-%d", vol, i)
		pm.must(t, "run", "-d", "--name", host, "--hostname", host, "--network", "none",
			"-v", out+":/out", "-v", vol+":/run/secrets", env.image, "sh", "-c", hupScript)
		eventually(t, 30*time.Second, host+"'s trap is set", func() string {
			if _, err := os.Stat(filepath.Join(out, host+".ready")); err != nil {
				return err.Error()
			}
			return ""
		})
		hosts = append(hosts, host)
	}
	values := []string{}
	for i := 1; i <= 2; i++ {
		v := fmt.Sprintf("v%d-%s", i, randomHex(4))
		values = append(values, v)
		// A new file renamed over the old, as replaceFile does in the
		// suite's own files folder.
		tmp := file + ".tmp"
		if err := os.WriteFile(tmp, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, file); err != nil {
			t.Fatal(err)
		}
		eventually(t, 30*time.Second, fmt.Sprintf("rotation %d signals both containers", i), func() string {
			for _, h := range hosts {
				if got := signalLog(t, out, h); len(got) < i {
					return fmt.Sprintf("%s recorded %q", h, got)
				}
			}
			return ""
		})
	}
	for _, h := range hosts {
		if got := signalLog(t, out, h); strings.Join(got, ",") != strings.Join(values, ",") {
			t.Errorf("%s recorded %q at its SIGHUPs, want exactly %q", h, got, values)
		}
	}
	st := pm.must(t, "volume", "inspect", "--format", "{{json .Status.lastNotification}}", vol)
	if !strings.Contains(st, `"containers":2`) || strings.Contains(st, `"failed"`) {
		t.Errorf("podman volume inspect: lastNotification %s, want 2 containers and no failure", st)
	}
}
