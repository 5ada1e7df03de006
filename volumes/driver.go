// Package volumes is the Docker side of dsv: the volume.Driver that Docker
// calls, the per-volume tmpfs mounts it manages, and the state it persists.
package volumes

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/dsv-plugin/dsv/render"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/docker/go-plugins-helpers/volume"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/dsv-plugin/dsv/metrics"
	"github.com/dsv-plugin/dsv/notify"
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
	// Jitter returns a number in [0,1) to spread renewals; rand when nil.
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
}

// Notifier notifies the running containers of a volume.
type Notifier interface {
	Notify(ctx context.Context, volume string, spec notify.Spec) notify.Result
}

// fetchStatus is what Get reports about the last fetch. No value, ever.
type fetchStatus struct {
	Versions    map[string]string // object name -> version read
	FetchedAt   time.Time         // last successful read
	ChangedAt   time.Time         // last time the files changed
	LastError   string
	LastErrorAt time.Time
	Failures    int // consecutive failed refreshes
	RenewedAt   time.Time
	// Notified is the last notification of the volume's containers.
	Notified *notify.Result
	// Stale lists the objects served from their last good value.
	Stale []render.StaleObject
}

// vol is one volume. Every field is guarded by Driver.mu; op serialises the
// slow operations (fetch, mount, unmount, remove) of this one volume so that
// different volumes proceed in parallel.
type vol struct {
	op      sync.Mutex
	name    string
	opts    render.Options
	created time.Time
	// ids counts the mounts of each mount ID sharing the live tmpfs. Docker
	// reuses a running container's ID for the extra mount of `docker cp`
	// (moby #37314, #47964) and unmounts it after: a set would take the
	// tmpfs down under the running container.
	ids map[string]int
	// stale holds IDs from before a restart whose tmpfs this process cannot
	// see: their containers hold the old tmpfs themselves. They are kept
	// until Docker unmounts them, but they pin nothing.
	stale   map[string]int
	mounted bool // the tmpfs is up in this process's mount namespace
	removed bool
	status  fetchStatus
	// leases are the leases the volume's content holds; persisted by id.
	leases []render.HeldLease
	// dynamic: the content holds values that a read issues anew (leases,
	// write-issued, wrapped), so the REFRESH setting does not re-read it.
	// Persisted.
	dynamic bool
	// frozen: the tmpfs was made read-only as a whole by a dsv from before
	// the read-only views, and containers hold it: it is not written again
	// (a refresh is skipped) until they let go. Status says so.
	frozen bool
	// retiring are leases of content that was replaced, kept for the
	// grace period (open connections use them), then revoked. Persisted.
	retiring []retiredLease
	// digest identifies the files in the tmpfs, in memory only.
	digest [32]byte
	// stopRefresh ends the volume's refresh loop; nil when none runs.
	stopRefresh context.CancelFunc
	// kick makes the loop renew the volume's leases now (their issuer
	// ended); buffered, never closed.
	kick chan struct{}
}

func newVol(name string, opts render.Options, created time.Time) *vol {
	return &vol{name: name, opts: opts, created: created, ids: map[string]int{}, stale: map[string]int{}, kick: make(chan struct{}, 1)}
}

// stopLoop ends v's refresh loop, if one runs. d.mu must be held.
func (v *vol) stopLoop() {
	if v.stopRefresh != nil {
		v.stopRefresh()
		v.stopRefresh = nil
	}
}

// end stops v's loop and hands over its leases, retiring ones included,
// for the caller to revoke: no container holds its content any more. d.mu
// must be held.
func (v *vol) end() []render.HeldLease {
	v.stopLoop()
	leases := v.leases
	for _, r := range v.retiring {
		leases = append(leases, r.HeldLease)
	}
	v.leases, v.retiring = nil, nil
	return leases
}

// mounts is the number of mounts that hold v: every count of every ID,
// from before a restart included.
func (v *vol) mounts() int { return total(v.ids) + total(v.stale) }

// total is the sum of the mount counts of m.
func total(m map[string]int) int {
	n := 0
	for _, c := range m {
		n += c
	}
	return n
}

// mountSlack is what a mount may take beyond the TIMEOUT setting: writing
// the files, and a read that ignores its deadline a moment longer.
const mountSlack = time.Second

// Driver implements volume.Driver.
type Driver struct {
	cfg Config
	log zerolog.Logger

	mu   sync.Mutex
	vols map[string]*vol
	fs   *tmpfs.Volumes
	// renderer turns options into files; it writes nothing.
	renderer *render.Renderer
	// loops counts running refresh loops, for Close.
	loops sync.WaitGroup
	// stopWatch ends the goroutines that wait for backends' issuers to end.
	stopWatch context.CancelFunc
}

// Close stops every refresh loop and waits for them; mounted tmpfs stay.
func (d *Driver) Close() {
	if d.stopWatch != nil {
		d.stopWatch()
	}
	d.mu.Lock()
	for _, v := range d.vols {
		v.stopLoop()
	}
	d.mu.Unlock()
	d.loops.Wait()
}

// New loads persisted volumes, reconciles them with the mount table, and
// returns a driver ready to serve.
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
		fs: &tmpfs.Volumes{Root: cfg.Root, Writer: cfg.Writer, Mounter: cfg.Mounter, Size: 2 * cfg.TmpfsSize, Inodes: 2*inodeBudget + inodeSlack},
	}
	d.renderer = newRenderer(cfg)
	if err := d.fs.Init(); err != nil {
		return nil, err
	}
	recs, err := cfg.Store.Load()
	if err != nil {
		return nil, err
	}
	for name, r := range recs {
		v := newVol(name, r.Options, r.CreatedAt)
		v.leases, v.dynamic, v.retiring = r.Leases, r.Dynamic, r.Retiring
		v.ids = r.mountCounts()
		d.vols[name] = v
	}
	if err := d.reconcile(); err != nil {
		return nil, err
	}
	for _, v := range d.vols {
		if !v.mounted && len(v.ids) > 0 {
			d.log.Info().Str("volume", v.name).Int("mounts", len(v.ids)).Msg("mount ids from before restart kept until docker unmounts them")
			v.stale, v.ids = v.ids, map[string]int{}
		}
	}
	d.resume()
	d.watchIssuers()
	d.log.Info().Int("volumes", len(d.vols)).Msg("state loaded")
	return d, nil
}

// newRenderer is the renderer of the driver's configuration.
func newRenderer(cfg Config) *render.Renderer {
	return &render.Renderer{
		Defaults: cfg.Defaults,
		Registry: cfg.Registry,
		Allow:    cfg.Allow,
		Fetcher:  cfg.Fetcher,
		LastGood: cfg.LastGood,
		Metrics:  cfg.Metrics,
		Limit:    cfg.TmpfsSize,
		Now:      cfg.Now,
	}
}

// reconcile matches the mount table with the state at start-up. A volume
// that still has mount IDs keeps its tmpfs: containers started before a
// plugin restart may be using it; its writable side, which lived in the
// old process's mount namespace, is attached again. Any other mount is
// stale and removed.
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
	for name := range views {
		delete(sides, name) // attached again, or destroyed with its view
		if v, ok := d.vols[name]; ok && len(v.ids) > 0 {
			writable, err := d.fs.Attach(name)
			if err != nil {
				d.log.Error().Str("volume", name).Err(err).Msg("cannot attach the writable side of a kept tmpfs; it is not refreshed")
			}
			v.mounted = true
			v.frozen = !writable
			d.log.Info().Str("volume", name).Int("mounts", len(v.ids)).Bool("writable", writable).Msg("kept tmpfs still in use from before restart")
			continue
		}
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
	defer d.mu.Unlock()
	if v, ok := d.vols[req.Name]; ok {
		if sameOptions(v.opts, opts) {
			return nil
		}
		return fmt.Errorf("volume %q already exists with different options; remove it first with: docker volume rm %s", req.Name, req.Name)
	}
	v := newVol(req.Name, opts, d.cfg.Now().UTC())
	d.vols[req.Name] = v
	if err := d.saveLocked(); err != nil {
		delete(d.vols, req.Name)
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
	d.mu.Lock()
	defer d.mu.Unlock()
	out := &volume.ListResponse{Volumes: make([]*volume.Volume, 0, len(d.vols))}
	for _, v := range d.vols {
		out.Volumes = append(out.Volumes, d.describeLocked(v, false))
	}
	sort.Slice(out.Volumes, func(i, j int) bool { return out.Volumes[i].Name < out.Volumes[j].Name })
	return out, nil
}

// Get returns one volume with its status.
func (d *Driver) Get(req *volume.GetRequest) (*volume.GetResponse, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	v, ok := d.vols[req.Name]
	if !ok {
		return nil, fmt.Errorf("volume %q not found", req.Name)
	}
	return &volume.GetResponse{Volume: d.describeLocked(v, true)}, nil
}

// Path returns the mountpoint of a mounted volume, else "".
func (d *Driver) Path(req *volume.PathRequest) (*volume.PathResponse, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	v, ok := d.vols[req.Name]
	if !ok {
		return nil, fmt.Errorf("volume %q not found", req.Name)
	}
	if !v.mounted {
		return &volume.PathResponse{}, nil
	}
	return &volume.PathResponse{Mountpoint: d.mountpoint(v)}, nil
}

// Capabilities: volumes are node-local.
func (d *Driver) Capabilities() *volume.CapabilitiesResponse {
	return &volume.CapabilitiesResponse{Capabilities: volume.Capability{Scope: "local"}}
}

// Remove forgets a volume that no container of this plugin instance mounts.
func (d *Driver) Remove(req *volume.RemoveRequest) error {
	v, err := d.lookup(req.Name)
	if err != nil {
		return err
	}
	v.op.Lock()
	defer v.op.Unlock()
	d.mu.Lock()
	defer d.mu.Unlock()
	if v.removed {
		return fmt.Errorf("volume %q not found", req.Name)
	}
	if len(v.ids) > 0 {
		return fmt.Errorf("volume %q is mounted by %d container(s); stop them before removing it", req.Name, len(v.ids))
	}

	if len(v.stale) > 0 {
		// Docker only calls Remove once no container references the volume,
		// so IDs from before a restart that were never unmounted are dead.
		d.log.Warn().Str("volume", req.Name).Int("mounts", len(v.stale)).Msg("forgetting mount ids from before a restart")
	}
	delete(d.vols, req.Name)
	if err := d.saveLocked(); err != nil {
		d.vols[req.Name] = v
		return fmt.Errorf("volume %q: %w", req.Name, err)
	}
	v.removed = true
	_ = os.Remove(d.fs.View(v.name))
	// Leases held for containers from before a restart end with the
	// volume: Docker removes it only once no container references it.
	if leases := v.end(); len(leases) > 0 {
		go d.revoke(req.Name, &render.Content{Leases: leases})
	}
	d.log.Info().Str("volume", req.Name).Msg("removed")
	return nil
}

// Mount fetches the secrets into a fresh tmpfs on the first mount ID and
// shares it with later ones.
func (d *Driver) Mount(req *volume.MountRequest) (*volume.MountResponse, error) {
	v, err := d.lookup(req.Name)
	if err != nil {
		return nil, err
	}
	v.op.Lock()
	defer v.op.Unlock()

	d.mu.Lock()
	if v.removed {
		d.mu.Unlock()
		return nil, fmt.Errorf("volume %q not found", req.Name)
	}
	// ALLOW may have been tightened since the volume was created: a new
	// container gets nothing, not even a share of a live tmpfs.
	if err := d.cfg.Allow.CheckAll(v.opts.Refs()); err != nil {
		d.mu.Unlock()
		d.recordError(v, err)
		d.log.Warn().Str("volume", req.Name).Str("id", req.ID).Err(err).Msg("mount refused")
		return nil, fmt.Errorf("volume %q: %w", req.Name, err)
	}
	if v.mounted {
		v.ids[req.ID]++
		err := d.saveLocked()
		if err != nil {
			v.drop(req.ID)
		}
		mp := d.mountpoint(v)
		d.mu.Unlock()
		if err != nil {
			return nil, fmt.Errorf("volume %q: %w", req.Name, err)
		}
		d.log.Debug().Str("volume", req.Name).Str("id", req.ID).Msg("mount shared")
		return &volume.MountResponse{Mountpoint: mp}, nil
	}
	opts := v.opts
	d.mu.Unlock()

	// Every read has the TIMEOUT setting; this bounds the mount too, even
	// if a backend ignored its deadline (a read blocked in the kernel).
	ctx, cancel := context.WithTimeout(context.Background(), d.cfg.Fetcher.Timeout()+mountSlack)
	c, err := d.renderer.Render(ctx, opts, false)
	cancel()
	if err != nil {
		d.revoke(req.Name, c)
		d.recordError(v, err)
		d.log.Warn().Str("volume", req.Name).Err(err).Msg("fetch failed")
		return nil, fmt.Errorf("volume %q: %w", req.Name, err)
	}
	// Content served stale is swapped once the store answers: not plain.
	if err := d.materialise(v.name, opts, c, d.static(opts, c) && len(c.Stale) == 0); err != nil {
		d.revoke(req.Name, c)
		d.recordError(v, err)
		d.log.Error().Str("volume", req.Name).Err(err).Msg("mount failed")
		return nil, fmt.Errorf("volume %q: %w", req.Name, err)
	}

	now := d.cfg.Now().UTC()
	d.mu.Lock()
	v.mounted = true
	v.frozen = false
	v.ids[req.ID]++
	oldLeases := v.leases // held for containers from before a restart, if any
	v.leases = append(append([]render.HeldLease(nil), oldLeases...), c.Leases...)
	v.digest = c.Digest
	v.dynamic = c.Dynamic
	v.status = fetchStatus{Versions: c.Versions, FetchedAt: now, ChangedAt: now, Stale: c.Stale}
	err = d.saveLocked()
	if err != nil {
		v.mounted = false
		v.drop(req.ID)
		v.leases = oldLeases
	}
	mp := d.mountpoint(v)
	d.mu.Unlock()
	if err != nil {
		d.teardown(v.name)
		d.revoke(req.Name, c)
		return nil, fmt.Errorf("volume %q: %w", req.Name, err)
	}
	d.startRefresh(v)
	d.log.Info().Str("volume", req.Name).Str("id", req.ID).Int("objects", len(opts.Objects)).
		Int("files", len(c.Files)).Int("leases", len(c.Leases)).Msg("mounted")
	return &volume.MountResponse{Mountpoint: mp}, nil
}

// Unmount drops one mount of a mount ID; the last mount of the last ID
// takes the tmpfs down and revokes the volume's leases.
func (d *Driver) Unmount(req *volume.UnmountRequest) error {
	v, err := d.lookup(req.Name)
	if err != nil {
		return err
	}
	v.op.Lock()
	defer v.op.Unlock()

	d.mu.Lock()
	wasStale, wasLive := v.stale[req.ID] > 0, v.ids[req.ID] > 0
	if !wasStale && !wasLive {
		d.mu.Unlock()
		d.log.Warn().Str("volume", req.Name).Str("id", req.ID).Msg("unmount of an unknown mount id ignored")
		return nil
	}
	v.drop(req.ID)
	left := v.mounts()
	last := left == 0
	down := v.mounted && len(v.ids) == 0
	if down {
		v.mounted = false
	}
	var leases []render.HeldLease
	if last {
		leases = v.end()
	}
	err = d.saveLocked()
	d.mu.Unlock()
	if wasStale {
		d.log.Info().Str("volume", req.Name).Str("id", req.ID).Msg("unmount of a mount from before restart")
	}
	if down {
		d.teardown(v.name)
		if d.cfg.Release != nil {
			d.cfg.Release()
		}
		d.log.Info().Str("volume", req.Name).Msg("unmounted and wiped")
	} else if wasLive {
		d.log.Debug().Str("volume", req.Name).Str("id", req.ID).Int("mounts", left).Msg("one mount of a shared volume released")
	}
	if len(leases) > 0 {
		d.revoke(req.Name, &render.Content{Leases: leases})
	}
	if err != nil {
		return fmt.Errorf("volume %q: %w", req.Name, err)
	}
	return nil
}

// drop takes one mount of id away: a live one first, else one from before
// a restart. d.mu must be held.
func (v *vol) drop(id string) {
	for _, m := range []map[string]int{v.ids, v.stale} {
		if m[id] > 0 {
			if m[id]--; m[id] == 0 {
				delete(m, id)
			}
			return
		}
	}
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

func (d *Driver) recordError(v *vol, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
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

// static reports whether a volume's content never changes once mounted
// (no refresh, no lease): its files are then written plain, as Swarm's
// secrets are, and `docker cp` copies a file, not a symlink into ..data.
func (d *Driver) static(opts render.Options, c *render.Content) bool {
	return d.refreshInterval(opts, c.Dynamic) == 0 && len(c.Leases) == 0
}

// materialise mounts a fresh tmpfs, writes the files through its private
// side and publishes its read-only view. On any failure it leaves nothing
// behind: no mount, no directory, no partial file.
func (d *Driver) materialise(name string, opts render.Options, c *render.Content, plain bool) (err error) {
	if err := d.fs.Create(name); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			d.teardown(name)
		}
	}()
	if _, err := d.writeFiles(d.fs.Side(name), opts, c.Files, plain); err != nil {
		return err
	}
	return d.fs.Publish(name)
}

// writeFiles puts files into a volume's side: one file for the file
// layout, plain files for static content, the atomic writer for the rest.
// swapped reports whether readers see the new files, even on an error.
func (d *Driver) writeFiles(dir string, opts render.Options, files []tmpfs.File, plain bool) (swapped bool, err error) {
	if err := d.fits(files); err != nil {
		return false, err
	}
	switch {
	case opts.Layout == render.LayoutFile:
		err = tmpfs.WriteInPlace(dir, files[0])
		swapped = err == nil
	case plain:
		err = tmpfs.WritePlain(dir, files)
		swapped = err == nil
	default:
		swapped, err = tmpfs.WriteAtomic(dir, files, d.cfg.Now(), d.cfg.CrashAfter)
	}
	if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) {
		return swapped, fmt.Errorf("the secrets do not fit the volume's %d KiB tmpfs", d.cfg.TmpfsSize/1024)
	}
	return swapped, err
}

// inodeBudget is the inodes one version of a volume may use; the tmpfs has
// twice that (a refresh writes a version beside the old), plus inodeSlack
// for the root and the ..data link.
const (
	inodeBudget = 1024
	inodeSlack  = 8
)

// fits checks that one version of a volume's files stays within its
// budget, TmpfsSize bytes (in pages, as tmpfs counts) and inodeBudget: then
// a refresh always has room for the new version beside the old, and a
// volume that mounts can be refreshed.
func (d *Driver) fits(files []tmpfs.File) error {
	page := int64(os.Getpagesize())
	var pages int64
	dirs := map[string]bool{}
	for _, f := range files {
		pages += (int64(len(f.Data)) + page - 1) / page
		if dir := path.Dir(f.Path); dir != "." {
			dirs[dir] = true
		}
	}
	// A file and the symlink that shows it; a subdirectory and its link;
	// the version's directory.
	inodes := 2*len(files) + 2*len(dirs) + 1
	if pages*page > d.cfg.TmpfsSize || inodes > inodeBudget {
		return fmt.Errorf("the secrets do not fit the volume's %d KiB tmpfs: %d files, %d KiB; at most %d KiB and about %d files",
			d.cfg.TmpfsSize/1024, len(files), pages*page/1024, d.cfg.TmpfsSize/1024, (inodeBudget-1)/2)
	}
	return nil
}

// teardown wipes and unmounts a volume's tmpfs and removes its directories.
func (d *Driver) teardown(name string) {
	if err := d.fs.Destroy(name); err != nil {
		d.log.Error().Str("volume", name).Err(err).Msg("unmount failed")
	}
}

// describeLocked renders a volume for List and Get; status only for Get.
func (d *Driver) describeLocked(v *vol, withStatus bool) *volume.Volume {
	out := &volume.Volume{Name: v.name, CreatedAt: v.created.Format(time.RFC3339)}
	if v.mounted {
		out.Mountpoint = d.mountpoint(v)
	}
	if !withStatus {
		return out
	}
	st := map[string]any{
		"layout": v.opts.Layout,
		"mounts": total(v.ids),
	}
	if len(v.stale) > 0 {
		st["mountsBeforeRestart"] = len(v.stale)
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
	if v.frozen {
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
	if len(v.leases) > 0 {
		ls := make([]map[string]any, 0, len(v.leases))
		for _, l := range v.leases {
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
	if len(v.retiring) > 0 {
		st["retiringLeases"] = len(v.retiring)
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

// leasePrefix shows enough of a lease id to find it, not all of it.
func leasePrefix(id string) string {
	if len(id) > 24 {
		return id[:24] + "…"
	}
	return id
}

// saveLocked persists every volume; d.mu must be held.
func (d *Driver) saveLocked() error {
	recs := make(map[string]volumeRecord, len(d.vols))
	for name, v := range d.vols {
		recs[name] = newRecord(v)
	}
	if err := d.cfg.Store.Save(recs); err != nil {
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
