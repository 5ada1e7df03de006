// Command fleet runs a Swarm of N real Docker engines on this machine, each
// with its own containerd, dockerd, data and exec roots and network
// namespace, the dsv plugin installed on every node from a local registry
// as users install it, and the stores (moto's Secrets Manager) behind a
// counting, throttling proxy (test/fakes/storeproxy). It runs the
// scenarios of issue 20 (rotation, storm, scale_up, provider,
// swarm_native), checks their bounds and writes a JSON report, which
// `make fleet-report` (test/fleet/report) turns into docs/fleet.md.
//
// Usage (as root): go run ./test/fleet -nodes 5 -report fleet-5.json
//
// It exits 1 when a bound fails, 2 when the fleet could not be run.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/dsv-plugin/dsv/test/fleet/result"
)

type config struct {
	nodes     int
	report    string
	scenarios map[string]bool
	objects   int
	refresh   time.Duration
	perNode   int
	src       string
	label     string
	cacheTTL  time.Duration
	timeout   time.Duration
}

func main() {
	os.Exit(realMain())
}

func realMain() int {
	var c config
	var scen string
	flag.IntVar(&c.nodes, "nodes", 5, "engines in the swarm (three managers when 3 or more)")
	flag.StringVar(&c.report, "report", "", "write the JSON report to this file")
	flag.StringVar(&scen, "scenarios", "rotation,storm,scale_up,provider,swarm_native", "scenarios to run, comma-separated")
	flag.IntVar(&c.objects, "objects", 5, "dsv volumes (one secret each) per task")
	flag.DurationVar(&c.refresh, "refresh", 5*time.Second, "refresh interval of the rotation scenario's volumes")
	flag.IntVar(&c.perNode, "per-node", 10, "tasks per node of scale_up and provider")
	flag.StringVar(&c.src, "plugin-src", "", "repository to build the plugin from (default: this one); e.g. a checkout of main, to measure before a change")
	flag.StringVar(&c.label, "label", "", "what the plugin build is, in the report (default: git describe of -plugin-src)")
	flag.DurationVar(&c.cacheTTL, "cache-ttl", 30*time.Second, "the plugin's CACHE_TTL on every node")
	// The storm's store answers nodes x objects / 20 reads a second: when
	// every node mounts at once, the last read is answered 20 s in, and a
	// mount retried with backoff can succeed only within TIMEOUT.
	flag.DurationVar(&c.timeout, "timeout", 30*time.Second, "the plugin's TIMEOUT on every node (the default 5s cannot outlast the storm's throttling)")
	flag.Parse()
	c.scenarios = map[string]bool{}
	for _, s := range strings.Split(scen, ",") {
		switch s = strings.TrimSpace(s); s {
		case "rotation", "storm", "scale_up", "provider", "swarm_native":
			c.scenarios[s] = true
		case "":
		default:
			fmt.Fprintf(os.Stderr, "fleet: unknown scenario %q (rotation, storm, scale_up, provider, swarm_native)\n", s)
			return 2
		}
	}
	if c.nodes < 1 || c.nodes > 200 {
		fmt.Fprintln(os.Stderr, "fleet: -nodes must be 1..200")
		return 2
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "fleet: run as root (it makes network namespaces and starts engines)")
		return 2
	}
	if c.src == "" {
		wd, err := os.Getwd()
		if err != nil {
			fmt.Fprintln(os.Stderr, "fleet:", err)
			return 2
		}
		c.src = wd
	}
	if c.label == "" {
		out, _ := exec.Command("git", "-C", c.src, "describe", "--always", "--dirty").Output()
		c.label = strings.TrimSpace(string(out))
	}

	// Ctrl-C or SIGTERM cancels the run; the cleanup still runs.
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	rep, err := run1(ctx, c)
	if rep != nil && c.report != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if werr := os.WriteFile(c.report, append(b, '\n'), 0o644); werr != nil {
			fmt.Fprintln(os.Stderr, "fleet:", werr)
		} else {
			logf("report: %s", c.report)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "fleet:", err)
		return 2
	}
	failed := 0
	for _, b := range rep.Bounds {
		mark := "ok  "
		if !b.OK {
			mark = "FAIL"
			failed++
		}
		fmt.Printf("%s %s: %s\n", mark, b.Name, b.Detail)
	}
	if failed > 0 {
		fmt.Fprintf(os.Stderr, "fleet: %d bound(s) failed\n", failed)
		return 1
	}
	return 0
}

func run1(ctx context.Context, c config) (*result.Report, error) {
	start := time.Now()
	f := &fleet{cfg: c}
	defer f.cleanup()
	rep := &result.Report{Nodes: c.nodes, Objects: c.objects, RefreshMS: c.refresh.Milliseconds(), Plugin: c.label,
		CacheTTLMS: c.cacheTTL.Milliseconds(), TimeoutMS: c.timeout.Milliseconds(), Started: start.UTC().Format(time.RFC3339)}
	if err := f.setup(ctx, rep); err != nil {
		return rep, err
	}
	rep.SetupS = time.Since(start).Seconds()
	steps := []struct {
		name string
		run  func(context.Context, *result.Report) error
	}{
		{"rotation", f.rotation},
		{"swarm_native", f.swarmNative},
		{"storm", f.storm},
		{"scale_up", f.scaleUp},
		{"provider", f.provider},
	}
	for _, s := range steps {
		if !c.scenarios[s.name] {
			continue
		}
		logf("== scenario %s", s.name)
		t0 := time.Now()
		if err := s.run(ctx, rep); err != nil {
			return rep, fmt.Errorf("scenario %s: %w", s.name, err)
		}
		logf("== scenario %s done in %s", s.name, time.Since(t0).Round(time.Second))
	}
	rep.DurationS = time.Since(start).Seconds()
	return rep, nil
}

// --- small helpers ----------------------------------------------------------

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s fleet: %s\n", time.Now().UTC().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

// run runs a command and returns its stdout; the error carries stderr.
func run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", filepath.Base(name), strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// errStop ends a waitFor at once.
type errStop struct{ error }

// waitFor polls cond until it returns nil, returns errStop, or the
// deadline passes: the harness waits for conditions, never for time.
func waitFor(ctx context.Context, limit time.Duration, what string, cond func() error) error {
	deadline := time.Now().Add(limit)
	poll := 100 * time.Millisecond
	for {
		err := cond()
		if err == nil {
			return nil
		}
		var stop errStop
		if errors.As(err, &stop) {
			return fmt.Errorf("%s: %w", what, stop.error)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not within %s: %w", what, limit, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, ctx.Err())
		case <-time.After(poll):
		}
		if poll < time.Second {
			poll += poll / 2
		}
	}
}

// parallel runs fn for every node, at most width at once, and joins the
// errors.
func parallel(nodes []*node, width int, fn func(*node) error) error {
	sem := make(chan struct{}, width)
	errs := make(chan error, len(nodes))
	for _, n := range nodes {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			errs <- fn(n)
		}()
	}
	var all []error
	for range nodes {
		if err := <-errs; err != nil {
			all = append(all, err)
		}
	}
	return errors.Join(all...)
}
