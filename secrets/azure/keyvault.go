package azure

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// apiVersion is the Key Vault REST API version of the requests, the one
// azsecrets v1.5.1 sent.
const apiVersion = "2026-04-01"

// Secret is a secret bundle, as Get Secret answers it
// (https://learn.microsoft.com/rest/api/keyvault/secrets/get-secret):
// Value is nil when the answer had none.
type Secret struct {
	Value       *string
	ID          string // https://VAULT/secrets/NAME/VERSION
	ContentType string
	Attributes  *Attributes
}

// Attributes are a version's attributes; nil fields were absent.
type Attributes struct {
	Enabled   *bool
	Expires   *time.Time // exp
	NotBefore *time.Time // nbf
	Updated   *time.Time
}

// Version is the version part of the bundle's id, "" if it has none.
func (s Secret) Version() string {
	u, err := url.Parse(s.ID)
	if err != nil {
		return ""
	}
	if p := strings.Split(strings.TrimPrefix(u.Path, "/"), "/"); len(p) >= 3 {
		return p[2]
	}
	return ""
}

// unixTime is a time in seconds since the epoch, as Key Vault's
// attributes carry them.
type unixTime struct{ flexInt }

func (t *unixTime) time() *time.Time {
	if t == nil {
		return nil
	}
	v := time.Unix(int64(t.flexInt), 0).UTC()
	return &v
}

// errMalformed is an answer that is not a secret bundle. The decoder's
// message is dropped: it could quote the value.
var errMalformed = errors.New("the vault's answer is not a secret bundle")

func parseBundle(body []byte) (Secret, error) {
	var b struct {
		Value       *string `json:"value"`
		ID          string  `json:"id"`
		ContentType string  `json:"contentType"`
		Attributes  *struct {
			Enabled *bool     `json:"enabled"`
			Exp     *unixTime `json:"exp"`
			Nbf     *unixTime `json:"nbf"`
			Updated *unixTime `json:"updated"`
		} `json:"attributes"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		return Secret{}, errMalformed
	}
	s := Secret{Value: b.Value, ID: b.ID, ContentType: b.ContentType}
	if a := b.Attributes; a != nil {
		s.Attributes = &Attributes{Enabled: a.Enabled, Expires: a.Exp.time(), NotBefore: a.Nbf.time(), Updated: a.Updated.time()}
	}
	return s, nil
}

// credential gets the tokens the vault asks for: the chain.
type credential interface {
	GetToken(ctx context.Context, scope, tenant string) (accessToken, error)
}

// vaultClient reads the secrets of one vault with Key Vault's REST API. Its
// first request goes without a token: the vault's 401 challenge names the
// tenant and the resource to get one for
// (https://learn.microsoft.com/azure/key-vault/general/authentication-requests-and-responses#authentication).
// Its token is kept, as the SDK's BearerTokenPolicy keeps it, until due
// for renewal or refused. Safe for concurrent use.
type vaultClient struct {
	vault string // https://HOST[:PORT]
	http  *http.Client
	cred  credential
	// verify: the challenge's resource must be the vault's domain (a
	// vault on a loopback IP address, an emulator, is exempt).
	verify bool
	tokens *tokenCache

	mu            sync.Mutex
	scope, tenant string // from the last challenge
}

var _ API = (*vaultClient)(nil)

func newVaultClient(vault string, hc *http.Client, cred credential) *vaultClient {
	return &vaultClient{vault: vault, http: hc, cred: cred, verify: !loopback(vault), tokens: newTokenCache()}
}

// GetSecret reads a version of a secret ("" for the current one), retrying
// what is retryable. Errors are *responseError (the vault's answer),
// *CredentialError (no token), *challengeError, or the transport's.
func (c *vaultClient) GetSecret(ctx context.Context, name, version string) (Secret, error) {
	u := c.vault + "/secrets/" + url.PathEscape(name)
	if version != "" {
		u += "/" + url.PathEscape(version)
	}
	u += "?api-version=" + apiVersion
	a, err := httpRetry.do(ctx, func(ctx context.Context) (*answer, error) { return c.try(ctx, u) })
	if err != nil {
		return Secret{}, err
	}
	if a.status != http.StatusOK {
		return Secret{}, newResponseError(a.status, a.header, a.body)
	}
	return parseBundle(a.body)
}

// try sends one GET with the token, or without one before the first
// challenge; a 401 with a challenge is answered once, with a new token.
func (c *vaultClient) try(ctx context.Context, u string) (*answer, error) {
	c.mu.Lock()
	scope, tenant := c.scope, c.tenant
	c.mu.Unlock()
	auth := ""
	if scope != "" {
		tok, err := c.token(ctx, scope, tenant)
		if err != nil {
			return nil, &finalError{err}
		}
		auth = tok
	}
	a, err := c.get(ctx, u, auth)
	if err != nil || a.status != http.StatusUnauthorized {
		return a, err
	}
	c.tokens.expire()
	if a.header.Get("WWW-Authenticate") == "" {
		return a, nil
	}
	scope, tenant, err = c.challenge(a.header.Values("WWW-Authenticate"))
	if err != nil {
		return nil, &finalError{err}
	}
	c.mu.Lock()
	c.scope, c.tenant = scope, tenant
	c.mu.Unlock()
	tok, err := c.token(ctx, scope, tenant)
	if err != nil {
		return nil, &finalError{err}
	}
	return c.get(ctx, u, tok)
}

func (c *vaultClient) token(ctx context.Context, scope, tenant string) (string, error) {
	t, err := c.tokens.get(ctx, func(ctx context.Context) (accessToken, error) { return c.cred.GetToken(ctx, scope, tenant) })
	return t.token, err
}

func (c *vaultClient) get(ctx context.Context, u, token string) (*answer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, &finalError{err}
	}
	req.Header.Set("Accept", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return roundTrip(c.http, req)
}

// challengeError is a challenge the client does not follow.
type challengeError struct{ msg string }

func (e *challengeError) Error() string { return e.msg }

// authParams reads the auth-params of WWW-Authenticate headers (RFC 9110
// section 11.6.1): name=value pairs, the value quoted or not, separated by
// commas or spaces; the scheme is skipped. Parsed by hand: a package-level
// regexp is compiled at every start of the plugin, azure volumes or not.
func authParams(headers []string) map[string]string {
	params := map[string]string{}
	for _, h := range headers {
		for s := h; ; {
			s = strings.TrimLeft(s, " ,\t")
			i := strings.IndexAny(s, "= ,\t")
			if i < 0 {
				break
			}
			if s[i] != '=' { // the scheme
				s = s[i:]
				continue
			}
			name, v := strings.ToLower(s[:i]), s[i+1:]
			if rest, ok := strings.CutPrefix(v, `"`); ok {
				v, s, _ = strings.Cut(rest, `"`)
			} else {
				j := strings.IndexAny(v, " ,\t")
				if j < 0 {
					j = len(v)
				}
				v, s = v[:j], v[j:]
			}
			params[name] = v
		}
	}
	return params
}

// challenge reads a Bearer challenge: authorization (the authority URL,
// whose path is the tenant) and scope, or resource (a scope without
// /.default). The resource's host must be a parent domain of the vault's:
// a vault of vault.azure.net gets a token for https://vault.azure.net, and
// no other host can ask this client for one.
func (c *vaultClient) challenge(headers []string) (scope, tenant string, err error) {
	params := authParams(headers)
	scope = params["scope"]
	if scope == "" {
		scope = params["resource"]
	}
	if scope == "" {
		return "", "", &challengeError{"the vault's authentication challenge names no resource"}
	}
	if c.verify {
		r, err := url.Parse(scope)
		v, _ := url.Parse(c.vault)
		if err != nil || r.Hostname() == "" || v == nil ||
			!strings.HasSuffix(strings.ToLower(v.Hostname()), "."+strings.ToLower(r.Hostname())) {
			return "", "", &challengeError{fmt.Sprintf("challenge resource %q doesn't match the vault's domain %q", scope, v.Hostname())}
		}
	}
	if !strings.HasSuffix(scope, "/.default") {
		scope = strings.TrimSuffix(scope, "/") + "/.default"
	}
	if a, err := url.Parse(params["authorization"]); err == nil {
		tenant, _, _ = strings.Cut(strings.TrimPrefix(a.Path, "/"), "/")
	}
	return scope, tenant, nil
}
