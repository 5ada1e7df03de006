//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestConcurrentRuns starts 50 containers at once: 25 share one volume, 25
// use a volume each. Every one must read its secret; afterwards no tmpfs is
// left.
func TestConcurrentRuns(t *testing.T) {
	sc := newScope(t)
	const n = 50
	shared := env.name("burst-shared")
	sharedValue := "shared-" + randomHex(4)
	if err := env.writeFile(shared, []byte(sharedValue)); err != nil {
		t.Fatal(err)
	}
	sharedVol := sc.createVolume("burst-shared", "secret="+shared)
	type job struct{ vol, want string }
	jobs := make([]job, 0, n)
	for i := range n {
		if i%2 == 0 {
			jobs = append(jobs, job{vol: sharedVol, want: sharedValue})
			continue
		}
		name, value := env.name("burst"), fmt.Sprintf("own-%d-%s", i, randomHex(3))
		if err := env.writeFile(name, []byte(value)); err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, job{vol: sc.createVolume("burst", "secret="+name), want: value})
	}
	names := make([]string, n)
	for i := range names {
		names[i] = sc.container("burst")
	}

	var wg sync.WaitGroup
	results := make([]result, n)
	start := time.Now()
	for i, j := range jobs {
		wg.Go(func() {
			results[i] = docker(t, sc.runArgs(names[i], false, []string{"-v", j.vol + ":/run/secrets/s"}, "cat", "/run/secrets/s")...)
		})
	}
	wg.Wait()
	t.Logf("%d concurrent docker run finished in %s", n, time.Since(start).Round(time.Millisecond))
	failed := 0
	for i, r := range results {
		if r.err != nil || r.stdout != jobs[i].want {
			failed++
			t.Errorf("container %d on %s: want %q, got %v", i, jobs[i].vol, jobs[i].want, r)
		}
	}
	if failed > 0 {
		t.Fatalf("%d of %d concurrent runs failed", failed, n)
	}
	wantMounts(t, sharedVol, 0)
	for _, j := range jobs {
		wantNoHostMount(t, j.vol)
	}
}

// pluginClient speaks the volume plugin protocol to the plugin's socket, as
// dockerd does, one connection per call.
type pluginClient struct {
	http *http.Client
}

func newPluginClient(t testing.TB) *pluginClient {
	t.Helper()
	// dockerd keeps managed plugins' sockets in /run/docker/plugins/ID on
	// Linux, whatever its --exec-root (Engine 20.10 and 29 alike).
	sock := filepath.Join("/run/docker/plugins", env.pluginID, "dsv.sock")
	if _, err := os.Stat(sock); err != nil {
		t.Fatalf("the plugin's socket: %v", err)
	}
	c := unixClient(sock)
	c.Transport.(*http.Transport).DisableKeepAlives = true
	return &pluginClient{http: c}
}

// unixClient is an HTTP client whose every request goes to the unix socket
// sock, under Docker's own deadline for a plugin call.
func unixClient(sock string) *http.Client {
	return &http.Client{
		Timeout: dockerTimeout,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}},
	}
}

// call posts req to /VolumeDriver.<method> and fails on an error answer.
func (c *pluginClient) call(t testing.TB, method string, req any) {
	t.Helper()
	body, _ := json.Marshal(req)
	resp, err := c.http.Post("http://plugin/VolumeDriver."+method, "application/vnd.docker.plugins.v1.2+json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	defer resp.Body.Close()
	var out struct{ Err string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("%s: decode the answer: %v", method, err)
	}
	if out.Err != "" {
		t.Fatalf("%s %s: %s", method, body, out.Err)
	}
}

// procCount counts the entries of /proc/PID/<dir>.
func procCount(t testing.TB, pid int, dir string) int {
	t.Helper()
	es, err := os.ReadDir(fmt.Sprintf("/proc/%d/%s", pid, dir))
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}

// procStatus reads one field of /proc/PID/status.
func procStatus(t testing.TB, pid int, field string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// TestMountCyclesLeak mounts and unmounts two volumes 1,000 times through
// the plugin's socket, as dockerd would: afterwards the host's mount table
// and the plugin's open file descriptors are back to their baseline.
func TestMountCyclesLeak(t *testing.T) {
	sc := newScope(t)
	file := env.name("cycles")
	if err := env.writeFile(file, []byte(`{"user":"u","password":"p"}`)); err != nil {
		t.Fatal(err)
	}
	fileVol := sc.createVolume("cycles-file", "secret="+file)
	dirVol := sc.createVolume("cycles-dir", "secret="+file, "key=*", "refresh=1s")
	c := newPluginClient(t)
	pid := pluginPid(t)
	cycle := func(i int) {
		id := fmt.Sprintf("%064x", i+1<<40)
		c.call(t, "Mount", map[string]string{"Name": fileVol, "ID": id})
		c.call(t, "Mount", map[string]string{"Name": dirVol, "ID": id})
		c.call(t, "Unmount", map[string]string{"Name": dirVol, "ID": id})
		c.call(t, "Unmount", map[string]string{"Name": fileVol, "ID": id})
	}
	cycle(-1) // warm up
	hostMounts := func() int { return len(volumeHostMounts(t, fileVol)) + len(volumeHostMounts(t, dirVol)) }
	fds, threads, rss := procCount(t, pid, "fd"), procCount(t, pid, "task"), procStatus(t, pid, "VmRSS")

	const cycles = 1000
	start := time.Now()
	for i := range cycles {
		cycle(i)
	}
	elapsed := time.Since(start)
	if n := hostMounts(); n != 0 {
		t.Errorf("after %d cycles, %d tmpfs mounts of the two volumes remain on the host", cycles, n)
	}
	var after int
	eventually(t, 5*time.Second, "the plugin's open fds back to the baseline", func() string {
		if after = procCount(t, pid, "fd"); after > fds {
			return fmt.Sprintf("%d open fds, %d before", after, fds)
		}
		return ""
	})
	if p := pluginPid(t); p != pid {
		t.Fatalf("the plugin restarted during the cycles (pid %d, then %d)", pid, p)
	}
	t.Logf("%d cycles (4 calls each) in %s: plugin fds %d -> %d, threads %d -> %d, VmRSS %s -> %s",
		cycles, elapsed.Round(time.Millisecond), fds, after, threads, procCount(t, pid, "task"), rss, procStatus(t, pid, "VmRSS"))
	wantMounts(t, fileVol, 0)
	wantMounts(t, dirVol, 0)
}
