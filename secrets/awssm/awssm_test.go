package awssm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/rs/zerolog"

	"github.com/dsv-plugin/dsv/secrets"
	"github.com/dsv-plugin/dsv/secrets/awsauth"
)

// sentinel is the secret value of every fake: no error or log may hold it.
const sentinel = "hunter2-SENTINEL-value"

// fakeAPI answers GetSecretValue with out or err and records its input.
type fakeAPI struct {
	out *GetSecretValueOutput
	err error

	mu sync.Mutex
	in []*GetSecretValueInput
}

func (f *fakeAPI) GetSecretValue(_ context.Context, in *GetSecretValueInput) (*GetSecretValueOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.in = append(f.in, in)
	return f.out, f.err
}

// factory hands out api and records the regions asked for.
type factory struct {
	api API
	err error

	mu      sync.Mutex
	regions []string
}

func (f *factory) newClient(_ context.Context, region string) (API, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.regions = append(f.regions, region)
	return f.api, f.err
}

func stringOut(s, version string) *GetSecretValueOutput {
	return &GetSecretValueOutput{SecretString: aws.String(s), VersionID: aws.String(version)}
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestName(t *testing.T) {
	if got := New(Config{}).Name(); got != "aws" {
		t.Fatalf("Name() = %q, want aws", got)
	}
}

func TestFetchRequest(t *testing.T) {
	tests := []struct {
		name          string
		defaultRegion string
		ref           secrets.Ref
		wantRegion    string
		wantVersionID string
		wantStage     string
	}{
		{name: "default region and AWSCURRENT", defaultRegion: "us-east-1", ref: secrets.Ref{Name: "db"}, wantRegion: "us-east-1", wantStage: "AWSCURRENT"},
		{name: "region option wins", defaultRegion: "us-east-1", ref: secrets.Ref{Name: "db", Region: "eu-west-3"}, wantRegion: "eu-west-3", wantStage: "AWSCURRENT"},
		{name: "arn region over the default", defaultRegion: "us-east-1", ref: secrets.Ref{Name: testARN}, wantRegion: "eu-west-1", wantStage: "AWSCURRENT"},
		{name: "no region leaves it to the sdk", ref: secrets.Ref{Name: "db"}, wantRegion: "", wantStage: "AWSCURRENT"},
		{name: "version id alone has no stage", ref: secrets.Ref{Name: "db", VersionID: testVersionID}, wantVersionID: testVersionID},
		{name: "stage", ref: secrets.Ref{Name: "db", VersionStage: "AWSPREVIOUS"}, wantStage: "AWSPREVIOUS"},
		{name: "version id and stage", ref: secrets.Ref{Name: "db", VersionID: testVersionID, VersionStage: "AWSPENDING"}, wantVersionID: testVersionID, wantStage: "AWSPENDING"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			api := &fakeAPI{out: stringOut("v", "ver-1")}
			f := &factory{api: api}
			d := New(Config{DefaultRegion: tt.defaultRegion, NewClient: f.newClient})
			if _, err := d.Fetch(testContext(t), tt.ref); err != nil {
				t.Fatal(err)
			}
			if len(f.regions) != 1 || f.regions[0] != tt.wantRegion {
				t.Errorf("client regions = %q, want [%q]", f.regions, tt.wantRegion)
			}
			in := api.in[0]
			if got := aws.ToString(in.SecretID); got != tt.ref.Name {
				t.Errorf("SecretId = %q, want %q", got, tt.ref.Name)
			}
			if got := aws.ToString(in.VersionID); got != tt.wantVersionID {
				t.Errorf("VersionId = %q, want %q", got, tt.wantVersionID)
			}
			if got := aws.ToString(in.VersionStage); got != tt.wantStage {
				t.Errorf("VersionStage = %q, want %q", got, tt.wantStage)
			}
		})
	}
}

func TestFetchValue(t *testing.T) {
	tests := []struct {
		name        string
		out         *GetSecretValueOutput
		key         string
		want        []byte
		wantVersion string
		wantErr     error
	}{
		{name: "string", out: stringOut("s3cr3t\n", "v1"), want: []byte("s3cr3t\n"), wantVersion: "v1"},
		{name: "empty string", out: stringOut("", "v1"), want: []byte{}, wantVersion: "v1"},
		{
			name:        "binary",
			out:         &GetSecretValueOutput{SecretBinary: []byte{0, 0xff, '\n'}, VersionID: aws.String("v2")},
			want:        []byte{0, 0xff, '\n'},
			wantVersion: "v2",
		},
		{name: "key of a string", out: stringOut(`{"user":"app","pass":"pw"}`, "v3"), key: "pass", want: []byte("pw"), wantVersion: "v3"},
		{name: "key of a number", out: stringOut(`{"port": 5432}`, "v3"), key: "port", want: []byte("5432"), wantVersion: "v3"},
		{
			name:        "key of a binary",
			out:         &GetSecretValueOutput{SecretBinary: []byte(`{"pass":"pw"}`), VersionID: aws.String("v4")},
			key:         "pass",
			want:        []byte("pw"),
			wantVersion: "v4",
		},
		{name: "missing key", out: stringOut(`{"user":"app"}`, "v3"), key: "pass", wantErr: secrets.ErrBadValue},
		{name: "key of a non-object", out: stringOut("plain", "v3"), key: "pass", wantErr: secrets.ErrBadValue},
		{name: "no value", out: &GetSecretValueOutput{VersionID: aws.String("v5")}, wantErr: secrets.ErrBadValue},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &factory{api: &fakeAPI{out: tt.out}}
			d := New(Config{DefaultRegion: "us-east-1", NewClient: f.newClient})
			got, err := d.Fetch(testContext(t), secrets.Ref{Backend: "aws", Name: "db", Key: tt.key})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Fetch() error = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Value, tt.want) || got.Version != tt.wantVersion {
				t.Errorf("Fetch() = %q version %q, want %q version %q", got.Value, got.Version, tt.want, tt.wantVersion)
			}
		})
	}
}

// opErr wraps an error the way the SDK returns it from an operation.
func opErr(err error) error {
	return &smithy.OperationError{ServiceID: "Secrets Manager", OperationName: "GetSecretValue", Err: err}
}

func TestFetchErrors(t *testing.T) {
	expired, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	canceled, cancel2 := context.WithCancel(context.Background())
	cancel2()

	tests := []struct {
		name     string
		ctx      context.Context // nil means a live one
		apiErr   error
		wantKind error
		wantHint string
	}{
		{name: "not found", apiErr: opErr(&types.ResourceNotFoundException{Message: aws.String("Secrets Manager can't find the specified secret.")}), wantKind: secrets.ErrNotFound, wantHint: `region ("us-east-1")`},
		{name: "scheduled for deletion", apiErr: opErr(&types.InvalidRequestException{Message: aws.String("marked for deletion")}), wantKind: secrets.ErrNotFound, wantHint: "scheduled for deletion"},
		{name: "invalid parameter", apiErr: opErr(&types.InvalidParameterException{}), wantKind: secrets.ErrNotFound, wantHint: "version-stage"},
		{name: "access denied", apiErr: opErr(&smithy.GenericAPIError{Code: "AccessDeniedException", Message: "not authorized"}), wantKind: secrets.ErrAccessDenied, wantHint: "secretsmanager:GetSecretValue"},
		{name: "unknown key id", apiErr: opErr(&smithy.GenericAPIError{Code: "UnrecognizedClientException"}), wantKind: secrets.ErrAccessDenied, wantHint: "access key id is unknown"},
		{name: "bad signature", apiErr: opErr(&smithy.GenericAPIError{Code: "InvalidSignatureException"}), wantKind: secrets.ErrAccessDenied, wantHint: "clock"},
		{name: "expired token", apiErr: opErr(&smithy.GenericAPIError{Code: "ExpiredTokenException"}), wantKind: secrets.ErrAccessDenied, wantHint: "expired"},
		{name: "kms", apiErr: opErr(&types.DecryptionFailure{Message: aws.String("kms")}), wantKind: secrets.ErrAccessDenied, wantHint: "kms:Decrypt"},
		{name: "server error", apiErr: opErr(&types.InternalServiceError{}), wantKind: secrets.ErrUnavailable, wantHint: "try again later"},
		{name: "throttled", apiErr: opErr(&smithy.GenericAPIError{Code: "ThrottlingException", Message: "Rate exceeded"}), wantKind: secrets.ErrThrottled, wantHint: "raise CACHE_TTL"},
		{
			name:     "no credentials",
			apiErr:   opErr(fmt.Errorf("get identity: %w", &awsauth.CredentialsError{What: "no provider of the SDK's credential chain gave credentials", Hint: awsauth.HintNoCredentials})),
			wantKind: secrets.ErrAccessDenied,
			wantHint: "credentials mount",
		},
		{
			name: "403 that is not AWS's (a proxy's page)",
			apiErr: opErr(&smithyhttp.ResponseError{
				Response: &smithyhttp.Response{Response: &http.Response{StatusCode: http.StatusForbidden}},
				Err:      errors.New("deserialization failed, failed to decode response body, invalid character '<'"),
			}),
			wantKind: secrets.ErrAccessDenied,
			wantHint: "check the credentials given to the plugin",
		},
		{
			name:     "connection refused",
			apiErr:   opErr(&smithyhttp.RequestSendError{Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}),
			wantKind: secrets.ErrUnavailable,
			wantHint: "AWS_ENDPOINT_URL",
		},
		{
			name:     "dns",
			apiErr:   opErr(&net.DNSError{Err: "no such host", Name: "secretsmanager.mars-east-1.amazonaws.com", IsNotFound: true}),
			wantKind: secrets.ErrUnavailable,
			wantHint: "DNS",
		},
		{
			name:     "deadline",
			ctx:      expired,
			apiErr:   opErr(&smithyhttp.RequestSendError{Err: context.DeadlineExceeded}),
			wantKind: secrets.ErrTimeout,
			wantHint: "TIMEOUT",
		},
		{name: "canceled", ctx: canceled, apiErr: opErr(context.Canceled), wantKind: secrets.ErrUnavailable},
		{name: "anything else", apiErr: errors.New("boom"), wantKind: secrets.ErrUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := tt.ctx
			if ctx == nil {
				ctx = testContext(t)
			}
			f := &factory{api: &fakeAPI{err: tt.apiErr}}
			d := New(Config{DefaultRegion: "us-east-1", NewClient: f.newClient})
			ref := secrets.Ref{Backend: "aws", Name: "prod/db"}
			_, err := d.Fetch(ctx, ref)
			var se *secrets.Error
			if !errors.As(err, &se) {
				t.Fatalf("Fetch() error = %#v, want a *secrets.Error", err)
			}
			if !errors.Is(err, tt.wantKind) {
				t.Errorf("Fetch() error = %v, want kind %v", err, tt.wantKind)
			}
			if !strings.Contains(se.Hint, tt.wantHint) {
				t.Errorf("hint = %q, want it to contain %q", se.Hint, tt.wantHint)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, `aws secret "prod/db": `) {
				t.Errorf("error %q does not name the secret", msg)
			}
		})
	}
}

func TestFetchClientErrors(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		wantKind error
		wantHint string
	}{
		{name: "no region", err: ErrNoRegion, wantKind: secrets.ErrUnavailable, wantHint: "set the AWS_REGION plugin setting or the region option"},
		{name: "bad profile", err: errors.New("failed to get shared config profile, nope"), wantKind: secrets.ErrAccessDenied, wantHint: "AWS_PROFILE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &factory{err: tt.err}
			d := New(Config{NewClient: f.newClient})
			_, err := d.Fetch(testContext(t), secrets.Ref{Backend: "aws", Name: "db"})
			var se *secrets.Error
			if !errors.As(err, &se) || !errors.Is(err, tt.wantKind) || !strings.Contains(se.Hint, tt.wantHint) {
				t.Fatalf("Fetch() error = %v, want kind %v with hint %q", err, tt.wantKind, tt.wantHint)
			}
			// A failed client is not cached: the next fetch tries again.
			_, _ = d.Fetch(testContext(t), secrets.Ref{Backend: "aws", Name: "db"})
			if len(f.regions) != 2 {
				t.Errorf("factory called %d times, want 2", len(f.regions))
			}
		})
	}
}

// TestNoSecretInErrorsOrLogs runs every failure that has the value at hand
// and checks that neither the error nor the debug log repeats it.
func TestNoSecretInErrorsOrLogs(t *testing.T) {
	tests := []struct {
		name string
		out  *GetSecretValueOutput
		key  string
	}{
		{name: "missing key", out: stringOut(`{"user":"`+sentinel+`"}`, "v1"), key: "pass"},
		{name: "not json", out: stringOut(sentinel, "v1"), key: "pass"},
		{name: "broken json", out: stringOut(`{"pass":"`+sentinel, "v1"), key: "pass"},
		{name: "array", out: stringOut(`["`+sentinel+`"]`, "v1"), key: "0"},
		{name: "binary", out: &GetSecretValueOutput{SecretBinary: []byte(sentinel), VersionID: aws.String("v1")}, key: "pass"},
		{name: "success", out: stringOut(sentinel, "v1")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			f := &factory{api: &fakeAPI{out: tt.out}}
			d := New(Config{DefaultRegion: "us-east-1", NewClient: f.newClient, Logger: zerolog.New(&logs).Level(zerolog.DebugLevel)})
			_, err := d.Fetch(testContext(t), secrets.Ref{Backend: "aws", Name: "db", Key: tt.key})
			if tt.key != "" && err == nil {
				t.Fatal("Fetch() succeeded, want an error")
			}
			if err != nil && strings.Contains(err.Error(), "SENTINEL") {
				t.Errorf("error holds the value: %v", err)
			}
			if logs.Len() == 0 {
				t.Error("no debug log written")
			}
			if strings.Contains(logs.String(), "SENTINEL") {
				t.Errorf("log holds the value: %s", logs.String())
			}
		})
	}
}

func TestFetchLogs(t *testing.T) {
	var logs bytes.Buffer
	f := &factory{api: &fakeAPI{out: stringOut(sentinel, "ver-9")}}
	d := New(Config{DefaultRegion: "us-east-1", NewClient: f.newClient, Logger: zerolog.New(&logs).Level(zerolog.DebugLevel)})
	if _, err := d.Fetch(testContext(t), secrets.Ref{Backend: "aws", Name: "prod/db"}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"component":"aws"`, `"secret":"prod/db"`, `"region":"us-east-1"`, `"version":"ver-9"`, `"level":"debug"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log %s lacks %s", logs.String(), want)
		}
	}
}

// TestClientPerRegion fetches from many goroutines (run with -race) and
// checks that each region's client is built once.
func TestClientPerRegion(t *testing.T) {
	f := &factory{api: &fakeAPI{out: stringOut("v", "1")}}
	d := New(Config{DefaultRegion: "us-east-1", NewClient: f.newClient})
	regions := []string{"", "eu-west-1", "ap-south-1"}
	var wg sync.WaitGroup
	for i := range 60 {
		wg.Go(func() {
			if _, err := d.Fetch(testContext(t), secrets.Ref{Name: "db", Region: regions[i%len(regions)]}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if len(f.regions) != len(regions) {
		t.Errorf("factory called for %q, want once per region", f.regions)
	}
}

// isolateAWS points the SDK's default configuration at nothing on this host.
func isolateAWS(t *testing.T) {
	dir := t.TempDir()
	for k, v := range map[string]string{
		"AWS_CONFIG_FILE":                        filepath.Join(dir, "config"),
		"AWS_SHARED_CREDENTIALS_FILE":            filepath.Join(dir, "credentials"),
		"AWS_EC2_METADATA_DISABLED":              "true",
		"AWS_REGION":                             "",
		"AWS_DEFAULT_REGION":                     "",
		"AWS_PROFILE":                            "",
		"AWS_ACCESS_KEY_ID":                      "",
		"AWS_SECRET_ACCESS_KEY":                  "",
		"AWS_SESSION_TOKEN":                      "",
		"AWS_WEB_IDENTITY_TOKEN_FILE":            "",
		"AWS_CONTAINER_CREDENTIALS_FULL_URI":     "",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "",
		// Nothing must be sent; if it were, it would be refused at once.
		"AWS_ENDPOINT_URL": "http://127.0.0.1:1",
	} {
		t.Setenv(k, v)
	}
}

// TestDefaultClientWithoutConfig runs the real SDK factory on a host with no
// AWS configuration: both failures happen before anything is sent.
func TestDefaultClientWithoutConfig(t *testing.T) {
	tests := []struct {
		name     string
		region   string
		wantKind error
		wantHint string
	}{
		{name: "no region", region: "", wantKind: secrets.ErrUnavailable, wantHint: "set the AWS_REGION plugin setting or the region option"},
		{name: "no credentials", region: "us-east-1", wantKind: secrets.ErrAccessDenied, wantHint: "credentials mount"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolateAWS(t)
			d := New(Config{DefaultRegion: tt.region})
			_, err := d.Fetch(testContext(t), secrets.Ref{Backend: "aws", Name: "db"})
			var se *secrets.Error
			if !errors.As(err, &se) || !errors.Is(err, tt.wantKind) || !strings.Contains(se.Hint, tt.wantHint) {
				t.Fatalf("Fetch() error = %v, want kind %v with hint %q", err, tt.wantKind, tt.wantHint)
			}
			t.Logf("error: %v", err)
		})
	}
}

// TestDefaultClientTimeout points the real SDK client at a server that
// accepts connections and never answers: the fetch must end with the
// context, as a timeout.
func TestDefaultClientTimeout(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	t.Cleanup(func() {
		_ = l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	isolateAWS(t)
	t.Setenv("AWS_ENDPOINT_URL", "http://"+l.Addr().String())
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test")

	d := New(Config{DefaultRegion: "us-east-1"})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = d.Fetch(ctx, secrets.Ref{Backend: "aws", Name: "db"})
	if !errors.Is(err, secrets.ErrTimeout) {
		t.Fatalf("Fetch() error = %v, want ErrTimeout", err)
	}
	t.Logf("failed after %v: %v", time.Since(start).Round(time.Millisecond), err)
}

// TestCredentialProcessOutputNotQuoted runs the real SDK factory with a
// profile whose credential_process prints a fake key and fails: the key
// must reach neither the error (which `docker volume inspect` and the log
// show) nor the debug log. The SDK's own error quotes the output of a
// process that exits 0 with output it cannot parse.
func TestCredentialProcessOutputNotQuoted(t *testing.T) {
	const key = "AKIAFAKEKEY7EXAMPLE0"
	const secretKey = "fakeSecretKey/K7MDENG/bPxRfiCYEXAMPLEKEY"
	tests := []struct {
		name     string
		exit     int
		output   string
		wantWhat string
	}{
		{name: "exit 1", exit: 1, output: `{"Version": 1, "AccessKeyId": "` + key + `", "SecretAccessKey": "` + secretKey + `"}`, wantWhat: "exited with status 1"},
		{name: "exit 0, not json", exit: 0, output: "aws_access_key_id=" + key + "\naws_secret_access_key=" + secretKey, wantWhat: "printed no usable credentials"},
		{name: "exit 0, cut json", exit: 0, output: `{"Version": 1, "AccessKeyId": "` + key + `", "SecretAccessKey": "` + secretKey + `"`, wantWhat: "printed no usable credentials"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolateAWS(t)
			dir := t.TempDir()
			out := filepath.Join(dir, "out")
			if err := os.WriteFile(out, []byte(tt.output), 0o600); err != nil {
				t.Fatal(err)
			}
			script := filepath.Join(dir, "creds.sh")
			body := fmt.Sprintf("#!/bin/sh\ncat %s\nexit %d\n", out, tt.exit)
			if err := os.WriteFile(script, []byte(body), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(os.Getenv("AWS_CONFIG_FILE"), []byte("[default]\ncredential_process = "+script+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			d := New(Config{DefaultRegion: "us-east-1", Logger: zerolog.New(&logs).Level(zerolog.DebugLevel)})
			_, err := d.Fetch(testContext(t), secrets.Ref{Backend: "aws", Name: "db"})
			if !errors.Is(err, secrets.ErrAccessDenied) {
				t.Fatalf("Fetch() error = %v, want access denied", err)
			}
			for _, leak := range []string{key, secretKey, "EXAMPLE"} {
				if strings.Contains(err.Error(), leak) {
					t.Errorf("error quotes the process's output (%q): %v", leak, err)
				}
				if strings.Contains(logs.String(), leak) {
					t.Errorf("log quotes the process's output (%q): %s", leak, logs.String())
				}
			}
			if !strings.Contains(err.Error(), tt.wantWhat) || !strings.Contains(err.Error(), "credential_process") {
				t.Errorf("error %q does not say that the credential_process %s", err, tt.wantWhat)
			}
			t.Logf("error: %v", err)
		})
	}
}
