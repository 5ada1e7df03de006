package volumes

import (
	"fmt"
	"time"

	"github.com/docker/go-plugins-helpers/volume"

	"github.com/dsv-plugin/dsv/metrics"
	"github.com/dsv-plugin/dsv/render"
)

// What `docker volume inspect` shows of a volume, and the metrics
// endpoint's view of every volume: never a value.

// describe renders a volume for List and Get; status only for Get.
func (d *Driver) describe(v *vol, withStatus bool) *volume.Volume {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := &volume.Volume{Name: v.name, CreatedAt: v.created.Format(time.RFC3339)}
	live := v.live()
	if live != nil {
		out.Mountpoint = d.mountpoint(v)
	}
	if !withStatus {
		return out
	}
	st := map[string]any{"layout": v.opts.Layout, "mounts": 0}
	if live != nil {
		st["mounts"] = live.count()
	}
	detached, retiring := 0, 0
	var leases []render.HeldLease
	for _, in := range v.instances {
		if !in.published {
			detached += in.count()
		}
		leases = append(leases, in.leases...)
		retiring += len(in.retiring)
	}
	if detached > 0 {
		st["mountsBeforeRestart"] = detached
		st["detached"] = "containers hold a tmpfs from before a plugin restart that this process cannot reach: their leases are renewed, their files are not refreshed; restart them to get the current content"
	}
	if len(v.opts.Objects) == 1 {
		o := v.opts.Objects[0]
		describeObject(st, o)
		if ver, ok := v.status.Versions[o.Name]; ok {
			st["version"] = ver
		}
	} else {
		files := make([]map[string]any, 0, len(v.opts.Objects))
		for _, o := range v.opts.Objects {
			m := map[string]any{}
			describeObject(m, o)
			if ver, ok := v.status.Versions[o.Name]; ok {
				m["version"] = ver
			}
			files = append(files, m)
		}
		st["files"] = files
	}
	if r := d.refreshInterval(v.opts, v.dynamic); r > 0 {
		st["refresh"] = r.String()
	} else if d.cfg.Refresh > 0 && !v.opts.RefreshSet {
		switch {
		case v.opts.Layout == render.LayoutFile:
			st["refresh"] = "off: a layout=file volume cannot be swapped atomically; use layout=dir"
		case v.dynamic:
			st["refresh"] = "off: the volume holds dynamic secrets, which every read issues anew; leases are renewed instead (set refresh on the volume to re-issue on purpose)"
		}
	}
	if live != nil && live.frozen {
		st["refreshPaused"] = "the tmpfs was mounted by an older dsv, read-only as a whole; it is refreshed again once the containers that hold it stop"
	}
	if !v.status.FetchedAt.IsZero() {
		st["fetchedAt"] = v.status.FetchedAt.Format(time.RFC3339)
		st["changedAt"] = v.status.ChangedAt.Format(time.RFC3339)
	}
	if v.status.LastError != "" {
		st["lastError"] = v.status.LastError
		st["lastErrorAt"] = v.status.LastErrorAt.Format(time.RFC3339)
		if v.status.Failures > 0 {
			st["failedRefreshes"] = v.status.Failures
		}
	}
	if len(leases) > 0 {
		ls := make([]map[string]any, 0, len(leases))
		for _, l := range leases {
			m := map[string]any{
				"lease":     leasePrefix(l.Lease.ID),
				"secret":    l.Ref.Name,
				"ttl":       l.Lease.Duration.String(),
				"renewable": l.Lease.Renewable,
			}
			if !l.Since.IsZero() && l.Lease.Duration > 0 {
				end := l.Since.Add(l.Lease.Duration)
				m["expiresAt"] = end.Format(time.RFC3339)
				m["ttlLeft"] = max(end.Sub(d.cfg.Now()), 0).Truncate(time.Second).String()
			}
			ls = append(ls, m)
		}
		st["leases"] = ls
		if !v.status.RenewedAt.IsZero() {
			st["renewedAt"] = v.status.RenewedAt.Format(time.RFC3339)
		}
	}
	if retiring > 0 {
		st["retiringLeases"] = retiring
	}
	if spec := d.cfg.Defaults.NotifyOf(v.opts); !spec.IsZero() {
		st["notify"] = spec.String()
	}
	if n := v.status.Notified; n != nil {
		st["lastNotification"] = n
	}
	if len(v.status.Stale) > 0 {
		st["stale"] = v.status.Stale
	}
	out.Status = st
	return out
}

// describeObject adds an object's identity (never its value) to m.
func describeObject(m map[string]any, o render.Object) {
	m["file"] = o.Name
	m["owner"] = fmt.Sprintf("%d:%d", o.UID, o.GID)
	m["mode"] = fmt.Sprintf("%04o", o.Mode)
	if o.Format != render.FormatRaw {
		m["format"] = o.Format
	}
	if o.Template != nil {
		m["template"] = o.Template.Name
		if o.Template.File != "" {
			m["templateFile"] = o.Template.File
		}
		refs := make([]string, 0, len(o.Template.Refs))
		for _, r := range o.Template.Refs {
			refs = append(refs, r.Ref.Backend+":"+r.Ref.Name)
		}
		m["secrets"] = refs
		return
	}
	m["backend"] = o.Ref.Backend
	m["secret"] = o.Ref.Name
	switch {
	case o.AllKeys:
		m["key"] = render.AllKeys
	case o.Ref.Key != "":
		m["key"] = o.Ref.Key
	}
	if o.Ref.VersionID != "" {
		m["versionId"] = o.Ref.VersionID
	}
	if o.Ref.VersionStage != "" {
		m["versionStage"] = o.Ref.VersionStage
	}
	if o.Ref.Region != "" {
		m["region"] = o.Ref.Region
	}
}

// VolumeStats is what the metrics endpoint shows of each volume, read at
// scrape time: its name, whether its tmpfs is up, and when its content was
// last read. Never a value.
func (d *Driver) VolumeStats() []metrics.VolumeStat {
	vols := d.all()
	out := make([]metrics.VolumeStat, 0, len(vols))
	for _, v := range vols {
		v.mu.Lock()
		out = append(out, metrics.VolumeStat{Name: v.name, Mounted: v.live() != nil, LastRead: v.status.FetchedAt})
		v.mu.Unlock()
	}
	return out
}
