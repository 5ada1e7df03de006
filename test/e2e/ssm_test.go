//go:build e2e

package e2e

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dsv-plugin/dsv/test/servers/moto"
)

// The ssm scenarios read Parameter Store from the suite's moto server,
// which the plugin reaches with the same settings as the aws backend
// (AWS_ENDPOINT_URL, AWS_REGION, the fake keys).

var (
	ssmOnce   sync.Once
	ssmClient *moto.SSM
)

// putParameter stores a version of a parameter in moto and returns it.
func putParameter(t testing.TB, name, value string, typ moto.ParameterType) int64 {
	t.Helper()
	ssmOnce.Do(func() { ssmClient = moto.SSMClient(env.moto.URL) })
	v, err := moto.PutParameter(awsCtx(t), ssmClient, name, value, typ)
	if err != nil {
		t.Fatalf("moto: put parameter %q: %v", name, err)
	}
	return v
}

// ssmPath returns a parameter path unique to this run: /NAME/.
func ssmPath(label string) string { return "/" + env.name(label) + "/" }

// TestSSMBackend reads Parameter Store through volumes: a SecureString as
// the file itself, a version by selector, a path as a directory of files.
func TestSSMBackend(t *testing.T) {
	t.Run("SecureString file volume", func(t *testing.T) {
		sc := newScope(t)
		name := ssmPath("ssm") + "db/password"
		pw := "ssm-pw-" + randomHex(6)
		putParameter(t, name, pw, moto.ParameterSecureString)
		vol := sc.createVolume("ssmpw", "backend=ssm", "secret="+name)
		if got := sc.mustRun([]string{"-v", vol + ":/run/secrets/db"}, "cat", "/run/secrets/db"); got != pw {
			t.Errorf("cat = %q, want %q", got, pw)
		}
		st := inspectVolume(t, vol).Status
		if st["backend"] != "ssm" || st["secret"] != name {
			t.Errorf("Status = %v, want backend ssm, secret %s", st, name)
		}
	})

	t.Run("version selector", func(t *testing.T) {
		sc := newScope(t)
		name := ssmPath("ssm") + "rotated"
		old, cur := "old-"+randomHex(4), "new-"+randomHex(4)
		putParameter(t, name, old, moto.ParameterSecureString)
		putParameter(t, name, cur, moto.ParameterSecureString)
		v1 := sc.createVolume("ssmv1", "backend=ssm", "secret="+name+":1")
		if got := sc.mustRun([]string{"-v", v1 + ":/run/secrets/s"}, "cat", "/run/secrets/s"); got != old {
			t.Errorf("secret=%s:1 reads %q, want %q", name, got, old)
		}
		if st := inspectVolume(t, v1).Status; st["secret"] != name || st["versionId"] != "1" {
			t.Errorf("Status = %v, want the selector as versionId 1 of %s", st, name)
		}
		latest := sc.createVolume("ssmcur", "backend=ssm", "secret="+name)
		if got := sc.mustRun([]string{"-v", latest + ":/run/secrets/s"}, "cat", "/run/secrets/s"); got != cur {
			t.Errorf("the current version reads %q, want %q", got, cur)
		}
	})

	t.Run("dir volume from a path", func(t *testing.T) {
		sc := newScope(t)
		path := ssmPath("app")
		want := map[string]string{
			"db-password":   "pw-" + randomHex(4),
			"db-user":       "user-" + randomHex(4),
			"hosts":         "a,b,c",
			"tls/ca.pem":    "ca-" + randomHex(4),
			"tls/deep/x.js": "x-" + randomHex(4),
		}
		putParameter(t, path+"db-password", want["db-password"], moto.ParameterSecureString)
		putParameter(t, path+"db-user", want["db-user"], moto.ParameterString)
		putParameter(t, path+"hosts", want["hosts"], moto.ParameterStringList)
		putParameter(t, path+"tls/ca.pem", want["tls/ca.pem"], moto.ParameterSecureString)
		putParameter(t, path+"tls/deep/x.js", want["tls/deep/x.js"], moto.ParameterSecureString)

		// One level: the parameters directly under the path.
		flat := sc.createVolume("ssmflat", "backend=ssm", "secret="+path, "layout=dir")
		out := sc.mustRun([]string{"-v", flat + ":/run/secrets/app"}, "sh", "-c", "cd /run/secrets/app && ls && cat db-password")
		if wantOut := "db-password\ndb-user\nhosts\n" + want["db-password"]; out != wantOut {
			t.Errorf("one level: got %q, want %q", out, wantOut)
		}

		// Recursive: every parameter, in folders.
		tree := sc.createVolume("ssmtree", "backend=ssm", "secret="+path, "recursive=true", "uid=1000", "mode=0400")
		script := "cd /run/secrets/app && for f in $(find -L . -type f ! -path './..*' | sort); do echo \"$f=$(cat $f)\"; done; stat -L -c '%u %a' tls/deep/x.js"
		out = sc.mustRun([]string{"-v", tree + ":/run/secrets/app"}, "sh", "-c", script)
		var lines []string
		for _, k := range []string{"db-password", "db-user", "hosts", "tls/ca.pem", "tls/deep/x.js"} {
			lines = append(lines, "./"+k+"="+want[k])
		}
		if wantOut := strings.Join(lines, "\n") + "\n1000 400\n"; out != wantOut {
			t.Errorf("recursive:\n%s\nwant\n%s", out, wantOut)
		}
		if v, _ := inspectVolume(t, tree).Status["version"].(string); !strings.Contains(v, "tls/deep/x.js@1") {
			t.Errorf("Status.version = %q, want each parameter's version", v)
		}
	})

	t.Run("a name that cannot be a file", func(t *testing.T) {
		sc := newScope(t)
		path := ssmPath("bad")
		putParameter(t, path+"ok", "fine", moto.ParameterString)
		putParameter(t, path+"a", "file", moto.ParameterString)
		putParameter(t, path+"a/b", "and folder", moto.ParameterString)
		vol := sc.createVolume("ssmbad", "backend=ssm", "secret="+path, "recursive=true")
		r := sc.runFail([]string{"-v", vol + ":/run/secrets/app"}, "ls", "/run/secrets/app")
		wantContains(t, "docker run's error", r.stderr, `"a" cannot be both a file and the folder of "a/b"`, "no file was written")
	})

	t.Run("create refuses bad options", func(t *testing.T) {
		name := env.name("ssmbadopts")
		r := dockerFails(t, "volume", "create", "-d", env.plugin, "-o", "backend=ssm", "-o", "secret=/x/y:1", "-o", "version-stage=blue",
			"-o", "recursive=true", name)
		wantContains(t, "docker volume create's error", r.stderr, `option "secret"`, "give the version once", `option "recursive": applies to a path`)
		if volumeExists(t, name) {
			t.Errorf("volume %s exists after a refused create", name)
		}
	})
}

// TestSSMRotation: a path volume with refresh sees a new version of a
// parameter put under a running container.
func TestSSMRotation(t *testing.T) {
	sc := newScope(t)
	path := ssmPath("rot")
	first := "first-" + randomHex(6)
	putParameter(t, path+"x", first, moto.ParameterSecureString)
	putParameter(t, path+"y", "steady", moto.ParameterString)
	vol := sc.createVolume("ssmrot", "backend=ssm", "secret="+path, "refresh="+rotationRefresh.String())
	c := sc.start("ssmrot", "-v", vol+":/run/secrets")
	if got := mustDocker(t, "exec", c, "cat", "/run/secrets/x"); got != first {
		t.Fatalf("before the rotation the container reads %q, want %q", got, first)
	}
	before, _ := inspectVolume(t, vol).Status["version"].(string)
	for i := 1; i <= 2; i++ {
		want := fmt.Sprintf("rotated-%d-%s", i, randomHex(6))
		start := time.Now()
		putParameter(t, path+"x", want, moto.ParameterSecureString)
		lat, polls, _ := waitForValue(t, c, "/run/secrets/x", want, start, 10*time.Second)
		t.Logf("rotation %d: the container read the new version %s after moto got it (%d polls)", i, lat.Round(time.Millisecond), polls)
		if bound := rotationRefresh + swapAllowance + execAllowance; lat > bound {
			t.Errorf("rotation %d took %s, want at most %s", i, lat.Round(time.Millisecond), bound)
		}
	}
	if got := mustDocker(t, "exec", c, "cat", "/run/secrets/y"); got != "steady" {
		t.Errorf("the unchanged parameter reads %q after the rotations", got)
	}
	st := inspectVolume(t, vol).Status
	if v, _ := st["version"].(string); v == before || !strings.Contains(v, "x@3") {
		t.Errorf("Status.version = %q after two rotations (was %q), want x@3", v, before)
	}
	if st["lastError"] != nil {
		t.Errorf("Status.lastError = %v after successful refreshes", st["lastError"])
	}
}

// TestSSMSwarmSecret: a Swarm secret read from Parameter Store by the
// manager's plugin, one parameter and one of a path.
func TestSSMSwarmSecret(t *testing.T) {
	sw := joinSwarm(t)
	path := ssmPath("swarm")
	pw := "swarm-ssm-" + randomHex(6)
	putParameter(t, path+"db/password", pw, moto.ParameterSecureString)
	putParameter(t, path+"token", "tok-"+pw, moto.ParameterSecureString)

	one := sw.secret("ssmone", "dsv.backend=ssm", "dsv.secret="+path+"db/password")
	fromPath := sw.secret("ssmpath", "dsv.backend=ssm", "dsv.secret="+path, "dsv.key=token")
	svc := sw.service("ssm", []string{"--secret", "source=" + one + ",target=pw", "--secret", "source=" + fromPath + ",target=token"},
		printThenSleep("cat /run/secrets/pw; echo; cat /run/secrets/token; echo")...)
	wantRunning(t, svc, 1)
	wantLogLines(t, svc, pw, 1)
	wantLogLines(t, svc, "tok-"+pw, 1)
}
