package moto

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
)

// Fake credentials and the region the server's helpers use. moto accepts
// any credentials.
const (
	AccessKeyID     = "test"
	SecretAccessKey = "test"
	Region          = "us-east-1"
)

// Server is a moto server owned by one test.
type Server struct {
	// URL is the server's base URL, http://127.0.0.1:PORT.
	URL string

	proc   *Process
	client *secretsmanager.Client
	// creds sign the helpers' requests (the IAM key of StartAuth).
	creds aws.CredentialsProvider
}

// Start runs a moto server for t and kills it when t ends. It skips t when
// moto_server is not installed, or fails it when DSV_REQUIRE_MOTO=1.
func Start(t testing.TB) *Server {
	t.Helper()
	return start(t, nil)
}

func start(t testing.TB, env []string) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		if os.Getenv(EnvRequire) == "1" {
			t.Fatalf("%s=1: %v", EnvRequire, err)
		}
		t.Skipf("skipping: %v (set %s=1 to fail instead)", err, EnvRequire)
	}
	p, err := startProcess(context.Background(), bin, 0, env)
	if err != nil {
		t.Fatal(err)
	}
	p.Cleanup(t)
	return &Server{
		URL:  p.URL,
		proc: p,
		client: secretsmanager.New(secretsmanager.Options{
			Region:       Region,
			BaseEndpoint: aws.String(p.URL),
			Credentials:  Credentials(),
		}),
		creds: Credentials(),
	}
}

// Credentials returns the fake static credentials.
func Credentials() aws.CredentialsProvider {
	return aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
		return aws.Credentials{AccessKeyID: AccessKeyID, SecretAccessKey: SecretAccessKey, Source: "moto"}, nil
	})
}

// Client returns a Secrets Manager client for the server in Region.
func (s *Server) Client() *secretsmanager.Client { return s.client }

// Env returns the environment that points the AWS SDK's default
// configuration at the server, isolated from the host's AWS files and
// instance role, e.g. for `docker plugin set`.
func (s *Server) Env() map[string]string {
	return map[string]string{
		"AWS_ENDPOINT_URL":          s.URL,
		"AWS_ACCESS_KEY_ID":         AccessKeyID,
		"AWS_SECRET_ACCESS_KEY":     SecretAccessKey,
		"AWS_SESSION_TOKEN":         "",
		"AWS_REGION":                Region,
		"AWS_DEFAULT_REGION":        "",
		"AWS_PROFILE":               "",
		"AWS_EC2_METADATA_DISABLED": "true",
	}
}

// SetEnv applies Env to the test process for the duration of t, with
// AWS_CONFIG_FILE and AWS_SHARED_CREDENTIALS_FILE pointing at files that do
// not exist. Like t.Setenv, it cannot be used in parallel tests.
func (s *Server) SetEnv(t testing.TB) {
	t.Helper()
	for k, v := range s.Env() {
		t.Setenv(k, v)
	}
	dir := t.TempDir()
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
}

// Reset drops every secret on the server.
func (s *Server) Reset(t testing.TB) {
	t.Helper()
	if err := s.proc.Reset(s.ctx(t)); err != nil {
		t.Fatal(err)
	}
}

// Stop kills the server now, e.g. to test an unreachable endpoint.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	if err := s.proc.Stop(); err != nil {
		t.Fatal(err)
	}
}

// Output returns the tail of the server's log.
func (s *Server) Output() string { return s.proc.Output() }

// Version is a secret version the server created.
type Version struct {
	ARN       string
	Name      string
	VersionID string
}

// CreateSecret creates a string secret and returns its first version.
func (s *Server) CreateSecret(t testing.TB, name, value string) Version {
	t.Helper()
	out, err := s.client.CreateSecret(s.ctx(t), &secretsmanager.CreateSecretInput{
		Name:         aws.String(name),
		SecretString: aws.String(value),
	})
	if err != nil {
		t.Fatalf("create secret %q: %v", name, err)
	}
	return Version{ARN: aws.ToString(out.ARN), Name: aws.ToString(out.Name), VersionID: aws.ToString(out.VersionId)}
}

// CreateBinarySecret creates a binary secret and returns its first version.
func (s *Server) CreateBinarySecret(t testing.TB, name string, value []byte) Version {
	t.Helper()
	out, err := s.client.CreateSecret(s.ctx(t), &secretsmanager.CreateSecretInput{
		Name:         aws.String(name),
		SecretBinary: value,
	})
	if err != nil {
		t.Fatalf("create secret %q: %v", name, err)
	}
	return Version{ARN: aws.ToString(out.ARN), Name: aws.ToString(out.Name), VersionID: aws.ToString(out.VersionId)}
}

// PutSecretValue adds a string version to a secret. With no stages AWS
// moves AWSCURRENT to it and AWSPREVIOUS to the version it replaces.
func (s *Server) PutSecretValue(t testing.TB, id, value string, stages ...string) Version {
	t.Helper()
	in := &secretsmanager.PutSecretValueInput{
		SecretId:     aws.String(id),
		SecretString: aws.String(value),
	}
	if len(stages) > 0 {
		in.VersionStages = stages
	}
	out, err := s.client.PutSecretValue(s.ctx(t), in)
	if err != nil {
		t.Fatalf("put secret value %q: %v", id, err)
	}
	return Version{ARN: aws.ToString(out.ARN), Name: aws.ToString(out.Name), VersionID: aws.ToString(out.VersionId)}
}

func (s *Server) ctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}
