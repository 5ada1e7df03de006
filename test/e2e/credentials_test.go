//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dsv-plugin/dsv/test/servers/moto"
)

// wantNotInPluginInspect fails when docker plugin inspect shows one of the
// credentials.
func wantNotInPluginInspect(t *testing.T, credentials map[string]string) {
	t.Helper()
	out := mustDocker(t, "plugin", "inspect", env.plugin)
	for what, v := range credentials {
		if v == "" {
			t.Fatalf("empty credential %s: the check would prove nothing", what)
		}
		if strings.Contains(out, v) {
			t.Errorf("docker plugin inspect %s shows the %s", env.plugin, what)
		}
	}
}

// writeCredentials writes files (relative name -> content) into the
// credentials folder, mode 0600.
func writeCredentials(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCredentialSetups: README's recommended credential setups work and
// leave nothing secret in docker plugin inspect (where env settings such as
// AWS_SECRET_ACCESS_KEY or VAULT_TOKEN would show).
func TestCredentialSetups(t *testing.T) {
	t.Run("aws credentials file in the credentials mount, rotated", func(t *testing.T) {
		// A moto that checks keys as AWS does. With the env keys empty, only
		// the mounted file can give the plugin a key.
		name, value := env.name("credsfile"), "via-credentials-file-"+randomHex(4)
		srv, key := moto.StartAuth(t, map[string]string{name: value})
		dir := usePluginFolder(t, "credentials", map[string]string{
			"AWS_ENDPOINT_URL": srv.URL, "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "",
		})
		creds := func(id, secret string) map[string]string {
			return map[string]string{"credentials": "[default]\naws_access_key_id = " + id + "\naws_secret_access_key = " + secret + "\n"}
		}
		sc := newScope(t)
		vol := sc.createVolume("credsfile", "backend=aws", "secret="+name)
		mount := []string{"-v", vol + ":/run/secrets/s"}

		writeCredentials(t, dir, creds("AKIADSVE2E"+strings.ToUpper(randomHex(5)), "dsv-e2e-key-"+randomHex(12)))
		r := sc.runFail(mount, "true")
		wantContains(t, "docker run's error with a key AWS does not know", r.stderr, vol, name, "access denied", "credentials given to the plugin")
		pid := pluginPid(t)

		// The key is rotated in the file: the next run reads with it, no
		// plugin restart (the SDK alone would keep the old key for good).
		writeCredentials(t, dir, creds(key.ID, key.Secret))
		if got := sc.mustRun(mount, "cat", "/run/secrets/s"); got != value {
			t.Fatalf("container read %q, want %q", got, value)
		}
		if now := pluginPid(t); now != pid {
			t.Fatalf("the plugin restarted (process %d, then %d): the test proves nothing", pid, now)
		}
		wantNotInPluginInspect(t, map[string]string{"aws secret access key": key.Secret})
	})

	t.Run("vault token file and AppRole", func(t *testing.T) {
		f := newVaultFixture(t)
		read := func(t *testing.T) {
			sc := newScope(t)
			vol := sc.createVolume("vault-login", "backend=vault", "secret=secret/app/db", "key=password")
			if got := sc.mustRun([]string{"-v", vol + ":/run/secrets/s"}, "cat", "/run/secrets/s"); got != f.kvPassword {
				t.Fatalf("container read %q, want the password", got)
			}
		}
		t.Run("token file", func(t *testing.T) {
			read(t)
			wantNotInPluginInspect(t, map[string]string{"vault token": f.token})
		})
		t.Run("approle", func(t *testing.T) {
			// A token file that cannot log in: a read that works proves the
			// AppRole login.
			writeCredentials(t, f.credsDir, map[string]string{"vault/token": "not-a-token\n"})
			changePluginSettings(t, map[string]string{"VAULT_AUTH": "approle"})
			read(t)
			wantNotInPluginInspect(t, map[string]string{"AppRole secret-id": f.appSecretID, "AppRole role-id": f.appRoleID})
		})
	})
}
