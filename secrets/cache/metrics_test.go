package cache

import (
	"context"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/dsv-plugin/dsv/metrics"
	"github.com/dsv-plugin/dsv/secrets"
)

// counters scrapes m and sums each counter family by the values of label
// (all series when label is empty).
func counters(t *testing.T, m *metrics.Metrics, name, label string) (map[string]float64, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(rec.Body.String()))
	if err != nil {
		t.Fatalf("scrape: %v\n%s", err, rec.Body)
	}
	out := map[string]float64{}
	for _, s := range fams[name].GetMetric() {
		k := ""
		for _, l := range s.Label {
			if l.GetName() == label {
				k = l.GetValue()
			}
		}
		out[k] += s.GetCounter().GetValue()
	}
	return out, rec.Body.String()
}

func TestMetricsCountReadsHitsAndSharedReads(t *testing.T) {
	b := &slowBackend{delay: 50 * time.Millisecond, reads: map[string]int{}}
	reg, err := secrets.NewRegistry(b)
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New(metrics.Config{})
	f, err := New(reg, Config{TTL: time.Minute, Timeout: time.Second, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	ref := secrets.Ref{Backend: "slow", Name: "app/db"}
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		values []string
	)
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sec, err := f.Fetch(context.Background(), ref, false)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			values = append(values, string(sec.Value))
			mu.Unlock()
		}()
	}
	wg.Wait()
	if _, err := f.Fetch(context.Background(), ref, false); err != nil { // from the cache
		t.Fatal(err)
	}
	b.fail.Store(true)
	if _, err := f.Fetch(context.Background(), ref, true); err == nil {
		t.Fatal("a failing backend's read succeeded")
	}

	st := f.Stats()
	reads, _ := counters(t, m, "dsv_backend_reads_total", "outcome")
	if reads[metrics.OutcomeOK] != 1 || reads[metrics.OutcomeUnavailable] != 1 || len(reads) != 2 {
		t.Errorf("reads by outcome %v, want one ok and one unavailable", reads)
	}
	hits, _ := counters(t, m, "dsv_cache_hits_total", "backend")
	shared, body := counters(t, m, "dsv_cache_shared_reads_total", "backend")
	if hits["slow"] != float64(st.Hits) || shared["slow"] != float64(st.Shared) || st.Hits < 1 || st.Hits+st.Shared < 10 {
		t.Errorf("hits %v and shared reads %v; the fetcher's stats %+v", hits, shared, st)
	}
	for _, v := range values {
		if strings.Contains(body, v) {
			t.Errorf("the scrape holds a secret value %q:\n%s", v, body)
		}
	}
	if strings.Contains(body, ref.Name) {
		t.Errorf("the scrape names the object without METRICS_OBJECT_NAMES:\n%s", body)
	}
}

func TestMetricsCountTimeouts(t *testing.T) {
	b := &slowBackend{delay: time.Second, reads: map[string]int{}}
	reg, err := secrets.NewRegistry(b)
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New(metrics.Config{ObjectNames: true})
	f, err := New(reg, Config{Timeout: 20 * time.Millisecond, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Fetch(context.Background(), secrets.Ref{Backend: "slow", Name: "late"}, false); err == nil {
		t.Fatal("a read past the timeout succeeded")
	}
	reads, _ := counters(t, m, "dsv_backend_reads_total", "outcome")
	if reads[metrics.OutcomeTimeout] != 1 {
		t.Errorf("reads by outcome %v, want one timeout", reads)
	}
	bySecret, _ := counters(t, m, "dsv_backend_reads_total", "secret")
	if bySecret["late"] != 1 {
		t.Errorf("reads by secret %v, want late (METRICS_OBJECT_NAMES=true)", bySecret)
	}
}
