// Command report turns the fleet harness's JSON reports (test/fleet) into
// docs/fleet.md and its SVG charts, drawn here without external tools.
//
// Usage: go run ./test/fleet/report -out docs/fleet.md -svg docs/fleet RUN.json...
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/dsv-plugin/dsv/test/fleet/result"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "fleet report:", err)
		os.Exit(1)
	}
}

func run() error {
	out := flag.String("out", "docs/fleet.md", "the Markdown report to write")
	svgDir := flag.String("svg", "docs/fleet", "folder of the charts (and of the runs' JSON, runs/*.json, when no file is named)")
	notesFile := flag.String("notes", "", "Markdown put after the introduction (what the figures say); default: notes.md in the -svg folder, when there")
	flag.Parse()
	files := flag.Args()
	if len(files) == 0 {
		var err error
		if files, err = filepath.Glob(filepath.Join(*svgDir, "runs", "*.json")); err != nil {
			return err
		}
	}
	if len(files) == 0 {
		return errors.New("no runs: give the JSON reports of make fleet (REPORT=...), or put them in " + filepath.Join(*svgDir, "runs"))
	}
	var runs []*result.Report
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		var r result.Report
		if err := json.Unmarshal(b, &r); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		runs = append(runs, &r)
	}
	sort.SliceStable(runs, func(i, j int) bool {
		if runs[i].Plugin != runs[j].Plugin {
			return runs[i].Plugin < runs[j].Plugin
		}
		return runs[i].Nodes < runs[j].Nodes
	})
	if err := os.MkdirAll(*svgDir, 0o755); err != nil {
		return err
	}
	rel, err := filepath.Rel(filepath.Dir(*out), *svgDir)
	if err != nil {
		return err
	}
	charts := map[string]string{
		"rotation.svg": rotationChart(runs),
		"reads.svg":    readsChart(runs),
		"storm.svg":    stormChart(runs),
	}
	for name, svg := range charts {
		if err := os.WriteFile(filepath.Join(*svgDir, name), []byte(svg), 0o644); err != nil {
			return err
		}
	}
	if *notesFile == "" {
		*notesFile = filepath.Join(*svgDir, "notes.md")
	}
	notes, err := os.ReadFile(*notesFile)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	md := markdown(runs, rel)
	if len(notes) > 0 {
		i := strings.Index(md, "## Rotation")
		md = md[:i] + strings.TrimSpace(string(notes)) + "\n\n" + md[i:]
	}
	return os.WriteFile(*out, []byte(md), 0o644)
}

// labels lists the plugin builds measured, in order.
func labels(runs []*result.Report) []string {
	var ls []string
	for _, r := range runs {
		if len(ls) == 0 || ls[len(ls)-1] != r.Plugin {
			ls = append(ls, r.Plugin)
		}
	}
	return ls
}

var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"}

func rotationChart(runs []*result.Report) string {
	var ss []series
	for i, l := range labels(runs) {
		var max, p50, nat []point
		for _, r := range runs {
			if r.Plugin != l {
				continue
			}
			if r.Rotation != nil {
				max = append(max, point{float64(r.Nodes), float64(r.Rotation.MaxMS) / 1000})
				p50 = append(p50, point{float64(r.Nodes), float64(r.Rotation.P50MS) / 1000})
			}
			if r.SwarmNative != nil {
				nat = append(nat, point{float64(r.Nodes), float64(r.SwarmNative.MaxMS) / 1000})
			}
		}
		c := palette[i%len(palette)]
		ss = append(ss, series{name: "dsv refresh, last task (" + l + ")", color: c, pts: max},
			series{name: "dsv refresh, median task (" + l + ")", color: c, pts: p50, dashed: true},
			series{name: "Swarm secret update, last task (" + l + ")", color: "#7f7f7f", pts: nat, marker: "square"})
	}
	if len(runs) > 0 {
		var b []point
		for _, r := range runs {
			b = append(b, point{float64(r.Nodes), float64(r.RefreshMS+2000) / 1000})
		}
		ss = append(ss, series{name: "bound: refresh + 2 s", color: "#000", pts: dedupe(b), dashed: true, noMarker: true})
	}
	return lineChart("Rotation: time from the store's new value to the tasks reading it", "nodes", "seconds", ss)
}

func readsChart(runs []*result.Report) string {
	var ss []series
	for i, l := range labels(runs) {
		var pts []point
		for _, r := range runs {
			if r.Plugin == l && r.Rotation != nil {
				pts = append(pts, point{float64(r.Nodes), r.Rotation.BackendReadsPerInterval})
			}
		}
		ss = append(ss, series{name: "reads per refresh interval (" + l + ")", color: palette[i%len(palette)], pts: pts})
	}
	var b []point
	for _, r := range runs {
		b = append(b, point{float64(r.Nodes), float64(r.Nodes * r.Objects)})
	}
	ss = append(ss, series{name: "bound: nodes x objects", color: "#000", pts: dedupe(b), dashed: true, noMarker: true})
	return lineChart("Store reads per refresh interval in steady state (counted at the store)", "nodes", "reads", ss)
}

func stormChart(runs []*result.Report) string {
	var ss []series
	for i, l := range labels(runs) {
		var rec, reads []point
		for _, r := range runs {
			if r.Plugin == l && r.Storm != nil {
				rec = append(rec, point{float64(r.Nodes), float64(r.Storm.RecoverMS) / 1000})
				reads = append(reads, point{float64(r.Nodes), float64(r.Storm.ThrottledByBackend)})
			}
		}
		c := palette[i%len(palette)]
		ss = append(ss, series{name: "every dockerd restarted: seconds until all tasks run (" + l + ")", color: c, pts: rec},
			series{name: "throttling answers the store gave (" + l + ")", color: c, pts: reads, dashed: true, marker: "square"})
	}
	return lineChart("Start-up storm under a throttling store", "nodes", "seconds / answers", ss)
}

func dedupe(ps []point) []point {
	sort.Slice(ps, func(i, j int) bool { return ps[i].x < ps[j].x })
	var out []point
	for _, p := range ps {
		if len(out) == 0 || out[len(out)-1].x != p.x {
			out = append(out, p)
		}
	}
	return out
}

// --- Markdown -------------------------------------------------------------------

func markdown(runs []*result.Report, svgRel string) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	largest := 0
	for _, r := range runs {
		largest = max(largest, r.Nodes)
	}
	w("# dsv on a Swarm fleet: measured\n\n")
	w("<!-- Generated by `make fleet-report` (test/fleet/report) from the runs in docs/fleet/runs/; do not edit by hand. -->\n\n")
	w("Every figure below comes from `make fleet` (test/fleet): N real Docker engines (Engine 29) on one machine, each with its own containerd, dockerd, data and exec roots and network namespace on one bridge, joined into one Swarm (three managers from N = 3), the plugin installed on every node from a local registry with `docker plugin install --alias dsv`, and moto's Secrets Manager behind a proxy that counts every request **at the store** and answers AWS's own `ThrottlingException` above a rate set per scenario (test/fakes/storeproxy). Each task mounts `objects` dsv volumes, one secret each.\n\n")
	w("Runs: ")
	var names []string
	for _, r := range runs {
		names = append(names, fmt.Sprintf("N = %d (%s, %.0f s)", r.Nodes, r.Plugin, r.DurationS))
	}
	w("%s. The largest fleet run here has %d nodes.\n\n", strings.Join(names, ", "), largest)
	w("Reproduce (as root): `make fleet NODES=N LABEL=name PLUGIN_SRC=/path/to/a/checkout REPORT=docs/fleet/runs/name-N.json` for each build and size (PLUGIN_SRC defaults to this checkout), then `make fleet-report`.\n\n")

	w("## Rotation: dsv's refresh beside Swarm's own\n\n![rotation time against N](%s/rotation.svg)\n\n", svgRel)
	w("`rotation`: a global service, one task per node, mounting %d dsv volumes with `refresh`; one secret gets a new value in the store, and each task prints the value when it sees it change (checked every 0.1 s; Docker stamps the line). `swarm_native`: the same rotation the Swarm way, a new `docker secret create --driver dsv` and `docker service update --secret-rm old --secret-add new` (default update parallelism 1: the tasks are replaced one after another).\n\n", objectsOf(runs))
	w("| N | plugin | refresh | tasks | updated | p50 | p95 | max | bound max ≤ refresh + 2 s | reads / interval | bound ≤ N × objects | Swarm: updated | Swarm: p50 | Swarm: max |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range runs {
		if r.Rotation == nil {
			continue
		}
		o := r.Rotation
		nat := "| – | – | –"
		if s := r.SwarmNative; s != nil {
			nat = fmt.Sprintf("| %d/%d | %s | %s", s.TasksUpdated, s.Tasks, sec(s.P50MS), sec(s.MaxMS))
		}
		w("| %d | %s | %s | %d | %d | %s | %s | %s | %s | %.1f | %d %s %s |\n", r.Nodes, r.Plugin, sec(o.RefreshMS), o.Tasks, o.TasksUpdated,
			sec(o.P50MS), sec(o.P95MS), sec(o.MaxMS), okMark(o.MaxMS <= o.RefreshMS+2000 && o.TasksUpdated == o.Tasks),
			o.BackendReadsPerInterval, r.Nodes*r.Objects, okMark(o.BackendReadsPerInterval <= float64(r.Nodes*r.Objects)), nat)
	}
	w("\n![store reads per refresh interval against N](%s/reads.svg)\n\n", svgRel)

	w("## Start-up storms\n\n![storm](%s/storm.svg)\n\n", svgRel)
	w("`storm`: a global service mounting %d volumes (no refresh); the store throttles at a twentieth of nodes × objects reads per second (one second's worth banked), and every plugin has `TIMEOUT=%s` (all reads of a storm at once take 20 s at that rate; the default 5 s cannot outlast it). Then every node's dockerd is stopped and started at once (its tasks end and Swarm starts new ones, whose mounts read again), and separately every plugin is disabled (`-f`) and enabled at once. `mounts_failed`: tasks that failed on a mount error (must be 0); reads: answered with a value (≤ nodes × objects); requests: all, throttled included.\n\n", objectsOf(runs), timeoutOf(runs))
	w("| N | plugin | storm | throttle (reads/s) | mounts failed | reads | requests | throttled | all tasks run again after |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range runs {
		if r.Storm == nil {
			continue
		}
		s := r.Storm
		for _, ph := range []struct {
			name string
			p    result.StormPhase
		}{{"every dockerd restarted", s.StormPhase}, {"every plugin disabled, enabled", s.PluginCycle}} {
			w("| %d | %s | %s | %s | %d %s | %d %s | %d | %d | %s |\n", r.Nodes, r.Plugin, ph.name, trimFloat(s.ThrottleRate),
				ph.p.MountsFailed, okMark(ph.p.MountsFailed == 0), ph.p.BackendReads, okMark(ph.p.BackendReads <= r.Nodes*r.Objects),
				ph.p.BackendRequests, ph.p.ThrottledByBackend, sec(ph.p.RecoverMS))
		}
	}

	w("\n## Scale-up\n\n`scale_up`: a replicated service scaled from 0 to 10 tasks per node at once, each task with %d volumes of its own (`source=...-{{.Task.Slot}}`), all reading the same %d secrets. Mount times are the plugin's `dsv_mount_duration_seconds` histogram summed over the nodes (a bucket's upper bound); start times from the scale command to each container's start.\n\n", objectsOf(runs), objectsOf(runs))
	w("| N | plugin | tasks | nodes used | mounts | tasks failed on a mount | mount p50 | mount p99 | start p50 | start p99 | all running | store reads | bound ≤ N × objects |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range runs {
		if s := r.ScaleUp; s != nil {
			w("| %d | %s | %d | %d | %d | %d | ≤ %s | ≤ %s | %s | %s | %s | %d | %d %s |\n", r.Nodes, r.Plugin, s.Tasks, s.NodesUsed, s.Mounts, s.MountsFailed, sec(s.MountP50MS), sec(s.MountP99MS),
				sec(s.StartP50MS), sec(s.StartP99MS), sec(s.AllRunningMS), s.BackendReads, r.Nodes*r.Objects, okMark(s.BackendReads <= r.Nodes*r.Objects))
		}
	}

	w("\n## Swarm secrets from the provider\n\n`provider`: one `docker secret create --driver dsv` secret used by a service of 10 tasks per node. Provider calls are the plugins' `secret served` log lines on every node.\n\n")
	w("| N | plugin | tasks | provider calls | store reads | all running |\n|---|---|---|---|---|---|\n")
	for _, r := range runs {
		if p := r.Provider; p != nil {
			w("| %d | %s | %d | %d | %d | %s |\n", r.Nodes, r.Plugin, p.Tasks, p.ProviderCalls, p.BackendReads, sec(p.AllRunningMS))
		}
	}

	w("\n## How many nodes fit this machine\n\n")
	w("| N | plugin | memory per node, idle | memory per node, 10 tasks each | fleet set-up | whole run |\n|---|---|---|---|---|---|\n")
	for _, r := range runs {
		loaded := "–"
		if r.MemPerNodeLoadedMiB > 0 {
			loaded = fmt.Sprintf("%.0f MiB", r.MemPerNodeLoadedMiB)
		}
		w("| %d | %s | %.0f MiB | %s | %.0f s | %.0f s |\n", r.Nodes, r.Plugin, r.MemPerNodeMiB, loaded, r.SetupS, r.DurationS)
	}
	w("\nMemory per node is the proportional set size (PSS: shared pages split among their users) of everything a node runs: containerd, dockerd, the containerd shims, the plugin and the tasks, averaged over the nodes; with more nodes the engines' shared pages are split more ways.\n\n")

	w("## Capacity rule\n\n")
	w("In steady state every node re-reads each refreshed secret once per interval, so a store sees\n\n")
	w("    reads per hour = nodes × objects × 3600 ÷ refresh (seconds)\n\n")
	w("Checked against the runs (reads per interval counted at the store, predicted nodes × objects):\n\n| N | plugin | objects | predicted per interval | measured | measured ÷ predicted |\n|---|---|---|---|---|---|\n")
	for _, r := range runs {
		if r.Rotation == nil {
			continue
		}
		pred := float64(r.Nodes * r.Objects)
		w("| %d | %s | %d | %.0f | %.1f | %.2f |\n", r.Nodes, r.Plugin, r.Objects, pred, r.Rotation.BackendReadsPerInterval, r.Rotation.BackendReadsPerInterval/pred)
	}
	w("\nWhat it costs and where the limits are, for %d objects per node:\n\n", objectsOf(runs))
	w("| nodes | refresh | reads / hour | reads / s | AWS Secrets Manager, $ / month | share of GetSecretValue's 10,000 req/s | SSM standard (40 TPS) |\n|---|---|---|---|---|---|---|\n")
	obj := objectsOf(runs)
	for _, n := range []int{20, 100, 1000} {
		for _, ref := range []float64{60, 300} {
			perHour := float64(n*obj) * 3600 / ref
			perS := perHour / 3600
			month := perHour * 730 / 10000 * 0.05
			fits := "fits"
			if perS > 40 {
				fits = "throttles: needs higher throughput"
			}
			w("| %d | %s | %.0f | %.2f | $%.2f | %.3f%% | %s |\n", n, sec(int64(ref*1000)), perHour, perS, month, perS/10000*100, fits)
		}
	}
	w("\nA start-up storm (every node mounting at once) asks for nodes × objects reads within the mount's TIMEOUT; against SSM's 40 TPS that is %d nodes × %d objects per second before throttling, which is what the `storm` scenario reproduces at a small scale.\n\n", 40/max(1, obj), obj)
	w("Prices and limits (checked 2026-12-08):\n\n")
	w("- AWS Secrets Manager: $0.05 per 10,000 API calls, $0.40 per secret and month — https://aws.amazon.com/secrets-manager/pricing/\n")
	w("- GetSecretValue: 10,000 requests per second per account and Region (raised in March 2025) — https://aws.amazon.com/about-aws/whats-new/2025/03/aws-secrets-manager-increases-api-requests-seconds/ and https://docs.aws.amazon.com/secretsmanager/latest/userguide/reference_limits.html\n")
	w("- SSM Parameter Store: standard throughput 40 TPS shared by GetParameter, GetParameters and GetParametersByPath, at no charge; higher throughput at a charge — https://docs.aws.amazon.com/systems-manager/latest/userguide/parameter-store-throughput.html and https://docs.aws.amazon.com/general/latest/gr/ssm.html. The higher-throughput figures of the issue (10,000 TPS, $0.05 per 10,000 interactions) could not be confirmed from the pages stored here (an older page gave 3,000 TPS): check https://aws.amazon.com/systems-manager/pricing/ before relying on them.\n")
	w("- Vault has no per-call price; its limit is the server (and any rate limit quota you set, answered with HTTP 429, which the proxy can imitate).\n")
	return b.String()
}

func objectsOf(runs []*result.Report) int {
	for _, r := range runs {
		return r.Objects
	}
	return 0
}

func timeoutOf(runs []*result.Report) string {
	for _, r := range runs {
		if r.TimeoutMS > 0 {
			return sec(r.TimeoutMS)
		}
	}
	return "5 s"
}

func sec(ms int64) string { return fmt.Sprintf("%.1f s", float64(ms)/1000) }

func okMark(ok bool) string {
	if ok {
		return "✓"
	}
	return "✗"
}

// --- SVG line charts ---------------------------------------------------------------

type point struct{ x, y float64 }

type series struct {
	name     string
	color    string
	pts      []point
	dashed   bool
	noMarker bool
	marker   string
}

func lineChart(title, xLabel, yLabel string, ss []series) string {
	const W, H = 760.0, 420.0
	const left, right, top, bottom = 70.0, 20.0, 40.0, 60.0
	var kept []series
	for _, s := range ss {
		if len(s.pts) > 0 {
			kept = append(kept, s)
		}
	}
	ss = kept
	legendH := 18.0 * float64(len(ss))
	plotH := H - top - bottom
	var xs []float64
	ymax := 0.0
	for _, s := range ss {
		for _, p := range s.pts {
			xs = append(xs, p.x)
			ymax = math.Max(ymax, p.y)
		}
	}
	sort.Float64s(xs)
	xmin, xmax := 0.0, 1.0
	if len(xs) > 0 {
		xmin, xmax = 0, xs[len(xs)-1]
	}
	if xmax == xmin {
		xmax = xmin + 1
	}
	step := niceStep(ymax / 5)
	ytop := math.Max(step, math.Ceil(ymax/step)*step)
	px := func(x float64) float64 { return left + (x-xmin)/(xmax-xmin)*(W-left-right) }
	py := func(y float64) float64 { return top + plotH - y/ytop*plotH }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+"\n", W, H+legendH, W, H+legendH)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="#fff"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%.0f" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", left, esc(title))
	for y := 0.0; y <= ytop+step/2; y += step {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", left, py(y), W-right, py(y))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, py(y)+4, trimFloat(y))
	}
	seen := map[float64]bool{}
	for _, x := range xs {
		if seen[x] {
			continue
		}
		seen[x] = true
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#eee"/>`+"\n", px(x), top, px(x), top+plotH)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", px(x), top+plotH+16, trimFloat(x))
	}
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#333"/>`+"\n", left, top+plotH, W-right, top+plotH)
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#333"/>`+"\n", left, top, left, top+plotH)
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", (left+W-right)/2, top+plotH+36, esc(xLabel))
	fmt.Fprintf(&b, `<text transform="translate(18 %.1f) rotate(-90)" text-anchor="middle">%s</text>`+"\n", top+plotH/2, esc(yLabel))
	for i, s := range ss {
		pts := dedupe(append([]point(nil), s.pts...))
		var d []string
		for _, p := range pts {
			d = append(d, fmt.Sprintf("%.1f,%.1f", px(p.x), py(p.y)))
		}
		dash := ""
		if s.dashed {
			dash = ` stroke-dasharray="6 4"`
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2"%s points="%s"/>`+"\n", s.color, dash, strings.Join(d, " "))
		if !s.noMarker {
			for _, p := range pts {
				if s.marker == "square" {
					fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="7" height="7" fill="%s"/>`+"\n", px(p.x)-3.5, py(p.y)-3.5, s.color)
				} else {
					fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s"/>`+"\n", px(p.x), py(p.y), s.color)
				}
			}
		}
		ly := H + 18*float64(i) - 6
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"%s/>`+"\n", left, ly-4, left+28, ly-4, s.color, dash)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f">%s</text>`+"\n", left+36, ly, esc(s.name))
	}
	b.WriteString("</svg>\n")
	return b.String()
}

func niceStep(raw float64) float64 {
	if raw <= 0 {
		return 1
	}
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if raw <= m*mag {
			return m * mag
		}
	}
	return 10 * mag
}

func trimFloat(v float64) string {
	s := fmt.Sprintf("%.2f", v)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	return s
}

func esc(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
