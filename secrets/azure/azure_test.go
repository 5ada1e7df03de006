package azure

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"
	"github.com/rs/zerolog"

	"github.com/dsv-plugin/dsv/secrets"
)

// fakeAPI answers GetSecret from a function.
type fakeAPI struct {
	get func(name, version string) (azsecrets.GetSecretResponse, error)
}

func (f *fakeAPI) GetSecret(_ context.Context, name, version string, _ *azsecrets.GetSecretOptions) (azsecrets.GetSecretResponse, error) {
	return f.get(name, version)
}

func newFakeDriver(t *testing.T, get func(name, version string) (azsecrets.GetSecretResponse, error)) (*Driver, *[]string) {
	t.Helper()
	var calls []string
	d, err := New(Config{DefaultVault: testVault}, zerolog.Nop(), WithClient(func(vault string) (API, error) {
		return &fakeAPI{get: func(n, v string) (azsecrets.GetSecretResponse, error) {
			calls = append(calls, vault+" "+n+" "+v)
			return get(n, v)
		}}, nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	return d, &calls
}

func bundle(value, version string, attrs *azsecrets.SecretAttributes) azsecrets.GetSecretResponse {
	id := azsecrets.ID(testVault + "/secrets/x/" + version)
	return azsecrets.GetSecretResponse{Secret: azsecrets.Secret{Value: &value, ID: &id, Attributes: attrs}}
}

// kvResponse is an SDK error of a Key Vault answer.
func kvResponse(status int, body string) error {
	u, _ := url.Parse(testVault + "/secrets/x/")
	resp := &http.Response{StatusCode: status, Status: http.StatusText(status), Header: http.Header{},
		Body: io.NopCloser(bytes.NewBufferString(body)), Request: &http.Request{Method: http.MethodGet, URL: u}}
	var code struct{ Error struct{ Code string } }
	_ = jsonUnmarshal(body, &code)
	return &azcore.ResponseError{StatusCode: status, ErrorCode: code.Error.Code, RawResponse: resp}
}

func TestFetchSeam(t *testing.T) {
	d, calls := newFakeDriver(t, func(name, version string) (azsecrets.GetSecretResponse, error) {
		return bundle(`{"password":"pw"}`, testVersion, &azsecrets.SecretAttributes{Enabled: ptr(true)}), nil
	})
	got, err := d.Fetch(context.Background(), secrets.Ref{Backend: Name, Name: "db", Key: "password"})
	if err != nil || string(got.Value) != "pw" || got.Version != testVersion {
		t.Fatalf("Fetch = %q %q, %v", got.Value, got.Version, err)
	}
	if _, err := d.Fetch(context.Background(), secrets.Ref{Backend: Name, Name: "https://other.vault.azure.net/secrets/db/" + testVersion}); err != nil {
		t.Fatal(err)
	}
	want := []string{testVault + " db ", "https://other.vault.azure.net db " + testVersion}
	if strings.Join(*calls, "|") != strings.Join(want, "|") {
		t.Fatalf("calls = %q, want %q", *calls, want)
	}
	canon, err := d.Canonical(context.Background(), secrets.Ref{Backend: Name, Name: "db", VersionID: testVersion})
	if err != nil || canon != testVault+"/secrets/db" {
		t.Fatalf("Canonical = %q, %v", canon, err)
	}
}

func TestFetchErrors(t *testing.T) {
	past, future := time.Now().Add(-time.Minute), time.Now().Add(time.Hour)
	tests := []struct {
		name  string
		resp  azsecrets.GetSecretResponse
		err   error
		ctx   func() context.Context
		class error
		cause error
		wants []string
	}{
		{name: "not found", err: kvResponse(404, `{"error":{"code":"SecretNotFound","message":"A secret with (name/id) x was not found in this key vault."}}`),
			class: secrets.ErrNotFound, wants: []string{"HTTP 404 SecretNotFound", hintNotFound}},
		{name: "denied by access policy", err: kvResponse(403, `{"error":{"code":"Forbidden","message":"The user, group or application 'appid=1' does not have secrets get permission on key vault 'v'.","innererror":{"code":"AccessDenied"}}}`),
			class: secrets.ErrAccessDenied, wants: []string{"Forbidden/AccessDenied", "secrets/get", "Key Vault Secrets User"}},
		{name: "denied by RBAC", err: kvResponse(403, `{"error":{"code":"Forbidden","message":"Caller is not authorized to perform action on resource.\nIf role assignments changed recently, please observe propagation time.","innererror":{"code":"ForbiddenByRbac"}}}`),
			class: secrets.ErrAccessDenied, wants: []string{"ForbiddenByRbac", "Key Vault Secrets User"}},
		{name: "firewall", err: kvResponse(403, `{"error":{"code":"Forbidden","message":"Client address is not authorized","innererror":{"code":"ForbiddenByFirewall"}}}`),
			class: secrets.ErrAccessDenied, wants: []string{hintFirewall}},
		{name: "disabled", err: kvResponse(403, `{"error":{"code":"Forbidden","message":"Operation get is not allowed on a disabled secret.","innererror":{"code":"SecretDisabled"}}}`),
			class: secrets.ErrBadValue, cause: ErrDisabled, wants: []string{"disabled", hintDisabled}},
		{name: "token refused", err: kvResponse(401, `{"error":{"code":"Unauthorized","message":"AKV10032: Invalid issuer."}}`),
			class: secrets.ErrAccessDenied, wants: []string{hintToken}},
		{name: "bad request", err: kvResponse(400, `{"error":{"code":"BadParameter","message":"bad"}}`), class: secrets.ErrNotFound, wants: []string{hintBadRequest}},
		{name: "throttled", err: kvResponse(429, `{"error":{"code":"Throttled","message":"Too many requests"}}`), class: secrets.ErrThrottled, wants: []string{hintThrottled}},
		{name: "server", err: kvResponse(500, `not json`), class: secrets.ErrUnavailable, wants: []string{"HTTP 500", hintServer}},
		{name: "timeout", err: context.DeadlineExceeded, ctx: func() context.Context {
			ctx, cancel := context.WithDeadline(context.Background(), past)
			cancel()
			return ctx
		}, class: secrets.ErrTimeout, wants: []string{"TIMEOUT"}},
		{name: "no credentials", err: &CredentialError{Source: sourceManaged, Err: errors.New("dial tcp 169.254.169.254:80: connect: connection refused")},
			class: secrets.ErrAccessDenied, wants: []string{"managed identity", hintNoCredentials}},
		{name: "no credentials, no IMDS", err: &CredentialError{Source: sourceManaged, IMDS: IMDSAbsent, Err: errors.New("dial tcp 169.254.169.254:80: connect: connection refused")},
			class: secrets.ErrAccessDenied, wants: []string{"managed identity", "this host is not an Azure VM (no Instance Metadata Service answered"}},
		{name: "no credentials, another cloud's metadata server", err: &CredentialError{Source: sourceManaged, IMDS: IMDSOther, Err: errors.New("HTTP 404")},
			class: secrets.ErrAccessDenied, wants: []string{"this host is not an Azure VM (the server at 169.254.169.254 is not Azure's"}},
		{name: "Azure VM without the identity", err: &CredentialError{Source: sourceManaged, IMDS: IMDSAzure, Err: errors.New("HTTP 400: invalid_request: Identity not found")},
			class: secrets.ErrAccessDenied, wants: []string{"this Azure VM's managed identity gave no token"}},
		{name: "no identity settings", err: &CredentialError{Source: sourceSecret, File: "/run/dsv/credentials/azure/client-secret", Err: errNoIdentity},
			class: secrets.ErrAccessDenied, wants: []string{"client secret (/run/dsv/credentials/azure/client-secret)", hintNoIdentity}},
		{name: "bad certificate file", err: &CredentialError{Source: sourceCertificate, File: "/c.pem", Err: errors.New("not a PEM certificate")},
			class: secrets.ErrAccessDenied, wants: []string{hintBadFile}},
		{name: "expired", resp: bundle("v", testVersion, &azsecrets.SecretAttributes{Expires: &past}), class: secrets.ErrBadValue, cause: ErrExpired, wants: []string{"expired at"}},
		{name: "not yet valid", resp: bundle("v", testVersion, &azsecrets.SecretAttributes{NotBefore: &future}), class: secrets.ErrBadValue, cause: ErrNotYet, wants: []string{"valid from"}},
		{name: "disabled in the attributes", resp: bundle("v", testVersion, &azsecrets.SecretAttributes{Enabled: ptr(false)}), class: secrets.ErrBadValue, cause: ErrDisabled},
		{name: "no value", resp: azsecrets.GetSecretResponse{}, class: secrets.ErrBadValue, wants: []string{"no value"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, _ := newFakeDriver(t, func(string, string) (azsecrets.GetSecretResponse, error) { return tt.resp, tt.err })
			ctx := context.Background()
			if tt.ctx != nil {
				ctx = tt.ctx()
			}
			_, err := d.Fetch(ctx, secrets.Ref{Backend: Name, Name: "x"})
			if err == nil {
				t.Fatal("Fetch succeeded, want an error")
			}
			if !errors.Is(err, tt.class) {
				t.Errorf("%v: want class %v", err, tt.class)
			}
			if tt.cause != nil && !errors.Is(err, tt.cause) {
				t.Errorf("%v: want cause %v", err, tt.cause)
			}
			for _, w := range tt.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
		})
	}
}

func TestLoopback(t *testing.T) {
	for u, want := range map[string]bool{
		"https://127.0.0.1:8443": true, "https://[::1]:8443": true, "https://localhost:8443": false,
		testVault: false, "https://10.0.0.1": false,
	} {
		if got := loopback(u); got != want {
			t.Errorf("loopback(%q) = %v, want %v", u, got, want)
		}
	}
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }
