// Package storeproxy is a reverse proxy in front of a real secret store
// (moto for AWS Secrets Manager and SSM, a Vault dev server) that counts
// every request by API action, as the store's bill and rate limiter would
// see them, and answers the store's own throttling error above a rate set
// at run time. The fleet harness (test/fleet) reads its counts: they come
// from the store's side, not from the plugin under test.
package storeproxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/dsv-plugin/dsv/test/fakes/faultproxy"
)

// Kind is the protocol of the store behind the proxy.
type Kind string

const (
	// AWS: JSON protocol, the action in the X-Amz-Target header
	// (secretsmanager.GetSecretValue, AmazonSSM.GetParameter, ...).
	AWS Kind = "aws"
	// Vault: the action is the method and the path.
	Vault Kind = "vault"
)

// Request is one request the proxy saw.
type Request struct {
	At     time.Time
	Action string
	// Read: the action returns a secret's value (the calls billed and
	// rate-limited as reads).
	Read bool
	// Status is the HTTP status the client got.
	Status int
	// Throttled: the proxy answered the throttling error itself.
	Throttled bool
}

// Proxy forwards to one store. Its methods are safe for concurrent use.
type Proxy struct {
	// URL is where clients reach the proxy, http://HOST:PORT.
	URL string

	kind Kind
	srv  *http.Server

	mu       sync.Mutex
	requests []Request
	bucket   *faultproxy.Bucket
}

// Start serves on addr (HOST:PORT, port 0 for a free one) in front of
// target (the store's base URL).
func Start(kind Kind, addr, target string) (*Proxy, error) {
	if kind != AWS && kind != Vault {
		return nil, errors.New("storeproxy: kind must be aws or vault")
	}
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	p := &Proxy{URL: "http://" + ln.Addr().String(), kind: kind}
	rp := httputil.NewSingleHostReverseProxy(u)
	p.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: p.handler(rp)}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

// Close stops the proxy.
func (p *Proxy) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return p.srv.Shutdown(ctx)
}

// Throttle answers reads above rate per second (bursts up to burst) with
// the store's throttling error; rate 0 lets every request through.
func (p *Proxy) Throttle(rate float64, burst int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if rate <= 0 {
		p.bucket = nil
		return
	}
	p.bucket = faultproxy.NewBucket(rate, burst, time.Now())
}

// Mark is a position in the proxy's record, for Since.
func (p *Proxy) Mark() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.requests)
}

// Since returns the requests recorded from mark on.
func (p *Proxy) Since(mark int) []Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Request(nil), p.requests[mark:]...)
}

// Counts sums requests.
type Counts struct {
	// Requests: every read request, throttled ones included.
	Requests int `json:"requests"`
	// Answered: reads the store answered with a value (2xx).
	Answered int `json:"answered"`
	// Throttled: throttling answers.
	Throttled int `json:"throttled"`
	// Other: requests that read no value (logins, lookups, ...).
	Other int `json:"other"`
}

// Count sums rs.
func Count(rs []Request) Counts {
	var c Counts
	for _, r := range rs {
		switch {
		case !r.Read:
			c.Other++
		case r.Throttled:
			c.Requests++
			c.Throttled++
		default:
			c.Requests++
			if r.Status >= 200 && r.Status < 300 {
				c.Answered++
			}
		}
	}
	return c
}

func (p *Proxy) handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		action, read := p.action(r)
		now := time.Now()
		p.mu.Lock()
		throttled := read && p.bucket != nil && !p.bucket.Take(now)
		p.mu.Unlock()
		if throttled {
			_, _ = io.Copy(io.Discard, r.Body)
			p.record(Request{At: now, Action: action, Read: read, Status: p.throttle(w), Throttled: true})
			return
		}
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(sw, r)
		p.record(Request{At: now, Action: action, Read: read, Status: sw.status})
	})
}

func (p *Proxy) record(r Request) {
	p.mu.Lock()
	p.requests = append(p.requests, r)
	p.mu.Unlock()
}

// throttle writes the store's throttling answer (faultproxy's, checked
// against the SDKs there) and returns its status.
func (p *Proxy) throttle(w http.ResponseWriter) int {
	a := faultproxy.VaultRateLimited()
	if p.kind == AWS {
		a = faultproxy.AWSThrottling()
	}
	a.Write(w)
	return a.Status
}

// awsReads are the actions that return a value (and that AWS bills and
// rate-limits as reads).
var awsReads = map[string]bool{
	"secretsmanager.GetSecretValue":      true,
	"secretsmanager.BatchGetSecretValue": true,
	"AmazonSSM.GetParameter":             true,
	"AmazonSSM.GetParameters":            true,
	"AmazonSSM.GetParametersByPath":      true,
}

// action names r as the store's API would, and tells whether it reads a
// value.
func (p *Proxy) action(r *http.Request) (string, bool) {
	if p.kind == AWS {
		a := r.Header.Get("X-Amz-Target")
		if a == "" {
			a = r.Method + " " + r.URL.Path
		}
		return a, awsReads[a]
	}
	path := r.URL.Path
	// Vault: a GET of a secrets engine path reads a value; sys/ and auth/
	// are the server's own (health, token lookups, logins).
	read := r.Method == http.MethodGet && strings.HasPrefix(path, "/v1/") &&
		!strings.HasPrefix(path, "/v1/sys/") && !strings.HasPrefix(path, "/v1/auth/")
	return r.Method + " " + path, read
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}
