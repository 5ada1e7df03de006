package lastgood

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dsv-plugin/dsv/secrets"
)

func newKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// noClearText fails if any file under dir holds needle.
func noClearText(t *testing.T, dir string, needle []byte) {
	t.Helper()
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if b, _ := os.ReadFile(p); bytes.Contains(b, needle) {
				t.Errorf("%s holds the value in clear", p)
			}
		}
		return nil
	})
}

func TestPutGet(t *testing.T) {
	dir := t.TempDir()
	key := newKey(t)
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	s, err := Open(dir, key, false, clock)
	if err != nil {
		t.Fatal(err)
	}
	ref := secrets.Ref{Backend: "aws", Name: "prod/db"}
	other := secrets.Ref{Backend: "aws", Name: "prod/db", Region: "eu-west-1"}
	value := []byte("canary-" + rand.Text())
	if err := s.Put(ref, secrets.Secret{Value: value, Version: "v1"}, now); err != nil {
		t.Fatal(err)
	}
	got, at, ok := s.Get(ref)
	if !ok || !bytes.Equal(got.Value, value) || got.Version != "v1" || !at.Equal(now) {
		t.Fatalf("Get = %q %q %v %v, want the value put at %v", got.Value, got.Version, at, ok, now)
	}
	if _, _, ok := s.Get(other); ok {
		t.Fatal("Get of another region's secret found a value")
	}
	noClearText(t, dir, value)
	noClearText(t, dir, []byte("prod/db"))

	// Read again, unchanged, a moment later: no write, but the newer read
	// time is what Get reports; a restarted store has the written one.
	later := now.Add(10 * time.Second)
	if err := s.Put(ref, secrets.Secret{Value: value, Version: "v1"}, later); err != nil {
		t.Fatal(err)
	}
	if _, at, _ := s.Get(ref); !at.Equal(later) {
		t.Errorf("Get after an unchanged read at %v says %v", later, at)
	}
	s2, err := Open(dir, key, false, clock)
	if err != nil {
		t.Fatal(err)
	}
	if got, at, ok := s2.Get(ref); !ok || !bytes.Equal(got.Value, value) || !at.Equal(now) {
		t.Fatalf("a reopened store: Get = %q %v %v", got.Value, at, ok)
	}

	// Another key (a reboot lost the old one) opens nothing, and a fresh
	// store deletes the files.
	s3, err := Open(dir, newKey(t), false, clock)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, ok := s3.Get(ref); ok {
		t.Fatal("a store with another key read a value")
	}
	if err := s.Put(ref, secrets.Secret{Value: value}, now); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, newKey(t), true, clock); err != nil {
		t.Fatal(err)
	}
	if des, _ := os.ReadDir(dir); len(des) != 0 {
		t.Errorf("a fresh store left %d files", len(des))
	}
}

func TestPutSkipsAndForget(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, newKey(t), false, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	ref := secrets.Ref{Backend: "vault", Name: "database/creds/app"}
	_ = s.Put(ref, secrets.Secret{Value: []byte("x"), Lease: &secrets.Lease{ID: "l"}}, now)
	_ = s.Put(secrets.Ref{Backend: "vault", Name: "w"}, secrets.Secret{Value: []byte("x"), NoReuse: true}, now)
	_ = s.Put(secrets.Ref{Backend: "file", Name: "big"}, secrets.Secret{Value: make([]byte, MaxValue+1)}, now)
	if s.Len() != 0 {
		t.Fatalf("kept %d values: leased, single-use and oversized values must not be kept", s.Len())
	}
	ok := secrets.Ref{Backend: "aws", Name: "a"}
	_ = s.Put(ok, secrets.Secret{Value: []byte("x")}, now)
	s.Forget(ok)
	if _, _, found := s.Get(ok); found || s.Len() != 0 {
		t.Fatal("Forget left the value")
	}
}

func TestBounds(t *testing.T) {
	s, err := Open(t.TempDir(), newKey(t), false, nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := range maxEntries + 10 {
		ref := secrets.Ref{Backend: "aws", Name: "s", VersionID: string(rune('a' + i%26)), Region: time.Duration(i).String()}
		if err := s.Put(ref, secrets.Secret{Value: []byte("x")}, start.Add(time.Duration(i)*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	if s.Len() != maxEntries {
		t.Fatalf("%d values kept, want the bound %d", s.Len(), maxEntries)
	}
	if _, _, ok := s.Get(secrets.Ref{Backend: "aws", Name: "s", VersionID: "a", Region: time.Duration(0).String()}); ok {
		t.Error("the oldest value outlived the bound")
	}
}

func TestKernelKey(t *testing.T) {
	dir := t.TempDir()
	k1, created, err := KernelKey(dir)
	if err != nil {
		t.Skipf("no kernel keyring here: %v", err)
	}
	id, _ := os.ReadFile(filepath.Join(dir, "id"))
	t.Cleanup(func() {
		if kid, err := unix.KeyctlSearch(unix.KEY_SPEC_USER_KEYRING, "user", "dsv:lastgood:"+string(bytes.TrimSpace(id)), 0); err == nil {
			_, _ = unix.KeyctlInt(unix.KEYCTL_UNLINK, kid, unix.KEY_SPEC_USER_KEYRING, 0, 0)
		}
	})
	if !created || len(k1) != 32 {
		t.Fatalf("first KernelKey: created %v, %d bytes", created, len(k1))
	}
	k2, created, err := KernelKey(dir)
	if err != nil || created || !bytes.Equal(k1, k2) {
		t.Fatalf("second KernelKey: created %v, same key %v, %v", created, bytes.Equal(k1, k2), err)
	}
	noClearText(t, dir, k1)
}
