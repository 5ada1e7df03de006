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
	for _, v := range d.vols {
		in := v.live()
		if in == nil {
			continue
		}
		if !views[v.name] {
			in.published = false
			d.log.Warn().Str("volume", v.name).Str("instance", in.id).Int("mounts", in.count()).
				Msg("the volume's tmpfs is gone from the plugin (disable or upgrade); containers that hold it keep it, detached: leases renewed, files not refreshed")
			continue
		}
		delete(views, v.name)
		delete(sides, v.name)
		writable, err := d.fs.Attach(v.name)
		if err != nil {
			d.log.Error().Str("volume", v.name).Err(err).Msg("cannot attach the writable side of a kept tmpfs; it is not refreshed")
		}
		in.writable, in.frozen = err == nil, err == nil && !writable
		d.log.Info().Str("volume", v.name).Str("instance", in.id).Int("mounts", in.count()).Bool("writable", writable).Msg("kept tmpfs still in use from before restart")
	}
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
