//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A second Docker engine on the same machine, in its own network namespace
// joined to the host by a veth pair, with its own data root, exec root,
// pid file and socket, no bridge and no iptables rules. The two engines
// form a two-node swarm: the host engine is the manager, this one a worker.

// node2Net is the veth pair's subnet: the host side is .1, the node .2.
const node2Net = "10.213.47"

type swarmNode struct {
	t        *testing.T
	netns    string
	hostIf   string
	sock     string
	dataRoot string
	execRoot string
	logPath  string
	cmd      *exec.Cmd
	exited   chan struct{}
}

func (n *swarmNode) hostIP() string { return node2Net + ".1" }
func (n *swarmNode) nodeIP() string { return node2Net + ".2" }

// docker runs the docker CLI against the node.
func (n *swarmNode) docker(args ...string) result {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	return dockerCtx(ctx, append([]string{"-H", "unix://" + n.sock}, args...)...)
}

func (n *swarmNode) mustDocker(args ...string) string {
	n.t.Helper()
	r := n.docker(args...)
	if r.err != nil {
		n.t.Fatalf("node 2: %v", r)
	}
	return r.stdout
}

// script runs one of the repository's scripts against the node.
func (n *swarmNode) script(extraEnv []string, name string, args ...string) {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = env.repo
	cmd.Env = append(append(os.Environ(), "DOCKER_HOST=unix://"+n.sock), extraEnv...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		n.t.Fatalf("node 2: %s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// startNode2 starts the second engine and registers its teardown.
func startNode2(t *testing.T) *swarmNode {
	t.Helper()
	for _, tool := range []string{"ip", "nsenter", "dockerd"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the two-node test needs %s: %v", tool, err)
		}
	}
	if out := command(context.Background(), "ip", "-o", "addr").stdout; strings.Contains(out, " "+node2Net+".") {
		t.Fatalf("the subnet %s.0/24 is in use on this host (left over from an interrupted run? delete it with: ip link del dsv<runid>h):\n%s", node2Net, out)
	}
	id := env.runID
	n := &swarmNode{
		t:        t,
		netns:    "dsve2e-" + id,
		hostIf:   "dsv" + id + "h",
		sock:     "/run/dsve2e-" + id + ".sock",
		dataRoot: "/var/lib/dsve2e-node2-" + id,
		execRoot: "/run/dsve2e-node2-" + id,
		logPath:  "/var/log/dsv-e2e-node2.log",
		exited:   make(chan struct{}),
	}
	t.Cleanup(n.teardown)
	nodeIf := "dsv" + id + "n"
	for _, args := range [][]string{
		{"netns", "add", n.netns},
		{"link", "add", n.hostIf, "type", "veth", "peer", "name", nodeIf},
		{"link", "set", nodeIf, "netns", n.netns},
		{"addr", "add", n.hostIP() + "/24", "dev", n.hostIf},
		{"link", "set", n.hostIf, "up"},
		{"-n", n.netns, "addr", "add", n.nodeIP() + "/24", "dev", nodeIf},
		{"-n", n.netns, "link", "set", nodeIf, "up"},
		{"-n", n.netns, "link", "set", "lo", "up"},
	} {
		if r := command(context.Background(), "ip", args...); r.err != nil {
			t.Fatalf("network namespace: %v", r)
		}
	}

	cfg := filepath.Join(t.TempDir(), "daemon.json")
	if err := os.WriteFile(cfg, []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(n.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	// nsenter enters the network namespace only: `ip netns exec` would
	// also remount /sys, which hides the cgroup mounts dockerd needs.
	n.cmd = exec.Command("nsenter", "--net=/run/netns/"+n.netns, "dockerd",
		"--config-file", cfg,
		"--data-root", n.dataRoot, "--exec-root", n.execRoot,
		"--pidfile", filepath.Join(n.execRoot, "dockerd.pid"),
		"-H", "unix://"+n.sock,
		"--bridge", "none", "--iptables=false", "--ip6tables=false", "--ip-masq=false")
	n.cmd.Stdout, n.cmd.Stderr = logFile, logFile
	if err := n.cmd.Start(); err != nil {
		t.Fatalf("start the second dockerd: %v", err)
	}
	go func() { _ = n.cmd.Wait(); close(n.exited) }()
	eventually(t, time.Minute, "the second dockerd answers on "+n.sock, func() string {
		select {
		case <-n.exited:
			t.Fatalf("the second dockerd exited; its log is %s", n.logPath)
		default:
		}
		if r := n.docker("version", "--format", "{{.Server.Version}}"); r.err != nil {
			return r.String()
		}
		return ""
	})
	return n
}

// teardown stops the engine and removes everything it made on the host.
func (n *swarmNode) teardown() {
	if n.cmd != nil && n.cmd.Process != nil {
		_ = n.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-n.exited:
		case <-time.After(time.Minute):
			n.t.Errorf("the second dockerd did not stop within a minute of SIGTERM; killing it")
			_ = n.cmd.Process.Kill()
			<-n.exited
		}
	}
	for _, root := range []string{n.execRoot, n.dataRoot} {
		if err := unmountUnder(root); err != nil {
			n.t.Errorf("node 2: %v; kept %s", err, root)
			continue
		}
		if err := os.RemoveAll(root); err != nil {
			n.t.Errorf("node 2: %v", err)
		}
	}
	_ = os.Remove(n.sock)
	command(context.Background(), "ip", "netns", "del", n.netns)
	command(context.Background(), "ip", "link", "del", n.hostIf)
}

// unmountUnder detaches every mount below root, deepest first, so that
// removing root cannot reach into a mounted folder.
func unmountUnder(root string) error {
	ms, err := hostMounts()
	if err != nil {
		return err
	}
	var under []string
	for _, m := range ms {
		if m.mountPoint == root || strings.HasPrefix(m.mountPoint, root+"/") {
			under = append(under, m.mountPoint)
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(under)))
	var errs []error
	for _, mp := range under {
		if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", mp, err))
		}
	}
	return errors.Join(errs...)
}

// TestSwarmTwoNodes: on a two-node swarm, the manager's plugin answers for
// Swarm secrets, whichever node runs the task, while a volume is served by
// the plugin of the node that mounts it. A worker needs no plugin for
// Swarm secrets.
func TestSwarmTwoNodes(t *testing.T) {
	if state := strings.TrimSpace(mustDocker(t, "info", "--format", "{{.Swarm.LocalNodeState}}")); state != "inactive" {
		t.Fatalf("the engine is in swarm state %q; the two-node test needs an engine outside any swarm", state)
	}
	node2Files := t.TempDir()
	if err := os.Chmod(node2Files, 0o755); err != nil {
		t.Fatal(err)
	}
	n := startNode2(t)

	// One secret name, a different value on each node: what a task reads
	// tells which node's plugin answered.
	whoami := env.name("whoami")
	fromManager, fromWorker := "from-manager-"+randomHex(4), "from-worker-"+randomHex(4)
	if err := env.writeFile(whoami, []byte(fromManager)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(node2Files, whoami), []byte(fromWorker), 0o600); err != nil {
		t.Fatal(err)
	}

	n.script(nil, "test/busybox-image.sh")
	n.script([]string{"DSV_PLUGIN_DIR=" + filepath.Join(t.TempDir(), "plugin")}, "./build-plugin.sh", "--name", env.plugin)
	n.mustDocker("plugin", "set", env.plugin, "files.source="+node2Files, "LOG_LEVEL=debug")
	n.mustDocker("plugin", "enable", env.plugin)
	// The plugin goes before its files folder (t.TempDir, removed after
	// this cleanup) and before the engine stops.
	t.Cleanup(func() {
		n.docker("plugin", "disable", "-f", env.plugin)
		n.docker("plugin", "rm", "-f", env.plugin)
	})

	sw := initSwarm(t, n.hostIP())
	token := strings.TrimSpace(mustDocker(t, "swarm", "join-token", "-q", "worker"))
	n.mustDocker("swarm", "join", "--token", token, "--advertise-addr", n.nodeIP(), "--listen-addr", n.nodeIP()+":2377", n.hostIP()+":2377")
	vol := env.name("nodevol")
	sw.afterServices = append(sw.afterServices, func() {
		eventually(t, swarmTaskTimeout, "the worker's task containers are gone", func() string {
			if r := n.docker("ps", "-aq", "--filter", "label="+containerLabel); r.err != nil || strings.TrimSpace(r.stdout) != "" {
				return r.String()
			}
			return ""
		})
		if r := n.docker("volume", "rm", "-f", vol); r.err != nil {
			t.Errorf("node 2: %v", r)
		}
		if r := n.docker("swarm", "leave", "--force"); r.err != nil {
			t.Errorf("node 2: %v", r)
		}
	})
	eventually(t, time.Minute, "two ready nodes", func() string {
		out := mustDocker(t, "node", "ls", "--format", "{{.Status}} {{.ManagerStatus}}")
		if strings.Count(out, "Ready") != 2 {
			return out
		}
		return ""
	})

	sec := sw.secret("whoami", "dsv.secret="+whoami)
	mount := "type=volume,volume-driver=" + env.plugin + ",source=" + vol + ",target=/vol," +
		"volume-opt=secret=" + whoami + ",volume-opt=layout=dir,volume-opt=filename=v"
	svc := sw.service("onworker", []string{"--constraint", "node.role==worker", "--secret", sec, "--mount", mount},
		printThenSleep("echo secret=$(cat /run/secrets/"+sec+") volume=$(cat /vol/v)")...)
	wantRunning(t, svc, 1)
	wantLogLines(t, svc, fmt.Sprintf("secret=%s volume=%s", fromManager, fromWorker), 1)
	if ids := strings.Fields(n.mustDocker("ps", "-q", "--filter", "label=com.docker.swarm.service.name="+svc)); len(ids) != 1 {
		t.Fatalf("want the task on node 2, which runs %q", ids)
	}
	wantPluginLog(t, "the manager's plugin served "+sec, `secret served`, sec, svc)
	if b, err := os.ReadFile(n.logPath); err != nil {
		t.Fatal(err)
	} else if strings.Contains(string(b), "secretprovider") {
		t.Errorf("the worker's plugin was asked for a Swarm secret; its log %s says so", n.logPath)
	} else if !strings.Contains(string(b), "mounted") {
		t.Errorf("the worker's log %s shows no mount by its plugin", n.logPath)
	}

	// Without the plugin on the worker, its tasks still get dsv secrets.
	mustDocker(t, "service", "rm", svc)
	eventually(t, swarmTaskTimeout, "the task of "+svc+" is gone from node 2", func() string {
		if ids := strings.Fields(n.mustDocker("ps", "-aq", "--filter", "label=com.docker.swarm.service.name="+svc)); len(ids) > 0 {
			return fmt.Sprintf("containers %q", ids)
		}
		return ""
	})
	n.mustDocker("plugin", "disable", "-f", env.plugin) // -f: the volume still refers to it
	svc2 := sw.service("noplugin", []string{"--constraint", "node.role==worker", "--secret", sec},
		printThenSleep("echo secret=$(cat /run/secrets/"+sec+")")...)
	wantRunning(t, svc2, 1)
	wantLogLines(t, svc2, "secret="+fromManager, 1)
	n.mustDocker("plugin", "enable", env.plugin) // to remove the volume at cleanup
}
