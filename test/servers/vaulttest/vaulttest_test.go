package vaulttest_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/dsv-plugin/dsv/test/servers/vaulttest"
)

func TestServer(t *testing.T) {
	t.Parallel()
	s := vaulttest.Start(t)

	if got := s.Read(t, "sys/health"); got != nil && got.Data["initialized"] == false {
		t.Fatalf("sys/health = %v, want an initialized server", got.Data)
	}

	// KV v2 (the dev server's secret/) and a KV v1 mount.
	v1 := s.PutKV2(t, "secret", "app/db", map[string]any{"pass": "one"})
	v2 := s.PutKV2(t, "secret", "app/db", map[string]any{"pass": "two"})
	if v1 != 1 || v2 != 2 {
		t.Fatalf("PutKV2 versions = %d, %d, want 1, 2", v1, v2)
	}
	s.DeleteKV2Versions(t, "secret", "app/db", 1)
	s.DestroyKV2Versions(t, "secret", "app/db", 2)
	md := s.Read(t, "secret/metadata/app/db")
	versions, _ := md.Data["versions"].(map[string]any)
	one, _ := versions["1"].(map[string]any)
	two, _ := versions["2"].(map[string]any)
	if one["deletion_time"] == "" || two["destroyed"] != true {
		t.Fatalf("metadata after delete and destroy = %v", versions)
	}
	s.EnableKV(t, "kv1", 1)
	s.PutKV1(t, "kv1", "app", map[string]any{"x": "1"})
	if got := s.Read(t, "kv1/app"); got == nil || got.Data["x"] != "1" {
		t.Fatalf("read kv1/app = %v", got)
	}

	// A narrow token can read what its policy allows, and nothing else.
	s.PutPolicy(t, "app", `path "kv1/app" { capabilities = ["read"] }`)
	token := s.Token(t, vaulttest.TokenOptions{Policies: []string{"app"}, TTL: time.Minute})
	c := client(t, s, token)
	if _, err := c.Logical().Read("kv1/app"); err != nil {
		t.Fatalf("narrow token read kv1/app: %v", err)
	}
	if _, err := c.Logical().Read("secret/data/app/db"); err == nil {
		t.Fatal("narrow token read secret/data/app/db: want permission denied")
	}
	if ttl := s.LookupToken(t, token).Data["ttl"]; ttl == nil {
		t.Fatal("LookupToken: no ttl")
	}
	s.RevokeToken(t, token)
	if s.LookupToken(t, token) != nil {
		t.Fatal("LookupToken after RevokeToken: want nil")
	}

	// AppRole, with a plain and a wrapped secret-id.
	s.EnableAuth(t, "approle", "approle")
	roleID := s.CreateAppRole(t, "approle", "app", vaulttest.RoleOptions{Policies: []string{"app"}, TokenTTL: time.Minute})
	for name, secretID := range map[string]string{
		"plain":   s.SecretID(t, "approle", "app"),
		"wrapped": s.Unwrap(t, s.WrappedSecretID(t, "approle", "app", time.Minute)).Data["secret_id"].(string),
	} {
		login := s.Write(t, "auth/approle/login", map[string]any{"role_id": roleID, "secret_id": secretID})
		if login.Auth == nil || login.Auth.ClientToken == "" {
			t.Fatalf("%s secret-id: login returned no token", name)
		}
	}
}

func TestServerTLS(t *testing.T) {
	t.Parallel()
	s := vaulttest.Start(t, vaulttest.TLS())
	if s.CACert == "" || s.Addr[:8] != "https://" {
		t.Fatalf("TLS server: Addr %q CACert %q", s.Addr, s.CACert)
	}
	if _, err := os.Stat(s.CACert); err != nil {
		t.Fatal(err)
	}
	if got := s.Read(t, "sys/mounts/secret/tune"); got == nil {
		t.Fatal("root client over TLS read nothing")
	}

	// Without the CA the server is not trusted.
	conf := api.DefaultConfig()
	conf.Address = s.Addr
	conf.MaxRetries = 0
	c, err := api.NewClient(conf)
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(vaulttest.RootToken)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Logical().ReadWithContext(ctx, "sys/mounts/secret/tune"); err == nil {
		t.Fatal("read without the CA: want a certificate error")
	}
}

func client(t *testing.T, s *vaulttest.Server, token string) *api.Client {
	t.Helper()
	c, err := api.NewClient(s.Config())
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(token)
	c.ClearNamespace()
	return c
}
