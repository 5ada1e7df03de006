//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
	t.Run("aws credentials file in the credentials mount", func(t *testing.T) {
		// moto takes any key; with the env keys empty, a read that works
		// proves the SDK found these in the mounted file.
		keyID, key := "AKIADSVE2E"+strings.ToUpper(randomHex(5)), "dsv-e2e-key-"+randomHex(12)
		dir := usePluginFolder(t, "credentials", map[string]string{"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""})
		writeCredentials(t, dir, map[string]string{
			"credentials": "[default]\naws_access_key_id = " + keyID + "\naws_secret_access_key = " + key + "\n",
		})
		sc := newScope(t)
		name, value := env.name("credsfile"), "via-credentials-file-"+randomHex(4)
		createSecret(t, name, value)
		vol := sc.createVolume("credsfile", "backend=aws", "secret="+name)
		if got := sc.mustRun([]string{"-v", vol + ":/run/secrets/s"}, "cat", "/run/secrets/s"); got != value {
			t.Fatalf("container read %q, want %q", got, value)
		}
		wantNotInPluginInspect(t, map[string]string{"aws secret access key": key})
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
