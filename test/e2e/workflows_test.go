//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The engine's call patterns beyond run and rm, each on the real daemon: what
// Docker and its users do to a container that holds a dsv volume.

// workflowVolume is a volume under test and how to check it from a
// container: the path of a file in it and the value that file must hold.
type workflowVolume struct {
	name  string
	path  string // in a container that mounts the volume at /s
	value string
	// alive, when set, checks what the value stands for outside the
	// container (a database user can log in).
	alive func(t *testing.T) string
}

// fileWorkflowVolume is a directory volume of the file backend holding a
// fresh value at /s/pw.
func fileWorkflowVolume(t *testing.T, sc *scope, label string, opts ...string) workflowVolume {
	t.Helper()
	file := env.name(label)
	value := "wf-" + randomHex(12)
	if err := env.writeFile(file, []byte(value)); err != nil {
		t.Fatal(err)
	}
	vol := sc.createVolume(label, append([]string{"backend=file", "secret=" + file, "layout=dir", "filename=pw"}, opts...)...)
	return workflowVolume{name: vol, path: "/s/pw", value: value}
}

// wantReads fails unless the running container reads the volume's value.
func (w workflowVolume) wantReads(t *testing.T, container, when string) {
	t.Helper()
	r := docker(t, "exec", container, "cat", w.path)
	if r.err != nil || strings.TrimSpace(r.stdout) != w.value {
		t.Fatalf("%s: the running container no longer reads its secret: %v", when, r)
	}
	if w.alive != nil {
		if msg := w.alive(t); msg != "" {
			t.Fatalf("%s: %s", when, msg)
		}
	}
}

// TestDockerCp: Docker reuses a running container's mount ID for the extra
// mount `docker cp` makes, and unmounts it after (moby #37314, #47964). Out
// of the volume, into the container, again and again: the running container
// keeps its secret (and a database user its lease), and the volume's mount
// count comes back to one. A volume whose content never changes holds plain
// files, so `docker cp` copies the secret, not a symlink into ..data.
func TestDockerCp(t *testing.T) {
	sc := newScope(t)
	w := fileWorkflowVolume(t, sc, "cp")
	c := sc.start("cp", "-v", w.name+":/s")
	w.wantReads(t, c, "before docker cp")
	dockerCpChecks(t, w, c)
	out := t.TempDir()
	mustDocker(t, "cp", c+":/s/pw", filepath.Join(out, "pw"))
	st, err := os.Lstat(filepath.Join(out, "pw"))
	if err != nil || !st.Mode().IsRegular() {
		t.Fatalf("docker cp out of a static volume gave %v (%v), want a regular file", st, err)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "pw")); string(b) != w.value {
		t.Fatalf("docker cp out of the volume copied %q", b)
	}
	mustDocker(t, "rm", "-f", c)
	wantNoHostMount(t, w.name)
}

// TestDockerCpRefreshed: a volume that refreshes holds the ..data scheme;
// `docker cp -L` copies the secret the link points to, and the container
// keeps its secret after it.
func TestDockerCpRefreshed(t *testing.T) {
	sc := newScope(t)
	w := fileWorkflowVolume(t, sc, "cp-refresh", "refresh=1h")
	c := sc.start("cp-refresh", "-v", w.name+":/s")
	w.wantReads(t, c, "before docker cp")
	out := t.TempDir()
	r := docker(t, "cp", "-L", c+":/s/pw", filepath.Join(out, "pw"))
	if r.err != nil {
		t.Fatalf("docker cp -L out of a refreshed volume: %v", r)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "pw")); string(b) != w.value {
		t.Errorf("docker cp -L out of a refreshed volume copied %q", b)
	}
	w.wantReads(t, c, "after docker cp -L")
	wantMounts(t, w.name, 1)
}

// dockerCpChecks copies out of the volume and into the container three
// times each, checking after each that the container reads its secret and
// that the volume is mounted once.
func dockerCpChecks(t *testing.T, w workflowVolume, c string) {
	t.Helper()
	dir := t.TempDir()
	in := filepath.Join(dir, "in")
	if err := os.WriteFile(in, []byte("not a secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		mustDocker(t, "cp", "-L", c+":"+w.path, filepath.Join(dir, "out"))
		w.wantReads(t, c, "after docker cp out of the volume")
		mustDocker(t, "cp", in, c+":/tmp/in")
		w.wantReads(t, c, "after docker cp into the container")
		wantMounts(t, w.name, 1)
		if i == 0 {
			if b, _ := os.ReadFile(filepath.Join(dir, "out")); strings.TrimSpace(string(b)) != w.value {
				t.Fatalf("docker cp -L out of the volume copied %q", b)
			}
		}
	}
}

// TestReadOnlyViewAcrossRotation: a container keeps a secret file open
// across a refresh (an app that holds its CA bundle). The old design
// remounted the tmpfs read-only after the swap, which failed (EBUSY) while
// the replaced file was open, and left every container on the volume able
// to plant or replace files. Containers now get a read-only view that is
// never remounted: root in another container cannot write, before or after
// the swap.
func TestReadOnlyViewAcrossRotation(t *testing.T) {
	sc := newScope(t)
	file := env.name("ro-view")
	if err := env.writeFile(file, []byte("v1")); err != nil {
		t.Fatal(err)
	}
	vol := sc.createVolume("ro-view", "backend=file", "secret="+file, "layout=dir", "filename=ca.pem", "refresh=1s")
	holder := sc.container("ro-holder")
	mustDocker(t, sc.runArgs(holder, true, []string{"-v", vol + ":/s"}, "sh", "-c", "exec 3</s/ca.pem; sleep 300")...)
	other := sc.start("ro-other", "-v", vol+":/s")
	writes := func(when string) {
		t.Helper()
		for _, script := range []string{
			"echo planted > /s/planted",
			"echo replaced > /s/ca.pem",
			"rm -f /s/ca.pem",
			"echo replaced > /s/..data/ca.pem",
			"mkdir /s/d",
		} {
			r := docker(t, "exec", other, "sh", "-c", script)
			if r.err == nil {
				t.Fatalf("%s: root in a container wrote to the volume with %q", when, script)
			}
			wantContains(t, script, r.stderr, "Read-only file system")
		}
	}
	writes("before the rotation")
	// A third container tries to write all the time, across the swaps: the
	// old design opened a writable window at every swap (remount
	// read-write, write, remount read-only).
	racer := sc.container("ro-racer")
	mustDocker(t, sc.runArgs(racer, true, []string{"-v", vol + ":/s"},
		"sh", "-c", "while :; do if echo x 2>/dev/null >/s/planted; then echo WROTE; exit 0; fi; done")...)
	for i := 2; i <= 6; i++ {
		want := "v" + strconv.Itoa(i)
		if err := replaceFile(file, []byte(want)); err != nil {
			t.Fatal(err)
		}
		eventually(t, 30*time.Second, "the rotated value in the container", func() string {
			if got := readInContainer(t, other, "/s/ca.pem"); got != want {
				return "reads " + got
			}
			return ""
		})
	}
	if logs := mustDocker(t, "logs", racer); strings.Contains(logs, "WROTE") {
		t.Errorf("a container wrote into the volume during a swap")
	}
	writes("after the rotations, with the first file held open")
	st := inspectVolume(t, vol).Status
	if st["lastError"] != nil {
		t.Errorf("status after the rotation: %v", st)
	}
	for _, m := range volumeHostMounts(t, vol) {
		if !strings.Contains(strings.Fields(m)[1], "ro") {
			t.Errorf("the host's mount of the volume is not read-only: %s", m)
		}
	}
}

// TestContainerLifecycle: restart, --restart=always with a crashing
// process, a command that cannot start, create then start, --read-only and
// --user containers.
func TestContainerLifecycle(t *testing.T) {
	sc := newScope(t)

	t.Run("docker restart", func(t *testing.T) {
		w := fileWorkflowVolume(t, sc, "restart")
		c := sc.start("restart", "--stop-timeout", "1", "-v", w.name+":/s")
		for range 2 {
			mustDocker(t, "restart", "-t", "1", c)
			w.wantReads(t, c, "after docker restart")
			wantMounts(t, w.name, 1)
		}
		mustDocker(t, "rm", "-f", c)
		wantMounts(t, w.name, 0)
		wantNoHostMount(t, w.name)
	})

	t.Run("restart=always with a crashing process", func(t *testing.T) {
		w := fileWorkflowVolume(t, sc, "crash")
		c := sc.container("crash")
		mustDocker(t, sc.runArgs(c, true, []string{"--restart=always", "-v", w.name + ":/s"},
			"sh", "-c", "cat /s/pw > /dev/null && echo read-ok && exit 3")...)
		eventually(t, 60*time.Second, "the crashing container restarted twice, reading its secret each time", func() string {
			n := strings.Count(mustDocker(t, "logs", c), "read-ok")
			if n < 3 {
				return "read-ok logged " + strings.Repeat("I", n)
			}
			return ""
		})
		mustDocker(t, "rm", "-f", c)
		wantMounts(t, w.name, 0)
		wantNoHostMount(t, w.name)
	})

	t.Run("a command that cannot start", func(t *testing.T) {
		w := fileWorkflowVolume(t, sc, "nostart")
		r := sc.run([]string{"-v", w.name + ":/s"}, "/no/such/command")
		if r.err == nil {
			t.Fatalf("docker run of a missing command succeeded: %v", r)
		}
		wantMounts(t, w.name, 0)
		wantNoHostMount(t, w.name)
	})

	t.Run("create, then start later", func(t *testing.T) {
		w := fileWorkflowVolume(t, sc, "created")
		c := sc.container("created")
		mustDocker(t, "create", "--name", c, "--label", containerLabel, "--network", "none", "-v", w.name+":/s", env.image, "sleep", "300")
		if ms := volumeHostMounts(t, w.name); len(ms) > 0 {
			t.Errorf("docker create mounted the volume: %v", ms)
		}
		mustDocker(t, "start", c)
		w.wantReads(t, c, "after docker start")
		mustDocker(t, "stop", "-t", "1", c)
		wantMounts(t, w.name, 0)
		mustDocker(t, "start", c)
		w.wantReads(t, c, "after a second docker start")
		mustDocker(t, "rm", "-f", c)
		wantNoHostMount(t, w.name)
	})

	t.Run("read-only root and a non-root user", func(t *testing.T) {
		w := fileWorkflowVolume(t, sc, "ro-user", "uid=1000", "gid=1000", "mode=0400")
		out := sc.mustRun([]string{"--read-only", "--user", "1000:1000", "-v", w.name + ":/s"}, "cat", "/s/pw")
		if strings.TrimSpace(out) != w.value {
			t.Fatalf("a --read-only --user 1000 container read %q", out)
		}
		r := sc.run([]string{"--user", "1001:1001", "-v", w.name + ":/s"}, "cat", "/s/pw")
		if r.err == nil {
			t.Fatalf("user 1001 read a 0400 secret of uid 1000: %v", r)
		}
		wantNoHostMount(t, w.name)
	})
}

// TestImagesHoldNoSecret: docker commit, save and export of a container
// that holds a dsv volume carry no byte of the secret: a volume is not
// part of a container's filesystem.
func TestImagesHoldNoSecret(t *testing.T) {
	sc := newScope(t)
	w := fileWorkflowVolume(t, sc, "commit")
	c := sc.start("commit", "-v", w.name+":/s")
	w.wantReads(t, c, "before commit")
	image := "dsv-e2e/commit:" + env.runID
	mustDocker(t, "commit", c, image)
	t.Cleanup(func() { docker(t, "rmi", "-f", image) })

	for _, args := range [][]string{{"save", image}, {"export", c}} {
		ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
		var out bytes.Buffer
		cmd := exec.CommandContext(ctx, "docker", args...)
		cmd.Stdout = &out
		err := cmd.Run()
		cancel()
		if err != nil {
			t.Fatalf("docker %s: %v", strings.Join(args, " "), err)
		}
		if out.Len() < 1024 {
			t.Fatalf("docker %s wrote only %d bytes", strings.Join(args, " "), out.Len())
		}
		if bytes.Contains(out.Bytes(), []byte(w.value)) {
			t.Errorf("docker %s holds the secret", strings.Join(args, " "))
		}
	}
	// The committed image's filesystem has the mount point, not the file.
	out := sc.mustRunImage(image, "sh", "-c", "ls -A /s 2>/dev/null | wc -l")
	if strings.TrimSpace(out) != "0" {
		t.Errorf("the committed image holds %s entries under the volume's mount point", strings.TrimSpace(out))
	}
	w.wantReads(t, c, "after commit, save and export")
}

// mustRunImage runs image (not the suite's) to completion with cmd.
func (sc *scope) mustRunImage(image string, cmd ...string) string {
	sc.t.Helper()
	name := sc.container("image")
	args := append([]string{"run", "--rm", "--name", name, "--label", containerLabel, "--network", "none", image}, cmd...)
	return mustDocker(sc.t, args...)
}

// TestVolumePruneKeepsVolumes: `docker volume prune` never removes a dsv
// volume, on any engine, with or without --all: the engine prunes volumes
// of the local driver only, and only those without mount options
// (VolumesService.Prune's ByDriver(volume.DefaultDriverName) filter, in
// 20.10 as in 29). What differs by the API version the CLI and engine
// speak is which local volumes go (moby/moby#44216): up to API 1.41
// (Engine 20.10) every unused one, named or anonymous; from API 1.42
// (Engine 23) anonymous ones only, unless --all (the filter all=true). A
// named local volume beside the dsv one, under the same label, checks that
// each prune ran and took what that engine takes. The dsv volume mounts
// and reads after the prunes.
func TestVolumePruneKeepsVolumes(t *testing.T) {
	sc := newScope(t)
	label := "dsv-e2e-prune=" + env.runID
	file := env.name("prune")
	if err := env.writeFile(file, []byte("x")); err != nil {
		t.Fatal(err)
	}
	vol := sc.volume("prune")
	mustDocker(t, "volume", "create", "-d", env.plugin, "--label", label, "-o", "secret="+file, vol)
	sc.mustRun([]string{"-v", vol + ":/s"}, "true")
	local := sc.volume("prune-local")
	mustDocker(t, "volume", "create", "-d", "local", "--label", label, local)

	api := pruneAPIVersion(t)
	engine := fmt.Sprintf("API 1.%d (Engine %s)", api, serverVersion(t))
	prune := func(args ...string) string {
		t.Helper()
		r := docker(t, append(append([]string{"volume", "prune", "-f"}, args...), "--filter", "label="+label)...)
		if r.err != nil {
			t.Fatalf("docker volume prune %s: %v", strings.Join(args, " "), r)
		}
		if strings.Contains(r.stdout, vol) || !volumeExists(t, vol) {
			t.Fatalf("%s: docker volume prune %s removed the dsv volume %s: %q", engine, strings.Join(args, " "), vol, r.stdout)
		}
		return r.stdout
	}
	wantLocal := func(how, out string, gone bool) {
		t.Helper()
		if removed := strings.Contains(out, local) && !volumeExists(t, local); removed != gone {
			t.Fatalf("%s: %s: the named local volume %s removed: %v, want %v: %q", engine, how, local, removed, gone, out)
		}
	}

	if api < 42 {
		wantLocal("docker volume prune", prune(), true)
	} else {
		wantLocal("docker volume prune", prune(), false)
		wantLocal("docker volume prune --all", prune("--all"), true)
	}
	// layout=file: the mount is the secret file.
	if out := sc.mustRun([]string{"-v", vol + ":/s"}, "cat", "/s"); out != "x" {
		t.Fatalf("the dsv volume after the prunes read %q, want x", out)
	}
}

// pruneAPIVersion is the minor version of the Engine API the CLI speaks to
// the engine (1.MINOR): the lower of the two, as the CLI negotiates it.
func pruneAPIVersion(t *testing.T) int {
	t.Helper()
	out := strings.Fields(mustDocker(t, "version", "--format", "{{.Client.APIVersion}} {{.Server.APIVersion}}"))
	if len(out) != 2 {
		t.Fatalf("docker version: API versions %q", out)
	}
	minor := func(v string) int {
		n, err := strconv.Atoi(strings.TrimPrefix(v, "1."))
		if !strings.HasPrefix(v, "1.") || err != nil {
			t.Fatalf("docker version: API version %q is not 1.N", v)
		}
		return n
	}
	return min(minor(out[0]), minor(out[1]))
}

func serverVersion(t *testing.T) string {
	return strings.TrimSpace(mustDocker(t, "version", "--format", "{{.Server.Version}}"))
}

// TestLiveRestore: with "live-restore": true, dockerd restarts under a
// running container. The container keeps reading its secret, new mounts of
// the volume work, and once the container is gone no tmpfs is left.
func TestLiveRestore(t *testing.T) {
	setLiveRestore(t, true)
	sc := newScope(t)
	w := fileWorkflowVolume(t, sc, "live")
	c := sc.start("live", "-v", w.name+":/s")
	w.wantReads(t, c, "before dockerd's restart")
	if err := env.daemon.restart(env.plugin); err != nil {
		t.Fatal(err)
	}
	if st := strings.TrimSpace(mustDocker(t, "inspect", "--format", "{{.State.Running}}", c)); st != "true" {
		t.Fatalf("with live-restore the container stopped with dockerd: running=%s", st)
	}
	w.wantReads(t, c, "after dockerd's restart")
	out := sc.mustRun([]string{"-v", w.name + ":/s"}, "cat", "/s/pw")
	if strings.TrimSpace(out) != w.value {
		t.Fatalf("a new container after dockerd's restart read %q", out)
	}
	w.wantReads(t, c, "after a second container came and went")
	mustDocker(t, "rm", "-f", c)
	wantMounts(t, w.name, 0)
	wantNoHostMount(t, w.name)
}

// setLiveRestore turns dockerd's live-restore on or off through its config
// file and SIGHUP (a reloadable option), and puts the file back after the
// test.
func setLiveRestore(t *testing.T, on bool) {
	t.Helper()
	path := daemonConfigFile()
	old, err := os.ReadFile(path)
	existed := err == nil
	cfg := map[string]any{}
	if existed && len(bytes.TrimSpace(old)) > 0 {
		if err := json.Unmarshal(old, &cfg); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
	cfg["live-restore"] = on
	b, _ := json.MarshalIndent(cfg, "", "  ")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	reload := func(want string) {
		t.Helper()
		if err := syscall.Kill(env.daemon.pid, syscall.SIGHUP); err != nil {
			t.Fatalf("reload dockerd: %v", err)
		}
		eventually(t, 20*time.Second, "dockerd's live-restore is "+want, func() string {
			if got := strings.TrimSpace(mustDocker(t, "info", "--format", "{{.LiveRestoreEnabled}}")); got != want {
				return "it is " + got
			}
			return ""
		})
	}
	// dockerd keeps its settings when a reload finds no config file: put
	// the old value back through the file, then the file as it was.
	wasOn := false
	if existed {
		var oldCfg map[string]any
		_ = json.Unmarshal(old, &oldCfg)
		wasOn, _ = oldCfg["live-restore"].(bool)
	}
	t.Cleanup(func() {
		// A reload leaves alone what the file does not name: the old
		// value goes in explicitly, then the file as it was.
		cfg["live-restore"] = wasOn
		b, _ := json.MarshalIndent(cfg, "", "  ")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Errorf("restore %s: %v", path, err)
			return
		}
		reload(boolString(wasOn))
		if existed {
			_ = os.WriteFile(path, old, 0o644)
		} else {
			_ = os.Remove(path)
		}
	})
	reload(boolString(on))
}

// daemonConfigFile is the dockerd's --config-file, else the default.
func daemonConfigFile() string {
	args := env.daemon.cmdline
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--config-file="); ok {
			return v
		}
		if a == "--config-file" && i+1 < len(args) {
			return args[i+1]
		}
	}
	return "/etc/docker/daemon.json"
}

func boolString(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

// TestVaultWorkflows: the same engine verbs on a Vault database-credential
// volume: docker cp keeps the running container's database user (its lease
// is not revoked by the end of the copy); docker restart reads a new user
// and drops the old one; a refresh that issues a new user keeps the old one
// for the volume's lease-grace (the app's open connections use it), and the
// last unmount revokes both.
func TestVaultWorkflows(t *testing.T) {
	f := newVaultFixture(t)
	sc := newScope(t)
	before := len(f.leases(t))
	login := func(user, password string) func(t *testing.T) string {
		return func(t *testing.T) string {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := f.pg.CanLogin(ctx, user, password); err != nil {
				return "the database user " + user + " no longer logs in: " + err.Error()
			}
			return ""
		}
	}

	t.Run("docker cp and docker restart", func(t *testing.T) {
		vol, c, user, password, _ := f.mountDBCreds(t, sc, "vault-cp")
		w := workflowVolume{name: vol, path: "/run/secrets/db/username", value: user, alive: login(user, password)}
		dockerCpChecks(t, w, c)
		mustDocker(t, "restart", "-t", "1", c)
		user2 := readInContainer(t, c, "/run/secrets/db/username")
		password2 := readInContainer(t, c, "/run/secrets/db/password")
		if user2 == user {
			t.Fatalf("docker restart kept database user %s: the volume was not mounted anew", user)
		}
		if msg := login(user2, password2)(t); msg != "" {
			t.Fatal(msg)
		}
		eventually(t, 10*time.Second, "the old user dropped after docker restart", func() string {
			if f.pg.RoleExists(t, user) {
				return "role " + user + " still exists"
			}
			return ""
		})
		f.removeWantRevoked(t, c, user2, before)
	})

	t.Run("a refresh keeps the replaced user for its grace", func(t *testing.T) {
		vol := sc.createVolume("vault-grace", "backend=vault", "secret=database/creds/app", "key=*", "refresh=2s", "lease-grace=1h")
		c := sc.start("vault-grace", "-v", vol+":/run/secrets/db")
		user1 := readInContainer(t, c, "/run/secrets/db/username")
		password1 := readInContainer(t, c, "/run/secrets/db/password")
		var user2 string
		eventually(t, 30*time.Second, "a new database user swapped in by the refresh", func() string {
			if user2 = readInContainer(t, c, "/run/secrets/db/username"); user2 == user1 {
				return "still " + user1
			}
			return ""
		})
		if msg := login(user1, password1)(t); msg != "" {
			t.Fatalf("the replaced user was dropped at the swap, under the app's open connections: %s", msg)
		}
		// The new files show a moment before the volume's status does.
		eventually(t, 10*time.Second, "the status counts the retiring lease", func() string {
			if st := inspectVolume(t, vol).Status; st["retiringLeases"] == nil {
				return fmt.Sprintf("status %v", st)
			}
			return ""
		})
		mustDocker(t, "rm", "-f", c)
		eventually(t, 10*time.Second, "every user of the volume dropped after the last unmount", func() string {
			for _, u := range []string{user1, user2} {
				if f.pg.RoleExists(t, u) {
					return "role " + u + " still exists"
				}
			}
			return ""
		})
	})
}
