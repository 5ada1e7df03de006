package volumes

import (
	"errors"
	"fmt"
	"github.com/dsv-plugin/dsv/render"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/docker/go-plugins-helpers/volume"

	"github.com/dsv-plugin/dsv/secrets"
)

func (h *harness) create(name string, opts map[string]string) {
	h.t.Helper()
	if err := h.drv.Create(&volume.CreateRequest{Name: name, Options: opts}); err != nil {
		h.t.Fatalf("Create(%s): %v", name, err)
	}
}

func (h *harness) mount(name, id string) string {
	h.t.Helper()
	resp, err := h.drv.Mount(&volume.MountRequest{Name: name, ID: id})
	if err != nil {
		h.t.Fatalf("Mount(%s, %s): %v", name, id, err)
	}
	return resp.Mountpoint
}

func (h *harness) unmount(name, id string) {
	h.t.Helper()
	if err := h.drv.Unmount(&volume.UnmountRequest{Name: name, ID: id}); err != nil {
		h.t.Fatalf("Unmount(%s, %s): %v", name, id, err)
	}
}

func TestMountFileLayout(t *testing.T) {
	h := newHarness(t)
	h.backend.values["db-password"] = "s3cr3t"
	h.create("db-password", nil)

	mp := h.mount("db-password", "c1")
	if want := filepath.Join(h.root, "db-password", "db-password"); mp != want {
		t.Fatalf("mountpoint = %s, want the file %s", mp, want)
	}
	if got := readFile(t, mp); got != "s3cr3t" {
		t.Fatalf("file holds %q", got)
	}
	st, err := os.Stat(mp)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o444 {
		t.Errorf("mode = %o, want swarm's default 0444", st.Mode().Perm())
	}
	if rw := h.mounter.everWritable(h.root); len(rw) > 0 {
		t.Errorf("mounted read-write under the views' root: %v", rw)
	}
	entries := listDir(t, filepath.Dir(mp))
	if len(entries) != 1 {
		t.Errorf("tmpfs holds %d entries, want only the secret (no temp file left)", len(entries))
	}
}

func TestMountDirLayoutOwnerAndMode(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown to another uid needs root")
	}
	h := newHarness(t)
	h.backend.values["prod/app/db"] = "pw"
	h.create("appdb", map[string]string{"secret": "prod/app/db", "layout": "dir", "uid": "1000", "gid": "1001", "mode": "0400"})

	mp := h.mount("appdb", "c1")
	if mp != filepath.Join(h.root, "appdb") {
		t.Fatalf("mountpoint = %s, want the volume's directory", mp)
	}
	st, err := os.Stat(filepath.Join(mp, "db"))
	if err != nil {
		t.Fatal(err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	if sys.Uid != 1000 || sys.Gid != 1001 || st.Mode().Perm() != 0o400 {
		t.Errorf("file is %d:%d %o, want 1000:1001 0400", sys.Uid, sys.Gid, st.Mode().Perm())
	}
}

// TestRefcountByMountID: mounts are counted per ID. Docker reuses a running
// container's mount ID for the extra mount that `docker cp` makes, and
// unmounts it after (moby #37314, #47964): that unmount must not take the
// tmpfs from under the running container, even across a plugin restart.
func TestRefcountByMountID(t *testing.T) {
	h := newHarness(t)
	h.backend.values["shared"] = "v"
	h.create("shared", nil)
	dir := filepath.Join(h.root, "shared")

	mp1 := h.mount("shared", "c1")
	mp2 := h.mount("shared", "c2")
	if mp1 != mp2 {
		t.Fatalf("two containers got %s and %s", mp1, mp2)
	}
	h.mount("shared", "c2") // docker cp on the running c2
	if n := h.backend.fetchCount(); n != 1 {
		t.Errorf("backend fetched %d times for one tmpfs, want 1", n)
	}
	g, _ := h.drv.Get(&volume.GetRequest{Name: "shared"})
	if g.Volume.Status["mounts"] != 3 {
		t.Errorf("status mounts = %v, want 3", g.Volume.Status["mounts"])
	}

	h.unmount("shared", "c1")
	h.unmount("shared", "c2") // docker cp is done
	if !h.mounter.isMounted(dir) || readFile(t, mp2) != "v" {
		t.Fatal("the end of docker cp took the running container's file away")
	}

	// The counts survive a restart of the plugin.
	h.mount("shared", "c2") // docker cp again
	h.stopAll()
	h.drv = h.start()
	h.unmount("shared", "c2")
	if !h.mounter.isMounted(dir) || readFile(t, mp2) != "v" {
		t.Fatal("after a restart, the end of docker cp took the running container's file away")
	}
	h.unmount("shared", "c2")
	if h.mounter.isMounted(dir) {
		t.Fatal("tmpfs still mounted after the last unmount")
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("volume directory left behind after the last unmount: %v", err)
	}
	h.unmount("shared", "c2") // unknown ID: ignored, not an error
}

func TestMountFailureLeavesNothing(t *testing.T) {
	tests := []struct {
		name     string
		setup    func(h *harness)
		wantErr  []string
		wantKind error
	}{
		{
			name:     "secret not found",
			setup:    func(h *harness) {},
			wantErr:  []string{`volume "gone": fake secret "gone": not found`},
			wantKind: secrets.ErrNotFound,
		},
		{
			name: "access denied",
			setup: func(h *harness) {
				h.backend.errs["gone"] = secrets.Fail(secrets.Ref{Backend: "fake", Name: "gone"}, secrets.ErrAccessDenied, "check the policy", nil)
			},
			wantErr:  []string{`volume "gone": fake secret "gone": access denied (check the policy)`},
			wantKind: secrets.ErrAccessDenied,
		},
		{
			name:     "backend hangs past the timeout",
			setup:    func(h *harness) { h.backend.block = make(chan struct{}) },
			wantErr:  []string{`volume "gone": fake secret "gone": timed out`, "TIMEOUT"},
			wantKind: secrets.ErrTimeout,
		},
		{
			name: "backend ignores its deadline",
			setup: func(h *harness) {
				block := make(chan struct{})
				h.backend.block, h.backend.deaf = block, true
				h.t.Cleanup(func() { close(block) })
			},
			wantErr:  []string{`volume "gone": fake secret "gone": timed out`, "TIMEOUT"},
			wantKind: secrets.ErrTimeout,
		},
		{
			name: "tmpfs cannot be mounted",
			setup: func(h *harness) {
				h.backend.values["gone"] = "v"
				h.mounter.failOn = "mount"
			},
			wantErr: []string{`volume "gone": mount tmpfs: operation not permitted`},
		},
		{
			name: "the read-only view cannot be made after the write",
			setup: func(h *harness) {
				h.backend.values["gone"] = "v"
				h.mounter.failOn = "bind"
			},
			wantErr: []string{`volume "gone": bind: operation not permitted`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.create("gone", nil)
			tt.setup(h)
			_, err := h.drv.Mount(&volume.MountRequest{Name: "gone", ID: "c1"})
			if err == nil {
				t.Fatal("Mount succeeded, want an error")
			}
			for _, s := range tt.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
			if tt.wantKind != nil && !errors.Is(err, tt.wantKind) {
				t.Errorf("error %v is not %v", err, tt.wantKind)
			}
			for _, dir := range []string{filepath.Join(h.root, "gone"), filepath.Join(h.writer, "gone")} {
				if h.mounter.isMounted(dir) {
					t.Errorf("failed mount left %s mounted", dir)
				}
				if _, err := os.Lstat(dir); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("failed mount left %s: %v", dir, err)
				}
			}
			got, err := h.drv.Get(&volume.GetRequest{Name: "gone"})
			if err != nil {
				t.Fatal(err)
			}
			if got.Volume.Status["lastError"] == nil || got.Volume.Status["mounts"] != 0 {
				t.Errorf("status after a failed mount = %v, want lastError and 0 mounts", got.Volume.Status)
			}
		})
	}
}

// TestRemove: Docker calls Remove only once no container references the
// volume, so a mount still counted is dead (an Unmount lost while the
// plugin was down, moby #46508): Remove succeeds and wipes the tmpfs; the
// late Unmount of that ID is then an unknown volume.
func TestRemove(t *testing.T) {
	h := newHarness(t)
	h.backend.values["v1"] = "x"
	h.create("v1", nil)
	h.mount("v1", "c1")
	if err := h.drv.Remove(&volume.RemoveRequest{Name: "v1"}); err != nil {
		t.Fatalf("Remove of a volume with a dead mount: %v", err)
	}
	if h.mounter.isMounted(filepath.Join(h.root, "v1")) || h.mounter.isMounted(filepath.Join(h.writer, "v1")) {
		t.Fatal("Remove left the tmpfs mounted")
	}
	if err := h.drv.Unmount(&volume.UnmountRequest{Name: "v1", ID: "c1"}); err == nil {
		t.Fatal("Unmount after Remove found the volume")
	}
	h.create("v1", nil)
	if err := h.drv.Remove(&volume.RemoveRequest{Name: "v1"}); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if _, err := h.drv.Get(&volume.GetRequest{Name: "v1"}); err == nil {
		t.Fatal("Get after Remove found the volume")
	}
	if err := h.drv.Remove(&volume.RemoveRequest{Name: "v1"}); err == nil {
		t.Fatal("second Remove succeeded")
	}
}

func TestCreateIdempotentAndConflicting(t *testing.T) {
	h := newHarness(t)
	h.create("v1", map[string]string{"secret": "a"})
	h.create("v1", map[string]string{"secret": "a"})
	err := h.drv.Create(&volume.CreateRequest{Name: "v1", Options: map[string]string{"secret": "b"}})
	if err == nil || !strings.Contains(err.Error(), "already exists with different options") {
		t.Fatalf("conflicting Create = %v", err)
	}
	if err := h.drv.Create(&volume.CreateRequest{Name: "a", Options: nil}); err == nil {
		t.Fatal("one-letter volume name accepted")
	}
}

func TestListGetPathCapabilities(t *testing.T) {
	h := newHarness(t)
	h.backend.values["b-vol"] = "value-never-shown"
	h.create("b-vol", nil)
	h.create("a-vol", map[string]string{"layout": "dir", "key": "k"})

	list, err := h.drv.List()
	if err != nil || len(list.Volumes) != 2 || list.Volumes[0].Name != "a-vol" {
		t.Fatalf("List = %+v, %v", list, err)
	}
	p, _ := h.drv.Path(&volume.PathRequest{Name: "b-vol"})
	if p.Mountpoint != "" {
		t.Errorf("Path of an unmounted volume = %q, want empty", p.Mountpoint)
	}
	mp := h.mount("b-vol", "c1")
	p, _ = h.drv.Path(&volume.PathRequest{Name: "b-vol"})
	if p.Mountpoint != mp {
		t.Errorf("Path = %q, want %q", p.Mountpoint, mp)
	}
	got, err := h.drv.Get(&volume.GetRequest{Name: "b-vol"})
	if err != nil {
		t.Fatal(err)
	}
	st := got.Volume.Status
	if st["backend"] != "fake" || st["secret"] != "b-vol" || st["version"] != "v1" || st["fetchedAt"] == nil || st["mounts"] != 1 {
		t.Errorf("status = %v", st)
	}
	if strings.Contains(fmt.Sprint(st), "value-never-shown") {
		t.Error("status shows the secret value")
	}
	if h.drv.Capabilities().Capabilities.Scope != "local" {
		t.Error("scope is not local")
	}
	if _, err := h.drv.Get(&volume.GetRequest{Name: "nope"}); err == nil {
		t.Error("Get of an unknown volume succeeded")
	}
}

func TestStatePersistedWithoutSecrets(t *testing.T) {
	h := newHarness(t)
	h.backend.values["canary"] = "CANARY-VALUE-42"
	h.create("canary", map[string]string{"uid": "1000", "mode": "0400"})
	h.mount("canary", "c1")

	st, err := os.Stat(h.state)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("state file mode = %o, want 0600", st.Mode().Perm())
	}
	b := readFile(t, h.state)
	if strings.Contains(b, "CANARY-VALUE-42") {
		t.Fatal("state file holds the secret value")
	}
	if !strings.Contains(b, `"c1"`) {
		t.Error("state file does not hold the mount id")
	}
	leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(h.state), ".state-*"))
	if len(leftovers) != 0 {
		t.Errorf("temp files left: %v", leftovers)
	}
}

func TestRestartKeepsVolumesAndLiveMounts(t *testing.T) {
	h := newHarness(t)
	h.backend.values["live"] = "x"
	h.backend.values["idle"] = "y"
	h.create("live", nil)
	h.create("idle", map[string]string{"mode": "0400"})
	mp := h.mount("live", "c1")

	// A plugin restart with a container still running: the tmpfs survives.
	h.drv = h.start()
	list, _ := h.drv.List()
	if len(list.Volumes) != 2 {
		t.Fatalf("after restart List has %d volumes, want 2", len(list.Volumes))
	}
	if got := h.mount("live", "c2"); got != mp {
		t.Fatalf("after restart a new container got %s, want the live tmpfs %s", got, mp)
	}
	if n := h.backend.fetchCount(); n != 1 {
		t.Errorf("restart caused a refetch: %d fetches", n)
	}
	h.unmount("live", "c1")
	h.unmount("live", "c2")
	if h.mounter.isMounted(filepath.Dir(mp)) {
		t.Fatal("tmpfs kept after the last unmount across a restart")
	}
	h.mount("idle", "c3")
	if err := h.drv.Remove(&volume.RemoveRequest{Name: "live"}); err != nil {
		t.Fatalf("Remove after restart: %v", err)
	}
}

func TestRestartAfterMountsVanished(t *testing.T) {
	h := newHarness(t)
	h.backend.values["v1"] = "x"
	h.create("v1", nil)
	h.mount("v1", "old")

	// dockerd restarted: the tmpfs is gone, the old container is dead, and
	// Docker may never send its Unmount.
	h.mounter = newFakeMounter(t.TempDir())
	h.drv = h.start()
	mp := h.mount("v1", "new")
	if readFile(t, mp) != "x" {
		t.Fatal("no fresh tmpfs for a new container after the old mounts vanished")
	}
	got, _ := h.drv.Get(&volume.GetRequest{Name: "v1"})
	if got.Volume.Status["mounts"] != 1 || got.Volume.Status["mountsBeforeRestart"] != 1 {
		t.Errorf("status = %v, want 1 live mount and 1 from before the restart", got.Volume.Status)
	}
	h.unmount("v1", "new")
	if h.mounter.isMounted(filepath.Dir(mp)) {
		t.Fatal("an id from before the restart pinned the fresh tmpfs")
	}
	h.unmount("v1", "old")
	if err := h.drv.Remove(&volume.RemoveRequest{Name: "v1"}); err != nil {
		t.Fatalf("Remove: %v", err)
	}

	// Stale ids whose tmpfs is gone do not block removal either.
	h.create("v2", nil)
	h.backend.values["v2"] = "x"
	h.mount("v2", "ghost")
	h.mounter = newFakeMounter(t.TempDir())
	h.drv = h.start()
	if err := h.drv.Remove(&volume.RemoveRequest{Name: "v2"}); err != nil {
		t.Fatalf("Remove with stale mount ids: %v", err)
	}
}

func TestStaleMountsCleanedAtStart(t *testing.T) {
	h := newHarness(t)
	h.create("known", nil)
	for _, name := range []string{"known", "unknown"} {
		dir := filepath.Join(h.root, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := h.mounter.MountTmpfs(dir, 1, 1); err != nil {
			t.Fatal(err)
		}
	}
	h.drv = h.start()
	for _, name := range []string{"known", "unknown"} {
		if h.mounter.isMounted(filepath.Join(h.root, name)) {
			t.Errorf("stale tmpfs of %q not cleaned up at start", name)
		}
	}
}

func TestConcurrentMounts(t *testing.T) {
	h := newHarness(t)
	const n = 20
	for i := range n {
		name := fmt.Sprintf("vol%02d", i)
		h.backend.values[name] = name
		h.create(name, nil)
	}
	var wg sync.WaitGroup
	for i := range n {
		for c := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				name := fmt.Sprintf("vol%02d", i)
				id := fmt.Sprintf("c%d", c)
				if _, err := h.drv.Mount(&volume.MountRequest{Name: name, ID: id}); err != nil {
					t.Error(err)
					return
				}
				if _, err := h.drv.Get(&volume.GetRequest{Name: name}); err != nil {
					t.Error(err)
				}
				if err := h.drv.Unmount(&volume.UnmountRequest{Name: name, ID: id}); err != nil {
					t.Error(err)
				}
			}()
		}
	}
	wg.Wait()
	m, err := h.mounter.MountsUnder(h.root)
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 0 {
		t.Fatalf("mounts left after every container stopped: %v", m)
	}
	b := readFile(t, h.state)
	if !strings.Contains(b, `"volumes"`) || strings.Contains(b, `"instances"`) {
		t.Fatalf("state still lists instances: %s", b)
	}
}

func TestStateMigratesVersion1(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	v1 := `{"version":1,"volumes":{"db":{"options":{"ref":{"backend":"aws","secret":"prod/db","key":"pw"},
		"uid":1000,"gid":0,"mode":256,"layout":"dir","filename":"pw"},"createdAt":"2026-11-25T19:00:00Z","mountIds":["x"]}}}`
	if err := os.WriteFile(path, []byte(v1), 0o600); err != nil {
		t.Fatal(err)
	}
	store, _ := NewStore(path)
	recs, err := store.Load()
	if err != nil {
		t.Fatal(err)
	}
	got := recs.Volumes["db"]
	want := render.Options{Layout: render.LayoutDir, Objects: []render.Object{{Name: "pw", Format: render.FormatRaw, UID: 1000, Mode: 0o400,
		Ref: secrets.Ref{Backend: "aws", Name: "prod/db", Key: "pw"}}}}
	if !reflect.DeepEqual(got.Options, want) || len(got.Instances) != 1 || got.Instances[0].Mounts["x"] != 1 || !got.Instances[0].Published {
		t.Fatalf("migrated record = %+v", got)
	}
}

// TestCreateIdenticalAfterRestart: `docker volume create` with the options
// a volume has is accepted after a plugin restart, for every kind of
// volume (a template volume's empty maps were saved as absent and reloaded
// as nil, and the identical create was refused).
func TestCreateIdenticalAfterRestart(t *testing.T) {
	for name, opts := range map[string]map[string]string{
		"single":   {"secret": "a"},
		"template": {"template": `{{ secret "fake" "a" }}`, "filename": "t"},
		"multi":    {"file.a": "secret=a", "template.b": `{{ secret "fake" "a" }}`},
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			h.create(name, opts)
			h.stopAll()
			h.drv = h.start()
			if err := h.drv.Create(&volume.CreateRequest{Name: name, Options: opts}); err != nil {
				t.Fatalf("identical create after a restart: %v", err)
			}
			changed := maps.Clone(opts)
			changed["mode"] = "0400"
			if err := h.drv.Create(&volume.CreateRequest{Name: name, Options: changed}); err == nil {
				t.Fatal("create with other options accepted")
			}
		})
	}
}
