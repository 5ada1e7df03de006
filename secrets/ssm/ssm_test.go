package ssm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/rs/zerolog"

	"github.com/dsv-plugin/dsv/secrets"
	"github.com/dsv-plugin/dsv/secrets/awsauth"
)

// sentinel is the secret value of every fake: no error or log may hold it.
const sentinel = "hunter2-SENTINEL-value"

// fakeAPI answers GetParameter with param or err, and GetParametersByPath
// with pages of byPath (pageSize each) or err; it records its inputs.
type fakeAPI struct {
	param  *Parameter
	byPath []Parameter
	err    error

	mu     sync.Mutex
	gets   []*GetParameterInput
	lists  []*GetParametersByPathInput
	tokens []string
}

func (f *fakeAPI) GetParameter(_ context.Context, in *GetParameterInput) (*GetParameterOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gets = append(f.gets, in)
	if f.err != nil {
		return nil, f.err
	}
	return &GetParameterOutput{Parameter: f.param}, nil
}

func (f *fakeAPI) GetParametersByPath(_ context.Context, in *GetParametersByPathInput) (*GetParametersByPathOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lists = append(f.lists, in)
	f.tokens = append(f.tokens, aws.ToString(in.NextToken))
	if f.err != nil {
		return nil, f.err
	}
	start := 0
	if in.NextToken != nil {
		start, _ = strconv.Atoi(*in.NextToken)
	}
	n := int(aws.ToInt32(in.MaxResults))
	end := min(start+n, len(f.byPath))
	out := &GetParametersByPathOutput{Parameters: f.byPath[start:end]}
	if end < len(f.byPath) {
		out.NextToken = aws.String(strconv.Itoa(end))
	}
	return out, nil
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

func param(name, value string, version int64) Parameter {
	return Parameter{Name: aws.String(name), Value: aws.String(value), Version: version, Type: "SecureString"}
}

func paramPtr(name, value string, version int64) *Parameter {
	p := param(name, value, version)
	return &p
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// parse runs what ParseRef runs: Normalize, then Validate.
func parse(t *testing.T, d *Driver, ref secrets.Ref) secrets.Ref {
	t.Helper()
	ref.Backend = Name
	ref = d.Normalize(ref)
	if err := d.Validate(ref); err != nil {
		t.Fatalf("Validate(%+v) = %v", ref, err)
	}
	return ref
}

func TestName(t *testing.T) {
	if got := New(Config{}).Name(); got != "ssm" {
		t.Fatalf("Name() = %q, want ssm", got)
	}
}

func TestFetchRequest(t *testing.T) {
	const arn = "arn:aws:ssm:eu-west-1:123456789012:parameter/prod/db"
	tests := []struct {
		name          string
		defaultRegion string
		ref           secrets.Ref
		wantRegion    string
		wantName      string
	}{
		{name: "default region", defaultRegion: "us-east-1", ref: secrets.Ref{Name: "/prod/db"}, wantRegion: "us-east-1", wantName: "/prod/db"},
		{name: "region option wins", defaultRegion: "us-east-1", ref: secrets.Ref{Name: "/prod/db", Region: "eu-west-3"}, wantRegion: "eu-west-3", wantName: "/prod/db"},
		{name: "arn region over the default", defaultRegion: "us-east-1", ref: secrets.Ref{Name: arn}, wantRegion: "eu-west-1", wantName: arn},
		{name: "no region leaves it to the sdk", ref: secrets.Ref{Name: "db"}, wantName: "db"},
		{name: "version selector", ref: secrets.Ref{Name: "/prod/db:3"}, wantName: "/prod/db:3"},
		{name: "label selector", ref: secrets.Ref{Name: "/prod/db:blue"}, wantName: "/prod/db:blue"},
		{name: "version-id option", ref: secrets.Ref{Name: "/prod/db", VersionID: "12"}, wantName: "/prod/db:12"},
		{name: "version-stage option", ref: secrets.Ref{Name: "/prod/db", VersionStage: "green"}, wantName: "/prod/db:green"},
		{name: "arn with a selector", ref: secrets.Ref{Name: arn + ":4"}, wantRegion: "eu-west-1", wantName: arn + ":4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			api := &fakeAPI{param: paramPtr("/prod/db", "v", 1)}
			f := &factory{api: api}
			d := New(Config{DefaultRegion: tt.defaultRegion, NewClient: f.newClient})
			if _, err := d.Fetch(testContext(t), parse(t, d, tt.ref)); err != nil {
				t.Fatal(err)
			}
			if len(f.regions) != 1 || f.regions[0] != tt.wantRegion {
				t.Errorf("client regions = %q, want [%q]", f.regions, tt.wantRegion)
			}
			in := api.gets[0]
			if got := aws.ToString(in.Name); got != tt.wantName {
				t.Errorf("Name = %q, want %q", got, tt.wantName)
			}
			if !aws.ToBool(in.WithDecryption) {
				t.Error("WithDecryption not set: a SecureString would be read encrypted")
			}
		})
	}
}

func TestFetchValue(t *testing.T) {
	tests := []struct {
		name        string
		param       *Parameter
		key         string
		want        string
		wantVersion string
		wantErr     error
	}{
		{name: "secure string", param: paramPtr("/db", "s3cr3t\n", 3), want: "s3cr3t\n", wantVersion: "3"},
		{name: "string list", param: &Parameter{Name: aws.String("/l"), Value: aws.String("a,b,c"), Version: 1, Type: "StringList"}, want: "a,b,c", wantVersion: "1"},
		{name: "empty", param: paramPtr("/db", "", 1), want: "", wantVersion: "1"},
		{name: "key", param: paramPtr("/db", `{"user":"app","pass":"pw"}`, 2), key: "pass", want: "pw", wantVersion: "2"},
		{name: "missing key", param: paramPtr("/db", `{"user":"app"}`, 2), key: "pass", wantErr: secrets.ErrBadValue},
		{name: "no value", param: &Parameter{Name: aws.String("/db")}, wantErr: secrets.ErrBadValue},
		{name: "no parameter", wantErr: secrets.ErrBadValue},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &factory{api: &fakeAPI{param: tt.param}}
			d := New(Config{DefaultRegion: "us-east-1", NewClient: f.newClient})
			got, err := d.Fetch(testContext(t), secrets.Ref{Backend: Name, Name: "/db", Key: tt.key})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Fetch() error = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got.Value) != tt.want || got.Version != tt.wantVersion {
				t.Errorf("Fetch() = %q version %q, want %q version %q", got.Value, got.Version, tt.want, tt.wantVersion)
			}
		})
	}
}

func TestFetchPath(t *testing.T) {
	var many []Parameter
	for i := range 23 {
		many = append(many, param(fmt.Sprintf("/app/p%02d", i), fmt.Sprintf("v%d", i), int64(i+1)))
	}
	tests := []struct {
		name          string
		ref           secrets.Ref
		byPath        []Parameter
		wantPath      string
		wantRecursive bool
		want          string // JSON, or the key's value
		wantVersion   string
		wantCalls     int
		wantErr       error
		wantHint      string
	}{
		{
			name:     "one level",
			ref:      secrets.Ref{Name: "/app/"},
			byPath:   []Parameter{param("/app/db", "pw", 3), param("/app/user", "u", 1)},
			wantPath: "/app", want: `{"db":"pw","user":"u"}`, wantVersion: "db@3 user@1", wantCalls: 1,
		},
		{
			name:     "recursive",
			ref:      secrets.Ref{Name: "/app/", Params: map[string]string{OptRecursive: "true"}},
			byPath:   []Parameter{param("/app/db/pass", "pw", 1), param("/app/top", "t", 2)},
			wantPath: "/app", wantRecursive: true, want: `{"db/pass":"pw","top":"t"}`, wantVersion: "db/pass@1 top@2", wantCalls: 1,
		},
		{
			name:     "recursive=false",
			ref:      secrets.Ref{Name: "/app/", Params: map[string]string{OptRecursive: "false"}},
			byPath:   []Parameter{param("/app/db", "pw", 1)},
			wantPath: "/app", want: `{"db":"pw"}`, wantVersion: "db@1", wantCalls: 1,
		},
		{
			name:     "root",
			ref:      secrets.Ref{Name: "/"},
			byPath:   []Parameter{param("/db", "pw", 1)},
			wantPath: "/", want: `{"db":"pw"}`, wantVersion: "db@1", wantCalls: 1,
		},
		{
			name:     "paginated",
			ref:      secrets.Ref{Name: "/app/"},
			byPath:   many,
			wantPath: "/app", wantCalls: 3,
		},
		{
			name:     "key picks one parameter",
			ref:      secrets.Ref{Name: "/app/", Key: "db"},
			byPath:   []Parameter{param("/app/db", "pw", 3), param("/app/user", "u", 1)},
			wantPath: "/app", want: "pw", wantVersion: "db@3 user@1", wantCalls: 1,
		},
		{
			name:     "a name not under the path is skipped",
			ref:      secrets.Ref{Name: "/app/"},
			byPath:   []Parameter{param("/app/db", "pw", 3), param("/other/x", "x", 1)},
			wantPath: "/app", want: `{"db":"pw"}`, wantVersion: "db@3", wantCalls: 1,
		},
		{
			name:     "empty",
			ref:      secrets.Ref{Name: "/app/"},
			wantPath: "/app", wantCalls: 1, wantErr: secrets.ErrNotFound, wantHint: "recursive=true",
		},
		{
			name:     "too large",
			ref:      secrets.Ref{Name: "/app/"},
			byPath:   []Parameter{param("/app/a", strings.Repeat("x", 600<<10), 1), param("/app/b", strings.Repeat("x", 600<<10), 1)},
			wantPath: "/app", wantCalls: 1, wantErr: secrets.ErrBadValue, wantHint: "narrower path",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			api := &fakeAPI{byPath: tt.byPath}
			f := &factory{api: api}
			d := New(Config{DefaultRegion: "us-east-1", NewClient: f.newClient})
			got, err := d.Fetch(testContext(t), parse(t, d, tt.ref))
			if len(api.lists) != tt.wantCalls || len(api.gets) != 0 {
				t.Errorf("GetParametersByPath called %d times (tokens %q), GetParameter %d; want %d and 0", len(api.lists), api.tokens, len(api.gets), tt.wantCalls)
			}
			for _, in := range api.lists {
				if aws.ToString(in.Path) != tt.wantPath || aws.ToBool(in.Recursive) != tt.wantRecursive || !aws.ToBool(in.WithDecryption) {
					t.Errorf("input: path %q recursive %v decryption %v, want %q %v true", aws.ToString(in.Path), aws.ToBool(in.Recursive), aws.ToBool(in.WithDecryption), tt.wantPath, tt.wantRecursive)
				}
			}
			if tt.wantErr != nil {
				var se *secrets.Error
				if !errors.As(err, &se) || !errors.Is(err, tt.wantErr) || !strings.Contains(se.Hint, tt.wantHint) {
					t.Fatalf("Fetch() error = %v, want %v with hint %q", err, tt.wantErr, tt.wantHint)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.name == "paginated" {
				if n := strings.Count(string(got.Value), `"p`); n != len(many) {
					t.Errorf("got %d parameters, want %d: %s", n, len(many), got.Value)
				}
				return
			}
			if string(got.Value) != tt.want || got.Version != tt.wantVersion {
				t.Errorf("Fetch() = %s version %q, want %s version %q", got.Value, got.Version, tt.want, tt.wantVersion)
			}
		})
	}
}

// opErr wraps an error the way the SDK returns it from an operation.
func opErr(err error) error {
	return &smithy.OperationError{ServiceID: "SSM", OperationName: "GetParameter", Err: err}
}

func TestFetchErrors(t *testing.T) {
	expired, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()

	tests := []struct {
		name     string
		path     bool
		ctx      context.Context // nil means a live one
		apiErr   error
		wantKind error
		wantHint string
	}{
		{name: "not found", apiErr: opErr(&smithy.GenericAPIError{Code: "ParameterNotFound"}), wantKind: secrets.ErrNotFound, wantHint: `region ("us-east-1")`},
		{name: "no such version", apiErr: opErr(&smithy.GenericAPIError{Code: "ParameterVersionNotFound"}), wantKind: secrets.ErrNotFound, wantHint: "version-id"},
		{name: "denied", apiErr: opErr(&smithy.GenericAPIError{Code: "AccessDeniedException", Message: "User: arn:aws:iam::1:user/x is not authorized to perform: ssm:GetParameter"}), wantKind: secrets.ErrAccessDenied, wantHint: "allow ssm:GetParameter on the parameter"},
		{name: "denied on a path", path: true, apiErr: opErr(&smithy.GenericAPIError{Code: "AccessDeniedException", Message: "not authorized to perform: ssm:GetParametersByPath"}), wantKind: secrets.ErrAccessDenied, wantHint: "allow ssm:GetParametersByPath on the path"},
		{name: "kms denied", apiErr: opErr(&smithy.GenericAPIError{Code: "AccessDeniedException", Message: "not authorized to perform: kms:Decrypt"}), wantKind: secrets.ErrAccessDenied, wantHint: "allow kms:Decrypt"},
		{name: "kms key", apiErr: opErr(&smithy.GenericAPIError{Code: "InvalidKeyId"}), wantKind: secrets.ErrAccessDenied, wantHint: "kms:Decrypt"},
		{name: "unknown key id", apiErr: opErr(&smithy.GenericAPIError{Code: "UnrecognizedClientException"}), wantKind: secrets.ErrAccessDenied, wantHint: "access key id is unknown"},
		{name: "throttled", apiErr: opErr(&smithy.GenericAPIError{Code: "ThrottlingException"}), wantKind: secrets.ErrThrottled, wantHint: "raise CACHE_TTL"},
		{name: "server", apiErr: opErr(&smithy.GenericAPIError{Code: "InternalServerError"}), wantKind: secrets.ErrUnavailable, wantHint: "try again later"},
		{name: "credentials", apiErr: opErr(fmt.Errorf("get identity: %w", &awsauth.CredentialsError{What: "none", Hint: awsauth.HintNoCredentials})), wantKind: secrets.ErrAccessDenied, wantHint: "credentials mount"},
		{name: "connection refused", apiErr: opErr(&smithyhttp.RequestSendError{Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}), wantKind: secrets.ErrUnavailable, wantHint: "could not reach SSM Parameter Store"},
		{name: "deadline", ctx: expired, apiErr: opErr(&smithyhttp.RequestSendError{Err: context.DeadlineExceeded}), wantKind: secrets.ErrTimeout, wantHint: "TIMEOUT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := tt.ctx
			if ctx == nil {
				ctx = testContext(t)
			}
			f := &factory{api: &fakeAPI{err: tt.apiErr}}
			d := New(Config{DefaultRegion: "us-east-1", NewClient: f.newClient})
			ref := secrets.Ref{Backend: Name, Name: "/prod/db"}
			if tt.path {
				ref.Name = "/prod/"
			}
			_, err := d.Fetch(ctx, ref)
			var se *secrets.Error
			if !errors.As(err, &se) || !errors.Is(err, tt.wantKind) {
				t.Fatalf("Fetch() error = %v, want a *secrets.Error of kind %v", err, tt.wantKind)
			}
			if !strings.Contains(se.Hint, tt.wantHint) {
				t.Errorf("hint = %q, want it to contain %q", se.Hint, tt.wantHint)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, fmt.Sprintf("ssm secret %q: ", ref.Name)) {
				t.Errorf("error %q does not name the parameter", msg)
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
		{name: "no region", err: awsauth.ErrNoRegion, wantKind: secrets.ErrUnavailable, wantHint: "AWS_REGION"},
		{name: "bad profile", err: errors.New("failed to get shared config profile, " + sentinel), wantKind: secrets.ErrAccessDenied, wantHint: "AWS_PROFILE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &factory{err: tt.err}
			d := New(Config{NewClient: f.newClient})
			_, err := d.Fetch(testContext(t), secrets.Ref{Backend: Name, Name: "/db"})
			var se *secrets.Error
			if !errors.As(err, &se) || !errors.Is(err, tt.wantKind) || !strings.Contains(se.Hint, tt.wantHint) {
				t.Fatalf("Fetch() error = %v, want kind %v with hint %q", err, tt.wantKind, tt.wantHint)
			}
			if strings.Contains(err.Error(), "SENTINEL") {
				t.Errorf("error quotes the configuration's error: %v", err)
			}
			// A failed client is not cached: the next fetch tries again.
			_, _ = d.Fetch(testContext(t), secrets.Ref{Backend: Name, Name: "/db"})
			if len(f.regions) != 2 {
				t.Errorf("factory called %d times, want 2", len(f.regions))
			}
		})
	}
}

// TestNoSecretInErrorsOrLogs runs every failure that has a value at hand
// and checks that neither the error nor the debug log repeats it.
func TestNoSecretInErrorsOrLogs(t *testing.T) {
	tests := []struct {
		name   string
		param  *Parameter
		byPath []Parameter
		ref    secrets.Ref
	}{
		{name: "missing key", param: paramPtr("/db", `{"user":"`+sentinel+`"}`, 1), ref: secrets.Ref{Name: "/db", Key: "pass"}},
		{name: "not json", param: paramPtr("/db", sentinel, 1), ref: secrets.Ref{Name: "/db", Key: "pass"}},
		{name: "broken json", param: paramPtr("/db", `{"pass":"`+sentinel, 1), ref: secrets.Ref{Name: "/db", Key: "pass"}},
		{name: "path, missing key", byPath: []Parameter{param("/app/db", sentinel, 1)}, ref: secrets.Ref{Name: "/app/", Key: "nope"}},
		{name: "path, too large", byPath: []Parameter{param("/app/db", sentinel+strings.Repeat("x", maxPathBytes), 1)}, ref: secrets.Ref{Name: "/app/"}},
		{name: "success", param: paramPtr("/db", sentinel, 1), ref: secrets.Ref{Name: "/db"}},
		{name: "path success", byPath: []Parameter{param("/app/db", sentinel, 1)}, ref: secrets.Ref{Name: "/app/"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			f := &factory{api: &fakeAPI{param: tt.param, byPath: tt.byPath}}
			d := New(Config{DefaultRegion: "us-east-1", NewClient: f.newClient, Logger: zerolog.New(&logs).Level(zerolog.DebugLevel)})
			tt.ref.Backend = Name
			_, err := d.Fetch(testContext(t), tt.ref)
			if !strings.Contains(tt.name, "success") && err == nil {
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

func TestCanonical(t *testing.T) {
	d := New(Config{})
	tests := []struct {
		ref  secrets.Ref
		want string
	}{
		{ref: secrets.Ref{Name: "/prod/db"}, want: "/prod/db"},
		{ref: secrets.Ref{Name: "/prod/app/"}, want: "/prod/app/*"},
		{ref: secrets.Ref{Name: "/prod/app/", Params: map[string]string{OptRecursive: "false"}}, want: "/prod/app/*"},
		{ref: secrets.Ref{Name: "/prod/app/", Params: map[string]string{OptRecursive: "true"}}, want: "/prod/app/*/*"},
		{ref: secrets.Ref{Name: "/"}, want: "/*"},
	}
	for _, tt := range tests {
		got, err := d.Canonical(context.Background(), tt.ref)
		if err != nil || got != tt.want {
			t.Errorf("Canonical(%+v) = %q, %v; want %q", tt.ref, got, err, tt.want)
		}
	}
}

// TestClientPerRegion fetches from many goroutines (run with -race) and
// checks that each region's client is built once.
func TestClientPerRegion(t *testing.T) {
	f := &factory{api: &fakeAPI{param: paramPtr("/db", "v", 1)}}
	d := New(Config{DefaultRegion: "us-east-1", NewClient: f.newClient})
	regions := []string{"", "eu-west-1", "ap-south-1"}
	var wg sync.WaitGroup
	for i := range 60 {
		wg.Go(func() {
			if _, err := d.Fetch(testContext(t), secrets.Ref{Name: "/db", Region: regions[i%len(regions)]}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if len(f.regions) != len(regions) {
		t.Errorf("factory called for %q, want once per region", f.regions)
	}
}
