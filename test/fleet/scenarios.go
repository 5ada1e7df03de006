package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dsv-plugin/dsv/test/fakes/storeproxy"
	"github.com/dsv-plugin/dsv/test/fleet/result"
)

// watchLoop prints "seen VALUE" whenever the file's content changes,
// checking ten times a second; `read` is a shell builtin, so a check forks
// only the sleep. Docker stamps each line as it arrives: that stamp is
// when the task read the value. The trap ends the task at once on
// SIGTERM (a shell as pid 1 ignores it otherwise, and every stop would
// wait out the 10 s grace period, which Swarm's rolling update would pay
// once per task).
func watchLoop(file string) []string {
	return []string{"sh", "-c", `trap "exit 0" TERM; o=; while :; do read -r v < ` + file + `; if [ "$v" != "$o" ]; then echo "seen $v"; o=$v; fi; sleep 0.1; done`}
}

// sleepForever idles until SIGTERM, and ends then (see watchLoop).
var sleepForever = []string{"sh", "-c", `trap "exit 0" TERM; while :; do sleep 1; done`}

func randomValue(prefix string) string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

// mounts are the --mount arguments of objects dsv volumes, one secret
// each: SOURCE-k on /s/k, secret fleet/NAME/k, file /s/k/v.
func (f *fleet) mounts(source, secret string, refresh time.Duration) []string {
	var args []string
	for k := 1; k <= f.cfg.objects; k++ {
		m := fmt.Sprintf("type=volume,volume-driver=%s,source=%s-%d,target=/s/%d,volume-opt=backend=aws,volume-opt=secret=%s/%d,volume-opt=layout=dir,volume-opt=filename=v",
			pluginAlias, source, k, k, secret, k)
		if refresh > 0 {
			m += ",volume-opt=refresh=" + refresh.String()
		}
		args = append(args, "--mount", m)
	}
	return args
}

func (f *fleet) createService(ctx context.Context, name string, args []string, cmd []string) error {
	full := append([]string{"service", "create", "--detach", "--no-resolve-image", "--name", name,
		"--restart-delay", "1s"}, args...)
	full = append(append(full, image), cmd...)
	_, err := f.mgr().docker(ctx, full...)
	return err
}

// removeService removes svc and waits until no node holds a container of it.
func (f *fleet) removeService(ctx context.Context, svc string) error {
	if _, err := f.mgr().docker(ctx, "service", "rm", svc); err != nil {
		return err
	}
	return waitFor(ctx, 3*time.Minute, "the containers of "+svc+" are gone", func() error {
		left := 0
		var mu sync.Mutex
		err := parallel(f.nodes, 8, func(n *node) error {
			out, err := n.docker(ctx, "ps", "-aq", "--filter", "label=com.docker.swarm.service.name="+svc)
			mu.Lock()
			left += len(strings.Fields(out))
			mu.Unlock()
			return err
		})
		if err != nil {
			return err
		}
		if left > 0 {
			return fmt.Errorf("%d containers left", left)
		}
		return nil
	})
}

// running counts the tasks of svc that run, as the managers see them.
func (f *fleet) running(ctx context.Context, svc string) (int, error) {
	out, err := f.mgr().docker(ctx, "service", "ps", svc, "--filter", "desired-state=running", "--format", "{{.CurrentState}}")
	if err != nil {
		return 0, err
	}
	n := 0
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "Running") {
			n++
		}
	}
	return n, nil
}

func (f *fleet) waitRunning(ctx context.Context, svc string, want int, limit time.Duration) error {
	return waitFor(ctx, limit, fmt.Sprintf("%d running tasks of %s", want, svc), func() error {
		got, err := f.running(ctx, svc)
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("%d running", got)
		}
		return nil
	})
}

// taskErrors counts the tasks of svc whose error names a volume mount.
func (f *fleet) mountErrors(ctx context.Context, svc string) (int, []string, error) {
	out, err := f.mgr().docker(ctx, "service", "ps", svc, "--no-trunc", "--format", "{{.Error}}")
	if err != nil {
		return 0, nil, err
	}
	var errs []string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "mount") || strings.Contains(l, "VolumeDriver") {
			errs = append(errs, l)
		}
	}
	return len(errs), errs, nil
}

// seen is the first time each running container of svc printed "seen
// want": container id -> Docker's stamp of the line.
func (f *fleet) seen(ctx context.Context, svc, want string) (map[string]time.Time, int, error) {
	var mu sync.Mutex
	at := map[string]time.Time{}
	total := 0
	err := parallel(f.nodes, 8, func(n *node) error {
		out, err := n.docker(ctx, "ps", "-q", "--filter", "label=com.docker.swarm.service.name="+svc)
		if err != nil {
			return err
		}
		for _, id := range strings.Fields(out) {
			mu.Lock()
			total++
			mu.Unlock()
			logs, err := n.docker(ctx, "logs", "--timestamps", id)
			if err != nil {
				continue // the container went meanwhile
			}
			s := bufio.NewScanner(strings.NewReader(logs))
			for s.Scan() {
				ts, msg, ok := strings.Cut(s.Text(), " ")
				if !ok || msg != "seen "+want {
					continue
				}
				t, err := time.Parse(time.RFC3339Nano, ts)
				if err != nil {
					return fmt.Errorf("docker logs stamp %q: %w", ts, err)
				}
				mu.Lock()
				at[n.name()+"/"+id] = t
				mu.Unlock()
				break
			}
		}
		return nil
	})
	return at, total, err
}

// waitSeen waits until want running containers of svc printed value.
func (f *fleet) waitSeen(ctx context.Context, svc, value string, want int, limit time.Duration) (map[string]time.Time, error) {
	var at map[string]time.Time
	err := waitFor(ctx, limit, fmt.Sprintf("%d tasks of %s read the value", want, svc), func() error {
		var total int
		var err error
		at, total, err = f.seen(ctx, svc, value)
		if err != nil {
			return err
		}
		if len(at) < want || total != want {
			return fmt.Errorf("%d of %d running containers read it", len(at), total)
		}
		return nil
	})
	return at, err
}

// latencies sorts the delays from t0 to each stamp, in ms.
func latencies(t0 time.Time, at map[string]time.Time) []int64 {
	var ms []int64
	for _, t := range at {
		ms = append(ms, t.Sub(t0).Milliseconds())
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i] < ms[j] })
	return ms
}

// pct is the nearest-rank percentile of sorted values.
func pct(sorted []int64, p float64) int64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// --- 1. rotation --------------------------------------------------------------

func (f *fleet) rotation(ctx context.Context, rep *result.Report) error {
	n := len(f.nodes)
	refresh := f.cfg.refresh
	v0 := randomValue("v0")
	for k := 1; k <= f.cfg.objects; k++ {
		if err := f.putSecret(ctx, fmt.Sprintf("fleet/rot/%d", k), v0); err != nil {
			return err
		}
	}
	svc := "fleet-rot"
	if err := f.createService(ctx, svc, append([]string{"--mode", "global"}, f.mounts(svc, "fleet/rot", refresh)...), watchLoop("/s/1/v")); err != nil {
		return err
	}
	if _, err := f.waitSeen(ctx, svc, v0, n, 5*time.Minute); err != nil {
		return err
	}
	// Steady state: reads the store answers over whole intervals, once
	// every volume's refresh runs.
	const intervals = 3
	mark := f.aws.Mark()
	window := time.NewTimer(intervals * refresh)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-window.C: // the measurement window itself, not a wait for a state
	}
	steady := storeproxy.Count(f.aws.Since(mark))

	v1 := randomValue("v1")
	t0 := time.Now()
	if err := f.putSecret(ctx, "fleet/rot/1", v1); err != nil {
		return err
	}
	at, err := f.waitSeen(ctx, svc, v1, n, refresh+2*time.Minute)
	r := &result.Rotation{Tasks: n, TasksUpdated: len(at), RefreshMS: refresh.Milliseconds(),
		BackendReadsPerInterval: float64(steady.Answered) / intervals, SteadyIntervals: intervals, BackendRequests: steady.Requests}
	ms := latencies(t0, at)
	r.P50MS, r.P95MS, r.MaxMS = pct(ms, 50), pct(ms, 95), pct(ms, 100)
	rep.Rotation = r
	rep.Bound("rotation: every task updated", r.TasksUpdated == r.Tasks, "%d of %d tasks read the new value", r.TasksUpdated, r.Tasks)
	rep.Bound("rotation: max_ms <= refresh + 2 s", err == nil && r.MaxMS <= refresh.Milliseconds()+2000, "max %d ms, refresh %d ms (p50 %d, p95 %d)", r.MaxMS, refresh.Milliseconds(), r.P50MS, r.P95MS)
	rep.Bound("rotation: reads per interval <= nodes x objects", r.BackendReadsPerInterval <= float64(n*f.cfg.objects), "%.1f reads per interval, nodes x objects = %d", r.BackendReadsPerInterval, n*f.cfg.objects)
	logf("rotation: %+v", *r)
	if err != nil {
		logf("rotation: %v", err)
	}
	return f.removeService(ctx, svc)
}

// --- 5. the same rotation, the Swarm way ---------------------------------------

func (f *fleet) swarmNative(ctx context.Context, rep *result.Report) error {
	n := len(f.nodes)
	v0 := randomValue("v0")
	if err := f.putSecret(ctx, "fleet/nat", v0); err != nil {
		return err
	}
	secret := func(name string) error {
		_, err := f.mgr().docker(ctx, "secret", "create", "--driver", pluginAlias, "--label", "dsv.backend=aws", "--label", "dsv.secret=fleet/nat", name)
		return err
	}
	if err := secret("fleet-nat-0"); err != nil {
		return err
	}
	svc := "fleet-nat"
	created := time.Now()
	if err := f.createService(ctx, svc, []string{"--mode", "global", "--secret", "source=fleet-nat-0,target=nat"}, watchLoop("/run/secrets/nat")); err != nil {
		return err
	}
	if _, err := f.waitSeen(ctx, svc, v0, n, 5*time.Minute); err != nil {
		return err
	}
	// The leader's plugin may answer from its cache for CACHE_TTL after
	// the first read (as documented); the rotation starts past it.
	if err := waitFor(ctx, f.cfg.cacheTTL+time.Minute, "CACHE_TTL passed since the first read", func() error {
		if left := time.Until(created.Add(f.cfg.cacheTTL + time.Second)); left > 0 {
			return fmt.Errorf("%s left", left.Round(time.Second))
		}
		return nil
	}); err != nil {
		return err
	}
	mark := f.aws.Mark()
	v1 := randomValue("v1")
	t0 := time.Now()
	if err := f.putSecret(ctx, "fleet/nat", v1); err != nil {
		return err
	}
	if err := secret("fleet-nat-1"); err != nil {
		return err
	}
	if _, err := f.mgr().docker(ctx, "service", "update", "--detach", "--secret-rm", "fleet-nat-0", "--secret-add", "source=fleet-nat-1,target=nat", svc); err != nil {
		return err
	}
	at, err := f.waitSeen(ctx, svc, v1, n, 10*time.Minute)
	s := &result.SwarmNative{Tasks: n, TasksUpdated: len(at), UpdateParallelism: 1, BackendReads: storeproxy.Count(f.aws.Since(mark)).Answered}
	ms := latencies(t0, at)
	s.P50MS, s.P95MS, s.MaxMS = pct(ms, 50), pct(ms, 95), pct(ms, 100)
	rep.SwarmNative = s
	rep.Bound("swarm_native: every task runs with the new value", err == nil && s.TasksUpdated == n, "%d of %d tasks, max %d ms", s.TasksUpdated, n, s.MaxMS)
	logf("swarm_native: %+v", *s)
	if err := f.removeService(ctx, svc); err != nil {
		return err
	}
	for _, name := range []string{"fleet-nat-0", "fleet-nat-1"} {
		_, _ = f.mgr().docker(ctx, "secret", "rm", name)
	}
	return nil
}

// --- 2. start-up storms ------------------------------------------------------------

func (f *fleet) storm(ctx context.Context, rep *result.Report) error {
	n := len(f.nodes)
	for k := 1; k <= f.cfg.objects; k++ {
		if err := f.putSecret(ctx, fmt.Sprintf("fleet/storm/%d", k), randomValue("s")); err != nil {
			return err
		}
	}
	svc := "fleet-storm"
	if err := f.createService(ctx, svc, append([]string{"--mode", "global"}, f.mounts(svc, "fleet/storm", 0)...), sleepForever); err != nil {
		return err
	}
	if err := f.waitRunning(ctx, svc, n, 5*time.Minute); err != nil {
		return err
	}
	// Well below nodes x objects a second: a twentieth of it, one second's
	// worth banked. The engines of a 2-core machine restart over tens of
	// seconds, which spreads their mounts: at a fifth, 20 nodes met no
	// throttling at all.
	rate := math.Max(1, float64(n*f.cfg.objects)/20)
	s := &result.Storm{ThrottleRate: rate, ThrottleBurst: int(rate)}
	f.aws.Throttle(rate, int(rate))
	defer f.aws.Throttle(0, 0)

	phase := func(name string, disrupt func(*node) error) (result.StormPhase, error) {
		before, _, err := f.mountErrors(ctx, svc)
		if err != nil {
			return result.StormPhase{}, err
		}
		mark := f.aws.Mark()
		t0 := time.Now()
		if err := parallel(f.nodes, len(f.nodes), disrupt); err != nil {
			return result.StormPhase{}, fmt.Errorf("%s: %w", name, err)
		}
		err = f.waitRunningFresh(ctx, svc, t0, n, 10*time.Minute)
		p := result.StormPhase{Tasks: n, RecoverMS: time.Since(t0).Milliseconds()}
		c := storeproxy.Count(f.aws.Since(mark))
		p.BackendReads, p.BackendRequests, p.ThrottledByBackend = c.Answered, c.Requests, c.Throttled
		after, errs, merr := f.mountErrors(ctx, svc)
		if merr != nil {
			return p, merr
		}
		p.MountsFailed = after - before
		if p.MountsFailed > 0 {
			logf("storm %s: failed mounts: %s", name, strings.Join(errs[:min(3, len(errs))], " | "))
		}
		logf("storm %s: %+v", name, p)
		return p, err
	}
	var err error
	s.StormPhase, err = phase("dockerd restart", func(nd *node) error {
		nd.stopDockerd()
		return nd.startDockerd(ctx)
	})
	if err != nil {
		return err
	}
	s.PluginCycle, err = phase("plugin disable/enable", func(nd *node) error {
		if _, err := nd.docker(ctx, "plugin", "disable", "-f", pluginAlias); err != nil {
			return err
		}
		_, err := nd.docker(ctx, "plugin", "enable", pluginAlias)
		return err
	})
	if err != nil {
		return err
	}
	rep.Storm = s
	lim := n * f.cfg.objects
	rep.Bound("storm (dockerd restart): mounts_failed = 0", s.MountsFailed == 0, "%d failed mounts; all %d tasks ran again in %d ms", s.MountsFailed, n, s.RecoverMS)
	rep.Bound("storm (dockerd restart): backend_reads <= nodes x objects", s.BackendReads <= lim, "%d reads answered (%d requests), limit %d", s.BackendReads, s.BackendRequests, lim)
	rep.Bound("storm (dockerd restart): the store throttled", s.ThrottledByBackend > 0, "%d throttling answers at %.0f reads/s", s.ThrottledByBackend, rate)
	rep.Bound("storm (plugin cycle): mounts_failed = 0", s.PluginCycle.MountsFailed == 0, "%d failed mounts; all %d tasks ran in %d ms", s.PluginCycle.MountsFailed, n, s.PluginCycle.RecoverMS)
	rep.Bound("storm (plugin cycle): backend_reads <= nodes x objects", s.PluginCycle.BackendReads <= lim, "%d reads answered (%d requests, %d throttled), limit %d", s.PluginCycle.BackendReads, s.PluginCycle.BackendRequests, s.PluginCycle.ThrottledByBackend, lim)
	return f.removeService(ctx, svc)
}

// waitRunningFresh waits until every node runs a container of svc that
// started after t0, or one from before that still runs (a plugin cycle
// need not stop the tasks), and the managers count want running tasks.
func (f *fleet) waitRunningFresh(ctx context.Context, svc string, t0 time.Time, want int, limit time.Duration) error {
	return waitFor(ctx, limit, fmt.Sprintf("%d tasks of %s run again", want, svc), func() error {
		var mu sync.Mutex
		nodesOK := 0
		err := parallel(f.nodes, 8, func(n *node) error {
			out, err := n.docker(ctx, "ps", "-q", "--filter", "label=com.docker.swarm.service.name="+svc, "--filter", "status=running")
			if err != nil {
				return err
			}
			if len(strings.Fields(out)) > 0 {
				mu.Lock()
				nodesOK++
				mu.Unlock()
			}
			return nil
		})
		if err != nil {
			return err
		}
		if nodesOK != want {
			return fmt.Errorf("%d of %d nodes run a task", nodesOK, want)
		}
		got, err := f.running(ctx, svc)
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("the managers count %d running", got)
		}
		return nil
	})
}

// --- 3. scale-up -------------------------------------------------------------------

func (f *fleet) scaleUp(ctx context.Context, rep *result.Report) error {
	n := len(f.nodes)
	tasks := n * f.cfg.perNode
	for k := 1; k <= f.cfg.objects; k++ {
		if err := f.putSecret(ctx, fmt.Sprintf("fleet/scale/%d", k), randomValue("s")); err != nil {
			return err
		}
	}
	svc := "fleet-scale"
	// One volume per task and object: every task mounts its own five.
	// --replicas-max-per-node: left to itself, Swarm placed 50 tasks on 2
	// of 5 nodes right after the storm; the scenario is perNode per node.
	if err := f.createService(ctx, svc, append([]string{"--replicas", "0", "--replicas-max-per-node", strconv.Itoa(f.cfg.perNode)}, f.mounts(svc+"-{{.Task.Slot}}", "fleet/scale", 0)...), sleepForever); err != nil {
		return err
	}
	hist0, err := f.mountHistograms(ctx)
	if err != nil {
		return err
	}
	mark := f.aws.Mark()
	t0 := time.Now()
	if _, err := f.mgr().docker(ctx, "service", "scale", "--detach", fmt.Sprintf("%s=%d", svc, tasks)); err != nil {
		return err
	}
	if err := f.waitRunning(ctx, svc, tasks, 6*time.Minute); err != nil {
		return err
	}
	s := &result.ScaleUp{Tasks: tasks, AllRunningMS: time.Since(t0).Milliseconds()}
	rep.MemPerNodeLoadedMiB = f.memPerNodeMiB()
	c := storeproxy.Count(f.aws.Since(mark))
	s.BackendReads, s.Requests = c.Answered, c.Requests
	hist1, err := f.mountHistograms(ctx)
	if err != nil {
		return err
	}
	d := hist1.minus(hist0)
	s.Mounts = int(d.count)
	s.MountP50MS, s.MountP99MS = d.quantileMS(0.50), d.quantileMS(0.99)
	starts, used, err := f.startDelays(ctx, svc, t0)
	if err != nil {
		return err
	}
	s.NodesUsed = used
	// A failed mount fails its task; Swarm starts another, elsewhere when
	// a node keeps failing (which NodesUsed shows).
	if s.MountsFailed, _, err = f.mountErrors(ctx, svc); err != nil {
		return err
	}
	s.StartP50MS, s.StartP99MS = pct(starts, 50), pct(starts, 99)
	rep.ScaleUp = s
	rep.Bound("scale_up: mounts_failed = 0", s.MountsFailed == 0, "%d tasks failed on a mount; %d of %d nodes ran the tasks", s.MountsFailed, s.NodesUsed, n)
	rep.Bound("scale_up: store reads <= nodes x objects", s.BackendReads <= n*f.cfg.objects, "%d reads for %d tasks x %d volumes, limit %d", s.BackendReads, tasks, f.cfg.objects, n*f.cfg.objects)
	logf("scale_up: %+v", *s)
	return f.removeService(ctx, svc)
}

// startDelays: from t0 to each running container's start, sorted, in ms.
// used counts the nodes that run one at least.
func (f *fleet) startDelays(ctx context.Context, svc string, t0 time.Time) (ms []int64, used int, err error) {
	var mu sync.Mutex
	err = parallel(f.nodes, 8, func(n *node) error {
		out, err := n.docker(ctx, "ps", "-q", "--filter", "label=com.docker.swarm.service.name="+svc)
		if err != nil || strings.TrimSpace(out) == "" {
			return err
		}
		st, err := n.docker(ctx, append([]string{"inspect", "--format", "{{.State.StartedAt}}"}, strings.Fields(out)...)...)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		used++
		for _, l := range strings.Fields(st) {
			t, err := time.Parse(time.RFC3339Nano, l)
			if err != nil {
				return err
			}
			ms = append(ms, t.Sub(t0).Milliseconds())
		}
		return nil
	})
	sort.Slice(ms, func(i, j int) bool { return ms[i] < ms[j] })
	return ms, used, err
}

// --- 4. Swarm secrets from the provider ------------------------------------------------

func (f *fleet) provider(ctx context.Context, rep *result.Report) error {
	n := len(f.nodes)
	tasks := n * f.cfg.perNode
	if err := f.putSecret(ctx, "fleet/prov", randomValue("p")); err != nil {
		return err
	}
	if _, err := f.mgr().docker(ctx, "secret", "create", "--driver", pluginAlias, "--label", "dsv.backend=aws", "--label", "dsv.secret=fleet/prov", "fleet-prov"); err != nil {
		return err
	}
	served0 := f.providerCalls()
	mark := f.aws.Mark()
	t0 := time.Now()
	svc := "fleet-prov"
	if err := f.createService(ctx, svc, []string{"--replicas", strconv.Itoa(tasks), "--replicas-max-per-node", strconv.Itoa(f.cfg.perNode), "--secret", "fleet-prov"}, sleepForever); err != nil {
		return err
	}
	if err := f.waitRunning(ctx, svc, tasks, 6*time.Minute); err != nil {
		return err
	}
	p := &result.Provider{Tasks: tasks, AllRunningMS: time.Since(t0).Milliseconds(), BackendReads: storeproxy.Count(f.aws.Since(mark)).Answered}
	p.ProviderCalls = f.providerCalls() - served0
	rep.Provider = p
	rep.Bound("provider: every task runs", true, "%d tasks in %d ms, %d provider calls, %d store reads", tasks, p.AllRunningMS, p.ProviderCalls, p.BackendReads)
	logf("provider: %+v", *p)
	if err := f.removeService(ctx, svc); err != nil {
		return err
	}
	_, _ = f.mgr().docker(ctx, "secret", "rm", "fleet-prov")
	return nil
}

// providerCalls counts the plugins' "secret served" lines in every
// node's dockerd log (a plugin's output goes there).
func (f *fleet) providerCalls() int {
	total := 0
	for _, n := range f.nodes {
		b, err := os.ReadFile(n.dockerLog())
		if err != nil {
			continue
		}
		total += strings.Count(string(b), "secret served")
	}
	return total
}
