package azure

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

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
	hintServer        = "the vault failed; try again later"
	hintUnreachable   = "could not reach the vault; check the host's network and DNS, and the vault URL"
	hintEntra         = "could not reach Microsoft Entra ID for a token; check the host's network and DNS, and AZURE_AUTHORITY_HOST"
	hintTLS           = "the server's TLS certificate is not trusted; a TLS-inspecting proxy's CA goes in the AZURE_CA_FILE setting"
)

// classify turns a GetSecret failure into a *secrets.Error. Causes are
// kept short and on one line: the SDK's own texts dump whole responses.
// None carries the secret value (a failed read has none).
func classify(ctx context.Context, ref secrets.Ref, loc location, err error) error {
	var ce *CredentialError
	if errors.As(err, &ce) {
		return classifyCredential(ctx, ref, ce)
	}
	if e := secrets.FromContext(ctx, ref); e != nil {
		return e
	}
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return classifyResponse(ref, re)
	}
	if strings.Contains(err.Error(), "challenge resource") {
		return secrets.Fail(ref, secrets.ErrAccessDenied, hintChallenge, errors.New(firstLine(err.Error())))
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
		var af *azidentity.AuthenticationFailedError
		if errors.As(ce.Err, &af) && af.RawResponse != nil {
			return secrets.Fail(ref, secrets.ErrAccessDenied, hintManaged, cause)
		}
		return secrets.Fail(ref, secrets.ErrAccessDenied, hintNoCredentials, cause)
	}
	if errors.Is(ce.Err, errNoIdentity) {
		return secrets.Fail(ref, secrets.ErrAccessDenied, hintNoIdentity, cause)
	}
	if e := secrets.FromContext(ctx, ref); e != nil {
		return e
	}
	var af *azidentity.AuthenticationFailedError
	if errors.As(ce.Err, &af) && af.RawResponse != nil {
		if af.RawResponse.StatusCode >= 500 || af.RawResponse.StatusCode == http.StatusTooManyRequests {
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
	if af != nil {
		return secrets.Fail(ref, secrets.ErrAccessDenied, hintRefused, cause)
	}
	return secrets.Fail(ref, secrets.ErrAccessDenied, hintBadFile, cause)
}

// credentialCause is a short text of an azidentity failure: Entra's error
// code and the first line of its description, or the error's first line.
func credentialCause(err error) string {
	var af *azidentity.AuthenticationFailedError
	if errors.As(err, &af) && af.RawResponse != nil {
		var body struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
			Message     string `json:"message"` // IMDS
		}
		if b := readBody(af.RawResponse); json.Unmarshal(b, &body) == nil && (body.Error != "" || body.Message != "") {
			d := body.Description
			if d == "" {
				d = body.Message
			}
			return fmt.Sprintf("HTTP %d: %s: %s", af.RawResponse.StatusCode, body.Error, secrets.Clip(firstLine(d), 300))
		}
		return fmt.Sprintf("HTTP %d from %s", af.RawResponse.StatusCode, af.RawResponse.Request.URL.Redacted())
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

// responseError is a short text of a vault's error answer.
type responseError struct {
	status      int
	code, inner string
	message     string
	err         *azcore.ResponseError
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

func (e *responseError) Unwrap() error { return e.err }

func classifyResponse(ref secrets.Ref, re *azcore.ResponseError) error {
	e := &responseError{status: re.StatusCode, code: re.ErrorCode, err: re}
	if re.RawResponse != nil {
		var body kvError
		if json.Unmarshal(readBody(re.RawResponse), &body) == nil {
			if body.Error.Code != "" {
				e.code = body.Error.Code
			}
			if body.Error.InnerError != nil {
				e.inner = body.Error.InnerError.Code
			}
			e.message = secrets.Clip(firstLine(body.Error.Message), 300)
		}
	}
	switch {
	case e.inner == "SecretDisabled" || strings.Contains(strings.ToLower(e.message), "disabled secret"):
		return secrets.Fail(ref, secrets.ErrBadValue, hintDisabled, fmt.Errorf("%w: %w", ErrDisabled, e))
	case e.inner == "ForbiddenByFirewall" || e.inner == "ForbiddenByConnection":
		return secrets.Fail(ref, secrets.ErrAccessDenied, hintFirewall, e)
	case re.StatusCode == http.StatusForbidden:
		return secrets.Fail(ref, secrets.ErrAccessDenied, hintAccessDenied, e)
	case re.StatusCode == http.StatusUnauthorized:
		return secrets.Fail(ref, secrets.ErrAccessDenied, hintToken, e)
	case re.StatusCode == http.StatusNotFound:
		return secrets.Fail(ref, secrets.ErrNotFound, hintNotFound, e)
	case re.StatusCode == http.StatusBadRequest:
		return secrets.Fail(ref, secrets.ErrNotFound, hintBadRequest, e)
	case re.StatusCode == http.StatusTooManyRequests:
		return secrets.Fail(ref, secrets.ErrThrottled, hintThrottled, e)
	}
	return secrets.Fail(ref, secrets.ErrUnavailable, hintServer, e)
}

// readBody reads an error response's body (at most 64 KiB); the SDK
// buffers it, so it can be read again.
func readBody(r *http.Response) []byte {
	if r == nil || r.Body == nil {
		return nil
	}
	b, _ := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	r.Body = io.NopCloser(bytes.NewReader(b))
	return b
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
