package vault

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dsv-plugin/dsv/secrets"
)

// TestClientConfigFromEnv: the client reads the Vault CLI's settings, and
// names each one it cannot parse.
func TestClientConfigFromEnv(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		want    func(*ClientConfig) bool
		wantErr []string
	}{
		{name: "defaults", want: func(c *ClientConfig) bool {
			return c.Address == DefaultAddress && c.MaxRetries == 2 && c.MinRetryWait == time.Second &&
				c.MaxRetryWait == 1500*time.Millisecond && c.Timeout == time.Minute && !c.SkipVerify && c.Proxy == ""
		}},
		{
			name: "every setting",
			env: map[string]string{
				"VAULT_ADDR": "https://vault:8200", "VAULT_CACERT": "/ca.pem", "VAULT_CACERT_BYTES": "PEM", "VAULT_CAPATH": "/cas",
				"VAULT_CLIENT_CERT": "/c.pem", "VAULT_CLIENT_KEY": "/k.pem", "VAULT_TLS_SERVER_NAME": "vault.internal",
				"VAULT_SKIP_VERIFY": "true", "VAULT_MAX_RETRIES": "5", "VAULT_CLIENT_TIMEOUT": "90", "VAULT_DISABLE_REDIRECTS": "1",
				"VAULT_HTTP_PROXY": "http://old:3128", "VAULT_PROXY_ADDR": "http://proxy:3128",
			},
			want: func(c *ClientConfig) bool {
				return c.Address == "https://vault:8200" && c.CACert == "/ca.pem" && string(c.CACertBytes) == "PEM" && c.CAPath == "/cas" &&
					c.ClientCert == "/c.pem" && c.ClientKey == "/k.pem" && c.TLSServerName == "vault.internal" && c.SkipVerify &&
					c.MaxRetries == 5 && c.Timeout == 90*time.Second && c.DisableRedirects && c.Proxy == "http://proxy:3128"
			},
		},
		{name: "agent address wins", env: map[string]string{"VAULT_ADDR": "https://a", "VAULT_AGENT_ADDR": "http://127.0.0.1:8100"},
			want: func(c *ClientConfig) bool { return c.Address == "http://127.0.0.1:8100" }},
		{name: "timeout as a duration", env: map[string]string{"VAULT_CLIENT_TIMEOUT": "1m30s"},
			want: func(c *ClientConfig) bool { return c.Timeout == 90*time.Second }},
		{
			name:    "all bad at once",
			env:     map[string]string{"VAULT_SKIP_VERIFY": "maybe", "VAULT_MAX_RETRIES": "-1", "VAULT_CLIENT_TIMEOUT": "soon", "VAULT_DISABLE_REDIRECTS": "no way"},
			wantErr: []string{"VAULT_SKIP_VERIFY", "VAULT_MAX_RETRIES", "VAULT_CLIENT_TIMEOUT", "VAULT_DISABLE_REDIRECTS"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ClientConfigFromEnv(func(k string) string { return tt.env[k] })
			if len(tt.wantErr) > 0 {
				for _, w := range tt.wantErr {
					if err == nil || !strings.Contains(err.Error(), w) {
						t.Errorf("ClientConfigFromEnv() = %v, want an error naming %s", err, w)
					}
				}
				return
			}
			if err != nil || !tt.want(c) {
				t.Fatalf("ClientConfigFromEnv() = %+v, %v", c, err)
			}
		})
	}
}

// TestClientTLSSettings: what newClient makes of the TLS settings, and
// what it refuses.
func TestClientTLSSettings(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM := selfSigned(t)
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ca := write("ca.pem", certPEM)
	key := write("key.pem", keyPEM)
	notPEM := write("not.pem", []byte("hello"))
	caDir := filepath.Join(dir, "cas")
	if err := os.Mkdir(caDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(caDir, "a.pem"), certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		conf    ClientConfig
		check   func(t *testing.T, c *client)
		wantErr string
	}{
		{name: "ca file", conf: ClientConfig{CACert: ca, TLSServerName: "vault.internal"}, check: func(t *testing.T, c *client) {
			tc := c.http.Transport.(*http.Transport).TLSClientConfig
			if tc.RootCAs == nil || tc.ServerName != "vault.internal" || tc.InsecureSkipVerify || tc.MinVersion == 0 {
				t.Errorf("TLS config = %+v", tc)
			}
		}},
		{name: "ca path", conf: ClientConfig{CAPath: caDir}, check: func(t *testing.T, c *client) {
			if c.http.Transport.(*http.Transport).TLSClientConfig.RootCAs == nil {
				t.Error("no CA pool from VAULT_CAPATH")
			}
		}},
		{name: "ca bytes", conf: ClientConfig{CACertBytes: certPEM}},
		{name: "client certificate", conf: ClientConfig{ClientCert: ca, ClientKey: key, SkipVerify: true}, check: func(t *testing.T, c *client) {
			tc := c.http.Transport.(*http.Transport).TLSClientConfig
			if tc.GetClientCertificate == nil || !tc.InsecureSkipVerify {
				t.Errorf("TLS config = %+v", tc)
			}
		}},
		{name: "cert without key", conf: ClientConfig{ClientCert: ca}, wantErr: "set both or neither"},
		{name: "ca not PEM", conf: ClientConfig{CACert: notPEM}, wantErr: "VAULT_CACERT: no PEM certificate"},
		{name: "ca missing", conf: ClientConfig{CACert: filepath.Join(dir, "none")}, wantErr: "VAULT_CACERT"},
		{name: "ca path with a non-PEM file", conf: ClientConfig{CAPath: dir}, wantErr: "VAULT_CAPATH"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.conf.Address = "https://vault.example.com:8200"
			c, err := newClient(&tt.conf, 0)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("newClient() = %v, want an error with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

func selfSigned(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test"}, NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

// TestClientRetries: which answers the client tries again (the api's
// policy: 412, 429, 5xx but 501), how many times, and that the last
// answer is the one classified.
func TestClientRetries(t *testing.T) {
	tests := []struct {
		statuses  []int // answered in turn; the last one again after
		retryHdr  string
		wantTries int
		wantErr   int // status of the error returned, 0 for none
	}{
		{statuses: []int{412, 200}, wantTries: 2},
		{statuses: []int{429, 200}, retryHdr: "0", wantTries: 2},
		{statuses: []int{503, 502, 200}, wantTries: 3},
		{statuses: []int{500}, wantTries: 3, wantErr: 500},
		{statuses: []int{501}, wantTries: 1, wantErr: 501},
		{statuses: []int{400}, wantTries: 1, wantErr: 400},
		{statuses: []int{403}, wantTries: 1, wantErr: 403},
	}
	for _, tt := range tests {
		t.Run(joinInts(tt.statuses), func(t *testing.T) {
			var mu sync.Mutex
			tries := 0
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				s := tt.statuses[min(tries, len(tt.statuses)-1)]
				tries++
				mu.Unlock()
				if tt.retryHdr != "" {
					w.Header().Set("Retry-After", tt.retryHdr)
				}
				if s == 200 {
					writeJSON(w, 200, map[string]any{"data": map[string]any{"x": "1"}})
					return
				}
				vaultErrors(w, s, "answer "+http.StatusText(s))
			}))
			defer srv.Close()
			c, err := newClient(&ClientConfig{Address: srv.URL, MaxRetries: 2, MinRetryWait: time.Millisecond, MaxRetryWait: 2 * time.Millisecond}, 0)
			if err != nil {
				t.Fatal(err)
			}
			sec, err := c.read(ctxFor(t), "", "tok", "kv/app", nil, "")
			if got := statusOf(err); got != tt.wantErr {
				t.Fatalf("read() = %v, %v: want status %d", sec, err, tt.wantErr)
			}
			if err == nil && (sec == nil || sec.Data["x"] != "1") {
				t.Fatalf("read() = %+v, want the data", sec)
			}
			if err != nil && !strings.Contains(err.Error(), "answer "+http.StatusText(tt.wantErr)) {
				t.Errorf("read() = %v, want Vault's message", err)
			}
			mu.Lock()
			defer mu.Unlock()
			if tries != tt.wantTries {
				t.Errorf("%d tries, want %d", tries, tt.wantTries)
			}
		})
	}
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, "-")
}

// TestClientFollowsOneRedirect: a standby answers 307 with the active
// node's address; the request goes there once, with its token, namespace
// and body. A second redirect is not followed, nor any with
// VAULT_DISABLE_REDIRECTS, nor one from https to http.
func TestClientFollowsOneRedirect(t *testing.T) {
	f := newFakeVault(t)
	f.answer("PUT", "pki/issue/web", 200, `{"request_id":"r4","data":{"certificate":"C"}}`)
	standby := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, f.srv.URL+r.URL.RequestURI(), http.StatusTemporaryRedirect)
	}))
	defer standby.Close()
	var loops atomic.Int64
	loop := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		loops.Add(1)
		w.Header().Set("Location", r.URL.RequestURI())
		w.WriteHeader(http.StatusTemporaryRedirect)
	}))
	defer loop.Close()

	t.Run("followed", func(t *testing.T) {
		d, _ := fakeDriver(t, f, func(c *Config) { c.Client.Address = standby.URL })
		ref := secrets.Ref{Backend: Name, Name: "pki/issue/web", Params: map[string]string{"method": "write", "param.common_name": "a.example.com", "namespace": "team"}}
		got, err := d.Fetch(ctxFor(t), ref)
		if err != nil || string(got.Value) != `{"certificate":"C"}` {
			t.Fatalf("Fetch() through a standby = %q, %v", got.Value, err)
		}
		w := f.requestsTo("pki/issue/web")
		if len(w) != 1 || w[0].Token != "tok" || w[0].Namespace != "team" || w[0].Body["common_name"] != "a.example.com" {
			t.Fatalf("the active node saw %+v, want the write with its token, namespace and body", w)
		}
	})
	t.Run("not twice", func(t *testing.T) {
		c, err := newClient(&ClientConfig{Address: loop.URL}, 0)
		if err != nil {
			t.Fatal(err)
		}
		// The second 307 is the answer: no secret in it.
		if sec, err := c.read(ctxFor(t), "", "tok", "kv/app", nil, ""); err != nil || sec != nil {
			t.Fatalf("read() = %+v, %v: want the second redirect as the answer", sec, err)
		}
		if n := loops.Load(); n != 2 {
			t.Fatalf("%d requests, want 2", n)
		}
	})
	t.Run("disabled", func(t *testing.T) {
		d, _ := fakeDriver(t, f, func(c *Config) {
			c.Client.Address = standby.URL
			c.Client.DisableRedirects = true
		})
		if _, err := d.Fetch(ctxFor(t), secrets.Ref{Backend: Name, Name: "kv/app"}); err == nil {
			t.Fatal("Fetch() through a standby with redirects disabled = nil error")
		}
	})
	t.Run("no downgrade", func(t *testing.T) {
		tlsStandby := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, f.srv.URL+r.URL.RequestURI(), http.StatusTemporaryRedirect)
		}))
		defer tlsStandby.Close()
		c, err := newClient(&ClientConfig{Address: tlsStandby.URL, SkipVerify: true}, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.read(ctxFor(t), "", "tok", "kv/app", nil, ""); err == nil || !strings.Contains(err.Error(), "downgrade") {
			t.Fatalf("read() = %v, want the https to http redirect refused", err)
		}
	})
}

// TestClientAnswers: how answers are read, as the api read them: numbers
// as written, a 404 with data (a deleted KV v2 version) is an answer, a
// 404 without is no secret, an error body that is not JSON is kept raw.
func TestClientAnswers(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		body    string
		write   bool
		want    string // JSON of the secret's data; "nil" for no secret
		wantErr string
	}{
		{name: "numbers kept", status: 200, body: `{"data":{"port":5432,"big":12345678901234567890,"f":0.1}}`, want: `{"big":12345678901234567890,"f":0.1,"port":5432}`},
		{name: "404 with data", status: 404, body: `{"data":{"data":null,"metadata":{"version":2}}}`, want: `{"data":null,"metadata":{"version":2}}`},
		{name: "404 errors only", status: 404, body: `{"errors":[]}`, want: "nil"},
		{name: "404 empty", status: 404, body: ``, want: "nil"},
		{name: "write 404 empty", status: 404, body: ``, write: true, want: "nil"},
		{name: "write 404 with errors", status: 404, body: `{"errors":["no handler"]}`, write: true, wantErr: "no handler"},
		{name: "not a secret's shape", status: 200, body: `{"keys":["a"]}`, want: `{"keys":["a"]}`},
		{name: "raw error", status: 502, body: `<html>bad gateway</html>`, wantErr: "<html>bad gateway</html>"},
		{name: "not JSON", status: 200, body: `nope`, wantErr: "not JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.status)
				_, _ = w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			c, err := newClient(&ClientConfig{Address: srv.URL}, 0)
			if err != nil {
				t.Fatal(err)
			}
			var sec *secret
			if tt.write {
				sec, err = c.write(ctxFor(t), "", "tok", "x", nil, "")
			} else {
				sec, err = c.read(ctxFor(t), "", "tok", "x", nil, "")
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("= %+v, %v: want an error with %q", sec, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := "nil"
			if sec != nil {
				got = jsonOf(t, sec.Data)
			}
			if got != tt.want {
				t.Fatalf("data = %s, want %s", got, tt.want)
			}
		})
	}
}

// TestTokenRenewal: a renewable token is renewed at once (auth/token/
// renew-self, in the plugin's namespace) and again at two thirds of each
// TTL, until what is left is within its grace (10-20% of the TTL): then
// the token is dropped (IssuerEnded) and the next use logs in again. A
// renewal Vault denies makes the token non-renewable: it is kept to its
// grace, not renewed again.
func TestTokenRenewal(t *testing.T) {
	for _, tt := range []struct {
		name      string
		renewTTLs []int // nil: denied
		renewals  int
		// after is how long after the login the token is dropped, at
		// least (the token's TTL is 3 s).
		after time.Duration
	}{
		// Renewed at once for 3 s, then after 2 s and a third of the
		// grace, when the token is at its maximum TTL: 0 s.
		{name: "renewed to its end", renewTTLs: []int{3, 0}, renewals: 2, after: 2 * time.Second},
		// Dropped at two thirds of the TTL plus a third of the grace.
		{name: "renewal denied", renewals: 1, after: 2 * time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeVault(t)
			f.lookupTTL = 3
			f.renewTTLs = tt.renewTTLs
			f.answer("GET", "kv/app", 200, `{"data":{"x":"1"}}`)
			f.answer("PUT", "auth/token/renew-self", 403, `{"errors":["permission denied"]}`)
			d, _ := fakeDriver(t, f, func(c *Config) { c.Namespace = "team" })
			ref := secrets.Ref{Backend: Name, Name: "kv/app"}
			start := time.Now()
			if _, err := d.Fetch(ctxFor(t), ref); err != nil {
				t.Fatal(err)
			}
			select {
			case <-d.IssuerEnded():
			case <-time.After(20 * time.Second):
				t.Fatal("the token was not dropped within 20s")
			}
			if took := time.Since(start); took < tt.after {
				t.Errorf("dropped after %v, want %v at least", took, tt.after)
			}
			renewals := f.requestsTo("auth/token/renew-self")
			if len(renewals) != tt.renewals {
				t.Errorf("%d renewals, want %d", len(renewals), tt.renewals)
			}
			for _, r := range renewals {
				if r.Method != "PUT" || r.Token != "tok" || r.Namespace != "team" || r.Body["increment"] != float64(0) {
					t.Errorf("renewal %+v, want PUT with the token, increment 0, in namespace team", r)
				}
			}
			if d.session("").current() != "" {
				t.Fatal("the token is still held")
			}
			if _, err := d.Fetch(ctxFor(t), ref); err != nil {
				t.Fatal(err)
			}
			if n := d.session("").logins(); n != 2 {
				t.Fatalf("logins = %d, want 2: the next use logs in again", n)
			}
		})
	}
}

// TestNonPrintableToken: a token with a control character is refused
// before it is sent (the api's check), without showing it.
func TestNonPrintableToken(t *testing.T) {
	f := newFakeVault(t)
	d, _ := fakeDriver(t, f, func(c *Config) { c.Token = "to\x01k" })
	_, err := d.Fetch(ctxFor(t), secrets.Ref{Backend: Name, Name: "kv/app"})
	if err == nil || !strings.Contains(err.Error(), "non-printable") || strings.Contains(err.Error(), "to\x01k") {
		t.Fatalf("Fetch() = %v, want the token refused unseen", err)
	}
	if n := len(f.requests()); n != 0 {
		t.Fatalf("%d requests sent", n)
	}
	var se *secrets.Error
	if !errors.As(err, &se) {
		t.Fatalf("Fetch() = %T, want a *secrets.Error", err)
	}
}
