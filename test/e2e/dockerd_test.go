//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// How dockerd was started, which decides how the suite restarts it.
const (
	startedByScript  = "test/dockerd.sh" // pid file of test/dockerd.sh
	startedBySystemd = "systemd"
	startedOther     = "command line" // restarted from /proc/PID/cmdline
)

// fallbackLog is where a dockerd restarted from its command line logs when
// the original one did not log to a file.
const fallbackLog = "/var/log/dsv-e2e-dockerd.log"

// daemonInfo is the running dockerd and where its output goes. dockerd
// writes a managed plugin's output to its own log, so the log holds
// everything the plugin logged.
type daemonInfo struct {
	pid     int
	cmdline []string
	how     string
	logPath string // "" when dockerd does not log to a file
	// logs are the spans of log files written during the run.
	logs []logSpan
}

type logSpan struct {
	path   string
	offset int64
}

// scriptPidfile is test/dockerd.sh's pid file.
func scriptPidfile() string { return envOr("DSV_DOCKERD_PIDFILE", "/var/run/dsv-dockerd.pid") }

func findDaemon() (*daemonInfo, error) {
	pid, err := dockerdPid()
	if err != nil {
		return nil, err
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil, fmt.Errorf("read dockerd's command line: %w", err)
	}
	d := &daemonInfo{pid: pid, cmdline: strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00"), how: startedOther}
	if lp, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/2", pid)); err == nil && filepath.IsAbs(lp) {
		if fi, err := os.Stat(lp); err == nil && fi.Mode().IsRegular() {
			d.logPath = lp
			d.logs = append(d.logs, logSpan{path: lp, offset: fi.Size()})
		}
	}
	if b, err := os.ReadFile(scriptPidfile()); err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(pid) {
		d.how = startedByScript
	} else if ppid(pid) == 1 && command(context.Background(), "systemctl", "is-active", "--quiet", "docker").err == nil {
		d.how = startedBySystemd
	}
	return d, nil
}

// dockerdPid finds the dockerd that serves the suite's socket (DOCKER_HOST,
// else the default): a second engine may run beside it on the same host
// (test/dockerd.sh's current engine), and the suite must restart the one it
// tests. Without a dockerd that names the socket on its command line, it
// reads the default engine's pid file (systemd starts dockerd with -H fd://).
func dockerdPid() (int, error) {
	sock := dockerSocket()
	var pids []int
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || procName(pid) != "dockerd" {
			continue
		}
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		for _, h := range daemonHosts(strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")) {
			if p, ok := strings.CutPrefix(h, "unix://"); ok && samePath(p, sock) {
				pids = append(pids, pid)
				break
			}
		}
	}
	switch {
	case len(pids) == 1:
		return pids[0], nil
	case len(pids) > 1:
		return 0, fmt.Errorf("dockerd processes %v all listen on %s", pids, sock)
	}
	if samePath(sock, defaultDockerSocket) {
		if b, err := os.ReadFile("/var/run/docker.pid"); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && procName(pid) == "dockerd" {
				return pid, nil
			}
		}
	}
	return 0, fmt.Errorf("no dockerd process listens on %s", sock)
}

// defaultDockerSocket is where dockerd listens without -H.
const defaultDockerSocket = "/var/run/docker.sock"

// dockerSocket is the unix socket the docker CLI talks to.
func dockerSocket() string {
	if p, ok := strings.CutPrefix(os.Getenv("DOCKER_HOST"), "unix://"); ok {
		return p
	}
	return defaultDockerSocket
}

// daemonHosts lists dockerd's -H/--host values; none means the default.
func daemonHosts(cmdline []string) []string {
	hosts := flagValues(cmdline, "-H", "--host")
	if len(hosts) == 0 {
		hosts = []string{"unix://" + defaultDockerSocket}
	}
	return hosts
}

// flagValues returns the values of the named flags on a command line, in
// both forms: "--flag value" and "--flag=value".
func flagValues(cmdline []string, names ...string) []string {
	var out []string
	for i := 1; i < len(cmdline); i++ {
		for _, n := range names {
			if cmdline[i] == n && i+1 < len(cmdline) {
				out = append(out, cmdline[i+1])
			} else if v, ok := strings.CutPrefix(cmdline[i], n+"="); ok {
				out = append(out, v)
			}
		}
	}
	return out
}

// samePath compares two paths after resolving symbolic links (/var/run is
// a link to /run).
func samePath(a, b string) bool {
	resolve := func(p string) string {
		if r, err := filepath.EvalSymlinks(filepath.Dir(p)); err == nil {
			return filepath.Join(r, filepath.Base(p))
		}
		return filepath.Clean(p)
	}
	return resolve(a) == resolve(b)
}

func procName(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(b))
}

func ppid(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// pid (comm) state ppid ...: comm may hold spaces, so cut at the last ')'.
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(fields[1])
	return n
}

// restart stops dockerd (which stops its containers and plugins) and starts
// it again the way it was started, then waits until it answers and the
// plugin is enabled again.
func (d *daemonInfo) restart(plugin string) error {
	if err := checkPluginsCanStart(); err != nil {
		return err
	}
	switch d.how {
	case startedByScript:
		// Its own stop and ensure: same arguments, same log, same pid file.
		script := `source test/dockerd.sh && dsv_dockerd_stop && dsv_dockerd_ensure`
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "bash", "-c", script)
		cmd.Dir = env.repo
		cmd.Env = append(os.Environ(), "DSV_DOCKERD_PIDFILE="+scriptPidfile())
		if d.logPath != "" {
			cmd.Env = append(cmd.Env, "DSV_DOCKERD_LOG="+d.logPath)
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("restart dockerd with test/dockerd.sh: %w: %s", err, out)
		}
	case startedBySystemd:
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if r := command(ctx, "systemctl", "restart", "docker"); r.err != nil {
			return fmt.Errorf("restart dockerd: %v", r)
		}
	default:
		if err := d.restartFromCmdline(); err != nil {
			return err
		}
	}
	if err := waitDocker(90 * time.Second); err != nil {
		return err
	}
	pid, err := dockerdPid()
	if err != nil {
		return err
	}
	d.pid = pid
	return waitPluginEnabled(plugin, 60*time.Second)
}

// checkPluginsCanStart refuses a restart that would not come back: dockerd
// 20.10 panics at start (nil plugin client in the volume store's restore)
// when a volume belongs to a plugin that fails to enable, and a plugin fails
// to enable when a bind mount's source is gone, e.g. a deleted temporary
// folder set with `docker plugin set NAME files.source=...`.
func checkPluginsCanStart() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := dockerCtx(ctx, "plugin", "ls", "-q")
	if r.err != nil {
		return fmt.Errorf("list plugins: %v", r)
	}
	ids := strings.Fields(r.stdout)
	if len(ids) == 0 {
		return nil
	}
	r = dockerCtx(ctx, append([]string{"plugin", "inspect"}, ids...)...)
	if r.err != nil {
		return fmt.Errorf("inspect plugins: %v", r)
	}
	// Config.Mounts, not Settings.Mounts: dockerd starts plugins from the
	// former, and after a dockerd restart `docker plugin set` updates only it.
	var plugins []struct {
		Name    string
		Enabled bool
		Config  struct {
			Mounts []struct {
				Name   string
				Source *string
				Type   string
			}
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &plugins); err != nil {
		return fmt.Errorf("decode docker plugin inspect: %w", err)
	}
	var problems []string
	for _, p := range plugins {
		if !p.Enabled {
			continue
		}
		for _, m := range p.Config.Mounts {
			if m.Type != "bind" || m.Source == nil || *m.Source == "" {
				continue
			}
			if _, err := os.Stat(*m.Source); err != nil {
				problems = append(problems, fmt.Sprintf("plugin %s: mount %s: %v", p.Name, m.Name, err))
			}
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("not restarting dockerd: these enabled plugins could not start again, and dockerd 20.10 "+
			"panics at start when a plugin with volumes fails to enable; fix their settings (docker plugin set) first:\n%s",
			strings.Join(problems, "\n"))
	}
	return nil
}

func (d *daemonInfo) restartFromCmdline() error {
	p, err := os.FindProcess(d.pid)
	if err != nil {
		return err
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("stop dockerd %d: %w", d.pid, err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for procName(d.pid) == "dockerd" {
		if time.Now().After(deadline) {
			return fmt.Errorf("dockerd %d still runs 60s after SIGTERM", d.pid)
		}
		time.Sleep(200 * time.Millisecond)
	}
	logPath := d.logPath
	if logPath == "" {
		logPath = fallbackLog
		d.logPath = logPath
	}
	f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && !d.hasLog(logPath) {
		d.logs = append(d.logs, logSpan{path: logPath, offset: fi.Size()})
	}
	//nolint:gosec // the command line dockerd was started with.
	cmd := exec.Command(d.cmdline[0], d.cmdline[1:]...)
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", strings.Join(d.cmdline, " "), err)
	}
	go func() { _ = cmd.Wait() }()
	return nil
}

func (d *daemonInfo) hasLog(path string) bool {
	for _, s := range d.logs {
		if s.path == path {
			return true
		}
	}
	return false
}

func waitDocker(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		r := dockerCtx(ctx, "version", "--format", "{{.Server.Version}}")
		cancel()
		if r.err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("dockerd does not answer %s after its restart: %v", timeout, r)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func waitPluginEnabled(plugin string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		r := dockerCtx(ctx, "plugin", "inspect", "--format", "{{.Enabled}}", plugin)
		cancel()
		if r.err == nil && strings.TrimSpace(r.stdout) == "true" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("plugin %s is not enabled %s after dockerd's restart: %v", plugin, timeout, r)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// readLogs returns what dockerd logged during the run.
func (d *daemonInfo) readLogs() ([]byte, error) {
	var all []byte
	for _, s := range d.logs {
		f, err := os.Open(s.path)
		if err != nil {
			return nil, err
		}
		if _, err := f.Seek(s.offset, 0); err != nil {
			f.Close()
			return nil, err
		}
		var buf bytes.Buffer
		_, err = buf.ReadFrom(f)
		f.Close()
		if err != nil {
			return nil, err
		}
		all = append(all, buf.Bytes()...)
	}
	return all, nil
}
