package vaulttest

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

// The helpers below act with the root token and fail the test on error.

func opContext(t testing.TB) (context.Context, context.CancelFunc) {
	t.Helper()
	return context.WithTimeout(context.Background(), 15*time.Second)
}

// Write writes data at path and returns Vault's answer.
func (s *Server) Write(t testing.TB, path string, data map[string]any) *api.Secret {
	t.Helper()
	ctx, cancel := opContext(t)
	defer cancel()
	sec, err := s.Client.Logical().WriteWithContext(ctx, path, data)
	if err != nil {
		t.Fatalf("vault write %s: %v", path, err)
	}
	return sec
}

// Read reads path; nil when there is nothing there.
func (s *Server) Read(t testing.TB, path string) *api.Secret {
	t.Helper()
	ctx, cancel := opContext(t)
	defer cancel()
	sec, err := s.Client.Logical().ReadWithContext(ctx, path)
	if err != nil {
		t.Fatalf("vault read %s: %v", path, err)
	}
	return sec
}

// Enable mounts a secrets engine of type engine at path.
func (s *Server) Enable(t testing.TB, path, engine string, options map[string]string) {
	t.Helper()
	ctx, cancel := opContext(t)
	defer cancel()
	if err := s.Client.Sys().MountWithContext(ctx, path, &api.MountInput{Type: engine, Options: options}); err != nil {
		t.Fatalf("vault secrets enable -path=%s %s: %v", path, engine, err)
	}
}

// EnableKV mounts a KV engine of version 1 or 2 at path. The dev server
// already has a KV v2 mount at secret/.
func (s *Server) EnableKV(t testing.TB, path string, version int) {
	t.Helper()
	s.Enable(t, path, "kv", map[string]string{"version": strconv.Itoa(version)})
}

// PutKV2 writes a new version of a KV v2 secret and returns its number.
func (s *Server) PutKV2(t testing.TB, mount, path string, data map[string]any) int {
	t.Helper()
	ctx, cancel := opContext(t)
	defer cancel()
	sec, err := s.Client.KVv2(mount).Put(ctx, path, data)
	if err != nil {
		t.Fatalf("vault kv put %s/%s: %v", mount, path, err)
	}
	return sec.VersionMetadata.Version
}

// PutKV1 writes a KV v1 secret.
func (s *Server) PutKV1(t testing.TB, mount, path string, data map[string]any) {
	t.Helper()
	ctx, cancel := opContext(t)
	defer cancel()
	if err := s.Client.KVv1(mount).Put(ctx, path, data); err != nil {
		t.Fatalf("vault kv put %s/%s: %v", mount, path, err)
	}
}

// DeleteKV2Versions soft-deletes versions of a KV v2 secret.
func (s *Server) DeleteKV2Versions(t testing.TB, mount, path string, versions ...int) {
	t.Helper()
	ctx, cancel := opContext(t)
	defer cancel()
	if err := s.Client.KVv2(mount).DeleteVersions(ctx, path, versions); err != nil {
		t.Fatalf("vault kv delete -versions %v %s/%s: %v", versions, mount, path, err)
	}
}

// DestroyKV2Versions destroys versions of a KV v2 secret.
func (s *Server) DestroyKV2Versions(t testing.TB, mount, path string, versions ...int) {
	t.Helper()
	ctx, cancel := opContext(t)
	defer cancel()
	if err := s.Client.KVv2(mount).Destroy(ctx, path, versions); err != nil {
		t.Fatalf("vault kv destroy -versions %v %s/%s: %v", versions, mount, path, err)
	}
}

// PutPolicy writes an ACL policy.
func (s *Server) PutPolicy(t testing.TB, name, hcl string) {
	t.Helper()
	ctx, cancel := opContext(t)
	defer cancel()
	if err := s.Client.Sys().PutPolicyWithContext(ctx, name, hcl); err != nil {
		t.Fatalf("vault policy write %s: %v", name, err)
	}
}

// TokenOptions describes a token to create.
type TokenOptions struct {
	// Policies of the token; nil means the default policy only (Vault's
	// own default would be the parent's: root).
	Policies []string
	// TTL and ExplicitMaxTTL bound the token's life; zero means the
	// server's defaults.
	TTL            time.Duration
	ExplicitMaxTTL time.Duration
	// NotRenewable creates a token that cannot be renewed.
	NotRenewable bool
	// NoDefaultPolicy leaves out the default policy (lookup-self, renew-self).
	NoDefaultPolicy bool
}

// Token creates a token and returns it.
func (s *Server) Token(t testing.TB, o TokenOptions) string {
	t.Helper()
	ctx, cancel := opContext(t)
	defer cancel()
	policies := o.Policies
	if len(policies) == 0 {
		policies = []string{"default"}
	}
	req := &api.TokenCreateRequest{
		Policies:        policies,
		NoDefaultPolicy: o.NoDefaultPolicy,
		NoParent:        true,
	}
	if o.TTL > 0 {
		req.TTL = o.TTL.String()
	}
	if o.ExplicitMaxTTL > 0 {
		req.ExplicitMaxTTL = o.ExplicitMaxTTL.String()
	}
	if o.NotRenewable {
		f := false
		req.Renewable = &f
	}
	sec, err := s.Client.Auth().Token().CreateOrphanWithContext(ctx, req)
	if err != nil {
		t.Fatalf("vault token create: %v", err)
	}
	return sec.Auth.ClientToken
}

// LookupToken returns what Vault knows of a token, or nil for an invalid one.
func (s *Server) LookupToken(t testing.TB, token string) *api.Secret {
	t.Helper()
	ctx, cancel := opContext(t)
	defer cancel()
	sec, err := s.Client.Auth().Token().LookupWithContext(ctx, token)
	if err != nil {
		return nil
	}
	return sec
}

// RevokeToken revokes a token.
func (s *Server) RevokeToken(t testing.TB, token string) {
	t.Helper()
	ctx, cancel := opContext(t)
	defer cancel()
	if err := s.Client.Auth().Token().RevokeOrphanWithContext(ctx, token); err != nil {
		t.Fatalf("vault token revoke: %v", err)
	}
}

// EnableAuth mounts an auth method at auth/PATH.
func (s *Server) EnableAuth(t testing.TB, path, method string) {
	t.Helper()
	ctx, cancel := opContext(t)
	defer cancel()
	if err := s.Client.Sys().EnableAuthWithOptionsWithContext(ctx, path, &api.EnableAuthOptions{Type: method}); err != nil {
		t.Fatalf("vault auth enable -path=%s %s: %v", path, method, err)
	}
}

// RoleOptions describes an AppRole role.
type RoleOptions struct {
	Policies    []string
	TokenTTL    time.Duration
	TokenMaxTTL time.Duration
	// SecretIDNumUses limits the uses of each secret-id; 0 is unlimited.
	SecretIDNumUses int
}

// CreateAppRole creates a role in the AppRole mount and returns its role-id.
func (s *Server) CreateAppRole(t testing.TB, mount, name string, o RoleOptions) string {
	t.Helper()
	data := map[string]any{
		"token_policies":     o.Policies,
		"secret_id_num_uses": o.SecretIDNumUses,
	}
	if o.TokenTTL > 0 {
		data["token_ttl"] = int(o.TokenTTL / time.Second)
	}
	if o.TokenMaxTTL > 0 {
		data["token_max_ttl"] = int(o.TokenMaxTTL / time.Second)
	}
	s.Write(t, "auth/"+mount+"/role/"+name, data)
	sec := s.Read(t, "auth/"+mount+"/role/"+name+"/role-id")
	id, _ := sec.Data["role_id"].(string)
	if id == "" {
		t.Fatalf("vault read auth/%s/role/%s/role-id: no role_id", mount, name)
	}
	return id
}

// SecretID issues a secret-id of a role.
func (s *Server) SecretID(t testing.TB, mount, role string) string {
	t.Helper()
	sec := s.Write(t, "auth/"+mount+"/role/"+role+"/secret-id", nil)
	id, _ := sec.Data["secret_id"].(string)
	if id == "" {
		t.Fatalf("vault write auth/%s/role/%s/secret-id: no secret_id", mount, role)
	}
	return id
}

// WrappedSecretID issues a secret-id of a role wrapped in a single-use
// token valid for ttl, and returns the wrapping token.
func (s *Server) WrappedSecretID(t testing.TB, mount, role string, ttl time.Duration) string {
	t.Helper()
	c, err := s.Client.Clone()
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(RootToken)
	c.ClearNamespace()
	c.SetWrappingLookupFunc(func(string, string) string { return strconv.Itoa(int(ttl / time.Second)) })
	ctx, cancel := opContext(t)
	defer cancel()
	sec, err := c.Logical().WriteWithContext(ctx, "auth/"+mount+"/role/"+role+"/secret-id", nil)
	if err != nil {
		t.Fatalf("vault write -wrap-ttl=%s auth/%s/role/%s/secret-id: %v", ttl, mount, role, err)
	}
	if sec == nil || sec.WrapInfo == nil || sec.WrapInfo.Token == "" {
		t.Fatalf("vault write -wrap-ttl auth/%s/role/%s/secret-id: not wrapped", mount, role)
	}
	return sec.WrapInfo.Token
}

// Unwrap unwraps a response-wrapping token.
func (s *Server) Unwrap(t testing.TB, token string) *api.Secret {
	t.Helper()
	ctx, cancel := opContext(t)
	defer cancel()
	sec, err := s.Client.Logical().UnwrapWithContext(ctx, token)
	if err != nil {
		t.Fatalf("vault unwrap: %v", err)
	}
	return sec
}

// ConfigurePostgres points the database engine mounted at mount to a
// PostgreSQL server: connection name, a connection URL with {{username}}
// and {{password}} placeholders, the superuser's credentials, and the
// roles that may use it.
func (s *Server) ConfigurePostgres(t testing.TB, mount, name, connURL, user, password string, roles ...string) {
	t.Helper()
	s.Write(t, mount+"/config/"+name, map[string]any{
		"plugin_name":       "postgresql-database-plugin",
		"connection_url":    connURL,
		"username":          user,
		"password":          password,
		"allowed_roles":     roles,
		"verify_connection": true,
	})
}

// DatabaseRole describes a role of the database engine.
type DatabaseRole struct {
	DBName             string
	CreationStatements []string
	DefaultTTL, MaxTTL time.Duration
}

// CreateDatabaseRole creates a role of the database engine at mount.
func (s *Server) CreateDatabaseRole(t testing.TB, mount, name string, r DatabaseRole) {
	t.Helper()
	s.Write(t, mount+"/roles/"+name, map[string]any{
		"db_name":             r.DBName,
		"creation_statements": r.CreationStatements,
		"default_ttl":         int(r.DefaultTTL / time.Second),
		"max_ttl":             int(r.MaxTTL / time.Second),
	})
}

// LeaseExpiry returns when a lease expires, or the zero time when Vault
// does not know it.
func (s *Server) LeaseExpiry(t testing.TB, leaseID string) time.Time {
	t.Helper()
	ctx, cancel := opContext(t)
	defer cancel()
	sec, err := s.Client.Logical().WriteWithContext(ctx, "sys/leases/lookup", map[string]any{"lease_id": leaseID})
	if err != nil || sec == nil {
		return time.Time{}
	}
	v, _ := sec.Data["expire_time"].(string)
	at, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}
	}
	return at
}
