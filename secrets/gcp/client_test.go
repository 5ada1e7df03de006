package gcp

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/dsv-plugin/dsv/secrets"
)

// recorder answers every request as Secret Manager would and keeps it.
type recorder struct {
	mu   sync.Mutex
	reqs []*http.Request
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.reqs = append(r.reqs, req)
	r.mu.Unlock()
	body := `{"name":"projects/1/secrets/db/versions/1","payload":{"data":"aGVsbG8=","dataCrc32c":"2591144780"}}`
	return &http.Response{StatusCode: http.StatusOK, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(strings.NewReader(body)), Request: req}, nil
}

func writeJSONFile(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "credentials.json")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

func accessContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestClientUniverseDomain: a service-account key of another universe
// reads from that universe's Secret Manager with a JWT it signs for that
// service's audience, and never asks googleapis.com's token endpoint.
func TestClientUniverseDomain(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	tokenAsked := false
	tokenSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tokenAsked = true
		http.Error(w, "no token endpoint in this universe", http.StatusNotFound)
	}))
	defer tokenSrv.Close()
	file := writeJSONFile(t, map[string]string{
		"type": "service_account", "project_id": "p-123456", "private_key_id": "kid-1",
		"private_key":  string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email": "app@p-123456.iam.gserviceaccount.example", "client_id": "1",
		"token_uri": tokenSrv.URL + "/token", "universe_domain": "example-universe.test",
	})
	c := NewClient(Config{CredentialsFile: file})
	rec := &recorder{}
	c.http.Transport = rec
	for _, name := range []string{"projects/p-123456/secrets/db/versions/1", "projects/p-123456/locations/u-east1/secrets/db/versions/1"} {
		if _, err := c.Access(accessContext(t), name); err != nil {
			t.Fatalf("Access(%s) = %v", name, err)
		}
	}
	if tokenAsked {
		t.Error("the token endpoint was asked: a key outside googleapis.com signs its own JWT")
	}
	wantHosts := []string{"secretmanager.example-universe.test", "secretmanager.u-east1.rep.example-universe.test"}
	if len(rec.reqs) != 2 {
		t.Fatalf("%d requests, want 2", len(rec.reqs))
	}
	for i, req := range rec.reqs {
		if req.URL.Scheme != "https" || req.URL.Host != wantHosts[i] {
			t.Errorf("request %d went to %s, want https://%s", i, req.URL, wantHosts[i])
		}
		jwt, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
		parts := strings.Split(jwt, ".")
		if !ok || len(parts) != 3 {
			t.Fatalf("request %d: Authorization %q is not a bearer JWT", i, req.Header.Get("Authorization"))
		}
		var claims struct {
			Aud string `json:"aud"`
			Iss string `json:"iss"`
		}
		b, _ := base64.RawURLEncoding.DecodeString(parts[1])
		if err := json.Unmarshal(b, &claims); err != nil {
			t.Fatal(err)
		}
		if claims.Aud != "https://secretmanager.example-universe.test/" || claims.Iss != "app@p-123456.iam.gserviceaccount.example" {
			t.Errorf("request %d: JWT claims %+v, want aud https://secretmanager.example-universe.test/ from the service account", i, claims)
		}
		sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
		sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
		if rsa.VerifyPKCS1v15(&key.PublicKey, crypto.SHA256, sum[:], sig) != nil {
			t.Errorf("request %d: the JWT is not signed by the key", i)
		}
		if q := req.Header.Get("X-Goog-User-Project"); q != "" {
			t.Errorf("request %d: x-goog-user-project %q without a quota project", i, q)
		}
	}
}

// TestClientQuotaProject: authorized-user credentials (gcloud auth
// application-default login) send their quota project with every request;
// their universe is always googleapis.com.
func TestClientQuotaProject(t *testing.T) {
	tokenSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ParseForm() != nil || r.PostForm.Get("grant_type") != "refresh_token" || r.PostForm.Get("refresh_token") != "1//refresh" {
			http.Error(w, `{"error":"invalid_grant"}`, http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"access_token":"ya29.user","expires_in":3600,"token_type":"Bearer"}`)
	}))
	defer tokenSrv.Close()
	for _, tt := range []struct {
		name      string
		file      map[string]string
		endpoint  string
		wantURL   string
		wantQuota string
	}{
		{name: "authorized user with a quota project",
			file:     map[string]string{"type": "authorized_user", "client_id": "c", "client_secret": "s", "refresh_token": "1//refresh", "token_uri": tokenSrv.URL + "/token", "quota_project_id": "billing-proj-1"},
			endpoint: "http://127.0.0.1:8085", wantURL: "http://127.0.0.1:8085/v1/projects/p-123456/secrets/db/versions/1:access", wantQuota: "billing-proj-1"},
		{name: "authorized user of another universe stays in googleapis.com",
			file:    map[string]string{"type": "authorized_user", "client_id": "c", "client_secret": "s", "refresh_token": "1//refresh", "token_uri": tokenSrv.URL + "/token", "quota_project_id": "billing-proj-1", "universe_domain": "example-universe.test"},
			wantURL: "https://secretmanager.googleapis.com/v1/projects/p-123456/secrets/db/versions/1:access", wantQuota: "billing-proj-1"},
		{name: "authorized user without one",
			file:    map[string]string{"type": "authorized_user", "client_id": "c", "client_secret": "s", "refresh_token": "1//refresh", "token_uri": tokenSrv.URL + "/token"},
			wantURL: "https://secretmanager.googleapis.com/v1/projects/p-123456/secrets/db/versions/1:access"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := NewClient(Config{Endpoint: tt.endpoint, CredentialsFile: writeJSONFile(t, tt.file)})
			rec := &recorder{}
			c.http.Transport = rec
			if _, err := c.Access(accessContext(t), "projects/p-123456/secrets/db/versions/1"); err != nil {
				t.Fatal(err)
			}
			req := rec.reqs[0]
			if req.URL.String() != tt.wantURL || req.Header.Get("Authorization") != "Bearer ya29.user" {
				t.Errorf("request to %s with %q, want %s with the user's token", req.URL, req.Header.Get("Authorization"), tt.wantURL)
			}
			if q := req.Header.Get("X-Goog-User-Project"); q != tt.wantQuota {
				t.Errorf("x-goog-user-project %q, want %q", q, tt.wantQuota)
			}
		})
	}
}

// TestClientRefusesBadUniverse: a universe_domain that is not a domain
// never becomes a URL.
func TestClientRefusesBadUniverse(t *testing.T) {
	for _, ud := range []string{"evil.example/x?", "localhost", "a..b", "EXAMPLE.com:443"} {
		file := writeJSONFile(t, map[string]string{"type": "service_account", "universe_domain": ud})
		c := NewClient(Config{CredentialsFile: file})
		rec := &recorder{}
		c.http.Transport = rec
		_, err := c.Access(accessContext(t), "projects/p-123456/secrets/db/versions/1")
		var ce *CredentialsError
		if !errors.As(err, &ce) || !ce.Load || !strings.Contains(err.Error(), "universe_domain") || len(rec.reqs) != 0 {
			t.Errorf("universe_domain %q: %v after %d requests, want a load error naming universe_domain and none", ud, err, len(rec.reqs))
		}
	}
}

// TestMetadataFallback: without a credentials file, the token comes from
// the metadata server only when it is Google's (Metadata-Flavor: Google),
// and a failure says whether this host is on Google Cloud at all.
func TestMetadataFallback(t *testing.T) {
	serve := func(flavor bool, status int) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if flavor {
				w.Header().Set("Metadata-Flavor", "Google")
			}
			if status != http.StatusOK || r.Header.Get("Metadata-Flavor") != "Google" {
				http.Error(w, "no", status)
				return
			}
			_, _ = io.WriteString(w, `{"access_token":"ya29.meta","expires_in":3600,"token_type":"Bearer"}`)
		}))
		t.Cleanup(srv.Close)
		return strings.TrimPrefix(srv.URL, "http://")
	}
	closed := func() string {
		srv := httptest.NewServer(http.NotFoundHandler())
		host := strings.TrimPrefix(srv.URL, "http://")
		srv.Close()
		return host
	}
	gce := filepath.Join(t.TempDir(), "product_name")
	if err := os.WriteFile(gce, []byte("Google Compute Engine\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "product_name")
	if err := os.WriteFile(other, []byte("HVM domU\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name       string
		host       string
		dmi        string
		wantToken  bool
		wantClass  error
		wantInHint string
	}{
		{name: "Google's metadata server", host: serve(true, http.StatusOK), dmi: gce, wantToken: true},
		{name: "Google's, no service account", host: serve(true, http.StatusNotFound), dmi: gce,
			wantClass: secrets.ErrAccessDenied, wantInHint: "this Google Cloud instance has no service account"},
		{name: "another cloud's metadata server (404)", host: serve(false, http.StatusNotFound), dmi: other,
			wantClass: secrets.ErrAccessDenied, wantInHint: "this host is not on Google Cloud (the server at the metadata address is not Google's)"},
		{name: "a server that answers a token without the flavor", host: serve(false, http.StatusOK), dmi: other,
			wantClass: secrets.ErrAccessDenied, wantInHint: "is not Google's"},
		{name: "Compute Engine, metadata server unreachable", host: closed(), dmi: gce,
			wantClass: secrets.ErrUnavailable, wantInHint: "the metadata server of this Compute Engine machine did not answer"},
		{name: "elsewhere, nothing at the metadata address", host: closed(), dmi: filepath.Join(t.TempDir(), "absent"),
			wantClass: secrets.ErrAccessDenied, wantInHint: "not a Compute Engine machine"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(metadataHostEnv, tt.host)
			c := NewClient(Config{CredentialsFile: filepath.Join(t.TempDir(), "absent.json")})
			c.creds.dmiProduct = tt.dmi
			rec := &recorder{}
			c.http.Transport = rec
			d := New(Config{API: c}, zerolog.Nop())
			_, err := d.Fetch(accessContext(t), secrets.Ref{Backend: Name, Name: "projects/p-123456/secrets/db"})
			if tt.wantToken {
				if err != nil || len(rec.reqs) != 1 || rec.reqs[0].Header.Get("Authorization") != "Bearer ya29.meta" {
					t.Fatalf("Fetch() = %v after %d requests, want a read with the metadata token", err, len(rec.reqs))
				}
				return
			}
			if !errors.Is(err, tt.wantClass) || !strings.Contains(err.Error(), tt.wantInHint) || len(rec.reqs) != 0 {
				t.Fatalf("Fetch() = %v after %d requests, want class %v saying %q", err, len(rec.reqs), tt.wantClass, tt.wantInHint)
			}
			t.Logf("error: %v", err)
		})
	}
}
