package volumes

import (
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/dsv-plugin/dsv/metrics"
	"github.com/dsv-plugin/dsv/secrets"
)

// withMetrics restarts the driver with an endpoint's metrics, watching its
// volumes as main does.
func (h *harness) withMetrics() *metrics.Metrics {
	h.t.Helper()
	m := metrics.New(metrics.Config{})
	h.restartWith(func(c *Config) { c.Metrics = m })
	m.WatchVolumes(h.drv.VolumeStats)
	return m
}

// metricValue scrapes m and returns the value of the series of name whose
// labels include labels (name=value pairs); -1 when there is none.
func metricValue(t *testing.T, m *metrics.Metrics, name string, labels ...string) float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(rec.Body.String()))
	if err != nil {
		t.Fatalf("scrape: %v\n%s", err, rec.Body)
	}
	f, ok := fams[name]
	if !ok {
		return -1
	}
next:
	for _, s := range f.Metric {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range s.Label {
				found = found || (l.GetName() == labels[i] && l.GetValue() == labels[i+1])
			}
			if !found {
				continue next
			}
		}
		switch {
		case s.Counter != nil:
			return s.Counter.GetValue()
		case s.Gauge != nil:
			return s.Gauge.GetValue()
		}
	}
	return -1
}

func TestMetricsOfRefreshesAndVolumes(t *testing.T) {
	h := newHarnessWith(t, 40*time.Millisecond)
	m := h.withMetrics()
	h.backend.set("rot", "v1")
	h.create("rot", map[string]string{"layout": "dir"})
	if got := metricValue(t, m, "dsv_volumes"); got != 1 {
		t.Errorf("dsv_volumes = %v, want 1", got)
	}
	if got := metricValue(t, m, "dsv_volume_last_read_timestamp_seconds", "volume", "rot"); got != -1 {
		t.Errorf("a volume never read has a last read: %v", got)
	}
	before := float64(time.Now().Unix())
	h.mount("rot", "c1")
	if got := metricValue(t, m, "dsv_volumes_mounted"); got != 1 {
		t.Errorf("dsv_volumes_mounted = %v, want 1", got)
	}
	if got := metricValue(t, m, "dsv_volume_last_read_timestamp_seconds", "volume", "rot"); got < before {
		t.Errorf("last read %v, want at least %v", got, before)
	}

	eventually(t, 2*time.Second, "refreshes of unchanged content counted", func() bool {
		return metricValue(t, m, "dsv_refreshes_total", "volume", "rot", "outcome", "ok") >= 2
	})
	if got := metricValue(t, m, "dsv_refresh_swaps_total", "volume", "rot"); got != -1 {
		t.Errorf("dsv_refresh_swaps_total = %v for unchanged content", got)
	}
	h.backend.set("rot", "v2")
	eventually(t, 2*time.Second, "a swap counted", func() bool {
		return metricValue(t, m, "dsv_refresh_swaps_total", "volume", "rot") == 1
	})
	h.backend.setErr("rot", secrets.Fail(secrets.Ref{Backend: "fake", Name: "rot"}, secrets.ErrUnavailable, "", errors.New("connection refused")))
	eventually(t, 2*time.Second, "a failed refresh counted", func() bool {
		return metricValue(t, m, "dsv_refreshes_total", "volume", "rot", "outcome", "error") >= 1
	})

	h.unmount("rot", "c1")
	if got := metricValue(t, m, "dsv_volumes_mounted"); got != 0 {
		t.Errorf("dsv_volumes_mounted = %v after the last unmount, want 0", got)
	}
}

func TestMetricsOfLeaseRenewals(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(b *leaseBackend)
		outcome string
	}{
		{name: "renewed", setup: func(*leaseBackend) {}, outcome: metrics.RenewalRenewed},
		{name: "failed", setup: func(b *leaseBackend) { b.renewErr = errors.New("permission denied") }, outcome: metrics.RenewalFailed},
		{name: "not renewable", setup: func(b *leaseBackend) { b.renewable = false }, outcome: metrics.RenewalNotRenewable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			m := h.withMetrics()
			h.leased.set(tt.setup)
			h.create("creds", map[string]string{"backend": "leased", "secret": "database/creds/app", "layout": "dir"})
			h.mount("creds", "c1")
			eventually(t, 3*time.Second, "a "+tt.outcome+" renewal counted", func() bool {
				return metricValue(t, m, "dsv_lease_renewals_total", "volume", "creds", "backend", "leased", "outcome", tt.outcome) >= 1
			})
			for _, other := range []string{metrics.RenewalRenewed, metrics.RenewalFailed, metrics.RenewalNotRenewable, metrics.RenewalMaxTTL} {
				if other != tt.outcome && metricValue(t, m, "dsv_lease_renewals_total", "outcome", other) != -1 {
					t.Errorf("a %s renewal counted too", other)
				}
			}
			h.unmount("creds", "c1")
		})
	}
}
