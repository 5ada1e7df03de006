package main

import (
	"strconv"
	"strings"
	"testing"
)

// TestMountHist: buckets summed over the outcome label, the difference of
// two scrapes, and quantiles as the upper bound of the bucket that holds
// them.
func TestMountHist(t *testing.T) {
	scrape := func(ok, slow float64) hist {
		t.Helper()
		text := strings.NewReplacer("OK", trimF(ok), "ALL", trimF(ok+slow)).Replace(`# HELP dsv_mount_duration_seconds x
# TYPE dsv_mount_duration_seconds histogram
dsv_mount_duration_seconds_bucket{outcome="ok",le="0.1"} OK
dsv_mount_duration_seconds_bucket{outcome="ok",le="1"} ALL
dsv_mount_duration_seconds_bucket{outcome="ok",le="+Inf"} ALL
dsv_mount_duration_seconds_sum{outcome="ok"} 3
dsv_mount_duration_seconds_count{outcome="ok"} ALL
dsv_mount_duration_seconds_bucket{outcome="error",le="0.1"} 1
dsv_mount_duration_seconds_bucket{outcome="error",le="1"} 1
dsv_mount_duration_seconds_bucket{outcome="error",le="+Inf"} 1
dsv_mount_duration_seconds_count{outcome="error"} 1
dsv_backend_reads_total{backend="aws"} 7
`)
		h, err := parseMountHist(strings.NewReader(text))
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	before := scrape(10, 0)
	after := scrape(100, 10) // 90 more fast mounts, 10 slow ones
	d := after.minus(before)
	if d.count != 100 {
		t.Fatalf("count %v, want 100", d.count)
	}
	for _, tc := range []struct {
		q    float64
		want int64
	}{{q: 0.5, want: 100}, {q: 0.9, want: 100}, {q: 0.99, want: 1000}} {
		if got := d.quantileMS(tc.q); got != tc.want {
			t.Errorf("q%v = %d ms, want %d", tc.q, got, tc.want)
		}
	}
	if got := (hist{}).quantileMS(0.5); got != 0 {
		t.Errorf("empty histogram: %d, want 0", got)
	}
}

func trimF(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
