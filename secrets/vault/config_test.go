package vault

import (
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestConfigFromEnvDefaults(t *testing.T) {
	c, err := ConfigFromEnv(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Auth:          AuthToken,
		TokenFile:     "/run/dsv/credentials/vault/token",
		AppRolePath:   "approle",
		RoleIDFile:    "/run/dsv/credentials/vault/role-id",
		SecretIDFile:  "/run/dsv/credentials/vault/secret-id",
		IdentitiesDir: "/run/dsv/credentials/vault/identities",
	}
	if c != want {
		t.Fatalf("ConfigFromEnv(empty) = %+v, want %+v", c, want)
	}
}

func TestConfigFromEnv(t *testing.T) {
	c, err := ConfigFromEnv(env(map[string]string{
		"VAULT_AUTH":              "approle",
		"VAULT_APPROLE_PATH":      "team/approle",
		"VAULT_ROLE_ID_FILE":      "/etc/dsv/role",
		"VAULT_SECRET_ID_FILE":    "/etc/dsv/secret",
		"VAULT_SECRET_ID_WRAPPED": "true",
		"VAULT_NAMESPACE":         "team-a",
		"VAULT_ADDR":              "https://vault.example.com:8200",
		"VAULT_IDENTITIES_DIR":    "/etc/dsv/identities",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Auth != AuthAppRole || c.AppRolePath != "team/approle" || c.RoleIDFile != "/etc/dsv/role" ||
		c.SecretIDFile != "/etc/dsv/secret" || !c.SecretIDWrapped || c.Namespace != "team-a" || c.IdentitiesDir != "/etc/dsv/identities" {
		t.Fatalf("ConfigFromEnv = %+v", c)
	}
}

func TestConfigFromEnvErrors(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want []string // each must appear in the error
	}{
		{name: "auth", env: map[string]string{"VAULT_AUTH": "ldap"}, want: []string{"VAULT_AUTH", `"ldap"`, "token or approle"}},
		{name: "token with approle", env: map[string]string{"VAULT_AUTH": "approle", "VAULT_TOKEN": "x"}, want: []string{"VAULT_TOKEN", "only used with VAULT_AUTH=token"}},
		{name: "relative token file", env: map[string]string{"VAULT_TOKEN_FILE": "token"}, want: []string{"VAULT_TOKEN_FILE", "absolute"}},
		{name: "relative identities dir", env: map[string]string{"VAULT_IDENTITIES_DIR": "ids"}, want: []string{"VAULT_IDENTITIES_DIR", "absolute"}},
		{name: "approle path", env: map[string]string{"VAULT_APPROLE_PATH": "auth/approle"}, want: []string{"VAULT_APPROLE_PATH", "without auth/"}},
		{name: "approle path spaces", env: map[string]string{"VAULT_APPROLE_PATH": "app role"}, want: []string{"VAULT_APPROLE_PATH"}},
		{name: "wrapped", env: map[string]string{"VAULT_SECRET_ID_WRAPPED": "yes please"}, want: []string{"VAULT_SECRET_ID_WRAPPED", "true or false"}},
		{name: "namespace", env: map[string]string{"VAULT_NAMESPACE": "/team"}, want: []string{"VAULT_NAMESPACE"}},
		{name: "addr", env: map[string]string{"VAULT_ADDR": "vault:8200"}, want: []string{"VAULT_ADDR", "http://"}},
		{name: "addr without host", env: map[string]string{"VAULT_ADDR": "https://"}, want: []string{"VAULT_ADDR", "no host"}},
		{
			name: "every problem at once",
			env:  map[string]string{"VAULT_AUTH": "ldap", "VAULT_ROLE_ID_FILE": "r", "VAULT_SECRET_ID_WRAPPED": "2"},
			want: []string{"VAULT_AUTH", "VAULT_ROLE_ID_FILE", "VAULT_SECRET_ID_WRAPPED"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ConfigFromEnv(env(tt.env))
			if err == nil {
				t.Fatal("ConfigFromEnv() = nil error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("ConfigFromEnv() error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestNewDoesNotContactVault(t *testing.T) {
	cfg, err := ConfigFromEnv(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	// Nothing listens there; New must not care.
	t.Setenv("VAULT_ADDR", "http://127.0.0.1:1")
	d, err := New(cfg, zerolog.Nop())
	if err != nil {
		t.Fatalf("New() with an unreachable vault = %v", err)
	}
	defer d.Close()
	if d.Name() != "vault" {
		t.Fatalf("Name() = %q", d.Name())
	}
}

func TestNewBadClientSettings(t *testing.T) {
	t.Setenv("VAULT_SKIP_VERIFY", "maybe")
	cfg, _ := ConfigFromEnv(env(nil))
	if _, err := New(cfg, zerolog.Nop()); err == nil || !strings.Contains(err.Error(), "VAULT_SKIP_VERIFY") {
		t.Fatalf("New() with VAULT_SKIP_VERIFY=maybe = %v, want an error naming the settings", err)
	}
}

func TestNewInvalidConfig(t *testing.T) {
	if _, err := New(Config{Auth: "ldap"}, zerolog.Nop()); err == nil {
		t.Fatal("New() with an invalid config = nil error")
	}
}

func TestNewNegativeTimeout(t *testing.T) {
	cfg, err := ConfigFromEnv(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Timeout = -time.Second
	if _, err := New(cfg, zerolog.Nop()); err == nil || !strings.Contains(err.Error(), "TIMEOUT") {
		t.Fatalf("New() with a negative timeout = %v, want an error naming TIMEOUT", err)
	}
}
