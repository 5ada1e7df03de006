package volumes

import (
	"context"
	"sync"
	"time"

	"github.com/dsv-plugin/dsv/notify"
	"github.com/dsv-plugin/dsv/render"
)

// A volume's lifecycle, kept as data (the kubelet's volume manager keeps
// mounts the same way: what is mounted, and transitions that move it):
//
//	created ──Mount──▶ published instance (tmpfs up, view shown) ──Unmount of its last mount──▶ gone: tmpfs wiped, its leases revoked
//	                        │ refresh swaps content: generation+1, replaced leases retire (revoked after their grace)
//	                        │ plugin restart, view kept ─▶ side attached again: the same instance
//	                        │ plugin restart, view lost (disable, upgrade) ─▶ reattached through a container that holds it,
//	                        │                                                 else detached: renewed, never rewritten
//	                        └ Remove (Docker: no container references it) ─▶ every instance gone, every lease revoked
//
// An instance is one tmpfs: the mounts that hold it, counted per mount ID
// (docker cp mounts a running container's ID again), the leases of the
// content it shows and the retiring leases of content it showed. The
// published instance is the one new mounts share; older ones exist only
// while containers that ran across a plugin restart hold them. An
// asynchronous step (a renewal, a refresh, a revocation) names the
// instance and the generation it started from and writes back only if
// they are still current.

// instance is one tmpfs of a volume.
type instance struct {
	// id is random, persisted; it names the instance in logs and state.
	id string
	// mounts counts the mounts of each mount ID that hold this tmpfs.
	mounts map[string]int
	// leases are the leases of the content the tmpfs shows.
	leases []render.HeldLease
	// retiring are leases of content it showed, kept for their grace.
	retiring []retiredLease
	// published: its view is the volume's view, shared by new mounts. At
	// most one instance of a volume is.
	published bool
	// dev is the tmpfs's device number: how it is found in a container's
	// mount table after the plugin lost its own mounts.
	dev uint64

	// In memory only.
	// writable: this process has the tmpfs's side and may write it.
	writable bool
	// frozen: the tmpfs was made read-only as a whole by a dsv from before
	// the read-only views: it is not written until its containers let go.
	frozen bool
	// gen is bumped at every swap of the content.
	gen uint64
	// digest identifies the files the tmpfs shows.
	digest [32]byte
	// refetch: a lease of its content could not be renewed: the content
	// must be read anew.
	refetch bool
}

// count is the number of mounts that hold the instance.
func (in *instance) count() int { return total(in.mounts) }

// allLeases is every lease the instance holds, retiring ones included.
func (in *instance) allLeases() []render.HeldLease {
	out := append([]render.HeldLease(nil), in.leases...)
	for _, r := range in.retiring {
		out = append(out, r.HeldLease)
	}
	return out
}

// total is the sum of the mount counts of m.
func total(m map[string]int) int {
	n := 0
	for _, c := range m {
		n += c
	}
	return n
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

// vol is one volume. mu guards every field below it; op serialises the
// slow operations (mount, unmount, refresh, remove) of this one volume so
// that different volumes proceed in parallel. No call to a backend is
// made with mu held; op is held across reads (a mount waits for its
// content) but never across a revocation.
type vol struct {
	op      sync.Mutex
	name    string
	opts    render.Options
	created time.Time
	// kick makes the loop renew the volume's leases now (their issuer
	// ended); buffered, never closed.
	kick chan struct{}
	// jitter in [0,1) spreads this volume's renewals (see renewDue) and
	// the phase of its refreshes (see scheduleLocked).
	jitter float64

	mu sync.Mutex
	// instances are the volume's tmpfs, oldest first.
	instances []*instance
	// dynamic: the content holds values that a read issues anew (leases,
	// write-issued, wrapped), so the REFRESH setting does not re-read it.
	dynamic bool
	removed bool
	status  fetchStatus
	// The loop's schedule.
	refreshAt     time.Time // next re-read; zero: none due
	renewNow      bool      // renew every lease at the next turn
	replaceNow    bool      // and replace those that cannot be renewed (their issuer ended)
	renewRetryAt  time.Time // after a failed renewal: not before then
	renewFailures int
	// looping: the volume's loop runs; stopRefresh ends it (nil in tests
	// that turn the loop by hand).
	looping     bool
	stopRefresh context.CancelFunc
}

func newVol(name string, opts render.Options, created time.Time, jitter float64) *vol {
	return &vol{name: name, opts: opts, created: created, kick: make(chan struct{}, 1), jitter: jitter}
}

// live is the published instance; nil when the volume has no view. v.mu
// must be held (a helper of the transitions below).
func (v *vol) live() *instance {
	for _, in := range v.instances {
		if in.published {
			return in
		}
	}
	return nil
}

// alive reports whether in is still one of v's instances; v.mu held.
func (v *vol) alive(in *instance) bool {
	for _, x := range v.instances {
		if x == in {
			return true
		}
	}
	return false
}

// mounted reports whether the volume's view is up.
func (v *vol) mounted() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.live() != nil
}

// isRemoved reports whether Remove took the volume.
func (v *vol) isRemoved() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.removed
}

// share counts one more mount of id on the published instance; false when
// there is none (the caller fills a fresh one).
func (v *vol) share(id string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	in := v.live()
	if in == nil {
		return false
	}
	in.mounts[id]++
	return true
}

// publish makes in, freshly filled with c, the volume's published
// instance, mounted once by id.
func (v *vol) publish(in *instance, id string, c *render.Content, now time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, x := range v.instances {
		x.published = false
	}
	in.published, in.writable = true, true
	in.mounts = map[string]int{id: 1}
	in.leases = append([]render.HeldLease(nil), c.Leases...)
	in.digest = c.Digest
	v.instances = append(v.instances, in)
	v.dynamic = c.Dynamic
	v.status = fetchStatus{Versions: c.Versions, FetchedAt: now, ChangedAt: now, Stale: c.Stale}
}

// release drops the most recent mount of id: on the newest instance that
// id holds (a docker cp's extra mount of a running container's ID ends
// before the container does). gone is the instance whose last mount that
// was, now removed; known is false for an id no instance holds.
func (v *vol) release(id string) (gone *instance, known bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for i := len(v.instances) - 1; i >= 0; i-- {
		in := v.instances[i]
		if in.mounts[id] == 0 {
			continue
		}
		if in.mounts[id]--; in.mounts[id] == 0 {
			delete(in.mounts, id)
		}
		if in.count() > 0 {
			return nil, true
		}
		v.instances = append(v.instances[:i:i], v.instances[i+1:]...)
		return in, true
	}
	return nil, false
}

// forget removes in, whatever holds it (a mount that failed to persist).
func (v *vol) forget(in *instance) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for i, x := range v.instances {
		if x == in {
			v.instances = append(v.instances[:i:i], v.instances[i+1:]...)
			return
		}
	}
}

// remove takes every instance away: Remove.
func (v *vol) remove() []*instance {
	v.mu.Lock()
	defer v.mu.Unlock()
	all := v.instances
	v.instances, v.removed = nil, true
	return all
}

// swap records that in shows new content c from generation gen on. It
// returns the leases the swap replaced, to retire or revoke, and false
// when in is gone or moved on since gen (then c's leases are not held).
func (v *vol) swap(in *instance, gen uint64, c *render.Content, now time.Time) (replaced []render.HeldLease, ok bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.alive(in) || in.gen != gen {
		return nil, false
	}
	replaced = in.leases
	in.leases = append([]render.HeldLease(nil), c.Leases...)
	in.digest = c.Digest
	in.gen++
	in.refetch = false
	v.dynamic = v.dynamic || c.Dynamic
	v.status.Versions = c.Versions
	v.status.FetchedAt = now
	v.status.ChangedAt = now
	return replaced, true
}

// retire puts leases of replaced content of in aside until at.
func (v *vol) retire(in *instance, leases []render.HeldLease, at time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, l := range leases {
		if l.Lease.ID != "" {
			in.retiring = append(in.retiring, retiredLease{HeldLease: l, RevokeAt: at})
		}
	}
}

// dueRetired takes out the retiring leases whose grace ended by now.
func (v *vol) dueRetired(now time.Time) []render.HeldLease {
	v.mu.Lock()
	defer v.mu.Unlock()
	var due []render.HeldLease
	for _, in := range v.instances {
		keep := in.retiring[:0:0]
		for _, r := range in.retiring {
			if now.Before(r.RevokeAt) {
				keep = append(keep, r)
			} else {
				due = append(due, r.HeldLease)
			}
		}
		in.retiring = keep
	}
	return due
}

// renewal is one lease to renew: which instance holds it, at which
// generation of its content, in which place.
type renewal struct {
	in    *instance
	gen   uint64
	i     int
	lease render.HeldLease
}

// toRenew lists every lease of every instance that has terms to renew.
func (v *vol) toRenew() []renewal {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []renewal
	for _, in := range v.instances {
		for i, l := range in.leases {
			out = append(out, renewal{in: in, gen: in.gen, i: i, lease: l})
		}
	}
	return out
}

// renewed records a renewal's result, made from r: new terms, or that the
// lease must be replaced (refetch). It writes back only to a lease that
// the instance still holds at the generation r was made at: a renewal
// that returns after its lease was revoked or replaced (a slow store, an
// unmount and a new mount, or a swap, in between) changes nothing.
func (v *vol) renewed(r renewal, terms *render.HeldLease, refetch bool) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.alive(r.in) || r.in.gen != r.gen || r.i >= len(r.in.leases) || r.in.leases[r.i].Lease.ID != r.lease.Lease.ID {
		return false
	}
	// Terms asked before the ones held (a renewal that returns late,
	// after a later one) are older news.
	if terms != nil && !terms.Since.Before(r.in.leases[r.i].Since) {
		r.in.leases[r.i] = *terms
	}
	if refetch {
		r.in.refetch = true
	}
	return true
}
