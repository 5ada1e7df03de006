// Package azuretest runs, for the tests of the azure backend, a local Key
// Vault and a local Microsoft Entra ID (test/fakes/azurefake, each its own
// process) over HTTPS with a CA made for the test, and gives a real
// azsecrets client to seed them. The backend under test talks to them with
// the real azsecrets and azidentity clients: real wire protocol, no network.
//
// The Entra process knows these clients of Env.Tenant:
//
//	ClientSecretApp   by the secret Env.ClientSecret (file Env.ClientSecretFile)
//	CertificateApp    by the certificate and key in Env.CertificateFile
//	WorkloadApp       by the federated token in Env.FederatedTokenFile
//	DeniedApp         by the secret in Env.ClientSecretFile; the vault
//	                  refuses it secrets/get
//	ManagedIdentityID the managed identity of the IMDS endpoint, Env.IMDSAddr
//
// The vault is at Env.VaultURL (https://127.0.0.1:PORT), and its challenge
// names the resource https://vault.azure.net, as Azure's vaults do.
package azuretest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"

	"github.com/dsv-plugin/dsv/test/testproc"
)

// Clients the Entra process knows.
const (
	Tenant            = "72f988bf-0000-4000-8000-00000000d5e7"
	ClientSecretApp   = "11111111-0000-4000-8000-000000000001"
	CertificateApp    = "11111111-0000-4000-8000-000000000002"
	WorkloadApp       = "11111111-0000-4000-8000-000000000003"
	DeniedApp         = "11111111-0000-4000-8000-000000000004"
	ManagedIdentityID = "11111111-0000-4000-8000-000000000005"
	adminApp          = "11111111-0000-4000-8000-0000000000ad"
)

// startTimeout bounds the build and the wait for a process to serve.
const startTimeout = 2 * time.Minute

// Env is a running Key Vault and Entra ID pair.
type Env struct {
	// Dir holds the files below; tests may add their own.
	Dir string
	// VaultURL is https://127.0.0.1:PORT; AuthorityHost is Entra's URL;
	// IMDSAddr is the managed identity endpoint's HOST:PORT (HTTP).
	VaultURL      string
	AuthorityHost string
	IMDSAddr      string
	// CAFile is the PEM CA both servers' certificates chain to.
	CAFile string
	// ClientSecret is ClientSecretApp's secret, in ClientSecretFile.
	ClientSecret       string
	ClientSecretFile   string
	CertificateFile    string // CertificateApp's certificate and key, PEM
	FederatedTokenFile string // WorkloadApp's token

	admin *azsecrets.Client
	t     testing.TB
}

// Option changes how Start runs the pair.
type Option func(*options)

type options struct{ tokenLifetime time.Duration }

// TokenLifetime makes Entra issue tokens that live d (at least a second)
// in place of an hour: the vault refuses them after it, so a client must
// refresh them.
func TokenLifetime(d time.Duration) Option { return func(o *options) { o.tokenLifetime = d } }

// Start builds test/fakes/azurefake and runs the pair for t.
func Start(t testing.TB, opts ...Option) *Env {
	t.Helper()
	o := options{tokenLifetime: time.Hour}
	for _, opt := range opts {
		opt(&o)
	}
	dir := t.TempDir()
	e := &Env{Dir: dir, t: t}
	bin := build(t, dir)
	if err := e.writeFiles(); err != nil {
		t.Fatal(err)
	}
	common := []string{"-cert", filepath.Join(dir, "server.pem"), "-key", filepath.Join(dir, "server-key.pem"),
		"-token-key", filepath.Join(dir, "token-key"), "-tenant", Tenant}
	ready := startProcess(t, bin, append([]string{"entra"}, append(common,
		"-client-secret", ClientSecretApp+"="+e.ClientSecretFile,
		"-client-secret", DeniedApp+"="+e.ClientSecretFile,
		"-client-secret", adminApp+"="+filepath.Join(dir, "admin-secret"),
		"-client-cert", CertificateApp+"="+e.CertificateFile,
		"-federated", WorkloadApp+"="+e.FederatedTokenFile,
		"-imds-listen", "127.0.0.1:0", "-imds-client", ManagedIdentityID,
		"-token-lifetime", o.tokenLifetime.String())...)...)
	if len(ready) != 2 {
		t.Fatalf("azurefake entra said %q, want two URLs", ready)
	}
	e.AuthorityHost = ready[0]
	e.IMDSAddr = strings.TrimPrefix(ready[1], "http://")
	ready = startProcess(t, bin, append([]string{"keyvault"}, append(common, "-deny", DeniedApp)...)...)
	e.VaultURL = ready[0]

	admin, err := azidentity.NewClientSecretCredential(Tenant, adminApp, e.adminSecret(), &azidentity.ClientSecretCredentialOptions{
		ClientOptions: e.ClientOptions(), DisableInstanceDiscovery: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.admin, err = azsecrets.NewClient(e.VaultURL, admin, &azsecrets.ClientOptions{
		ClientOptions: e.ClientOptions(), DisableChallengeResourceVerification: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// ClientOptions trust the test CA and use the local Entra ID.
func (e *Env) ClientOptions() azcore.ClientOptions {
	pool := x509.NewCertPool()
	pem, err := os.ReadFile(e.CAFile)
	if err != nil || !pool.AppendCertsFromPEM(pem) {
		e.t.Fatalf("read the test CA %s: %v", e.CAFile, err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return azcore.ClientOptions{
		Transport: &http.Client{Transport: tr},
		Cloud:     cloud.Configuration{ActiveDirectoryAuthorityHost: e.AuthorityHost, Services: map[cloud.ServiceName]cloud.ServiceConfiguration{}},
	}
}

// Set stores a new version of a secret and returns its version id.
func (e *Env) Set(name, value string, attrs *azsecrets.SecretAttributes) string {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := e.admin.SetSecret(ctx, name, azsecrets.SetSecretParameters{Value: &value, SecretAttributes: attrs}, nil)
	if err != nil {
		e.t.Fatalf("key vault: set secret %q: %v", name, err)
	}
	return resp.ID.Version()
}

// Update changes a version's attributes (enabled, exp, nbf).
func (e *Env) Update(name, version string, attrs azsecrets.SecretAttributes) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := e.admin.UpdateSecretProperties(ctx, name, version, azsecrets.UpdateSecretPropertiesParameters{SecretAttributes: &attrs}, nil); err != nil {
		e.t.Fatalf("key vault: update secret %q version %s: %v", name, version, err)
	}
}

func (e *Env) adminSecret() string {
	b, err := os.ReadFile(filepath.Join(e.Dir, "admin-secret"))
	if err != nil {
		e.t.Fatal(err)
	}
	return string(b)
}

// build compiles test/fakes/azurefake into dir.
func build(t testing.TB, dir string) string {
	t.Helper()
	root, err := testproc.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "azurefake")
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./test/fakes/azurefake")
	cmd.Dir = root
	// Built for this machine even when the tests are cross-built (make
	// unit-arm64 runs them emulated): the fake is a server the tests talk
	// to, not the code under test.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=", "GOARCH=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build test/fakes/azurefake: %v: %s", err, out)
	}
	return bin
}

// startProcess runs bin with args until t ends and returns the fields of
// its ready line.
func startProcess(t testing.TB, bin string, args ...string) []string {
	t.Helper()
	var ready []string
	p, err := testproc.Start(context.Background(), exec.Command(bin, args...), testproc.Options{
		Name: "azurefake " + args[0],
		ReadyLine: func(line string) error {
			f := strings.Fields(line)
			if len(f) < 2 || f[0] != "ready" {
				return errors.New("want ready URL")
			}
			ready = f[1:]
			return nil
		},
		Timeout: startTimeout,
	})
	if err != nil {
		t.Fatal(err)
	}
	p.Cleanup(t)
	return ready
}

// writeFiles makes the CA, the servers' certificate, the signing key of
// tokens and the clients' credentials.
func (e *Env) writeFiles() error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "dsv azuretest CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.IPv6loopback},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	srvKeyDER, err := x509.MarshalPKCS8PrivateKey(srvKey)
	if err != nil {
		return err
	}
	// The client certificate: self-signed RSA, as Entra registers it.
	cliKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	cliTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "dsv azuretest client"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	cliDER, err := x509.CreateCertificate(rand.Reader, cliTmpl, cliTmpl, &cliKey.PublicKey, cliKey)
	if err != nil {
		return err
	}
	cliKeyDER, err := x509.MarshalPKCS8PrivateKey(cliKey)
	if err != nil {
		return err
	}

	e.CAFile = filepath.Join(e.Dir, "ca.pem")
	e.ClientSecret = "dsv~" + randomHex(16)
	e.ClientSecretFile = filepath.Join(e.Dir, "client-secret")
	e.CertificateFile = filepath.Join(e.Dir, "client-certificate.pem")
	e.FederatedTokenFile = filepath.Join(e.Dir, "federated-token")
	files := map[string][]byte{
		"ca.pem":                 pemBlock("CERTIFICATE", caDER),
		"server.pem":             pemBlock("CERTIFICATE", srvDER),
		"server-key.pem":         pemBlock("PRIVATE KEY", srvKeyDER),
		"token-key":              []byte(randomHex(32)),
		"client-secret":          []byte(e.ClientSecret + "\n"),
		"admin-secret":           []byte("admin~" + randomHex(16)),
		"client-certificate.pem": append(pemBlock("CERTIFICATE", cliDER), pemBlock("PRIVATE KEY", cliKeyDER)...),
		"federated-token":        []byte("eyJ.fake-federated-token." + randomHex(16)),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(e.Dir, name), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// Fault is a failure the next requests answer: Status 429 throttles (with
// Retry-After seconds when set), 5xx fails.
type Fault struct {
	Status     int `json:"status"`
	RetryAfter int `json:"retryAfter,omitempty"`
}

// FailVault makes the vault's next GETs answer these faults, in order.
func (e *Env) FailVault(faults ...Fault) { e.t.Helper(); e.control(e.VaultURL, "fail", faults, nil) }

// FailEntra makes Entra's next token requests answer these faults.
func (e *Env) FailEntra(faults ...Fault) {
	e.t.Helper()
	e.control(e.AuthorityHost, "fail", faults, nil)
}

// VaultCounts counts the vault's requests by kind: get (authenticated
// GETs of a secret).
func (e *Env) VaultCounts() map[string]int {
	e.t.Helper()
	var c map[string]int
	e.control(e.VaultURL, "counts", nil, &c)
	return c
}

// EntraCounts counts Entra's requests by kind: token (the token
// endpoint), imds-token (the managed identity endpoint).
func (e *Env) EntraCounts() map[string]int {
	e.t.Helper()
	var c map[string]int
	e.control(e.AuthorityHost, "counts", nil, &c)
	return c
}

// control calls a test-only control of a process: POST with body, or GET
// into out.
func (e *Env) control(base, what string, body, out any) {
	e.t.Helper()
	client, ok := e.ClientOptions().Transport.(*http.Client)
	if !ok {
		e.t.Fatal("azuretest: ClientOptions has no *http.Client")
	}
	method, rd := http.MethodGet, io.Reader(nil)
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			e.t.Fatal(err)
		}
		method, rd = http.MethodPost, bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, base+"/fake/"+what, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		e.t.Fatalf("azurefake control %s: %v", what, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("azurefake control %s: HTTP %d", what, resp.StatusCode)
	}
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			e.t.Fatalf("azurefake control %s: %v", what, err)
		}
	}
}

// String describes the pair for logs.
func (e *Env) String() string {
	return fmt.Sprintf("key vault %s, entra %s, imds %s", e.VaultURL, e.AuthorityHost, e.IMDSAddr)
}
