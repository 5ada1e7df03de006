package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// VolumeStat is what the endpoint shows of one volume, read at scrape time.
type VolumeStat struct {
	Name string
	// Mounted: the volume's tmpfs is up.
	Mounted bool
	// LastRead is the last successful read of its content (at a mount or
	// a refresh); zero if none since the plugin started.
	LastRead time.Time
}

// WatchVolumes makes each scrape ask stats for the volumes; the driver's
// list, so a removed volume leaves no series behind.
func (m *Metrics) WatchVolumes(stats func() []VolumeStat) {
	if m == nil {
		return
	}
	m.volumes.mu.Lock()
	defer m.volumes.mu.Unlock()
	m.volumes.stats = stats
}

// volumeCollector turns the driver's volumes into gauges at scrape time.
type volumeCollector struct {
	mu    sync.Mutex
	stats func() []VolumeStat

	total, mounted, lastRead *prometheus.Desc
}

func newVolumeCollector() *volumeCollector {
	return &volumeCollector{
		total:    prometheus.NewDesc("dsv_volumes", "Volumes the plugin knows (docker volume ls).", nil, nil),
		mounted:  prometheus.NewDesc("dsv_volumes_mounted", "Volumes whose tmpfs is up (mounted by at least one container).", nil, nil),
		lastRead: prometheus.NewDesc("dsv_volume_last_read_timestamp_seconds", "When a volume's content was last read successfully (at mount or refresh; a mount may be answered by the cache), Unix time, by volume. Absent until the first read since the plugin started.", []string{"volume"}, nil),
	}
}

func (c *volumeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.total
	ch <- c.mounted
	ch <- c.lastRead
}

func (c *volumeCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	stats := c.stats
	c.mu.Unlock()
	if stats == nil {
		return
	}
	vols := stats()
	mounted := 0
	for _, v := range vols {
		if v.Mounted {
			mounted++
		}
		if !v.LastRead.IsZero() {
			ch <- prometheus.MustNewConstMetric(c.lastRead, prometheus.GaugeValue, float64(v.LastRead.UnixNano())/1e9, v.Name)
		}
	}
	ch <- prometheus.MustNewConstMetric(c.total, prometheus.GaugeValue, float64(len(vols)))
	ch <- prometheus.MustNewConstMetric(c.mounted, prometheus.GaugeValue, float64(mounted))
}
