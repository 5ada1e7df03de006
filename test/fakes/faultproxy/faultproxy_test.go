package faultproxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/smithy-go"
	"github.com/hashicorp/vault/api"
)

// Fake AWS credentials of the SDK tests.
const (
	accessKeyID     = "AKIDFAULTPROXY"
	secretAccessKey = "faultproxy-secret-key"
	region          = "us-east-1"
)

// seen is a request as the target received it.
type seen struct {
	method, uri, host string
	header            http.Header
	body              []byte
}

// target is the backend behind the proxy: it records every request and
// answers 200 "target" with the header X-Target: yes.
type target struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []seen
}

func newTarget(t *testing.T) *target {
	t.Helper()
	tg := &target{}
	tg.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		tg.mu.Lock()
		tg.reqs = append(tg.reqs, seen{method: r.Method, uri: r.RequestURI, host: r.Host, header: r.Header.Clone(), body: body})
		tg.mu.Unlock()
		w.Header().Set("X-Target", "yes")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "target")
	}))
	t.Cleanup(tg.Close)
	return tg
}

func (tg *target) seen() []seen {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	return slices.Clone(tg.reqs)
}

func startProxy(t *testing.T, target string) *Proxy {
	t.Helper()
	p, err := Start(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	return p
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// do sends a request and reads the whole answer.
func do(ctx context.Context, c *http.Client, method, url, body string) (*http.Response, string, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		return nil, "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, string(b), err
}

// newClient returns a client with its own pool of keep-alive connections.
func newClient(t *testing.T, timeout time.Duration) *http.Client {
	// No Accept-Encoding added by the client, so that the tests see what
	// the proxy adds.
	tr := &http.Transport{DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: timeout}
}

func TestStartRejectsBadTarget(t *testing.T) {
	for _, target := range []string{"", "127.0.0.1:5000", "ftp://127.0.0.1", "http://", "http://[::1"} {
		t.Run(target, func(t *testing.T) {
			p, err := Start(target)
			if err == nil {
				_ = p.Close()
				t.Fatalf("Start(%q) succeeded", target)
			}
		})
	}
}

func TestPassForwardsUnchanged(t *testing.T) {
	tg := newTarget(t)
	p := startProxy(t, tg.URL)
	if !strings.HasPrefix(p.URL(), "http://127.0.0.1:") {
		t.Fatalf("URL = %q, want http://127.0.0.1:PORT", p.URL())
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, p.URL()+"/v1/secret/data/db?version=2", strings.NewReader(`{"a":1}`))
	must(t, err)
	req.Header.Set("X-Amz-Target", "secretsmanager.GetSecretValue")
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	resp, err := newClient(t, 0).Do(req)
	must(t, err)
	body, err := io.ReadAll(resp.Body)
	must(t, errors.Join(err, resp.Body.Close()))

	if resp.StatusCode != http.StatusOK || string(body) != "target" || resp.Header.Get("X-Target") != "yes" {
		t.Errorf("answer = %d %q X-Target=%q, want the target's 200 \"target\" X-Target=yes", resp.StatusCode, body, resp.Header.Get("X-Target"))
	}
	got := tg.seen()
	if len(got) != 1 {
		t.Fatalf("the target got %d requests, want 1", len(got))
	}
	s := got[0]
	proxyHost := strings.TrimPrefix(p.URL(), "http://")
	if s.host != proxyHost {
		t.Errorf("Host at the target = %q, want the client's %q", s.host, proxyHost)
	}
	if s.method != http.MethodPost || s.uri != "/v1/secret/data/db?version=2" || string(s.body) != `{"a":1}` {
		t.Errorf("target got %s %s %q, want POST /v1/secret/data/db?version=2 {\"a\":1}", s.method, s.uri, s.body)
	}
	if s.header.Get("X-Amz-Target") != "secretsmanager.GetSecretValue" || s.header.Get("Content-Type") != "application/x-amz-json-1.1" {
		t.Errorf("headers at the target: %v", s.header)
	}
	for _, h := range []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "Accept-Encoding"} {
		if v, ok := s.header[h]; ok {
			t.Errorf("the proxy added %s: %q", h, v)
		}
	}
	if n := p.Requests(); n != 1 {
		t.Errorf("Requests() = %d, want 1", n)
	}
}

// TestPassKeepsSigV4 sends a signed GetSecretValue through the proxy and
// checks the signature at the target, where AWS would.
func TestPassKeepsSigV4(t *testing.T) {
	got := make(chan seen, 1)
	tg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		select {
		case got <- seen{method: r.Method, uri: r.RequestURI, host: r.Host, header: r.Header.Clone(), body: body}:
		default:
		}
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		_, _ = io.WriteString(w, `{"ARN":"arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf","Name":"db","SecretString":"s3cr3t","VersionId":"v1"}`)
	}))
	t.Cleanup(tg.Close)
	p := startProxy(t, tg.URL)

	out, err := smClient(p.URL()).GetSecretValue(t.Context(), &secretsmanager.GetSecretValueInput{SecretId: aws.String("db")})
	must(t, err)
	if aws.ToString(out.SecretString) != "s3cr3t" {
		t.Fatalf("SecretString = %q, want the target's", aws.ToString(out.SecretString))
	}
	s := <-got
	if err := verifySigV4(t.Context(), s); err != nil {
		t.Errorf("the signature does not hold at the target: %v", err)
	}
	// The control: had the proxy sent the target's host, as
	// httputil.NewSingleHostReverseProxy does, the signature would break.
	s.host = strings.TrimPrefix(tg.URL, "http://")
	if err := verifySigV4(t.Context(), s); err == nil {
		t.Error("the signature holds for the target's host too: the check proves nothing")
	}
}

// verifySigV4 signs the request again with the same key, time and signed
// headers, and compares the signatures.
func verifySigV4(ctx context.Context, s seen) error {
	auth := s.header.Get("Authorization")
	rest, ok := strings.CutPrefix(auth, "AWS4-HMAC-SHA256 ")
	if !ok {
		return fmt.Errorf("authorization %q is not SigV4", auth)
	}
	fields := map[string]string{}
	for f := range strings.SplitSeq(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(f), "=")
		fields[k] = v
	}
	scope := strings.Split(fields["Credential"], "/") // key id, date, region, service, aws4_request
	if len(scope) != 5 {
		return fmt.Errorf("credential scope %q", fields["Credential"])
	}
	signedHeaders := strings.Split(fields["SignedHeaders"], ";")
	if !slices.Contains(signedHeaders, "host") {
		return fmt.Errorf("host is not signed: %q", fields["SignedHeaders"])
	}
	at, err := time.Parse("20060102T150405Z", s.header.Get("X-Amz-Date"))
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, s.method, "http://"+s.host+s.uri, bytes.NewReader(s.body))
	if err != nil {
		return err
	}
	for _, h := range signedHeaders {
		if h != "host" && h != "content-length" { // both from the request line and body
			req.Header[http.CanonicalHeaderKey(h)] = s.header.Values(h)
		}
	}
	sum := sha256.Sum256(s.body)
	creds := aws.Credentials{AccessKeyID: scope[0], SecretAccessKey: secretAccessKey}
	if err := v4.NewSigner().SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), scope[3], scope[2], at); err != nil {
		return err
	}
	if want := req.Header.Get("Authorization"); want != auth {
		return fmt.Errorf("got %q, signing again gives %q", auth, want)
	}
	return nil
}

func smClient(url string, optFns ...func(*secretsmanager.Options)) *secretsmanager.Client {
	return secretsmanager.New(secretsmanager.Options{
		Region:       region,
		BaseEndpoint: aws.String(url),
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: accessKeyID, SecretAccessKey: secretAccessKey, Source: "test"}, nil
		}),
	}, optFns...)
}

func TestRefuse(t *testing.T) {
	tg := newTarget(t)
	p := startProxy(t, tg.URL)
	url := p.URL()
	client := newClient(t, 10*time.Second)
	// get reports whether the request went over a kept-alive connection.
	// It POSTs, as the AWS SDK does: the client does not retry a POST that
	// fails on a kept-alive connection, so a refusal it sees is the dial's.
	get := func() (reused bool, err error) {
		ctx := httptrace.WithClientTrace(t.Context(), &httptrace.ClientTrace{
			GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused },
		})
		resp, body, err := do(ctx, client, http.MethodPost, url+"/x", "body")
		if err != nil {
			return reused, err
		}
		if resp.StatusCode != http.StatusOK || body != "target" {
			return reused, fmt.Errorf("answer %d %q, not the target's", resp.StatusCode, body)
		}
		return reused, nil
	}

	_, err := get()
	must(t, err)
	reused, err := get()
	must(t, err)
	if !reused {
		t.Fatal("the client did not keep its connection alive: the test would prove nothing")
	}

	// The client notices that the proxy closed its idle connection when the
	// FIN reaches it: a request sent in that instant would fail with EOF.
	refuse := func() {
		t.Helper()
		must(t, p.Refuse())
		time.Sleep(50 * time.Millisecond)
	}
	refuse()
	if _, err := get(); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("a client with a kept-alive connection got %v, want connection refused", err)
	}
	if c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://")); !errors.Is(err, syscall.ECONNREFUSED) {
		if c != nil {
			_ = c.Close()
		}
		t.Fatalf("dial got %v, want connection refused", err)
	}
	must(t, p.Refuse()) // again: nothing changes

	must(t, p.Pass())
	if p.URL() != url {
		t.Fatalf("URL changed from %s to %s", url, p.URL())
	}
	if _, err := get(); err != nil {
		t.Fatalf("after Pass: %v", err)
	}

	// Down and up again, many times, on the same port.
	for i := range 20 {
		refuse()
		if _, err := get(); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("cycle %d: refusing, got %v", i, err)
		}
		must(t, p.Pass())
		if _, err := get(); err != nil {
			t.Fatalf("cycle %d: passing again, got %v", i, err)
		}
	}
}

// TestRefuseHoldsPort checks that the port stays bound while the proxy
// refuses: a socket without SO_REUSEADDR (as an outgoing connection's) may
// not bind it, and may once the proxy is closed.
func TestRefuseHoldsPort(t *testing.T) {
	p, err := Start(newTarget(t).URL)
	must(t, err)
	addr := strings.TrimPrefix(p.URL(), "http://")
	noReuse := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 0)
		})
		return errors.Join(err, serr)
	}}
	must(t, p.Refuse())
	if ln, err := noReuse.Listen(t.Context(), "tcp4", addr); !errors.Is(err, syscall.EADDRINUSE) {
		if ln != nil {
			_ = ln.Close()
		}
		t.Fatalf("binding the port of a refusing proxy: %v, want address in use", err)
	}
	must(t, p.Close())
	ln, err := noReuse.Listen(t.Context(), "tcp4", addr)
	if err != nil {
		t.Fatalf("the port is still bound after Close: %v", err)
	}
	must(t, ln.Close())
}

func TestRefuseDropsRequestsInFlight(t *testing.T) {
	tg := newTarget(t)
	p := startProxy(t, tg.URL)
	must(t, p.Delay(time.Minute))
	errc := make(chan error, 1)
	go func() {
		_, _, err := do(t.Context(), newClient(t, 0), http.MethodGet, p.URL(), "")
		errc <- err
	}()
	waitFor(t, func() bool { return p.Requests() == 1 })
	must(t, p.Refuse())
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("the request held when the proxy went down succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the request held when the proxy went down still waits")
	}
	if n := len(tg.seen()); n != 0 {
		t.Errorf("the target got %d requests, want none", n)
	}
}

func TestDelay(t *testing.T) {
	tg := newTarget(t)
	p := startProxy(t, tg.URL)

	// A client that gives up before the delay: its request is dropped,
	// never forwarded. POST, as the AWS SDK sends.
	const held = 500 * time.Millisecond
	must(t, p.Delay(held))
	_, _, err := do(t.Context(), newClient(t, 100*time.Millisecond), http.MethodPost, p.URL(), "body")
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("a client with a 100ms timeout got %v through a %s delay, want a timeout", err, held)
	}
	time.Sleep(2 * held)
	if n := len(tg.seen()); n != 0 {
		t.Errorf("the request of a client that went away was forwarded (%d requests at the target)", n)
	}

	// A patient client gets the target's answer, no sooner than the delay.
	const d = 200 * time.Millisecond
	must(t, p.Delay(d))
	start := time.Now()
	resp, body, err := do(t.Context(), newClient(t, 10*time.Second), http.MethodPost, p.URL(), "body")
	took := time.Since(start)
	must(t, err)
	if resp.StatusCode != http.StatusOK || body != "target" {
		t.Errorf("answer %d %q, not the target's", resp.StatusCode, body)
	}
	if took < d {
		t.Errorf("the answer came after %s, before the %s delay", took, d)
	}
	if got := tg.seen(); len(got) != 1 || string(got[0].body) != "body" {
		t.Errorf("the target got %d requests, want 1 with its body", len(got))
	}
	if n := p.Requests(); n != 2 {
		t.Errorf("Requests() = %d, want 2", n)
	}
}

func TestRespond(t *testing.T) {
	for _, tc := range []struct {
		name       string
		answer     Answer
		wantStatus int
		wantHeader http.Header
		wantBody   string
	}{
		{
			name:       "aws throttling",
			answer:     AWSThrottling(),
			wantStatus: http.StatusBadRequest,
			wantHeader: http.Header{"X-Amzn-Errortype": {"ThrottlingException"}, "Content-Type": {"application/x-amz-json-1.1"}},
			wantBody:   `{"__type":"ThrottlingException","message":"Rate exceeded"}`,
		},
		{
			name:       "vault rate limited",
			answer:     VaultRateLimited(),
			wantStatus: http.StatusTooManyRequests,
			wantHeader: http.Header{"Content-Type": {"application/json"}},
			wantBody:   `{"errors":["rate limit quota exceeded"]}`,
		},
		{
			name:       "vault sealed",
			answer:     VaultSealed(),
			wantStatus: http.StatusServiceUnavailable,
			wantHeader: http.Header{"Content-Type": {"application/json"}},
			wantBody:   `{"errors":["Vault is sealed"]}`,
		},
		{
			name:       "own answer",
			answer:     Answer{Status: http.StatusInternalServerError, Header: http.Header{"Retry-After": {"1"}}, Body: "boom"},
			wantStatus: http.StatusInternalServerError,
			wantHeader: http.Header{"Retry-After": {"1"}},
			wantBody:   "boom",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg := newTarget(t)
			p := startProxy(t, tg.URL)
			must(t, p.Respond(tc.answer))
			// The proxy keeps its own copy of the header.
			if tc.answer.Header != nil {
				tc.answer.Header.Set("X-Changed", "after Respond")
			}
			client := newClient(t, 10*time.Second)
			for range 2 {
				resp, body, err := do(t.Context(), client, http.MethodPost, p.URL(), "{}")
				must(t, err)
				if resp.StatusCode != tc.wantStatus || body != tc.wantBody {
					t.Errorf("answer %d %q, want %d %q", resp.StatusCode, body, tc.wantStatus, tc.wantBody)
				}
				for k, v := range tc.wantHeader {
					if got := resp.Header.Values(k); !slices.Equal(got, v) {
						t.Errorf("header %s = %q, want %q", k, got, v)
					}
				}
				if v := resp.Header.Get("X-Changed"); v != "" {
					t.Errorf("a change to the header after Respond reached the answer")
				}
			}
			if n := len(tg.seen()); n != 0 {
				t.Errorf("the target got %d requests, want none", n)
			}
			if n := p.Requests(); n != 2 {
				t.Errorf("Requests() = %d, want 2", n)
			}
		})
	}
}

func TestRespondRejectsBadStatus(t *testing.T) {
	p := startProxy(t, newTarget(t).URL)
	for _, status := range []int{0, 100, 600} {
		if err := p.Respond(Answer{Status: status}); err == nil {
			t.Errorf("Respond with status %d succeeded", status)
		}
	}
}

func TestRequestsCounts(t *testing.T) {
	tg := newTarget(t)
	p := startProxy(t, tg.URL)
	client := newClient(t, 10*time.Second)
	send := func(n int) {
		t.Helper()
		for range n {
			_, _, _ = do(t.Context(), client, http.MethodGet, p.URL(), "")
		}
	}
	send(2)
	must(t, p.Respond(VaultSealed()))
	send(3)
	must(t, p.Delay(time.Millisecond))
	send(1)
	must(t, p.Refuse())
	send(4) // refused: not requests
	must(t, p.Pass())
	send(1)
	if n := p.Requests(); n != 7 {
		t.Errorf("Requests() = %d, want 7 (2 passed, 3 answered, 1 delayed, 1 passed)", n)
	}
	if n := len(tg.seen()); n != 4 {
		t.Errorf("the target got %d requests, want 4", n)
	}
}

func TestClose(t *testing.T) {
	p, err := Start(newTarget(t).URL)
	must(t, err)
	must(t, p.Refuse())
	must(t, p.Close())
	must(t, p.Close())
	for name, set := range map[string]func() error{
		"Pass":    p.Pass,
		"Refuse":  p.Refuse,
		"Delay":   func() error { return p.Delay(time.Second) },
		"Respond": func() error { return p.Respond(VaultSealed()) },
	} {
		if err := set(); !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
	// The port is free again.
	ln, err := net.Listen("tcp4", strings.TrimPrefix(p.URL(), "http://"))
	must(t, err)
	must(t, ln.Close())
}

// TestModesFlipUnderLoad switches modes while clients send requests; run
// with -race.
func TestModesFlipUnderLoad(t *testing.T) {
	tg := newTarget(t)
	p := startProxy(t, tg.URL)
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	var ok atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			client := newClient(t, time.Second)
			for ctx.Err() == nil {
				if resp, _, err := do(ctx, client, http.MethodPost, p.URL(), "x"); err == nil && resp.StatusCode == http.StatusOK {
					ok.Add(1)
				}
			}
		})
	}
	flips := []func() error{
		p.Pass,
		func() error { return p.Delay(2 * time.Millisecond) },
		func() error { return p.Respond(AWSThrottling()) },
		p.Refuse,
	}
	for i := 0; ctx.Err() == nil; i++ {
		must(t, flips[i%len(flips)]())
		time.Sleep(5 * time.Millisecond)
	}
	wg.Wait()
	must(t, p.Pass())
	resp, body, err := do(t.Context(), newClient(t, 10*time.Second), http.MethodGet, p.URL(), "")
	must(t, err)
	if resp.StatusCode != http.StatusOK || body != "target" {
		t.Fatalf("after the flips: %d %q, not the target's answer", resp.StatusCode, body)
	}
	if ok.Load() == 0 {
		t.Error("no request went through during the flips")
	}
	if got := p.Requests(); got < ok.Load() {
		t.Errorf("Requests() = %d, fewer than the %d answered by the target", got, ok.Load())
	}
}

// TestAWSThrottlingThroughSDK checks what the real SDK makes of the canned
// throttling answer.
func TestAWSThrottlingThroughSDK(t *testing.T) {
	tg := newTarget(t)
	p := startProxy(t, tg.URL)
	must(t, p.Respond(AWSThrottling()))
	const attempts = 2
	c := smClient(p.URL(), func(o *secretsmanager.Options) {
		o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) {
			so.MaxAttempts = attempts
			so.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return 0, nil })
		})
	})
	_, err := c.GetSecretValue(t.Context(), &secretsmanager.GetSecretValueInput{SecretId: aws.String("db")})
	if err == nil {
		t.Fatal("GetSecretValue succeeded")
	}
	t.Logf("SDK error: %v", err)

	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode() != "ThrottlingException" || apiErr.ErrorMessage() != "Rate exceeded" {
		t.Errorf("error %v is not the API error ThrottlingException: Rate exceeded", err)
	}
	var respErr *awshttp.ResponseError
	if !errors.As(err, &respErr) || respErr.HTTPStatusCode() != http.StatusBadRequest || respErr.ServiceRequestID() != "faultproxy" {
		t.Errorf("error %v is not an HTTP 400 response error with request id faultproxy", err)
	}
	if got := retry.IsErrorThrottles(retry.DefaultThrottles).IsErrorThrottle(err); got != aws.TrueTernary {
		t.Errorf("the SDK's default throttle checks say %v, want a throttle", got)
	}
	if !retry.NewStandard().IsErrorRetryable(err) {
		t.Error("the SDK's standard retryer would not retry it")
	}
	var maxErr *retry.MaxAttemptsError
	if !errors.As(err, &maxErr) || maxErr.Attempt != attempts {
		t.Errorf("error %v is not the SDK giving up after %d attempts", err, attempts)
	}
	if n := p.Requests(); n != attempts {
		t.Errorf("the SDK sent %d requests, want %d (it retries throttling)", n, attempts)
	}
	if n := len(tg.seen()); n != 0 {
		t.Errorf("the target got %d requests, want none", n)
	}
}

// TestVaultAnswersThroughAPI checks what the real Vault client makes of the
// canned Vault answers.
func TestVaultAnswersThroughAPI(t *testing.T) {
	for _, tc := range []struct {
		name       string
		answer     Answer
		wantStatus int
		wantErrors []string
	}{
		{name: "rate limited", answer: VaultRateLimited(), wantStatus: http.StatusTooManyRequests, wantErrors: []string{"rate limit quota exceeded"}},
		{name: "sealed", answer: VaultSealed(), wantStatus: http.StatusServiceUnavailable, wantErrors: []string{"Vault is sealed"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg := newTarget(t)
			p := startProxy(t, tg.URL)
			must(t, p.Respond(tc.answer))
			const retries = 1
			conf := api.DefaultConfig()
			conf.Address = p.URL()
			conf.MaxRetries = retries
			conf.MinRetryWait, conf.MaxRetryWait = time.Millisecond, time.Millisecond
			c, err := api.NewClient(conf)
			must(t, err)
			c.SetToken("test-token")
			_, err = c.Logical().ReadWithContext(t.Context(), "secret/data/db")
			var re *api.ResponseError
			if !errors.As(err, &re) || re.StatusCode != tc.wantStatus || !slices.Equal(re.Errors, tc.wantErrors) {
				t.Fatalf("error %v, want a response error %d %q", err, tc.wantStatus, tc.wantErrors)
			}
			if n := p.Requests(); n != 1+retries {
				t.Errorf("the client sent %d requests, want %d (it retries %d)", n, 1+retries, tc.wantStatus)
			}
			if n := len(tg.seen()); n != 0 {
				t.Errorf("the target got %d requests, want none", n)
			}
		})
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// vaultTarget answers every request as a Vault KV v2 read of a secret
// whose password is long enough to be cut.
func vaultTarget(t *testing.T) *target {
	t.Helper()
	tg := &target{}
	tg.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tg.mu.Lock()
		tg.reqs = append(tg.reqs, seen{method: r.Method, uri: r.RequestURI})
		tg.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"request_id":"r","lease_id":"","renewable":false,"lease_duration":0,"data":{"data":{"password":"`+strings.Repeat("p", 512)+`"},"metadata":{"version":1}}}`)
	}))
	t.Cleanup(tg.Close)
	return tg
}

func vaultClient(t *testing.T, addr string, retries int, timeout time.Duration) *api.Client {
	t.Helper()
	conf := api.DefaultConfig()
	conf.Address = addr
	conf.MaxRetries = retries
	conf.MinRetryWait, conf.MaxRetryWait = time.Millisecond, time.Millisecond
	conf.Timeout = timeout
	c, err := api.NewClient(conf)
	must(t, err)
	c.SetToken("test-token")
	return c
}

// TestResetMidResponse: the answer's head and part of its body arrive,
// then a reset; the real Vault client fails the read rather than return a
// part of the secret.
func TestResetMidResponse(t *testing.T) {
	tg := vaultTarget(t)
	p := startProxy(t, tg.URL)
	must(t, p.ResetMidResponse(100))

	// On the wire: the status, the full length promised, 100 bytes, RST.
	resp, body, err := do(t.Context(), newClient(t, 10*time.Second), http.MethodGet, p.URL()+"/v1/secret/data/db", "")
	if err == nil {
		t.Fatalf("the whole answer arrived: %q", body)
	}
	if resp == nil || resp.StatusCode != http.StatusOK || len(body) != 100 || resp.ContentLength <= 100 {
		t.Fatalf("got %v, %d bytes of the body (error %v); want 200, then 100 of %d bytes", resp, len(body), err, resp.ContentLength)
	}
	if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("reading the body: %v, want a connection reset", err)
	}

	s, err := vaultClient(t, p.URL(), 0, 10*time.Second).Logical().ReadWithContext(t.Context(), "secret/data/db")
	if err == nil {
		t.Fatalf("the Vault client read %v from a cut answer", s)
	}
	t.Logf("Vault client: %v", err)

	must(t, p.Pass())
	if _, err := vaultClient(t, p.URL(), 0, 10*time.Second).Logical().ReadWithContext(t.Context(), "secret/data/db"); err != nil {
		t.Fatalf("after Pass: %v", err)
	}
}

// TestHangConnect: a connect waits until the client's timeout (no refusal,
// no request reaches the proxy or the target); Pass makes the port answer
// again.
func TestHangConnect(t *testing.T) {
	tg := vaultTarget(t)
	p := startProxy(t, tg.URL)
	must(t, p.HangConnect())

	start := time.Now()
	c, err := net.DialTimeout("tcp4", strings.TrimPrefix(p.URL(), "http://"), 300*time.Millisecond)
	var ne net.Error
	if err == nil || !errors.As(err, &ne) || !ne.Timeout() {
		if c != nil {
			_ = c.Close()
		}
		t.Fatalf("connect: %v, want a timeout (not a refusal)", err)
	}
	if took := time.Since(start); took < 250*time.Millisecond {
		t.Errorf("the connect failed after %v, before its timeout", took)
	}

	_, err = vaultClient(t, p.URL(), 0, 500*time.Millisecond).Logical().ReadWithContext(t.Context(), "secret/data/db")
	if err == nil || !errors.Is(err, context.DeadlineExceeded) && !strings.Contains(err.Error(), "timeout") {
		t.Fatalf("the Vault client: %v, want its timeout", err)
	}
	if n := p.Requests(); n != 0 {
		t.Errorf("%d requests reached the proxy, want none", n)
	}
	if n := len(tg.seen()); n != 0 {
		t.Errorf("%d requests reached the target, want none", n)
	}

	must(t, p.Pass())
	if _, err := vaultClient(t, p.URL(), 0, 10*time.Second).Logical().ReadWithContext(t.Context(), "secret/data/db"); err != nil {
		t.Fatalf("after Pass: %v", err)
	}
	// And to a refusal, and back to hanging.
	must(t, p.Refuse())
	if c, err := net.Dial("tcp4", strings.TrimPrefix(p.URL(), "http://")); err == nil || !errors.Is(err, syscall.ECONNREFUSED) {
		if c != nil {
			_ = c.Close()
		}
		t.Fatalf("refusing: %v, want connection refused", err)
	}
	must(t, p.HangConnect())
	must(t, p.Pass())
}

// TestFailNth: only the Nth request from now gets the answer; the real
// Vault client sees one failure, and retries through it when it may.
func TestFailNth(t *testing.T) {
	tg := vaultTarget(t)
	p := startProxy(t, tg.URL)
	read := func(c *api.Client) error {
		_, err := c.Logical().ReadWithContext(t.Context(), "secret/data/db")
		return err
	}

	noRetry := vaultClient(t, p.URL(), 0, 10*time.Second)
	must(t, p.FailNth(2, VaultSealed()))
	var errs []error
	for range 3 {
		errs = append(errs, read(noRetry))
	}
	var re *api.ResponseError
	if errs[0] != nil || errs[2] != nil || !errors.As(errs[1], &re) || re.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("three reads: %v; want only the second to fail, sealed", errs)
	}
	if n := len(tg.seen()); n != 2 {
		t.Errorf("the target got %d requests, want 2", n)
	}

	before := p.Requests()
	must(t, p.FailNth(1, VaultSealed()))
	if err := read(vaultClient(t, p.URL(), 1, 10*time.Second)); err != nil {
		t.Fatalf("a client that retries once: %v", err)
	}
	if n := p.Requests() - before; n != 2 {
		t.Errorf("%d requests, want 2 (the failed one and its retry)", n)
	}
	if err := p.FailNth(0, VaultSealed()); err == nil {
		t.Error("FailNth(0) accepted")
	}
}

// TestRateLimit: a burst goes through, the requests over the rate get the
// answer (and are counted), and once the bucket fills again requests go
// through; Pass ends the limit.
func TestRateLimit(t *testing.T) {
	tg := newTarget(t)
	p := startProxy(t, tg.URL)
	c := newClient(t, 10*time.Second)
	status := func() int {
		resp, _, err := do(t.Context(), c, "POST", p.URL()+"/", "{}")
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode
	}
	// 2 a second, a burst of 3: 10 requests at once, 3 or 4 forwarded.
	must(t, p.RateLimit(2, 3, AWSThrottling()))
	var ok, throttled int
	for range 10 {
		switch s := status(); s {
		case http.StatusOK:
			ok++
		case http.StatusBadRequest:
			throttled++
		default:
			t.Fatalf("status %d", s)
		}
	}
	if ok < 3 || ok > 4 || int64(throttled) != p.Limited() || len(tg.seen()) != ok {
		t.Fatalf("%d forwarded, %d throttled (Limited %d), target saw %d; want 3 or 4 forwarded, the rest throttled", ok, throttled, p.Limited(), len(tg.seen()))
	}
	// A token comes back within half a second (2 a second).
	deadline := time.Now().Add(5 * time.Second)
	for status() != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("no request forwarded again after 5s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	must(t, p.Pass())
	for range 10 {
		if s := status(); s != http.StatusOK {
			t.Fatalf("after Pass: status %d", s)
		}
	}
}

// TestBucket: the rate refills tokens, never above the burst.
func TestBucket(t *testing.T) {
	t0 := time.Unix(1000, 0)
	b := NewBucket(2, 2, t0)
	takes := func(at time.Time, n int) int {
		ok := 0
		for range n {
			if b.Take(at) {
				ok++
			}
		}
		return ok
	}
	if got := takes(t0, 5); got != 2 {
		t.Errorf("at start: %d taken, want the burst, 2", got)
	}
	if got := takes(t0.Add(500*time.Millisecond), 5); got != 1 {
		t.Errorf("half a second later: %d, want 1", got)
	}
	if got := takes(t0.Add(time.Hour), 5); got != 2 {
		t.Errorf("an hour later: %d, want the burst, 2", got)
	}
}
