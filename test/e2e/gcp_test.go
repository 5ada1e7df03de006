//go:build e2e

package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dsv-plugin/dsv/test/servers/gcptest"
)

// gcpSA is the service account whose key the plugin is given.
const gcpSA = "dsv-plugin@" + gcptest.Project + ".iam.gserviceaccount.com"

// useGCP starts test/fakes/gcpfake for the test and points the plugin at it: a
// service-account key in the credentials mount (at the default
// GOOGLE_APPLICATION_CREDENTIALS path), GCP_ENDPOINT and GCP_PROJECT. The
// plugin runs on the host network, so it reaches the fake on 127.0.0.1, and
// its token comes from the fake's token endpoint, which checks the JWT the
// plugin signs with the key.
func useGCP(t *testing.T) *gcptest.Server {
	t.Helper()
	srv := gcptest.Start(t)
	key, _ := srv.ServiceAccountKey(gcpSA)
	// As on Google Cloud: the plugin's identity reads the project's
	// secrets by its role on the project.
	srv.GrantProjectAccessor(gcptest.Project, "serviceAccount:"+gcpSA)
	dir := usePluginFolder(t, "credentials", map[string]string{"GCP_ENDPOINT": srv.URL, "GCP_PROJECT": gcptest.Project})
	writeCredentials(t, dir, map[string]string{"gcp/credentials.json": string(key)})
	t.Cleanup(func() {
		// The private key is only in the mounted file.
		wantNotInPluginInspect(t, map[string]string{"service-account key": privateKeyLine(t, key)})
	})
	return srv
}

// privateKeyLine is one line of the PEM body inside a service-account JSON.
func privateKeyLine(t *testing.T, key []byte) string {
	t.Helper()
	for _, l := range strings.Split(strings.ReplaceAll(string(key), `\n`, "\n"), "\n") {
		if len(l) == 64 && !strings.Contains(l, " ") {
			return l
		}
	}
	t.Fatal("no PEM line in the service-account key")
	return ""
}

// TestGCP reads Google Cloud Secret Manager secrets through the plugin:
// a file, a JSON key, a corrupted value refused, a bad option refused at
// create, and rotation with refresh.
func TestGCP(t *testing.T) {
	srv := useGCP(t)

	t.Run("file volume", func(t *testing.T) {
		sc := newScope(t)
		secret := srv.CreateSecret(gcptest.Project, env.name("gcp-api-token"))
		value := "gcp-token-" + randomHex(8)
		srv.AddVersion(secret, []byte(value))
		vol := sc.createVolume("gcp-file", "backend=gcp", "secret="+secret)
		if got := sc.mustRun([]string{"-v", vol + ":/run/secrets/token"}, "cat", "/run/secrets/token"); got != value {
			t.Fatalf("container read %q, want %q", got, value)
		}
		st := inspectVolume(t, vol).Status
		t.Logf("Status: %v", st)
		if st["version"] != "1" {
			t.Errorf("Status.version = %v, want 1", st["version"])
		}
	})

	t.Run("json key, short name, version-id alias", func(t *testing.T) {
		sc := newScope(t)
		id := env.name("gcp-db")
		secret := srv.CreateSecret(gcptest.Project, id)
		pw1, pw2 := "pw1-"+randomHex(6), "pw2-"+randomHex(6)
		srv.AddVersion(secret, []byte(fmt.Sprintf(`{"username":"app","password":%q}`, pw1)))
		srv.AddVersion(secret, []byte(fmt.Sprintf(`{"username":"app","password":%q}`, pw2)))
		srv.SetAliases(secret, map[string]int{"stable": 1})
		latest := sc.createVolume("gcp-key", "backend=gcp", "secret="+id, "key=password")
		stable := sc.createVolume("gcp-alias", "backend=gcp", "secret="+id, "key=password", "version-id=stable")
		got := sc.mustRun([]string{"-v", latest + ":/run/secrets/latest", "-v", stable + ":/run/secrets/stable"},
			"sh", "-c", "cat /run/secrets/latest; echo; cat /run/secrets/stable")
		if want := pw2 + "\n" + pw1; got != want {
			t.Fatalf("container read %q, want %q", got, want)
		}
	})

	t.Run("corrupted value refused", func(t *testing.T) {
		sc := newScope(t)
		secret := srv.CreateSecret(gcptest.Project, env.name("gcp-corrupt"))
		value := "gcp-corrupted-" + randomHex(8)
		srv.AddVersion(secret, []byte(value))
		srv.Corrupt(secret + "/versions/1")
		vol := sc.createVolume("gcp-corrupt", "backend=gcp", "secret="+secret)
		r := sc.runFail([]string{"-v", vol + ":/run/secrets/s"}, "cat", "/run/secrets/s")
		wantContains(t, "docker run's error for a corrupted value", r.stderr, vol, secret, "unusable value", "does not match its CRC32C checksum", "nothing was written")
		if strings.Contains(r.stderr, value) {
			t.Errorf("docker run's error shows the value")
		}
	})

	t.Run("bad options refused at create", func(t *testing.T) {
		r := docker(t, "volume", "create", "-d", env.plugin, "-o", "backend=gcp", "-o", "secret=projects/Bad_Project/secrets/db",
			"-o", "version-id=new", "-o", "version-stage=AWSCURRENT", env.name("gcp-bad"))
		if r.err == nil {
			docker(t, "volume", "rm", "-f", strings.TrimSpace(r.stdout))
			t.Fatal("docker volume create accepted bad gcp options")
		}
		wantContains(t, "docker volume create's error", r.stderr, `option "secret"`, `"Bad_Project" is not a project ID`, `option "version-id"`, `option "version-stage"`)
	})

	t.Run("rotation with refresh", func(t *testing.T) {
		sc := newScope(t)
		secret := srv.CreateSecret(gcptest.Project, env.name("gcp-rot"))
		first := "first-" + randomHex(6)
		srv.AddVersion(secret, []byte(first))
		vol := sc.createVolume("gcp-rot", "backend=gcp", "secret="+secret, "layout=dir", "filename=x", "refresh="+rotationRefresh.String())
		c := sc.start("gcp-rot", "-v", vol+":/run/secrets")
		if got := mustDocker(t, "exec", c, "cat", "/run/secrets/x"); got != first {
			t.Fatalf("before the rotation the container reads %q, want %q", got, first)
		}
		bound := rotationRefresh + swapAllowance + execAllowance
		for i := 2; i <= 3; i++ {
			want := fmt.Sprintf("rotated-%d-%s", i, randomHex(6))
			start := time.Now()
			srv.AddVersion(secret, []byte(want))
			lat, polls, _ := waitForValue(t, c, "/run/secrets/x", want, start, 10*time.Second)
			t.Logf("version %d reached the container after %s (%d polls)", i, lat.Round(time.Millisecond), polls)
			if lat > bound {
				t.Errorf("version %d took %s, want at most %s", i, lat.Round(time.Millisecond), bound)
			}
			if v := inspectVolume(t, vol).Status["version"]; v != fmt.Sprint(i) {
				t.Errorf("Status.version = %v, want %d", v, i)
			}
		}
	})
}

// TestSwarmGCP: a Swarm secret read from Secret Manager by a service.
func TestSwarmGCP(t *testing.T) {
	srv := useGCP(t)
	sw := joinSwarm(t)
	id := env.name("gcp-swarm")
	secret := srv.CreateSecret(gcptest.Project, id)
	pw := "swarm-gcp-" + randomHex(6)
	srv.AddVersion(secret, []byte(`{"password":"`+pw+`"}`))
	sec := sw.secret("gcp", "dsv.backend=gcp", "dsv.secret="+id, "dsv.key=password")
	svc := sw.service("gcp", []string{"--secret", sec}, printThenSleep("cat /run/secrets/"+sec+"; echo")...)
	wantRunning(t, svc, 1)
	wantLogLines(t, svc, pw, 1)
}
