// Package azure is the "azure" backend: it reads secrets from Azure Key
// Vault with a client of its own (keyvault.go: the REST API's Get Secret;
// entra.go: Microsoft Entra ID's token flows). It replaced the official SDK
// (azsecrets, azidentity, MSAL), which cost the plugin 1.4 MiB of binary
// and more than 1 MiB of resident memory (issue 19), and keeps its
// protocol: the api-version, the challenge, the retries, the token cache.
//
// A secret is named by its URL, https://VAULT.vault.azure.net/secrets/NAME
// with an optional /VERSION, or by its NAME in the vault of the
// AZURE_KEYVAULT_URL plugin setting; the version-id option pins a version.
// The current version is read otherwise. A disabled version, and one that
// has expired or is not valid yet (the exp and nbf attributes, which Key
// Vault leaves to its readers), is an error of its own, never a file.
//
// Credentials: see Credentials. The vault tells the client in its 401
// challenge which tenant and resource to ask a token for; the client checks
// that the resource is the vault's own domain, except for a vault addressed
// by a loopback IP address (a local emulator), whose address no resource
// name can match.
package azure

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/dsv-plugin/dsv/secrets"
)

// Name is the backend's registry name, the value of the backend option.
const Name = "azure"

// API is the Key Vault client narrowed to the one call the backend makes,
// so that tests can inject a fake.
type API interface {
	GetSecret(ctx context.Context, name, version string) (Secret, error)
}

// Config configures the backend.
type Config struct {
	// DefaultVault is the AZURE_KEYVAULT_URL plugin setting: the vault of
	// secrets named without a URL. Empty: every secret option is a URL.
	DefaultVault string
	// Credentials says where the identity comes from.
	Credentials Credentials
	// AuthorityHost is Microsoft Entra's URL (AZURE_AUTHORITY_HOST); empty
	// is the public cloud's, https://login.microsoftonline.com/.
	AuthorityHost string
	// CAFile, when set, names PEM certificates trusted besides the
	// system's, for the vault and Entra (AZURE_CA_FILE): a TLS-inspecting
	// proxy's CA, or a test's.
	CAFile string
}

// Validate checks the plugin-wide settings, every problem at once.
func (c Config) Validate() error {
	var errs []error
	if c.DefaultVault != "" {
		if _, err := ParseVaultURL(c.DefaultVault); err != nil {
			errs = append(errs, fmt.Errorf("setting AZURE_KEYVAULT_URL: %w", err))
		}
	}
	if c.AuthorityHost != "" {
		if u, err := url.Parse(c.AuthorityHost); err != nil || u.Scheme != "https" || u.Host == "" {
			errs = append(errs, fmt.Errorf("setting AZURE_AUTHORITY_HOST: %q is not a https:// URL", quoted(c.AuthorityHost)))
		}
	}
	return errors.Join(errs...)
}

// Driver is the azure backend. It is safe for concurrent use; it keeps one
// client per vault, all sharing one credential.
type Driver struct {
	defaultVault string
	log          zerolog.Logger
	newClient    func(vaultURL string) (API, error)

	mu      sync.Mutex
	clients map[string]API // by vault URL
}

var (
	_ secrets.SecretStoreDriver = (*Driver)(nil)
	_ secrets.Canonicalizer     = (*Driver)(nil)
)

// Option changes how New builds the backend; tests use them.
type Option func(*options)

type options struct {
	newClient func(vaultURL string) (API, error)
	dial      func(ctx context.Context, network, addr string) (net.Conn, error)
}

// WithClient replaces the client of a vault URL (a fake).
func WithClient(f func(vaultURL string) (API, error)) Option {
	return func(o *options) { o.newClient = f }
}

// WithDial replaces the HTTP transport's dialer: tests route the managed
// identity endpoint's fixed address to a local server.
func WithDial(f func(ctx context.Context, network, addr string) (net.Conn, error)) Option {
	return func(o *options) { o.dial = f }
}

// New returns the azure backend. cfg comes from ConfigFromEnv, which
// validated it. New reads Config.CAFile; the credential files are read at
// the first fetch. log receives debug logs of fetches, never values.
func New(cfg Config, log zerolog.Logger, opts ...Option) (*Driver, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	d := &Driver{
		log:       log.With().Str("component", Name).Logger(),
		newClient: o.newClient,
		clients:   make(map[string]API),
	}
	if cfg.DefaultVault != "" {
		v, err := ParseVaultURL(cfg.DefaultVault)
		if err != nil {
			return nil, fmt.Errorf("setting AZURE_KEYVAULT_URL: %w", err)
		}
		d.defaultVault = v
	}
	if d.newClient == nil {
		extra, err := readCAFile(cfg.CAFile)
		if err != nil {
			return nil, err
		}
		authority := cfg.AuthorityHost
		if authority == "" {
			authority = DefaultAuthorityHost
		}
		// Built at the first fetch: the transport and the system's CA
		// pool cost memory that a plugin without azure volumes should
		// not pay.
		var (
			once sync.Once
			hc   *http.Client
			cred *chain
		)
		d.newClient = func(vaultURL string) (API, error) {
			once.Do(func() {
				hc = httpClient(extra, o.dial)
				cred = newChain(cfg.Credentials, hc, authority)
			})
			return newVaultClient(vaultURL, hc, cred), nil
		}
	}
	return d, nil
}

// readCAFile reads the certificates of Config.CAFile, if set.
func readCAFile(file string) ([]*x509.Certificate, error) {
	if file == "" {
		return nil, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("setting AZURE_CA_FILE: %w", err)
	}
	var certs []*x509.Certificate
	for {
		var blk *pem.Block
		if blk, b = pem.Decode(b); blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("setting AZURE_CA_FILE: %s: %w", file, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("setting AZURE_CA_FILE: %s holds no PEM certificate", file)
	}
	return certs, nil
}

// httpClient is the client of the vaults, Entra ID and IMDS: TLS 1.2 or
// later, trusting extra CAs besides the system's. It has no timeout: every
// request's context has the fetch's.
func httpClient(extra []*x509.Certificate, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if len(extra) > 0 {
		roots, err := x509.SystemCertPool()
		if err != nil {
			roots = x509.NewCertPool()
		}
		for _, c := range extra {
			roots.AddCert(c)
		}
		tr.TLSClientConfig.RootCAs = roots
	}
	if dial != nil {
		tr.DialContext = dial
	}
	tr.MaxIdleConnsPerHost = 4
	tr.IdleConnTimeout = 90 * time.Second
	return &http.Client{Transport: tr}
}

// loopback reports whether a vault URL's host is a loopback IP address.
func loopback(vaultURL string) bool {
	u, err := url.Parse(vaultURL)
	if err != nil {
		return false
	}
	ip := net.ParseIP(u.Hostname())
	return ip != nil && ip.IsLoopback()
}

// Name returns "azure".
func (d *Driver) Name() string { return Name }

// Canonical returns the secret's URL without version, which ALLOW
// patterns match: azure:https://prod.vault.azure.net/secrets/app-*.
func (d *Driver) Canonical(_ context.Context, ref secrets.Ref) (string, error) {
	loc, err := locate(ref, d.defaultVault)
	if err != nil {
		return "", err
	}
	return loc.canonical(), nil
}

// Errors of a version that must not be read. Their class is
// secrets.ErrBadValue.
var (
	ErrDisabled = errors.New("the secret version is disabled")
	ErrExpired  = errors.New("the secret version has expired")
	ErrNotYet   = errors.New("the secret version is not valid yet")
)

// Fetch reads one version of a secret. Errors are *secrets.Error.
func (d *Driver) Fetch(ctx context.Context, ref secrets.Ref) (secrets.Secret, error) {
	loc, err := locate(ref, d.defaultVault)
	if err != nil {
		// Validated at create; a setting changed since (AZURE_KEYVAULT_URL).
		return secrets.Secret{}, secrets.Fail(ref, secrets.ErrNotFound, "", err)
	}
	log := d.log.With().Str("vault", loc.Vault).Str("secret", loc.Name).Str("version", loc.Version).Logger()
	client, err := d.client(loc.Vault)
	if err != nil {
		return secrets.Secret{}, secrets.Fail(ref, secrets.ErrUnavailable, "", err)
	}
	log.Debug().Msg("fetching")
	resp, err := client.GetSecret(ctx, loc.Name, loc.Version)
	if err != nil {
		err := classify(ctx, ref, loc, err)
		log.Debug().Err(err).Msg("fetch failed")
		return secrets.Secret{}, err
	}
	if err := usable(ref, resp.Attributes, time.Now()); err != nil {
		return secrets.Secret{}, err
	}
	if resp.Value == nil {
		return secrets.Secret{}, secrets.Fail(ref, secrets.ErrBadValue, "the vault returned no value", nil)
	}
	value := []byte(*resp.Value)
	if ref.Key != "" {
		if value, err = secrets.ExtractKey(ref, value); err != nil {
			return secrets.Secret{}, err
		}
	}
	version := loc.Version
	if v := resp.Version(); v != "" {
		version = v
	}
	log.Debug().Str("read", version).Msg("fetched")
	return secrets.Secret{Value: value, Version: version}, nil
}

// usable refuses a disabled version, and one outside its validity period.
func usable(ref secrets.Ref, a *Attributes, now time.Time) error {
	if a == nil {
		return nil
	}
	switch {
	case a.Enabled != nil && !*a.Enabled:
		return secrets.Fail(ref, secrets.ErrBadValue, hintDisabled, ErrDisabled)
	case a.Expires != nil && !now.Before(*a.Expires):
		return secrets.Fail(ref, secrets.ErrBadValue, "it expired at "+a.Expires.UTC().Format(time.RFC3339)+"; store a new version, or move its expiry date", ErrExpired)
	case a.NotBefore != nil && now.Before(*a.NotBefore):
		return secrets.Fail(ref, secrets.ErrBadValue, "it is valid from "+a.NotBefore.UTC().Format(time.RFC3339), ErrNotYet)
	}
	return nil
}

// client returns the cached client of a vault, building it on first use.
// Building reads nothing: the credential is shared and lazy.
func (d *Driver) client(vault string) (API, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if c, ok := d.clients[vault]; ok {
		return c, nil
	}
	c, err := d.newClient(vault)
	if err != nil {
		return nil, err
	}
	d.clients[vault] = c
	return c, nil
}
