package volumes

import (
	"encoding/json"
	"errors"
	"fmt"
	"github.com/dsv-plugin/dsv/render"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/dsv-plugin/dsv/secrets"
)

// stateVersion is bumped when the file's shape changes incompatibly.
const stateVersion = 2

// volumeRecord is what survives a restart of the plugin: names, options and
// mount IDs. It never holds a secret value or a credential.
type volumeRecord struct {
	Options   render.Options `json:"options"`
	CreatedAt time.Time      `json:"createdAt"`
	// MountIDs are the IDs that hold the volume; Mounts counts the mounts
	// of those that hold it more than once (docker cp reuses a running
	// container's ID). An ID listed without a count holds it once, as in
	// state written before the counts.
	MountIDs []string       `json:"mountIds,omitempty"`
	Mounts   map[string]int `json:"mounts,omitempty"`
	// Leases are the ids and terms of the leases the volume holds, so that
	// a restarted plugin can renew or revoke them. Never a value.
	Leases []render.HeldLease `json:"leases,omitempty"`
	// Dynamic: the content read was dynamic (see vol.dynamic).
	Dynamic bool `json:"dynamic,omitempty"`
	// Retiring are leases of replaced content, revoked at their time.
	Retiring []retiredLease `json:"retiring,omitempty"`
}

// retiredLease is a lease of content that was replaced, kept until
// RevokeAt: the app's open connections may still use it.
type retiredLease struct {
	render.HeldLease
	RevokeAt time.Time `json:"revokeAt"`
}

// newRecord is what is persisted of v. d.mu must be held.
func newRecord(v *vol) volumeRecord {
	r := volumeRecord{Options: v.opts, CreatedAt: v.created, Leases: v.leases, Dynamic: v.dynamic, Retiring: v.retiring}
	for _, m := range []map[string]int{v.ids, v.stale} {
		for id, n := range m {
			r.MountIDs = append(r.MountIDs, id)
			if n > 1 {
				if r.Mounts == nil {
					r.Mounts = map[string]int{}
				}
				r.Mounts[id] += n
			}
		}
	}
	return r
}

// mountCounts is the mounts of each ID.
func (r volumeRecord) mountCounts() map[string]int {
	out := make(map[string]int, len(r.MountIDs))
	for _, id := range r.MountIDs {
		out[id] = max(r.Mounts[id], 1)
	}
	return out
}

type stateFile struct {
	Version int                     `json:"version"`
	Volumes map[string]volumeRecord `json:"volumes"`
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

// Load reads the records; a missing file is an empty state.
func (s *Store) Load() (map[string]volumeRecord, error) {
	b, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]volumeRecord{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state %s: %w", s.path, err)
	}
	var f stateFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("parse state %s: %w", s.path, err)
	}
	if f.Version == 1 {
		if f.Volumes, err = migrateV1(b); err != nil {
			return nil, fmt.Errorf("parse state %s: %w", s.path, err)
		}
		f.Version = stateVersion
	}
	if f.Version != stateVersion {
		return nil, fmt.Errorf("state %s has version %d, this dsv reads version %d", s.path, f.Version, stateVersion)
	}
	if f.Volumes == nil {
		f.Volumes = map[string]volumeRecord{}
	}
	return f.Volumes, nil
}

// Save writes the records: temp file, fsync, rename, fsync of the directory,
// so a crash leaves either the old or the new state, never a torn one.
func (s *Store) Save(vols map[string]volumeRecord) error {
	for name, r := range vols {
		sort.Strings(r.MountIDs)
		vols[name] = r
	}
	b, err := json.Marshal(stateFile{Version: stateVersion, Volumes: vols})
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

// migrateV1 reads the first state format, where a volume held exactly one
// secret with its file options beside it.
func migrateV1(b []byte) (map[string]volumeRecord, error) {
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
	out := make(map[string]volumeRecord, len(v1.Volumes))
	for name, r := range v1.Volumes {
		o := r.Options
		out[name] = volumeRecord{
			Options: render.Options{Layout: o.Layout, Objects: []render.Object{{
				Name: o.Filename, Ref: o.Ref, Format: render.FormatRaw, UID: o.UID, GID: o.GID, Mode: o.Mode,
			}}},
			CreatedAt: r.CreatedAt,
			MountIDs:  r.MountIDs,
		}
	}
	return out, nil
}
