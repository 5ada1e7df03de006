//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// grantEngine gives the plugin the engine API for the rest of the test
// (engine.source at the socket the suite's docker talks to), and takes it
// back when the test ends.
func grantEngine(t *testing.T) {
	t.Helper()
	changePluginSettings(t, map[string]string{"engine.source": dockerSocket()})
}

// notifyFixture grants the engine for the test and returns a host folder
// for the containers' records (mounted at /out) and a file store secret
// holding v0.
func notifyFixture(t *testing.T) (out, file string) {
	t.Helper()
	grantEngine(t)
	out, file = t.TempDir(), env.name("notify/x")
	if err := env.writeFile(file, []byte("v0")); err != nil {
		t.Fatal(err)
	}
	return out, file
}

// hupScript is a container's command: at each SIGHUP it appends what
// /run/secrets/x holds then, and a line break, to /out/NAME, where NAME
// is the container's hostname; /out/NAME.ready says the trap is set.
const hupScript = `trap 'cat /run/secrets/x >> /out/$(hostname); echo >> /out/$(hostname)' HUP; ` +
	`touch /out/$(hostname).ready; while :; do sleep 1 & wait $!; done`

// signalLog reads the values a container's SIGHUP trap recorded.
func signalLog(t *testing.T, out, host string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(out, host))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// hupContainer starts a container that traps SIGHUP and waits until its
// trap is set; it returns its name and hostname.
func hupContainer(t *testing.T, sc *scope, out string, opts ...string) (name, host string) {
	t.Helper()
	name = sc.container("hup")
	host = name
	args := append([]string{"--hostname", host, "-v", out + ":/out"}, opts...)
	mustDocker(t, sc.runArgs(name, true, args, "sh", "-c", hupScript)...)
	eventually(t, 30*time.Second, name+"'s trap is set", func() string {
		if _, err := os.Stat(filepath.Join(out, host+".ready")); err != nil {
			return err.Error()
		}
		return ""
	})
	return name, host
}

// pluginLogTime finds the time and message of a plugin log line as dockerd
// writes it (the plugin's JSON, quoted, in msg).
var pluginLogTime = regexp.MustCompile(`\\"time\\":\\"([^\\"]+)\\",\\"message\\":\\"([^\\"]+)\\"`)

// swapToSignal reads from the plugin's log, for each swap of vol, the
// time from the swap to the last container signalled after it.
func swapToSignal(t *testing.T, vol string, logStart int64) latencies {
	t.Helper()
	var out latencies
	var swap, last time.Time
	flush := func() {
		if !swap.IsZero() && !last.IsZero() {
			out = append(out, last.Sub(swap))
		}
	}
	for _, l := range strings.Split(logLinesSince(env.daemon.logPath, logStart, `\"volume\":\"`+vol+`\"`), "\n") {
		m := pluginLogTime.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, m[1])
		if err != nil {
			continue
		}
		switch m[2] {
		case "content changed; swapped atomically":
			flush()
			swap, last = at, time.Time{}
		case "container signalled":
			if at.After(last) {
				last = at
			}
		}
	}
	flush()
	return out
}

// TestNotifyNeedsEngine: without the engine mount, a volume that asks for
// notify is refused at create, naming the setting that grants it.
func TestNotifyNeedsEngine(t *testing.T) {
	if src := pluginSettings(t)["engine.source"]; src != "/dev/null" {
		t.Fatalf("engine.source = %q, want config.json's default /dev/null", src)
	}
	sc := newScope(t)
	name := sc.volume("nogrant")
	r := dockerFails(t, "volume", "create", "-d", env.plugin, "-o", "notify=SIGHUP", "-o", "layout=dir", name)
	wantContains(t, "docker volume create's error", r.stderr, name, `option "notify"`, "engine.source=/var/run/docker.sock")
	if volumeExists(t, name) {
		t.Errorf("volume %s exists after a refused create", name)
	}
}

// TestNotifySignal: 20 containers trap SIGHUP on one volume with
// refresh=1s. Each rotation reaches each container as exactly one signal,
// sent once the new value is readable (the trap reads it); refreshes
// without a change send none; no container restarts; a container started
// between two rotations gets only the later ones.
func TestNotifySignal(t *testing.T) {
	out, file := notifyFixture(t)
	sc := newScope(t)
	vol := sc.createVolume("notify", "secret="+file, "layout=dir", "filename=x", "refresh=1s", "notify=SIGHUP")
	const n = 20
	type ctr struct{ name, host, started string }
	ctrs := make([]ctr, n)
	var wg sync.WaitGroup
	for i := range ctrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctrs[i].name, ctrs[i].host = hupContainer(t, sc, out, "-v", vol+":/run/secrets")
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	startedAt := func(c string) string {
		return strings.TrimSpace(mustDocker(t, "inspect", "--format", "{{.RestartCount}} {{.State.StartedAt}} {{.State.Pid}}", c))
	}
	for i := range ctrs {
		ctrs[i].started = startedAt(ctrs[i].name)
	}
	st := inspectVolume(t, vol).Status
	if st["notify"] != "SIGHUP" {
		t.Errorf("Status.notify = %v, want SIGHUP (Status %v)", st["notify"], st)
	}

	const rotations = 5
	logStart := logSize(env.daemon.logPath)
	var late ctr
	values := []string{}
	for i := 1; i <= rotations; i++ {
		v := fmt.Sprintf("v%d-%s", i, randomHex(4))
		values = append(values, v)
		if err := replaceFile(file, []byte(v)); err != nil {
			t.Fatal(err)
		}
		eventually(t, 20*time.Second, fmt.Sprintf("rotation %d signals every container once", i), func() string {
			for _, c := range ctrs {
				if got := signalLog(t, out, c.host); len(got) < i {
					return fmt.Sprintf("%s recorded %q", c.name, got)
				}
			}
			return ""
		})
		if i == 2 {
			// Another user than the plugin's: the direct signal needs
			// CAP_KILL (config.json) to reach it.
			if err := os.Chmod(out, 0o777); err != nil {
				t.Fatal(err)
			}
			late.name, late.host = hupContainer(t, sc, out, "--user", "65534:65534", "-v", vol+":/run/secrets")
		}
	}
	// Fifty refreshes that find nothing new: every second, so 50 distinct
	// fetchedAt seconds, then nothing more may have arrived.
	seen := map[any]bool{}
	eventually(t, 120*time.Second, "50 refreshes without a change", func() string {
		seen[inspectVolume(t, vol).Status["fetchedAt"]] = true
		if len(seen) < 50 {
			return fmt.Sprintf("%d refreshes seen", len(seen))
		}
		return ""
	})
	for _, c := range ctrs {
		if got := signalLog(t, out, c.host); !slices.Equal(got, values) {
			t.Errorf("%s recorded %q at its SIGHUPs, want exactly the %d rotated values %q", c.name, got, rotations, values)
		}
		if now := startedAt(c.name); now != c.started {
			t.Errorf("%s restarted: restart count, start time and pid were %q, now %q", c.name, c.started, now)
		}
	}
	if got := signalLog(t, out, late.host); !slices.Equal(got, values[2:]) {
		t.Errorf("the container started after rotation 2 recorded %q, want only the later rotations %q", got, values[2:])
	}
	// Each signal went straight to the container's process (a pidfd),
	// not through dockerd's kill, which answers one at a time.
	signalled := 0
	for _, l := range strings.Split(logLinesSince(env.daemon.logPath, logStart, `\"volume\":\"`+vol+`\"`), "\n") {
		if !strings.Contains(l, "container signalled") {
			continue
		}
		signalled++
		if !strings.Contains(l, `\"via\":\"pidfd\"`) {
			t.Errorf("a signal went another way than a pidfd: %s", l)
		}
	}
	if want := n*rotations + rotations - 2; signalled != want {
		t.Errorf("the plugin's log shows %d containers signalled, want %d", signalled, want)
	}
	if lats := swapToSignal(t, vol, logStart); len(lats) != rotations {
		t.Errorf("the plugin's log shows %d swaps followed by signals, want %d", len(lats), rotations)
	} else {
		t.Logf("bench: swap to the last of %d-%d containers signalled: median %s, max %s (%v)", n, n+1, lats.median().Round(time.Millisecond), slices.Max(lats).Round(time.Millisecond), lats)
	}
	st = inspectVolume(t, vol).Status
	t.Logf("Status after %d rotations: %v", rotations, st)
	ln, _ := st["lastNotification"].(map[string]any)
	if ln["containers"] != float64(n+1) || ln["failed"] != nil || ln["at"] == nil {
		t.Errorf("Status.lastNotification = %v, want %d containers, no failure", st["lastNotification"], n+1)
	}
}

// TestNotifyExec: notify=exec: runs the command in each container after
// the swap; one container where it fails is reported (lastNotification
// and the log) and the others still get theirs. A container that mounts
// the volume through --volumes-from is notified too.
func TestNotifyExec(t *testing.T) {
	out, file := notifyFixture(t)
	sc := newScope(t)
	// The command records what it read, and fails where /tmp/fail exists.
	vol := sc.createVolume("nexec", "secret="+file, "layout=dir", "filename=x", "refresh=1s",
		`notify=exec:sh -c 'cat /run/secrets/x >> /out/$(hostname) && ! test -e /tmp/fail'`)
	var hosts []string
	var names []string
	for i := range 3 {
		name := sc.container("nexec")
		host := name
		mustDocker(t, sc.runArgs(name, true, []string{"--hostname", host, "-v", out + ":/out", "-v", vol + ":/run/secrets"}, "sleep", "300")...)
		if i == 2 {
			mustDocker(t, "exec", name, "touch", "/tmp/fail")
		}
		hosts, names = append(hosts, host), append(names, name)
	}
	// A container with the volume (and /out) only through --volumes-from.
	from := sc.container("nexec-from")
	fromHost := from
	mustDocker(t, sc.runArgs(from, true, []string{"--hostname", fromHost, "--volumes-from", names[0]}, "sleep", "300")...)
	hosts = append(hosts, fromHost)

	if err := replaceFile(file, []byte("v1")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the command ran in every container", func() string {
		for _, h := range hosts {
			if b, _ := os.ReadFile(filepath.Join(out, h)); string(b) != "v1" {
				return fmt.Sprintf("%s recorded %q", h, b)
			}
		}
		return ""
	})
	var st map[string]any
	eventually(t, 10*time.Second, "lastNotification reports the failure", func() string {
		st = inspectVolume(t, vol).Status
		if ln, _ := st["lastNotification"].(map[string]any); ln["failed"] != float64(1) {
			return fmt.Sprintf("Status = %v", st)
		}
		return ""
	})
	ln := st["lastNotification"].(map[string]any)
	if ln["containers"] != float64(4) {
		t.Errorf("lastNotification = %v, want 4 containers (3 with -v, 1 with --volumes-from)", ln)
	}
	errs := fmt.Sprint(ln["errors"])
	wantContains(t, "lastNotification.errors", errs, names[2], "sh exited with status 1")
	t.Logf("Status: %v", st)
}

// TestNotifySwarm: the tasks of a Swarm service that mount a volume with
// notify get the signal after a swap, as other containers do.
func TestNotifySwarm(t *testing.T) {
	out, file := notifyFixture(t)
	sw := joinSwarm(t)
	vol := sw.volume("nswarm")
	mount := "type=volume,volume-driver=" + env.plugin + ",source=" + vol + ",target=/run/secrets," +
		"volume-opt=secret=" + file + ",volume-opt=layout=dir,volume-opt=filename=x,volume-opt=refresh=1s,volume-opt=notify=SIGHUP"
	svc := sw.service("nswarm", []string{"--mount", mount, "--mount", "type=bind,source=" + out + ",target=/out", "--hostname", "task-{{.Task.Slot}}"},
		"sh", "-c", hupScript)
	wantRunning(t, svc, 1)
	eventually(t, swarmTaskTimeout, "the task's trap is set", func() string {
		if _, err := os.Stat(filepath.Join(out, "task-1.ready")); err != nil {
			return err.Error()
		}
		return ""
	})
	if err := replaceFile(file, []byte("v1")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the task got SIGHUP after the swap", func() string {
		if got := signalLog(t, out, "task-1"); !slices.Equal(got, []string{"v1"}) {
			return fmt.Sprintf("task recorded %q; volume Status %v", got, inspectVolume(t, vol).Status)
		}
		return ""
	})
}
