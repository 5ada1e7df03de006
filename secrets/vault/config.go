package vault

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Plugin settings the backend reads (see ConfigFromEnv). The Vault client's
// own settings (VAULT_ADDR, VAULT_CACERT, VAULT_CAPATH, VAULT_CLIENT_CERT,
// VAULT_CLIENT_KEY, VAULT_TLS_SERVER_NAME, VAULT_SKIP_VERIFY, ...) are read
// by ClientConfigFromEnv from the process environment, as the Vault CLI
// reads them.
const (
	EnvAuth            = "VAULT_AUTH"
	EnvToken           = "VAULT_TOKEN"
	EnvTokenFile       = "VAULT_TOKEN_FILE"
	EnvAppRolePath     = "VAULT_APPROLE_PATH"
	EnvRoleIDFile      = "VAULT_ROLE_ID_FILE"
	EnvSecretIDFile    = "VAULT_SECRET_ID_FILE"
	EnvSecretIDWrapped = "VAULT_SECRET_ID_WRAPPED"
	EnvIdentitiesDir   = "VAULT_IDENTITIES_DIR"
	EnvNamespace       = "VAULT_NAMESPACE"
	EnvAddr            = "VAULT_ADDR"
)

// Auth methods of the plugin's own login (VAULT_AUTH).
const (
	AuthToken   = "token"
	AuthAppRole = "approle"
)

// Defaults: the credentials mount of the managed plugin holds a vault/
// folder.
const (
	DefaultCredentialsDir = "/run/dsv/credentials/vault"
	DefaultTokenFile      = DefaultCredentialsDir + "/token"
	DefaultRoleIDFile     = DefaultCredentialsDir + "/role-id"
	DefaultSecretIDFile   = DefaultCredentialsDir + "/secret-id"
	DefaultIdentitiesDir  = DefaultCredentialsDir + "/identities"
	DefaultAppRolePath    = "approle"
)

// Files of an identity's directory.
const (
	roleIDName   = "role-id"
	secretIDName = "secret-id"
)

// Config configures the backend. Build it with ConfigFromEnv; tests fill it
// in directly.
type Config struct {
	// Auth is how the plugin logs in for volumes without the identity
	// option: AuthToken (the default) or AuthAppRole.
	Auth string
	// Token is a token given in the environment. When set it wins over
	// TokenFile, and cannot be rotated without restarting the plugin.
	Token string
	// TokenFile holds the token; it is read again at each re-login, so a
	// rotated token is picked up.
	TokenFile string
	// AppRolePath is the AppRole auth mount, without "auth/".
	AppRolePath string
	// RoleIDFile and SecretIDFile hold the plugin's AppRole credentials.
	RoleIDFile   string
	SecretIDFile string
	// SecretIDWrapped says that secret-id files (the plugin's and the
	// identities') hold a response-wrapping token of a secret-id, unwrapped
	// at login.
	SecretIDWrapped bool
	// Namespace is the namespace of logins and the default of the namespace
	// volume option (Vault Enterprise).
	Namespace string
	// IdentitiesDir holds one directory per identity, each with a role-id
	// and a secret-id file (VAULT_IDENTITIES_DIR).
	IdentitiesDir string
	// Timeout is the TIMEOUT plugin setting: it bounds each call (Fetch,
	// Canonical, Renew, Revoke) whatever its caller's context says, each
	// login, and each request of the token's renewal in the background.
	// 0 leaves calls to their caller's context and logins to that of the
	// caller that started them.
	Timeout time.Duration
	// Client is the Vault client configuration. Nil means
	// ClientConfigFromEnv of the process environment, which reads
	// VAULT_ADDR, VAULT_CACERT and the other client settings.
	Client *ClientConfig
}

// ConfigFromEnv reads the plugin settings through getenv, applies the
// defaults, and reports every invalid setting in one error.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	c := Config{
		Auth:          AuthToken,
		TokenFile:     DefaultTokenFile,
		AppRolePath:   DefaultAppRolePath,
		RoleIDFile:    DefaultRoleIDFile,
		SecretIDFile:  DefaultSecretIDFile,
		IdentitiesDir: DefaultIdentitiesDir,
		Namespace:     getenv(EnvNamespace),
		Token:         getenv(EnvToken),
	}
	set := func(dst *string, name string) {
		if v := getenv(name); v != "" {
			*dst = v
		}
	}
	set(&c.Auth, EnvAuth)
	set(&c.TokenFile, EnvTokenFile)
	set(&c.AppRolePath, EnvAppRolePath)
	set(&c.RoleIDFile, EnvRoleIDFile)
	set(&c.SecretIDFile, EnvSecretIDFile)
	set(&c.IdentitiesDir, EnvIdentitiesDir)

	var errs []error
	if v := getenv(EnvSecretIDWrapped); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("setting %s: %q is not true or false", EnvSecretIDWrapped, quoted(v)))
		}
		c.SecretIDWrapped = b
	}
	if v := getenv(EnvAddr); v != "" {
		if err := validAddr(v); err != nil {
			errs = append(errs, fmt.Errorf("setting %s: %w", EnvAddr, err))
		}
	}
	if err := c.Validate(); err != nil {
		errs = append(errs, err)
	}
	return c, errors.Join(errs...)
}

// appRolePathRE matches an auth mount path such as "approle" or
// "team/approle".
var appRolePathRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$`)

// Validate checks the settings and returns every problem at once.
func (c Config) Validate() error {
	var errs []error
	switch c.Auth {
	case AuthToken:
	case AuthAppRole:
		if c.Token != "" {
			errs = append(errs, fmt.Errorf("setting %s: only used with %s=%s; unset it", EnvToken, EnvAuth, AuthToken))
		}
	default:
		errs = append(errs, fmt.Errorf("setting %s: %q is not supported; use %s or %s", EnvAuth, quoted(c.Auth), AuthToken, AuthAppRole))
	}
	for _, f := range []struct{ name, path string }{
		{EnvTokenFile, c.TokenFile},
		{EnvRoleIDFile, c.RoleIDFile},
		{EnvSecretIDFile, c.SecretIDFile},
		{EnvIdentitiesDir, c.IdentitiesDir},
	} {
		if !filepath.IsAbs(f.path) {
			errs = append(errs, fmt.Errorf("setting %s: %q is not an absolute path", f.name, quoted(f.path)))
		}
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("setting TIMEOUT: %s is negative", c.Timeout))
	}
	if !appRolePathRE.MatchString(strings.TrimSuffix(c.AppRolePath, "/")) || strings.HasPrefix(c.AppRolePath, "auth/") {
		errs = append(errs, fmt.Errorf("setting %s: %q is not an auth mount path (e.g. approle, without auth/)", EnvAppRolePath, quoted(c.AppRolePath)))
	}
	if c.Namespace != "" {
		if err := validNamespace(c.Namespace); err != nil {
			errs = append(errs, fmt.Errorf("setting %s: %w", EnvNamespace, err))
		}
	}
	return errors.Join(errs...)
}

func validAddr(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%q is not a URL", quoted(s))
	}
	switch u.Scheme {
	case "http", "https":
		if u.Host == "" {
			return fmt.Errorf("%q has no host (e.g. https://vault.example.com:8200)", quoted(s))
		}
	case "unix":
	default:
		return fmt.Errorf("%q: use an http://, https:// or unix:// address", quoted(s))
	}
	return nil
}

// identityDir is where an identity's credentials live.
func (c Config) identityDir(name string) string {
	return filepath.Join(c.IdentitiesDir, name)
}
