package render

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/dsv-plugin/dsv/metrics"
	"github.com/dsv-plugin/dsv/secrets"
	"github.com/dsv-plugin/dsv/secrets/allowlist"
	"github.com/dsv-plugin/dsv/secrets/cache"
	"github.com/dsv-plugin/dsv/secrets/lastgood"
	"github.com/dsv-plugin/dsv/tmpfs"
)

// HeldLease is a lease that a volume's content depends on.
type HeldLease struct {
	Ref   secrets.Ref   `json:"ref"`
	Lease secrets.Lease `json:"lease"`
	// Since is when the lease's current terms began: the read that got it
	// or its last renewal. Persisted, so that a restarted plugin renews on
	// time; zero (state from before it was kept) means unknown: renew now.
	Since time.Time `json:"since,omitzero"`
}

// Content is a volume's rendered files and what they were made from. It
// lives in memory only.
type Content struct {
	Files    []tmpfs.File
	Versions map[string]string // object name -> version(s) read
	Leases   []HeldLease
	// Dynamic: a value read was unique (a lease, an issued or wrapped
	// value): reading again issues anew.
	Dynamic bool
	Digest  [sha256.Size]byte
	// Stale lists the secrets whose store was unavailable and whose last
	// good value, read within the volume's stale-if-error, was used
	// instead. Empty when every value is fresh.
	Stale []StaleObject
}

// StaleObject is one secret served from its last good value. It holds no
// value.
type StaleObject struct {
	// Object names the secret: `aws secret "prod/db"`.
	Object string `json:"object"`
	// Age is how long ago the value was read from the store.
	Age time.Duration `json:"-"`
	// ReadAt is when that was.
	ReadAt time.Time `json:"readAt"`
	// Err is why the store could not be read now.
	Err string `json:"error"`
}

// MarshalJSON shows the age as a duration (1m30s), for docker volume
// inspect.
func (s StaleObject) MarshalJSON() ([]byte, error) {
	type plain StaleObject
	return json.Marshal(struct {
		plain
		Age string `json:"age"`
	}{plain(s), s.Age.Truncate(time.Second).String()})
}

// Renderer turns a volume's options into its files: it reads every secret
// once (checked against ALLOW before the read) and applies keys, formats
// and templates. It writes nothing.
type Renderer struct {
	// Defaults are the plugin-wide fallbacks: the default backend and the
	// templates folder.
	Defaults Defaults
	Registry *secrets.Registry
	// Allow is the ALLOW setting; nil allows every object.
	Allow *allowlist.List
	// Fetcher reads secrets: timeout, shared reads, short-lived cache.
	Fetcher *cache.Fetcher
	// LastGood keeps the last good values of the volumes with
	// stale-if-error; nil keeps none.
	LastGood *lastgood.Store
	// Metrics counts values served stale; nil counts nothing.
	Metrics *metrics.Metrics
	// Limit caps one rendered template, in bytes.
	Limit int64
	// Now is the clock.
	Now func() time.Time
}

// Render fetches every secret of a volume once (objects and templates that
// share a secret share one read) and builds its files. fresh bypasses the
// fetcher's cache, for refreshes. On an error, the content returned (if
// any) holds the leases already granted, for the caller to revoke.
func (d *Renderer) Render(ctx context.Context, opts Options, fresh bool) (*Content, error) {
	type want struct {
		ref   secrets.Ref
		where string // for errors: which file or template line reads it
	}
	wants := map[string]want{}
	var refs []secrets.Ref       // the wants' refs, in the volume's order
	texts := map[string]string{} // template name -> text
	for _, obj := range opts.Objects {
		if obj.Template == nil {
			whole := obj.Ref
			whole.Key = ""
			if _, ok := wants[whole.CacheKey()]; !ok {
				wants[whole.CacheKey()] = want{ref: whole}
				refs = append(refs, whole)
			}
			continue
		}
		t := obj.Template
		text := t.Text
		if t.File != "" {
			if d.Defaults.Templates == nil {
				return nil, fmt.Errorf("template %q: this plugin has no templates folder", t.Name)
			}
			var err error
			if text, err = d.Defaults.Templates.ReadTemplate(t.File); err != nil {
				return nil, err
			}
			// The file may have changed since create: take its secrets now.
			refs, problems := compileTemplate(t.Name, text, d.Defaults.Backend, t.Defaults, d.Registry)
			if len(problems) > 0 {
				return nil, problems[0]
			}
			cp := *t
			cp.Refs = refs
			t = &cp
		}
		texts[obj.Name] = text
		for _, r := range t.Refs {
			if _, ok := wants[r.Ref.CacheKey()]; !ok {
				wants[r.Ref.CacheKey()] = want{ref: r.Ref, where: fmt.Sprintf("template %q line %d: ", t.Name, r.Line)}
				refs = append(refs, r.Ref)
			}
		}
	}
	// The one check before every read, at mount and refresh alike: ALLOW
	// may have changed since create, and a template file may name new
	// secrets.
	if err := d.Allow.CheckAllRead(ctx, d.Registry, refs); err != nil {
		return nil, err
	}

	// Fetch concurrently; the fetcher applies the timeout. A lease's terms
	// count from before the read, so they never seem to last longer than
	// they do.
	started := d.Now().UTC()
	window := d.Defaults.StaleIfErrorOf(opts)
	values := make(map[string]secrets.Secret, len(wants))
	var stale []StaleObject
	var mu sync.Mutex
	var wg sync.WaitGroup
	var firstErr error
	for key, w := range wants {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sec, err := d.Fetcher.Fetch(ctx, w.ref, fresh)
			var so *StaleObject
			if window > 0 {
				sec, so, err = d.lastGood(w.ref, sec, err, window)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = fmt.Errorf("%s%w", w.where, err)
				}
				return
			}
			if so != nil {
				stale = append(stale, *so)
			}
			values[key] = sec
		}()
	}
	wg.Wait()
	sort.Slice(stale, func(i, j int) bool { return stale[i].Object < stale[j].Object })
	c := &Content{Versions: map[string]string{}, Stale: stale}
	for key, w := range wants {
		sec, ok := values[key]
		if ok && sec.Lease != nil {
			c.Leases = append(c.Leases, HeldLease{Ref: w.ref, Lease: *sec.Lease, Since: started})
		}
		c.Dynamic = c.Dynamic || (ok && sec.Unique())
	}
	if firstErr != nil {
		return c, firstErr // leases already granted are handed back for revocation
	}

	single := len(opts.Objects) == 1
	for _, obj := range opts.Objects {
		if obj.Template != nil {
			t := obj.Template
			if t.File != "" {
				refs, _ := compileTemplate(t.Name, texts[obj.Name], d.Defaults.Backend, t.Defaults, d.Registry)
				cp := *t
				cp.Refs = refs
				t = &cp
			}
			out, err := renderTemplate(t, texts[obj.Name], values, d.Limit)
			if err != nil {
				return c, err
			}
			vers := make([]string, 0, len(t.Refs))
			for _, r := range t.Refs {
				vers = append(vers, fmt.Sprintf("%s:%s@%s", r.Ref.Backend, r.Ref.Name, values[r.Ref.CacheKey()].Version))
			}
			c.Versions[obj.Name] = strings.Join(vers, " ")
			c.Files = append(c.Files, tmpfs.File{Path: obj.Name, Data: out, UID: obj.UID, GID: obj.GID, Mode: obj.Mode})
			continue
		}
		whole := obj.Ref
		whole.Key = ""
		sec := values[whole.CacheKey()]
		c.Versions[obj.Name] = sec.Version
		value := sec.Value
		if obj.Ref.Key != "" {
			v, err := secrets.ExtractKey(obj.Ref, value)
			if err != nil {
				return c, err
			}
			value = v
		}
		if obj.AllKeys {
			files, err := explode(obj, value, single, d.Registry.IsCollection(obj.Ref))
			if err != nil {
				return c, err
			}
			c.Files = append(c.Files, files...)
			continue
		}
		data, err := applyFormat(obj.Format, value)
		if err != nil {
			return c, fmt.Errorf("%s: %w", obj.Ref, err)
		}
		c.Files = append(c.Files, tmpfs.File{Path: obj.Name, Data: data, UID: obj.UID, GID: obj.GID, Mode: obj.Mode})
	}
	c.Digest = digest(c.Files)
	return c, nil
}

// lastGood applies stale-if-error to one read: a good value is kept; when
// the store is unavailable (unreachable, timed out, 5xx, throttled after
// the retries), a value kept within window is served instead, marked
// stale; a store that says the secret is gone or refused is never masked,
// and its last good value is dropped.
func (d *Renderer) lastGood(ref secrets.Ref, sec secrets.Secret, err error, window time.Duration) (secrets.Secret, *StaleObject, error) {
	now := d.Now()
	switch {
	case err == nil:
		// The mount does not depend on it: a value not kept is only not
		// served through a later outage.
		_ = d.LastGood.Put(ref, sec, now)
		return sec, nil, nil
	case errors.Is(err, secrets.ErrNotFound), errors.Is(err, secrets.ErrAccessDenied):
		d.LastGood.Forget(ref)
		return sec, nil, err
	case !errors.Is(err, secrets.ErrUnavailable) && !errors.Is(err, secrets.ErrTimeout):
		return sec, nil, err
	}
	old, at, ok := d.LastGood.Get(ref)
	if !ok {
		return sec, nil, fmt.Errorf("%w; no good value of it was kept to serve instead (stale-if-error=%s)", err, window)
	}
	age := max(now.Sub(at), 0)
	if age > window {
		return sec, nil, fmt.Errorf("%w; its last good value was read %s ago, longer than stale-if-error=%s", err, age.Truncate(time.Second), window)
	}
	d.Metrics.ServedStale(ref.Backend)
	return old, &StaleObject{Object: ref.String(), Age: age, ReadAt: at.UTC(), Err: err.Error()}, nil
}

// explode writes each top-level key of a JSON object as a file: at the root
// of a single-object volume, else in a directory named after the object.
// The keys of a collection (secrets.Collector) are relative names, and a
// name with '/' is a file in a folder.
func explode(obj Object, value []byte, atRoot, collection bool) ([]tmpfs.File, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(value, &m); err != nil || m == nil {
		return nil, secrets.Fail(obj.Ref, secrets.ErrBadValue, "key=* needs a JSON object secret, one file per key", nil)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []tmpfs.File
	for i, k := range keys {
		if collection {
			if err := validateRelPath(k); err != nil {
				return nil, secrets.Fail(obj.Ref, secrets.ErrBadValue, fmt.Sprintf("%q cannot be a file: %v; no file was written", shorten(k), err), nil)
			}
			// Sorted, a folder's files follow its name at once ("a" <
			// "a/b" < "a0"); "a-b" sorts between them and is harmless.
			for _, next := range keys[i+1:] {
				if !strings.HasPrefix(next, k) {
					break
				}
				if next[len(k)] == '/' {
					return nil, secrets.Fail(obj.Ref, secrets.ErrBadValue, fmt.Sprintf("%q cannot be both a file and the folder of %q; no file was written", shorten(k), shorten(next)), nil)
				}
			}
		} else if err := validateFilename(k); err != nil {
			return nil, secrets.Fail(obj.Ref, secrets.ErrBadValue, fmt.Sprintf("key %q cannot be a file name with key=*", k), nil)
		}
		ref := obj.Ref
		ref.Key = k
		v, err := secrets.ExtractKey(ref, value)
		if err != nil {
			return nil, err
		}
		if v, err = applyFormat(obj.Format, v); err != nil {
			return nil, fmt.Errorf("%s key %q: %w", obj.Ref, k, err)
		}
		path := k
		if !atRoot {
			path = obj.Name + "/" + k
		}
		out = append(out, tmpfs.File{Path: path, Data: v, UID: obj.UID, GID: obj.GID, Mode: obj.Mode})
	}
	return out, nil
}

// validateRelPath checks a relative name of a collection's object: file
// names (see validateFilename) separated by single slashes.
func validateRelPath(v string) error {
	if v == "" {
		return errors.New("the name is empty")
	}
	for _, seg := range strings.Split(v, "/") {
		if err := validateFilename(seg); err != nil {
			return fmt.Errorf("its part %v", err)
		}
	}
	return nil
}

// digest identifies a set of files, so an unchanged refresh writes nothing.
// It stays in memory, like the values it is computed from.
func digest(files []tmpfs.File) [sha256.Size]byte {
	sorted := append([]tmpfs.File(nil), files...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Path < sorted[j].Path })
	h := sha256.New()
	var n [8]byte
	for _, f := range sorted {
		for _, part := range [][]byte{[]byte(f.Path), f.Data} {
			binary.BigEndian.PutUint64(n[:], uint64(len(part)))
			h.Write(n[:])
			h.Write(part)
		}
		binary.BigEndian.PutUint64(n[:], uint64(f.UID)<<32|uint64(f.GID))
		h.Write(n[:])
		binary.BigEndian.PutUint64(n[:], uint64(f.Mode))
		h.Write(n[:])
	}
	var out [sha256.Size]byte
	copy(out[:], h.Sum(nil))
	return out
}
