package moto_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"

	"github.com/dsv-plugin/dsv/test/servers/moto"
)

func getValue(t *testing.T, s *moto.Server, in *secretsmanager.GetSecretValueInput) (*secretsmanager.GetSecretValueOutput, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return s.Client().GetSecretValue(ctx, in)
}

func TestServer(t *testing.T) {
	s := moto.Start(t)

	first := s.CreateSecret(t, "app/db", "one")
	if first.VersionID == "" || first.ARN == "" || first.Name != "app/db" {
		t.Fatalf("CreateSecret = %+v, want a name, an ARN and a version id", first)
	}
	second := s.PutSecretValue(t, "app/db", "two")
	bin := s.CreateBinarySecret(t, "blob", []byte{0, 1, 0xff})

	tests := []struct {
		name  string
		in    *secretsmanager.GetSecretValueInput
		want  string
		wantV string
	}{
		{name: "current", in: &secretsmanager.GetSecretValueInput{SecretId: aws.String("app/db")}, want: "two", wantV: second.VersionID},
		{name: "previous", in: &secretsmanager.GetSecretValueInput{SecretId: aws.String(first.ARN), VersionStage: aws.String("AWSPREVIOUS")}, want: "one", wantV: first.VersionID},
		{name: "binary", in: &secretsmanager.GetSecretValueInput{SecretId: aws.String("blob")}, want: "\x00\x01\xff", wantV: bin.VersionID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := getValue(t, s, tt.in)
			if err != nil {
				t.Fatal(err)
			}
			got := aws.ToString(out.SecretString)
			if out.SecretBinary != nil {
				got = string(out.SecretBinary)
			}
			if got != tt.want || aws.ToString(out.VersionId) != tt.wantV {
				t.Errorf("got %q version %q, want %q version %q", got, aws.ToString(out.VersionId), tt.want, tt.wantV)
			}
		})
	}

	t.Run("reset", func(t *testing.T) {
		s.Reset(t)
		_, err := getValue(t, s, &secretsmanager.GetSecretValueInput{SecretId: aws.String("app/db")})
		var nf *types.ResourceNotFoundException
		if !errors.As(err, &nf) {
			t.Fatalf("after Reset: err = %v, want ResourceNotFoundException", err)
		}
	})

	t.Run("stop", func(t *testing.T) {
		s.Stop(t)
		s.Stop(t) // a second Stop does nothing
		resp, err := http.Get(s.URL)
		if err == nil {
			_ = resp.Body.Close()
			t.Fatalf("server still answers after Stop: %s", resp.Status)
		}
	})
}

func TestStartProcessFails(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// /bin/false exits at once: StartProcess must report it, not wait.
	if p, err := moto.StartProcess(ctx, "/bin/false", 0); err == nil {
		_ = p.Stop()
		t.Fatal("StartProcess(/bin/false) succeeded")
	}
	if _, err := moto.StartProcess(ctx, "/nonexistent/moto_server", 0); err == nil {
		t.Fatal("StartProcess(/nonexistent) succeeded")
	}
}

func TestBinaryFromEnv(t *testing.T) {
	t.Setenv(moto.EnvServer, "/nonexistent/moto_server")
	if _, err := moto.Binary(); err == nil {
		t.Fatalf("Binary() with %s pointing nowhere succeeded", moto.EnvServer)
	}
	t.Setenv(moto.EnvServer, "/bin/true")
	if got, err := moto.Binary(); err != nil || got != "/bin/true" {
		t.Fatalf("Binary() = %q, %v; want /bin/true", got, err)
	}
}

// recorder is a testing.TB that records Skipf and Fatalf and stops the
// goroutine, as the real ones do.
type recorder struct {
	testing.TB
	skipped, failed bool
	msg             string
}

func (r *recorder) Helper() {}

func (r *recorder) Skipf(format string, args ...any) {
	r.skipped, r.msg = true, fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.failed, r.msg = true, fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestStartWithoutMoto(t *testing.T) {
	tests := []struct {
		name       string
		require    string
		wantSkip   bool
		wantFailed bool
	}{
		{name: "skips by default", require: "", wantSkip: true},
		{name: "fails when required", require: "1", wantFailed: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(moto.EnvServer, "/nonexistent/moto_server")
			t.Setenv(moto.EnvRequire, tt.require)
			r := &recorder{TB: t}
			done := make(chan struct{})
			go func() {
				defer close(done)
				moto.Start(r)
			}()
			<-done
			if r.skipped != tt.wantSkip || r.failed != tt.wantFailed {
				t.Errorf("skipped=%v failed=%v (%q), want skipped=%v failed=%v", r.skipped, r.failed, r.msg, tt.wantSkip, tt.wantFailed)
			}
		})
	}
}
