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

// ForgetVolume drops the per-volume counters of a removed volume
// (dsv_refreshes_total, dsv_refresh_swaps_total, dsv_lease_renewals_total),
// so that a plugin whose volumes come and go keeps no series of the gone
// ones, as the gauges keep none. A volume created again with the name
// starts from zero, which Prometheus reads as a counter reset.
func (m *Metrics) ForgetVolume(name string) {
	if m == nil {
		return
	}
	for _, f := range m.perVolume() {
		f.dropWhere("volume", func(v string) bool { return v == name })
	}
}

// perVolume are the counter families labelled by volume.
func (m *Metrics) perVolume() []*family { return []*family{m.refreshes, m.swaps, m.renewals} }

// volumes reads the volumes at scrape time, and drops the per-volume
// counters of volumes no longer in the list (a removal nobody reported
// with ForgetVolume); ok is false when no list is watched.
func (m *Metrics) volumes() (vols []VolumeStat, ok bool) {
	m.mu.Lock()
	stats := m.volumeStats
	m.mu.Unlock()
	if stats == nil {
		return nil, false
	}
	vols = stats()
	known := make(map[string]bool, len(vols))
	for _, v := range vols {
		known[v.Name] = true
	}
	for _, f := range m.perVolume() {
		f.dropWhere("volume", func(v string) bool { return !known[v] })
	}
	return vols, true
}

// writeVolumes writes the gauges computed from the volumes.
func (m *Metrics) writeVolumes(w *bufio.Writer, vols []VolumeStat) {
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
