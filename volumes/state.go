package volumes

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/dsv-plugin/dsv/render"
	"github.com/dsv-plugin/dsv/secrets"
	"github.com/dsv-plugin/dsv/tmpfs"
)

// stateVersion is bumped when the file's shape changes incompatibly.
// Version 3 keeps each volume's tmpfs instances (version 2 kept one set of
// mount IDs and leases per volume, which an instance from before a restart
// and a fresh one shared).
const stateVersion = 3

// volumeRecord is what survives a restart of the plugin: names, options,
// instances. It never holds a secret value or a credential.
type volumeRecord struct {
	Options   render.Options `json:"options"`
	CreatedAt time.Time      `json:"createdAt"`
	// Instances are the volume's tmpfs that mounts hold, oldest first.
	Instances []instanceRecord `json:"instances,omitempty"`
	// Dynamic: the content read was dynamic (see vol.dynamic).
	Dynamic bool `json:"dynamic,omitempty"`
}

// instanceRecord is what is persisted of an instance.
type instanceRecord struct {
	ID string `json:"id"`
	// Mounts counts the mounts of each mount ID that hold the tmpfs.
	Mounts map[string]int `json:"mounts"`
	// Leases are the ids and terms of the leases its content holds, so
	// that a restarted plugin can renew or revoke them. Never a value.
	Leases []render.HeldLease `json:"leases,omitempty"`
	// Retiring are leases of replaced content, revoked at their time.
	Retiring []retiredLease `json:"retiring,omitempty"`
	// Published: its view is the volume's view.
	Published bool `json:"published,omitempty"`
	// Dev is the tmpfs's device number (see instance.dev).
	Dev uint64 `json:"dev,omitempty"`
}

// retiredLease is a lease of content that was replaced, kept until
// RevokeAt: the app's open connections may still use it.
type retiredLease struct {
	render.HeldLease
	RevokeAt time.Time `json:"revokeAt"`
}

// record is what is persisted of v.
func (v *vol) record() volumeRecord {
	v.mu.Lock()
	defer v.mu.Unlock()
	r := volumeRecord{Options: v.opts, CreatedAt: v.created, Dynamic: v.dynamic}
	for _, in := range v.instances {
		r.Instances = append(r.Instances, instanceRecord{
			ID: in.id, Mounts: maps.Clone(in.mounts), Published: in.published, Dev: in.dev,
			Leases: slices.Clone(in.leases), Retiring: slices.Clone(in.retiring),
		})
	}
	return r
}

// restore makes a volume of its record: every instance detached until the
// start-up finds its tmpfs.
func restore(name string, r volumeRecord, jitter float64) *vol {
	v := newVol(name, r.Options, r.CreatedAt, jitter)
	v.dynamic = r.Dynamic
	for _, ir := range r.Instances {
		in := &instance{id: ir.ID, mounts: ir.Mounts, leases: ir.Leases, retiring: ir.Retiring, published: ir.Published, dev: ir.Dev}
		if in.mounts == nil {
			in.mounts = map[string]int{}
		}
		v.instances = append(v.instances, in)
	}
	return v
}

type stateFile struct {
	Version int                     `json:"version"`
	Volumes map[string]volumeRecord `json:"volumes"`
	// Revoking are leases no mount uses whose revocation has not been
	// done yet: a restarted plugin goes on with them.
	Revoking []pendingRevocation `json:"revoking,omitempty"`
}

// State is what the store holds.
type State struct {
	Volumes  map[string]volumeRecord
	Revoking []pendingRevocation
}

// Store persists volume records as one JSON file, replaced atomically.
type Store struct {
	path string
}

// tempPattern names Save's temporary files.
const tempPattern = ".state-*.tmp"

// NewStore returns a store writing to path; the directory is created 0700.
// Temporary files that a process killed during Save left behind are
// removed.
func NewStore(path string) (*Store, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create state directory: %w", err)
	}
	stale, _ := filepath.Glob(filepath.Join(dir, tempPattern))
	for _, p := range stale {
		_ = os.Remove(p)
	}
	return &Store{path: path}, nil
}

// Load reads the state; a missing file is an empty state. State of
// versions 1 and 2 is migrated.
func (s *Store) Load() (State, error) {
	st := State{Volumes: map[string]volumeRecord{}}
	b, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("read state %s: %w", s.path, err)
	}
	var f stateFile
	if err := json.Unmarshal(b, &f); err != nil {
		return st, fmt.Errorf("parse state %s: %w", s.path, err)
	}
	switch f.Version {
	case 1, 2:
		var old map[string]recordV2
		if f.Version == 1 {
			old, err = migrateV1(b)
		} else {
			var f2 struct {
				Volumes map[string]recordV2 `json:"volumes"`
			}
			err = json.Unmarshal(b, &f2)
			old = f2.Volumes
		}
		if err != nil {
			return st, fmt.Errorf("parse state %s: %w", s.path, err)
		}
		f.Volumes, f.Revoking = migrateV2(old)
	case stateVersion:
	default:
		return st, fmt.Errorf("state %s has version %d, this dsv reads versions 1 to %d", s.path, f.Version, stateVersion)
	}
	if f.Volumes != nil {
		st.Volumes = f.Volumes
	}
	st.Revoking = f.Revoking
	return st, nil
}

// Save writes the records: temp file, fsync, rename, fsync of the directory,
// so a crash leaves either the old or the new state, never a torn one.
func (s *Store) Save(st State) error {
	b, err := json.Marshal(stateFile{Version: stateVersion, Volumes: st.Volumes, Revoking: st.Revoking})
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	dir := filepath.Dir(s.path)
	tmp, err := os.CreateTemp(dir, tempPattern)
	if err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("write state: %w", err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("write state: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write state: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	if err := os.Rename(tmp.Name(), s.path); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("write state: sync directory: %w", err)
	}
	return nil
}

// recordV2 is a volume as version 2 kept it: one set of mount IDs and
// leases. An ID listed without a count in Mounts held it once.
type recordV2 struct {
	Options   render.Options     `json:"options"`
	CreatedAt time.Time          `json:"createdAt"`
	MountIDs  []string           `json:"mountIds,omitempty"`
	Mounts    map[string]int     `json:"mounts,omitempty"`
	Leases    []render.HeldLease `json:"leases,omitempty"`
	Dynamic   bool               `json:"dynamic,omitempty"`
	Retiring  []retiredLease     `json:"retiring,omitempty"`
}

// migrateV2 makes one published instance of each volume's mount IDs and
// leases; leases of a volume that no mount holds are to be revoked.
func migrateV2(old map[string]recordV2) (map[string]volumeRecord, []pendingRevocation) {
	out := make(map[string]volumeRecord, len(old))
	var revoking []pendingRevocation
	for name, r := range old {
		nr := volumeRecord{Options: r.Options, CreatedAt: r.CreatedAt, Dynamic: r.Dynamic}
		if len(r.MountIDs) == 0 {
			for _, l := range r.Leases {
				revoking = append(revoking, pendingRevocation{Volume: name, HeldLease: l})
			}
			for _, l := range r.Retiring {
				revoking = append(revoking, pendingRevocation{Volume: name, HeldLease: l.HeldLease})
			}
			out[name] = nr
			continue
		}
		id, _ := tmpfs.NewInstanceID()
		in := instanceRecord{ID: id, Mounts: map[string]int{}, Leases: r.Leases, Retiring: r.Retiring, Published: true}
		for _, id := range r.MountIDs {
			in.Mounts[id] = max(r.Mounts[id], 1)
		}
		nr.Instances = []instanceRecord{in}
		out[name] = nr
	}
	return out, revoking
}

// migrateV1 reads the first state format, where a volume held exactly one
// secret with its file options beside it.
func migrateV1(b []byte) (map[string]recordV2, error) {
	var v1 struct {
		Volumes map[string]struct {
			Options struct {
				Ref      secrets.Ref `json:"ref"`
				UID      int         `json:"uid"`
				GID      int         `json:"gid"`
				Mode     os.FileMode `json:"mode"`
				Layout   string      `json:"layout"`
				Filename string      `json:"filename"`
			} `json:"options"`
			CreatedAt time.Time `json:"createdAt"`
			MountIDs  []string  `json:"mountIds"`
		} `json:"volumes"`
	}
	if err := json.Unmarshal(b, &v1); err != nil {
		return nil, err
	}
	out := make(map[string]recordV2, len(v1.Volumes))
	for name, r := range v1.Volumes {
		o := r.Options
		out[name] = recordV2{
			Options: render.Options{Layout: o.Layout, Objects: []render.Object{{
				Name: o.Filename, Ref: o.Ref, Format: render.FormatRaw, UID: o.UID, GID: o.GID, Mode: o.Mode,
			}}},
			CreatedAt: r.CreatedAt,
			MountIDs:  r.MountIDs,
		}
	}
	return out, nil
}
