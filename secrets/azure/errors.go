package azure

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/dsv-plugin/dsv/secrets"
)

// Hints, one per thing the user can fix.
const (
	hintNoCredentials = "no Azure credentials: put a client-secret, client-certificate.pem or federated-token file in the plugin's credentials mount (azure/), with the AZURE_TENANT_ID and AZURE_CLIENT_ID settings, or run on an Azure VM with a managed identity"
	hintNoIdentity    = "set the AZURE_TENANT_ID and AZURE_CLIENT_ID plugin settings to the service principal's tenant and application (client) id"
	hintRefused       = "Microsoft Entra ID refused the credentials; check the file in the credentials mount and the AZURE_TENANT_ID and AZURE_CLIENT_ID settings"
	hintManaged       = "this Azure VM's managed identity gave no token; assign the VM an identity (and set AZURE_CLIENT_ID for a user-assigned one), or put credentials in the plugin's credentials mount"
	hintNotAzure      = "no Azure credentials, and this host is not an Azure VM (no Instance Metadata Service answered at 169.254.169.254): put a client-secret, client-certificate.pem or federated-token file in the plugin's credentials mount (azure/), with the AZURE_TENANT_ID and AZURE_CLIENT_ID settings"
	hintNotAzureOther = "no Azure credentials, and this host is not an Azure VM (the server at 169.254.169.254 is not Azure's Instance Metadata Service): put a client-secret, client-certificate.pem or federated-token file in the plugin's credentials mount (azure/), with the AZURE_TENANT_ID and AZURE_CLIENT_ID settings"
	hintBadFile       = "the credential file in the plugin's credentials mount could not be used; fix or replace it"
	hintAccessDenied  = "the identity may not read this secret: grant it the secrets/get permission in the vault's access policy, or the \"Key Vault Secrets User\" role on the vault or the secret (Azure RBAC)"
	hintFirewall      = "the vault's firewall refused the host's address; allow it in the vault's networking settings, or use a private endpoint"
	hintToken         = "the vault refused the token; check that AZURE_TENANT_ID is the vault's tenant"
	hintChallenge     = "the vault's authentication challenge names another domain than the vault URL's; check the vault URL (https://VAULT.vault.azure.net)"
	hintNotFound      = "check the secret name, the vault URL and the version-id option; a deleted secret can be recovered in Key Vault"
	hintBadRequest    = "the vault rejected the request; check the secret and version-id options"
	hintDisabled      = "enable the version in Key Vault, or pin an enabled one with version-id"
	hintThrottled     = "Key Vault throttled the request, also when tried again until TIMEOUT; read less often: raise CACHE_TTL or the refresh interval, or lower STORE_CONCURRENCY"
	hintTenant        = "the vault is in another Microsoft Entra tenant than the service principal; set AZURE_TENANT_ID to the vault's tenant"
	hintServer        = "the vault failed; try again later"
	hintUnreachable   = "could not reach the vault; check the host's network and DNS, and the vault URL"
	hintEntra         = "could not reach Microsoft Entra ID for a token; check the host's network and DNS, and AZURE_AUTHORITY_HOST"
	hintTLS           = "the server's TLS certificate is not trusted; a TLS-inspecting proxy's CA goes in the AZURE_CA_FILE setting"
)

// classify turns a GetSecret failure into a *secrets.Error. Causes are
// kept short and on one line. None carries the secret value (a failed read
// has none).
func classify(ctx context.Context, ref secrets.Ref, loc location, err error) error {
	var ce *CredentialError
	if errors.As(err, &ce) {
		return classifyCredential(ctx, ref, ce)
	}
	if e := secrets.FromContext(ctx, ref); e != nil {
		return e
	}
	var re *responseError
	if errors.As(err, &re) {
		return classifyResponse(ref, re)
	}
	var ch *challengeError
	if errors.As(err, &ch) {
		return secrets.Fail(ref, secrets.ErrAccessDenied, hintChallenge, ch)
	}
	if tlsError(err) {
		return secrets.Fail(ref, secrets.ErrUnavailable, hintTLS, errors.New(firstLine(err.Error())))
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return secrets.Fail(ref, secrets.ErrUnavailable, hintUnreachable, err)
	}
	return secrets.Fail(ref, secrets.ErrUnavailable, "", errors.New(firstLine(err.Error())))
}

func classifyCredential(ctx context.Context, ref secrets.Ref, ce *CredentialError) error {
	cause := &CredentialError{Source: ce.Source, File: ce.File, Err: errors.New(credentialCause(ce.Err))}
	if ce.Source == sourceManaged {
		// Blame the managed identity only on an Azure VM; elsewhere
		// nothing was configured.
		switch ce.IMDS {
		case IMDSAzure:
			return secrets.Fail(ref, secrets.ErrAccessDenied, hintManaged, cause)
		case IMDSOther:
			return secrets.Fail(ref, secrets.ErrAccessDenied, hintNotAzureOther, cause)
		case IMDSAbsent:
			return secrets.Fail(ref, secrets.ErrAccessDenied, hintNotAzure, cause)
		}
		var he *httpError
		if errors.As(ce.Err, &he) {
			return secrets.Fail(ref, secrets.ErrAccessDenied, hintManaged, cause)
		}
		return secrets.Fail(ref, secrets.ErrAccessDenied, hintNoCredentials, cause)
	}
	if errors.Is(ce.Err, errNoIdentity) {
		return secrets.Fail(ref, secrets.ErrAccessDenied, hintNoIdentity, cause)
	}
	var ot *errOtherTenant
	if errors.As(ce.Err, &ot) {
		return secrets.Fail(ref, secrets.ErrAccessDenied, hintTenant, cause)
	}
	if e := secrets.FromContext(ctx, ref); e != nil {
		return e
	}
	var he *httpError
	if errors.As(ce.Err, &he) {
		if he.status >= 500 || he.status == http.StatusTooManyRequests {
			return secrets.Fail(ref, secrets.ErrUnavailable, "Microsoft Entra ID failed; try again later", cause)
		}
		return secrets.Fail(ref, secrets.ErrAccessDenied, hintRefused, cause)
	}
	if tlsError(ce.Err) {
		return secrets.Fail(ref, secrets.ErrUnavailable, hintTLS, cause)
	}
	var netErr net.Error
	if errors.As(ce.Err, &netErr) || strings.Contains(ce.Err.Error(), "dial tcp") {
		return secrets.Fail(ref, secrets.ErrUnavailable, hintEntra, cause)
	}
	return secrets.Fail(ref, secrets.ErrAccessDenied, hintBadFile, cause)
}

// credentialCause is a short text of a token failure: Entra's error code
// and the first line of its description, or the error's first line.
func credentialCause(err error) string {
	var he *httpError
	if errors.As(err, &he) {
		if he.code != "" || he.description != "" {
			return fmt.Sprintf("HTTP %d: %s: %s", he.status, he.code, secrets.Clip(firstLine(he.description), 300))
		}
		return fmt.Sprintf("HTTP %d from %s", he.status, he.url)
	}
	return secrets.Clip(firstLine(err.Error()), 400)
}

// kvError is Key Vault's error body.
type kvError struct {
	Error struct {
		Code       string `json:"code"`
		Message    string `json:"message"`
		InnerError *struct {
			Code string `json:"code"`
		} `json:"innererror"`
	} `json:"error"`
}

// responseError is a vault's error answer, in short.
type responseError struct {
	status      int
	code, inner string
	message     string
}

func (e *responseError) Error() string {
	code := e.code
	if e.inner != "" {
		code += "/" + e.inner
	}
	s := fmt.Sprintf("HTTP %d", e.status)
	if code != "" {
		s += " " + code
	}
	if e.message != "" {
		s += ": " + e.message
	}
	return s
}

// newResponseError reads a vault's error answer: the body's code (else
// the x-ms-error-code header), inner code and message.
func newResponseError(status int, header http.Header, body []byte) *responseError {
	e := &responseError{status: status, code: header.Get("x-ms-error-code")}
	var b kvError
	if json.Unmarshal(body, &b) == nil {
		if b.Error.Code != "" {
			e.code = b.Error.Code
		}
		if b.Error.InnerError != nil {
			e.inner = b.Error.InnerError.Code
		}
		e.message = secrets.Clip(firstLine(b.Error.Message), 300)
	}
	return e
}

func classifyResponse(ref secrets.Ref, e *responseError) error {
	switch {
	case e.inner == "SecretDisabled" || strings.Contains(strings.ToLower(e.message), "disabled secret"):
		return secrets.Fail(ref, secrets.ErrBadValue, hintDisabled, fmt.Errorf("%w: %w", ErrDisabled, e))
	case e.inner == "ForbiddenByFirewall" || e.inner == "ForbiddenByConnection":
		return secrets.Fail(ref, secrets.ErrAccessDenied, hintFirewall, e)
	case e.status == http.StatusForbidden:
		return secrets.Fail(ref, secrets.ErrAccessDenied, hintAccessDenied, e)
	case e.status == http.StatusUnauthorized:
		return secrets.Fail(ref, secrets.ErrAccessDenied, hintToken, e)
	case e.status == http.StatusNotFound:
		return secrets.Fail(ref, secrets.ErrNotFound, hintNotFound, e)
	case e.status == http.StatusBadRequest:
		return secrets.Fail(ref, secrets.ErrNotFound, hintBadRequest, e)
	case e.status == http.StatusTooManyRequests:
		return secrets.Fail(ref, secrets.ErrThrottled, hintThrottled, e)
	}
	return secrets.Fail(ref, secrets.ErrUnavailable, hintServer, e)
}

func tlsError(err error) bool {
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var ci x509.CertificateInvalidError
	var tv *tls.CertificateVerificationError
	return errors.As(err, &ua) || errors.As(err, &hn) || errors.As(err, &ci) || errors.As(err, &tv)
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = strings.TrimSpace(s[:i])
	}
	return s
}
