package gcp

import (
	"bytes"
	"context"
	"errors"
	"hash/crc32"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/oauth2"

	"github.com/dsv-plugin/dsv/secrets"
)

// fakeAPI answers every Access with one payload or error, and records the
// name asked for.
type fakeAPI struct {
	p     Payload
	err   error
	asked []string
}

func (f *fakeAPI) Access(_ context.Context, name string) (Payload, error) {
	f.asked = append(f.asked, name)
	return f.p, f.err
}

func crc(b []byte) *int64 {
	n := int64(crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)))
	return &n
}

const value = `{"user":"app","password":"s3cr3t-value"}`

func TestFetchChecksum(t *testing.T) {
	wrong := *crc([]byte(value)) + 1
	tests := []struct {
		name    string
		p       Payload
		key     string
		want    string
		wantErr []string
		wantLog string
	}{
		{name: "good", p: Payload{Name: "projects/1/secrets/db/versions/7", Data: []byte(value), CRC32C: crc([]byte(value))}, want: value},
		{name: "good, key", p: Payload{Name: "projects/1/secrets/db/versions/7", Data: []byte(value), CRC32C: crc([]byte(value))}, key: "password", want: "s3cr3t-value"},
		{name: "empty value", p: Payload{Name: "projects/1/secrets/db/versions/7", Data: nil, CRC32C: crc(nil)}, want: ""},
		{name: "mismatch", p: Payload{Name: "projects/1/secrets/db/versions/7", Data: []byte(value), CRC32C: &wrong},
			wantErr: []string{`gcp secret "projects/p-123456/secrets/db": unusable value`, `version "7" does not match its CRC32C checksum`, "nothing was written"}},
		{name: "mismatch, key", p: Payload{Name: "projects/1/secrets/db/versions/7", Data: []byte(value), CRC32C: &wrong}, key: "password",
			wantErr: []string{"CRC32C"}},
		// A version added before Secret Manager stored checksums has none.
		{name: "no checksum", p: Payload{Name: "projects/1/secrets/db/versions/7", Data: []byte(value)}, want: value,
			wantLog: `"version":"7","message":"the version has no CRC32C checksum`},
		{name: "no checksum, key", p: Payload{Name: "projects/1/secrets/db/versions/7", Data: []byte(value)}, key: "password", want: "s3cr3t-value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			api := &fakeAPI{p: tt.p}
			var logs bytes.Buffer
			d := New(Config{API: api}, zerolog.New(&logs))
			ref := secrets.Ref{Backend: Name, Name: "projects/p-123456/secrets/db", Key: tt.key}
			got, err := d.Fetch(context.Background(), ref)
			if want := []string{"projects/p-123456/secrets/db/versions/latest"}; len(api.asked) != 1 || api.asked[0] != want[0] {
				t.Errorf("asked for %q, want %q", api.asked, want)
			}
			if len(tt.wantErr) > 0 {
				if !errors.Is(err, secrets.ErrBadValue) {
					t.Fatalf("Fetch() = %q, %v; want ErrBadValue", got.Value, err)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not contain %q", err, w)
					}
				}
				if strings.Contains(err.Error(), "s3cr3t") {
					t.Errorf("error quotes the value: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got.Value) != tt.want || got.Version != "7" {
				t.Errorf("Fetch() = %q version %q, want %q version 7", got.Value, got.Version, tt.want)
			}
			if !strings.Contains(logs.String(), tt.wantLog) || strings.Contains(logs.String(), "s3cr3t") {
				t.Errorf("logs %q: want %q, and never the value", logs.String(), tt.wantLog)
			}
		})
	}
}

// TestClassify: every failure of Access maps to its class, with a hint that
// says what to fix.
func TestClassify(t *testing.T) {
	dnsErr := &net.DNSError{Err: "no such host", Name: "secretmanager.googleapis.com", IsNotFound: true}
	tests := []struct {
		name      string
		err       error
		expired   bool // the fetch's deadline has passed
		wantClass error
		wantHint  string
	}{
		{name: "permission denied", err: &APIError{HTTPStatus: 403, Status: "PERMISSION_DENIED", Reason: "IAM_PERMISSION_DENIED", Message: "Permission 'secretmanager.versions.access' denied"},
			wantClass: secrets.ErrAccessDenied, wantHint: "roles/secretmanager.secretAccessor"},
		{name: "api disabled", err: &APIError{HTTPStatus: 403, Status: "PERMISSION_DENIED", Reason: "SERVICE_DISABLED"}, wantClass: secrets.ErrAccessDenied, wantHint: "enable secretmanager.googleapis.com"},
		{name: "unauthenticated", err: &APIError{HTTPStatus: 401, Status: "UNAUTHENTICATED"}, wantClass: secrets.ErrAccessDenied, wantHint: "refused the access token"},
		{name: "not found", err: &APIError{HTTPStatus: 404, Status: "NOT_FOUND"}, wantClass: secrets.ErrNotFound, wantHint: "version-id"},
		{name: "disabled version", err: &APIError{HTTPStatus: 400, Status: "FAILED_PRECONDITION"}, wantClass: secrets.ErrNotFound, wantHint: "disabled or destroyed"},
		{name: "invalid argument", err: &APIError{HTTPStatus: 400, Status: "INVALID_ARGUMENT"}, wantClass: secrets.ErrNotFound, wantHint: "rejected"},
		{name: "throttled", err: &APIError{HTTPStatus: 429, Status: "RESOURCE_EXHAUSTED"}, wantClass: secrets.ErrThrottled, wantHint: "CACHE_TTL"},
		{name: "unavailable", err: &APIError{HTTPStatus: 503, Status: "UNAVAILABLE"}, wantClass: secrets.ErrUnavailable, wantHint: "try again later"},
		{name: "a proxy's 403", err: &APIError{HTTPStatus: 403}, wantClass: secrets.ErrAccessDenied, wantHint: "not Google's own"},
		{name: "a proxy's 404", err: &APIError{HTTPStatus: 404}, wantClass: secrets.ErrNotFound, wantHint: "GCP_ENDPOINT"},
		{name: "a proxy's 502", err: &APIError{HTTPStatus: 502}, wantClass: secrets.ErrUnavailable, wantHint: "try again later"},
		{name: "malformed", err: errMalformed, wantClass: secrets.ErrBadValue, wantHint: "GCP_ENDPOINT"},
		{name: "too large", err: errTooLarge, wantClass: secrets.ErrBadValue, wantHint: "64 KiB"},
		{name: "dns", err: dnsErr, wantClass: secrets.ErrUnavailable, wantHint: "could not reach Secret Manager at https://secretmanager.googleapis.com"},
		{name: "timeout", err: context.DeadlineExceeded, expired: true, wantClass: secrets.ErrTimeout, wantHint: "TIMEOUT"},

		{name: "credentials file broken", err: &CredentialsError{File: "/c/gcp.json", Load: true, Err: errors.New("not a JSON object")},
			wantClass: secrets.ErrAccessDenied, wantHint: "credentials file is not usable"},
		{name: "key refused", err: &CredentialsError{File: "/c/gcp.json", Err: &oauth2.RetrieveError{Response: &http.Response{StatusCode: 400}, ErrorCode: "invalid_grant", ErrorDescription: "Invalid JWT Signature."}},
			wantClass: secrets.ErrAccessDenied, wantHint: "key may be deleted"},
		{name: "token endpoint down", err: &CredentialsError{File: "/c/gcp.json", Err: &net.OpError{Op: "dial", Err: errors.New("connection refused")}},
			wantClass: secrets.ErrUnavailable, wantHint: "could not reach the token endpoint"},
		{name: "token endpoint silent", err: &CredentialsError{File: "/c/gcp.json", Err: context.DeadlineExceeded}, expired: true,
			wantClass: secrets.ErrTimeout, wantHint: "token endpoint of the credentials in /c/gcp.json did not answer"},
		{name: "no metadata server", err: &CredentialsError{File: "/c/gcp.json", Metadata: true, Err: context.DeadlineExceeded}, expired: true,
			wantClass: secrets.ErrAccessDenied, wantHint: "no Google credentials found: no file at /c/gcp.json"},
		{name: "metadata without a service account", err: &CredentialsError{File: "/c/gcp.json", Metadata: true, Err: &MetadataError{Host: "169.254.169.254", Status: 404, Google: true, GCE: true}},
			wantClass: secrets.ErrAccessDenied, wantHint: "this Google Cloud instance has no service account"},
		{name: "another cloud's metadata server", err: &CredentialsError{File: "/c/gcp.json", Metadata: true, Err: &MetadataError{Host: "169.254.169.254", Status: 404}},
			wantClass: secrets.ErrAccessDenied, wantHint: "this host is not on Google Cloud (the server at the metadata address is not Google's)"},
		{name: "Compute Engine, metadata server silent", err: &CredentialsError{File: "/c/gcp.json", Metadata: true, Err: &MetadataError{Host: "169.254.169.254", GCE: true, Err: errors.New("connection refused")}},
			wantClass: secrets.ErrUnavailable, wantHint: "the metadata server of this Compute Engine machine did not answer"},
		{name: "not Compute Engine, no metadata server", err: &CredentialsError{File: "/c/gcp.json", Metadata: true, Err: &MetadataError{Host: "169.254.169.254", Err: errors.New("connection refused")}},
			wantClass: secrets.ErrAccessDenied, wantHint: "this host is not on Google Cloud (no metadata server answered, and it is not a Compute Engine machine)"},
		{name: "Google's metadata server failing", err: &CredentialsError{File: "/c/gcp.json", Metadata: true, Err: &MetadataError{Host: "169.254.169.254", Status: 503, Google: true, GCE: true}},
			wantClass: secrets.ErrUnavailable, wantHint: "the Google Cloud metadata server did not give a token"},
		{name: "federation refused", err: &CredentialsError{File: "/c/gcp.json", Err: errors.New("oauth2/google/externalaccount: status code 400")},
			wantClass: secrets.ErrAccessDenied, wantHint: "check the file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := New(Config{API: &fakeAPI{err: tt.err}}, zerolog.Nop())
			ctx := context.Background()
			if tt.expired {
				var cancel context.CancelFunc
				ctx, cancel = context.WithDeadline(ctx, time.Now().Add(-time.Second))
				defer cancel()
			}
			ref := secrets.Ref{Backend: Name, Name: "projects/p-123456/secrets/db"}
			_, err := d.Fetch(ctx, ref)
			var se *secrets.Error
			if !errors.As(err, &se) || !errors.Is(err, tt.wantClass) {
				t.Fatalf("Fetch() error = %v, want a *secrets.Error of class %v", err, tt.wantClass)
			}
			if !strings.Contains(err.Error(), tt.wantHint) || !strings.Contains(err.Error(), `gcp secret "projects/p-123456/secrets/db"`) {
				t.Errorf("error %q does not name the secret or say %q", err, tt.wantHint)
			}
		})
	}
}

func TestParseAccess(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		want    string
		wantCRC int64
		wantErr bool
	}{
		{name: "string checksum", body: `{"name":"projects/1/secrets/s/versions/2","payload":{"data":"aGVsbG8=","dataCrc32c":"2591144780"}}`, want: "hello", wantCRC: 2591144780},
		{name: "number checksum", body: `{"name":"n","payload":{"data":"aGVsbG8=","dataCrc32c":2591144780}}`, want: "hello", wantCRC: 2591144780},
		{name: "empty payload", body: `{"name":"n","payload":{"dataCrc32c":"0"}}`, want: "", wantCRC: 0},
		{name: "no payload", body: `{"name":"n"}`, wantErr: true},
		{name: "bad base64", body: `{"name":"n","payload":{"data":"s3cr3t!!"}}`, wantErr: true},
		{name: "bad checksum", body: `{"name":"n","payload":{"data":"aGVsbG8=","dataCrc32c":"x"}}`, wantErr: true},
		{name: "not JSON", body: `s3cr3t`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := parseAccess([]byte(tt.body))
			if tt.wantErr {
				if !errors.Is(err, errMalformed) || strings.Contains(err.Error(), "s3cr3t") {
					t.Fatalf("parseAccess() error = %v, want errMalformed without the body", err)
				}
				return
			}
			if err != nil || string(p.Data) != tt.want || p.CRC32C == nil || *p.CRC32C != tt.wantCRC {
				t.Fatalf("parseAccess() = %+v, %v", p, err)
			}
		})
	}
	if *crc([]byte("hello")) != 2591144780 {
		t.Fatalf("CRC32C(hello) = %d, want 2591144780 (the test vectors above are wrong)", *crc([]byte("hello")))
	}
}

func TestBaseURL(t *testing.T) {
	for _, tt := range []struct{ endpoint, universe, name, want string }{
		{"", "", "projects/p/secrets/s/versions/1", "https://secretmanager.googleapis.com"},
		{"", "", "projects/p/locations/europe-west4/secrets/s/versions/1", "https://secretmanager.europe-west4.rep.googleapis.com"},
		{"", "s3nsapis.fr", "projects/p/secrets/s/versions/1", "https://secretmanager.s3nsapis.fr"},
		{"", "s3nsapis.fr", "projects/p/locations/u-france-east1/secrets/s/versions/1", "https://secretmanager.u-france-east1.rep.s3nsapis.fr"},
		{"http://127.0.0.1:8085", "s3nsapis.fr", "projects/p/locations/europe-west4/secrets/s/versions/1", "http://127.0.0.1:8085"},
	} {
		if got := baseURL(tt.endpoint, tt.universe, tt.name); got != tt.want {
			t.Errorf("baseURL(%q, %q, %q) = %q, want %q", tt.endpoint, tt.universe, tt.name, got, tt.want)
		}
	}
}
