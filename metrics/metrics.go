// Package metrics is dsv's opt-in Prometheus endpoint (the METRICS_ADDR
// setting). A *Metrics is built in main; a nil *Metrics is the endpoint
// switched off: every method is then a no-op, so the cache and the volume
// driver call them unconditionally, and nothing is allocated.
//
// No label or value ever holds a secret's bytes, an error's text or a
// credential: labels are backend names, outcome classes, Docker volume names
// and, only with METRICS_OBJECT_NAMES=true, the names of secret objects.
//
// The package writes Prometheus's text format itself (family.go) rather
// than with github.com/prometheus/client_golang, which the tests use to
// check it. Linking client_golang cost every plugin, endpoint on or off,
// 2.6 MB of binary and 2.0 MiB of VmRSS after 20 mounts (measured with
// test/tools/rss), over the plugin's budget: its core types are protocol buffers
// (client_model), which bring the protobuf runtime (1.7 MB alone, 1.0 MiB
// resident), and most of a Go binary's pages end up resident, used or not
// (all of .rodata, ~85% of .text at idle). Its package init also builds the
// default registry's Go and process collectors, which cannot be turned
// off. This package costs about 0.1 MB of binary and nothing measurable in
// VmRSS while off; on, after 20 mounts and 100 scrapes, about 0.3 MiB.
package metrics

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/go-plugins-helpers/volume"

	"github.com/dsv-plugin/dsv/secrets"
)

// Config tunes what the metrics show.
type Config struct {
	// ObjectNames adds the secret object's name as label "secret" to the
	// read, cache hit and shared read counters (METRICS_OBJECT_NAMES).
	ObjectNames bool
	// Version is the plugin's version, shown by dsv_build_info.
	Version string
}

// Outcome classes of a backend read, from the secrets error classes.
const (
	OutcomeOK           = "ok"
	OutcomeNotFound     = "not_found"
	OutcomeAccessDenied = "access_denied"
	OutcomeUnavailable  = "unavailable"
	OutcomeThrottled    = "throttled"
	OutcomeTimeout      = "timeout"
	OutcomeBadValue     = "bad_value"
	// OutcomeOther is a failure no backend classified.
	OutcomeOther = "other"
	// OutcomeError is a failed mount or refresh.
	OutcomeError = "error"
)

// Lease renewal outcomes.
const (
	RenewalRenewed      = "renewed"
	RenewalFailed       = "failed"
	RenewalMaxTTL       = "max_ttl"
	RenewalNotRenewable = "not_renewable"
)

// Metrics holds dsv's metric families. The nil *Metrics is the endpoint
// switched off.
type Metrics struct {
	objectNames bool
	version     string

	reads        *family
	readSeconds  *family
	hits         *family
	shared       *family
	mountSeconds *family
	refreshes    *family
	swaps        *family
	renewals     *family
	notices      *family
	stale        *family
	throttled    *family
	gateWaits    *family
	gateSeconds  *family

	mu          sync.Mutex
	volumeStats func() []VolumeStat
}

// New builds the metric families.
func New(cfg Config) *Metrics {
	objLabels := func(l ...string) []string {
		if cfg.ObjectNames {
			l = append(l, "secret")
		}
		return l
	}
	// The latency histograms' upper bounds, in seconds: client_golang's
	// default buckets, from a local read (milliseconds) to the default
	// TIMEOUT (5s) and beyond.
	durationBuckets := []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	return &Metrics{
		objectNames: cfg.ObjectNames,
		version:     cfg.Version,
		reads: newFamily("dsv_backend_reads_total",
			"Reads of a secret from a backend (cache misses), by backend and outcome: ok, not_found, access_denied, unavailable, throttled, timeout, bad_value or other; a read the store throttled and the store gate tried again counts once, by how it ended.",
			"counter", objLabels("backend", "outcome")...),
		readSeconds: newHistogram("dsv_backend_read_duration_seconds",
			"Time a backend took to answer a read, failed ones and the store gate's waits and retries included, by backend.",
			durationBuckets, "backend"),
		hits: newFamily("dsv_cache_hits_total",
			"Reads answered from the cache (CACHE_TTL) without a backend call, by backend.",
			"counter", objLabels("backend")...),
		shared: newFamily("dsv_cache_shared_reads_total",
			"Reads answered by joining a backend read already in flight for another mount, by backend.",
			"counter", objLabels("backend")...),
		mountSeconds: newHistogram("dsv_mount_duration_seconds",
			"Time Docker's Mount calls took, by outcome (ok or error); a mount that shares a live tmpfs reads nothing and is fast.",
			durationBuckets, "outcome"),
		refreshes: newFamily("dsv_refreshes_total",
			"Refreshes of a mounted volume (REFRESH, the refresh option, or a lease that could not be renewed), by volume and outcome (ok or error).",
			"counter", "outcome", "volume"),
		swaps: newFamily("dsv_refresh_swaps_total",
			"Refreshes that found changed content and swapped it in atomically, by volume.",
			"counter", "volume"),
		renewals: newFamily("dsv_lease_renewals_total",
			"Lease renewals, by volume, backend and outcome: renewed, failed, max_ttl (renewed short, near its max TTL) or not_renewable; all but renewed make the volume read a fresh secret.",
			"counter", "backend", "outcome", "volume"),
		notices: newFamily("dsv_notifications_total",
			"Containers notified after a swap (the notify option), by volume and outcome: signalled, executed, failed (the signal or command failed, or the engine did not answer) or skipped (the container was gone or stopped).",
			"counter", "outcome", "volume"),
		stale: newFamily("dsv_stale_serves_total",
			"Mounts and refreshes served the last good value of a secret because its backend was unavailable (the stale-if-error option), by backend.",
			"counter", "backend"),
		throttled: newFamily("dsv_store_throttled_total",
			"Answers of a store that it throttled the call (AWS ThrottlingException, HTTP 429), by backend; the store gate tries the call again after a backoff shared by the store's calls.",
			"counter", "backend"),
		gateWaits: newFamily("dsv_store_gate_waits_total",
			"Calls to a store that waited at its gate, by backend and reason: backoff (the store throttled) or concurrency (STORE_CONCURRENCY calls were in flight).",
			"counter", "backend", "reason"),
		gateSeconds: newFamily("dsv_store_gate_wait_seconds_total",
			"Time calls to a store spent waiting at its gate, by backend and reason (backoff or concurrency).",
			"counter", "backend", "reason"),
	}
}

// Handler serves the metrics in Prometheus's text format.
func (m *Metrics) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		bw := bufio.NewWriter(w)
		m.write(bw)
		_ = bw.Flush() // fails only when the scraper went away
	})
}

// write writes every family, in a fixed order.
func (m *Metrics) write(w *bufio.Writer) {
	// First the volumes: a removed one's counters go before they are
	// written.
	vols, watched := m.volumes()
	writeGauges(w, "dsv_build_info", "Always 1; the plugin's version as a label.",
		[]string{"version"}, []sample{{values: []string{m.version}, value: 1}})
	for _, f := range []*family{m.reads, m.readSeconds, m.hits, m.shared, m.mountSeconds, m.refreshes, m.swaps, m.renewals, m.notices, m.stale, m.throttled, m.gateWaits, m.gateSeconds} {
		f.write(w)
	}
	if watched {
		m.writeVolumes(w, vols)
	}
}

// objectLabels are the label values of a per-object counter.
func (m *Metrics) objectLabels(ref secrets.Ref, l ...string) []string {
	if m.objectNames {
		l = append(l, ref.Name)
	}
	return l
}

// BackendRead counts one backend call for ref and how it ended.
func (m *Metrics) BackendRead(ref secrets.Ref, took time.Duration, err error) {
	if m == nil {
		return
	}
	m.reads.add(1, m.objectLabels(ref, ref.Backend, Outcome(err))...)
	m.readSeconds.observe(took.Seconds(), ref.Backend)
}

// CacheHit counts a read answered from the cache.
func (m *Metrics) CacheHit(ref secrets.Ref) {
	if m == nil {
		return
	}
	m.hits.add(1, m.objectLabels(ref, ref.Backend)...)
}

// SharedRead counts a read answered by a backend call in flight.
func (m *Metrics) SharedRead(ref secrets.Ref) {
	if m == nil {
		return
	}
	m.shared.add(1, m.objectLabels(ref, ref.Backend)...)
}

// Refreshed counts one refresh of a volume and how it ended.
func (m *Metrics) Refreshed(vol string, err error) {
	if m == nil {
		return
	}
	outcome := OutcomeOK
	if err != nil {
		outcome = OutcomeError
	}
	m.refreshes.add(1, outcome, vol)
}

// Swapped counts a refresh that swapped changed content in.
func (m *Metrics) Swapped(vol string) {
	if m == nil {
		return
	}
	m.swaps.add(1, vol)
}

// LeaseRenewal counts one renewal of one lease of a volume; outcome is one
// of the Renewal* constants.
func (m *Metrics) LeaseRenewal(vol, backend, outcome string) {
	if m == nil {
		return
	}
	m.renewals.add(1, backend, outcome, vol)
}

// Notified counts one container's notification after a swap.
func (m *Metrics) Notified(vol, outcome string) {
	if m == nil {
		return
	}
	m.notices.add(1, outcome, vol)
}

// ServedStale counts a read answered with the last good value while the
// backend was unavailable.
func (m *Metrics) ServedStale(backend string) {
	if m == nil {
		return
	}
	m.stale.add(1, backend)
}

// Gate wait reasons (GateWait).
const (
	WaitBackoff     = "backoff"
	WaitConcurrency = "concurrency"
)

// StoreThrottled counts a store's answer that it throttled a call.
func (m *Metrics) StoreThrottled(backend string) {
	if m == nil {
		return
	}
	m.throttled.add(1, backend)
}

// GateWait counts a call that waited at its store's gate, and how long;
// reason is WaitBackoff or WaitConcurrency.
func (m *Metrics) GateWait(backend, reason string, took time.Duration) {
	if m == nil {
		return
	}
	m.gateWaits.add(1, backend, reason)
	m.gateSeconds.add(took.Seconds(), backend, reason)
}

// Outcome is the class of a backend read's error, for the outcome label.
func Outcome(err error) string {
	if err == nil {
		return OutcomeOK
	}
	var se *secrets.Error
	if errors.As(err, &se) {
		switch se.Kind {
		case secrets.ErrNotFound:
			return OutcomeNotFound
		case secrets.ErrAccessDenied:
			return OutcomeAccessDenied
		case secrets.ErrUnavailable:
			return OutcomeUnavailable
		case secrets.ErrThrottled:
			return OutcomeThrottled
		case secrets.ErrTimeout:
			return OutcomeTimeout
		case secrets.ErrBadValue:
			return OutcomeBadValue
		}
	}
	return OutcomeOther
}

// Driver returns d with its Mount calls timed; d itself when m is nil.
func (m *Metrics) Driver(d volume.Driver) volume.Driver {
	if m == nil {
		return d
	}
	return timedDriver{Driver: d, m: m}
}

// timedDriver times Mount for dsv_mount_duration_seconds.
type timedDriver struct {
	volume.Driver
	m *Metrics
}

func (t timedDriver) Mount(req *volume.MountRequest) (*volume.MountResponse, error) {
	start := time.Now()
	resp, err := t.Driver.Mount(req)
	outcome := OutcomeOK
	if err != nil {
		outcome = OutcomeError
	}
	t.m.mountSeconds.observe(time.Since(start).Seconds(), outcome)
	return resp, err
}

// Serve answers scrapes at /metrics on l until ctx ends.
func (m *Metrics) Serve(ctx context.Context, l net.Listener) error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	err := srv.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// ValidateAddr checks a METRICS_ADDR value: HOST:PORT, with an IP address
// or a host name (empty: every interface) and a port from 1 to 65535.
func ValidateAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New("use HOST:PORT, e.g. 127.0.0.1:9469")
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 || strings.Trim(port, "0123456789") != "" {
		return fmt.Errorf("port %q: use a number from 1 to 65535", port)
	}
	if host == "" {
		return nil
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.Zone() == "" {
		return nil
	}
	if !validHostName(host) {
		return fmt.Errorf("host %q: use an IP address such as 127.0.0.1 or a host name", host)
	}
	return nil
}

// validHostName: dot-separated labels of letters, digits and inner
// hyphens, each 1 to 63 long, 253 in all.
func validHostName(h string) bool {
	if len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range []byte(label) {
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}
