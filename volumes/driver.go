// Package volumes is the Docker side of dsv: the volume.Driver that Docker
// calls (driver.go), each volume's lifecycle kept as data (volume.go), the
// state it persists (state.go), what start-up rebuilds from it (start.go),
// the loop that refreshes and renews (refresh.go, leases.go), the
// revocations (revoke.go) and what inspect shows (status.go).
package volumes

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/docker/go-plugins-helpers/volume"
	"github.com/rs/zerolog"

	"github.com/dsv-plugin/dsv/metrics"
	"github.com/dsv-plugin/dsv/notify"
	"github.com/dsv-plugin/dsv/render"
	"github.com/dsv-plugin/dsv/secrets"
	"github.com/dsv-plugin/dsv/secrets/allowlist"
	"github.com/dsv-plugin/dsv/secrets/cache"
	"github.com/dsv-plugin/dsv/secrets/lastgood"
	"github.com/dsv-plugin/dsv/tmpfs"
)

var _ volume.Driver = (*Driver)(nil)

// Config is what the driver needs from main.
type Config struct {
	// Root is the directory under which each volume's read-only view is
	// mounted: the plugin's PropagatedMount, so that containers see them.
	Root string
	// Writer is the directory under which each volume's tmpfs is mounted
	// read-write for the plugin alone; made private, never under Root.
	Writer string
	// Store persists volume records.
	Store *Store
	// Registry holds the backends.
	Registry *secrets.Registry
	// Defaults are the plugin-wide fallbacks for options.
	Defaults render.Defaults
	// Allow is the ALLOW setting: the objects volumes may read, checked at
	// create, at mount and before every read. nil allows every object.
	Allow *allowlist.List
	// Fetcher reads secrets: timeout, shared reads, short-lived cache.
	Fetcher *cache.Fetcher
	// TmpfsSize caps each volume's tmpfs, in bytes.
	TmpfsSize int64
	// Mounter performs mounts; tmpfs.Kernel in production.
	Mounter tmpfs.Mounter
	// LeaseGrace is the LEASE_GRACE setting: how long a lease replaced by
	// new content is kept before it is revoked (open connections of the
	// app still use it); a volume's lease-grace option overrides it.
	LeaseGrace time.Duration
	// Logger receives the driver's logs; a component field is added.
	Logger zerolog.Logger
	// Metrics counts refreshes and lease renewals; nil counts nothing.
	Metrics *metrics.Metrics
	// Refresh is the REFRESH plugin setting: the default interval at which
	// mounted directory volumes are re-read; 0 reads once at mount.
	Refresh time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Jitter returns a number in [0,1) to spread renewals and the phase of
	// refreshes; rand when nil.
	Jitter func() float64
	// Release, when set, runs after a volume's tmpfs came down: main
	// returns the memory its rendering used to the OS then
	// (debug.FreeOSMemory), rather than keeping it for the next burst.
	Release func()
	// CrashAfter, in tests only, interrupts the atomic writer after a step.
	CrashAfter func(step string) error
	// Notifier tells a volume's containers that a swap changed its files
	// (the notify option); nil: the plugin has no engine access.
	Notifier Notifier
	// LastGood keeps last good values for stale-if-error; nil keeps none.
	LastGood *lastgood.Store
	// manualLoops, in tests only: no goroutine runs a volume's loop or the
	// revoker; the test turns them (turn, revoker.runDue).
	manualLoops bool
}

// Notifier notifies the running containers of a volume.
type Notifier interface {
	Notify(ctx context.Context, volume string, spec notify.Spec) notify.Result
}

// mountSlack is what a mount may take beyond the TIMEOUT setting: writing
// the files, and a read that ignores its deadline a moment longer.
const mountSlack = time.Second

// Driver implements volume.Driver: it translates Docker's calls into
// transitions of the volumes' lifecycles (volume.go) and the work they
// ask for: reading (render), filling the tmpfs (tmpfs), saving the state,
// running the loops (refresh.go) and revoking (revoke.go).
type Driver struct {
	cfg Config
	log zerolog.Logger
	fs  *tmpfs.Volumes
	// renderer turns options into files; it writes nothing.
	renderer *render.Renderer
	revoker  *revoker

	// ctx ends the loops, the revoker and the issuer watchers; bg counts
	// them, for Close.
	ctx  context.Context
	stop context.CancelFunc
	bg   sync.WaitGroup

	// mu guards vols (the map, not the volumes: each has its own lock).
	mu   sync.Mutex
	vols map[string]*vol
	// saveMu orders saves: a state is read and written under it, so an
	// older state is never written after a newer one.
	saveMu sync.Mutex
}

// Close stops every loop and waits for them; mounted tmpfs stay. It makes
// one last attempt, within TIMEOUT, at the revocations queued; those not
// done stay in the state for the next process.
func (d *Driver) Close() {
	d.stop()
	d.bg.Wait()
	if !d.cfg.manualLoops {
		ctx, cancel := context.WithTimeout(context.Background(), d.cfg.Fetcher.Timeout())
		d.revoker.runDue(ctx)
		cancel()
	}
}

// Create registers a placeholder volume. It validates every option and
// fetches nothing.
func (d *Driver) Create(req *volume.CreateRequest) error {
	if err := render.ValidateVolumeName(req.Name); err != nil {
		return err
	}
	opts, err := render.ParseOptions(req.Name, req.Options, d.cfg.Defaults, d.cfg.Registry)
	if err != nil {
		d.log.Warn().Str("volume", req.Name).Strs("options", optionKeys(req.Options)).Err(err).Msg("create refused")
		return err
	}
	if err := d.cfg.Allow.CheckAll(opts.Refs()); err != nil {
		d.log.Warn().Str("volume", req.Name).Strs("options", optionKeys(req.Options)).Err(err).Msg("create refused")
		return fmt.Errorf("volume %q: %w", req.Name, err)
	}
	if spec := d.cfg.Defaults.NotifyOf(opts); !spec.IsZero() && d.cfg.Notifier == nil {
		return fmt.Errorf("volume %q: option \"notify\": %s needs the engine API, which the plugin was not granted: docker plugin disable dsv && docker plugin set dsv engine.source=/var/run/docker.sock && docker plugin enable dsv", req.Name, spec)
	}
	d.mu.Lock()
	if v, ok := d.vols[req.Name]; ok {
		d.mu.Unlock()
		if sameOptions(v.opts, opts) {
			return nil
		}
		return fmt.Errorf("volume %q already exists with different options; remove it first with: docker volume rm %s", req.Name, req.Name)
	}
	v := newVol(req.Name, opts, d.cfg.Now().UTC(), d.cfg.Jitter())
	d.vols[req.Name] = v
	d.mu.Unlock()
	if err := d.save(); err != nil {
		d.mu.Lock()
		delete(d.vols, req.Name)
		d.mu.Unlock()
		return fmt.Errorf("volume %q: %w", req.Name, err)
	}
	d.log.Info().Str("volume", req.Name).
		Str("layout", opts.Layout).Int("objects", len(opts.Objects)).Strs("options", optionKeys(req.Options)).Msg("created")
	return nil
}

// sameOptions compares options as they are persisted: a volume reloaded
// after a restart has nil where a fresh parse has an empty map or slice.
func sameOptions(a, b render.Options) bool {
	ja, erra := json.Marshal(a)
	jb, errb := json.Marshal(b)
	return erra == nil && errb == nil && bytes.Equal(ja, jb)
}

// List returns every volume.
func (d *Driver) List() (*volume.ListResponse, error) {
	vols := d.all()
	out := &volume.ListResponse{Volumes: make([]*volume.Volume, 0, len(vols))}
	for _, v := range vols {
		out.Volumes = append(out.Volumes, d.describe(v, false))
	}
	sort.Slice(out.Volumes, func(i, j int) bool { return out.Volumes[i].Name < out.Volumes[j].Name })
	return out, nil
}

// Get returns one volume with its status.
func (d *Driver) Get(req *volume.GetRequest) (*volume.GetResponse, error) {
	v, err := d.lookup(req.Name)
	if err != nil {
		return nil, err
	}
	return &volume.GetResponse{Volume: d.describe(v, true)}, nil
}

// Path returns the mountpoint of a mounted volume, else "".
func (d *Driver) Path(req *volume.PathRequest) (*volume.PathResponse, error) {
	v, err := d.lookup(req.Name)
	if err != nil {
		return nil, err
	}
	if !v.mounted() {
		return &volume.PathResponse{}, nil
	}
	return &volume.PathResponse{Mountpoint: d.mountpoint(v)}, nil
}

// Capabilities: volumes are node-local.
func (d *Driver) Capabilities() *volume.CapabilitiesResponse {
	return &volume.CapabilitiesResponse{Capabilities: volume.Capability{Scope: "local"}}
}

// Remove forgets a volume. Docker calls it only once no container
// references the volume, so any mount still counted is dead (an Unmount
// lost while the plugin was down; Engine 25+ can skip Unmount after a
// daemon restart, moby #46508): its tmpfs is wiped and every lease of the
// volume revoked.
func (d *Driver) Remove(req *volume.RemoveRequest) error {
	v, err := d.lookup(req.Name)
	if err != nil {
		return err
	}
	v.op.Lock()
	defer v.op.Unlock()
	if v.isRemoved() {
		return fmt.Errorf("volume %q not found", req.Name)
	}
	d.mu.Lock()
	delete(d.vols, req.Name)
	d.mu.Unlock()
	v.stopLoop()
	d.cfg.Metrics.ForgetVolume(req.Name)
	gone := v.remove()
	for _, in := range gone {
		d.revoker.add(v.name, in.allLeases())
	}
	if err := d.save(); err != nil {
		d.log.Error().Str("volume", req.Name).Err(err).Msg("state not saved after remove; the volume may come back at a restart")
	}
	for _, in := range gone {
		if n := in.count(); n > 0 {
			d.log.Warn().Str("volume", req.Name).Str("instance", in.id).Int("mounts", n).Msg("forgetting mounts that Docker never unmounted")
		}
		if in.writable {
			d.teardown(v.name)
		}
	}
	_ = os.Remove(d.fs.View(v.name))
	d.log.Info().Str("volume", req.Name).Msg("removed")
	return nil
}

// Mount shares the volume's published tmpfs, or fills a fresh one.
func (d *Driver) Mount(req *volume.MountRequest) (*volume.MountResponse, error) {
	v, err := d.lookup(req.Name)
	if err != nil {
		return nil, err
	}
	v.op.Lock()
	defer v.op.Unlock()
	if v.isRemoved() {
		return nil, fmt.Errorf("volume %q not found", req.Name)
	}
	// ALLOW may have been tightened since the volume was created: a new
	// container gets nothing, not even a share of a live tmpfs.
	if err := d.cfg.Allow.CheckAll(v.opts.Refs()); err != nil {
		d.recordError(v, err)
		d.log.Warn().Str("volume", req.Name).Str("id", req.ID).Err(err).Msg("mount refused")
		return nil, fmt.Errorf("volume %q: %w", req.Name, err)
	}
	if v.share(req.ID) {
		if err := d.save(); err != nil {
			v.release(req.ID)
			return nil, fmt.Errorf("volume %q: %w", req.Name, err)
		}
		d.log.Debug().Str("volume", req.Name).Str("id", req.ID).Msg("mount shared")
		return &volume.MountResponse{Mountpoint: d.mountpoint(v)}, nil
	}

	// Every read has the TIMEOUT setting; this bounds the mount too, even
	// if a backend ignored its deadline (a read blocked in the kernel).
	ctx, cancel := context.WithTimeout(context.Background(), d.cfg.Fetcher.Timeout()+mountSlack)
	c, err := d.renderer.Render(ctx, v.opts, false)
	cancel()
	in := &instance{}
	marked := false
	if err == nil {
		in.id, err = tmpfs.NewInstanceID()
	}
	if err == nil {
		marked, err = d.fs.Fill(v.name, in.id, c.Files, d.writeMode(v.opts, c), d.cfg.Now(), d.cfg.CrashAfter)
	}
	if err != nil {
		if c != nil {
			d.discard(v.name, c.Leases)
		}
		d.recordError(v, err)
		d.log.Warn().Str("volume", req.Name).Err(err).Msg("mount failed")
		return nil, fmt.Errorf("volume %q: %w", req.Name, err)
	}
	// A marked tmpfs can be found again in a container's mount table by
	// its device number after the plugin lost its own mounts (an upgrade).
	if dev, err := d.fs.Device(v.name); err == nil && marked {
		in.dev = dev
	}
	v.publish(in, req.ID, c, d.cfg.Now().UTC())
	if err := d.save(); err != nil {
		v.forget(in)
		d.teardown(v.name)
		d.revoker.add(v.name, c.Leases)
		return nil, fmt.Errorf("volume %q: %w", req.Name, err)
	}
	d.startLoop(v)
	d.log.Info().Str("volume", req.Name).Str("id", req.ID).Str("instance", in.id).Int("objects", len(v.opts.Objects)).
		Int("files", len(c.Files)).Int("leases", len(c.Leases)).Msg("mounted")
	return &volume.MountResponse{Mountpoint: d.mountpoint(v)}, nil
}

// Unmount drops the most recent mount of a mount ID; the last mount of an
// instance wipes its tmpfs and revokes its leases, retiring ones included.
func (d *Driver) Unmount(req *volume.UnmountRequest) error {
	v, err := d.lookup(req.Name)
	if err != nil {
		return err
	}
	v.op.Lock()
	defer v.op.Unlock()
	gone, known := v.release(req.ID)
	if !known {
		d.log.Warn().Str("volume", req.Name).Str("id", req.ID).Msg("unmount of an unknown mount id ignored")
		return nil
	}
	if gone == nil {
		d.log.Debug().Str("volume", req.Name).Str("id", req.ID).Msg("one mount of a shared volume released")
		return d.saved(v, d.save())
	}
	d.revoker.add(v.name, gone.allLeases())
	err = d.save()
	if !d.needsLoop(v) {
		v.stopLoop()
	}
	if gone.writable {
		d.teardown(v.name)
		if d.cfg.Release != nil {
			d.cfg.Release()
		}
		d.log.Info().Str("volume", req.Name).Str("instance", gone.id).Msg("unmounted and wiped")
	} else {
		d.log.Info().Str("volume", req.Name).Str("instance", gone.id).Msg("last mount of a tmpfs from before a restart released")
	}
	return d.saved(v, err)
}

// saved wraps a failed save for Docker.
func (d *Driver) saved(v *vol, err error) error {
	if err != nil {
		return fmt.Errorf("volume %q: %w", v.name, err)
	}
	return nil
}

func (d *Driver) lookup(name string) (*vol, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	v, ok := d.vols[name]
	if !ok {
		return nil, fmt.Errorf("volume %q not found", name)
	}
	return v, nil
}

// all is every volume, for a walk without d.mu held.
func (d *Driver) all() []*vol {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]*vol, 0, len(d.vols))
	for _, v := range d.vols {
		out = append(out, v)
	}
	return out
}

func (d *Driver) recordError(v *vol, err error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.status.LastError = err.Error()
	v.status.LastErrorAt = d.cfg.Now().UTC()
}

// mountpoint is what Docker mounts into containers, in the volume's
// read-only view: the file itself for the file layout, the tmpfs root for
// the dir layout.
func (d *Driver) mountpoint(v *vol) string {
	if v.opts.Layout == render.LayoutFile {
		return filepath.Join(d.fs.View(v.name), v.opts.Objects[0].Name)
	}
	return d.fs.View(v.name)
}

// writeMode is how a volume's files are written: in place for the file
// layout; plain for static content (no refresh, no lease), as Swarm's
// secrets are, so that `docker cp` copies a file, not a symlink into
// ..data; atomically otherwise.
func (d *Driver) writeMode(opts render.Options, c *render.Content) tmpfs.Mode {
	switch {
	case opts.Layout == render.LayoutFile:
		return tmpfs.InPlace
	case d.refreshInterval(opts, c.Dynamic) == 0 && len(c.Leases) == 0 && len(c.Stale) == 0:
		// Content served stale is swapped once the store answers.
		return tmpfs.Plain
	}
	return tmpfs.Atomic
}

// teardown wipes and unmounts a volume's tmpfs and removes its directories.
func (d *Driver) teardown(name string) {
	if err := d.fs.Destroy(name); err != nil {
		d.log.Error().Str("volume", name).Err(err).Msg("unmount failed")
	}
}

// save persists every volume and the pending revocations.
func (d *Driver) save() error {
	d.saveMu.Lock()
	defer d.saveMu.Unlock()
	vols := d.all()
	st := State{Volumes: make(map[string]volumeRecord, len(vols)), Revoking: d.revoker.pending()}
	for _, v := range vols {
		st.Volumes[v.name] = v.record()
	}
	if err := d.cfg.Store.Save(st); err != nil {
		d.log.Error().Err(err).Msg("persist state failed")
		return err
	}
	return nil
}

// optionKeys lists option names for logs; values stay out of logs.
func optionKeys(opts map[string]string) []string {
	keys := make([]string, 0, len(opts))
	for k := range opts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
