package main

import (
	"encoding/xml"
	"io"
	"strconv"
	"strings"
	"testing"

	"github.com/dsv-plugin/dsv/test/fleet/result"
)

func runs() []*result.Report {
	mk := func(label string, n int, maxMS int64, reads float64, failed int) *result.Report {
		return &result.Report{Nodes: n, Objects: 5, RefreshMS: 5000, Plugin: label,
			Rotation:    &result.Rotation{Tasks: n, TasksUpdated: n, MaxMS: maxMS, RefreshMS: 5000, BackendReadsPerInterval: reads},
			SwarmNative: &result.SwarmNative{Tasks: n, TasksUpdated: n, MaxMS: 2 * maxMS},
			Storm:       &result.Storm{StormPhase: result.StormPhase{Tasks: n, MountsFailed: failed, RecoverMS: 9000}},
		}
	}
	return []*result.Report{mk("after", 5, 3000, 25, 0), mk("after", 20, 6000, 100, 0), mk("before", 5, 3500, 25, 1), mk("before", 20, 8000, 130, 3)}
}

// TestCharts: each chart is well-formed SVG with one line per series that
// has points, and the points follow the figures (a larger value sits
// higher: a smaller y).
func TestCharts(t *testing.T) {
	for name, svg := range map[string]string{"rotation": rotationChart(runs()), "reads": readsChart(runs()), "storm": stormChart(runs())} {
		d := xml.NewDecoder(strings.NewReader(svg))
		lines := 0
		for {
			tok, err := d.Token()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: not well-formed: %v", name, err)
			}
			if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "polyline" {
				lines++
			}
		}
		if lines < 2 {
			t.Errorf("%s: %d lines, want one per build at least", name, lines)
		}
	}
	// Same scale: 130 reads (before, N=20) plots above 100 (after, N=20).
	svg := readsChart(runs())
	ys := map[string]string{}
	for _, l := range strings.Split(svg, "\n") {
		if strings.HasPrefix(l, "<polyline") {
			pts := l[strings.Index(l, `points="`)+8:]
			pts = pts[:strings.IndexByte(pts, '"')]
			f := strings.Fields(pts)
			last := f[len(f)-1]
			ys[l[strings.Index(l, `stroke="`)+8:strings.Index(l, `stroke="`)+15]] = last[strings.IndexByte(last, ',')+1:]
		}
	}
	a, errA := strconv.ParseFloat(ys[palette[0]], 64)
	b, errB := strconv.ParseFloat(ys[palette[1]], 64)
	if errA != nil || errB != nil {
		t.Fatalf("points: %v %v (%q)", errA, errB, ys)
	}
	if !(a > b) { // "after" is palette 0; y grows downwards
		t.Errorf("reads: after's last point y=%v should be below before's y=%v", a, b)
	}
}

// TestMarkdown: a row per run in the scenario tables, failed bounds marked.
func TestMarkdown(t *testing.T) {
	md := markdown(runs(), "fleet")
	for _, want := range []string{"| 20 | before | 5.0 s | 20 | 20 |", "| 3 ✗ |", "| 0 ✓ |", "![rotation time against N](fleet/rotation.svg)", "nodes × objects × 3600 ÷ refresh"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q", want)
		}
	}
}
