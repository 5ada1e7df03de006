// Command rss measures the resident memory of a dsv binary without Docker.
//
// It runs the binary as root in legacy mode on temporary directories, with
// exactly the env defaults of config.json (file backend, empty AWS_* and
// VAULT_* settings, credential files that do not exist) plus any -env
// entries, waits, and reads /proc/PID/status. Then it drives the plugin through its socket
// as docker run does with an implicitly created volume (Create, Get, Mount,
// read the file, Unmount), runs times, and reads again before removing the
// volumes. Each reading is the median of -n fresh processes.
//
//	go run ./test/tools/rss -bin /tmp/dsv                  # one binary against the targets
//	go run ./test/tools/rss -bin /tmp/dsv -base /tmp/old   # and against another binary
//	go run ./test/tools/rss -bin /tmp/dsv -v               # and the largest mappings
//	go run ./test/tools/rss -bin /tmp/dsv -env GOGC=100    # with a setting changed
//	go run ./test/tools/rss -bin /tmp/dsv-syms -pages 25    # where the binary's pages go
//
// Run it from the repository's root (it reads config.json). Output: one
// line per binary and stage, in MiB, with a verdict against the stage's
// target, and with -base the differences; -json prints the same numbers
// (KiB) as one JSON object instead. -pages N attributes the binary's own
// resident pages (RssFile) to its sections and, in each, to the N largest
// packages, from /proc/PID/pagemap and the binary's symbol table: build it
// without -s (go build -trimpath -ldflags "-X main.version=x" -o /tmp/dsv-syms
// ./cmd/dsv lays out the same segments as make build). The exit status is 0
// whether targets are met or missed, non-zero when something could not be
// measured.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/dsv-plugin/dsv/test/testproc"
)

// Targets of the report, as make bench has them (issue 19, every backend in
// the plugin): idle VmRSS <= 13 MB (12,695 KiB), after 20 container runs
// <= 15 MB (14,648 KiB).
const (
	targetIdle = 12695.0 / 1024
	targetRuns = 14648.0 / 1024
)

// pluginEnv is the env of config.json (-config) with its default values:
// what the managed plugin starts with when nothing is set. Nothing of the
// caller's environment leaks in.
func pluginEnv(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var cfg struct {
		Env []struct{ Name, Value string }
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(cfg.Env) == 0 {
		return nil, fmt.Errorf("%s: no env entries", path)
	}
	out := make([]string, 0, len(cfg.Env))
	for _, e := range cfg.Env {
		out = append(out, e.Name+"="+e.Value)
	}
	return out, nil
}

const pluginAPI = "application/vnd.docker.plugins.v1.2+json"

type config struct {
	bin, base string
	config    string
	env       testproc.KeyValues
	runs, n   int
	wait      time.Duration
	verbose   bool
	json      bool
	pages     int
}

func main() {
	var c config
	fs := flag.NewFlagSet("rss", flag.ContinueOnError)
	fs.StringVar(&c.bin, "bin", "bin/dsv", "dsv binary to measure")
	fs.StringVar(&c.base, "base", "", "another dsv binary to compare with (optional)")
	fs.StringVar(&c.config, "config", "config.json", "the plugin's config.json, whose env defaults the plugin gets")
	fs.Var(&c.env, "env", "extra environment entry of the plugin, e.g. GOGC=50 (repeatable)")
	fs.IntVar(&c.runs, "runs", 20, "mount/unmount cycles before the second reading")
	fs.IntVar(&c.n, "n", 3, "fresh processes per binary; each reading is their median")
	fs.DurationVar(&c.wait, "wait", 2*time.Second, "wait after start before the idle reading")
	fs.BoolVar(&c.verbose, "v", false, "also print the largest mappings (from smaps) of the last process")
	fs.BoolVar(&c.json, "json", false, "print one JSON object instead of the table")
	fs.IntVar(&c.pages, "pages", 0, "also attribute the binary's resident pages to sections and the N largest packages (needs a binary with a symbol table)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		os.Exit(2)
	}
	if c.n < 1 || c.runs < 0 {
		fmt.Fprintln(os.Stderr, "rss: -n must be >= 1 and -runs >= 0")
		os.Exit(2)
	}
	if err := run(c, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "rss:", err)
		os.Exit(1)
	}
}

// status is the memory of one reading, in KiB as /proc gives it.
type status struct {
	VmRSS, RssAnon, RssFile, RssShmem, VmHWM int64
	Threads                                  int64
}

// result is one binary's readings.
type result struct {
	Bin   string `json:"bin"`
	Idle  status `json:"idle"`
	Runs  status `json:"afterRuns"`
	NRuns int    `json:"runs"`
	detail
}

// detail is what -v and -pages print, from the last process of a binary.
type detail struct {
	maps                []mapping
	pagesIdle, pagesRun residency
}

func run(c config, w io.Writer) error {
	if os.Geteuid() != 0 {
		return errors.New("run as root: the plugin mounts tmpfs")
	}
	env, err := pluginEnv(c.config)
	if err != nil {
		return err
	}
	bins := []string{c.bin}
	if c.base != "" {
		bins = append(bins, c.base)
	}
	var results []result
	for _, bin := range bins {
		abs, err := filepath.Abs(bin)
		if err != nil {
			return err
		}
		if _, err := os.Stat(abs); err != nil {
			return err
		}
		var syms *symbols
		if c.pages > 0 {
			if syms, err = readSymbols(abs); err != nil {
				return err
			}
		}
		var idle, runs []status
		var last detail
		for range c.n {
			i, r, d, err := measure(abs, env, c, syms)
			if err != nil {
				return fmt.Errorf("%s: %w", bin, err)
			}
			idle, runs, last = append(idle, i), append(runs, r), d
		}
		results = append(results, result{Bin: bin, Idle: median(idle), Runs: median(runs), NRuns: c.runs, detail: last})
	}
	if c.json {
		enc := json.NewEncoder(w)
		return enc.Encode(map[string]any{"unit": "KiB", "samples": c.n, "results": results,
			"targetsMiB": map[string]float64{"idle": targetIdle, "afterRuns": targetRuns}})
	}
	report(w, c, results)
	return nil
}

func report(w io.Writer, c config, rs []result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "binary\tstage\tVmRSS\tRssAnon\tRssFile\tVmHWM\tthreads\ttarget\t\t\n")
	for _, r := range rs {
		for _, s := range []struct {
			name   string
			st     status
			target float64
		}{{"idle", r.Idle, targetIdle}, {fmt.Sprintf("after %d mounts", r.NRuns), r.Runs, targetRuns}} {
			fmt.Fprintf(tw, "%s\t%s\t%.1f\t%.1f\t%.1f\t%.1f\t%d\t<= %.1f\t%s\t\n", r.Bin, s.name,
				mib(s.st.VmRSS), mib(s.st.RssAnon), mib(s.st.RssFile), mib(s.st.VmHWM), s.st.Threads, s.target,
				verdict(mib(s.st.VmRSS) <= s.target))
		}
	}
	tw.Flush()
	note := ""
	if len(c.env) > 0 {
		note = "; plugin env + " + c.env.String()
	}
	fmt.Fprintf(w, "(MiB; median of %d processes%s)\n", c.n, note)
	if len(rs) == 2 {
		a, b := rs[0], rs[1]
		fmt.Fprintf(w, "%s - %s: idle VmRSS %+.1f (anon %+.1f, file %+.1f); after %d mounts VmRSS %+.1f (anon %+.1f, file %+.1f) MiB\n",
			a.Bin, b.Bin,
			mib(a.Idle.VmRSS-b.Idle.VmRSS), mib(a.Idle.RssAnon-b.Idle.RssAnon), mib(a.Idle.RssFile-b.Idle.RssFile), a.NRuns,
			mib(a.Runs.VmRSS-b.Runs.VmRSS), mib(a.Runs.RssAnon-b.Runs.RssAnon), mib(a.Runs.RssFile-b.Runs.RssFile))
	}
	if c.verbose {
		for _, r := range rs {
			fmt.Fprintf(w, "\n%s: mappings by Rss after %d mounts (KiB)\n", r.Bin, r.NRuns)
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			fmt.Fprintf(tw, "Rss\tAnon\tPerms\tSize\tMapping\n")
			for _, m := range r.maps {
				fmt.Fprintf(tw, "%d\t%d\t%s\t%d\t%s\n", m.rss, m.anon, m.perms, m.size, m.name)
			}
			tw.Flush()
		}
	}
	if c.pages > 0 {
		for _, r := range rs {
			printPages(w, r.Bin, r.NRuns, r.pagesIdle, r.pagesRun, c.pages)
		}
	}
}

func verdict(ok bool) string {
	if ok {
		return "ok"
	}
	return "MISSED"
}

func mib(kib int64) float64 { return float64(kib) / 1024 }

// median takes the median of each field separately.
func median(ss []status) status {
	pick := func(f func(status) int64) int64 {
		v := make([]int64, len(ss))
		for i, s := range ss {
			v[i] = f(s)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	return status{
		VmRSS:    pick(func(s status) int64 { return s.VmRSS }),
		RssAnon:  pick(func(s status) int64 { return s.RssAnon }),
		RssFile:  pick(func(s status) int64 { return s.RssFile }),
		RssShmem: pick(func(s status) int64 { return s.RssShmem }),
		VmHWM:    pick(func(s status) int64 { return s.VmHWM }),
		Threads:  pick(func(s status) int64 { return s.Threads }),
	}
}

// measure starts one process of bin and takes both readings.
func measure(bin string, env []string, c config, syms *symbols) (idle, runs status, d detail, err error) {
	dir, err := os.MkdirTemp("", "dsv-rss-")
	if err != nil {
		return idle, runs, d, err
	}
	defer func() {
		// A run that failed between Mount and Unmount leaves a tmpfs.
		unmountUnder(dir)
		os.RemoveAll(dir)
	}()
	for _, sub := range []string{"files", "templates", "mounts"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o700); err != nil {
			return idle, runs, d, err
		}
	}
	sock := filepath.Join(dir, "dsv.sock")
	logf, err := os.Create(filepath.Join(dir, "log"))
	if err != nil {
		return idle, runs, d, err
	}
	defer logf.Close()
	cmd := exec.Command(bin,
		"-socket", sock,
		"-state", filepath.Join(dir, "state.json"),
		"-mounts", filepath.Join(dir, "mounts"),
		"-files", filepath.Join(dir, "files"),
		"-templates", filepath.Join(dir, "templates"))
	cmd.Env = append(slices.Clip(env), c.env...)
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return idle, runs, d, err
	}
	exited := make(chan struct{}) // closed when the process is gone
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if err != nil {
			err = fmt.Errorf("%w\nplugin log:\n%s", err, tail(filepath.Join(dir, "log")))
		}
	}()

	p := &plugin{pid: cmd.Process.Pid, client: &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}},
	}}
	if err := waitFor(sock, exited, &waitErr); err != nil {
		return idle, runs, d, err
	}
	time.Sleep(c.wait)
	if idle, err = p.status(); err != nil {
		return idle, runs, d, err
	}
	if syms != nil {
		if d.pagesIdle, err = p.pages(bin, syms); err != nil {
			return idle, runs, d, err
		}
	}

	names := make([]string, c.runs)
	for i := range names {
		names[i] = fmt.Sprintf("rss-%02d", i)
		value := fmt.Sprintf("value of %s %d", names[i], time.Now().UnixNano())
		if err := os.WriteFile(filepath.Join(dir, "files", names[i]), []byte(value), 0o600); err != nil {
			return idle, runs, d, err
		}
		if err := p.cycle(names[i], value); err != nil {
			return idle, runs, d, err
		}
	}
	if runs, err = p.status(); err != nil {
		return idle, runs, d, err
	}
	if c.verbose {
		if d.maps, err = p.smaps(); err != nil {
			return idle, runs, d, err
		}
	}
	if syms != nil {
		if d.pagesRun, err = p.pages(bin, syms); err != nil {
			return idle, runs, d, err
		}
	}
	for _, n := range names {
		if err := p.call("/VolumeDriver.Remove", map[string]any{"Name": n}, nil); err != nil {
			return idle, runs, d, err
		}
	}
	return idle, runs, d, nil
}

// waitFor waits until the plugin listens on sock.
func waitFor(sock string, exited <-chan struct{}, waitErr *error) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("plugin exited before listening: %v", *waitErr)
		default:
		}
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("plugin not listening on %s after 10s", sock)
}

type plugin struct {
	pid    int
	client *http.Client
}

// cycle is what docker run does with an implicitly created volume, and
// checks that the container would read value.
func (p *plugin) cycle(name, value string) error {
	id := "rss-" + name
	if err := p.call("/VolumeDriver.Create", map[string]any{"Name": name, "Opts": map[string]string{"secret": name}}, nil); err != nil {
		return err
	}
	if err := p.call("/VolumeDriver.Get", map[string]any{"Name": name}, nil); err != nil {
		return err
	}
	var m struct{ Mountpoint string }
	if err := p.call("/VolumeDriver.Mount", map[string]any{"Name": name, "ID": id}, &m); err != nil {
		return err
	}
	got, err := readOne(m.Mountpoint)
	if err != nil {
		return fmt.Errorf("volume %s: %w", name, err)
	}
	if got != value {
		return fmt.Errorf("volume %s: read %q, want %q", name, got, value)
	}
	return p.call("/VolumeDriver.Unmount", map[string]any{"Name": name, "ID": id}, nil)
}

// readOne reads the one regular file under dir.
func readOne(dir string) (string, error) {
	var files []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	if len(files) != 1 {
		return "", fmt.Errorf("mountpoint %s holds %d files, want 1", dir, len(files))
	}
	b, err := os.ReadFile(files[0])
	return string(b), err
}

// call posts one request of the plugin protocol and fails on its Err field.
func (p *plugin) call(endpoint string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequest(http.MethodPost, "http://plugin"+endpoint, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Accept", pluginAPI)
	resp, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", endpoint, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s: %w", endpoint, err)
	}
	var e struct{ Err string }
	if err := json.Unmarshal(b, &e); err != nil {
		return fmt.Errorf("%s: HTTP %d: %s", endpoint, resp.StatusCode, b)
	}
	if e.Err != "" {
		return fmt.Errorf("%s: %s", endpoint, e.Err)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

func (p *plugin) status() (status, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid))
	if err != nil {
		return status{}, err
	}
	var s status
	for line := range strings.SplitSeq(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		f := strings.Fields(v)
		if !ok || len(f) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "VmRSS":
			s.VmRSS = n
		case "RssAnon":
			s.RssAnon = n
		case "RssFile":
			s.RssFile = n
		case "RssShmem":
			s.RssShmem = n
		case "VmHWM":
			s.VmHWM = n
		case "Threads":
			s.Threads = n
		}
	}
	if s.VmRSS == 0 {
		return s, fmt.Errorf("process %d: no VmRSS in its status", p.pid)
	}
	return s, nil
}

// mapping is one entry of /proc/PID/smaps.
type mapping struct {
	name, perms     string
	size, rss, anon int64
}

// smaps lists the mappings with resident pages, largest first.
func (p *plugin) smaps() ([]mapping, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps", p.pid))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []mapping
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":") {
			m := mapping{perms: f[1], name: "[anon]"}
			if len(f) >= 6 {
				m.name = f[5]
			}
			out = append(out, m)
			continue
		}
		if len(out) == 0 || len(f) < 2 {
			continue
		}
		n, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "Size:":
			out[len(out)-1].size = n
		case "Rss:":
			out[len(out)-1].rss = n
		case "Anonymous:":
			out[len(out)-1].anon = n
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	out = slices.DeleteFunc(out, func(m mapping) bool { return m.rss == 0 })
	slices.SortStableFunc(out, func(a, b mapping) int { return int(b.rss - a.rss) })
	return out, nil
}

// unmountUnder detaches every mount below dir.
func unmountUnder(dir string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			_ = syscall.Unmount(f[4], syscall.MNT_DETACH)
		}
	}
}

// tail is the end of the plugin's log, for errors.
func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}
