//go:build e2e

package e2e

import (
	"strings"
	"testing"
	"time"
)

// TestCreateRejectsBadOptions: a bad option fails docker volume create,
// naming the option, and leaves no volume behind.
func TestCreateRejectsBadOptions(t *testing.T) {
	tests := []struct {
		name string
		opts []string
		want []string // substrings of docker's stderr
	}{
		{name: "unknown option", opts: []string{"colour=blue"}, want: []string{`unknown option "colour"`}},
		{name: "writable mode", opts: []string{"mode=0644"}, want: []string{`"mode"`, "0644"}},
		{name: "non-numeric uid", opts: []string{"uid=abc"}, want: []string{`"uid"`, "abc"}},
		{name: "unknown layout", opts: []string{"layout=tree"}, want: []string{`"layout"`, "tree"}},
		{name: "unknown backend", opts: []string{"backend=nope"}, want: []string{`"backend"`, "nope"}},
		{name: "file secret leaving the folder", opts: []string{"secret=../etc/passwd"}, want: []string{`"secret"`, "../etc/passwd"}},
		{name: "aws region", opts: []string{"backend=aws", "secret=prod/db", "region=useast1"}, want: []string{`"region"`, "useast1"}},
		{name: "every problem at once", opts: []string{"uid=abc", "mode=0777", "colour=blue"}, want: []string{`"uid"`, `"mode"`, `"colour"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sc := newScope(t)
			vol := sc.volume("bad")
			args := []string{"volume", "create", "-d", env.plugin}
			for _, o := range tt.opts {
				args = append(args, "-o", o)
			}
			r := dockerFails(t, append(args, vol)...)
			t.Logf("docker volume create: %s", r.stderr)
			wantContains(t, "docker volume create's error", r.stderr, append(tt.want, `volume "`+vol+`"`)...)
			if volumeExists(t, vol) {
				t.Errorf("volume %s exists after a failed create", vol)
			}
		})
	}

	t.Run("implicit create by docker run", func(t *testing.T) {
		sc := newScope(t)
		vol := sc.volume("bad-run")
		r := sc.runFail([]string{"--mount", "type=volume,volume-driver=" + env.plugin + ",src=" + vol + ",dst=/run/secrets/x,volume-opt=mode=0666"}, "true")
		wantContains(t, "docker run's error", r.stderr, `"mode"`, "0666")
		if volumeExists(t, vol) {
			t.Errorf("volume %s exists after a failed docker run", vol)
		}
	})
}

// TestMountErrors: a secret that cannot be fetched fails docker run with an
// error naming the volume and the secret, and leaves no tmpfs behind.
func TestMountErrors(t *testing.T) {
	t.Run("missing file secret", func(t *testing.T) {
		sc := newScope(t)
		file := env.name("absent")
		vol := sc.createVolume("absent", "secret="+file)
		r := sc.runFail([]string{"-v", vol + ":/run/secrets/x"}, "true")
		t.Logf("docker run: %s", r.stderr)
		wantContains(t, "docker run's error", r.stderr, `volume "`+vol+`"`, `file secret "`+file+`"`, "not found")
		wantNoHostMount(t, vol)
		wantLastError(t, vol, "not found")
	})

	t.Run("missing aws secret", func(t *testing.T) {
		sc := newScope(t)
		secret := env.name("absent/aws")
		vol := sc.createVolume("absent-aws", "backend=aws", "secret="+secret)
		r := sc.runFail([]string{"-v", vol + ":/run/secrets/x"}, "true")
		t.Logf("docker run: %s", r.stderr)
		wantContains(t, "docker run's error", r.stderr, `volume "`+vol+`"`, `aws secret "`+secret+`"`, "not found")
		wantNoHostMount(t, vol)
	})

	t.Run("missing key", func(t *testing.T) {
		sc := newScope(t)
		vol := sc.createVolume("nokey", "secret=app/db.json", "key=nope")
		r := sc.runFail([]string{"-v", vol + ":/run/secrets/x"}, "true")
		t.Logf("docker run: %s", r.stderr)
		wantContains(t, "docker run's error", r.stderr, `volume "`+vol+`"`, `file secret "app/db.json" key "nope"`, `"password"`)
		if strings.Contains(r.stderr, env.dbPassword) || strings.Contains(r.stderr, env.dbUser) {
			t.Errorf("the error shows the secret's values: %s", r.stderr)
		}
		wantNoHostMount(t, vol)
	})

	t.Run("unreachable aws backend", func(t *testing.T) {
		sc := newScope(t)
		secret := env.name("unreachable")
		createSecret(t, secret, "never-read")
		vol := sc.createVolume("unreachable", "backend=aws", "secret="+secret)
		restart := stopMoto(t)
		r := sc.runFail([]string{"-v", vol + ":/run/secrets/x"}, "true")
		restart()
		t.Logf("docker run failed after %s: %s", r.elapsed.Round(time.Millisecond), r.stderr)
		wantContains(t, "docker run's error", r.stderr, `volume "`+vol+`"`, `aws secret "`+secret+`"`)
		if !strings.Contains(r.stderr, "backend unreachable") && !strings.Contains(r.stderr, "timed out") {
			t.Errorf("docker run's error says neither %q nor %q:\n%s", "backend unreachable", "timed out", r.stderr)
		}
		if r.elapsed >= dockerTimeout {
			t.Errorf("docker run took %s to fail; it must fail well before Docker's own %s timeout (the plugin's TIMEOUT is %s)", r.elapsed, dockerTimeout, backendTimeout)
		}
		wantNoHostMount(t, vol)

		// With moto back (empty), the same volume mounts once the secret is there.
		want := "reachable-" + randomHex(4)
		createSecret(t, secret, want)
		if got := sc.mustRun([]string{"-v", vol + ":/run/secrets/x"}, "cat", "/run/secrets/x"); got != want {
			t.Errorf("after moto came back: cat = %q, want %q", got, want)
		}
	})
}

// wantLastError checks that docker volume inspect reports the last failure.
func wantLastError(t *testing.T, vol, want string) {
	t.Helper()
	v := inspectVolume(t, vol)
	if s, _ := v.Status["lastError"].(string); !strings.Contains(s, want) {
		t.Errorf("Status.lastError = %q, want it to mention %q (Status %v)", s, want, v.Status)
	}
}
