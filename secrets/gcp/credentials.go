package gcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"

	"github.com/dsv-plugin/dsv/secrets"
	"github.com/dsv-plugin/dsv/secrets/credfile"
)

// scope is the OAuth scope of Secret Manager's API.
const scope = "https://www.googleapis.com/auth/cloud-platform"

// maxCredentialsFile caps the credentials file read.
const maxCredentialsFile = 64 << 10

// metadataEarlyExpiry renews a metadata server token this long before it
// expires, as Google's own token source does.
const metadataEarlyExpiry = 225 * time.Second

// credentialTypes are the ADC file types accepted, by their "type" field.
var credentialTypes = []google.CredentialsType{
	google.ServiceAccount,
	google.ExternalAccount,
	google.AuthorizedUser,
	google.ImpersonatedServiceAccount,
	google.ExternalAccountAuthorizedUser,
}

// CredentialsError is a failure to get an access token: the credentials
// file is unusable, its token endpoint refused or did not answer, or no
// metadata server gave one.
type CredentialsError struct {
	// File is the credentials file; with Metadata, the one that was absent.
	File string
	// Metadata is set when the token came from the metadata server.
	Metadata bool
	// Load is set when the file could not be read or understood.
	Load bool
	Err  error
}

func (e *CredentialsError) Error() string {
	// The libraries' messages can run over lines (a token endpoint's
	// answer) and hundreds of characters (an ASN.1 parse error).
	cause := secrets.Clip(strings.Join(strings.Fields(e.Err.Error()), " "), 300)
	switch {
	case e.Metadata:
		return "metadata server: " + cause
	case e.Load:
		return "credentials file " + e.File + ": " + cause
	}
	return "token for the credentials in " + e.File + ": " + cause
}

func (e *CredentialsError) Unwrap() error { return e.Err }

// adc is Application Default Credentials as the plugin finds them: the
// file, read again whenever it changes (a rotated key needs no restart),
// else the metadata server.
type adc struct {
	file       string
	tokenHTTP  *http.Client // the token endpoints' and metadata server's client
	dmiProduct string       // dmiProductName; tests change it

	mu       sync.Mutex
	stamp    string        // the file's identity at the last load
	loaded   bool          // src belongs to stamp
	src      *fileSource   // of the file; nil: the metadata server
	metaTok  *oauth2.Token // the metadata server's last token
	metaLock sync.Mutex    // one metadata token request at a time
}

func newADC(file string, timeout time.Duration) *adc {
	c := &http.Client{Timeout: timeout, Transport: http.DefaultTransport.(*http.Transport).Clone()}
	return &adc{file: file, tokenHTTP: c, dmiProduct: dmiProductName}
}

// fileSource is what a credentials file gives: its token source, the
// universe its credentials belong to and the project its quota is billed to.
type fileSource struct {
	ts oauth2.TokenSource
	// universe is the file's universe_domain; "" is googleapis.com.
	universe string
	// quotaProject is the file's quota_project_id, sent as
	// x-goog-user-project.
	quotaProject string
}

// grant is an access token and what goes with it on a request.
type grant struct {
	tok          *oauth2.Token
	universe     string // "" is googleapis.com
	quotaProject string // "" sends no x-goog-user-project
}

// token returns a valid access token, or a *CredentialsError.
func (a *adc) token(ctx context.Context) (grant, error) {
	src, err := a.source()
	if err != nil {
		return grant{}, err
	}
	if src == nil {
		t, err := a.metadataToken(ctx)
		return grant{tok: t}, err
	}
	// oauth2's token sources take no context: the request runs on, bounded
	// by tokenHTTP's timeout, while the fetch returns at its deadline.
	type result struct {
		tok *oauth2.Token
		err error
	}
	ch := make(chan result, 1)
	go func() {
		t, err := src.ts.Token()
		ch <- result{t, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return grant{}, &CredentialsError{File: a.file, Err: r.err}
		}
		return grant{tok: r.tok, universe: src.universe, quotaProject: src.quotaProject}, nil
	case <-ctx.Done():
		return grant{}, &CredentialsError{File: a.file, Err: ctx.Err()}
	}
}

// source returns the token source of the file as it is now, loading it
// again when it changed; nil when the file does not exist.
func (a *adc) source() (*fileSource, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	stamp := credfile.Stamp(a.file)
	if a.loaded && stamp == a.stamp {
		return a.src, nil
	}
	src, err := a.load()
	if err != nil {
		// A file caught half written, or broken: try again next time.
		a.loaded = false
		return nil, err
	}
	a.stamp, a.loaded, a.src = stamp, true, src
	return src, nil
}

// load reads the credentials file; nil, nil when there is none.
func (a *adc) load() (*fileSource, error) {
	fail := func(err error) error { return &CredentialsError{File: a.file, Load: true, Err: err} }
	f, err := os.Open(a.file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fail(err)
	}
	defer func() { _ = f.Close() }()
	data, err := io.ReadAll(io.LimitReader(f, maxCredentialsFile+1))
	if err != nil {
		return nil, fail(err)
	}
	if len(data) > maxCredentialsFile {
		return nil, fail(fmt.Errorf("larger than %d bytes", maxCredentialsFile))
	}
	var head struct {
		Type           string `json:"type"`
		UniverseDomain string `json:"universe_domain"`
		QuotaProject   string `json:"quota_project_id"`
	}
	if json.Unmarshal(data, &head) != nil {
		// The decoder's message is dropped: it could quote the key.
		return nil, fail(errors.New("not a JSON object"))
	}
	known := false
	for _, t := range credentialTypes {
		known = known || google.CredentialsType(head.Type) == t
	}
	if !known {
		return nil, fail(fmt.Errorf("type %q is not one of service_account, external_account, authorized_user, impersonated_service_account, external_account_authorized_user", quoted(head.Type)))
	}
	if head.UniverseDomain != "" && !validUniverse(head.UniverseDomain) {
		return nil, fail(fmt.Errorf("universe_domain %q is not a domain name (e.g. googleapis.com)", quoted(head.UniverseDomain)))
	}
	if head.QuotaProject != "" && !validProject(head.QuotaProject) {
		return nil, fail(fmt.Errorf("quota_project_id %q is not a project ID nor a project number", quoted(head.QuotaProject)))
	}
	src := &fileSource{quotaProject: head.QuotaProject}
	if head.UniverseDomain != defaultUniverse && google.CredentialsType(head.Type) != google.AuthorizedUser {
		// Authorized users exist in googleapis.com only, as Google's
		// libraries have it; other credentials name their universe.
		src.universe = head.UniverseDomain
	}
	if src.universe != "" && google.CredentialsType(head.Type) == google.ServiceAccount {
		// Outside googleapis.com there is no OAuth token endpoint for a
		// service-account key: Google's libraries sign a JWT with the
		// key for the service's audience, https://SERVICE.UNIVERSE/
		// (AIP-4111, https://google.aip.dev/auth/4111).
		ts, err := google.JWTAccessTokenSourceFromJSON(data, "https://secretmanager."+src.universe+"/")
		if err != nil {
			return nil, fail(err)
		}
		src.ts = ts
		return src, nil
	}
	// The context is the token source's for good: it carries the client of
	// every token request, never a deadline.
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, a.tokenHTTP)
	creds, err := google.CredentialsFromJSONWithTypeAndParams(ctx, data, google.CredentialsType(head.Type), google.CredentialsParams{Scopes: []string{scope}})
	if err != nil {
		return nil, fail(err)
	}
	src.ts = creds.TokenSource
	return src, nil
}

// defaultUniverse is Google Cloud's universe domain; another is a Trusted
// Partner Cloud (https://cloud.google.com/docs/authentication/application-default-credentials
// and the universe_domain of a credentials file).
const defaultUniverse = "googleapis.com"

// validUniverse accepts a DNS name of at least two labels: it becomes the
// host of every request and of the token audience.
func validUniverse(s string) bool {
	if len(s) > 253 || !strings.Contains(s, ".") {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
				return false
			}
		}
	}
	return true
}

// metadataToken returns the metadata server's token of the instance's
// default service account, cached until shortly before it expires.
func (a *adc) metadataToken(ctx context.Context) (*oauth2.Token, error) {
	fail := func(err error) error { return &CredentialsError{File: a.file, Metadata: true, Err: err} }
	valid := func(t *oauth2.Token) bool { return t != nil && time.Until(t.Expiry) > metadataEarlyExpiry }
	a.mu.Lock()
	t := a.metaTok
	a.mu.Unlock()
	if valid(t) {
		return t, nil
	}
	// One request at a time; the others wait for its token.
	a.metaLock.Lock()
	defer a.metaLock.Unlock()
	a.mu.Lock()
	t = a.metaTok
	a.mu.Unlock()
	if valid(t) {
		return t, nil
	}
	body, err := a.metadataGet(ctx, "instance/service-accounts/default/token?scopes="+url.QueryEscape(scope))
	if err != nil {
		return nil, fail(err)
	}
	var r struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int64  `json:"expires_in"`
		TokenType   string `json:"token_type"`
	}
	if json.Unmarshal(body, &r) != nil || r.AccessToken == "" || r.ExpiresIn <= 0 {
		return nil, fail(errors.New("the token answer is not a token"))
	}
	t = &oauth2.Token{AccessToken: r.AccessToken, TokenType: r.TokenType, Expiry: time.Now().Add(time.Duration(r.ExpiresIn) * time.Second)}
	a.mu.Lock()
	a.metaTok = t
	a.mu.Unlock()
	return t, nil
}

// metadataHostEnv names the metadata server's address, as Google's
// libraries read it.
const metadataHostEnv = "GCE_METADATA_HOST"

// dmiProductName is where Linux shows the machine's product name; on a
// Compute Engine VM it is "Google Compute Engine"
// (https://cloud.google.com/compute/docs/instances/detect-compute-engine).
const dmiProductName = "/sys/class/dmi/id/product_name"

// MetadataError is a metadata server failure, told apart by whether the
// host is on Google Cloud at all: only Google's metadata server answers
// with Metadata-Flavor: Google
// (https://cloud.google.com/compute/docs/metadata/querying-metadata).
type MetadataError struct {
	// Host is the metadata server's address (GCE_METADATA_HOST, else
	// 169.254.169.254).
	Host string
	// Status is the answer's HTTP status; 0 when none came.
	Status int
	// Google is set when the answer carried Metadata-Flavor: Google.
	Google bool
	// GCE is set when the machine's product name is Google Compute
	// Engine's.
	GCE bool
	Err error
}

func (e *MetadataError) Error() string {
	switch {
	case e.Status == 0:
		return fmt.Sprintf("no answer from %s: %v", e.Host, e.Err)
	case !e.Google:
		return fmt.Sprintf("%s answered HTTP %d without Metadata-Flavor: Google", e.Host, e.Status)
	}
	return fmt.Sprintf("%s answered HTTP %d", e.Host, e.Status)
}

func (e *MetadataError) Unwrap() error { return e.Err }

// NoServiceAccount reports Google's metadata server saying the instance
// has no service account (404 on its token).
func (e *MetadataError) NoServiceAccount() bool {
	return e.Google && e.Status == http.StatusNotFound
}

// metadataGet reads a path under computeMetadata/v1 from the metadata
// server, as Google's metadata client does, and keeps what tells whether
// the host is on Google Cloud.
func (a *adc) metadataGet(ctx context.Context, path string) ([]byte, error) {
	host := os.Getenv(metadataHostEnv)
	if host == "" {
		host = "169.254.169.254"
	}
	fail := func(status int, google bool, err error) error {
		return &MetadataError{Host: host, Status: status, Google: google, GCE: onGCE(a.dmiProduct), Err: err}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+host+"/computeMetadata/v1/"+path, nil)
	if err != nil {
		return nil, fail(0, false, err)
	}
	req.Header.Set("Metadata-Flavor", "Google")
	resp, err := a.tokenHTTP.Do(req)
	if err != nil {
		return nil, fail(0, false, err)
	}
	defer func() { _ = resp.Body.Close() }()
	google := resp.Header.Get("Metadata-Flavor") == "Google"
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxCredentialsFile))
	if err != nil {
		return nil, fail(0, google, err)
	}
	if resp.StatusCode != http.StatusOK || !google {
		return nil, fail(resp.StatusCode, google, nil)
	}
	return body, nil
}

// onGCE reports whether the machine's DMI product name is Compute
// Engine's.
func onGCE(file string) bool {
	b, err := os.ReadFile(file)
	return err == nil && strings.HasPrefix(strings.TrimSpace(string(b)), "Google")
}
