//go:build e2e

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dsv-plugin/dsv/test/fakes/faultproxy"
)

// wantNoMountIDs checks that the plugin's state file holds no mount id for
// vol: a failed mount must not be remembered as one.
func wantNoMountIDs(t testing.TB, vol string) {
	t.Helper()
	state := env.stateFile()
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

// TestTmpfsCap: secrets over a volume's budget (2 MiB, about 500 files)
// fail the mount with a clear error and leave nothing behind; a volume near
// the budget refreshes.
func TestTmpfsCap(t *testing.T) {
	sc := newScope(t)
	// Three files of 900 KiB each (the file store reads at most 1 MiB per
	// object): 2.7 MiB for a 2 MiB tmpfs.
	var opts, names []string
	for i := range 3 {
		name := env.name(fmt.Sprintf("big%d", i))
		names = append(names, name)
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

	// Within the cap, the same volume options work, and a refresh of the
	// 1.8 MiB volume finds room for the new version beside the old.
	ok := sc.createVolume("fits", opts[0], opts[1], "refresh=1s")
	c := sc.start("fits", "-v", ok+":/run/secrets")
	if out := mustDocker(t, "exec", c, "sh", "-c", "wc -c /run/secrets/part0 /run/secrets/part1 | tail -1"); !strings.Contains(out, strconv.Itoa(2*900<<10)) {
		t.Fatalf("want two 900 KiB files, wc says %q", out)
	}
	if err := env.writeFile(names[0], bytes.Repeat([]byte{'z'}, 900<<10)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the refreshed 900 KiB file in the container", func() string {
		if out := mustDocker(t, "exec", c, "head", "-c", "1", "/run/secrets/part0"); out != "z" {
			return fmt.Sprintf("part0 starts with %q; volume Status %v", out, inspectVolume(t, ok).Status)
		}
		return ""
	})
}

// pluginPid finds the plugin's process: /dsv in the plugin's cgroup; when
// the plugin runs emulated (DSV_E2E_ARCH), the interpreter binfmt_misc
// started for /dsv, whose command line is "INTERPRETER /dsv /dsv".
func pluginPid(t testing.TB) int {
	t.Helper()
	prefix := []byte("/dsv\x00")
	emulated := env.arch != runtime.GOARCH
	var found []int
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if _, rest, ok := bytes.Cut(cmd, []byte{0}); emulated && ok {
			cmd = rest
		}
		if !bytes.HasPrefix(cmd, prefix) {
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

// killPlugin kills the plugin's process with SIGKILL, runs whileDown (if
// any) at once, and waits until Docker has started the plugin again and it
// answers for vol.
func killPlugin(t *testing.T, vol string, whileDown func()) {
	t.Helper()
	pid := pluginPid(t)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 %d: %v", pid, err)
	}
	killed := time.Now()
	if whileDown != nil {
		whileDown()
	}
	// Docker restarts a plugin that exits on its own.
	var newPid int
	eventually(t, 30*time.Second, "the plugin runs again", func() string {
		r := docker(t, "volume", "inspect", vol)
		if r.err != nil {
			return r.String()
		}
		newPid = pluginPid(t)
		if newPid == pid {
			return "still the killed process"
		}
		return ""
	})
	t.Logf("killed plugin process %d; process %d answers %s later", pid, newPid, time.Since(killed).Round(time.Millisecond))
}

// TestPluginKilled: the plugin process dies by SIGKILL while containers use
// its volumes. Running containers keep their files; Docker starts the
// plugin again, and every volume mounts, unmounts and is removed without
// "found references to volume" errors.
func TestPluginKilled(t *testing.T) {
	sc := newScope(t)
	sc.onCleanup(ensurePluginEnabled)
	f := newRestartFixture(t, sc, "killed")
	logStart := logSize(env.daemon.logPath)
	killPlugin(t, f.vols[1], func() { wantExecCanary(t, f.running) })
	t.Logf("log since the kill:\n%s", logLinesSince(env.daemon.logPath, logStart, "plugin="+env.pluginID[:12]))
	wantExecCanary(t, f.running)
	f.afterRestart(t, sc)
	if l := logLinesSince(env.daemon.logPath, logStart, "found references to volume"); l != "" {
		t.Errorf("dockerd logged:\n%s", l)
	}
}

// faultTarget is a backend the fault tests put a faultproxy in front of.
type faultTarget struct {
	backend string
	// setUp starts what the backend needs, and returns the backend's URL
	// and the plugin setting that points the plugin at it.
	setUp func(t *testing.T) (url, setting string)
	// put stores a fresh secret and returns the volume options that read it.
	put func(t *testing.T, name, value string) []string
	// faults are the backend's own error answers, with what the error of
	// a failed mount must then say.
	faults []answerFault
}

type answerFault struct {
	name   string
	answer faultproxy.Answer
	want   string
}

// faultTargets are moto and a Vault dev server.
func faultTargets() []faultTarget {
	var vault *vaultFixture
	return []faultTarget{{
		backend: "aws",
		setUp:   func(*testing.T) (string, string) { return env.moto.URL, "AWS_ENDPOINT_URL" },
		put: func(t *testing.T, name, value string) []string {
			createSecret(t, name, value)
			return []string{"backend=aws", "secret=" + name}
		},
		faults: []answerFault{{name: "throttled", answer: faultproxy.AWSThrottling(), want: "throttled"}},
	}, {
		backend: "vault",
		setUp: func(t *testing.T) (string, string) {
			vault = newVaultFixture(t)
			return vault.vault.Addr, "VAULT_ADDR"
		},
		put: func(t *testing.T, name, value string) []string {
			vault.vault.PutKV2(t, "secret", "app/"+name, map[string]any{"value": value})
			return []string{"backend=vault", "secret=secret/app/" + name, "key=value"}
		},
		faults: []answerFault{
			{name: "rate limited", answer: faultproxy.VaultRateLimited(), want: "rate limiting"},
			{name: "sealed", answer: faultproxy.VaultSealed(), want: "sealed"},
		},
	}}
}

// TestBackendFaults puts a fault-injecting proxy between the plugin and
// each backend and takes the backend down, slows it past TIMEOUT, and makes
// it answer errors. Each time a new `docker run` fails within TIMEOUT with
// an error naming the volume, the backend and the object, leaving no tmpfs
// and no mount id; a container already running keeps the content it has
// while its refreshes fail; once the backend is back, the same docker run
// succeeds.
func TestBackendFaults(t *testing.T) {
	for _, target := range faultTargets() {
		t.Run(target.backend, func(t *testing.T) {
			backendURL, setting := target.setUp(t)
			proxy, err := faultproxy.Start(backendURL)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = proxy.Close() })
			changePluginSettings(t, map[string]string{setting: proxy.URL()})
			sc := newScope(t)

			// A container that holds a refreshed volume through every fault.
			liveName, liveValue := env.name("fault-live"), "live-"+randomHex(6)
			live := sc.createVolume("fault-live", append(target.put(t, liveName, liveValue), "layout=dir", "filename=s", "refresh=1s")...)
			running := sc.start("fault-live", "-v", live+":/run/secrets")
			if got := readInContainer(t, running, "/run/secrets/s"); got != liveValue {
				t.Fatalf("the running container reads %q, want %q", got, liveValue)
			}

			type fault struct {
				name string
				set  func() error
				want string
			}
			faults := []fault{
				{name: "down", set: proxy.Refuse, want: "backend unreachable"},
				{name: "slow", set: func() error { return proxy.Delay(2 * backendTimeout) }, want: "timed out"},
			}
			for _, a := range target.faults {
				faults = append(faults, fault{name: a.name, set: func() error { return proxy.Respond(a.answer) }, want: a.want})
			}
			for _, f := range faults {
				t.Run(f.name, func(t *testing.T) {
					name, value := env.name("fault"), "value-"+randomHex(6)
					vol := sc.createVolume("fault", target.put(t, name, value)...)
					if err := f.set(); err != nil {
						t.Fatal(err)
					}
					restored := false
					restore := func() {
						if !restored {
							restored = true
							if err := proxy.Pass(); err != nil {
								t.Fatal(err)
							}
						}
					}
					defer restore()

					r := sc.runFail([]string{"-v", vol + ":/run/secrets/s"}, "cat", "/run/secrets/s")
					wantContains(t, "docker run's error", r.stderr, vol, target.backend+" secret", name, f.want)
					t.Logf("docker run failed after %s: %s", r.elapsed.Round(time.Millisecond), strings.TrimSpace(r.stderr))
					// docker run adds its own work to the plugin's TIMEOUT.
					if limit := backendTimeout + 10*time.Second; r.elapsed > limit {
						t.Errorf("docker run failed after %s, want within TIMEOUT (%s) plus docker's own time, %s", r.elapsed.Round(time.Millisecond), backendTimeout, limit)
					}
					wantNoHostMount(t, vol)
					wantMounts(t, vol, 0)
					wantNoMountIDs(t, vol)

					// The running container keeps its content; its refreshes
					// fail and say so.
					eventually(t, 3*backendTimeout+5*time.Second, "a refresh of "+live+" fails", func() string {
						if st := inspectVolume(t, live).Status; st["lastError"] == nil {
							return fmt.Sprintf("Status = %v", st)
						}
						return ""
					})
					if got := readInContainer(t, running, "/run/secrets/s"); got != liveValue {
						t.Fatalf("during the fault the running container reads %q, want its last good value %q", got, liveValue)
					}

					restore()
					if got := sc.mustRun([]string{"-v", vol + ":/run/secrets/s"}, "cat", "/run/secrets/s"); got != value {
						t.Fatalf("with the backend back, the container reads %q, want %q", got, value)
					}
					eventually(t, 3*backendTimeout+5*time.Second, "the refresh error of "+live+" cleared", func() string {
						if st := inspectVolume(t, live).Status; st["lastError"] != nil {
							return fmt.Sprintf("Status = %v", st)
						}
						return ""
					})
				})
			}
		})
	}
}
