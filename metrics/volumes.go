package metrics

import (
	"bufio"
	"time"
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

// WatchVolumes makes each scrape ask stats for the volumes: the driver's
// list, so a removed volume leaves no series behind.
func (m *Metrics) WatchVolumes(stats func() []VolumeStat) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.volumeStats = stats
}

// writeVolumes writes the gauges computed from the volumes at scrape time.
func (m *Metrics) writeVolumes(w *bufio.Writer) {
	m.mu.Lock()
	stats := m.volumeStats
	m.mu.Unlock()
	if stats == nil {
		return
	}
	vols := stats()
	mounted := 0
	var lastRead []sample
	for _, v := range vols {
		if v.Mounted {
			mounted++
		}
		if !v.LastRead.IsZero() {
			lastRead = append(lastRead, sample{values: []string{v.Name}, value: float64(v.LastRead.UnixNano()) / 1e9})
		}
	}
	writeGauges(w, "dsv_volumes", "Volumes the plugin knows (docker volume ls).", nil, []sample{{value: float64(len(vols))}})
	writeGauges(w, "dsv_volumes_mounted", "Volumes whose tmpfs is up (mounted by at least one container).", nil, []sample{{value: float64(mounted)}})
	writeGauges(w, "dsv_volume_last_read_timestamp_seconds",
		"When a volume's content was last read successfully (at mount or refresh; a mount may be answered by the cache), Unix time, by volume. Absent until the first read since the plugin started.",
		[]string{"volume"}, lastRead)
}
