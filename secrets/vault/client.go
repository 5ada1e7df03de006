package vault

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// This file is the backend's Vault client: JSON over HTTP, the dozen calls
// the backend makes, with the behaviour of the hashicorp/vault/api client
// (v1.23) it replaces: the same VAULT_* settings, TLS, headers, retry
// policy, single redirect and reading of answers. That client and its
// imports (go-retryablehttp, go-sockaddr, hcl, mapstructure, go-jose, ...)
// cost the plugin about 1 MiB of binary and 0.75 MiB of resident memory
// idle (issue 19; docs/benchmarks.md), for what these few hundred lines do.
// Not kept: VAULT_SRV_LOOKUP, VAULT_RATE_LIMIT and VAULT_HEADERS (never
// documented here, and the managed plugin cannot be given them: config.json
// does not list them), and the unwrapping of the wrapping tokens of Vault
// before 0.6.2.

// ClientConfig is how the backend reaches Vault. ClientConfigFromEnv reads
// it from the VAULT_* client settings; tests fill it in directly.
type ClientConfig struct {
	// Address is Vault's URL: http://, https:// or unix:///path/to/socket
	// (VAULT_ADDR; VAULT_AGENT_ADDR wins when set).
	Address string
	// CACert is a PEM file of the CAs that sign Vault's certificate
	// (VAULT_CACERT); CACertBytes the same PEM itself
	// (VAULT_CACERT_BYTES), CAPath a directory of such files
	// (VAULT_CAPATH). The first one set is used; none: the system's CAs.
	CACert      string
	CACertBytes []byte
	CAPath      string
	// ClientCert and ClientKey are the PEM files of a client certificate
	// (VAULT_CLIENT_CERT, VAULT_CLIENT_KEY): both or neither.
	ClientCert string
	ClientKey  string
	// TLSServerName is the name Vault's certificate must hold, and the SNI
	// sent (VAULT_TLS_SERVER_NAME).
	TLSServerName string
	// SkipVerify trusts any certificate (VAULT_SKIP_VERIFY).
	SkipVerify bool
	// MaxRetries is how many times a request is tried again after a
	// transport error, a 412, a 429 or a 5xx answer other than 501
	// (VAULT_MAX_RETRIES); 0: tried once.
	MaxRetries int
	// MinRetryWait and MaxRetryWait bound the wait before a retry, which
	// grows linearly with the try, with jitter (or a 429's or 503's
	// Retry-After).
	MinRetryWait time.Duration
	MaxRetryWait time.Duration
	// Timeout bounds each request, its retries and the reading of its
	// answer (VAULT_CLIENT_TIMEOUT); 0: no bound of its own. The TIMEOUT
	// plugin setting replaces it (see New).
	Timeout time.Duration
	// DisableRedirects stops the client from following the one redirect
	// (a standby's 307 to the active node) it follows otherwise
	// (VAULT_DISABLE_REDIRECTS).
	DisableRedirects bool
	// Proxy is the URL of an HTTP proxy for every request
	// (VAULT_PROXY_ADDR, or VAULT_HTTP_PROXY); empty: HTTPS_PROXY,
	// HTTP_PROXY and NO_PROXY apply.
	Proxy string
}

// Defaults of the client settings, those of the Vault CLI and api.
const (
	DefaultAddress      = "https://127.0.0.1:8200"
	defaultMaxRetries   = 2
	defaultMinRetryWait = time.Second
	defaultMaxRetryWait = 1500 * time.Millisecond
	defaultTimeout      = 60 * time.Second
)

// DefaultClientConfig is the configuration without any VAULT_* setting.
func DefaultClientConfig() *ClientConfig {
	return &ClientConfig{
		Address:      DefaultAddress,
		MaxRetries:   defaultMaxRetries,
		MinRetryWait: defaultMinRetryWait,
		MaxRetryWait: defaultMaxRetryWait,
		Timeout:      defaultTimeout,
	}
}

// ClientConfigFromEnv reads the Vault client settings through getenv, as
// the Vault CLI does, over DefaultClientConfig. It reports every setting it
// cannot parse in one error.
func ClientConfigFromEnv(getenv func(string) string) (*ClientConfig, error) {
	c := DefaultClientConfig()
	var errs []error
	str := func(dst *string, name string) {
		if v := getenv(name); v != "" {
			*dst = v
		}
	}
	boolean := func(dst *bool, name string) {
		if v := getenv(name); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("could not parse %s: %q is not true or false", name, quoted(v)))
			}
			*dst = b
		}
	}
	str(&c.Address, "VAULT_ADDR")
	str(&c.Address, "VAULT_AGENT_ADDR")
	str(&c.CACert, "VAULT_CACERT")
	if v := getenv("VAULT_CACERT_BYTES"); v != "" {
		c.CACertBytes = []byte(v)
	}
	str(&c.CAPath, "VAULT_CAPATH")
	str(&c.ClientCert, "VAULT_CLIENT_CERT")
	str(&c.ClientKey, "VAULT_CLIENT_KEY")
	str(&c.TLSServerName, "VAULT_TLS_SERVER_NAME")
	boolean(&c.SkipVerify, "VAULT_SKIP_VERIFY")
	boolean(&c.DisableRedirects, "VAULT_DISABLE_REDIRECTS")
	if v := getenv("VAULT_MAX_RETRIES"); v != "" {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			errs = append(errs, fmt.Errorf("could not parse VAULT_MAX_RETRIES: %q is not a count", quoted(v)))
		}
		c.MaxRetries = int(n)
	}
	if v := getenv("VAULT_CLIENT_TIMEOUT"); v != "" {
		d, err := durationSecond(v)
		if err != nil || d < 0 {
			errs = append(errs, fmt.Errorf("could not parse VAULT_CLIENT_TIMEOUT: %q is not seconds or a duration (30, 1m)", quoted(v)))
		} else if d != 0 {
			c.Timeout = d
		}
	}
	str(&c.Proxy, "VAULT_HTTP_PROXY")
	str(&c.Proxy, "VAULT_PROXY_ADDR")
	return c, errors.Join(errs...)
}

// durationSecond parses seconds ("30") or a Go duration ("1m30s").
func durationSecond(s string) (time.Duration, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	return time.ParseDuration(s)
}

// client sends requests to Vault. It is safe for concurrent use and never
// modified after newClient.
type client struct {
	http *http.Client
	base *url.URL // scheme, host and path prefix of every request
	addr string   // the address as configured, for messages

	maxRetries       int
	minWait, maxWait time.Duration
	timeout          time.Duration
	noRedirects      bool
}

// newClient builds the client of c; timeout, when positive, replaces c's.
func newClient(c *ClientConfig, timeout time.Duration) (*client, error) {
	u, err := url.Parse(c.Address)
	if err != nil {
		return nil, fmt.Errorf("VAULT_ADDR %q: %w", quoted(c.Address), err)
	}
	tlsConf, err := c.tlsConfig()
	if err != nil {
		return nil, err
	}
	// What go-cleanhttp's pooled transport sets, as the api used it.
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		MaxIdleConns:          100,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		ForceAttemptHTTP2:     true, // a custom TLS config turns it off otherwise
		MaxIdleConnsPerHost:   runtime.GOMAXPROCS(0) + 1,
		TLSClientConfig:       tlsConf,
	}
	if c.Proxy != "" {
		p, err := url.Parse(c.Proxy)
		if err != nil {
			return nil, fmt.Errorf("VAULT_PROXY_ADDR %q: %w", quoted(c.Proxy), err)
		}
		tr.Proxy = http.ProxyURL(p)
	}
	addr := u.String()
	if u.Scheme == "unix" {
		socket := strings.TrimPrefix(c.Address, "unix://")
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, "unix", socket)
		}
		addr = c.Address
		u = &url.URL{Scheme: "http", Host: "localhost"}
	}
	cl := &client{
		// Redirects are followed by do, once, with the request's body
		// and headers.
		http: &http.Client{
			Transport:     tr,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		base:        u,
		addr:        addr,
		maxRetries:  c.MaxRetries,
		minWait:     c.MinRetryWait,
		maxWait:     c.MaxRetryWait,
		timeout:     c.Timeout,
		noRedirects: c.DisableRedirects,
	}
	if cl.minWait == 0 {
		cl.minWait = defaultMinRetryWait
	}
	if cl.maxWait == 0 {
		cl.maxWait = defaultMaxRetryWait
	}
	if timeout > 0 {
		cl.timeout = timeout
	}
	return cl, nil
}

// tlsConfig is the TLS configuration of c's settings.
func (c *ClientConfig) tlsConfig() (*tls.Config, error) {
	t := &tls.Config{MinVersion: tls.VersionTLS12}
	switch {
	case c.ClientCert != "" && c.ClientKey != "":
		cert, err := tls.LoadX509KeyPair(c.ClientCert, c.ClientKey)
		if err != nil {
			return nil, fmt.Errorf("VAULT_CLIENT_CERT, VAULT_CLIENT_KEY: %w", err)
		}
		// Whatever CAs Vault names: the cert auth method's CA need not be
		// that of Vault's listener.
		t.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	case c.ClientCert != "" || c.ClientKey != "":
		return nil, errors.New("VAULT_CLIENT_CERT, VAULT_CLIENT_KEY: set both or neither")
	}
	var err error
	switch {
	case c.CACert != "":
		t.RootCAs, err = caFile(nil, c.CACert, "VAULT_CACERT")
	case len(c.CACertBytes) != 0:
		t.RootCAs = x509.NewCertPool()
		if !t.RootCAs.AppendCertsFromPEM(c.CACertBytes) {
			err = errors.New("VAULT_CACERT_BYTES: no PEM certificate in it")
		}
	case c.CAPath != "":
		pool := x509.NewCertPool()
		err = filepath.WalkDir(c.CAPath, func(p string, e fs.DirEntry, err error) error {
			if err != nil || e.IsDir() {
				return err
			}
			_, err = caFile(pool, p, "VAULT_CAPATH")
			return err
		})
		t.RootCAs = pool
	}
	if err != nil {
		return nil, err
	}
	t.InsecureSkipVerify = c.SkipVerify
	t.ServerName = c.TLSServerName
	return t, nil
}

// caFile adds the certificates of a PEM file to pool (a new pool if nil).
func caFile(pool *x509.CertPool, file, setting string) (*x509.CertPool, error) {
	if pool == nil {
		pool = x509.NewCertPool()
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", setting, err)
	}
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s: no PEM certificate in %s", setting, file)
	}
	return pool, nil
}

// apiRequest is one call to Vault's API.
type apiRequest struct {
	method    string // GET or PUT
	path      string // API path without /v1/: secret/data/app
	namespace string // X-Vault-Namespace; "" for none
	token     string // X-Vault-Token; "" for none
	wrapTTL   string // X-Vault-Wrap-TTL in seconds; "" for none
	query     url.Values
	body      any // a PUT's body, sent as JSON (nil as null, as the api did)
}

// responseError is an error answer of Vault: its status and the messages
// of its {"errors": [...]} body, or the body itself when it is not that
// (raw). Error holds no URL: a revocation's URL holds a lease id.
type responseError struct {
	StatusCode int
	Errors     []string
	Raw        bool
}

func (e *responseError) Error() string {
	msg := fmt.Sprintf("vault answered %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	if len(e.Errors) > 0 {
		msg += ": " + strings.Join(e.Errors, "; ")
	}
	return msg
}

// secret is Vault's answer to most requests.
type secret struct {
	RequestID     string         `json:"request_id"`
	LeaseID       string         `json:"lease_id"`
	LeaseDuration int            `json:"lease_duration"`
	Renewable     bool           `json:"renewable"`
	Data          map[string]any `json:"data"`
	Warnings      []string       `json:"warnings"`
	Auth          *secretAuth    `json:"auth,omitempty"`
	WrapInfo      *wrapInfo      `json:"wrap_info,omitempty"`
	MountType     string         `json:"mount_type,omitempty"`
}

// secretAuth is the auth part of a login's or a token renewal's answer.
type secretAuth struct {
	ClientToken   string `json:"client_token"`
	Accessor      string `json:"accessor"`
	LeaseDuration int    `json:"lease_duration"`
	Renewable     bool   `json:"renewable"`
}

// wrapInfo is the answer to a request with X-Vault-Wrap-TTL.
type wrapInfo struct {
	Token    string `json:"token"`
	Accessor string `json:"accessor"`
	TTL      int    `json:"ttl"`
}

// How a 404 answer is read (the api read each call's answer its own way).
const (
	// on404Error: an error, like any other status >= 400 (token lookup
	// and renewal, lease renewal).
	on404Error = iota
	// on404Read: the answer if it holds data or warnings (a KV v2
	// version deleted or destroyed, a wrapped answer), else no secret.
	on404Read
	// on404Write: no secret if the body is empty, else an error.
	on404Write
)

// call sends r and reads Vault's answer into a secret, under the client's
// timeout. A nil secret, nil error means Vault has nothing there.
func (c *client) call(ctx context.Context, r apiRequest, on404 int) (*secret, error) {
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	status, body, err := c.do(ctx, r)
	if status == http.StatusNotFound {
		switch on404 {
		case on404Read:
			sec, perr := parseSecret(body)
			if perr != nil {
				return nil, perr
			}
			if sec != nil && (len(sec.Warnings) > 0 || len(sec.Data) > 0) {
				return sec, nil
			}
			return nil, nil
		case on404Write:
			if len(body) == 0 {
				return nil, nil
			}
		}
	}
	if err != nil {
		return nil, err
	}
	return parseSecret(body)
}

// parseSecret reads an answer as the api's ParseSecret did: numbers kept
// as written (json.Number), an empty body no secret, and a body that is
// not a secret's shape taken as its data.
func parseSecret(body []byte) (*secret, error) {
	if len(body) == 0 {
		return nil, nil
	}
	var sec secret
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&sec); err != nil {
		return nil, fmt.Errorf("vault's answer is not JSON: %w", err)
	}
	if sec.RequestID != "" || sec.LeaseID != "" || sec.LeaseDuration != 0 || sec.Renewable || sec.Data != nil ||
		sec.Warnings != nil || sec.Auth != nil || sec.WrapInfo != nil || sec.MountType != "" {
		return &sec, nil
	}
	var raw map[string]any
	dec = json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("vault's answer is not a JSON object: %w", err)
	}
	msgs, hasErrors := raw["errors"]
	if hasErrors && len(raw) == 1 {
		return nil, nil
	}
	if hasErrors {
		list, _ := msgs.([]any)
		s := make([]string, 0, len(list))
		for _, m := range list {
			s = append(s, fmt.Sprint(m))
		}
		return nil, errors.New(strings.Join(s, " "))
	}
	if len(raw) > 0 {
		sec.Data = raw
	}
	return &sec, nil
}

// do sends r, with retries (see ClientConfig.MaxRetries) and one redirect,
// and returns the answer's status and body. A status of 400 or more is also
// a *responseError.
func (c *client) do(ctx context.Context, r apiRequest) (int, []byte, error) {
	if i := strings.IndexFunc(r.token, func(c rune) bool { return !unicode.IsPrint(c) }); i >= 0 {
		return 0, nil, errors.New("the vault token contains non-printable characters and cannot be used")
	}
	u := *c.base
	u.Path = path.Join(c.base.Path, "/v1/"+r.path)
	u.RawQuery = r.query.Encode()
	var body []byte
	if r.method != http.MethodGet {
		var err error
		if body, err = json.Marshal(r.body); err != nil {
			return 0, nil, err
		}
	}
	for redirects := 0; ; redirects++ {
		resp, err := c.try(ctx, r, &u, body)
		if err != nil {
			return 0, nil, err
		}
		b, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil {
			return 0, nil, err
		}
		switch resp.StatusCode {
		case http.StatusMovedPermanently, http.StatusFound, http.StatusTemporaryRedirect:
			// A standby sends requests to the active node.
			if redirects > 0 || c.noRedirects {
				break
			}
			loc, err := resp.Location()
			if err != nil {
				return 0, nil, err
			}
			if u.Scheme == "https" && loc.Scheme != "https" {
				return 0, nil, errors.New("redirect would cause protocol downgrade")
			}
			loc.RawQuery = u.RawQuery
			u = *loc
			continue
		}
		if resp.StatusCode >= 400 {
			return resp.StatusCode, b, answerError(resp.StatusCode, b)
		}
		return resp.StatusCode, b, nil
	}
}

// answerError reads the {"errors": [...]} body of an error answer.
func answerError(status int, body []byte) *responseError {
	e := &responseError{StatusCode: status}
	var answer struct{ Errors []string }
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&answer); err != nil {
		e.Raw = true
		e.Errors = []string{string(body)}
	} else {
		e.Errors = answer.Errors
	}
	return e
}

// try sends r to u, again while the answer is worth retrying (retryable),
// up to maxRetries times with a growing wait. It returns the last answer
// (its body unread), or the transport error of the last try.
func (c *client) try(ctx context.Context, r apiRequest, u *url.URL, body []byte) (*http.Response, error) {
	for i := 0; ; i++ {
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, r.method, u.String(), rd)
		if err != nil {
			return nil, err
		}
		// The Vault Agent's (and Proxy's) guard against request forgery.
		req.Header.Set("X-Vault-Request", "true")
		if r.token != "" {
			req.Header.Set("X-Vault-Token", r.token)
		}
		if r.namespace != "" {
			req.Header.Set("X-Vault-Namespace", r.namespace)
		}
		if r.wrapTTL != "" {
			req.Header.Set("X-Vault-Wrap-TTL", r.wrapTTL)
		}
		resp, err := c.http.Do(req)
		if ctx.Err() != nil {
			if resp != nil {
				_ = resp.Body.Close()
			}
			return nil, ctx.Err()
		}
		if a, ok := ctx.Value(attemptsKey{}).(*attempts); ok {
			a.record(resp, err)
		}
		if !retryable(resp, err) || i >= c.maxRetries {
			if err != nil && i > 0 {
				c.http.CloseIdleConnections()
			}
			return resp, err
		}
		if resp != nil {
			// Read what is left so that the connection is reused.
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
			_ = resp.Body.Close()
		}
		timer := time.NewTimer(c.backoff(i, resp))
		select {
		case <-ctx.Done():
			timer.Stop()
			c.http.CloseIdleConnections()
			return nil, ctx.Err()
		case <-timer.C:
		}
	}
}

// retryable is the api's retry policy: transport errors but those of a
// certificate, a scheme, a header or redirects; 412 (a performance standby
// not yet at the state the request needs), 429, and 5xx but 501.
func retryable(resp *http.Response, err error) bool {
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			msg := ue.Error()
			var unknownCA x509.UnknownAuthorityError
			var verify *tls.CertificateVerificationError
			if strings.Contains(msg, "stopped after") && strings.HasSuffix(msg, "redirects") ||
				strings.Contains(msg, "unsupported protocol scheme") ||
				strings.Contains(msg, "invalid header") ||
				strings.Contains(msg, "certificate is not trusted") ||
				errors.As(ue.Err, &unknownCA) || errors.As(ue.Err, &verify) {
				return false
			}
		}
		return true
	}
	switch s := resp.StatusCode; {
	case s == http.StatusPreconditionFailed, s == http.StatusTooManyRequests:
		return true
	case s == 0, s >= 500 && s != http.StatusNotImplemented:
		return true
	}
	return false
}

// backoff is the wait before retry i+1 (from 0): a 429's or 503's
// Retry-After, else between minWait and maxWait times i+1.
func (c *client) backoff(i int, resp *http.Response) time.Duration {
	if resp != nil && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) {
		if d, ok := retryAfter(resp.Header.Get("Retry-After")); ok {
			return d
		}
	}
	n := time.Duration(i + 1)
	if c.maxWait <= c.minWait {
		return c.minWait * n
	}
	return (c.minWait + time.Duration(rand.Int64N(int64(c.maxWait-c.minWait)))) * n
}

// retryAfter parses a Retry-After header: seconds or an HTTP date.
func retryAfter(v string) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return 0, false
		}
		return time.Duration(n) * time.Second, true
	}
	t, err := time.Parse(time.RFC1123, v)
	if err != nil {
		return 0, false
	}
	return max(time.Until(t), 0), true
}

// The calls the backend makes.

// read reads path (Logical().ReadWithData).
func (c *client) read(ctx context.Context, ns, token, path string, query url.Values, wrapTTL string) (*secret, error) {
	return c.call(ctx, apiRequest{method: http.MethodGet, path: path, namespace: ns, token: token, query: query, wrapTTL: wrapTTL}, on404Read)
}

// write writes body to path (Logical().Write).
func (c *client) write(ctx context.Context, ns, token, path string, body map[string]any, wrapTTL string) (*secret, error) {
	return c.call(ctx, apiRequest{method: http.MethodPut, path: path, namespace: ns, token: token, body: body, wrapTTL: wrapTTL}, on404Write)
}

// lookupSelf asks Vault about token (auth/token/lookup-self).
func (c *client) lookupSelf(ctx context.Context, ns, token string) (*secret, error) {
	return c.call(ctx, apiRequest{method: http.MethodGet, path: "auth/token/lookup-self", namespace: ns, token: token}, on404Error)
}

// renewSelf renews token by its own TTL (auth/token/renew-self).
func (c *client) renewSelf(ctx context.Context, ns, token string) (*secret, error) {
	return c.call(ctx, apiRequest{method: http.MethodPut, path: "auth/token/renew-self", namespace: ns, token: token,
		body: map[string]any{"increment": 0}}, on404Error)
}

// renewLease extends a lease by increment seconds (sys/leases/renew).
func (c *client) renewLease(ctx context.Context, ns, token, leaseID string, increment int) (*secret, error) {
	return c.call(ctx, apiRequest{method: http.MethodPut, path: "sys/leases/renew", namespace: ns, token: token,
		body: map[string]any{"increment": increment, "lease_id": leaseID}}, on404Error)
}

// unwrap returns what a wrapping token wraps (sys/wrapping/unwrap, with
// the wrapping token as the request's token).
func (c *client) unwrap(ctx context.Context, ns, wrapping string) (*secret, error) {
	return c.call(ctx, apiRequest{method: http.MethodPut, path: "sys/wrapping/unwrap", namespace: ns, token: strings.TrimSpace(wrapping)}, on404Read)
}

// tokenTTL is the ttl of a token lookup's answer (Secret.TokenTTL).
func (s *secret) tokenTTL() (time.Duration, error) {
	if s.Auth != nil && s.Auth.LeaseDuration > 0 {
		return time.Duration(s.Auth.LeaseDuration) * time.Second, nil
	}
	switch v := s.Data["ttl"].(type) {
	case nil:
		return 0, nil
	case json.Number:
		if n, err := v.Int64(); err == nil {
			return time.Duration(n) * time.Second, nil
		}
		f, err := v.Float64()
		return time.Duration(f * float64(time.Second)), err
	case string:
		return durationSecond(v)
	}
	return 0, fmt.Errorf("ttl is a %T", s.Data["ttl"])
}

// tokenRenewable is the renewable flag of a token lookup's answer.
func (s *secret) tokenRenewable() bool {
	if s.Auth != nil && s.Auth.Renewable {
		return true
	}
	switch v := s.Data["renewable"].(type) {
	case bool:
		return v
	case string:
		b, _ := strconv.ParseBool(v)
		return b
	}
	return false
}
