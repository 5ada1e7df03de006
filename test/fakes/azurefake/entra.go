package main

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha1" //nolint:gosec // x5t is a SHA-1 thumbprint by definition
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// entra is a Microsoft Entra ID authority for one tenant.
type entra struct {
	base, tenant string
	signer       tokenSigner
	// lifetime is how long issued tokens live; the vault refuses them
	// after it.
	lifetime  time.Duration
	faults    *faults
	secrets   map[string]string            // client -> file of its secret
	certs     map[string]*x509.Certificate // client -> certificate
	federated map[string]string            // client -> file of its token
}

func newEntra(base, tenant string, signer tokenSigner, lifetime time.Duration, secrets, certs, federated []string) (*entra, error) {
	e := &entra{base: base, tenant: tenant, signer: signer, lifetime: lifetime, faults: newFaults(),
		secrets: map[string]string{}, certs: map[string]*x509.Certificate{}, federated: map[string]string{}}
	for _, s := range secrets {
		id, file, ok := strings.Cut(s, "=")
		if !ok {
			return nil, fmt.Errorf("-client-secret %q: use CLIENT=FILE", s)
		}
		e.secrets[id] = file
	}
	for _, s := range federated {
		id, file, ok := strings.Cut(s, "=")
		if !ok {
			return nil, fmt.Errorf("-federated %q: use CLIENT=FILE", s)
		}
		e.federated[id] = file
	}
	for _, s := range certs {
		id, file, ok := strings.Cut(s, "=")
		if !ok {
			return nil, fmt.Errorf("-client-cert %q: use CLIENT=FILE", s)
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		var blk *pem.Block
		for {
			blk, b = pem.Decode(b)
			if blk == nil || blk.Type == "CERTIFICATE" {
				break
			}
		}
		if blk == nil {
			return nil, fmt.Errorf("-client-cert %s: no certificate", file)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, err
		}
		e.certs[id] = c
	}
	return e, nil
}

func (e *entra) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if e.faults.control(w, r) {
		return
	}
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/"), "/")
	if len(parts) < 2 {
		http.NotFound(w, r)
		return
	}
	tenant, rest := parts[0], strings.Join(parts[1:], "/")
	if tenant != e.tenant {
		oauthFail(w, http.StatusBadRequest, "invalid_request", 90002, fmt.Sprintf("Tenant '%s' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.", tenant))
		return
	}
	switch {
	case r.Method == http.MethodGet && rest == "v2.0/.well-known/openid-configuration":
		authority := e.base + "/" + e.tenant
		writeJSON(w, http.StatusOK, map[string]any{
			"token_endpoint":                        authority + "/oauth2/v2.0/token",
			"authorization_endpoint":                authority + "/oauth2/v2.0/authorize",
			"issuer":                                authority + "/v2.0",
			"token_endpoint_auth_methods_supported": []string{"client_secret_post", "private_key_jwt", "client_secret_basic"},
			"response_types_supported":              []string{"code", "id_token", "code id_token", "id_token token"},
		})
	case r.Method == http.MethodPost && rest == "oauth2/v2.0/token":
		e.token(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (e *entra) token(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		oauthFail(w, http.StatusBadRequest, "invalid_request", 900144, "The request body must contain form parameters.")
		return
	}
	client := r.PostForm.Get("client_id")
	if f, ok := e.faults.take(w, "token"); ok {
		oauthFail(w, f.Status, "temporarily_unavailable", 90033, "A transient error has occurred. Please try again. (injected)")
		return
	}
	if r.PostForm.Get("grant_type") != "client_credentials" {
		oauthFail(w, http.StatusBadRequest, "unsupported_grant_type", 70003, "The fake serves the client_credentials grant only.")
		return
	}
	resource := ""
	for _, s := range strings.Fields(r.PostForm.Get("scope")) {
		if strings.HasSuffix(s, "/.default") {
			resource = strings.TrimSuffix(s, "/.default")
		}
	}
	if resource == "" {
		oauthFail(w, http.StatusBadRequest, "invalid_scope", 1002012, "The provided value for scope is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier.")
		return
	}
	var err error
	switch {
	case r.PostForm.Get("client_secret") != "":
		err = e.checkSecret(client, r.PostForm.Get("client_secret"))
	case r.PostForm.Get("client_assertion") != "":
		err = e.checkAssertion(client, r.PostForm.Get("client_assertion"))
	default:
		oauthFail(w, http.StatusBadRequest, "invalid_client", 7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")
		return
	}
	var fe *oauthError
	if errors.As(err, &fe) {
		oauthFail(w, fe.status, fe.code, fe.aadsts, fe.msg)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"token_type":     "Bearer",
		"expires_in":     int(e.lifetime.Seconds()),
		"ext_expires_in": int(e.lifetime.Seconds()),
		"access_token":   e.signer.sign(claims{Audience: resource, AppID: client, Tenant: e.tenant, Expires: time.Now().Add(e.lifetime).Unix()}),
	})
}

type oauthError struct {
	status int
	code   string
	aadsts int
	msg    string
}

func (e *oauthError) Error() string { return e.msg }

func (e *entra) unknownClient(client string) error {
	return &oauthError{http.StatusBadRequest, "unauthorized_client", 700016,
		fmt.Sprintf("Application with identifier '%s' was not found in the directory '%s'.", client, e.tenant)}
}

func (e *entra) checkSecret(client, secret string) error {
	file, ok := e.secrets[client]
	if !ok {
		return e.unknownClient(client)
	}
	want, err := os.ReadFile(file)
	if err != nil || subtle.ConstantTimeCompare(bytes.TrimSpace(want), []byte(secret)) != 1 {
		return &oauthError{http.StatusUnauthorized, "invalid_client", 7000215,
			fmt.Sprintf("Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '%s'.", client)}
	}
	return nil
}

// checkAssertion accepts a federated token (workload identity) or a JWT
// signed with the client's certificate key.
func (e *entra) checkAssertion(client, assertion string) error {
	if file, ok := e.federated[client]; ok {
		want, err := os.ReadFile(file)
		if err != nil || subtle.ConstantTimeCompare(bytes.TrimSpace(want), []byte(assertion)) != 1 {
			return &oauthError{http.StatusBadRequest, "invalid_client", 700213, "No matching federated identity record found for presented assertion."}
		}
		return nil
	}
	cert, ok := e.certs[client]
	if !ok {
		return e.unknownClient(client)
	}
	bad := func(why string) error {
		return &oauthError{http.StatusUnauthorized, "invalid_client", 700027, "Client assertion failed signature validation: " + why}
	}
	parts := strings.Split(assertion, ".")
	if len(parts) != 3 {
		return bad("not a JWT")
	}
	var head struct {
		Alg     string `json:"alg"`
		X5t     string `json:"x5t"`
		X5tS256 string `json:"x5t#S256"`
	}
	var body struct {
		Aud string `json:"aud"`
		Iss string `json:"iss"`
		Sub string `json:"sub"`
		Exp int64  `json:"exp"`
	}
	hb, err1 := b64.DecodeString(parts[0])
	bb, err2 := b64.DecodeString(parts[1])
	sig, err3 := b64.DecodeString(parts[2])
	if err1 != nil || err2 != nil || err3 != nil || json.Unmarshal(hb, &head) != nil || json.Unmarshal(bb, &body) != nil {
		return bad("malformed")
	}
	s1 := sha1.Sum(cert.Raw) //nolint:gosec
	s256 := sha256.Sum256(cert.Raw)
	// RFC 7515 says base64url; MSAL sends standard base64, which Entra
	// takes: either matches.
	match := func(got string, sum []byte) bool {
		return got != "" && (got == b64.EncodeToString(sum) || got == base64.StdEncoding.EncodeToString(sum))
	}
	if !match(head.X5t, s1[:]) && !match(head.X5tS256, s256[:]) {
		return bad("the thumbprint is not the registered certificate's")
	}
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok {
		return bad("the registered certificate has no RSA key")
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	var err error
	switch head.Alg {
	case "PS256":
		err = rsa.VerifyPSS(pub, crypto.SHA256, digest[:], sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto})
	case "RS256":
		err = rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig)
	default:
		return bad("algorithm " + head.Alg)
	}
	switch {
	case err != nil:
		return bad("signature")
	case body.Iss != client || body.Sub != client:
		return bad("iss and sub must be the client id")
	case body.Aud != e.base+"/"+e.tenant+"/oauth2/v2.0/token":
		return bad("aud " + body.Aud)
	case time.Now().Unix() >= body.Exp:
		return bad("expired")
	}
	return nil
}

// imdsHandler is the Instance Metadata Service of an Azure VM: its managed
// identity endpoint and its compute metadata.
func (e *entra) imdsHandler(client string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/metadata/instance/compute" {
			// The instance's compute metadata, which only Azure's IMDS
			// serves, and only with Metadata: true.
			if r.Header.Get("Metadata") != "true" || r.URL.Query().Get("api-version") == "" {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": "Bad request. Required metadata header not specified"})
				return
			}
			writeJSON(w, http.StatusOK, map[string]string{"azEnvironment": "AzurePublicCloud", "location": "westeurope",
				"vmId": "00000000-0000-4000-8000-0000000000aa", "name": "dsv-fake-vm"})
			return
		}
		if r.URL.Path != "/metadata/identity/oauth2/token" {
			http.NotFound(w, r)
			return
		}
		if r.Header.Get("Metadata") != "true" {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": "Required metadata header not specified"})
			return
		}
		q := r.URL.Query()
		if client == "" || (q.Get("client_id") != "" && q.Get("client_id") != client) {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": "Identity not found"})
			return
		}
		resource := strings.TrimSuffix(q.Get("resource"), "/")
		e.faults.take(w, "imds-token")
		exp := time.Now().Add(e.lifetime)
		writeJSON(w, http.StatusOK, map[string]string{
			"access_token":   e.signer.sign(claims{Audience: resource, AppID: client, Tenant: e.tenant, Expires: exp.Unix()}),
			"client_id":      client,
			"expires_in":     strconv.Itoa(int(e.lifetime.Seconds())),
			"expires_on":     strconv.FormatInt(exp.Unix(), 10),
			"ext_expires_in": strconv.Itoa(int(e.lifetime.Seconds())),
			"not_before":     strconv.FormatInt(time.Now().Unix(), 10),
			"resource":       resource,
			"token_type":     "Bearer",
		})
	})
}

// oauthFail writes Entra's error body.
func oauthFail(w http.ResponseWriter, status int, code string, aadsts int, msg string) {
	writeJSON(w, status, map[string]any{
		"error":             code,
		"error_description": fmt.Sprintf("AADSTS%d: %s Trace ID: 00000000-0000-0000-0000-000000000000 Correlation ID: 00000000-0000-0000-0000-000000000000 Timestamp: %s", aadsts, msg, time.Now().UTC().Format("2006-01-02 15:04:05Z")),
		"error_codes":       []int{aadsts},
		"timestamp":         time.Now().UTC().Format("2006-01-02 15:04:05Z"),
		"trace_id":          "00000000-0000-0000-0000-000000000000",
		"correlation_id":    "00000000-0000-0000-0000-000000000000",
	})
}
