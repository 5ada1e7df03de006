//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/dsv-plugin/dsv/test/servers/pgtest"
	"github.com/dsv-plugin/dsv/test/servers/vaulttest"
)

// vaultRoleTTL is the database role's default TTL: short, so that a lease
// not renewed would end (and PostgreSQL lose the role) within the test.
const vaultRoleTTL = 6 * time.Second

// vaultPolicy is README's "dsv" policy (without the PKI line): the e2e
// token has it and the default policy, nothing more.
const vaultPolicy = `
path "secret/data/app/*"                      { capabilities = ["read"] }
path "database/creds/app"                     { capabilities = ["read"] }
path "sys/leases/revoke/database/creds/app/*" { capabilities = ["update"] }
`

// webPolicy is the policy of the "web" identity: its own secrets only.
const webPolicy = `path "secret/data/web/*" { capabilities = ["read"] }`

// vaultFixture is a real Vault dev server (v1.13.0) with a real PostgreSQL
// behind its database engine, and the plugin pointed at it: VAULT_ADDR, a
// token of vaultPolicy in the credentials mount's vault/token (README's
// recommended setup), and an AppRole identity "web" in
// vault/identities/web.
type vaultFixture struct {
	vault *vaulttest.Server
	pg    *pgtest.Server

	kvUser, kvPassword, kvOldPassword string // secret/app/db, versions 2 and 1
	webValue                          string // secret/web/api, field "token"

	// The plugin's credentials in the credentials mount: a token of policy
	// dsv in vault/token, and an AppRole of the same policy in
	// vault/role-id and vault/secret-id (used with VAULT_AUTH=approle).
	token, appRoleID, appSecretID string
	credsDir                      string // the credentials mount's host folder
}

// newVaultFixture sets it all up for the rest of the test. Call it before
// newScope or joinSwarm, so that the plugin's old settings come back only
// once the test's containers are gone.
func newVaultFixture(t *testing.T) *vaultFixture {
	t.Helper()
	// The suite never skips Vault, nor the PostgreSQL behind its
	// database engine: a machine without either fails here, saying what
	// to install, rather than skipping every Vault test quietly.
	t.Setenv(vaulttest.EnvRequire, "1")
	t.Setenv(pgtest.EnvRequire, "1")
	f := &vaultFixture{
		pg:            pgtest.Start(t),
		vault:         vaulttest.Start(t),
		kvUser:        "app-" + randomHex(3),
		kvPassword:    "kv-pw2-" + randomHex(8),
		kvOldPassword: "kv-pw1-" + randomHex(8),
		webValue:      "web-" + randomHex(8),
	}
	v := f.vault
	v.PutKV2(t, "secret", "app/db", map[string]any{"user": f.kvUser, "password": f.kvOldPassword})
	v.PutKV2(t, "secret", "app/db", map[string]any{"user": f.kvUser, "password": f.kvPassword, "canary": env.canary})
	v.PutKV2(t, "secret", "web/api", map[string]any{"token": f.webValue})

	v.Enable(t, "database", "database", nil)
	v.ConfigurePostgres(t, "database", "pg", f.pg.URL(), pgtest.SuperUser, f.pg.Password, "app")
	v.CreateDatabaseRole(t, "database", "app", vaulttest.DatabaseRole{
		DBName:             "pg",
		CreationStatements: []string{`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`},
		DefaultTTL:         vaultRoleTTL,
		MaxTTL:             10 * time.Minute,
	})
	v.PutPolicy(t, "dsv", vaultPolicy)
	v.PutPolicy(t, "web", webPolicy)
	v.EnableAuth(t, "approle", "approle")
	roleID := v.CreateAppRole(t, "approle", "web", vaulttest.RoleOptions{Policies: []string{"web"}})
	f.appRoleID = v.CreateAppRole(t, "approle", "dsv", vaulttest.RoleOptions{Policies: []string{"dsv"}})
	f.appSecretID = v.SecretID(t, "approle", "dsv")

	creds := usePluginFolder(t, "credentials", map[string]string{"VAULT_ADDR": v.Addr})
	f.credsDir = creds
	f.token = v.Token(t, vaulttest.TokenOptions{Policies: []string{"dsv"}, TTL: time.Hour})
	files := map[string]string{
		"vault/token":                    f.token,
		"vault/role-id":                  f.appRoleID,
		"vault/secret-id":                f.appSecretID,
		"vault/identities/web/role-id":   roleID,
		"vault/identities/web/secret-id": v.SecretID(t, "approle", "web"),
	}
	for name, value := range files {
		p := filepath.Join(creds, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(value+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("vault %s (token of policy dsv in %s/vault/token), postgres on port %d", v.Addr, creds, f.pg.Port)
	return f
}

// leases lists the ids of the database role's leases that Vault holds.
func (f *vaultFixture) leases(t testing.TB) []string {
	t.Helper()
	return vaultLeases(t, f.vault, "database/creds/app")
}

// vaultLeases lists the ids of the leases Vault holds under prefix.
func vaultLeases(t testing.TB, v *vaulttest.Server, prefix string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sec, err := v.Client.Logical().ListWithContext(ctx, "sys/leases/lookup/"+prefix)
	if err != nil {
		t.Fatalf("vault list sys/leases/lookup/%s: %v", prefix, err)
	}
	var ids []string
	if sec != nil {
		keys, _ := sec.Data["keys"].([]any)
		for _, k := range keys {
			ids = append(ids, prefix+"/"+fmt.Sprint(k))
		}
	}
	sort.Strings(ids)
	return ids
}

// mountDBCreds creates a volume of database/creds/app and starts a
// container on it; it returns the volume, the container, the credentials
// the container reads (checked to log in to PostgreSQL) and when it read
// them.
func (f *vaultFixture) mountDBCreds(t *testing.T, sc *scope, label string) (vol, container, user, password string, got time.Time) {
	t.Helper()
	vol = sc.createVolume(label, "backend=vault", "secret=database/creds/app", "key=*")
	container = sc.start(label, "-v", vol+":/run/secrets/db")
	got = time.Now()
	user = readInContainer(t, container, "/run/secrets/db/username")
	password = readInContainer(t, container, "/run/secrets/db/password")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := f.pg.CanLogin(ctx, user, password); err != nil {
		t.Fatalf("the credentials in the container do not log in to PostgreSQL: %v", err)
	}
	return vol, container, user, password, got
}

// removeWantRevoked removes the container, the last user of a database
// credential: its lease is revoked at once (the role is gone from
// PostgreSQL, not at the lease's end), and Vault holds as many leases as
// before the credential was read.
func (f *vaultFixture) removeWantRevoked(t *testing.T, container, user string, leasesBefore int) {
	t.Helper()
	mustDocker(t, "rm", "-f", container)
	eventually(t, 5*time.Second, "role "+user+" dropped from PostgreSQL after the last unmount", func() string {
		if f.pg.RoleExists(t, user) {
			return "the role still exists"
		}
		return ""
	})
	if n := len(f.leases(t)); n != leasesBefore {
		t.Errorf("vault holds %d leases of database/creds/app after the last unmount, want %d", n, leasesBefore)
	}
}

// readInContainer reads a file in a running container.
func readInContainer(t testing.TB, container, path string) string {
	t.Helper()
	return strings.TrimSpace(mustDocker(t, "exec", container, "cat", path))
}

// TestVaultBackend runs the vault backend through the real plugin in
// dockerd against a real Vault and PostgreSQL: KV v2 fields and versions, a
// database credential whose lease is renewed while mounted and revoked at
// the last unmount, per-volume identities, and errors that name the path.
func TestVaultBackend(t *testing.T) {
	f := newVaultFixture(t)
	sc := newScope(t)

	t.Run("kv v2 field, as the CLI names the path", func(t *testing.T) {
		vol := sc.createVolume("vault-kv", "backend=vault", "secret=secret/app/db", "key=password")
		if got := sc.mustRun([]string{"-v", vol + ":/run/secrets/db-password"}, "cat", "/run/secrets/db-password"); got != f.kvPassword {
			t.Fatalf("container read %q, want the current version's password", got)
		}
		old := sc.createVolume("vault-kv-v1", "backend=vault", "secret=secret/data/app/db", "key=password", "version-id=1")
		if got := sc.mustRun([]string{"-v", old + ":/run/secrets/db-password"}, "cat", "/run/secrets/db-password"); got != f.kvOldPassword {
			t.Fatalf("container read %q from version 1, want %q", got, f.kvOldPassword)
		}
		all := sc.createVolume("vault-kv-all", "backend=vault", "secret=secret/app/db", "key=*")
		got := sc.mustRun([]string{"-v", all + ":/run/secrets/db"}, "sh", "-c", "cat /run/secrets/db/user; echo; ls /run/secrets/db")
		wantContains(t, "key=* volume", got, f.kvUser, "password", "canary")
		canary := sc.createVolume("vault-canary", "backend=vault", "secret=secret/app/db", "key=canary")
		sc.wantCanary([]string{"-v", canary + ":/run/secrets/c"}, "/run/secrets/c")
		if out := mustDocker(t, "volume", "inspect", canary); strings.Contains(out, env.canary) {
			t.Errorf("docker volume inspect shows the value:\n%s", out)
		}
	})

	t.Run("errors name the volume, the path and the field", func(t *testing.T) {
		cases := []struct {
			label string
			opts  []string
			want  []string
		}{
			{"nofield", []string{"secret=secret/app/db", "key=nope"}, []string{`vault secret "secret/app/db"`, `"nope"`}},
			{"nopath", []string{"secret=secret/app/missing"}, []string{`vault secret "secret/app/missing"`, "not found"}},
			{"denied", []string{"secret=secret/other/db"}, []string{`vault secret "secret/other/db"`, "denied"}},
			{"noversion", []string{"secret=secret/app/db", "key=password", "version-id=9"}, []string{`vault secret "secret/app/db"`, "version 9"}},
		}
		for _, c := range cases {
			vol := sc.createVolume("vault-"+c.label, append([]string{"backend=vault"}, c.opts...)...)
			r := sc.runFail([]string{"-v", vol + ":/run/secrets/x"}, "true")
			wantContains(t, "docker run's error", r.stderr, append([]string{vol}, c.want...)...)
			wantNoHostMount(t, vol)
		}
	})

	t.Run("identity: a volume reads with its own AppRole's policy", func(t *testing.T) {
		web := sc.createVolume("vault-web", "backend=vault", "secret=secret/web/api", "key=token", "identity=web")
		if got := sc.mustRun([]string{"-v", web + ":/run/secrets/t"}, "cat", "/run/secrets/t"); got != f.webValue {
			t.Fatalf("identity web read %q, want %q", got, f.webValue)
		}
		// The plugin's own token may read app/db; the web identity may not.
		other := sc.createVolume("vault-web-app", "backend=vault", "secret=secret/app/db", "key=password", "identity=web")
		r := sc.runFail([]string{"-v", other + ":/run/secrets/t"}, "true")
		wantContains(t, "docker run's error", r.stderr, other, "denied")
		// An identity without credentials fails at create.
		r = dockerFails(t, "volume", "create", "-d", env.plugin, "-o", "backend=vault", "-o", "secret=secret/web/api", "-o", "identity=nobody", sc.volume("vault-nobody"))
		wantContains(t, "docker volume create's error", r.stderr, "identity", "nobody")
	})

	t.Run("database credentials: leased, renewed while mounted, revoked after", func(t *testing.T) {
		before := len(f.leases(t))
		vol, c, user, password, got := f.mountDBCreds(t, sc, "vault-pg")
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if n := len(f.leases(t)); n != before+1 {
			t.Fatalf("vault holds %d leases of database/creds/app, want %d", n, before+1)
		}

		lease := func() map[string]any {
			ls, _ := inspectVolume(t, vol).Status["leases"].([]any)
			if len(ls) != 1 {
				return nil
			}
			m, _ := ls[0].(map[string]any)
			return m
		}
		l := lease()
		if l == nil || !strings.HasPrefix(fmt.Sprint(l["lease"]), "database/creds/app/") || l["renewable"] != true || l["ttlLeft"] == nil {
			t.Fatalf("docker volume inspect: want one renewable lease of database/creds/app with its ttlLeft, got Status %v", inspectVolume(t, vol).Status)
		}
		if out := mustDocker(t, "volume", "inspect", vol); strings.Contains(out, password) {
			t.Fatalf("docker volume inspect shows the password:\n%s", out)
		}

		// Past the role's TTL the credentials still work: the plugin
		// renewed the lease (Vault would otherwise have dropped the role).
		eventually(t, 3*vaultRoleTTL, "the lease renewed (Status.renewedAt)", func() string {
			if inspectVolume(t, vol).Status["renewedAt"] == nil {
				return fmt.Sprintf("Status = %v", inspectVolume(t, vol).Status)
			}
			return ""
		})
		time.Sleep(time.Until(got.Add(vaultRoleTTL + 2*time.Second)))
		if err := f.pg.CanLogin(ctx, user, password); err != nil {
			t.Fatalf("%s after the read, past the role's %s TTL, the credentials no longer log in: %v", time.Since(got).Round(time.Second), vaultRoleTTL, err)
		}
		if readInContainer(t, c, "/run/secrets/db/username") != user {
			t.Fatal("the credentials changed although the lease could be renewed")
		}
		t.Logf("lease after renewal: %v", lease())

		f.removeWantRevoked(t, c, user, before)
		if l := inspectVolume(t, vol).Status["leases"]; l != nil {
			t.Errorf("Status still lists leases after the last unmount: %v", l)
		}
		wantNoHostMount(t, vol)
	})
}

// TestVaultLeaseAfterPluginKilled: the plugin dies by SIGKILL half way
// through a database credential's TTL while a container uses it. The new
// process finds the lease in its state and renews it before it runs out
// (its terms' start is persisted: counting from its own start would be too
// late), and the container's last unmount still revokes it.
func TestVaultLeaseAfterPluginKilled(t *testing.T) {
	f := newVaultFixture(t)
	sc := newScope(t)
	sc.onCleanup(ensurePluginEnabled)
	before := len(f.leases(t))
	vol, c, user, password, got := f.mountDBCreds(t, sc, "vault-pg-kill")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	time.Sleep(time.Until(got.Add(vaultRoleTTL / 2)))
	killPlugin(t, vol, nil)
	restarted := time.Now()
	if readInContainer(t, c, "/run/secrets/db/username") != user {
		t.Fatal("the container's credentials changed with the plugin's restart")
	}
	// Two TTLs after the read, the role exists only if the new process
	// renewed the lease.
	time.Sleep(time.Until(got.Add(2*vaultRoleTTL + time.Second)))
	if err := f.pg.CanLogin(ctx, user, password); err != nil {
		t.Fatalf("%s after the read (plugin restarted after %s), past the role's %s TTL, the credentials no longer log in: the lease was not renewed: %v",
			time.Since(got).Round(time.Second), restarted.Sub(got).Round(time.Second), vaultRoleTTL, err)
	}
	st := inspectVolume(t, vol).Status
	renewed, _ := time.Parse(time.RFC3339, fmt.Sprint(st["renewedAt"]))
	if renewed.Before(restarted.Truncate(time.Second)) {
		t.Fatalf("Status.renewedAt %v is not after the restart at %s: %v", st["renewedAt"], restarted.Format(time.RFC3339), st)
	}
	t.Logf("after the restart: Status %v", st)

	f.removeWantRevoked(t, c, user, before)
}

// TestSwarmVault: Swarm secrets from Vault. A dynamic secret is answered
// with DoNotReuse, so each task of a service gets its own credentials; a
// service's dsv.identity label makes its secrets read with that AppRole.
func TestSwarmVault(t *testing.T) {
	f := newVaultFixture(t) // before the swarm: its settings outlive the services
	sw := joinSwarm(t)

	t.Run("DoNotReuse: each task gets its own database credentials", func(t *testing.T) {
		sec := sw.secret("pg-user", "dsv.backend=vault", "dsv.secret=database/creds/app", "dsv.key=username")
		svc := sw.service("pg-user", []string{"--replicas", "2", "--secret", sec},
			printThenSleep("echo user=$(cat /run/secrets/"+sec+")")...)
		wantRunning(t, svc, 2)
		var users []string
		eventually(t, swarmTaskTimeout, "both tasks of "+svc+" print their user", func() string {
			users = users[:0]
			for _, l := range strings.Split(serviceLogs(t, svc), "\n") {
				if u, ok := strings.CutPrefix(strings.TrimSpace(l), "user="); ok {
					users = append(users, u)
				}
			}
			if len(users) < 2 {
				return fmt.Sprintf("users printed: %q", users)
			}
			return ""
		})
		if len(users) != 2 || users[0] == users[1] || !strings.HasPrefix(users[0], "v-") || !strings.HasPrefix(users[1], "v-") {
			t.Fatalf("want two distinct Vault-generated users (one per task), got %q", users)
		}
		t.Logf("the two tasks got users %q", users)
	})

	t.Run("a service's identity reads with its AppRole", func(t *testing.T) {
		sec := sw.secret("web-token", "dsv.backend=vault", "dsv.secret=secret/web/api", "dsv.key=token")
		svc := sw.service("web", []string{"--label", "dsv.identity=web", "--secret", sec}, printThenSleep("cat /run/secrets/"+sec+"; echo")...)
		wantRunning(t, svc, 1)
		wantLogLines(t, svc, f.webValue, 1)

		// The web identity's policy does not reach app/db, though the
		// plugin's own token does: the task fails and the plugin says why.
		appSec := sw.secret("web-app", "dsv.backend=vault", "dsv.secret=secret/app/db", "dsv.key=password")
		bad := sw.service("web-app", []string{"--label", "dsv.identity=web", "--secret", appSec}, printThenSleep("cat /run/secrets/"+appSec)...)
		wantPluginLog(t, "the plugin logs that "+bad+" was denied", `secret refused`, appSec, bad, "access denied")
		for _, tk := range serviceTasks(t, bad) {
			if strings.HasPrefix(tk.current, "Running") {
				t.Fatalf("a task of identity web read secret/app/db: %+v", tk)
			}
		}
	})
}
