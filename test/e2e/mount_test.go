//go:build e2e

package e2e

import (
	"bytes"
	"strings"
	"testing"
)

// TestQuickStart is the README's quick start: docker run creates the volume
// implicitly and the volume's name is the secret's name in the file store.
func TestQuickStart(t *testing.T) {
	sc := newScope(t)
	vol := sc.volume("hello")
	want := "hello from dsv " + randomHex(4)
	if err := env.writeFile(vol, []byte(want)); err != nil {
		t.Fatal(err)
	}
	got := sc.mustRun([]string{"--volume-driver", env.plugin, "-v", vol + ":/run/secrets/hello"}, "cat", "/run/secrets/hello")
	if got != want {
		t.Errorf("cat /run/secrets/hello = %q, want %q", got, want)
	}
	if v := inspectVolume(t, vol); v.Driver != env.driver || v.Status["backend"] != "file" || v.Status["secret"] != vol {
		t.Errorf("implicitly created volume: driver %q status %v, want driver %s, backend file, secret %s", v.Driver, v.Status, env.driver, vol)
	}
}

// TestMountFlag uses --mount with volume-opt: a key of a JSON file.
func TestMountFlag(t *testing.T) {
	sc := newScope(t)
	vol := sc.volume("db")
	mount := "type=volume,volume-driver=" + env.plugin + ",src=" + vol + ",dst=/run/secrets/db," +
		"volume-opt=secret=app/db.json,volume-opt=key=password"
	got := sc.mustRun([]string{"--mount", mount}, "cat", "/run/secrets/db")
	if got != env.dbPassword {
		t.Errorf("cat /run/secrets/db = %q, want the password %q", got, env.dbPassword)
	}
}

// TestAWSBackend reads Secrets Manager (moto) through volumes made with
// docker volume create.
func TestAWSBackend(t *testing.T) {
	t.Run("json key", func(t *testing.T) {
		sc := newScope(t)
		secret := env.name("prod/db")
		pw := "s3cr3t-" + randomHex(6)
		createSecret(t, secret, `{"username":"admin","password":"`+pw+`"}`)
		vol := sc.createVolume("awsdb", "backend=aws", "secret="+secret, "key=password")
		if got := sc.mustRun([]string{"-v", vol + ":/run/secrets/db"}, "cat", "/run/secrets/db"); got != pw {
			t.Errorf("cat = %q, want %q", got, pw)
		}
		v := inspectVolume(t, vol)
		if v.Status["backend"] != "aws" || v.Status["secret"] != secret || v.Status["key"] != "password" {
			t.Errorf("Status = %v, want backend aws, secret %s, key password", v.Status, secret)
		}
	})

	t.Run("binary secret is byte-identical", func(t *testing.T) {
		sc := newScope(t)
		secret := env.name("blob")
		value := []byte{0x00, 0x01, 0xff, 0xfe, '\n', '\r', 0x80, 'd', 's', 'v', 0x00, 0x7f, '\n'}
		value = append(value, []byte(randomHex(8))...)
		createBinarySecret(t, secret, value)
		vol := sc.createVolume("blob", "backend=aws", "secret="+secret)
		got := sc.mustRun([]string{"-v", vol + ":/run/secrets/blob"}, "cat", "/run/secrets/blob")
		if !bytes.Equal([]byte(got), value) {
			t.Errorf("cat = % x, want % x", got, value)
		}
	})

	t.Run("version stage AWSPREVIOUS", func(t *testing.T) {
		sc := newScope(t)
		secret := env.name("rotated")
		// Nothing reads the secret before the rotation: the plugin reuses a
		// value read within CACHE_TTL.
		old, updated := "old-"+randomHex(4), "new-"+randomHex(4)
		createSecret(t, secret, old)
		putSecretValue(t, secret, updated)
		prev := sc.createVolume("prev", "backend=aws", "secret="+secret, "version-stage=AWSPREVIOUS")
		if got := sc.mustRun([]string{"-v", prev + ":/run/secrets/s"}, "cat", "/run/secrets/s"); got != old {
			t.Errorf("version-stage=AWSPREVIOUS reads %q, want the value before PutSecretValue %q", got, old)
		}
		cur := sc.createVolume("cur", "backend=aws", "secret="+secret)
		if got := sc.mustRun([]string{"-v", cur + ":/run/secrets/s"}, "cat", "/run/secrets/s"); got != updated {
			t.Errorf("the current version reads %q, want the value put last %q", got, updated)
		}
	})

	t.Run("ARN as secret", func(t *testing.T) {
		sc := newScope(t)
		secret := env.name("by-arn")
		want := "arn-value-" + randomHex(4)
		v := createSecret(t, secret, want)
		if !strings.HasPrefix(v.ARN, "arn:aws:secretsmanager:") {
			t.Fatalf("moto returned ARN %q", v.ARN)
		}
		vol := sc.createVolume("arn", "backend=aws", "secret="+v.ARN)
		if got := sc.mustRun([]string{"-v", vol + ":/run/secrets/s"}, "cat", "/run/secrets/s"); got != want {
			t.Errorf("secret=%s reads %q, want %q", v.ARN, got, want)
		}
	})
}

// TestLayoutDir mounts a directory that holds the secret as the named file.
// Besides it there are only the writer's own "..data" and "..<timestamp>"
// entries (published by renaming a symlink, so a refresh is atomic), which
// ls does not show.
func TestLayoutDir(t *testing.T) {
	sc := newScope(t)
	file := env.name("pw")
	want := "dir-layout-" + randomHex(4)
	if err := env.writeFile(file, []byte(want)); err != nil {
		t.Fatal(err)
	}
	vol := sc.createVolume("dir", "secret="+file, "layout=dir", "filename=pw")
	out := sc.mustRun([]string{"-v", vol + ":/run/secrets/app"}, "sh", "-c", "ls /run/secrets/app; echo --; ls -A /run/secrets/app; echo --; cat /run/secrets/app/pw")
	parts := strings.SplitN(out, "--\n", 3)
	if len(parts) != 3 {
		t.Fatalf("unexpected output %q", out)
	}
	if parts[0] != "pw\n" {
		t.Errorf("ls of the target = %q, want only pw", parts[0])
	}
	for _, e := range strings.Fields(parts[1]) {
		if e != "pw" && !strings.HasPrefix(e, "..") {
			t.Errorf("ls -A of the target shows %q: only pw and the writer's ..-prefixed entries may be there (all: %q)", e, parts[1])
		}
	}
	if parts[2] != want {
		t.Errorf("cat /run/secrets/app/pw = %q, want %q", parts[2], want)
	}
}

// TestOwnershipAndMode checks uid, gid and mode as a container sees them,
// and that the file cannot be written, not even by root.
func TestOwnershipAndMode(t *testing.T) {
	sc := newScope(t)
	file := env.name("owned")
	want := "owned-" + randomHex(4)
	if err := env.writeFile(file, []byte(want)); err != nil {
		t.Fatal(err)
	}
	vol := sc.createVolume("owned", "secret="+file, "uid=1000", "gid=1000", "mode=0400")
	mnt := []string{"-v", vol + ":/run/secrets/app"}

	if got := sc.mustRun(mnt, "stat", "-c", "%u %g %a", "/run/secrets/app"); strings.TrimSpace(got) != "1000 1000 400" {
		t.Errorf("stat -c '%%u %%g %%a' = %q, want 1000 1000 400", got)
	}
	if got := sc.mustRun(append([]string{"-u", "1000"}, mnt...), "cat", "/run/secrets/app"); got != want {
		t.Errorf("cat as uid 1000 = %q, want %q", got, want)
	}
	r := sc.runFail(append([]string{"-u", "1001"}, mnt...), "cat", "/run/secrets/app")
	wantContains(t, "cat as uid 1001", r.stderr, "Permission denied")
	r = sc.runFail(mnt, "sh", "-c", "echo overwritten > /run/secrets/app")
	wantContains(t, "a write as root", r.stderr, "Read-only file system")

	dir := sc.createVolume("owned-dir", "secret="+file, "layout=dir", "uid=1000", "mode=0400")
	r = sc.runFail([]string{"-v", dir + ":/run/secrets/app"}, "touch", "/run/secrets/app/new")
	wantContains(t, "a new file in a dir volume as root", r.stderr, "Read-only file system")
	if got := sc.mustRun([]string{"-v", dir + ":/run/secrets/app"}, "stat", "-L", "-c", "%u %g %a", "/run/secrets/app", "/run/secrets/app/"+file); got != "0 0 755\n1000 0 400\n" {
		t.Errorf("stat of the dir volume and its file = %q, want the root 0 0 755 and the file 1000 0 400", got)
	}
}

// TestMountIsTmpfs checks the container's mount table: a read-only tmpfs
// without suid, devices or exec.
func TestMountIsTmpfs(t *testing.T) {
	sc := newScope(t)
	file := env.name("tmpfs")
	if err := env.writeFile(file, []byte("x")); err != nil {
		t.Fatal(err)
	}
	for _, layout := range []string{"file", "dir"} {
		t.Run(layout, func(t *testing.T) {
			vol := sc.createVolume("tmpfs-"+layout, "secret="+file, "layout="+layout)
			out := sc.mustRun([]string{"-v", vol + ":/run/secrets/target"}, "grep", " /run/secrets/target ", "/proc/mounts")
			fields := strings.Fields(out)
			if len(fields) < 4 || fields[2] != "tmpfs" {
				t.Fatalf("/proc/mounts line of the target = %q, want file system type tmpfs", out)
			}
			t.Logf("/proc/mounts: %s", strings.TrimSpace(out))
			opts := fields[3]
			if !strings.Contains(opts, "nosuid,nodev,noexec") || !strings.HasPrefix(opts, "ro,") {
				t.Errorf("mount options %q, want ro and nosuid,nodev,noexec", opts)
			}
		})
	}
}

// TestSharedVolume shares one volume between two containers: the tmpfs stays
// while either uses it and goes with the last.
func TestSharedVolume(t *testing.T) {
	sc := newScope(t)
	file := env.name("shared")
	want := "shared-" + randomHex(4)
	if err := env.writeFile(file, []byte(want)); err != nil {
		t.Fatal(err)
	}
	vol := sc.createVolume("shared", "secret="+file)
	wantMounts(t, vol, 0)
	a := sc.start("a", "-v", vol+":/run/secrets/s")
	b := sc.start("b", "-v", vol+":/run/secrets/s")
	wantMounts(t, vol, 2)

	// The checks below look for the tmpfs on the host: make sure they can
	// see it while it is up, where Docker says it is.
	host := volumeHostMounts(t, vol)
	if len(host) == 0 {
		t.Fatalf("no mount of %s in the host's /proc/self/mountinfo under %s while 2 containers use it", vol, propagatedMount())
	}
	// Docker shows the path the plugin reports, inside the plugin.
	if mp := inspectVolume(t, vol).Mountpoint; mp == "" {
		t.Errorf("Mountpoint of a volume in use is empty")
	}

	mustDocker(t, "stop", "-t", "0", a)
	wantMounts(t, vol, 1)
	if got := mustDocker(t, "exec", b, "cat", "/run/secrets/s"); got != want {
		t.Errorf("after %s stopped, %s reads %q, want %q", a, b, got, want)
	}
	mustDocker(t, "stop", "-t", "0", b)
	wantMounts(t, vol, 0)
	wantNoHostMount(t, vol)
	if mp := inspectVolume(t, vol).Mountpoint; mp != "" {
		t.Errorf("Mountpoint of an unused volume = %q, want empty", mp)
	}
}
