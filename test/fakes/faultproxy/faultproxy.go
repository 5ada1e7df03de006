// Package faultproxy is an HTTP reverse proxy that injects backend faults,
// for tests that put it between the plugin and a real backend (moto, a Vault
// dev server): the backend down (connections refused), slow (each request
// held), answering errors of its own (throttled, sealed), a connection reset
// in the middle of an answer, a connect that hangs (the SYN unanswered), or
// only the Nth request failing.
//
// A Proxy listens on 127.0.0.1 and keeps its port for its whole life, so the
// plugin is configured once with URL and the faults are switched under it,
// while requests are in flight if need be.
//
// Forwarding changes nothing a client signs: the Host header stays the one
// the client sent (AWS SigV4 signs it), and the proxy adds no header. Only
// hop-by-hop headers are dropped, as by any proxy.
package faultproxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// ErrClosed is returned by the mode setters of a closed Proxy.
var ErrClosed = errors.New("faultproxy: proxy is closed")

// Answer is an HTTP response the proxy gives in place of the backend's.
type Answer struct {
	Status int
	Header http.Header
	Body   string
}

// AWSThrottling is AWS throttling as the JSON 1.1 protocol of Secrets
// Manager sends it. aws-sdk-go-v2 reads the code from X-Amzn-Errortype (the
// body's __type when the header is absent) into a smithy.APIError with code
// ThrottlingException, which its standard retryer retries as a throttle: 3
// attempts by default, waiting a random time up to 1s, then up to 2s;
// then the call fails with a *retry.MaxAttemptsError around it. Each retry
// costs the client 5 of its 500 retry tokens: once they are spent, a
// throttled call fails after its first attempt (ratelimit.QuotaExceededError).
func AWSThrottling() Answer {
	return Answer{
		Status: http.StatusBadRequest,
		Header: http.Header{
			"Content-Type":     {"application/x-amz-json-1.1"},
			"X-Amzn-Errortype": {"ThrottlingException"},
			// The request id the SDK prints in its error, naming the proxy
			// as the source of the answer.
			"X-Amzn-Requestid": {"faultproxy"},
		},
		Body: `{"__type":"ThrottlingException","message":"Rate exceeded"}`,
	}
}

// VaultRateLimited is Vault refusing a request over a rate limit quota.
// (Vault prefixes the message with the request path, and sends Retry-After
// only when the quota's response headers are enabled.) vault/api retries
// it: 2 retries by default, waiting 1-1.5s times the retry's number; then
// it returns an *api.ResponseError with the status and message.
func VaultRateLimited() Answer {
	return vaultError(http.StatusTooManyRequests, "rate limit quota exceeded")
}

// VaultSealed is a sealed Vault's answer to every request. vault/api
// retries it as it does VaultRateLimited.
func VaultSealed() Answer {
	return vaultError(http.StatusServiceUnavailable, "Vault is sealed")
}

// Write sends the answer.
func (a Answer) Write(w http.ResponseWriter) {
	for k, v := range a.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(a.Status)
	_, _ = io.WriteString(w, a.Body)
}

// Bucket is a token bucket, as AWS meters its APIs: Take succeeds at most
// rate times a second, after a burst of up to burst at once. Its caller
// serialises the calls.
type Bucket struct {
	rate, burst, tokens float64
	filled              time.Time
}

// NewBucket returns a full bucket of burst tokens (at least 1), filled by
// perSecond a second from now on.
func NewBucket(perSecond float64, burst int, now time.Time) *Bucket {
	b := float64(max(burst, 1))
	return &Bucket{rate: perSecond, burst: b, tokens: b, filled: now}
}

// Take takes a token if one is there at now.
func (b *Bucket) Take(now time.Time) bool {
	b.tokens = min(b.burst, b.tokens+now.Sub(b.filled).Seconds()*b.rate)
	b.filled = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

func vaultError(status int, msg string) Answer {
	return Answer{
		Status: status,
		Header: http.Header{"Content-Type": {"application/json"}},
		Body:   `{"errors":["` + msg + `"]}`,
	}
}

type mode int

const (
	pass mode = iota
	refuse
	delay
	respond
	reset
	hang
	limit
)

// Proxy is a fault-injecting reverse proxy to one target. Its methods are
// safe for concurrent use.
//
// A request gets the treatment of the mode it arrives in: a request held by
// Delay is forwarded when its delay is over even if the mode has changed
// since. Refuse is the exception: it drops every connection, in-flight
// requests included, as a backend that goes down does.
type Proxy struct {
	addr     *net.TCPAddr
	rp       *httputil.ReverseProxy
	tr       *http.Transport
	requests atomic.Int64

	mu     sync.Mutex
	mode   mode
	delay  time.Duration
	answer Answer
	// resetAfter: in reset, the bytes of the body sent before the reset.
	resetAfter int
	// failAt is the number (Requests) of the request FailNth answers
	// with failAnswer; 0: none.
	failAt     int64
	failAnswer Answer
	// In limit: the bucket of forwards, and the requests answered
	// instead.
	bucket  *Bucket
	limited atomic.Int64
	closed  bool
	// While listening: the listener, its server, and done, closed when
	// the server's Serve returns.
	ln   net.Listener
	srv  *http.Server
	done chan struct{}
	// While refusing: a socket bound to addr but not listening, which
	// holds the port (connections to it are refused); -1 otherwise.
	hold int
	// While hanging: a socket listening on addr with a backlog of 0 that
	// never accepts, and the connections that fill its accept queue, so
	// that the kernel drops every further SYN; -1 and nil otherwise.
	hangFD  int
	fillers []net.Conn
}

// Start starts a proxy to target (e.g. http://127.0.0.1:5000) on a free
// port of 127.0.0.1. It forwards everything until told otherwise.
func Start(target string) (*Proxy, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, fmt.Errorf("faultproxy: target %q: %w", target, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("faultproxy: target %q: not an http(s)://host[:port] URL", target)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: %w", err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	// Forward the client's Accept-Encoding as it is, or none.
	tr.DisableCompression = true
	p := &Proxy{addr: ln.Addr().(*net.TCPAddr), tr: tr, hold: -1, hangFD: -1}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			// SetURL sets the target's host; SigV4 signed the client's.
			pr.Out.Host = pr.In.Host
		},
		Transport: tr,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() != nil {
				return // the client has gone
			}
			http.Error(w, fmt.Sprintf("faultproxy: forward to %s: %v", u.Redacted(), err), http.StatusBadGateway)
		},
	}
	p.serve(ln)
	return p, nil
}

// URL is the proxy's base URL, http://127.0.0.1:PORT, the same for its
// whole life.
func (p *Proxy) URL() string { return "http://" + p.addr.String() }

// Requests is the number of requests the proxy has received since it
// started, whatever became of them: forwarded, answered, or dropped because
// the client went away during a delay. Connections refused are not requests.
func (p *Proxy) Requests() int64 { return p.requests.Load() }

// Pass forwards every request to the target. It listens again if the proxy
// was refusing.
func (p *Proxy) Pass() error { return p.set(pass, 0, Answer{}) }

// Delay holds each request for d, then forwards it. A request whose client
// goes away during the wait is dropped. It listens again if the proxy was
// refusing.
func (p *Proxy) Delay(d time.Duration) error { return p.set(delay, max(d, 0), Answer{}) }

// Respond answers every request with a, without forwarding it. It listens
// again if the proxy was refusing.
func (p *Proxy) Respond(a Answer) error {
	if a.Status < 200 || a.Status > 599 {
		return fmt.Errorf("faultproxy: answer status %d is not a final HTTP status (200-599)", a.Status)
	}
	a.Header = a.Header.Clone()
	return p.set(respond, 0, a)
}

// RateLimit forwards at most perSecond requests a second, after a burst
// of up to burst at once (a token bucket, as AWS meters its APIs), and
// answers the others with a: a store that throttles above a rate.
func (p *Proxy) RateLimit(perSecond float64, burst int, a Answer) error {
	if err := p.set(limit, 0, a); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.bucket = NewBucket(perSecond, burst, time.Now())
	return nil
}

// Limited is the number of requests RateLimit answered in place of the
// target since the proxy started.
func (p *Proxy) Limited() int64 { return p.limited.Load() }

// ResetMidResponse forwards each request, then sends the target's status,
// headers (with the Content-Length of the whole body) and the first n bytes
// of its body (at most all but one), and resets the connection (RST): the
// client sees its answer cut short, as when a backend or a middlebox dies
// mid-response. It listens again if the proxy was refusing.
func (p *Proxy) ResetMidResponse(n int) error {
	p.mu.Lock()
	p.resetAfter = max(n, 0)
	p.mu.Unlock()
	return p.set(reset, 0, Answer{})
}

// FailNth answers the nth request from now (1: the next) with a, once, in
// whatever mode the proxy is then; the others are treated as before.
func (p *Proxy) FailNth(n int, a Answer) error {
	if n < 1 {
		return fmt.Errorf("faultproxy: FailNth(%d): n counts from 1", n)
	}
	if a.Status < 200 || a.Status > 599 {
		return fmt.Errorf("faultproxy: answer status %d is not a final HTTP status (200-599)", a.Status)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	p.failAt, p.failAnswer = p.requests.Load()+int64(n), Answer{Status: a.Status, Header: a.Header.Clone(), Body: a.Body}
	return nil
}

// HangConnect makes connects to URL hang: the proxy listens with a backlog
// of 0, never accepts, and fills the accept queue with connections of its
// own, so that the kernel drops every further SYN and a client's connect
// waits until its own timeout, as towards a host that is down behind a
// firewall. Connections open now are closed. Pass, Delay, Respond and
// ResetMidResponse listen again.
func (p *Proxy) HangConnect() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	p.mode = hang
	if p.hangFD >= 0 {
		return nil
	}
	if p.srv != nil {
		p.stop()
	}
	if p.hold >= 0 {
		_ = unix.Close(p.hold)
		p.hold = -1
	}
	fd, err := holdPort(p.addr)
	if err == nil {
		err = unix.Listen(fd, 0)
	}
	if err != nil {
		if fd >= 0 {
			_ = unix.Close(fd)
		}
		return fmt.Errorf("faultproxy: hang on port %d: %w", p.addr.Port, err)
	}
	p.hangFD = fd
	// A backlog of 0 holds one connection; go on until a connect hangs.
	for range 8 {
		c, err := net.DialTimeout("tcp4", p.addr.String(), time.Second)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil
		}
		if err != nil {
			p.unhang()
			return fmt.Errorf("faultproxy: fill the accept queue of port %d: %w", p.addr.Port, err)
		}
		p.fillers = append(p.fillers, c)
	}
	p.unhang()
	return fmt.Errorf("faultproxy: port %d still accepts connections after 8 that are never accepted", p.addr.Port)
}

// unhang closes the hanging socket and its fillers. Called with p.mu held.
func (p *Proxy) unhang() {
	for _, c := range p.fillers {
		_ = c.Close()
	}
	p.fillers = nil
	if p.hangFD >= 0 {
		_ = unix.Close(p.hangFD)
		p.hangFD = -1
	}
}

// Refuse stops listening, so that connections to URL are refused, and
// closes the connections open now, idle keep-alive ones and in-flight
// requests included. (A client notices that its idle connection was closed
// when the FIN reaches it, at once on loopback; a POST it sends on that
// connection in the same instant fails with EOF rather than a refusal.)
//
// The port stays bound to the proxy, by a socket that does not listen: the
// kernel hands it to no other socket as an ephemeral port (of a connection
// or of a listener on port 0), and a socket without SO_REUSEADDR cannot
// bind it. Only a listener with SO_REUSEADDR (Go's default) that asks for
// this very port could share it, and in the instant between closing the
// listener and binding the hold, anything could take it; then the next
// Pass, Delay or Respond fails.
func (p *Proxy) Refuse() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	p.mode = refuse
	p.unhang()
	if p.srv == nil && p.hold >= 0 {
		return nil
	}
	if p.srv != nil {
		p.stop()
	}
	fd, err := holdPort(p.addr)
	if err != nil {
		return fmt.Errorf("faultproxy: hold port %d: %w", p.addr.Port, err)
	}
	p.hold = fd
	return nil
}

// Close stops the proxy and closes its connections, to both sides.
func (p *Proxy) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	p.mode = refuse
	var err error
	if p.srv != nil {
		p.stop()
	}
	p.unhang()
	if p.hold >= 0 {
		err = unix.Close(p.hold)
		p.hold = -1
	}
	p.tr.CloseIdleConnections()
	return err
}

// set switches to a mode that listens, listening again on the proxy's port
// first if it was refusing.
func (p *Proxy) set(m mode, d time.Duration, a Answer) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	if p.srv == nil {
		// A hanging socket listens: it goes first.
		p.unhang()
		// The held port is bound with SO_REUSEADDR and not listening, so
		// the listener (Go sets SO_REUSEADDR too) may bind it alongside.
		ln, err := net.Listen("tcp4", p.addr.String())
		if err != nil {
			return fmt.Errorf("faultproxy: listen again on %s: %w", p.addr, err)
		}
		if p.hold >= 0 {
			_ = unix.Close(p.hold)
			p.hold = -1
		}
		p.serve(ln)
	}
	p.mode, p.delay, p.answer = m, d, a
	return nil
}

// serve serves ln with a new server. Called with p.mu held, or before p is
// shared.
func (p *Proxy) serve(ln net.Listener) {
	srv := &http.Server{
		Handler:           http.HandlerFunc(p.handle),
		ReadHeaderTimeout: 30 * time.Second,
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	p.ln, p.srv, p.done = ln, srv, done
}

// stop closes the listener, then every connection of the server, and waits
// for its Serve to return. Called with p.mu held.
func (p *Proxy) stop() {
	// Closed here rather than left to srv.Close, which does not close a
	// listener its Serve has not started on yet: the port must be free
	// when stop returns.
	_ = p.ln.Close()
	_ = p.srv.Close()
	<-p.done
	p.ln, p.srv, p.done = nil, nil, nil
}

func (p *Proxy) handle(w http.ResponseWriter, r *http.Request) {
	n := p.requests.Add(1)
	p.mu.Lock()
	m, d, a, after := p.mode, p.delay, p.answer, p.resetAfter
	if n == p.failAt {
		m, a = respond, p.failAnswer
		p.failAt = 0
	}
	if m == limit {
		if p.bucket.Take(time.Now()) {
			m = pass
		} else {
			m = respond
			p.limited.Add(1)
		}
	}
	p.mu.Unlock()
	switch m {
	case refuse:
		// A connection accepted as Refuse closed the listener: drop it, as
		// the backend that is down would have.
		panic(http.ErrAbortHandler)
	case respond:
		a.Write(w)
		return
	case reset:
		p.resetMidResponse(w, r, after)
		return
	case delay:
		// Read the body first: the server notices a client that hangs up
		// (and cancels r's context) only once the body has been read.
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return // the client has gone
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return
		}
	}
	p.rp.ServeHTTP(w, r)
}

// resetMidResponse forwards r, sends the answer's head and the first
// bytes of its body, and resets the connection.
func (p *Proxy) resetMidResponse(w http.ResponseWriter, r *http.Request, after int) {
	rec := httptest.NewRecorder()
	p.rp.ServeHTTP(rec, r)
	body := rec.Body.Bytes()
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Header().Del("Transfer-Encoding")
	w.WriteHeader(rec.Code)
	_, _ = w.Write(body[:max(min(after, len(body)-1), 0)])
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	conn, _, err := rc.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		// Close with a linger of 0 sends RST, not FIN.
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

// holdPort binds a socket to addr without listening on it, with
// SO_REUSEADDR so that a listener may bind alongside it later: connections
// to addr are refused, and no other socket takes the port.
func holdPort(addr *net.TCPAddr) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	sa := &unix.SockaddrInet4{Port: addr.Port}
	copy(sa.Addr[:], addr.IP.To4())
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		_ = unix.Close(fd)
		return -1, err
	}
	if err := unix.Bind(fd, sa); err != nil {
		_ = unix.Close(fd)
		return -1, err
	}
	return fd, nil
}
