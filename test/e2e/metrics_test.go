//go:build e2e

package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scraped is one scrape of the plugin's metrics endpoint.
type scraped struct {
	body string
	fams map[string]*dto.MetricFamily
}

// scrapeMetrics GETs url and parses the answer with Prometheus's own
// parser; it returns a complaint instead when either fails.
func scrapeMetrics(url string) (scraped, string) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return scraped{}, err.Error()
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return scraped{}, err.Error()
	}
	if resp.StatusCode != http.StatusOK {
		return scraped{}, fmt.Sprintf("%s: %s", resp.Status, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(b)))
	if err != nil {
		return scraped{}, fmt.Sprintf("Prometheus's parser refuses the scrape: %v", err)
	}
	return scraped{body: string(b), fams: fams}, ""
}

// value is the value of the series of name whose labels include labels
// (name, value pairs): a counter's or gauge's value, a histogram's count;
// 0 when there is no such series.
func (s scraped) value(name string, labels ...string) float64 {
next:
	for _, m := range s.fams[name].GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range m.Label {
				found = found || (l.GetName() == labels[i] && l.GetValue() == labels[i+1])
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return 0
}

// freePort returns a TCP port of 127.0.0.1 that nothing listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestMetricsEndpoint sets METRICS_ADDR on the plugin, mounts volumes from
// moto and scrapes the endpoint over the host network as Prometheus would:
// reads by outcome, mount latency, mounted volumes, refreshes, swaps and
// the last read move; the canary (a secret value) and the secrets' names
// (METRICS_OBJECT_NAMES is off) never appear in a scrape.
func TestMetricsEndpoint(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	url := "http://" + addr + "/metrics"
	changePluginSettings(t, map[string]string{"METRICS_ADDR": addr, "METRICS_OBJECT_NAMES": "false"})
	sc := newScope(t)

	var scrapes []scraped
	scrape := func(what string, cond func(s scraped) string) scraped {
		t.Helper()
		var last scraped
		eventually(t, 20*time.Second, what, func() string {
			s, complaint := scrapeMetrics(url)
			if complaint != "" {
				return complaint
			}
			scrapes = append(scrapes, s)
			last = s
			return cond(s)
		})
		return last
	}
	start := scrape("the endpoint answers", func(scraped) string { return "" })
	if start.value("dsv_build_info") != 1 {
		t.Errorf("no dsv_build_info:\n%s", start.body)
	}

	secret := env.name("metrics/db")
	createSecret(t, secret, env.canary)
	vol := sc.createVolume("metrics", "backend=aws", "secret="+secret, "layout=dir", "filename=pw", "refresh=1s")
	sc.wantCanary([]string{"-v", vol + ":/run/secrets"}, "/run/secrets/pw")
	sc.start("metrics", "-v", vol+":/run/secrets")
	missingSecret := env.name("metrics/none")
	missing := sc.createVolume("metrics-missing", "backend=aws", "secret="+missingSecret)
	sc.runFail([]string{"-v", missing + ":/run/secrets/x"}, "true")

	mounted := scrape("reads, mounts and the mounted volume counted", func(s scraped) string {
		var problems []string
		want := func(what string, got, min float64) {
			if got < min {
				problems = append(problems, fmt.Sprintf("%s = %v, want at least %v", what, got, min))
			}
		}
		want("ok aws reads", s.value("dsv_backend_reads_total", "backend", "aws", "outcome", "ok")-start.value("dsv_backend_reads_total", "backend", "aws", "outcome", "ok"), 1)
		want("not_found aws reads", s.value("dsv_backend_reads_total", "backend", "aws", "outcome", "not_found")-start.value("dsv_backend_reads_total", "backend", "aws", "outcome", "not_found"), 1)
		want("aws read latencies", s.value("dsv_backend_read_duration_seconds", "backend", "aws")-start.value("dsv_backend_read_duration_seconds", "backend", "aws"), 2)
		want("ok mounts", s.value("dsv_mount_duration_seconds", "outcome", "ok")-start.value("dsv_mount_duration_seconds", "outcome", "ok"), 2)
		want("failed mounts", s.value("dsv_mount_duration_seconds", "outcome", "error")-start.value("dsv_mount_duration_seconds", "outcome", "error"), 1)
		want("mounted volumes", s.value("dsv_volumes_mounted"), 1)
		want("volumes", s.value("dsv_volumes"), 2)
		want("refreshes of "+vol, s.value("dsv_refreshes_total", "volume", vol, "outcome", "ok"), 1)
		want("last read of "+vol, s.value("dsv_volume_last_read_timestamp_seconds", "volume", vol), float64(time.Now().Add(-time.Minute).Unix()))
		return strings.Join(problems, "; ")
	})

	// A rotation: the refresh swaps the new value in, and the last read
	// moves on.
	putSecretValue(t, secret, env.canary+"-rotated")
	scrape("the rotation's swap counted", func(s scraped) string {
		if got := s.value("dsv_refresh_swaps_total", "volume", vol); got < 1 {
			return fmt.Sprintf("dsv_refresh_swaps_total{volume=%q} = %v", vol, got)
		}
		if s.value("dsv_volume_last_read_timestamp_seconds", "volume", vol) <= mounted.value("dsv_volume_last_read_timestamp_seconds", "volume", vol) {
			return "the last read did not move"
		}
		return ""
	})

	for i, s := range scrapes {
		if strings.Contains(s.body, env.canary) {
			t.Errorf("scrape %d holds the canary, a secret value:\n%s", i, s.body)
		}
		if strings.Contains(s.body, secret) || strings.Contains(s.body, missingSecret) {
			t.Errorf("scrape %d names a secret while METRICS_OBJECT_NAMES is false:\n%s", i, s.body)
		}
	}
	t.Logf("%d scrapes; the last:\n%s", len(scrapes), scrapes[len(scrapes)-1].body)
}
