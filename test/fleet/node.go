package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The fleet's network: one host bridge, the host at .1 (where the stores'
// proxies and the registry listen), node i at .(10+i). Every name and path
// the harness makes starts with "dsvfleet", so that a start can find and
// remove what a crashed run left.
const (
	bridgeName = "dsvfleet0"
	subnet     = "10.214.0"
	hostIP     = subnet + ".1"
	runRoot    = "/run/dsvfleet"
	libRoot    = "/var/lib/dsvfleet"
	logRoot    = "/var/log/dsvfleet"
)

// node is one engine: its own containerd and dockerd, data, exec and state
// roots, socket and network namespace, joined to the bridge by a veth pair.
type node struct {
	i        int
	engine   string // folder of the Engine 29 binaries
	registry string // host:port dockerd trusts over plain HTTP
	ctrd     *exec.Cmd
	dockerd  *exec.Cmd
	ctrdDone chan struct{}
	dockDone chan struct{}
}

func (n *node) name() string     { return fmt.Sprintf("n%d", n.i) }
func (n *node) ip() string       { return fmt.Sprintf("%s.%d", subnet, 10+n.i) }
func (n *node) netns() string    { return "dsvfleet-" + n.name() }
func (n *node) hostIf() string   { return fmt.Sprintf("dsvfleet%dh", n.i) }
func (n *node) run() string      { return filepath.Join(runRoot, n.name()) }
func (n *node) lib() string      { return filepath.Join(libRoot, n.name()) }
func (n *node) sock() string     { return filepath.Join(n.run(), "docker.sock") }
func (n *node) ctrdSock() string { return filepath.Join(n.run(), "containerd", "containerd.sock") }
func (n *node) dockerLog() string {
	return filepath.Join(logRoot, n.name()+"-dockerd.log")
}

// setupBridge makes the fleet's bridge.
func setupBridge(ctx context.Context) error {
	for _, args := range [][]string{
		{"link", "add", bridgeName, "type", "bridge"},
		{"addr", "add", hostIP + "/24", "dev", bridgeName},
		{"link", "set", bridgeName, "up"},
	} {
		if _, err := run(ctx, "ip", args...); err != nil {
			return fmt.Errorf("fleet bridge %s: %w", bridgeName, err)
		}
	}
	// The host's engine sets FORWARD to DROP, and br_netfilter applies it
	// to frames between two ports of a bridge (the per-bridge
	// nf_call_iptables cannot undo the machine's sysctl): accept the
	// fleet's own, as Docker does for docker0. cleanLeftovers removes it.
	if _, err := run(ctx, "iptables", forwardRule("-I")...); err != nil {
		return fmt.Errorf("fleet bridge %s: %w", bridgeName, err)
	}
	return nil
}

func forwardRule(op string) []string {
	return []string{op, "FORWARD", "-i", bridgeName, "-o", bridgeName, "-m", "comment", "--comment", "dsvfleet", "-j", "ACCEPT"}
}

// setupNetwork gives the node its namespace and a veth on the bridge. No
// default route: a node reaches the fleet's subnet only, so that an image
// pull toward Docker Hub fails at once instead of timing out.
func (n *node) setupNetwork(ctx context.Context) error {
	peer := fmt.Sprintf("dsvfleet%dn", n.i)
	for _, args := range [][]string{
		{"netns", "add", n.netns()},
		{"link", "add", n.hostIf(), "type", "veth", "peer", "name", peer},
		{"link", "set", n.hostIf(), "master", bridgeName},
		{"link", "set", n.hostIf(), "up"},
		{"link", "set", peer, "netns", n.netns()},
		{"-n", n.netns(), "link", "set", peer, "name", "eth0"},
		{"-n", n.netns(), "addr", "add", n.ip() + "/24", "dev", "eth0"},
		{"-n", n.netns(), "link", "set", "eth0", "up"},
		{"-n", n.netns(), "link", "set", "lo", "up"},
	} {
		if _, err := run(ctx, "ip", args...); err != nil {
			return fmt.Errorf("node %s network: %w", n.name(), err)
		}
	}
	return nil
}

// spawn starts a program of the engine in the node's network namespace
// (nsenter enters that one only: `ip netns exec` would remount /sys and
// hide the cgroups), in a session of its own so that a Ctrl-C of the
// harness reaches it only through the harness's cleanup.
func (n *node) spawn(logName string, pidFile string, args ...string) (*exec.Cmd, chan struct{}, error) {
	if err := os.MkdirAll(logRoot, 0o755); err != nil {
		return nil, nil, err
	}
	lf, err := os.OpenFile(filepath.Join(logRoot, logName), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, nil, err
	}
	defer lf.Close()
	cmd := exec.Command("nsenter", append([]string{"--net=/run/netns/" + n.netns(), "--"}, args...)...)
	// DOCKER_SERVICE_PREFER_OFFLINE_IMAGE: a task runs the image the node
	// holds (loaded by the harness) without asking a registry first, as
	// moby's own integration daemons do.
	cmd.Env = append(os.Environ(), "PATH="+n.engine+":"+os.Getenv("PATH"), "DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1")
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	// nsenter execs the program: the pid is the program's.
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		return nil, nil, err
	}
	return cmd, done, nil
}

func (n *node) startContainerd(ctx context.Context) error {
	if err := os.MkdirAll(filepath.Join(n.run(), "containerd"), 0o755); err != nil {
		return err
	}
	cfg := filepath.Join(n.run(), "containerd.toml")
	// As test/dockerd.sh's isolated containerd: CRI and NRI off (NRI's
	// socket is one path for the whole machine), its own root and state.
	toml := fmt.Sprintf(`version = 3
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime", "io.containerd.podsandbox.controller.v1.podsandbox", "io.containerd.nri.v1.nri", "io.containerd.internal.v1.opt"]

[grpc]
  address = %q

[ttrpc]
  address = %q
`, filepath.Join(n.lib(), "containerd"), filepath.Join(n.run(), "containerd", "state"), n.ctrdSock(), n.ctrdSock()+".ttrpc")
	if err := os.WriteFile(cfg, []byte(toml), 0o644); err != nil {
		return err
	}
	cmd, done, err := n.spawn(n.name()+"-containerd.log", filepath.Join(n.run(), "containerd.pid"),
		filepath.Join(n.engine, "containerd"), "--config", cfg)
	if err != nil {
		return fmt.Errorf("node %s: start containerd: %w", n.name(), err)
	}
	n.ctrd, n.ctrdDone = cmd, done
	return waitFor(ctx, time.Minute, "node "+n.name()+": containerd answers", func() error {
		select {
		case <-done:
			return errStop{fmt.Errorf("containerd exited; see %s", filepath.Join(logRoot, n.name()+"-containerd.log"))}
		default:
		}
		_, err := run(ctx, filepath.Join(n.engine, "ctr"), "--address", n.ctrdSock(), "version")
		return err
	})
}

func (n *node) startDockerd(ctx context.Context) error {
	cfg := filepath.Join(n.run(), "daemon.json")
	if err := os.WriteFile(cfg, []byte("{}\n"), 0o644); err != nil {
		return err
	}
	// No bridge and no iptables: the namespace is the node's own, and
	// tasks need no network; the swarm's ports are on eth0.
	cmd, done, err := n.spawn(n.name()+"-dockerd.log", filepath.Join(n.run(), "dockerd.pid"),
		filepath.Join(n.engine, "dockerd"),
		"--config-file", cfg,
		"--containerd", n.ctrdSock(),
		"--data-root", filepath.Join(n.lib(), "docker"),
		"--exec-root", filepath.Join(n.run(), "docker"),
		"--pidfile", filepath.Join(n.run(), "docker.pid"),
		"-H", "unix://"+n.sock(),
		"--cgroup-parent", "dsvfleet-"+n.name(),
		"--bridge", "none", "--iptables=false", "--ip6tables=false", "--ip-masq=false",
		"--insecure-registry", n.registry)
	if err != nil {
		return fmt.Errorf("node %s: start dockerd: %w", n.name(), err)
	}
	n.dockerd, n.dockDone = cmd, done
	return waitFor(ctx, 2*time.Minute, "node "+n.name()+": dockerd answers", func() error {
		select {
		case <-done:
			return errStop{fmt.Errorf("dockerd exited; see %s", n.dockerLog())}
		default:
		}
		_, err := n.docker(ctx, "version", "--format", "{{.Server.Version}}")
		return err
	})
}

// stopDockerd sends SIGTERM and waits for the exit (dockerd stops its
// containers and plugins first), killing after a minute.
func (n *node) stopDockerd() {
	stop(n.dockerd, n.dockDone)
}

func stop(cmd *exec.Cmd, done chan struct{}) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		<-done
	}
}

// docker runs the Engine 29 CLI against the node.
func (n *node) docker(ctx context.Context, args ...string) (string, error) {
	return run(ctx, filepath.Join(n.engine, "docker"), append([]string{"-H", "unix://" + n.sock()}, args...)...)
}

func (n *node) teardown() {
	n.stopDockerd()
	stop(n.ctrd, n.ctrdDone)
}

// cleanLeftovers stops what an earlier run of the harness left running and
// removes its mounts, folders, namespaces and bridge. It touches only
// processes recorded in the harness's own pid files under runRoot, checked
// by name.
func cleanLeftovers(ctx context.Context) error {
	pids, _ := filepath.Glob(filepath.Join(runRoot, "*", "*.pid"))
	sort.Slice(pids, func(i, j int) bool { // dockerd before containerd
		return strings.Contains(pids[i], "dockerd") && !strings.Contains(pids[j], "dockerd")
	})
	for _, f := range pids {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			continue
		}
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		name := strings.TrimSpace(string(comm))
		if name != "dockerd" && name != "containerd" {
			continue
		}
		logf("cleaning up: stopping %s %d left by an earlier run (%s)", name, pid, f)
		_ = syscall.Kill(pid, syscall.SIGTERM)
		deadline := time.Now().Add(time.Minute)
		for syscall.Kill(pid, 0) == nil && time.Now().Before(deadline) {
			time.Sleep(200 * time.Millisecond) // a process exit has no event to wait on
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	var errs []error
	for _, root := range []string{runRoot, libRoot} {
		if err := unmountUnder(root); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := os.RemoveAll(root); err != nil {
			errs = append(errs, err)
		}
	}
	for i := 0; i < 100; i++ {
		if _, err := run(ctx, "iptables", forwardRule("-D")...); err != nil {
			break
		}
	}
	if out, err := run(ctx, "ip", "netns", "list"); err == nil {
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], "dsvfleet-") {
				_, _ = run(ctx, "ip", "netns", "del", f[0])
			}
		}
	}
	if out, err := run(ctx, "ip", "-o", "link", "show"); err == nil {
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
			if strings.HasPrefix(name, "dsvfleet") {
				_, _ = run(ctx, "ip", "link", "del", name)
			}
		}
	}
	return errors.Join(errs...)
}

// unmountUnder detaches every mount below root, deepest first.
func unmountUnder(root string) error {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	var under []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMount(f[4])
		if mp == root || strings.HasPrefix(mp, root+"/") {
			under = append(under, mp)
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

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
