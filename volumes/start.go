package volumes

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"time"

	"github.com/dsv-plugin/dsv/render"
	"github.com/dsv-plugin/dsv/tmpfs"
)

// Start-up: the state says which instances mounts hold; the mount table
// says which of their tmpfs this process can still reach. The kubelet's
// volume manager reconstructs its actual state from the host the same way.

// New loads persisted volumes, matches their instances with the mount
// table, and returns a driver ready to serve: loops running, pending
// revocations resumed.
func New(cfg Config) (*Driver, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Jitter == nil {
		cfg.Jitter = rand.Float64
	}
	if cfg.Fetcher == nil {
		return nil, errors.New("volumes: a fetcher is required")
	}
	if cfg.Writer == "" {
		return nil, errors.New("volumes: a writer directory is required")
	}
	d := &Driver{
		cfg:  cfg,
		log:  cfg.Logger.With().Str("component", "volumes").Logger(),
		vols: map[string]*vol{},
		// Twice one version's budget: a refresh writes the new version
		// beside the old before it switches.
		fs: &tmpfs.Volumes{Root: cfg.Root, Writer: cfg.Writer, Mounter: cfg.Mounter, Size: 2 * cfg.TmpfsSize, Inodes: 2*tmpfs.InodeBudget + tmpfs.InodeSlack},
	}
	d.ctx, d.stop = context.WithCancel(context.Background())
	d.renderer = newRenderer(cfg)
	if err := d.fs.Init(); err != nil {
		return nil, err
	}
	st, err := cfg.Store.Load()
	if err != nil {
		return nil, err
	}
	d.revoker = newRevoker(d, st.Revoking)
	for name, r := range st.Volumes {
		d.vols[name] = restore(name, r, cfg.Jitter())
	}
	if err := d.reconcile(); err != nil {
		return nil, err
	}
	d.resume()
	if !cfg.manualLoops {
		d.bg.Go(func() { d.revoker.run(d.ctx) })
	}
	d.watchIssuers(d.ctx)
	d.log.Info().Int("volumes", len(d.vols)).Int("revocations", len(st.Revoking)).Msg("state loaded")
	return d, nil
}

// newRenderer is the renderer of the driver's configuration.
func newRenderer(cfg Config) *render.Renderer {
	return &render.Renderer{
		Defaults: cfg.Defaults,
		Registry: cfg.Registry,
		Allow:    cfg.Allow,
		Fetcher:  cfg.Fetcher,
		Limit:    cfg.TmpfsSize,
		Now:      cfg.Now,
		LastGood: cfg.LastGood,
		Metrics:  cfg.Metrics,
	}
}

// reconcile matches the mount table with the state. A volume's published
// instance whose view survived (a plugin crash, legacy mode) gets its
// writable side again, which lived in the old process's mount namespace;
// one whose view is gone (Docker unmounts the plugin's propagated mount
// when it disables the plugin) is detached: the containers that hold its
// tmpfs keep it, and its leases are renewed. Every other mount is stale
// and removed.
func (d *Driver) reconcile() error {
	views, sides, leftovers, err := d.fs.Mounted()
	if err != nil {
		return err
	}
	for _, mp := range leftovers {
		if err := d.cfg.Mounter.Unmount(mp); err != nil {
			return fmt.Errorf("clean up stale mount: %w", err)
		}
		_ = os.Remove(mp)
	}
	var lost []*vol
	for _, v := range d.vols {
		in := v.live()
		if in == nil {
			continue
		}
		if !views[v.name] {
			lost = append(lost, v)
			continue
		}
		delete(views, v.name)
		delete(sides, v.name)
		a, err := d.fs.AttachView(v.name)
		if err != nil {
			d.log.Error().Str("volume", v.name).Err(err).Msg("cannot attach the writable side of a kept tmpfs; it is not refreshed")
		}
		in.writable, in.frozen = err == nil, err == nil && !a.Writable
		if a.ViewWasWritable {
			d.sealLegacyView(v, in)
		}
		d.log.Info().Str("volume", v.name).Str("instance", in.id).Int("mounts", in.count()).Bool("writable", a.Writable).Msg("kept tmpfs still in use from before restart")
	}
	d.reattach(lost)
	for name := range views {
		delete(sides, name)
		if err := d.fs.Destroy(name); err != nil {
			return fmt.Errorf("clean up stale mount: %w", err)
		}
		d.log.Info().Str("volume", name).Msg("removed stale tmpfs")
	}
	for name := range sides {
		if err := d.cfg.Mounter.Unmount(d.fs.Side(name)); err != nil {
			return fmt.Errorf("clean up stale mount: %w", err)
		}
		_ = os.Remove(d.fs.Side(name))
	}
	return nil
}

// reattach takes back the published instances whose view is gone (Docker
// unmounts the plugin's propagated mount when it disables the plugin:
// every upgrade) from a container that still holds the tmpfs: a clone of
// the container's mount, made writable, becomes the side again and the
// view is published anew, so rotation and lease replacement reach the
// containers that ran across the upgrade, and new mounts share their
// tmpfs. An instance that cannot be taken back (no container holds its
// whole tmpfs, a kernel without the mount API, a file layout) is detached:
// its containers keep their files, its leases are renewed.
func (d *Driver) reattach(lost []*vol) {
	var devs []uint64
	for _, v := range lost {
		if in := v.live(); in.dev != 0 {
			devs = append(devs, in.dev)
		}
	}
	var holders map[uint64][]tmpfs.Holder
	if len(devs) > 0 {
		var err error
		if holders, err = tmpfs.FindAllHolders(devs); err != nil {
			d.log.Warn().Err(err).Msg("cannot read the mount tables of other processes; tmpfs from before the restart stay detached")
		}
	}
	for _, v := range lost {
		in := v.live()
		log := d.log.With().Str("volume", v.name).Str("instance", in.id).Int("mounts", in.count()).Logger()
		var errs []error
		for _, h := range holders[in.dev] {
			if !h.Attachable() {
				continue
			}
			err := d.fs.AttachFrom(v.name, in.id, h)
			if err == nil {
				err = d.fs.Publish(v.name)
				if err != nil {
					_ = d.cfg.Mounter.Unmount(d.fs.Side(v.name))
				}
			}
			if err == nil {
				in.writable = true
				log.Info().Ints("pids", h.PIDs).Msg("tmpfs from before the restart taken back from a container that holds it; refresh and lease replacement reach it again")
				break
			}
			errs = append(errs, err)
		}
		if in.writable {
			continue
		}
		in.published = false
		v.status.LastError = "detached: the plugin restarted without its mounts (a disable or an upgrade) and could not take back the tmpfs that running containers hold; they keep their files and leases, but rotation does not reach them until they restart"
		v.status.LastErrorAt = d.cfg.Now().UTC()
		log.Warn().Err(errors.Join(errs...)).Int("holders", len(holders[in.dev])).
			Msg("the volume's tmpfs is gone from the plugin (disable or upgrade); containers that hold it keep it, detached: leases renewed, files not refreshed")
	}
}

// sealLegacyView makes read-only the mounts that containers hold of a
// view a dsv from before the read-only views left writable.
func (d *Driver) sealLegacyView(v *vol, in *instance) {
	sealed, err := d.fs.SealHolders(v.name)
	log := d.log.With().Str("volume", v.name).Str("instance", in.id).Logger()
	if err != nil {
		v.status.LastError = "the view of this tmpfs took writes (mounted by an older dsv); new containers get it read-only, but some that hold it could not be sealed: " + err.Error()
		v.status.LastErrorAt = d.cfg.Now().UTC()
		log.Error().Err(err).Int("sealed", len(sealed)).Msg("a writable view from an older dsv: sealed for new containers; some holders could not be made read-only")
		return
	}
	log.Warn().Int("sealed", len(sealed)).Msg("a writable view from an older dsv: sealed, and made read-only in the containers that held it")
}

// resume starts the loops of volumes with instances, asks them to renew
// the leases read by the previous process first thing (their issuer, a
// Vault login token, may have gone with it), and queues the leases of
// instances no mount holds for revocation.
func (d *Driver) resume() {
	for _, v := range d.vols {
		v.mu.Lock()
		keep := v.instances[:0:0]
		for _, in := range v.instances {
			if in.count() == 0 {
				d.revoker.add(v.name, in.allLeases())
				continue
			}
			keep = append(keep, in)
			if len(in.leases) > 0 {
				v.renewNow = true
			}
		}
		v.instances = keep
		v.mu.Unlock()
	}
	_ = d.save()
	for _, v := range d.vols {
		d.startLoop(v)
	}
}
