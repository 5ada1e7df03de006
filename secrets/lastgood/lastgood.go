// Package lastgood keeps the last good value of each secret that a volume
// with stale-if-error read, so that a mount can still be served while the
// store is unavailable. Values are never on disk in clear: each is sealed
// with AES-256-GCM in a file of its own in the plugin's state folder,
// under a key that lives only in the kernel's keyring (the user keyring of
// the plugin's uid). The keyring outlives the plugin's process, so the
// values survive a plugin restart, an upgrade and a dockerd restart; it
// does not outlive the host, so after a reboot the files cannot be opened
// and are deleted at start. A disk, a backup or a copy of the state folder
// holds nothing readable.
//
// Why not the values themselves in the keyring: a "user" key holds at
// most 32767 bytes, and a Secrets Manager value may be 64 KiB; and why not
// a tmpfs: Docker unmounts everything under the plugin's propagated mount
// when it disables the plugin or stops.
package lastgood

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/dsv-plugin/dsv/secrets"
)

// Bounds of a store.
const (
	// MaxValue is the largest value kept (the file backend reads at most
	// 1 MiB).
	MaxValue = 1 << 20
	// maxEntries and maxBytes bound the whole store; the oldest values go
	// first.
	maxEntries = 1024
	maxBytes   = 16 << 20
	// rewriteAfter: an unchanged value's file is rewritten (its read time
	// moved on) at most this often.
	rewriteAfter = time.Minute
	// MaxAge: values older than this are deleted (stale-if-error's
	// maximum).
	MaxAge = 7 * 24 * time.Hour
)

const fileSuffix = ".sealed"

// Store is the set of last good values. It is safe for concurrent use.
type Store struct {
	dir  string
	aead cipher.AEAD
	mac  []byte // names files: HMAC of the secret's cache key
	now  func() time.Time

	mu      sync.Mutex
	entries map[string]*entry // file name -> entry
}

// entry is what the store knows of a file without opening it.
type entry struct {
	at      time.Time // when the value was read from its store
	written time.Time // when the file was last written
	size    int64
	sum     [sha256.Size]byte // of the value, to skip unchanged writes; zero when unknown
}

// Open returns the store in dir, sealed with key (32 bytes). fresh says
// the key was just made (the keyring lost the old one: a reboot): every
// file in dir is then unreadable and deleted.
func Open(dir string, key []byte, fresh bool, now func() time.Time) (*Store, error) {
	if len(key) != 32 {
		return nil, errors.New("lastgood: the key must be 32 bytes")
	}
	if now == nil {
		now = time.Now
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte("dsv lastgood file names"))
	s := &Store{dir: dir, aead: aead, mac: mac.Sum(nil), now: now, entries: map[string]*entry{}}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("last good values: %w", err)
	}
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("last good values: %w", err)
	}
	for _, de := range des {
		name := de.Name()
		p := filepath.Join(dir, name)
		if !strings.HasSuffix(name, fileSuffix) {
			if strings.HasPrefix(name, ".tmp-") {
				_ = os.Remove(p) // a write cut short
			}
			continue
		}
		fi, err := de.Info()
		if fresh || err != nil || now().Sub(fi.ModTime()) > MaxAge {
			_ = os.Remove(p)
			continue
		}
		s.entries[name] = &entry{at: fi.ModTime(), written: fi.ModTime(), size: fi.Size()}
	}
	return s, nil
}

// Len is the number of values kept.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries)
}

// fileName names ref's file: a keyed hash, so that names say nothing.
func (s *Store) fileName(key string) string {
	m := hmac.New(sha256.New, s.mac)
	m.Write([]byte(key))
	return hex.EncodeToString(m.Sum(nil)[:16]) + fileSuffix
}

// sealed is what a file holds once opened.
type sealed struct {
	At      time.Time `json:"at"`
	Version string    `json:"version,omitempty"`
	Value   []byte    `json:"value"`
}

// Put keeps sec as ref's last good value, read at at. A value that
// must not be reused (a lease, a single-use token) or is too large is not
// kept. An unchanged value is written again at most once a minute.
func (s *Store) Put(ref secrets.Ref, sec secrets.Secret, at time.Time) error {
	if s == nil || sec.Unique() || len(sec.Value) > MaxValue {
		return nil
	}
	key := cacheKey(ref)
	name := s.fileName(key)
	sum := sha256.Sum256(sec.Value)
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.entries[name]; ok && e.sum == sum && at.Sub(e.written) < rewriteAfter {
		if at.After(e.at) {
			e.at = at
		}
		return nil
	}
	plain, err := json.Marshal(sealed{At: at.UTC(), Version: sec.Version, Value: sec.Value})
	if err != nil {
		return err
	}
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	out := s.aead.Seal(nonce, nonce, plain, []byte(key))
	clear(plain)
	if err := writeFile(filepath.Join(s.dir, name), out); err != nil {
		return fmt.Errorf("keep the last good value of %s: %w", ref, err)
	}
	s.entries[name] = &entry{at: at, written: at, size: int64(len(out)), sum: sum}
	s.evictLocked()
	return nil
}

// Get returns ref's last good value and when it was read from its store.
func (s *Store) Get(ref secrets.Ref) (secrets.Secret, time.Time, bool) {
	if s == nil {
		return secrets.Secret{}, time.Time{}, false
	}
	key := cacheKey(ref)
	name := s.fileName(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[name]
	if !ok {
		return secrets.Secret{}, time.Time{}, false
	}
	b, err := os.ReadFile(filepath.Join(s.dir, name))
	ns := s.aead.NonceSize()
	if err != nil || len(b) < ns {
		delete(s.entries, name)
		return secrets.Secret{}, time.Time{}, false
	}
	plain, err := s.aead.Open(nil, b[:ns], b[ns:], []byte(key))
	var v sealed
	if err != nil || json.Unmarshal(plain, &v) != nil {
		// Not sealed with this key for this secret: useless.
		delete(s.entries, name)
		_ = os.Remove(filepath.Join(s.dir, name))
		return secrets.Secret{}, time.Time{}, false
	}
	clear(plain)
	at := v.At
	if e.at.After(at) && e.sum == sha256.Sum256(v.Value) {
		at = e.at // read again since, unchanged, and not written again
	}
	return secrets.Secret{Value: v.Value, Version: v.Version}, at, true
}

// Forget drops ref's last good value: the store said it is gone or no
// longer ours to read, which no outage may mask.
func (s *Store) Forget(ref secrets.Ref) {
	if s == nil {
		return
	}
	name := s.fileName(cacheKey(ref))
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.entries[name]; ok {
		delete(s.entries, name)
		_ = os.Remove(filepath.Join(s.dir, name))
	}
}

// evictLocked deletes the oldest values beyond the bounds, and those
// older than MaxAge.
func (s *Store) evictLocked() {
	var total int64
	names := make([]string, 0, len(s.entries))
	for n, e := range s.entries {
		total += e.size
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return s.entries[names[i]].at.Before(s.entries[names[j]].at) })
	now := s.now()
	for _, n := range names {
		e := s.entries[n]
		if len(s.entries) <= maxEntries && total <= maxBytes && now.Sub(e.at) <= MaxAge {
			break
		}
		delete(s.entries, n)
		total -= e.size
		_ = os.Remove(filepath.Join(s.dir, n))
	}
}

// cacheKey identifies the secret a reference reads, as the fetcher's
// cache does. Volumes read whole secrets (keys are applied after), so a
// reference with a key is kept apart all the same: its value is the key's.
func cacheKey(ref secrets.Ref) string { return ref.CacheKey() + "\x00key=" + ref.Key }

// writeFile writes b to path: temp, fsync, rename, mode 0600.
func writeFile(path string, b []byte) error {
	tmp := filepath.Join(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
	}
	return err
}
