package volumes

import "github.com/dsv-plugin/dsv/metrics"

// VolumeStats is what the metrics endpoint shows of each volume, read at
// scrape time: its name, whether its tmpfs is up, and when its content was
// last read. Never a value.
func (d *Driver) VolumeStats() []metrics.VolumeStat {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]metrics.VolumeStat, 0, len(d.vols))
	for _, v := range d.vols {
		out = append(out, metrics.VolumeStat{Name: v.name, Mounted: v.mounted, LastRead: v.status.FetchedAt})
	}
	return out
}
