package azure

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/dsv-plugin/dsv/secrets/credfile"
)

// Credentials says where the backend finds its identity. The parts are
// those of the SDK's DefaultAzureCredential that can run in a plugin, in
// its order: a service principal's client secret or certificate (files in
// the plugin's credentials mount, never a plugin setting), workload
// identity (a federated token file), and the host's managed identity
// (IMDS, reached over the host network). entra.go has their token flows.
type Credentials struct {
	// TenantID and ClientID identify the service principal (and, for a
	// user-assigned managed identity, ClientID names it). They are not
	// secrets.
	TenantID string
	ClientID string
	// SecretFile holds a client secret; CertificateFile a PEM (certificate
	// and unencrypted key) or a PKCS#12 file without password;
	// FederatedTokenFile a workload identity token. A file that does not
	// exist is skipped.
	SecretFile         string
	CertificateFile    string
	FederatedTokenFile string
	// IdentityEndpoint, IdentityHeader and ArcIMDSEndpoint pick the
	// managed identity's endpoint (see EnvIdentityEndpoint); all empty:
	// IMDS, or Azure Arc's agent when it is installed. IdentityHeader
	// guards App Service's endpoint: it is never logged.
	IdentityEndpoint string
	IdentityHeader   string
	ArcIMDSEndpoint  string
}

// Sources, as errors and logs name them.
const (
	sourceSecret      = "client secret"
	sourceCertificate = "client certificate"
	sourceWorkload    = "workload identity"
	sourceManaged     = "managed identity"
)

// chain is the backend's credential. At each token request it
// looks at the credential files (a stat each) and uses the first one
// present, or the managed identity when there is none; a file that changes
// is read again (a new source, with a token cache of its own). The SDK's
// own chain read its environment once, so a secret rotated in the
// credentials mount, or a file put there after the plugin started, would
// have needed a plugin restart.
type chain struct {
	creds Credentials
	http  *http.Client
	entra *entra

	mu      sync.Mutex
	stamp   string // the files' identity when current was built
	current tokenSource
	source  string // what current is, for errors
	file    string // the file it was built from, "" for managed identity
	managed tokenSource
}

var _ credential = (*chain)(nil)

// newChain returns the chain of creds, asking authority (Entra's URL) for
// tokens over hc.
func newChain(creds Credentials, hc *http.Client, authority string) *chain {
	return &chain{creds: creds, http: hc, entra: &entra{http: hc, authority: strings.TrimRight(authority, "/")}}
}

// CredentialError is a failure to get a token, tagged with the source
// that failed, so that it is told apart from a failure of the vault.
type CredentialError struct {
	Source string // sourceSecret, ...
	File   string // the credential file, "" for managed identity
	// IMDS is, for the managed identity, what answered at the Instance
	// Metadata Service's address: whether this host is an Azure VM.
	IMDS IMDSState
	Err  error
}

// IMDSState is what the address of Azure's Instance Metadata Service
// answered after the managed identity gave no token.
type IMDSState int

const (
	// IMDSUnknown: not asked (the fetch's deadline had passed).
	IMDSUnknown IMDSState = iota
	// IMDSAbsent: nothing answered; the host is not an Azure VM, or the
	// plugin does not reach 169.254.169.254.
	IMDSAbsent
	// IMDSOther: a server answered that is not Azure's IMDS (another
	// cloud's metadata server): the host is not an Azure VM.
	IMDSOther
	// IMDSAzure: Azure's IMDS answered: the host is an Azure VM.
	IMDSAzure
)

// imdsInstance is the IMDS's compute metadata, which Azure's IMDS serves
// only with the header Metadata: true
// (https://learn.microsoft.com/azure/virtual-machines/instance-metadata-service).
const imdsInstance = "http://169.254.169.254/metadata/instance/compute?api-version=2021-02-01&format=json"

// probeIMDS asks the Instance Metadata Service's address whether this is
// an Azure VM, within ctx and at most two seconds.
func (c *chain) probeIMDS(ctx context.Context) IMDSState {
	if ctx.Err() != nil || c.http == nil {
		return IMDSUnknown
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, imdsInstance, nil)
	if err != nil {
		return IMDSUnknown
	}
	req.Header.Set("Metadata", "true")
	resp, err := c.http.Do(req)
	if err != nil {
		return IMDSAbsent
	}
	defer func() { _ = resp.Body.Close() }()
	var compute struct {
		AzEnvironment string `json:"azEnvironment"`
		VMID          string `json:"vmId"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&compute) != nil ||
		compute.AzEnvironment == "" || compute.VMID == "" {
		return IMDSOther
	}
	return IMDSAzure
}

func (e *CredentialError) Error() string {
	if e.File != "" {
		return fmt.Sprintf("%s (%s): %v", e.Source, e.File, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.Source, e.Err)
}

func (e *CredentialError) Unwrap() error { return e.Err }

// GetToken gets a token for scope in tenant ("" for the identity's own)
// from the current source.
func (c *chain) GetToken(ctx context.Context, scope, tenant string) (accessToken, error) {
	cred, source, file, err := c.credential()
	if err != nil {
		return accessToken{}, &CredentialError{Source: source, File: file, Err: err}
	}
	tok, err := cred.getToken(ctx, scope, tenant)
	if err != nil {
		e := &CredentialError{Source: source, File: file, Err: err}
		if m, ok := cred.(*managedIdentity); ok && m.kind == kindIMDS {
			// Before blaming a missing identity, see whether this is an
			// Azure VM at all.
			e.IMDS = c.probeIMDS(ctx)
		}
		return tok, e
	}
	return tok, nil
}

// files are the credential files in the order they are tried, with their
// source names.
func (c *chain) files() [3][2]string {
	return [3][2]string{
		{sourceSecret, c.creds.SecretFile},
		{sourceCertificate, c.creds.CertificateFile},
		{sourceWorkload, c.creds.FederatedTokenFile},
	}
}

// stampFiles identifies the files' current contents (credfile.Stamp).
func (c *chain) stampFiles() string {
	files := c.files()
	return credfile.Stamp(files[0][1], files[1][1], files[2][1])
}

// credential returns the credential of the first source present, building
// it when the files changed.
func (c *chain) credential() (tokenSource, string, string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	stamp := c.stampFiles()
	if c.current != nil && stamp == c.stamp {
		return c.current, c.source, c.file, nil
	}
	source, file := sourceManaged, ""
	for _, f := range c.files() {
		if f[1] == "" {
			continue
		}
		if _, err := os.Stat(f[1]); err == nil {
			source, file = f[0], f[1]
			break
		}
	}
	cred, err := c.build(source, file)
	if err != nil {
		// A file caught half written, or broken: say so, and try again
		// at the next request.
		return nil, source, file, err
	}
	c.stamp, c.current, c.source, c.file = stamp, cred, source, file
	return cred, source, file, nil
}

// errNoIdentity is the cause when a service principal's file is present
// but the settings that name the principal are not.
var errNoIdentity = errors.New("the AZURE_TENANT_ID and AZURE_CLIENT_ID plugin settings must name the service principal")

func (c *chain) build(source, file string) (tokenSource, error) {
	if source == sourceManaged {
		// Built once: it holds no file, and keeps its token cache.
		if c.managed == nil {
			c.managed = newManagedIdentity(c.creds, c.http)
		}
		return c.managed, nil
	}
	if c.creds.TenantID == "" || c.creds.ClientID == "" {
		return nil, errNoIdentity
	}
	sp := &servicePrincipal{entra: c.entra, tenant: c.creds.TenantID, clientID: c.creds.ClientID}
	switch source {
	case sourceSecret:
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		if sp.secret = string(bytes.TrimSpace(b)); sp.secret == "" {
			return nil, errors.New("the file is empty")
		}
	case sourceCertificate:
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		if sp.cert, sp.key, err = parseCertificate(b); err != nil {
			return nil, err
		}
	default:
		sp.assertionFile = file
	}
	return sp, nil
}
