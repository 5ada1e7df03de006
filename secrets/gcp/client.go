package gcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/dsv-plugin/dsv/secrets"
)

// Google's endpoints of Secret Manager in a universe: one global, one per
// region for regional secrets
// (https://cloud.google.com/secret-manager/docs/reference/rest; in another
// universe, its domain takes googleapis.com's place).
const (
	globalEndpoint   = "https://secretmanager.%s"
	regionalEndpoint = "https://secretmanager.%s.rep.%s"
)

// Limits of a request.
const (
	// maxBody caps an answer: a version holds at most 64 KiB, about 88 KiB
	// in base64 inside the JSON.
	maxBody = 1 << 20
	// maxTries is how often a retryable failure is tried in one fetch,
	// within the fetch's deadline.
	maxTries = 3
	// firstBackoff is the wait after the first failed try; it doubles.
	firstBackoff = 200 * time.Millisecond
)

// Client is Secret Manager's REST API, authorized with Application Default
// Credentials. It is safe for concurrent use.
type Client struct {
	endpoint string
	http     *http.Client
	creds    *adc
}

var _ API = (*Client)(nil)

// NewClient returns the REST client of cfg. It contacts nothing and reads no
// credentials until the first Access.
func NewClient(cfg Config) *Client {
	tt := cfg.TokenTimeout
	if tt <= 0 {
		tt = 30 * time.Second
	}
	return &Client{
		endpoint: cfg.Endpoint,
		// No client timeout: every request's context has the fetch's.
		http:  &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()},
		creds: newADC(cfg.CredentialsFile, tt),
	}
}

// baseURL is the endpoint that serves a version's resource name in a
// universe ("" is googleapis.com).
func baseURL(endpoint, universe, name string) string {
	if endpoint != "" {
		return endpoint
	}
	if universe == "" {
		universe = defaultUniverse
	}
	if p := strings.Split(name, "/"); len(p) > 3 && p[2] == "locations" {
		return fmt.Sprintf(regionalEndpoint, p[3], universe)
	}
	return fmt.Sprintf(globalEndpoint, universe)
}

// host names the endpoint of a resource name in messages.
func (d *Driver) host(name string) string { return baseURL(d.endpoint, "", name) }

// APIError is an error answer of the API.
type APIError struct {
	// HTTPStatus is the answer's HTTP status code.
	HTTPStatus int
	// Status is the google.rpc.Code name (PERMISSION_DENIED, NOT_FOUND);
	// empty when the answer is not Google's error JSON (a proxy's page).
	Status string
	// Reason is the ErrorInfo reason of the details, e.g. SERVICE_DISABLED.
	Reason string
	// Message is Google's message, clipped; it names resources and
	// permissions, never a value.
	Message string
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP %d", e.HTTPStatus)
	if e.Status != "" {
		b.WriteString(" " + e.Status)
	}
	if e.Reason != "" {
		b.WriteString(" (" + e.Reason + ")")
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	return b.String()
}

// retryable reports the answers Google's clients retry: throttling and
// passing server failures.
func (e *APIError) retryable() bool {
	switch e.HTTPStatus {
	case http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// errMalformed is an answer that is not an AccessSecretVersionResponse. The
// decoder's message is dropped: it could quote the value.
var errMalformed = errors.New("the answer is not an AccessSecretVersionResponse")

// errTooLarge is an answer above maxBody.
var errTooLarge = fmt.Errorf("the answer is larger than %d bytes", maxBody)

// Access reads a version (GET v1/{name}:access), retrying what is
// retryable within ctx's deadline.
func (c *Client) Access(ctx context.Context, name string) (Payload, error) {
	wait := firstBackoff
	for try := 1; ; try++ {
		p, retry, err := c.access(ctx, name)
		if err == nil || !retry || try == maxTries {
			return p, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return p, err
		case <-t.C:
		}
		wait *= 2
	}
}

// access makes one try; retry says whether another may succeed.
func (c *Client) access(ctx context.Context, name string) (p Payload, retry bool, err error) {
	g, err := c.creds.token(ctx)
	if err != nil {
		return Payload{}, false, err
	}
	// The credentials name the universe, so the URL follows the token.
	url := baseURL(c.endpoint, g.universe, name) + "/v1/" + name + ":access"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return Payload{}, false, err
	}
	req.Header.Set("Authorization", g.tok.Type()+" "+g.tok.AccessToken)
	req.Header.Set("Accept", "application/json")
	if g.quotaProject != "" {
		// The project billed for quota, as Google's libraries send a
		// credentials file's quota_project_id
		// (https://cloud.google.com/docs/quotas/set-quota-project).
		req.Header.Set("X-Goog-User-Project", g.quotaProject)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		// A GET: a failed send is safe to try again.
		return Payload{}, ctx.Err() == nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return Payload{}, ctx.Err() == nil, err
	}
	if len(body) > maxBody {
		return Payload{}, false, errTooLarge
	}
	if resp.StatusCode != http.StatusOK {
		e := parseError(resp.StatusCode, body)
		return Payload{}, e.retryable(), e
	}
	p, err = parseAccess(body)
	return p, false, err
}

// parseAccess decodes an AccessSecretVersionResponse in proto3 JSON: bytes
// as base64, int64 as a string (or a number).
func parseAccess(body []byte) (Payload, error) {
	var r struct {
		Name    string `json:"name"`
		Payload *struct {
			Data       []byte          `json:"data"`
			DataCrc32c json.RawMessage `json:"dataCrc32c"`
		} `json:"payload"`
	}
	if err := json.Unmarshal(body, &r); err != nil || r.Payload == nil {
		return Payload{}, errMalformed
	}
	p := Payload{Name: r.Name, Data: r.Payload.Data}
	if raw := strings.Trim(string(r.Payload.DataCrc32c), `"`); raw != "" && raw != "null" {
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return Payload{}, fmt.Errorf("%w: dataCrc32c is not an integer", errMalformed)
		}
		p.CRC32C = &n
	}
	return p, nil
}

// parseError reads Google's error JSON, {"error": {"code", "message",
// "status", "details"}}; another body gives an *APIError without Status.
func parseError(code int, body []byte) *APIError {
	e := &APIError{HTTPStatus: code}
	var r struct {
		Error struct {
			Message string `json:"message"`
			Status  string `json:"status"`
			Details []struct {
				Type   string `json:"@type"`
				Reason string `json:"reason"`
			} `json:"details"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &r) != nil || r.Error.Status == "" {
		return e
	}
	e.Status = secrets.Clip(r.Error.Status, 40)
	e.Message = secrets.Clip(r.Error.Message, 300)
	for _, d := range r.Error.Details {
		if strings.HasSuffix(d.Type, "google.rpc.ErrorInfo") && d.Reason != "" {
			e.Reason = secrets.Clip(d.Reason, 60)
		}
	}
	return e
}
