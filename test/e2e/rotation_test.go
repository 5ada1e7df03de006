//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dsv-plugin/dsv/test/tools/torn"
)

// Bounds of a rotation, from the new value being stored in the backend to a
// container seeing it.
const (
	// rotationRefresh is the refresh option of the rotated volumes.
	rotationRefresh = time.Second
	// swapAllowance is what the plugin may take beyond the interval: one
	// backend read (moto or the file store) and the ..data swap.
	swapAllowance = time.Second
	// execAllowance covers the observation itself: the test sees the new
	// value at the end of the `docker exec cat` that read it, and one exec
	// starts a process in the container: about 60 ms on an idle 2-core
	// host, a few hundred while other containers start.
	execAllowance = 500 * time.Millisecond
	// rotations per backend in TestRefreshRotation.
	rotations = 3
)

// TestRefreshRotation rotates a secret under a running container, in moto
// (PutSecretValue) and in the file store (the file rewritten), and checks
// that the container sees each new value within the refresh interval plus
// the allowances above, and what docker volume inspect says about it.
func TestRefreshRotation(t *testing.T) {
	backends := []struct {
		name string
		// create stores the first value and returns the volume options
		// that read it and a function that rotates it.
		create func(t *testing.T, value string) (opts []string, rotate func(value string))
	}{
		{
			name: "aws",
			create: func(t *testing.T, value string) ([]string, func(string)) {
				secret := env.name("rot/x")
				createSecret(t, secret, value)
				return []string{"backend=aws", "secret=" + secret}, func(v string) { putSecretValue(t, secret, v) }
			},
		},
		{
			name: "file",
			create: func(t *testing.T, value string) ([]string, func(string)) {
				file := env.name("rot/x")
				if err := env.writeFile(file, []byte(value)); err != nil {
					t.Fatal(err)
				}
				return []string{"backend=file", "secret=" + file}, func(v string) {
					if err := replaceFile(file, []byte(v)); err != nil {
						t.Fatal(err)
					}
				}
			},
		},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			sc := newScope(t)
			first := "first-" + randomHex(6)
			opts, rotate := b.create(t, first)
			opts = append(opts, "layout=dir", "filename=x", "refresh="+rotationRefresh.String())
			vol := sc.createVolume("rot-"+b.name, opts...)
			c := sc.start("rot-"+b.name, "-v", vol+":/run/secrets")
			if got := mustDocker(t, "exec", c, "cat", "/run/secrets/x"); got != first {
				t.Fatalf("before any rotation the container reads %q, want %q", got, first)
			}
			st := inspectVolume(t, vol).Status
			if st["refresh"] != rotationRefresh.String() {
				t.Errorf("Status.refresh = %v, want %s (Status %v)", st["refresh"], rotationRefresh, st)
			}
			firstVersion := st["version"]

			bound := rotationRefresh + swapAllowance + execAllowance
			var lats, execs latencies
			for i := 1; i <= rotations; i++ {
				want := fmt.Sprintf("rotated-%d-%s", i, randomHex(6))
				start := time.Now()
				rotate(want)
				lat, polls, exec := waitForValue(t, c, "/run/secrets/x", want, start, 10*time.Second)
				t.Logf("rotation %d: the container read the new value %s after the backend got it (%d docker exec polls of about %s each)",
					i, lat.Round(time.Millisecond), polls, exec.Round(time.Millisecond))
				lats, execs = append(lats, lat), append(execs, exec)
				if lat > bound {
					t.Errorf("rotation %d took %s to reach the container, want at most %s (refresh %s + %s for the read and swap + %s for docker exec)",
						i, lat.Round(time.Millisecond), bound, rotationRefresh, swapAllowance, execAllowance)
				}
			}
			t.Logf("%s rotation latency with refresh=%s over %d rotations: median %s, max %s (docker exec round trip median %s)",
				b.name, rotationRefresh, rotations, lats.median().Round(time.Millisecond), slices.Max(lats).Round(time.Millisecond), execs.median().Round(time.Millisecond))

			st = inspectVolume(t, vol).Status
			t.Logf("Status after the rotations: %v", st)
			if st["version"] == firstVersion || st["version"] == nil {
				t.Errorf("Status.version = %v after %d rotations, the same as at mount (%v)", st["version"], rotations, firstVersion)
			}
			if changed, _ := st["changedAt"].(string); changed == "" {
				t.Errorf("Status.changedAt is empty after rotations (Status %v)", st)
			}
			if st["lastError"] != nil {
				t.Errorf("Status.lastError = %v after successful refreshes", st["lastError"])
			}
		})
	}
}

// replaceFile rewrites a file store secret the way an editor or a
// deployment tool does: a new file renamed over the old one, so the plugin
// never reads a half-written value.
func replaceFile(name string, value []byte) error {
	p := filepath.Join(env.filesDir, filepath.FromSlash(name))
	tmp := filepath.Join(filepath.Dir(p), ".tmp-"+randomHex(4))
	if err := os.WriteFile(tmp, value, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

// waitForValue runs `docker exec CONTAINER cat PATH` until it prints want.
// It returns the time from since (when the value was about to be stored)
// to the end of the exec that saw it, the number of execs and their median
// duration.
func waitForValue(t *testing.T, container, path, want string, since time.Time, timeout time.Duration) (time.Duration, int, time.Duration) {
	t.Helper()
	var execs latencies
	var last result
	for time.Since(since) < timeout {
		last = docker(t, "exec", container, "cat", path)
		execs = append(execs, last.elapsed)
		if last.err == nil && last.stdout == want {
			return time.Since(since), len(execs), execs.median()
		}
	}
	t.Fatalf("%s in %s still does not hold the rotated value after %s; last read: %v", path, container, timeout, last)
	return 0, 0, 0
}

// latencies are measured durations.
type latencies []time.Duration

func (d latencies) median() time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// Torn-read test parameters.
const (
	tornVersions = 100                    // rotations of the secret
	tornPace     = 500 * time.Millisecond // between rotations: faster than the refresh
	// Floors on what the reader must have done for the check to mean
	// anything: observed versions (about one per refresh while rotating
	// for ~60 s) and consistent reads (a busybox loop manages hundreds per
	// second; 48,000 in 50 s on an idle 2-core host).
	tornMinVersions = 30
	tornMinReads    = 5000
)

// TestRefreshNoTornReads rotates a key=* volume 100 times, faster than its
// refresh, while a reader in the container checks that every set of files
// it reads through one ..data target is of one version: the files a and b
// are equal and match the checksum in sum.
func TestRefreshNoTornReads(t *testing.T) {
	sc := newScope(t)
	secret := env.name("torn")
	createSecret(t, secret, torn.Secret(env.runID, 0))
	vol := sc.createVolume("torn", "backend=aws", "secret="+secret, "key=*", "refresh="+rotationRefresh.String())
	name := sc.container("torn-reader")
	mustDocker(t, sc.runArgs(name, true, []string{"-v", vol + ":/run/secrets"}, "sh", "-c", torn.Reader)...)

	start := time.Now()
	for n := 1; n <= tornVersions; n++ {
		putSecretValue(t, secret, torn.Secret(env.runID, n))
		time.Sleep(tornPace)
	}
	rotating := time.Since(start)
	// The last version must arrive too; then the reader stops.
	_, _, _ = waitForValue(t, name, "/run/secrets/sum", torn.SumOf(env.runID, tornVersions), time.Now(), 10*time.Second)
	ls := mustDocker(t, "exec", name, "ls", "-A", "/run/secrets")
	// The reader ends as soon as /tmp/stop exists, and the container with
	// it: docker exec may then report its touch killed (137) although the
	// file was made. The reader's exit status says whether it was.
	stop := docker(t, "exec", name, "touch", "/tmp/stop")
	if code := strings.TrimSpace(mustDocker(t, "wait", name)); code != "0" {
		t.Fatalf("the reader exited %s after %v", code, stop)
	}
	out := mustDocker(t, "logs", name)
	t.Logf("reader, after %d rotations in %s with refresh=%s: %s", tornVersions, rotating.Round(time.Millisecond), rotationRefresh, strings.TrimSpace(out))

	counts, err := torn.Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	if counts.Torn != 0 || counts.BadSum != 0 {
		t.Errorf("torn reads through one ..data target: %d with a != b, %d with a checksum mismatch, of %d reads", counts.Torn, counts.BadSum, counts.Reads)
	}
	if counts.Backwards != 0 {
		t.Errorf("the reader saw an older version after a newer one %d times", counts.Backwards)
	}
	if counts.Reads < tornMinReads {
		t.Errorf("the reader made %d consistent reads, want at least %d for the check to mean something", counts.Reads, tornMinReads)
	}
	if counts.Versions < tornMinVersions {
		t.Errorf("the reader saw %d distinct versions, want at least %d (the refresh is %s, rotations every %s)", counts.Versions, tornMinVersions, rotationRefresh, tornPace)
	}
	if counts.Last != tornVersions {
		t.Errorf("the reader's last version is %d, want %d", counts.Last, tornVersions)
	}
	// Old payload directories go with each swap: exactly one is left.
	var payloads []string
	for _, e := range strings.Fields(ls) {
		if strings.HasPrefix(e, "..") && e != "..data" {
			payloads = append(payloads, e)
		}
	}
	if len(payloads) != 1 || !strings.Contains("\n"+ls, "\na\n") || !strings.Contains(ls, "\nsum") {
		t.Errorf("ls -A of the volume after %d swaps = %q, want ..data, one payload directory, a, b and sum", tornVersions, ls)
	}
	if st := inspectVolume(t, vol).Status; st["lastError"] != nil {
		t.Errorf("Status.lastError = %v", st["lastError"])
	}
}

// TestRefreshOptions: a layout=file volume refuses the refresh option at
// create, and under a plugin-wide REFRESH its Status says refresh is off
// and why.
func TestRefreshOptions(t *testing.T) {
	t.Run("layout=file refuses refresh", func(t *testing.T) {
		for _, opts := range [][]string{{"refresh=5s"}, {"refresh=5s", "layout=file"}} {
			sc := newScope(t)
			file := env.name("norefresh")
			if err := env.writeFile(file, []byte("x")); err != nil {
				t.Fatal(err)
			}
			vol := sc.volume("norefresh")
			args := []string{"volume", "create", "-d", env.plugin, "-o", "secret=" + file}
			for _, o := range opts {
				args = append(args, "-o", o)
			}
			r := dockerFails(t, append(args, vol)...)
			t.Logf("%v: %s", opts, r.stderr)
			wantContains(t, "docker volume create's error", r.stderr, `volume "`+vol+`"`, `option "refresh"`, "use layout=dir")
			if volumeExists(t, vol) {
				t.Errorf("volume %s exists after a failed create", vol)
			}
		}
	})

	t.Run("refresh below the minimum", func(t *testing.T) {
		sc := newScope(t)
		vol := sc.volume("fastrefresh")
		r := dockerFails(t, "volume", "create", "-d", env.plugin, "-o", "secret=x", "-o", "layout=dir", "-o", "refresh=500ms", vol)
		wantContains(t, "docker volume create's error", r.stderr, `option "refresh"`, "500ms", "minimum of 1s")
	})

	t.Run("plugin-wide REFRESH", func(t *testing.T) {
		changePluginSettings(t, map[string]string{"REFRESH": "1m"})
		sc := newScope(t)
		file := env.name("pluginrefresh")
		want := "plugin-refresh-" + randomHex(4)
		if err := env.writeFile(file, []byte(want)); err != nil {
			t.Fatal(err)
		}
		fileVol := sc.createVolume("refresh-file", "secret="+file)
		dirVol := sc.createVolume("refresh-dir", "secret="+file, "layout=dir")
		offVol := sc.createVolume("refresh-off", "secret="+file, "layout=dir", "refresh=0")

		st := inspectVolume(t, fileVol).Status
		t.Logf("layout=file volume under REFRESH=1m: Status.refresh = %q", st["refresh"])
		if s, _ := st["refresh"].(string); !strings.HasPrefix(s, "off") || !strings.Contains(s, "layout=dir") {
			t.Errorf("Status.refresh of a layout=file volume under REFRESH=1m = %v, want it to say off and to use layout=dir", st["refresh"])
		}
		if st := inspectVolume(t, dirVol).Status; st["refresh"] != "1m0s" {
			t.Errorf("Status.refresh of a layout=dir volume under REFRESH=1m = %v, want 1m0s", st["refresh"])
		}
		if st := inspectVolume(t, offVol).Status; st["refresh"] != nil {
			t.Errorf("Status.refresh of a volume with refresh=0 = %v, want none (the option wins over REFRESH)", st["refresh"])
		}
		// The file volume still mounts: the setting is not an error for it.
		if got := sc.mustRun([]string{"-v", fileVol + ":/run/secrets/s"}, "cat", "/run/secrets/s"); got != want {
			t.Errorf("cat = %q, want %q", got, want)
		}
	})
}
