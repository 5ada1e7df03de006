// Package metrics is dsv's opt-in Prometheus endpoint (the METRICS_ADDR
// setting). A *Metrics is built in main with a registry of its own (never
// the client library's default one, nor its Go and process collectors);
// a nil *Metrics is the endpoint switched off: every method is then a no-op,
// so the cache and the volume driver call them unconditionally.
//
// No label or value ever holds a secret's bytes, an error's text or a
// credential: labels are backend names, outcome classes, Docker volume names
// and, only with METRICS_OBJECT_NAMES=true, the names of secret objects.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/docker/go-plugins-helpers/volume"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

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
	OutcomeTimeout      = "timeout"
	OutcomeBadValue     = "bad_value"
	// OutcomeOther is a failure no backend classified.
	OutcomeOther = "other"
)

// Lease renewal outcomes.
const (
	RenewalRenewed      = "renewed"
	RenewalFailed       = "failed"
	RenewalMaxTTL       = "max_ttl"
	RenewalNotRenewable = "not_renewable"
)

// Metrics holds dsv's collectors and their registry. The nil *Metrics is
// the endpoint switched off.
type Metrics struct {
	reg         *prometheus.Registry
	objectNames bool

	reads        *prometheus.CounterVec
	readSeconds  *prometheus.HistogramVec
	hits         *prometheus.CounterVec
	shared       *prometheus.CounterVec
	mountSeconds *prometheus.HistogramVec
	refreshes    *prometheus.CounterVec
	swaps        *prometheus.CounterVec
	renewals     *prometheus.CounterVec
	volumes      *volumeCollector
}

// New builds the collectors on a registry of their own.
func New(cfg Config) *Metrics {
	objLabels := func(l ...string) []string {
		if cfg.ObjectNames {
			l = append(l, "secret")
		}
		return l
	}
	m := &Metrics{
		reg:         prometheus.NewRegistry(),
		objectNames: cfg.ObjectNames,
		reads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dsv_backend_reads_total",
			Help: "Reads of a secret from a backend (cache misses), by backend and outcome: ok, not_found, access_denied, unavailable, timeout, bad_value or other.",
		}, objLabels("backend", "outcome")),
		readSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "dsv_backend_read_duration_seconds",
			Help:    "Time a backend took to answer a read, failed ones included, by backend.",
			Buckets: prometheus.DefBuckets,
		}, []string{"backend"}),
		hits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dsv_cache_hits_total",
			Help: "Reads answered from the cache (CACHE_TTL) without a backend call, by backend.",
		}, objLabels("backend")),
		shared: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dsv_cache_shared_reads_total",
			Help: "Reads answered by joining a backend read already in flight for another mount, by backend.",
		}, objLabels("backend")),
		mountSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "dsv_mount_duration_seconds",
			Help:    "Time Docker's Mount calls took, by outcome (ok or error); a mount that shares a live tmpfs reads nothing and is fast.",
			Buckets: prometheus.DefBuckets,
		}, []string{"outcome"}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dsv_refreshes_total",
			Help: "Refreshes of a mounted volume (REFRESH, the refresh option, or a lease that could not be renewed), by volume and outcome (ok or error).",
		}, []string{"volume", "outcome"}),
		swaps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dsv_refresh_swaps_total",
			Help: "Refreshes that found changed content and swapped it in atomically, by volume.",
		}, []string{"volume"}),
		renewals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dsv_lease_renewals_total",
			Help: "Lease renewals, by volume, backend and outcome: renewed, failed, max_ttl (renewed short, near its max TTL) or not_renewable; all but renewed make the volume read a fresh secret.",
		}, []string{"volume", "backend", "outcome"}),
		volumes: newVolumeCollector(),
	}
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "dsv_build_info",
		Help:        "Always 1; the plugin's version as a label.",
		ConstLabels: prometheus.Labels{"version": cfg.Version},
	})
	build.Set(1)
	m.reg.MustRegister(build, m.reads, m.readSeconds, m.hits, m.shared, m.mountSeconds,
		m.refreshes, m.swaps, m.renewals, m.volumes)
	return m
}

// Handler serves the registry in Prometheus's text format (or
// OpenMetrics, when the scraper asks for it).
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{EnableOpenMetrics: true})
}

// Registry is the registry the collectors are on, for tests.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

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
	m.reads.WithLabelValues(m.objectLabels(ref, ref.Backend, Outcome(err))...).Inc()
	m.readSeconds.WithLabelValues(ref.Backend).Observe(took.Seconds())
}

// CacheHit counts a read answered from the cache.
func (m *Metrics) CacheHit(ref secrets.Ref) {
	if m == nil {
		return
	}
	m.hits.WithLabelValues(m.objectLabels(ref, ref.Backend)...).Inc()
}

// SharedRead counts a read answered by a backend call in flight.
func (m *Metrics) SharedRead(ref secrets.Ref) {
	if m == nil {
		return
	}
	m.shared.WithLabelValues(m.objectLabels(ref, ref.Backend)...).Inc()
}

// Refreshed counts one refresh of a volume and how it ended.
func (m *Metrics) Refreshed(vol string, err error) {
	if m == nil {
		return
	}
	outcome := OutcomeOK
	if err != nil {
		outcome = "error"
	}
	m.refreshes.WithLabelValues(vol, outcome).Inc()
}

// Swapped counts a refresh that swapped changed content in.
func (m *Metrics) Swapped(vol string) {
	if m == nil {
		return
	}
	m.swaps.WithLabelValues(vol).Inc()
}

// LeaseRenewal counts one renewal of one lease of a volume; outcome is one
// of the Renewal* constants.
func (m *Metrics) LeaseRenewal(vol, backend, outcome string) {
	if m == nil {
		return
	}
	m.renewals.WithLabelValues(vol, backend, outcome).Inc()
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
		outcome = "error"
	}
	t.m.mountSeconds.WithLabelValues(outcome).Observe(time.Since(start).Seconds())
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
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("port %q: use a number from 1 to 65535", port)
	}
	if host == "" {
		return nil
	}
	if _, err := netip.ParseAddr(host); err == nil {
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
