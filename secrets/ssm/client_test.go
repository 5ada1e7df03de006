package ssm

import (
	"context"
	"encoding/json"
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

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/dsv-plugin/dsv/secrets"
	"github.com/dsv-plugin/dsv/secrets/awsauth"
)

// These tests hold the client to the protocol at the HTTP level; the
// integration tests run it against moto, and the e2e suite in the plugin.

// answer is one canned HTTP answer.
type answer struct {
	status int
	header map[string]string
	body   string
}

// wire is a server that answers in turn (the last answer repeats) and
// records the requests.
type wire struct {
	answers []answer

	mu     sync.Mutex
	reqs   []*http.Request
	bodies []string
}

func (w *wire) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	w.mu.Lock()
	w.reqs = append(w.reqs, r)
	w.bodies = append(w.bodies, string(body))
	a := w.answers[min(len(w.reqs), len(w.answers))-1]
	w.mu.Unlock()
	for k, v := range a.header {
		rw.Header().Set(k, v)
	}
	rw.WriteHeader(a.status)
	_, _ = io.WriteString(rw, a.body)
}

func (w *wire) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.reqs)
}

// fastRetries is the standard retryer with a millisecond between attempts.
func fastRetries() aws.Retryer {
	return retry.NewStandard(func(o *retry.StandardOptions) {
		o.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return time.Millisecond, nil })
	})
}

func testClient(t *testing.T, answers ...answer) (*Client, *wire) {
	t.Helper()
	w := &wire{answers: answers}
	srv := httptest.NewServer(w)
	t.Cleanup(srv.Close)
	c, err := newClient(context.Background(), aws.Config{
		Region:       "eu-west-1",
		BaseEndpoint: aws.String(srv.URL),
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "AKIDTEST", SecretAccessKey: "secret", SessionToken: "session"}, nil
		}),
		HTTPClient: srv.Client(),
		Retryer:    fastRetries,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c, w
}

func TestClientRequest(t *testing.T) {
	c, w := testClient(t, answer{status: 200, body: `{"Parameter":{"ARN":"arn:aws:ssm:eu-west-1:123456789012:parameter/db","DataType":"text","LastModifiedDate":1.7e9,"Name":"/db","Type":"SecureString","Value":"` + sentinel + `","Version":4}}`})
	out, err := c.GetParameter(testContext(t), &GetParameterInput{Name: aws.String("/db:blue"), WithDecryption: aws.Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
	if p := out.Parameter; p == nil || aws.ToString(p.Name) != "/db" || aws.ToString(p.Value) != sentinel || p.Version != 4 || p.Type != "SecureString" {
		t.Errorf("GetParameter() = %+v", out.Parameter)
	}
	r := w.reqs[0]
	checks := []struct{ what, got, want string }{
		{what: "method", got: r.Method, want: http.MethodPost},
		{what: "path", got: r.URL.Path, want: "/"},
		{what: "X-Amz-Target", got: r.Header.Get("X-Amz-Target"), want: "AmazonSSM.GetParameter"},
		{what: "Content-Type", got: r.Header.Get("Content-Type"), want: "application/x-amz-json-1.1"},
		{what: "X-Amz-Security-Token", got: r.Header.Get("X-Amz-Security-Token"), want: "session"},
		{what: "body", got: w.bodies[0], want: `{"Name":"/db:blue","WithDecryption":true}`},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s = %q, want %q", ck.what, ck.got, ck.want)
		}
	}
	// SigV4 for the service's signing name, in the client's region, over
	// the target and content type.
	auth := r.Header.Get("Authorization")
	for _, want := range []string{"AWS4-HMAC-SHA256 Credential=AKIDTEST/", "/eu-west-1/ssm/aws4_request", "content-type", "x-amz-target", "x-amz-date", "x-amz-security-token", "Signature="} {
		if !strings.Contains(auth, want) {
			t.Errorf("Authorization = %q, want it to contain %q", auth, want)
		}
	}

	_, err = c.GetParametersByPath(testContext(t), &GetParametersByPathInput{Path: aws.String("/app/"), Recursive: aws.Bool(false), WithDecryption: aws.Bool(true), MaxResults: aws.Int32(10), NextToken: aws.String("t1")})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := w.reqs[1].Header.Get("X-Amz-Target"), "AmazonSSM.GetParametersByPath"; got != want {
		t.Errorf("X-Amz-Target = %q, want %q", got, want)
	}
	var body map[string]any
	if err := json.Unmarshal([]byte(w.bodies[1]), &body); err != nil {
		t.Fatal(err)
	}
	if body["Path"] != "/app/" || body["Recursive"] != false || body["WithDecryption"] != true || body["MaxResults"] != float64(10) || body["NextToken"] != "t1" {
		t.Errorf("GetParametersByPath body = %s", w.bodies[1])
	}
}

func TestClientErrors(t *testing.T) {
	tests := []struct {
		name       string
		answer     answer
		wantCode   string // "" when the answer is no API error
		wantMsg    string
		wantStatus int
		wantText   []string // in err.Error()
	}{
		{
			name:     "header code with its URL",
			answer:   answer{status: 400, header: map[string]string{"X-Amzn-ErrorType": "ParameterNotFound:http://internal.amazon.com/coral/com.amazonaws.ssm/", "X-Amzn-Requestid": "req-1"}, body: `{"__type":"com.amazonaws.ssm#Other","message":"nope"}`},
			wantCode: "ParameterNotFound", wantMsg: "nope", wantStatus: 400,
			wantText: []string{"operation error SSM: GetParameter", "StatusCode: 400", "RequestID: req-1", "ParameterNotFound", "nope"},
		},
		{
			name:     "body type with its namespace",
			answer:   answer{status: 400, body: `{"__type":"com.amazonaws.ssm#ParameterVersionNotFound","message":"Version 9 of /db not found"}`},
			wantCode: "ParameterVersionNotFound", wantMsg: "Version 9 of /db not found", wantStatus: 400,
		},
		{
			name:     "Message with a capital",
			answer:   answer{status: 400, body: `{"__type":"AccessDeniedException","Message":"User: x is not authorized to perform: ssm:GetParameter"}`},
			wantCode: "AccessDeniedException", wantMsg: "User: x is not authorized to perform: ssm:GetParameter", wantStatus: 400,
		},
		{
			name:     "code member",
			answer:   answer{status: 400, body: `{"code":"ValidationException"}`},
			wantCode: "ValidationException", wantMsg: "ValidationException", wantStatus: 400,
		},
		{
			name:     "no body",
			answer:   answer{status: 404},
			wantCode: "UnknownError", wantMsg: "UnknownError", wantStatus: 404,
		},
		{
			name:       "not JSON",
			answer:     answer{status: 403, body: `<ErrorResponse><Error><Code>InvalidClientTokenId</Code></Error></ErrorResponse>`},
			wantStatus: 403,
			wantText:   []string{"StatusCode: 403", "not JSON"},
		},
		{
			name:       "success that is not JSON",
			answer:     answer{status: 200, body: `{"Parameter":{"Value":"` + sentinel + `",`},
			wantStatus: 200,
		},
		{
			name:       "answer too large",
			answer:     answer{status: 200, body: `{"Parameter":{"Value":"` + strings.Repeat("x", maxAnswerBytes) + `"}}`},
			wantStatus: 200,
			wantText:   []string{"larger than 1024 KiB"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, w := testClient(t, tt.answer)
			_, err := c.GetParameter(testContext(t), &GetParameterInput{Name: aws.String("/db")})
			if err == nil {
				t.Fatal("GetParameter() succeeded")
			}
			if n := w.count(); n != 1 {
				t.Errorf("%d attempts, want 1 (not retryable)", n)
			}
			var opErr *smithy.OperationError
			if !errors.As(err, &opErr) || opErr.ServiceID != "SSM" || opErr.OperationName != "GetParameter" {
				t.Errorf("error %v is not an SSM GetParameter OperationError", err)
			}
			var respErr *smithyhttp.ResponseError
			if !errors.As(err, &respErr) || respErr.HTTPStatusCode() != tt.wantStatus {
				t.Errorf("error %v: want a ResponseError of status %d", err, tt.wantStatus)
			}
			var apiErr smithy.APIError
			switch {
			case tt.wantCode == "" && errors.As(err, &apiErr):
				t.Errorf("error %v has API code %q, want none", err, apiErr.ErrorCode())
			case tt.wantCode != "" && !errors.As(err, &apiErr):
				t.Errorf("error %v is no APIError", err)
			case tt.wantCode != "" && (apiErr.ErrorCode() != tt.wantCode || apiErr.ErrorMessage() != tt.wantMsg):
				t.Errorf("API error = %q %q, want %q %q", apiErr.ErrorCode(), apiErr.ErrorMessage(), tt.wantCode, tt.wantMsg)
			}
			for _, want := range tt.wantText {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
			if strings.Contains(err.Error(), sentinel) || strings.Contains(err.Error(), "xxxxxxxx") {
				t.Errorf("error holds the answer's body: %.300s", err)
			}
		})
	}
}

func TestClientRetries(t *testing.T) {
	throttled := answer{status: 400, body: `{"__type":"ThrottlingException","message":"Rate exceeded"}`}
	ok := answer{status: 200, body: `{"Parameter":{"Name":"/db","Value":"v","Version":1}}`}
	tests := []struct {
		name         string
		answers      []answer
		wantAttempts int
		wantErr      bool
		wantText     string
	}{
		{name: "server error then success", answers: []answer{{status: 500, body: `{"__type":"InternalServerError"}`}, ok}, wantAttempts: 2},
		{name: "bad gateway without a body", answers: []answer{{status: 502, body: "<html>bad gateway</html>"}, ok}, wantAttempts: 2},
		// The store gate retries throttling, with a backoff shared by the
		// node's calls (secrets/gate); the SDK's retryer must not.
		{name: "throttled is left to the gate", answers: []answer{throttled, ok}, wantAttempts: 1, wantErr: true, wantText: "ThrottlingException"},
		{name: "server errors to the end", answers: []answer{{status: 500, body: `{"__type":"InternalServerError"}`}}, wantAttempts: 3, wantErr: true, wantText: "exceeded maximum number of attempts, 3"},
		{name: "not found is final", answers: []answer{{status: 400, body: `{"__type":"ParameterNotFound"}`}}, wantAttempts: 1, wantErr: true},
		{name: "access denied is final", answers: []answer{{status: 400, body: `{"__type":"AccessDeniedException","message":"no"}`}}, wantAttempts: 1, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, w := testClient(t, tt.answers...)
			_, err := c.GetParameter(testContext(t), &GetParameterInput{Name: aws.String("/db")})
			if (err != nil) != tt.wantErr {
				t.Fatalf("GetParameter() error = %v, want error %v", err, tt.wantErr)
			}
			if n := w.count(); n != tt.wantAttempts {
				t.Errorf("%d attempts, want %d", n, tt.wantAttempts)
			}
			if tt.wantText != "" && !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("error %q lacks %q", err, tt.wantText)
			}
		})
	}
}

// TestClientDeadline: a server that does not answer holds a call to its
// context, and the backend calls it a timeout.
func TestClientDeadline(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	c, err := newClient(context.Background(), aws.Config{
		Region:       "eu-west-1",
		BaseEndpoint: aws.String(srv.URL),
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "a", SecretAccessKey: "b"}, nil
		}),
		Retryer: fastRetries,
	})
	if err != nil {
		t.Fatal(err)
	}
	d := New(Config{DefaultRegion: "eu-west-1", NewClient: func(context.Context, string) (API, error) { return c, nil }})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = d.Fetch(ctx, secrets.Ref{Backend: Name, Name: "/db"})
	if !errors.Is(err, secrets.ErrTimeout) {
		t.Fatalf("Fetch() error = %v, want ErrTimeout", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("Fetch() returned after %v, want about the 200ms deadline", el)
	}
}

// TestClientClasses runs the client's errors through the backend: the
// classes and hints awsauth gives the SDK's errors apply to the client's.
func TestClientClasses(t *testing.T) {
	tests := []struct {
		name     string
		answer   answer
		wantKind error
		wantHint string
	}{
		{name: "not found", answer: answer{status: 400, body: `{"__type":"ParameterNotFound"}`}, wantKind: secrets.ErrNotFound, wantHint: `region ("eu-west-1")`},
		{name: "label not found", answer: answer{status: 400, body: `{"__type":"ParameterVersionLabelNotFound"}`}, wantKind: secrets.ErrNotFound, wantHint: "version-stage"},
		{name: "denied", answer: answer{status: 400, body: `{"__type":"AccessDeniedException","Message":"not authorized to perform: ssm:GetParameter"}`}, wantKind: secrets.ErrAccessDenied, wantHint: "allow ssm:GetParameter"},
		{name: "kms", answer: answer{status: 400, body: `{"__type":"AccessDeniedException","Message":"not authorized to perform: kms:Decrypt"}`}, wantKind: secrets.ErrAccessDenied, wantHint: "kms:Decrypt"},
		{name: "unknown key", answer: answer{status: 400, body: `{"__type":"UnrecognizedClientException","message":"The security token included in the request is invalid."}`}, wantKind: secrets.ErrAccessDenied, wantHint: "access key id is unknown"},
		{name: "bad signature", answer: answer{status: 400, body: `{"__type":"InvalidSignatureException"}`}, wantKind: secrets.ErrAccessDenied, wantHint: "secret access key"},
		{name: "throttled", answer: answer{status: 400, body: `{"__type":"ThrottlingException"}`}, wantKind: secrets.ErrThrottled, wantHint: "raise CACHE_TTL"},
		{name: "server", answer: answer{status: 500, body: `{"__type":"InternalServerError"}`}, wantKind: secrets.ErrUnavailable, wantHint: "try again later"},
		{name: "refusal not AWS's", answer: answer{status: 403, body: `<html>forbidden</html>`}, wantKind: secrets.ErrAccessDenied, wantHint: "not AWS's own"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := testClient(t, tt.answer)
			d := New(Config{DefaultRegion: "eu-west-1", NewClient: func(context.Context, string) (API, error) { return c, nil }})
			_, err := d.Fetch(testContext(t), secrets.Ref{Backend: Name, Name: "/db"})
			var se *secrets.Error
			if !errors.As(err, &se) || !errors.Is(err, tt.wantKind) {
				t.Fatalf("Fetch() error = %v, want a *secrets.Error of kind %v", err, tt.wantKind)
			}
			if !strings.Contains(se.Hint, tt.wantHint) {
				t.Errorf("hint = %q, want it to contain %q", se.Hint, tt.wantHint)
			}
		})
	}
}

func TestClientCredentialsError(t *testing.T) {
	w := &wire{answers: []answer{{status: 200, body: `{}`}}}
	srv := httptest.NewServer(w)
	defer srv.Close()
	c, err := newClient(context.Background(), aws.Config{
		Region:       "eu-west-1",
		BaseEndpoint: aws.String(srv.URL),
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{}, &awsauth.CredentialsError{What: "no provider of the SDK's credential chain gave credentials", Hint: awsauth.HintNoCredentials}
		}),
		Retryer: fastRetries,
	})
	if err != nil {
		t.Fatal(err)
	}
	d := New(Config{DefaultRegion: "eu-west-1", NewClient: func(context.Context, string) (API, error) { return c, nil }})
	_, err = d.Fetch(testContext(t), secrets.Ref{Backend: Name, Name: "/db"})
	if !errors.Is(err, secrets.ErrAccessDenied) || !strings.Contains(err.Error(), "credentials") {
		t.Fatalf("Fetch() error = %v, want access denied naming the credentials", err)
	}
	if n := w.count(); n != 0 {
		t.Errorf("%d requests sent without credentials, want 0", n)
	}
}

// TestResolveEndpoint: the SDK's endpoint rules for the service, from the
// same settings (environment and shared files) the SDK reads.
func TestResolveEndpoint(t *testing.T) {
	tests := []struct {
		name    string
		region  string
		env     map[string]string
		config  string // the shared config file's content
		want    string
		wantErr string
	}{
		{name: "commercial", region: "us-east-1", want: "https://ssm.us-east-1.amazonaws.com/"},
		{name: "china", region: "cn-north-1", want: "https://ssm.cn-north-1.amazonaws.com.cn/"},
		{name: "govcloud", region: "us-gov-west-1", want: "https://ssm.us-gov-west-1.amazonaws.com/"},
		{name: "iso", region: "us-iso-east-1", want: "https://ssm.us-iso-east-1.c2s.ic.gov/"},
		{name: "isob", region: "us-isob-east-1", want: "https://ssm.us-isob-east-1.sc2s.sgov.gov/"},
		{name: "european sovereign", region: "eusc-de-east-1", want: "https://ssm.eusc-de-east-1.amazonaws.eu/"},
		{name: "fips", region: "us-east-2", env: map[string]string{"AWS_USE_FIPS_ENDPOINT": "true"}, want: "https://ssm-fips.us-east-2.amazonaws.com/"},
		{name: "fips in govcloud", region: "us-gov-east-1", env: map[string]string{"AWS_USE_FIPS_ENDPOINT": "true"}, want: "https://ssm.us-gov-east-1.amazonaws.com/"},
		{name: "dual-stack", region: "eu-west-1", env: map[string]string{"AWS_USE_DUALSTACK_ENDPOINT": "true"}, want: "https://ssm.eu-west-1.api.aws/"},
		{name: "dual-stack china", region: "cn-northwest-1", env: map[string]string{"AWS_USE_DUALSTACK_ENDPOINT": "true"}, want: "https://ssm.cn-northwest-1.api.amazonwebservices.com.cn/"},
		{name: "fips and dual-stack", region: "us-west-2", env: map[string]string{"AWS_USE_FIPS_ENDPOINT": "true", "AWS_USE_DUALSTACK_ENDPOINT": "true"}, want: "https://ssm-fips.us-west-2.api.aws/"},
		{name: "fips from the profile", region: "us-east-1", config: "[default]\nuse_fips_endpoint = true\n", want: "https://ssm-fips.us-east-1.amazonaws.com/"},
		{name: "AWS_ENDPOINT_URL", region: "us-east-1", env: map[string]string{"AWS_ENDPOINT_URL": "http://127.0.0.1:5000"}, want: "http://127.0.0.1:5000/"},
		{name: "AWS_ENDPOINT_URL with a path", region: "us-east-1", env: map[string]string{"AWS_ENDPOINT_URL": "https://proxy.example/aws/ssm"}, want: "https://proxy.example/aws/ssm"},
		{name: "AWS_ENDPOINT_URL_SSM first", region: "us-east-1", env: map[string]string{"AWS_ENDPOINT_URL": "http://127.0.0.1:5000", "AWS_ENDPOINT_URL_SSM": "http://127.0.0.1:5001"}, want: "http://127.0.0.1:5001/"},
		{name: "AWS_ENDPOINT_URL of another service", region: "us-east-1", env: map[string]string{"AWS_ENDPOINT_URL_SECRETS_MANAGER": "http://127.0.0.1:5002"}, want: "https://ssm.us-east-1.amazonaws.com/"},
		{name: "services section", region: "us-east-1", config: "[default]\nservices = local\n[services local]\nssm =\n  endpoint_url = http://127.0.0.1:5003\n", want: "http://127.0.0.1:5003/"},
		{name: "fips with an endpoint", region: "us-east-1", env: map[string]string{"AWS_ENDPOINT_URL": "http://127.0.0.1:5000", "AWS_USE_FIPS_ENDPOINT": "true"}, wantErr: "FIPS"},
		{name: "endpoint without a scheme", region: "us-east-1", env: map[string]string{"AWS_ENDPOINT_URL": "127.0.0.1:5000"}, wantErr: "not an http:// or https:// URL"},
		{name: "region not a host label", region: "us-east-1.evil.example/x", wantErr: "cannot be part of a host name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, k := range []string{"AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SSM", "AWS_USE_FIPS_ENDPOINT", "AWS_USE_DUALSTACK_ENDPOINT", "AWS_PROFILE", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"} {
				t.Setenv(k, "") // restored after the test
				_ = os.Unsetenv(k)
			}
			conf := filepath.Join(dir, "config")
			if err := os.WriteFile(conf, []byte(tt.config), 0o600); err != nil {
				t.Fatal(err)
			}
			t.Setenv("AWS_CONFIG_FILE", conf)
			t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
			t.Setenv("AWS_ACCESS_KEY_ID", "a")
			t.Setenv("AWS_SECRET_ACCESS_KEY", "b")
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			cfg, err := awsauth.LoadConfig(testContext(t), tt.region)
			if err != nil {
				t.Fatal(err)
			}
			got, err := resolveEndpoint(testContext(t), cfg)
			if tt.wantErr != "" {
				var ce *awsauth.ConfigError
				if !errors.As(err, &ce) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("resolveEndpoint() = %q, %v; want a ConfigError with %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("resolveEndpoint() = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// TestResolveRetryer: AWS_MAX_ATTEMPTS and AWS_RETRY_MODE reach the
// client's retryer, as they reach the SDK's clients.
func TestResolveRetryer(t *testing.T) {
	tests := []struct {
		name string
		cfg  aws.Config
		want int
	}{
		{name: "default", want: retry.DefaultMaxAttempts},
		{name: "max attempts", cfg: aws.Config{RetryMaxAttempts: 5}, want: 5},
		{name: "adaptive", cfg: aws.Config{RetryMode: aws.RetryModeAdaptive, RetryMaxAttempts: 2}, want: 2},
		{name: "retryer given", cfg: aws.Config{Retryer: func() aws.Retryer { return aws.NopRetryer{} }}, want: 1},
		{name: "retryer given and max attempts", cfg: aws.Config{Retryer: fastRetries, RetryMaxAttempts: 7}, want: 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := resolveRetryer(tt.cfg).MaxAttempts(); got != tt.want {
				t.Errorf("MaxAttempts() = %d, want %d", got, tt.want)
			}
		})
	}
}
