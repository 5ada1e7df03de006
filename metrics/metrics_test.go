package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/go-plugins-helpers/volume"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/dsv-plugin/dsv/secrets"
)

// scrape serves m over HTTP as main does and returns the body.
func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("Content-Type %q", ct)
	}
	return string(b)
}

// parse reads a scrape with Prometheus's own parser: what it refuses, a
// Prometheus server refuses too.
func parse(t *testing.T, body string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("Prometheus's parser refuses the scrape: %v\n%s", err, body)
	}
	return fams
}

// compare checks the named families of m's scrape against want, with
// client_golang's testutil over a real HTTP scrape.
func compare(t *testing.T, m *Metrics, want string, names ...string) {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	if err := testutil.ScrapeAndCompare(srv.URL, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
}

func TestOutcome(t *testing.T) {
	ref := secrets.Ref{Backend: "aws", Name: "prod/db"}
	tests := []struct {
		name string
		err  error
		want string
	}{
		{name: "nil", err: nil, want: OutcomeOK},
		{name: "not found", err: secrets.Fail(ref, secrets.ErrNotFound, "", nil), want: OutcomeNotFound},
		{name: "access denied", err: secrets.Fail(ref, secrets.ErrAccessDenied, "", errors.New("403")), want: OutcomeAccessDenied},
		{name: "unavailable", err: secrets.Fail(ref, secrets.ErrUnavailable, "", nil), want: OutcomeUnavailable},
		{name: "throttled", err: secrets.Fail(ref, secrets.ErrThrottled, "", nil), want: OutcomeThrottled},
		{name: "timeout", err: secrets.Fail(ref, secrets.ErrTimeout, "", nil), want: OutcomeTimeout},
		{name: "bad value", err: secrets.Fail(ref, secrets.ErrBadValue, "", nil), want: OutcomeBadValue},
		{name: "wrapped", err: fmt.Errorf("volume %q: %w", "db", secrets.Fail(ref, secrets.ErrNotFound, "", nil)), want: OutcomeNotFound},
		{name: "its cause is not its class", err: secrets.Fail(ref, secrets.ErrUnavailable, "", context.DeadlineExceeded), want: OutcomeUnavailable},
		{name: "unclassified", err: errors.New("backend \"x\" is not available"), want: OutcomeOther},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Outcome(tt.err); got != tt.want {
				t.Errorf("Outcome(%v) = %q, want %q", tt.err, got, tt.want)
			}
		})
	}
}

func TestCounters(t *testing.T) {
	m := New(Config{Version: "1.2.3"})
	aws := secrets.Ref{Backend: "aws", Name: "prod/db"}
	vault := secrets.Ref{Backend: "vault", Name: "secret/app"}
	m.BackendRead(aws, 3*time.Millisecond, nil)
	m.BackendRead(aws, 20*time.Millisecond, nil)
	m.BackendRead(aws, 6*time.Second, secrets.Fail(aws, secrets.ErrTimeout, "", nil))
	m.BackendRead(vault, 40*time.Millisecond, secrets.Fail(vault, secrets.ErrAccessDenied, "", nil))
	m.CacheHit(aws)
	m.CacheHit(aws)
	m.SharedRead(vault)
	m.Refreshed("db", nil)
	m.Refreshed("db", errors.New("boom"))
	m.Refreshed("web", nil)
	m.Swapped("db")
	m.LeaseRenewal("creds", "vault", RenewalRenewed)
	m.LeaseRenewal("creds", "vault", RenewalRenewed)
	m.LeaseRenewal("creds", "vault", RenewalMaxTTL)
	m.StoreThrottled("aws")
	m.StoreThrottled("aws")
	m.GateWait("aws", WaitBackoff, 1500*time.Millisecond)
	m.GateWait("aws", WaitConcurrency, 250*time.Millisecond)
	m.GateWait("aws", WaitConcurrency, 250*time.Millisecond)

	compare(t, m, `
# HELP dsv_build_info Always 1; the plugin's version as a label.
# TYPE dsv_build_info gauge
dsv_build_info{version="1.2.3"} 1
# HELP dsv_backend_reads_total Reads of a secret from a backend (cache misses), by backend and outcome: ok, not_found, access_denied, unavailable, throttled, timeout, bad_value or other; a read the store throttled and the store gate tried again counts once, by how it ended.
# TYPE dsv_backend_reads_total counter
dsv_backend_reads_total{backend="aws",outcome="ok"} 2
dsv_backend_reads_total{backend="aws",outcome="timeout"} 1
dsv_backend_reads_total{backend="vault",outcome="access_denied"} 1
# HELP dsv_backend_read_duration_seconds Time a backend took to answer a read, failed ones and the store gate's waits and retries included, by backend.
# TYPE dsv_backend_read_duration_seconds histogram
dsv_backend_read_duration_seconds_bucket{backend="aws",le="0.005"} 1
dsv_backend_read_duration_seconds_bucket{backend="aws",le="0.01"} 1
dsv_backend_read_duration_seconds_bucket{backend="aws",le="0.025"} 2
dsv_backend_read_duration_seconds_bucket{backend="aws",le="0.05"} 2
dsv_backend_read_duration_seconds_bucket{backend="aws",le="0.1"} 2
dsv_backend_read_duration_seconds_bucket{backend="aws",le="0.25"} 2
dsv_backend_read_duration_seconds_bucket{backend="aws",le="0.5"} 2
dsv_backend_read_duration_seconds_bucket{backend="aws",le="1"} 2
dsv_backend_read_duration_seconds_bucket{backend="aws",le="2.5"} 2
dsv_backend_read_duration_seconds_bucket{backend="aws",le="5"} 2
dsv_backend_read_duration_seconds_bucket{backend="aws",le="10"} 3
dsv_backend_read_duration_seconds_bucket{backend="aws",le="+Inf"} 3
dsv_backend_read_duration_seconds_sum{backend="aws"} 6.023
dsv_backend_read_duration_seconds_count{backend="aws"} 3
dsv_backend_read_duration_seconds_bucket{backend="vault",le="0.005"} 0
dsv_backend_read_duration_seconds_bucket{backend="vault",le="0.01"} 0
dsv_backend_read_duration_seconds_bucket{backend="vault",le="0.025"} 0
dsv_backend_read_duration_seconds_bucket{backend="vault",le="0.05"} 1
dsv_backend_read_duration_seconds_bucket{backend="vault",le="0.1"} 1
dsv_backend_read_duration_seconds_bucket{backend="vault",le="0.25"} 1
dsv_backend_read_duration_seconds_bucket{backend="vault",le="0.5"} 1
dsv_backend_read_duration_seconds_bucket{backend="vault",le="1"} 1
dsv_backend_read_duration_seconds_bucket{backend="vault",le="2.5"} 1
dsv_backend_read_duration_seconds_bucket{backend="vault",le="5"} 1
dsv_backend_read_duration_seconds_bucket{backend="vault",le="10"} 1
dsv_backend_read_duration_seconds_bucket{backend="vault",le="+Inf"} 1
dsv_backend_read_duration_seconds_sum{backend="vault"} 0.04
dsv_backend_read_duration_seconds_count{backend="vault"} 1
# HELP dsv_cache_hits_total Reads answered from the cache (CACHE_TTL) without a backend call, by backend.
# TYPE dsv_cache_hits_total counter
dsv_cache_hits_total{backend="aws"} 2
# HELP dsv_cache_shared_reads_total Reads answered by joining a backend read already in flight for another mount, by backend.
# TYPE dsv_cache_shared_reads_total counter
dsv_cache_shared_reads_total{backend="vault"} 1
# HELP dsv_refreshes_total Refreshes of a mounted volume (REFRESH, the refresh option, or a lease that could not be renewed), by volume and outcome (ok or error).
# TYPE dsv_refreshes_total counter
dsv_refreshes_total{outcome="error",volume="db"} 1
dsv_refreshes_total{outcome="ok",volume="db"} 1
dsv_refreshes_total{outcome="ok",volume="web"} 1
# HELP dsv_refresh_swaps_total Refreshes that found changed content and swapped it in atomically, by volume.
# TYPE dsv_refresh_swaps_total counter
dsv_refresh_swaps_total{volume="db"} 1
# HELP dsv_lease_renewals_total Lease renewals, by volume, backend and outcome: renewed, failed, max_ttl (renewed short, near its max TTL) or not_renewable; all but renewed make the volume read a fresh secret.
# TYPE dsv_lease_renewals_total counter
dsv_lease_renewals_total{backend="vault",outcome="max_ttl",volume="creds"} 1
dsv_lease_renewals_total{backend="vault",outcome="renewed",volume="creds"} 2
# HELP dsv_store_throttled_total Answers of a store that it throttled the call (AWS ThrottlingException, HTTP 429), by backend; the store gate tries the call again after a backoff shared by the store's calls.
# TYPE dsv_store_throttled_total counter
dsv_store_throttled_total{backend="aws"} 2
# HELP dsv_store_gate_waits_total Calls to a store that waited at its gate, by backend and reason: backoff (the store throttled) or concurrency (STORE_CONCURRENCY calls were in flight).
# TYPE dsv_store_gate_waits_total counter
dsv_store_gate_waits_total{backend="aws",reason="backoff"} 1
dsv_store_gate_waits_total{backend="aws",reason="concurrency"} 2
# HELP dsv_store_gate_wait_seconds_total Time calls to a store spent waiting at its gate, by backend and reason (backoff or concurrency).
# TYPE dsv_store_gate_wait_seconds_total counter
dsv_store_gate_wait_seconds_total{backend="aws",reason="backoff"} 1.5
dsv_store_gate_wait_seconds_total{backend="aws",reason="concurrency"} 0.5
`, "dsv_build_info", "dsv_backend_reads_total", "dsv_backend_read_duration_seconds", "dsv_cache_hits_total",
		"dsv_cache_shared_reads_total", "dsv_refreshes_total", "dsv_refresh_swaps_total", "dsv_lease_renewals_total",
		"dsv_store_throttled_total", "dsv_store_gate_waits_total", "dsv_store_gate_wait_seconds_total")
}

// TestObjectNames: secret names appear as labels only when the setting
// allows, and then exactly as named, however odd the name.
func TestObjectNames(t *testing.T) {
	ref := secrets.Ref{Backend: "vault", Name: `secret/app "db"\ops` + "\nx"}
	for _, on := range []bool{false, true} {
		t.Run(fmt.Sprint("ObjectNames=", on), func(t *testing.T) {
			m := New(Config{ObjectNames: on})
			m.BackendRead(ref, time.Millisecond, nil)
			m.CacheHit(ref)
			m.SharedRead(ref)
			body := scrape(t, m)
			fams := parse(t, body)
			for _, name := range []string{"dsv_backend_reads_total", "dsv_cache_hits_total", "dsv_cache_shared_reads_total"} {
				f := fams[name]
				if f == nil || len(f.Metric) != 1 {
					t.Fatalf("%s: %v", name, f)
				}
				var got *string
				for _, l := range f.Metric[0].Label {
					if l.GetName() == "secret" {
						got = l.Value
					}
				}
				switch {
				case on && (got == nil || *got != ref.Name):
					t.Errorf("%s: secret label %v, want %q", name, got, ref.Name)
				case !on && got != nil:
					t.Errorf("%s: a secret label %q while the setting is off", name, *got)
				}
			}
			if !on && strings.Contains(body, "secret/app") {
				t.Errorf("the object's name is in the scrape while the setting is off:\n%s", body)
			}
		})
	}
}

// fakeDriver answers Mount after a set delay, or fails.
type fakeDriver struct {
	volume.Driver
	delay time.Duration
	fail  bool
}

func (d fakeDriver) Mount(*volume.MountRequest) (*volume.MountResponse, error) {
	time.Sleep(d.delay)
	if d.fail {
		return nil, errors.New("volume \"x\": not found")
	}
	return &volume.MountResponse{Mountpoint: "/mnt/x"}, nil
}

func TestMountLatency(t *testing.T) {
	m := New(Config{})
	ok := m.Driver(fakeDriver{delay: 30 * time.Millisecond})
	bad := m.Driver(fakeDriver{fail: true})
	for range 2 {
		if r, err := ok.Mount(&volume.MountRequest{Name: "x", ID: "c"}); err != nil || r.Mountpoint != "/mnt/x" {
			t.Fatalf("Mount = %v, %v", r, err)
		}
	}
	if _, err := bad.Mount(&volume.MountRequest{Name: "x", ID: "c"}); err == nil {
		t.Fatal("the failed mount's error was lost")
	}
	f := parse(t, scrape(t, m))["dsv_mount_duration_seconds"]
	if f == nil || f.GetType() != dto.MetricType_HISTOGRAM {
		t.Fatalf("dsv_mount_duration_seconds: %v", f)
	}
	got := map[string]*dto.Histogram{}
	for _, s := range f.Metric {
		got[s.Label[0].GetValue()] = s.Histogram
	}
	if h := got[OutcomeOK]; h.GetSampleCount() != 2 || h.GetSampleSum() < 0.06 {
		t.Errorf("ok mounts: %v", h)
	}
	if h := got[OutcomeError]; h.GetSampleCount() != 1 {
		t.Errorf("failed mounts: %v", h)
	}
	for _, b := range got[OutcomeOK].Bucket {
		if b.GetUpperBound() < 0.03 && b.GetCumulativeCount() != 0 {
			t.Errorf("a 30ms mount counted in bucket le=%v", b.GetUpperBound())
		}
	}
}

func TestVolumes(t *testing.T) {
	m := New(Config{})
	m.WatchVolumes(func() []VolumeStat {
		return []VolumeStat{
			{Name: "db", Mounted: true, LastRead: time.Unix(1700000000, 500000000)},
			{Name: "idle"},
			{Name: "app", Mounted: true, LastRead: time.Unix(1700000100, 0)},
		}
	})
	compare(t, m, `
# HELP dsv_volumes Volumes the plugin knows (docker volume ls).
# TYPE dsv_volumes gauge
dsv_volumes 3
# HELP dsv_volumes_mounted Volumes whose tmpfs is up (mounted by at least one container).
# TYPE dsv_volumes_mounted gauge
dsv_volumes_mounted 2
# HELP dsv_volume_last_read_timestamp_seconds When a volume's content was last read successfully (at mount or refresh; a mount may be answered by the cache), Unix time, by volume. Absent until the first read since the plugin started.
# TYPE dsv_volume_last_read_timestamp_seconds gauge
dsv_volume_last_read_timestamp_seconds{volume="app"} 1.7000001e+09
dsv_volume_last_read_timestamp_seconds{volume="db"} 1.7000000005e+09
`, "dsv_volumes", "dsv_volumes_mounted", "dsv_volume_last_read_timestamp_seconds")
}

// TestRemovedVolumeCounters: the per-volume counters of a removed volume
// are gone from the next scrape, as its gauges are: at ForgetVolume, and
// at a scrape whose volume list no longer has it.
func TestRemovedVolumeCounters(t *testing.T) {
	count := func(m *Metrics, vols ...string) {
		for _, v := range vols {
			m.Refreshed(v, nil)
			m.Refreshed(v, errors.New("x"))
			m.Swapped(v)
			m.LeaseRenewal(v, "vault", RenewalRenewed)
		}
	}
	perVolume := []string{"dsv_refreshes_total", "dsv_refresh_swaps_total", "dsv_lease_renewals_total"}
	volumesIn := func(t *testing.T, m *Metrics) map[string]bool {
		t.Helper()
		seen := map[string]bool{}
		fams := parse(t, scrape(t, m))
		for _, name := range perVolume {
			for _, s := range fams[name].GetMetric() {
				for _, l := range s.GetLabel() {
					if l.GetName() == "volume" {
						seen[name+"/"+l.GetValue()] = true
					}
				}
			}
		}
		return seen
	}
	want := func(vols ...string) map[string]bool {
		out := map[string]bool{}
		for _, n := range perVolume {
			for _, v := range vols {
				out[n+"/"+v] = true
			}
		}
		return out
	}

	t.Run("ForgetVolume", func(t *testing.T) {
		m := New(Config{})
		count(m, "db", "web")
		m.ForgetVolume("db")
		if got := volumesIn(t, m); !maps.Equal(got, want("web")) {
			t.Errorf("after ForgetVolume(db): %v, want web's only", got)
		}
		// Created again, it counts from zero.
		count(m, "db")
		f := parse(t, scrape(t, m))["dsv_refresh_swaps_total"]
		for _, s := range f.GetMetric() {
			if s.GetLabel()[0].GetValue() == "db" && s.GetCounter().GetValue() != 1 {
				t.Errorf("db's swaps after it came back: %v, want 1", s.GetCounter().GetValue())
			}
		}
	})
	t.Run("gone from the volume list", func(t *testing.T) {
		m := New(Config{})
		list := []VolumeStat{{Name: "db", Mounted: true}, {Name: "web", Mounted: true}}
		var mu sync.Mutex
		m.WatchVolumes(func() []VolumeStat {
			mu.Lock()
			defer mu.Unlock()
			return slices.Clone(list)
		})
		count(m, "db", "web")
		if got := volumesIn(t, m); !maps.Equal(got, want("db", "web")) {
			t.Fatalf("before the removal: %v", got)
		}
		mu.Lock()
		list = list[1:] // docker volume rm db
		mu.Unlock()
		if got := volumesIn(t, m); !maps.Equal(got, want("web")) {
			t.Errorf("the first scrape after db was removed: %v, want web's only", got)
		}
	})
}

// TestEmptyScrapeParses: a fresh endpoint (no volume, no read) is valid.
func TestEmptyScrapeParses(t *testing.T) {
	m := New(Config{})
	m.WatchVolumes(func() []VolumeStat { return nil })
	fams := parse(t, scrape(t, m))
	if fams["dsv_volumes"].GetMetric()[0].GetGauge().GetValue() != 0 {
		t.Errorf("dsv_volumes: %v", fams["dsv_volumes"])
	}
}

// TestNilIsOff: the switched-off endpoint is a nil *Metrics that every
// caller may call.
func TestNilIsOff(t *testing.T) {
	var m *Metrics
	ref := secrets.Ref{Backend: "aws", Name: "x"}
	m.BackendRead(ref, time.Second, nil)
	m.CacheHit(ref)
	m.SharedRead(ref)
	m.Refreshed("v", nil)
	m.Swapped("v")
	m.LeaseRenewal("v", "vault", RenewalFailed)
	m.WatchVolumes(func() []VolumeStat { return nil })
	d := fakeDriver{}
	if got := m.Driver(d); got != volume.Driver(d) {
		t.Errorf("Driver(d) of the nil Metrics = %T, want d itself", got)
	}
}

// TestConcurrentUse runs writers and scrapes together (go test -race).
func TestConcurrentUse(t *testing.T) {
	m := New(Config{ObjectNames: true})
	m.WatchVolumes(func() []VolumeStat { return []VolumeStat{{Name: "v", Mounted: true, LastRead: time.Now()}} })
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ref := secrets.Ref{Backend: "aws", Name: fmt.Sprint("s", i)}
			for range 200 {
				m.BackendRead(ref, time.Millisecond, nil)
				m.CacheHit(ref)
				m.Refreshed("v", nil)
			}
		}()
	}
	for range 5 {
		parse(t, scrape(t, m))
	}
	wg.Wait()
	f := parse(t, scrape(t, m))["dsv_refreshes_total"]
	if got := f.GetMetric()[0].GetCounter().GetValue(); got != 800 {
		t.Errorf("dsv_refreshes_total = %v, want 800", got)
	}
}

func TestServe(t *testing.T) {
	m := New(Config{Version: "v"})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Serve(ctx, l) }()
	url := "http://" + l.Addr().String()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `dsv_build_info{version="v"} 1`) {
		t.Errorf("GET /metrics: %s\n%s", resp.Status, body)
	}
	if resp, err := http.Get(url + "/other"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /other: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve after its context ended: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
}

func TestValidateAddr(t *testing.T) {
	tests := []struct {
		addr string
		ok   bool
	}{
		{addr: "127.0.0.1:9469", ok: true},
		{addr: "[::1]:9469", ok: true},
		{addr: ":9469", ok: true},
		{addr: "localhost:9469", ok: true},
		{addr: "metrics.example.com:80", ok: true},
		{addr: "127.0.0.1", ok: false},
		{addr: "9469", ok: false},
		{addr: "127.0.0.1:0", ok: false},
		{addr: "127.0.0.1:65536", ok: false},
		{addr: "127.0.0.1:http", ok: false},
		{addr: "bad_host:9469", ok: false},
		{addr: "-bad:9469", ok: false},
		{addr: "a..b:9469", ok: false},
		{addr: "http://127.0.0.1:9469", ok: false},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			err := ValidateAddr(tt.addr)
			if (err == nil) != tt.ok {
				t.Errorf("ValidateAddr(%q) = %v, want ok=%v", tt.addr, err, tt.ok)
			}
		})
	}
}

// FuzzValidateAddr: an accepted address is one net.Listen takes apart the
// same way: HOST:PORT with a port in range.
func FuzzValidateAddr(f *testing.F) {
	for _, s := range []string{"127.0.0.1:9469", "[::1]:1", ":65535", "a.b-c:80", "x:0", "[fe80::1%eth0]:9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		if ValidateAddr(addr) != nil {
			return
		}
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatalf("accepted %q: %v", addr, err)
		}
		if p, err := net.LookupPort("tcp", port); err != nil || p < 1 || p > 65535 || strings.TrimLeft(port, "0123456789") != "" {
			t.Fatalf("accepted %q with port %q", addr, port)
		}
		if strings.ContainsAny(host, " /\\\"'\n\x00") {
			t.Fatalf("accepted %q with host %q", addr, host)
		}
	})
}

// TestEmptyFamiliesOmitted: a metric nothing has recorded yet is absent,
// not a header without samples.
func TestEmptyFamiliesOmitted(t *testing.T) {
	m := New(Config{})
	m.Swapped("db")
	body := scrape(t, m)
	if !strings.Contains(body, "# TYPE dsv_refresh_swaps_total counter") {
		t.Errorf("a recorded family is missing:\n%s", body)
	}
	for _, name := range []string{"dsv_backend_reads_total", "dsv_mount_duration_seconds", "dsv_volume_last_read_timestamp_seconds"} {
		if strings.Contains(body, name) {
			t.Errorf("%s is in the scrape before anything was recorded:\n%s", name, body)
		}
	}
}
