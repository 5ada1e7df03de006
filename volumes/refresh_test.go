package volumes

import (
	"errors"
	"fmt"
	"github.com/dsv-plugin/dsv/tmpfs/tmpfstest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/go-plugins-helpers/volume"

	"github.com/dsv-plugin/dsv/secrets"
	"github.com/dsv-plugin/dsv/secrets/gate"
)

func TestMultiObjectVolume(t *testing.T) {
	h := newHarness(t)
	h.backend.set("prod/db", `{"user":"app","password":"pw","port":5432}`)
	h.backend.set("prod/api", "token-1")
	h.backend.set("b64", "aGVsbG8=")
	h.create("app", map[string]string{
		"file.password": "secret=prod/db,key=password,mode=0400",
		"file.api":      "prod/api",
		"file.db":       "secret=prod/db,key=*",
		"file.env":      "secret=prod/db,format=dotenv",
		"file.hello":    "secret=b64,format=base64",
		"template.dsn":  `postgres://{{ secret "fake" "prod/db" "user" }}:{{ secret "fake" "prod/db" "password" }}@db/app`,
	})
	mp := h.mount("app", "c1")
	got := tmpfstest.Visible(t, mp)
	want := map[string]string{
		"password": "pw", "api": "token-1", "db/user": "app", "db/password": "pw", "db/port": "5432",
		"env": "password=pw\nport=5432\nuser=app\n", "hello": "hello", "dsn": "postgres://app:pw@db/app",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("volume holds\n%v\nwant\n%v", got, want)
	}
	if n := h.backend.fetchCount(); n != 3 {
		t.Errorf("%d backend reads for 3 distinct secrets", n)
	}
	st, _ := os.Stat(filepath.Join(mp, "password"))
	if st.Mode().Perm() != 0o400 {
		t.Errorf("password mode = %o", st.Mode().Perm())
	}
	g, _ := h.drv.Get(&volume.GetRequest{Name: "app"})
	if files, _ := g.Volume.Status["files"].([]map[string]any); len(files) != 6 {
		t.Errorf("status lists %d files, want 6: %v", len(files), g.Volume.Status)
	}
	if strings.Contains(fmt.Sprint(g.Volume.Status), "token-1") {
		t.Error("status shows a value")
	}
}

func TestRefreshSwapsOnChangeOnly(t *testing.T) {
	h := newHarnessWith(t, 50*time.Millisecond)
	h.backend.set("rot", "v1")
	h.create("rot", map[string]string{"layout": "dir", "filename": "secret"})
	mp := h.mount("rot", "c1")
	if readFile(t, filepath.Join(mp, "secret")) != "v1" {
		t.Fatal("first content")
	}
	payload := func() string { t, _ := os.Readlink(filepath.Join(mp, "..data")); return t }
	first := payload()
	eventually(t, 10*time.Second, "several refreshes of unchanged content", func() bool { return h.backend.fetchCount() >= 3 })
	if payload() != first {
		t.Fatal("an unchanged refresh rewrote the files")
	}
	mountsBefore := len(h.mounter.log())
	h.backend.set("rot", "v2")
	eventually(t, time.Second, "rotated value visible", func() bool {
		b, _ := os.ReadFile(filepath.Join(mp, "secret"))
		return string(b) == "v2"
	})
	// A swap writes through the side: no mount, bind or unmount (a
	// remount of the view is what the read-only views replaced).
	if log := h.mounter.log(); len(log) != mountsBefore {
		t.Errorf("a swap changed the mount table: %v", log[mountsBefore:])
	}
	h.unmount("rot", "c1")
	if v := h.drv.vols["rot"]; v.looping || v.stopRefresh != nil {
		t.Fatal("refresh loop still running after the last unmount")
	}
}

func TestRefreshFailureKeepsContentAndBacksOff(t *testing.T) {
	h := newHarnessWith(t, 40*time.Millisecond)
	h.backend.set("flaky", "good")
	h.create("flaky", map[string]string{"layout": "dir"})
	mp := h.mount("flaky", "c1")
	h.backend.setErr("flaky", secrets.Fail(secrets.Ref{Backend: "fake", Name: "flaky"}, secrets.ErrUnavailable, "", errors.New("connection refused")))
	eventually(t, time.Second, "error in status", func() bool {
		g, _ := h.drv.Get(&volume.GetRequest{Name: "flaky"})
		return g.Volume.Status["failedRefreshes"] != nil
	})
	if readFile(t, filepath.Join(mp, "flaky")) != "good" {
		t.Fatal("a failed refresh lost the last good content")
	}
	g, _ := h.drv.Get(&volume.GetRequest{Name: "flaky"})
	if !strings.Contains(fmt.Sprint(g.Volume.Status["lastError"]), "backend unreachable") || g.Volume.Status["fetchedAt"] == nil {
		t.Fatalf("status = %v", g.Volume.Status)
	}
	// Backoff: after the k-th failure in a row the next attempt is
	// 40ms·2^k after it, not 40ms.
	eventually(t, 5*time.Second, "three failures in a row", func() bool {
		v := h.drv.vols["flaky"]
		v.mu.Lock()
		defer v.mu.Unlock()
		return v.status.Failures >= 3
	})
	v := h.drv.vols["flaky"]
	v.mu.Lock()
	failures, gap := v.status.Failures, v.refreshAt.Sub(v.status.LastErrorAt)
	v.mu.Unlock()
	if want := backoff(40*time.Millisecond, failures); gap < want-5*time.Millisecond {
		t.Fatalf("after %d failures the next attempt is %v after the last, want %v: no backoff", failures, gap, want)
	}
	h.backend.setErr("flaky", nil)
	h.backend.set("flaky", "recovered")
	eventually(t, 3*time.Second, "recovery", func() bool {
		b, _ := os.ReadFile(filepath.Join(mp, "flaky"))
		return string(b) == "recovered"
	})
	eventually(t, time.Second, "error cleared from the status after recovery", func() bool {
		g, _ := h.drv.Get(&volume.GetRequest{Name: "flaky"})
		return g.Volume.Status["lastError"] == nil
	})
}

func TestFileLayoutIsNotRefreshed(t *testing.T) {
	h := newHarnessWith(t, 30*time.Millisecond)
	h.backend.set("ff", "v1")
	h.create("ff", nil)
	h.mount("ff", "c1")
	if v := h.drv.vols["ff"]; v.looping || !v.refreshAt.IsZero() {
		t.Fatal("a layout=file volume has a refresh loop")
	}
	g, _ := h.drv.Get(&volume.GetRequest{Name: "ff"})
	if !strings.Contains(fmt.Sprint(g.Volume.Status["refresh"]), "use layout=dir") {
		t.Fatalf("status does not explain why there is no refresh: %v", g.Volume.Status)
	}
}

func TestLeasesRenewedThenRevoked(t *testing.T) {
	h := newHarness(t)
	h.create("creds", map[string]string{"backend": "leased", "secret": "database/creds/app", "key": "*"})
	mp := h.mount("creds", "c1")
	if readFile(t, filepath.Join(mp, "username")) != "u1" {
		t.Fatal("credentials not written as files")
	}
	state := readFile(t, h.state)
	if !strings.Contains(state, "database/creds/app/lease-1") || strings.Contains(state, "p1") {
		t.Fatalf("state must hold the lease id and not the value: %s", state)
	}
	eventually(t, 2*time.Second, "lease renewed", func() bool {
		r, _, _ := h.leased.snapshot()
		return r["database/creds/app/lease-1"] >= 2
	})
	g, _ := h.drv.Get(&volume.GetRequest{Name: "creds"})
	ls, _ := g.Volume.Status["leases"].([]map[string]any)
	if len(ls) != 1 || g.Volume.Status["renewedAt"] == nil {
		t.Fatalf("status = %v", g.Volume.Status)
	}
	for _, k := range []string{"lease", "ttl", "ttlLeft", "expiresAt"} {
		if ls[0][k] == nil {
			t.Errorf("lease status lacks %q: %v", k, ls[0])
		}
	}
	h.unmount("creds", "c1")
	_, revoked, issued := h.leased.snapshot()
	if !revoked["database/creds/app/lease-1"] || issued != 1 {
		t.Fatalf("after the last unmount: revoked %v, issued %d", revoked, issued)
	}
}

func TestUnrenewableLeaseIsReplaced(t *testing.T) {
	h := newHarness(t)
	h.leased.renewErr = errors.New("lease is not renewable")
	h.create("creds", map[string]string{"backend": "leased", "secret": "database/creds/app", "layout": "dir", "filename": "creds.json"})
	mp := h.mount("creds", "c1")
	eventually(t, 2*time.Second, "fresh credentials swapped in", func() bool {
		b, _ := os.ReadFile(filepath.Join(mp, "creds.json"))
		return strings.Contains(string(b), "u2")
	})
	eventually(t, time.Second, "the replaced lease revoked", func() bool {
		_, revoked, _ := h.leased.snapshot()
		return revoked["database/creds/app/lease-1"]
	})
}

// TestLeasesAfterRestart: a restarted plugin revokes the leases of volumes
// nobody uses any more, and renews those still in use on time: at once when
// the plugin was down past two thirds of a lease's TTL, or when the state
// (from an older version) does not say when the lease's terms began.
func TestLeasesAfterRestart(t *testing.T) {
	for _, c := range []struct {
		name  string
		since func(time.Time) time.Time // the persisted start of busy's terms
	}{
		{"down 50 minutes", func(s time.Time) time.Time { return s.Add(-50 * time.Minute) }},
		{"state without the terms' start", func(time.Time) time.Time { return time.Time{} }},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t)
			// Hour-long leases: nothing is due for renewal before the restart.
			h.leased.ttl = time.Hour
			h.create("idle", map[string]string{"backend": "leased", "secret": "database/creds/a", "layout": "dir"})
			h.create("busy", map[string]string{"backend": "leased", "secret": "database/creds/b", "layout": "dir"})
			h.mount("idle", "c1")
			h.mount("busy", "c2")
			if !strings.Contains(readFile(t, h.state), `"since"`) {
				t.Fatal("the state does not keep when a lease's terms began")
			}
			// A crash of the plugin, "idle" unmounted while it was down: its
			// state still lists the lease but no mount id.
			h.stopAll()
			delete(h.drv.vols["idle"].instances[0].mounts, "c1")
			busy := h.drv.vols["busy"].instances[0].leases
			if len(busy) != 1 || busy[0].Since.IsZero() {
				t.Fatalf("busy's lease has no start of its terms: %+v", busy)
			}
			busy[0].Since = c.since(busy[0].Since)
			if err := h.drv.save(); err != nil {
				t.Fatal(err)
			}

			h.mounter = newFakeMounter(t.TempDir()) // the tmpfs did not survive
			h.drv = h.start()
			eventually(t, time.Second, "the unused lease revoked at start", func() bool {
				_, revoked, _ := h.leased.snapshot()
				return revoked["database/creds/app/lease-1"]
			})
			eventually(t, 2*time.Second, "the lease of a volume still in use renewed at start", func() bool {
				r, _, _ := h.leased.snapshot()
				return r["database/creds/app/lease-2"] >= 1
			})
			if r, _, _ := h.leased.snapshot(); r["database/creds/app/lease-2"] != 1 {
				t.Fatalf("lease renewed %d times at start, want once (then at two thirds of its new TTL)", r["database/creds/app/lease-2"])
			}
			_, revoked, _ := h.leased.snapshot()
			if revoked["database/creds/app/lease-2"] {
				t.Fatal("the lease of a volume still in use was revoked")
			}
			h.unmount("busy", "c2")
			_, revoked, _ = h.leased.snapshot()
			if !revoked["database/creds/app/lease-2"] {
				t.Fatal("the last unmount after a restart did not revoke the lease")
			}
		})
	}
}

func TestSharedFetchAcrossVolumes(t *testing.T) {
	hh := newHarness(t)
	hh.ttl = time.Minute
	hh.drv = hh.start()
	hh.backend.set("shared/db", `{"a":"1","b":"2"}`)
	for i := range 10 {
		hh.create(fmt.Sprintf("vol%d", i), map[string]string{"secret": "shared/db", "key": []string{"a", "b"}[i%2]})
	}
	for i := range 10 {
		hh.mount(fmt.Sprintf("vol%d", i), "c")
	}
	if n := hh.backend.fetchCount(); n != 1 {
		t.Fatalf("10 volumes on one secret caused %d reads", n)
	}
}

// TestOpenFileAcrossRotation: a container holds a file of the volume open
// across a refresh (an app holding its CA bundle). The old design remounted
// the tmpfs read-write for the swap and could not remount it read-only
// again (EBUSY on the replaced, still open file): root in any container on
// the volume could then plant or replace files. Containers now get a
// read-only view that is never remounted: before and after the swap,
// every write through it fails with EROFS, and the new content is served.
func TestOpenFileAcrossRotation(t *testing.T) {
	h := newKernelHarness(t, 30*time.Millisecond)
	h.backend.set("rot", "v1")
	h.create("rot", map[string]string{"layout": "dir", "filename": "secret"})
	mp := h.mount("rot", "c1")
	held, err := os.Open(filepath.Join(mp, "secret"))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	writes := func(when string) {
		t.Helper()
		for what, try := range map[string]func() error{
			"plant a file":     func() error { return os.WriteFile(filepath.Join(mp, "planted"), []byte("x"), 0o644) },
			"replace the link": func() error { return os.Remove(filepath.Join(mp, "secret")) },
			"rewrite the file": func() error {
				f, err := os.OpenFile(filepath.Join(mp, "secret"), os.O_WRONLY, 0)
				if err == nil {
					f.Close()
				}
				return err
			},
		} {
			if err := try(); !errors.Is(err, syscall.EROFS) {
				t.Errorf("%s: %s through the view: err = %v, want EROFS", when, what, err)
			}
		}
	}
	writes("before the swap")
	h.backend.set("rot", "v2")
	eventually(t, 3*time.Second, "v2 swapped in while v1 is held open", func() bool {
		b, _ := os.ReadFile(filepath.Join(mp, "secret"))
		return string(b) == "v2"
	})
	writes("after the swap")
	b := make([]byte, 8)
	if n, _ := held.Read(b); string(b[:n]) != "v1" {
		t.Errorf("the held file reads %q, want the version it opened", b[:n])
	}
	if st := h.status("rot"); st["lastError"] != nil {
		t.Errorf("status after the swap: %v", st)
	}
}

// TestViewNeverWritable: containers mount what is under Root; nothing there
// is ever writable, at mount or at any swap (the old design mounted the
// tmpfs there read-write, then remounted it read-only after each write).
func TestViewNeverWritable(t *testing.T) {
	h := newHarnessWith(t, 20*time.Millisecond)
	h.backend.set("rot", "v0")
	h.create("rot", map[string]string{"layout": "dir", "filename": "secret"})
	h.create("static", map[string]string{"secret": "rot", "refresh": "0"})
	mp := h.mount("rot", "c1")
	h.mount("static", "c1")
	for i := 1; i <= 3; i++ {
		v := fmt.Sprintf("v%d", i)
		h.backend.set("rot", v)
		eventually(t, 3*time.Second, v+" swapped in", func() bool {
			b, _ := os.ReadFile(filepath.Join(mp, "secret"))
			return string(b) == v
		})
	}
	if w := h.mounter.everWritable(h.root); len(w) > 0 {
		t.Fatalf("mounted read-write where containers see it: %v", w)
	}
}

// TestSwapKeepsServedLease: the lease of the content being served is kept
// when a swap replaces content whose lease could not be renewed.
func TestSwapKeepsServedLease(t *testing.T) {
	h := newHarnessWith(t, 0)
	h.create("creds", map[string]string{"backend": "leased", "secret": "database/creds/app", "key": "*"})
	mp := h.mount("creds", "c1")
	h.leased.set(func(b *leaseBackend) { b.renewErr = errors.New("lease is not renewable") }) // forces a fresh read and a swap
	eventually(t, 3*time.Second, "fresh credentials swapped in", func() bool {
		b, _ := os.ReadFile(filepath.Join(mp, "username"))
		return string(b) == "u2"
	})
	_, revoked, _ := h.leased.snapshot()
	if revoked["database/creds/app/lease-2"] {
		t.Fatalf("the lease of the content being served was revoked: %v", revoked)
	}
}

// TestRenewalFailureBacksOff: a lease that cannot be renewed, whose fresh
// read fails too (Vault sealed, a policy changed), is tried again after a
// backoff, not in a tight loop.
func TestRenewalFailureBacksOff(t *testing.T) {
	h := newHarness(t)
	h.leased.ttl = 150 * time.Millisecond
	h.create("creds", map[string]string{"backend": "leased", "secret": "database/creds/app", "layout": "dir"})
	h.mount("creds", "c1")
	h.leased.set(func(b *leaseBackend) {
		b.renewErr = errors.New("permission denied")
		b.fetchErr = secrets.Fail(secrets.Ref{Backend: "leased", Name: "database/creds/app"}, secrets.ErrAccessDenied, "", nil)
	})
	// Renewal due at ~100ms fails, the read that should replace the lease
	// fails too: the next renewal waits 5s, the next read backs off.
	eventually(t, 5*time.Second, "the failed read in the status", func() bool {
		return strings.Contains(fmt.Sprint(h.status("creds")["lastError"]), "access denied")
	})
	v := h.drv.vols["creds"]
	v.mu.Lock()
	retryIn, refreshIn := time.Until(v.renewRetryAt), time.Until(v.refreshAt)
	v.mu.Unlock()
	if retryIn < 4*time.Second || refreshIn < 4*time.Second {
		t.Fatalf("after a failed renewal and read, the next renewal is due in %v and the next read in %v; want a 5s backoff for both", retryIn, refreshIn)
	}
}

// TestRefreshResumesAfterRestart: a volume whose tmpfs survived a plugin
// restart is refreshed again by the new process.
func TestRefreshResumesAfterRestart(t *testing.T) {
	h := newHarnessWith(t, 30*time.Millisecond)
	h.backend.set("rot", "v1")
	h.create("rot", map[string]string{"layout": "dir", "filename": "secret"})
	mp := h.mount("rot", "c1")
	h.stopAll()
	h.drv = h.start() // same mounter: the tmpfs survived
	h.backend.set("rot", "v2")
	eventually(t, 2*time.Second, "the new content after the restart", func() bool {
		b, _ := os.ReadFile(filepath.Join(mp, "secret"))
		return string(b) == "v2"
	})
	// The restarted driver wrote through a side it bound again, never
	// through a writable mount under the views' root.
	if rw := h.mounter.everWritable(h.root); len(rw) > 0 {
		t.Fatalf("mounted read-write under the views' root across the restart: %v", rw)
	}
}

// TestRefreshSettingSkipsDynamicContent: the REFRESH setting does not
// re-read a volume of dynamic secrets, which would issue new credentials
// and revoke the ones in use every interval; its lease is renewed instead.
func TestRefreshSettingSkipsDynamicContent(t *testing.T) {
	h := newHarnessWith(t, 30*time.Millisecond)
	h.leased.ttl = time.Hour
	h.create("creds", map[string]string{"backend": "leased", "secret": "database/creds/app", "layout": "dir"})
	h.mount("creds", "c1")
	if v := h.drv.vols["creds"]; !v.refreshAt.IsZero() {
		t.Fatal("REFRESH scheduled a re-read of a leased volume")
	}
	g, _ := h.drv.Get(&volume.GetRequest{Name: "creds"})
	if !strings.Contains(fmt.Sprint(g.Volume.Status["refresh"]), "dynamic secrets") {
		t.Fatalf("status does not say why the volume is not refreshed: %v", g.Volume.Status)
	}
	// After a restart the state still says the content is dynamic.
	h.stopAll()
	h.drv = h.start()
	if v := h.drv.vols["creds"]; !v.refreshAt.IsZero() {
		t.Fatal("after a restart REFRESH scheduled a re-read of the leased volume")
	}
}

// TestRefreshNearTheCap: a volume whose content fills most of its budget
// mounts, and its refresh finds room for the new version beside the old
// (real tmpfs; root only). A version over the budget is refused with both
// limits named.
func TestRefreshNearTheCap(t *testing.T) {
	h := newKernelHarness(t, 30*time.Millisecond) // TmpfsSize 1 MiB
	big := func(c string) string { return strings.Repeat(c, 700<<10) }
	h.backend.set("big", big("a"))
	h.create("big", map[string]string{"layout": "dir", "filename": "blob"})
	mp := h.mount("big", "c1")
	h.backend.set("big", big("b"))
	eventually(t, 3*time.Second, "the second 700 KiB version swapped in", func() bool {
		b, _ := os.ReadFile(filepath.Join(mp, "blob"))
		return len(b) > 0 && b[0] == 'b'
	})
	h.unmount("big", "c1")

	h.backend.set("huge", big("c")+big("c"))
	h.create("huge", map[string]string{"layout": "dir", "filename": "blob"})
	_, err := h.drv.Mount(&volume.MountRequest{Name: "huge", ID: "c2"})
	if err == nil || !strings.Contains(err.Error(), "do not fit") || !strings.Contains(err.Error(), "1024 KiB") {
		t.Fatalf("1.4 MiB in a 1 MiB volume: %v", err)
	}
}

// TestRemoveEndsLeasesFromBeforeRestart: Docker removes a volume whose
// containers from before a restart are gone (their unmounts never came):
// the leases held for them are revoked and no longer renewed.
func TestRemoveEndsLeasesFromBeforeRestart(t *testing.T) {
	h := newHarness(t)
	h.create("creds", map[string]string{"backend": "leased", "secret": "database/creds/app", "layout": "dir"})
	h.mount("creds", "c1")
	h.stopAll()
	h.mounter = newFakeMounter(t.TempDir()) // dockerd restarted: the tmpfs is gone
	h.drv = h.start()
	if err := h.drv.Remove(&volume.RemoveRequest{Name: "creds"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Second, "the lease revoked at Remove", func() bool {
		_, revoked, _ := h.leased.snapshot()
		return revoked["database/creds/app/lease-1"]
	})
	if v := h.drvVol(t, "creds"); v != nil {
		t.Fatal("the removed volume is still known")
	}
}

// TestIssuerEndedReplacesLeases: the backend says the login that issued
// leases ended (Vault: the token reached its max TTL, and its leases end
// with it). Volumes holding its leases renew at once, not at two thirds of
// an hour-long TTL; the renewal fails, and fresh credentials replace them.
func TestIssuerEndedReplacesLeases(t *testing.T) {
	h := newHarness(t)
	h.leased.ttl = time.Hour
	h.create("creds", map[string]string{"backend": "leased", "secret": "database/creds/app", "layout": "dir", "filename": "creds.json"})
	mp := h.mount("creds", "c1")
	h.leased.set(func(b *leaseBackend) { b.renewErr = errors.New("the vault token that read this lease has ended") })
	h.leased.ended <- struct{}{}
	eventually(t, 2*time.Second, "fresh credentials swapped in", func() bool {
		b, _ := os.ReadFile(filepath.Join(mp, "creds.json"))
		return strings.Contains(string(b), "u2")
	})
	eventually(t, time.Second, "the ended lease revoked", func() bool {
		_, revoked, _ := h.leased.snapshot()
		return revoked["database/creds/app/lease-1"]
	})
}

// TestLeaseGrace: when new credentials replace a volume's content, the old
// lease (the database user the app's open connections use) is kept for the
// grace period, then revoked; with lease-grace=0 it is revoked at once; the
// last unmount revokes a lease still in its grace; a restart keeps it.
func TestLeaseGrace(t *testing.T) {
	revoked := func(h *harness, id string) bool {
		_, r, _ := h.leased.snapshot()
		return r[id]
	}
	replace := func(h *harness, mp string) {
		t.Helper()
		h.leased.set(func(b *leaseBackend) { b.renewErr = errors.New("lease is not renewable") })
		eventually(t, 3*time.Second, "fresh credentials swapped in", func() bool {
			b, _ := os.ReadFile(filepath.Join(mp, "username"))
			return string(b) == "u2"
		})
		h.leased.set(func(b *leaseBackend) { b.renewErr = nil })
	}
	const first = "database/creds/app/lease-1"

	t.Run("kept while its grace runs", func(t *testing.T) {
		h := newHarness(t)
		h.create("creds", map[string]string{"backend": "leased", "secret": "database/creds/app", "key": "*", "lease-grace": "1h"})
		mp := h.mount("creds", "c1")
		replace(h, mp)
		// The new files show a moment before the volume's state says what
		// it holds: wait for the state.
		eventually(t, 10*time.Second, "status counts the retiring lease", func() bool {
			n, _ := h.status("creds")["retiringLeases"].(int)
			return n >= 1
		})
		if revoked(h, first) {
			t.Fatal("the replaced lease was revoked at once, under the app's open connections")
		}
	})
	t.Run("revoked when its grace ends", func(t *testing.T) {
		h := newHarness(t)
		h.create("creds", map[string]string{"backend": "leased", "secret": "database/creds/app", "key": "*", "lease-grace": "1s"})
		mp := h.mount("creds", "c1")
		replace(h, mp)
		eventually(t, 15*time.Second, "the replaced lease revoked after its grace", func() bool { return revoked(h, first) })
	})
	t.Run("lease-grace=0 revokes at once", func(t *testing.T) {
		h := newHarness(t)
		h.create("creds", map[string]string{"backend": "leased", "secret": "database/creds/app", "key": "*", "lease-grace": "0"})
		mp := h.mount("creds", "c1")
		replace(h, mp)
		eventually(t, time.Second, "the replaced lease revoked", func() bool { return revoked(h, first) })
	})
	t.Run("kept across a restart, revoked by the last unmount", func(t *testing.T) {
		h := newHarness(t)
		h.create("creds", map[string]string{"backend": "leased", "secret": "database/creds/app", "key": "*", "lease-grace": "1h"})
		mp := h.mount("creds", "c1")
		replace(h, mp)
		h.stopAll()
		h.drv = h.start()
		if revoked(h, first) {
			t.Fatal("a restart revoked a lease in its grace")
		}
		h.unmount("creds", "c1")
		if !revoked(h, first) || !revoked(h, "database/creds/app/lease-2") {
			_, r, _ := h.leased.snapshot()
			t.Fatalf("after the last unmount, revoked = %v; want both leases", r)
		}
	})
}

// TestKernelRestartKeepsRefreshing: after a plugin restart the writable side
// of a kept tmpfs is bound again from its read-only view (real mounts): the
// refresh writes through it, containers see the new value, and the view is
// still read-only.
func TestKernelRestartKeepsRefreshing(t *testing.T) {
	h := newKernelHarness(t, 30*time.Millisecond)
	h.backend.set("rot", "v1")
	h.create("rot", map[string]string{"layout": "dir", "filename": "secret"})
	mp := h.mount("rot", "c1")
	h.stopAll()
	h.drv = h.start()
	h.backend.set("rot", "v2")
	eventually(t, 3*time.Second, "v2 written after the restart", func() bool {
		b, _ := os.ReadFile(filepath.Join(mp, "secret"))
		return string(b) == "v2"
	})
	if err := os.WriteFile(filepath.Join(mp, "planted"), []byte("x"), 0o644); !errors.Is(err, syscall.EROFS) {
		t.Fatalf("write through the view after a restart: %v, want EROFS", err)
	}
	h.unmount("rot", "c1")
	mounts, views := kernelMountsUnder(t, h.writer), kernelMountsUnder(t, h.root)
	if len(mounts)+len(views) > 0 {
		t.Fatalf("mounts left after the last unmount: %v %v", mounts, views)
	}
}

// TestThrottledRenewalTriedAgain: a renewal the store throttles goes
// through the store gate, which tries it again within TIMEOUT: the lease is
// renewed and kept. Without the gate the renewal fails and the volume
// reads fresh credentials (a new lease) at once, more load on a store that
// is already throttling.
func TestThrottledRenewalTriedAgain(t *testing.T) {
	for _, withGates := range []bool{false, true} {
		t.Run(fmt.Sprint("gates=", withGates), func(t *testing.T) {
			h := newHarness(t)
			if withGates {
				g, err := gate.New(gate.Config{Base: time.Millisecond})
				if err != nil {
					t.Fatal(err)
				}
				h.drv.Close()
				h.gates = g
				h.drv = h.start()
			}
			h.leased.set(func(b *leaseBackend) { b.throttle = 1 })
			h.create("creds", map[string]string{"backend": "leased", "secret": "database/creds/app", "key": "*"})
			h.mount("creds", "c1")
			if withGates {
				eventually(t, 2*time.Second, "lease-1 renewed", func() bool {
					r, _, _ := h.leased.snapshot()
					return r["database/creds/app/lease-1"] >= 1
				})
				if _, _, issued := h.leased.snapshot(); issued != 1 || h.leased.renewTries() < 2 {
					t.Fatalf("%d leases issued, %d renewal tries: want lease-1 kept, renewed at the second try", issued, h.leased.renewTries())
				}
			} else {
				eventually(t, 2*time.Second, "a new lease read after the failed renewal", func() bool {
					_, _, issued := h.leased.snapshot()
					return issued >= 2
				})
				if r, _, _ := h.leased.snapshot(); r["database/creds/app/lease-1"] != 0 {
					t.Fatalf("renewals %v: lease-1 renewed without a gate", r)
				}
			}
			h.unmount("creds", "c1")
		})
	}
}
