//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dsv-plugin/dsv/test/servers/vaulttest"
)

// pkiPolicy lets the plugin issue certificates of role web, whose leases
// it revokes at the last unmount.
const pkiPolicy = `
path "pki/issue/web"                   { capabilities = ["update"] }
path "sys/leases/revoke/pki/issue/web/*" { capabilities = ["update"] }
path "sys/leases/renew"                { capabilities = ["update"] }
`

// pkiFixture is a real Vault with a PKI role that issues leased
// certificates (generate_lease=true): a dynamic secret with a lease and no
// database behind it. The plugin reads with a token of pkiPolicy.
type pkiFixture struct {
	vault *vaulttest.Server
}

func newPKIFixture(t *testing.T) *pkiFixture {
	t.Helper()
	t.Setenv(vaulttest.EnvRequire, "1")
	v := vaulttest.Start(t)
	v.Enable(t, "pki", "pki", nil)
	v.Write(t, "sys/mounts/pki/tune", map[string]any{"max_lease_ttl": "24h"})
	v.Write(t, "pki/root/generate/internal", map[string]any{"common_name": "dsv e2e root", "ttl": "24h"})
	v.Write(t, "pki/roles/web", map[string]any{
		"allowed_domains": "example.com", "allow_subdomains": true,
		"generate_lease": true, "ttl": "1h", "max_ttl": "2h",
	})
	v.PutPolicy(t, "pki", pkiPolicy)
	creds := usePluginFolder(t, "credentials", map[string]string{"VAULT_ADDR": v.Addr})
	token := v.Token(t, vaulttest.TokenOptions{Policies: []string{"pki"}, TTL: time.Hour})
	p := filepath.Join(creds, "vault", "token")
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return &pkiFixture{vault: v}
}

// leases lists the certificate leases Vault holds, sorted.
func (f *pkiFixture) leases(t testing.TB) []string {
	t.Helper()
	return vaultLeases(t, f.vault, "pki/issue/web")
}

// wantLeases waits until Vault holds n certificate leases.
func (f *pkiFixture) wantLeases(t *testing.T, n int, when string) {
	t.Helper()
	eventually(t, 15*time.Second, fmt.Sprintf("%d certificate lease(s) %s", n, when), func() string {
		if got := f.leases(t); len(got) != n {
			return fmt.Sprintf("vault holds %d: %v", len(got), got)
		}
		return ""
	})
}

// certVolume creates a volume that issues a leased certificate per mount:
// the certificate alone with layout=file, every field with layout=dir.
func (f *pkiFixture) certVolume(sc *scope, label, layout string) string {
	key := "*"
	if layout == "file" {
		key = "certificate"
	}
	return sc.createVolume(label, "backend=vault", "secret=pki/issue/web", "method=write",
		"param.common_name="+label+".example.com", "layout="+layout, "key="+key)
}

// TestLeaseLifecycleAcrossUpgrade: a container that ran across a plugin
// disable and enable (every upgrade does both) keeps its certificate's
// lease, and nothing piles up beside it. With layout=dir the new process
// takes the container's tmpfs back, and job containers and a docker cp
// share it; with layout=file (Docker binds one file, which cannot be taken
// back) the container's tmpfs stays detached, and each job gets a tmpfs
// and a lease of its own, revoked when it leaves. Once the container
// stops, nothing is held. Before the lifecycle kept one instance per tmpfs,
// Vault held one more lease after every job (1 to 4 over three jobs).
func TestLeaseLifecycleAcrossUpgrade(t *testing.T) {
	f := newPKIFixture(t)
	for _, layout := range []string{"dir", "file"} {
		t.Run("layout="+layout, func(t *testing.T) {
			sc := newScope(t)
			vol := f.certVolume(sc, "lc-"+layout, layout)
			target, cert := "/run/secrets/tls", "/run/secrets/tls/certificate"
			if layout == "file" {
				target, cert = "/run/secrets/cert.pem", "/run/secrets/cert.pem"
			}
			a := sc.start("lc-a", "-v", vol+":"+target)
			certA := readInContainer(t, a, cert)
			f.wantLeases(t, 1, "with one container")

			mustDocker(t, "plugin", "disable", "-f", env.plugin)
			sc.onCleanup(ensurePluginEnabled)
			mustDocker(t, "plugin", "enable", env.plugin)
			st := inspectVolume(t, vol).Status
			if layout == "dir" && (st["mountsBeforeRestart"] != nil || fmt.Sprint(st["mounts"]) != "1") {
				t.Errorf("after the plugin restart, Status = %v, want the container's tmpfs taken back (mounts 1)", st)
			}
			if layout == "file" && fmt.Sprint(st["mountsBeforeRestart"]) != "1" {
				t.Errorf("after the plugin restart, Status = %v, want mountsBeforeRestart 1", st)
			}
			f.wantLeases(t, 1, "after the plugin restart: the container's certificate, not re-issued")

			for i := range 3 {
				out := sc.mustRun([]string{"-v", vol + ":" + target}, "cat", cert)
				if !strings.Contains(out, "BEGIN CERTIFICATE") {
					t.Fatalf("job %d read %q, want a certificate", i, out)
				}
				f.wantLeases(t, 1, fmt.Sprintf("after job %d: the job's revoked or shared, the container's kept", i+1))
			}
			if layout == "dir" {
				mustDocker(t, "cp", "-L", a+":"+cert, t.TempDir())
				f.wantLeases(t, 1, "after a docker cp from the container")
			}
			if got := readInContainer(t, a, cert); got != certA {
				t.Fatal("the container's certificate changed under it")
			}
			mustDocker(t, "rm", "-f", a)
			f.wantLeases(t, 0, "once the container from before the restart stopped")
			wantNoHostMount(t, vol)
		})
	}
}

// TestRemoveAfterLostUnmount: a container removed while the plugin was
// disabled never reaches the plugin's Unmount; once enabled, docker volume
// rm (which Docker sends only when no container references the volume)
// removes the volume and revokes its lease. It was refused before, for
// good: "mounted by 1 container(s)", with no container left to stop.
func TestRemoveAfterLostUnmount(t *testing.T) {
	f := newPKIFixture(t)
	sc := newScope(t)
	vol := f.certVolume(sc, "lost-cert", "dir")
	a := sc.start("lost-a", "-v", vol+":/run/secrets/tls")
	readInContainer(t, a, "/run/secrets/tls/certificate")
	f.wantLeases(t, 1, "with one container")

	mustDocker(t, "plugin", "disable", "-f", env.plugin)
	sc.onCleanup(ensurePluginEnabled)
	r := docker(t, "rm", "-f", a)
	t.Logf("protocol: docker rm -f with the plugin disabled: %v", r)
	mustDocker(t, "plugin", "enable", env.plugin)
	if r := docker(t, "volume", "rm", vol); r.err != nil {
		t.Fatalf("docker volume rm after the container went while the plugin was down: %v", r)
	}
	f.wantLeases(t, 0, "after docker volume rm")
	wantNoHostMount(t, vol)
}

// TestRotationReachesContainersAcrossUpgrade: a plugin disable -f and
// enable (every upgrade does both) takes the plugin's own mounts of every
// tmpfs away while running containers keep theirs. The new process takes
// the tmpfs back from a container that holds it (one running as another
// user, which asks CAP_SYS_PTRACE), so a rotation after the restart still
// reaches it; the container still cannot write the volume, and a new
// container shares the same tmpfs. Before, the container kept reading the
// old value for good (measured: 16 s after the rotation, still old).
func TestRotationReachesContainersAcrossUpgrade(t *testing.T) {
	sc := newScope(t)
	file := env.name("upgrade-rot")
	before, after := "before-"+randomHex(8), "after-"+randomHex(8)
	if err := env.writeFile(file, []byte(before)); err != nil {
		t.Fatal(err)
	}
	vol := sc.createVolume("upgrade-rot", "secret="+file, "layout=dir", "filename=s", "refresh=1s")
	a := sc.start("upgrade-a", "--user", "1000", "-v", vol+":/run/secrets")
	if got := readInContainer(t, a, "/run/secrets/s"); got != before {
		t.Fatalf("before the upgrade the container reads %q", got)
	}

	mustDocker(t, "plugin", "disable", "-f", env.plugin)
	sc.onCleanup(ensurePluginEnabled)
	mustDocker(t, "plugin", "enable", env.plugin)
	st := inspectVolume(t, vol).Status
	if st["mountsBeforeRestart"] != nil || fmt.Sprint(st["mounts"]) != "1" {
		t.Errorf("after the plugin restart, Status = %v: the container's tmpfs was not taken back", st)
	}

	if err := env.writeFile(file, []byte(after)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the rotation read in the container that ran across the upgrade", func() string {
		if got := readInContainer(t, a, "/run/secrets/s"); got != after {
			return "it reads " + got
		}
		return ""
	})
	if r := docker(t, "exec", "--user", "0", a, "sh", "-c", "echo x > /run/secrets/planted"); r.err == nil {
		t.Fatal("root in the container wrote into the volume after the upgrade")
	}
	b := sc.start("upgrade-b", "-v", vol+":/run/secrets")
	if got := readInContainer(t, b, "/run/secrets/s"); got != after {
		t.Fatalf("a new container reads %q", got)
	}
	wantMounts(t, vol, 2)
	mustDocker(t, "rm", "-f", a, b)
	wantNoHostMount(t, vol)
}
