package azure

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/pkcs12"
)

// The token flows of Microsoft Entra ID the backend uses, each a
// tokenSource: the OAuth 2.0 client credentials grant on the v2.0 token
// endpoint with a client secret, a certificate's signed assertion or a
// federated token (https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow),
// and the managed identity endpoint of IMDS.

// tokenSource gets tokens of one identity for a scope (RESOURCE/.default)
// in a tenant ("" for the identity's own).
type tokenSource interface {
	getToken(ctx context.Context, scope, tenant string) (accessToken, error)
}

// DefaultAuthorityHost is Microsoft Entra ID's host in the public cloud.
const DefaultAuthorityHost = "https://login.microsoftonline.com/"

// httpError is an error answer of Entra ID or IMDS: its status and, when
// the body is OAuth's error JSON, its code and description.
type httpError struct {
	status      int
	url         string
	code        string // "invalid_client"
	description string
}

func (e *httpError) Error() string {
	if e.code != "" || e.description != "" {
		return fmt.Sprintf("HTTP %d: %s: %s", e.status, e.code, e.description)
	}
	return fmt.Sprintf("HTTP %d from %s", e.status, e.url)
}

// newHTTPError reads an error answer. Entra's body is {"error",
// "error_description", "error_codes", ...}; IMDS's {"error",
// "error_description"} or {"message"}.
func newHTTPError(a *answer) *httpError {
	e := &httpError{status: a.status, url: a.url}
	var body struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
		Message     string `json:"message"`
	}
	if json.Unmarshal(a.body, &body) == nil {
		e.code, e.description = body.Error, body.Description
		if e.description == "" {
			e.description = body.Message
		}
	}
	return e
}

// entra posts token requests to an authority's v2.0 token endpoint,
// AUTHORITY/TENANT/oauth2/v2.0/token, the endpoint every Entra cloud's
// OpenID configuration names; the SDK looked it up there first.
type entra struct {
	http      *http.Client
	authority string // without a trailing slash
}

func (e *entra) tokenURL(tenant string) string {
	return e.authority + "/" + url.PathEscape(tenant) + "/oauth2/v2.0/token"
}

// request posts a client credentials grant and reads the token.
func (e *entra) request(ctx context.Context, tenant string, form url.Values) (accessToken, error) {
	u, body := e.tokenURL(tenant), form.Encode()
	start := time.Now()
	a, err := httpRetry.do(ctx, func(ctx context.Context) (*answer, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(body))
		if err != nil {
			return nil, &finalError{err}
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Accept", "application/json")
		return roundTrip(e.http, req)
	})
	if err != nil {
		return accessToken{}, err
	}
	return tokenOf(a, start)
}

// servicePrincipal is an application of a tenant that proves itself with
// a secret, a certificate or a federated token.
type servicePrincipal struct {
	entra            *entra
	tenant, clientID string
	// secret is the client secret; or cert and key sign an assertion; or
	// assertionFile holds a federated token, read at each token request
	// (the identity's issuer rotates it).
	secret        string
	cert          *x509.Certificate
	key           *rsa.PrivateKey
	assertionFile string

	tokens tokenSet
}

// errOtherTenant is a vault whose challenge names another tenant than the
// service principal's, for which the SDK, too, refused a token.
type errOtherTenant struct{ vault, ours string }

func (e *errOtherTenant) Error() string {
	return fmt.Sprintf("the vault's challenge names tenant %q, not the AZURE_TENANT_ID setting's %q", e.vault, e.ours)
}

func (s *servicePrincipal) getToken(ctx context.Context, scope, tenant string) (accessToken, error) {
	if tenant != "" && !strings.EqualFold(tenant, s.tenant) {
		return accessToken{}, &errOtherTenant{vault: tenant, ours: s.tenant}
	}
	return s.tokens.cache(scope).get(ctx, func(ctx context.Context) (accessToken, error) {
		form := url.Values{"grant_type": {"client_credentials"}, "client_id": {s.clientID}, "scope": {scope}}
		switch {
		case s.secret != "":
			form.Set("client_secret", s.secret)
		case s.key != nil:
			jwt, err := s.assertion()
			if err != nil {
				return accessToken{}, err
			}
			form.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
			form.Set("client_assertion", jwt)
		default:
			b, err := os.ReadFile(s.assertionFile)
			if err != nil {
				return accessToken{}, err
			}
			tok := strings.TrimSpace(string(b))
			if tok == "" {
				return accessToken{}, errors.New("the file is empty")
			}
			form.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
			form.Set("client_assertion", tok)
		}
		return s.entra.request(ctx, s.tenant, form)
	})
}

// assertion is the certificate credential's signed JWT
// (https://learn.microsoft.com/entra/identity-platform/certificate-credentials):
// PS256, the certificate's SHA-256 thumbprint as x5t#S256, the token
// endpoint as audience, valid ten minutes as MSAL makes it.
func (s *servicePrincipal) assertion() (string, error) {
	b64 := base64.RawURLEncoding
	thumb := sha256.Sum256(s.cert.Raw)
	head, err := json.Marshal(map[string]string{"alg": "PS256", "typ": "JWT", "x5t#S256": b64.EncodeToString(thumb[:])})
	if err != nil {
		return "", err
	}
	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return "", err
	}
	now := time.Now()
	claims, err := json.Marshal(map[string]any{
		"aud": s.entra.tokenURL(s.tenant), "iss": s.clientID, "sub": s.clientID,
		"jti": fmt.Sprintf("%x", jti), "nbf": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(),
	})
	if err != nil {
		return "", err
	}
	unsigned := b64.EncodeToString(head) + "." + b64.EncodeToString(claims)
	digest := sha256.Sum256([]byte(unsigned))
	sig, err := rsa.SignPSS(rand.Reader, s.key, crypto.SHA256, digest[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	if err != nil {
		return "", err
	}
	return unsigned + "." + b64.EncodeToString(sig), nil
}

// parseCertificate reads a client certificate file as azidentity's
// ParseCertificates did: PEM blocks (CERTIFICATE, and one PRIVATE KEY in
// PKCS#8 or PKCS#1 or RSA PRIVATE KEY), else PKCS#12 without password. The
// certificate used is the one whose key is the private key's; Entra ID
// takes RSA keys only. Messages never quote the file.
func parseCertificate(data []byte) (*x509.Certificate, *rsa.PrivateKey, error) {
	var blocks []*pem.Block
	for rest := data; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		blocks = append(blocks, b)
	}
	if len(blocks) == 0 {
		var err error
		if blocks, err = pkcs12.ToPEM(data, ""); err != nil {
			return nil, nil, fmt.Errorf("not a PEM certificate and unencrypted key, nor a PKCS#12 file without password: %w", err)
		}
	}
	var certs []*x509.Certificate
	var key crypto.PrivateKey
	for _, b := range blocks {
		switch b.Type {
		case "CERTIFICATE":
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, nil, fmt.Errorf("a certificate: %w", err)
			}
			certs = append(certs, c)
		case "PRIVATE KEY", "RSA PRIVATE KEY":
			if key != nil {
				return nil, nil, errors.New("the file holds more than one private key")
			}
			k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
			if err != nil {
				k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
			}
			if err != nil {
				return nil, nil, errors.New("the private key is neither PKCS#8 nor PKCS#1 (an encrypted key is not supported)")
			}
			key = k
		}
	}
	rk, ok := key.(*rsa.PrivateKey)
	switch {
	case len(certs) == 0:
		return nil, nil, errors.New("the file holds no certificate")
	case key == nil:
		return nil, nil, errors.New("the file holds no private key")
	case !ok:
		return nil, nil, errors.New("the private key is not an RSA key, which Microsoft Entra ID requires")
	}
	for _, c := range certs {
		if pub, ok := c.PublicKey.(*rsa.PublicKey); ok && pub.Equal(&rk.PublicKey) {
			return c, rk, nil
		}
	}
	return nil, nil, errors.New("no certificate in the file is the private key's")
}

// Managed identity endpoints, as azidentity (MSAL's managedidentity
// package) found and called them.
const (
	// imdsToken is IMDS's
	// (https://learn.microsoft.com/entra/identity/managed-identities-azure-resources/how-to-use-vm-token#get-a-token-using-http).
	imdsToken = "http://169.254.169.254/metadata/identity/oauth2/token"
	// arcToken is Azure Arc's agent's when IDENTITY_ENDPOINT is unset;
	// arcHimds is the agent's binary, whose presence says Arc;
	// arcTokens is the folder of the key files its challenge names
	// (https://learn.microsoft.com/azure/azure-arc/servers/managed-identity-authentication).
	arcToken     = "http://127.0.0.1:40342/metadata/identity/oauth2/token"
	arcHimds     = "/opt/azcmagent/bin/himds"
	arcTokens    = "/var/opt/azcmagent/tokens"
	arcMaxSecret = 4096
)

// Kinds of managed identity endpoint.
const (
	kindIMDS       = "IMDS"
	kindAppService = "App Service"
	kindArc        = "Azure Arc"
)

// managedIdentity gets tokens of the host's managed identity: the
// system-assigned one, or the user-assigned one of clientID.
type managedIdentity struct {
	http     *http.Client
	clientID string
	kind     string
	endpoint string
	// header is App Service's IDENTITY_HEADER; arcTokens the folder an
	// Arc challenge's key file must be in.
	header    string
	arcTokens string
	tokens    tokenSet
}

// newManagedIdentity picks the endpoint as MSAL did: App Service's when
// IDENTITY_ENDPOINT and IDENTITY_HEADER are set, else Azure Arc's when
// IDENTITY_ENDPOINT and IMDS_ENDPOINT are or the Arc agent is installed,
// else IMDS. (MSAL also knew Service Fabric, Cloud Shell and Azure Machine
// Learning, hosts where no Docker engine runs a plugin.)
func newManagedIdentity(creds Credentials, hc *http.Client) *managedIdentity {
	m := &managedIdentity{http: hc, clientID: creds.ClientID, kind: kindIMDS, endpoint: imdsToken}
	_, err := os.Stat(arcHimds)
	switch {
	case creds.IdentityEndpoint != "" && creds.IdentityHeader != "":
		m.kind, m.endpoint, m.header = kindAppService, creds.IdentityEndpoint, creds.IdentityHeader
	case creds.IdentityEndpoint != "" && creds.ArcIMDSEndpoint != "" || err == nil:
		m.kind, m.endpoint, m.arcTokens = kindArc, creds.IdentityEndpoint, arcTokens
		if m.endpoint == "" {
			m.endpoint = arcToken
		}
	}
	return m
}

func (m *managedIdentity) getToken(ctx context.Context, scope, _ string) (accessToken, error) {
	return m.tokens.cache(scope).get(ctx, func(ctx context.Context) (accessToken, error) {
		u, err := url.Parse(m.endpoint)
		if err != nil {
			return accessToken{}, fmt.Errorf("%s endpoint %q: %w", m.kind, m.endpoint, err)
		}
		q := u.Query()
		q.Set("resource", strings.TrimSuffix(scope, "/.default"))
		if m.clientID != "" {
			q.Set("client_id", m.clientID)
		}
		policy := httpRetry
		switch m.kind {
		case kindIMDS:
			q.Set("api-version", "2018-02-01")
			policy = imdsRetry
		case kindAppService:
			q.Set("api-version", "2019-08-01")
		case kindArc:
			q.Set("api-version", "2020-06-01")
		}
		u.RawQuery = q.Encode()
		start := time.Now()
		auth := ""
		if m.kind == kindArc {
			if auth, err = m.arcSecret(ctx, u.String()); err != nil {
				return accessToken{}, err
			}
		}
		a, err := policy.do(ctx, func(ctx context.Context) (*answer, error) { return m.send(ctx, u.String(), auth) })
		if err != nil {
			return accessToken{}, err
		}
		t, err := tokenOf(a, start)
		if err != nil {
			return accessToken{}, err
		}
		if m.kind == kindArc && m.clientID != "" {
			// An Arc agent without user-assigned identities answers
			// with the system-assigned one: MSAL accepts the token
			// only when the answer names the identity asked for.
			var echo struct {
				ClientID string `json:"client_id"`
			}
			if json.Unmarshal(a.body, &echo) != nil || !strings.EqualFold(echo.ClientID, m.clientID) {
				return accessToken{}, errors.New("the Azure Arc agent did not confirm the user-assigned identity of AZURE_CLIENT_ID; it may not support user-assigned identities")
			}
		}
		return t, nil
	})
}

func (m *managedIdentity) send(ctx context.Context, u, auth string) (*answer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, &finalError{err}
	}
	switch m.kind {
	case kindAppService:
		req.Header.Set("X-IDENTITY-HEADER", m.header)
	default:
		req.Header.Set("Metadata", "true")
	}
	if auth != "" {
		req.Header.Set("Authorization", "Basic "+auth)
	}
	return roundTrip(m.http, req)
}

// arcSecret asks Azure Arc's agent for a token without a secret: its 401
// challenge, WWW-Authenticate: Basic realm=FILE, names a key file only the
// agent's group (and root) can read, whose contents are the secret. The
// file must be a .key file in the agent's folder, of at most 4 KiB, as
// MSAL checks: the endpoint must not make the plugin read another file.
func (m *managedIdentity) arcSecret(ctx context.Context, u string) (string, error) {
	a, err := m.send(ctx, u, "")
	if err != nil {
		return "", err
	}
	if a.status != http.StatusUnauthorized {
		return "", &httpError{status: a.status, url: a.url, description: "the Azure Arc agent did not answer with its challenge (HTTP 401)"}
	}
	_, file, ok := strings.Cut(a.header.Get("WWW-Authenticate"), "Basic realm=")
	file = strings.TrimSpace(file)
	switch {
	case !ok:
		return "", errors.New("the Azure Arc agent's challenge names no key file")
	case filepath.Dir(file) != m.arcTokens || filepath.Ext(file) != ".key":
		return "", fmt.Errorf("the Azure Arc agent's challenge names %q, not a .key file in %s", file, m.arcTokens)
	}
	fi, err := os.Stat(file)
	if err != nil {
		return "", err
	}
	if fi.Size() > arcMaxSecret {
		return "", fmt.Errorf("the Azure Arc key file %s is larger than %d bytes", file, arcMaxSecret)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// tokenOf reads a token endpoint's answer: the token of a 200, else the
// endpoint's error.
func tokenOf(a *answer, start time.Time) (accessToken, error) {
	if a.status != http.StatusOK {
		return accessToken{}, newHTTPError(a)
	}
	t, err := parseToken(a.body, start)
	if err != nil {
		return accessToken{}, &httpError{status: a.status, url: a.url, description: err.Error()}
	}
	return t, nil
}
