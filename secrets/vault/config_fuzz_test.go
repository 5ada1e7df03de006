package vault

import (
	"path/filepath"
	"strings"
	"testing"
)

// FuzzConfigFromEnv: any value of any VAULT_* setting gives a valid
// configuration or an error naming the setting, never a panic, and an
// error never quotes the token, which is a credential.
func FuzzConfigFromEnv(f *testing.F) {
	names := []string{EnvAuth, EnvTokenFile, EnvAppRolePath, EnvRoleIDFile, EnvSecretIDFile, EnvSecretIDWrapped, EnvIdentitiesDir, EnvNamespace, EnvAddr}
	for i, v := range []string{"approle", "token", "/x", "auth/approle", "team/approle", "true", "yes", "team-a", "/ns", "https://v:8200", "ftp://x", "unix:///s", "http://"} {
		f.Add(uint8(i), v, "hvs.")
	}
	const canary = "fuzz-canary-7c1e"
	f.Fuzz(func(t *testing.T, n uint8, value, tokenPrefix string) {
		name := names[int(n)%len(names)]
		c, err := ConfigFromEnv(env(map[string]string{name: value, EnvToken: tokenPrefix + canary}))
		if err != nil {
			if !strings.Contains(err.Error(), "setting ") {
				t.Fatalf("error %q names no setting", err)
			}
			if strings.Contains(err.Error(), canary) && !strings.Contains(value, canary) {
				t.Fatalf("error quotes VAULT_TOKEN: %v", err)
			}
			return
		}
		if c.Auth != AuthToken && c.Auth != AuthAppRole {
			t.Fatalf("accepted VAULT_AUTH %q", c.Auth)
		}
		for _, p := range []string{c.TokenFile, c.RoleIDFile, c.SecretIDFile, c.IdentitiesDir} {
			if !filepath.IsAbs(p) {
				t.Fatalf("accepted a relative path %q", p)
			}
		}
		if c.Namespace != "" && validNamespace(c.Namespace) != nil {
			t.Fatalf("accepted VAULT_NAMESPACE %q", c.Namespace)
		}
	})
}
