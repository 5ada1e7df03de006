package azure

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dsv-plugin/dsv/secrets"
)

// The tests below check the client's parts against the documents they
// follow; integration_test.go runs them together against the fakes.

func TestChallenge(t *testing.T) {
	const tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	tests := []struct {
		name, vault  string
		headers      []string
		scope, tent  string
		wantErr      string
		wantErrClass bool
	}{
		{name: "Key Vault's challenge", vault: "https://myvault.vault.azure.net",
			headers: []string{`Bearer authorization="https://login.windows.net/` + tenant + `", resource="https://vault.azure.net"`},
			scope:   "https://vault.azure.net/.default", tent: tenant},
		{name: "scope wins over resource", vault: "https://myvault.vault.azure.net",
			headers: []string{`Bearer authorization="https://login.microsoftonline.com/` + tenant + `" scope="https://vault.azure.net/.default" resource="https://vault.azure.net"`},
			scope:   "https://vault.azure.net/.default", tent: tenant},
		{name: "managed HSM, unquoted", vault: "https://hsm.managedhsm.azure.net",
			headers: []string{`Bearer authorization=https://login.microsoftonline.com/` + tenant + `, resource=https://managedhsm.azure.net`},
			scope:   "https://managedhsm.azure.net/.default", tent: tenant},
		{name: "sovereign cloud, no tenant", vault: "https://v.vault.azure.cn",
			headers: []string{`Bearer resource="https://vault.azure.cn"`}, scope: "https://vault.azure.cn/.default"},
		{name: "another domain", vault: "https://myvault.vault.azure.net",
			headers: []string{`Bearer authorization="https://login.windows.net/x", resource="https://attacker.example"`},
			wantErr: `challenge resource "https://attacker.example" doesn't match the vault's domain "myvault.vault.azure.net"`},
		{name: "the domain itself is no vault", vault: "https://vault.azure.net",
			headers: []string{`Bearer resource="https://vault.azure.net"`}, wantErr: "challenge resource"},
		{name: "suffix without a dot", vault: "https://evilvault.azure.net",
			headers: []string{`Bearer resource="https://vault.azure.net"`}, wantErr: "challenge resource"},
		{name: "loopback emulator: not checked", vault: "https://127.0.0.1:8443",
			headers: []string{`Bearer resource="https://vault.azure.net"`}, scope: "https://vault.azure.net/.default"},
		{name: "no resource", vault: "https://myvault.vault.azure.net",
			headers: []string{`Bearer authorization="https://login.windows.net/x"`}, wantErr: "names no resource"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newVaultClient(tt.vault, nil, nil)
			scope, tenant, err := c.challenge(tt.headers)
			if tt.wantErr != "" {
				var ce *challengeError
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.As(err, &ce) {
					t.Fatalf("challenge = %q %q, %v; want a *challengeError %q", scope, tenant, err, tt.wantErr)
				}
				return
			}
			if err != nil || scope != tt.scope || tenant != tt.tent {
				t.Fatalf("challenge = %q %q, %v; want %q %q", scope, tenant, err, tt.scope, tt.tent)
			}
		})
	}
}

func TestParseBundle(t *testing.T) {
	body := `{"value":"s3cret","id":"https://v.vault.azure.net/secrets/db/4387e9f3d6e14c459867679a90fd0f79","contentType":"text/plain",
		"attributes":{"enabled":true,"nbf":1700000000,"exp":1900000000,"created":1690000000,"updated":1695000000.0,"recoveryLevel":"Recoverable+Purgeable"},
		"tags":{"a":"b"},"kid":null,"managed":false}`
	s, err := parseBundle([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	a := s.Attributes
	if s.Value == nil || *s.Value != "s3cret" || s.ContentType != "text/plain" || s.Version() != "4387e9f3d6e14c459867679a90fd0f79" ||
		a == nil || a.Enabled == nil || !*a.Enabled || a.NotBefore.Unix() != 1700000000 || a.Expires.Unix() != 1900000000 || a.Updated.Unix() != 1695000000 {
		t.Fatalf("parseBundle = %+v %+v", s, a)
	}
	s, err = parseBundle([]byte(`{"id":"https://v.vault.azure.net/secrets/db"}`))
	if err != nil || s.Value != nil || s.Attributes != nil || s.Version() != "" {
		t.Fatalf("parseBundle(no value) = %+v, %v", s, err)
	}
	// A malformed answer's error never quotes it: it may hold the value.
	if _, err := parseBundle([]byte(`{"value":"s3cret","attributes":{"exp":"s3cret"}}`)); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("parseBundle(malformed) = %v", err)
	}
}

func TestParseToken(t *testing.T) {
	start := time.Unix(1_700_000_000, 0)
	tests := []struct {
		name             string
		body             string
		expires, refresh time.Time
		wantErr          bool
	}{
		{name: "v2.0 endpoint", body: `{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"t"}`,
			expires: start.Add(3599 * time.Second)},
		{name: "refresh_in", body: `{"expires_in":86399,"refresh_in":43199,"access_token":"t"}`,
			expires: start.Add(86399 * time.Second), refresh: start.Add(43199 * time.Second)},
		{name: "long life: half", body: `{"expires_in":14400,"access_token":"t"}`,
			expires: start.Add(4 * time.Hour), refresh: start.Add(2 * time.Hour)},
		{name: "IMDS strings", body: `{"access_token":"t","expires_in":"3600","expires_on":"1700003600","resource":"https://vault.azure.net","token_type":"Bearer"}`,
			expires: start.Add(time.Hour)},
		{name: "expires_on only", body: `{"access_token":"t","expires_on":1700000600}`, expires: start.Add(10 * time.Minute)},
		{name: "no token", body: `{"token_type":"Bearer","expires_in":3599}`, wantErr: true},
		{name: "no expiry", body: `{"access_token":"t"}`, wantErr: true},
		{name: "not JSON", body: `<html>`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := parseToken([]byte(tt.body), start)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("parseToken = %+v, want an error", tok)
				}
				return
			}
			if err != nil || tok.token != "t" || !tok.expiresOn.Equal(tt.expires) || !tok.refreshOn.Equal(tt.refresh) {
				t.Fatalf("parseToken = %+v, %v; want expiry %v, refresh %v", tok, err, tt.expires, tt.refresh)
			}
		})
	}
}

func TestTokenCache(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	var calls atomic.Int32
	var next accessToken
	var fail error
	acquire := func(context.Context) (accessToken, error) {
		calls.Add(1)
		return next, fail
	}
	c := newTokenCache()

	next = accessToken{token: "a", expiresOn: now.Add(time.Hour)}
	if tok, err := c.get(ctx, acquire); err != nil || tok.token != "a" || calls.Load() != 1 {
		t.Fatalf("first get = %+v, %v, %d calls", tok, err, calls.Load())
	}
	if tok, _ := c.get(ctx, acquire); tok.token != "a" || calls.Load() != 1 {
		t.Fatalf("a fresh token was renewed: %+v, %d calls", tok, calls.Load())
	}

	// Due for renewal (within five minutes of expiry): renewed; a failed
	// renewal keeps the valid token, and is not tried again for 30s.
	c.tok = accessToken{token: "b", expiresOn: now.Add(time.Minute)}
	c.lastAttempt = time.Time{}
	fail = errors.New("entra down")
	if tok, err := c.get(ctx, acquire); err != nil || tok.token != "b" || calls.Load() != 2 {
		t.Fatalf("failed early renewal = %+v, %v, %d calls; want b, no error, 2 calls", tok, err, calls.Load())
	}
	if tok, _ := c.get(ctx, acquire); tok.token != "b" || calls.Load() != 2 {
		t.Fatalf("renewal retried within the backoff: %+v, %d calls", tok, calls.Load())
	}
	c.lastAttempt = now.Add(-time.Minute)
	fail, next = nil, accessToken{token: "c", expiresOn: now.Add(time.Hour)}
	if tok, _ := c.get(ctx, acquire); tok.token != "c" || calls.Load() != 3 {
		t.Fatalf("early renewal = %+v, %d calls; want c", tok, calls.Load())
	}

	// refresh_in passed: renewed although far from expiry.
	c.tok = accessToken{token: "d", expiresOn: now.Add(time.Hour), refreshOn: now.Add(-time.Second)}
	c.lastAttempt = time.Time{}
	next = accessToken{token: "e", expiresOn: now.Add(time.Hour)}
	if tok, _ := c.get(ctx, acquire); tok.token != "e" {
		t.Fatalf("refresh_in passed: %+v, want e", tok)
	}

	// Expired: the failure is the caller's.
	c.tok = accessToken{token: "f", expiresOn: now.Add(-time.Second)}
	fail = errors.New("entra down")
	if tok, err := c.get(ctx, acquire); err == nil {
		t.Fatalf("expired token, failed renewal = %+v, want the error", tok)
	}
	c.expire()
	if c.tok.token != "" {
		t.Fatal("expire kept the token")
	}

	// Many callers of an expired token: one acquires, the rest get its
	// token.
	calls.Store(0)
	release := make(chan struct{})
	slow := func(context.Context) (accessToken, error) {
		calls.Add(1)
		<-release
		return accessToken{token: "g", expiresOn: time.Now().Add(time.Hour)}, nil
	}
	var wg sync.WaitGroup
	got := make([]string, 8)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok, _ := c.get(ctx, slow)
			got[i] = tok.token
		}()
	}
	for calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	if calls.Load() != 1 || strings.Join(got, "") != strings.Repeat("g", 8) {
		t.Fatalf("%d acquisitions for 8 callers, tokens %q; want 1, all g", calls.Load(), got)
	}

	// A waiter's context ends while another acquires.
	c.expire()
	block := make(chan struct{})
	go func() {
		_, _ = c.get(ctx, func(context.Context) (accessToken, error) { <-block; return accessToken{}, errors.New("x") })
	}()
	for len(c.sem) == 0 {
		time.Sleep(time.Millisecond)
	}
	short, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.get(short, acquire); !errors.Is(err, context.Canceled) {
		t.Fatalf("waiter with a cancelled context: %v", err)
	}
	close(block)
}

func TestRetry(t *testing.T) {
	fast := retryPolicy{maxRetries: 2, delay: time.Millisecond, maxDelay: time.Second, statuses: []int{429, 503}}
	run := func(ctx context.Context, p retryPolicy, answers ...any) (int, *answer, error) {
		n := 0
		a, err := p.do(ctx, func(context.Context) (*answer, error) {
			x := answers[min(n, len(answers)-1)]
			n++
			switch x := x.(type) {
			case error:
				return nil, x
			case *answer:
				return x, nil
			}
			return &answer{status: x.(int), header: http.Header{}}, nil
		})
		return n, a, err
	}
	ctx := context.Background()
	if n, a, err := run(ctx, fast, 503, 429, 200); n != 3 || err != nil || a.status != 200 {
		t.Errorf("503, 429, 200: %d tries, %v, %v; want 3, 200", n, a, err)
	}
	if n, a, _ := run(ctx, fast, 503); n != 3 || a.status != 503 {
		t.Errorf("503s: %d tries, want 3 (2 retries)", n)
	}
	if n, _, _ := run(ctx, fast, 404); n != 1 {
		t.Errorf("404: %d tries, want 1", n)
	}
	if n, _, err := run(ctx, fast, errors.New("connection reset"), 200); n != 2 || err != nil {
		t.Errorf("a send failure: %d tries, %v; want retried", n, err)
	}
	if n, _, err := run(ctx, fast, &finalError{errors.New("no token")}); n != 1 || err == nil || err.Error() != "no token" {
		t.Errorf("a final error: %d tries, %v; want 1, unwrapped", n, err)
	}
	if n, _, _ := run(ctx, fast, x509.UnknownAuthorityError{}); n != 1 {
		t.Errorf("an untrusted certificate: %d tries, want 1", n)
	}
	// Retry-After past maxDelay: not waited for.
	long := &answer{status: 429, header: http.Header{"Retry-After": {"5"}}}
	if n, a, _ := run(ctx, fast, long); n != 1 || a.status != 429 {
		t.Errorf("Retry-After beyond maxDelay: %d tries, want 1", n)
	}
	// A wait past the deadline is not begun: the answer comes back at once.
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	start := time.Now()
	p := fast
	p.maxDelay = time.Minute
	if n, a, err := run(dctx, p, &answer{status: 429, header: http.Header{"Retry-After": {"30"}}}); n != 1 || err != nil || a.status != 429 || time.Since(start) > 5*time.Second {
		t.Errorf("Retry-After past the deadline: %d tries, %v after %v; want the 429 at once", n, err, time.Since(start))
	}
	for h, want := range map[string]time.Duration{"Retry-After-Ms": 1500 * time.Millisecond, "X-Ms-Retry-After-Ms": 20 * time.Millisecond, "Retry-After": 3 * time.Second} {
		v := map[string]string{"Retry-After-Ms": "1500", "X-Ms-Retry-After-Ms": "20", "Retry-After": "3"}[h]
		if got := retryAfter(&answer{header: http.Header{h: {v}}}); got != want {
			t.Errorf("retryAfter(%s: %s) = %v, want %v", h, v, got, want)
		}
	}
	if got := retryAfter(&answer{header: http.Header{"Retry-After": {time.Now().Add(time.Minute).UTC().Format(http.TimeFormat)}}}); got < 58*time.Second || got > time.Minute {
		t.Errorf("retryAfter(HTTP date in a minute) = %v", got)
	}
	for n, want := range map[int][2]time.Duration{1: {640 * time.Millisecond, 1040 * time.Millisecond}, 2: {1920 * time.Millisecond, 3120 * time.Millisecond}} {
		if d := httpRetry.backoff(n); d < want[0] || d >= want[1] {
			t.Errorf("backoff(%d) = %v, want in [%v, %v)", n, d, want[0], want[1])
		}
	}
}

// testCert makes a self-signed certificate of key.
func testCert(t *testing.T, key crypto.Signer) []byte {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "dsv test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func pemOf(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func TestParseCertificate(t *testing.T) {
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cert := pemOf("CERTIFICATE", testCert(t, rk))
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(rk)
	ec8, _ := x509.MarshalPKCS8PrivateKey(ek)
	cat := func(b ...[]byte) []byte { return bytes.Join(b, nil) }
	readFile := func(name string) []byte {
		b, err := os.ReadFile("testdata/" + name)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name    string
		data    []byte
		wantErr string
	}{
		{name: "PEM, PKCS#8 key", data: cat(cert, pemOf("PRIVATE KEY", pkcs8))},
		{name: "PEM, key first, PKCS#1 key", data: cat(pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rk)), cert)},
		{name: "PEM, PKCS#1 in a PRIVATE KEY block", data: cat(cert, pemOf("PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rk)))},
		{name: "PEM, a chain: the key's certificate is picked", data: cat(pemOf("CERTIFICATE", testCert(t, other)), cert, pemOf("PRIVATE KEY", pkcs8))},
		// openssl pkcs12 -export -passout pass: -keypbe PBE-SHA1-3DES -certpbe PBE-SHA1-3DES -macalg sha1
		{name: "PKCS#12 without password", data: readFile("client-legacy.p12")},
		// OpenSSL 3's default (AES, PBKDF2), which azidentity's parser
		// (the same golang.org/x/crypto/pkcs12) refused too.
		{name: "PKCS#12 with AES", data: readFile("client-aes.p12"), wantErr: "nor a PKCS#12 file without password"},
		{name: "no certificate", data: pemOf("PRIVATE KEY", pkcs8), wantErr: "no certificate"},
		{name: "no key", data: cert, wantErr: "no private key"},
		{name: "two keys", data: cat(cert, pemOf("PRIVATE KEY", pkcs8), pemOf("PRIVATE KEY", pkcs8)), wantErr: "more than one private key"},
		{name: "EC key", data: cat(pemOf("CERTIFICATE", testCert(t, ek)), pemOf("PRIVATE KEY", ec8)), wantErr: "not an RSA key"},
		{name: "key of no certificate", data: cat(cert, pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(other))), wantErr: "no certificate in the file is the private key's"},
		{name: "encrypted key", data: cat(cert, pemOf("ENCRYPTED PRIVATE KEY", []byte("x")), pemOf("PRIVATE KEY", []byte("garbage"))), wantErr: "neither PKCS#8 nor PKCS#1"},
		{name: "garbage", data: []byte("not a certificate"), wantErr: "not a PEM certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, k, err := parseCertificate(tt.data)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseCertificate: %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if pub, ok := c.PublicKey.(*rsa.PublicKey); !ok || !pub.Equal(&k.PublicKey) {
				t.Fatal("the certificate is not the key's")
			}
		})
	}
}

// TestAssertion checks the certificate credential's JWT against Entra's
// documented format.
func TestAssertion(t *testing.T) {
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(testCert(t, rk))
	if err != nil {
		t.Fatal(err)
	}
	sp := &servicePrincipal{entra: &entra{authority: "https://login.microsoftonline.com"}, tenant: "t1", clientID: "app", cert: cert, key: rk}
	jwt, err := sp.assertion()
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("%d parts", len(parts))
	}
	b64 := base64.RawURLEncoding
	var head map[string]string
	var claims map[string]any
	hb, _ := b64.DecodeString(parts[0])
	cb, _ := b64.DecodeString(parts[1])
	sig, _ := b64.DecodeString(parts[2])
	if json.Unmarshal(hb, &head) != nil || json.Unmarshal(cb, &claims) != nil {
		t.Fatalf("not JSON: %s . %s", hb, cb)
	}
	thumb := sha256.Sum256(cert.Raw)
	if head["alg"] != "PS256" || head["typ"] != "JWT" || head["x5t#S256"] != b64.EncodeToString(thumb[:]) {
		t.Errorf("header %v", head)
	}
	if claims["aud"] != "https://login.microsoftonline.com/t1/oauth2/v2.0/token" || claims["iss"] != "app" || claims["sub"] != "app" || claims["jti"] == "" {
		t.Errorf("claims %v", claims)
	}
	if exp, nbf := claims["exp"].(float64), claims["nbf"].(float64); exp-nbf != 600 || time.Since(time.Unix(int64(nbf), 0)) > time.Minute {
		t.Errorf("exp %v nbf %v: want ten minutes from now", exp, nbf)
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPSS(&rk.PublicKey, crypto.SHA256, digest[:], sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}); err != nil {
		t.Errorf("signature: %v", err)
	}
}

// TestOtherTenant: a vault of another tenant gets no token of the service
// principal, as with the SDK, and the error says which setting to fix.
func TestOtherTenant(t *testing.T) {
	var posts atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { posts.Add(1) }))
	defer srv.Close()
	sp := &servicePrincipal{entra: &entra{http: srv.Client(), authority: srv.URL}, tenant: "Tenant-A", clientID: "app", secret: "x"}
	_, err := sp.getToken(context.Background(), "https://vault.azure.net/.default", "tenant-b")
	var ot *errOtherTenant
	if !errors.As(err, &ot) || posts.Load() != 0 {
		t.Fatalf("getToken for another tenant: %v, %d requests; want errOtherTenant, none", err, posts.Load())
	}
	e := classify(context.Background(), secrets.Ref{Backend: Name, Name: "x"}, location{}, &CredentialError{Source: sourceSecret, File: "/f", Err: err})
	if !errors.Is(e, secrets.ErrAccessDenied) || !strings.Contains(e.Error(), hintTenant) || !strings.Contains(e.Error(), `"tenant-b"`) {
		t.Fatalf("classify = %v", e)
	}
}

// TestManagedIdentityEndpoints: the App Service and Azure Arc forms of the
// managed identity endpoint, as MSAL spoke them, against local servers.
func TestManagedIdentityEndpoints(t *testing.T) {
	const scope = "https://vault.azure.net/.default"
	token := func(w http.ResponseWriter, clientID string) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"access_token": "tok", "expires_in": "3600",
			"resource": "https://vault.azure.net", "token_type": "Bearer", "client_id": clientID})
	}
	t.Run("App Service", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			q := r.URL.Query()
			if r.Header.Get("X-IDENTITY-HEADER") != "guard" || q.Get("api-version") != "2019-08-01" ||
				q.Get("resource") != "https://vault.azure.net" || q.Get("client_id") != "uai" || q.Get("keep") != "1" {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			token(w, "uai")
		}))
		defer srv.Close()
		m := newManagedIdentity(Credentials{ClientID: "uai", IdentityEndpoint: srv.URL + "/msi/token?keep=1", IdentityHeader: "guard"}, srv.Client())
		if m.kind != kindAppService {
			t.Fatalf("kind %q", m.kind)
		}
		if tok, err := m.getToken(context.Background(), scope, ""); err != nil || tok.token != "tok" {
			t.Fatalf("getToken = %+v, %v", tok, err)
		}
	})

	dir := t.TempDir()
	key := dir + "/abc.key"
	if err := os.WriteFile(key, []byte("arc-secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	arc := func(realm, echo string) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			q := r.URL.Query()
			if r.Header.Get("Metadata") != "true" || q.Get("api-version") != "2020-06-01" || q.Get("resource") != "https://vault.azure.net" {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			if r.Header.Get("Authorization") != "Basic arc-secret" {
				w.Header().Set("WWW-Authenticate", "Basic realm="+realm)
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			token(w, echo)
		}))
	}
	tests := []struct {
		name, realm, clientID, echo string
		wantErr                     string
	}{
		{name: "system-assigned", realm: key},
		{name: "user-assigned, confirmed", realm: key, clientID: "UAI", echo: "uai"},
		{name: "user-assigned, not confirmed", realm: key, clientID: "uai", wantErr: "did not confirm"},
		{name: "key file elsewhere", realm: "/etc/shadow.key", wantErr: "not a .key file in"},
		{name: "not a .key file", realm: dir + "/abc.txt", wantErr: "not a .key file in"},
	}
	for _, tt := range tests {
		t.Run("Azure Arc, "+tt.name, func(t *testing.T) {
			srv := arc(tt.realm, tt.echo)
			defer srv.Close()
			m := newManagedIdentity(Credentials{ClientID: tt.clientID, IdentityEndpoint: srv.URL + "/metadata/identity/oauth2/token", ArcIMDSEndpoint: srv.URL}, srv.Client())
			if m.kind != kindArc {
				t.Fatalf("kind %q", m.kind)
			}
			m.arcTokens = dir
			tok, err := m.getToken(context.Background(), scope, "")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || strings.Contains(err.Error(), "arc-secret") {
					t.Fatalf("getToken = %+v, %v; want %q", tok, err, tt.wantErr)
				}
				return
			}
			if err != nil || tok.token != "tok" {
				t.Fatalf("getToken = %+v, %v", tok, err)
			}
		})
	}
	want, endpoint := kindIMDS, imdsToken
	if _, err := os.Stat(arcHimds); err == nil { // a host with Arc's agent
		want, endpoint = kindArc, arcToken
	}
	if m := newManagedIdentity(Credentials{ClientID: "x"}, nil); m.kind != want || m.endpoint != endpoint {
		t.Errorf("no environment: %q %q, want %q %q", m.kind, m.endpoint, want, endpoint)
	}
	if m := newManagedIdentity(Credentials{IdentityEndpoint: "http://127.0.0.1:1/token"}, nil); m.kind != want {
		t.Errorf("IDENTITY_ENDPOINT alone: %q, want %q", m.kind, want)
	}
}

// FuzzChallenge: a vault's WWW-Authenticate header is the server's to
// choose. Whatever it says, the client gets a token only for a resource
// whose host is a parent domain of the vault's, and never panics.
func FuzzChallenge(f *testing.F) {
	f.Add(`Bearer authorization="https://login.windows.net/t", resource="https://vault.azure.net"`)
	f.Add(`Bearer scope="https://vault.azure.net/.default" resource=https://x`)
	f.Add(`Bearer resource="https://vault.azure.net.evil.example"`)
	f.Add(`Basic realm="x", Bearer resource="https://azure.net:443/"`)
	f.Add(`Bearer resource=", scope=""`)
	c := newVaultClient("https://myvault.vault.azure.net", nil, nil)
	f.Fuzz(func(t *testing.T, header string) {
		scope, _, err := c.challenge([]string{header})
		if err != nil {
			return
		}
		u, perr := url.Parse(strings.TrimSuffix(scope, "/.default"))
		if perr != nil || u.Hostname() == "" || !strings.HasSuffix("myvault.vault.azure.net", "."+strings.ToLower(u.Hostname())) {
			t.Fatalf("challenge %q gave scope %q, not of a parent domain of the vault's", header, scope)
		}
		_, _ = parseBundle([]byte(header))
		_, _ = parseToken([]byte(header), time.Now())
	})
}
