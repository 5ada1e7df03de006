package storeproxy

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/smithy-go"

	"github.com/dsv-plugin/dsv/test/servers/moto"
)

// TestAWSThrottle: in front of a real moto, reads are counted by action,
// and above the rate the SDK gets a ThrottlingException it classifies as
// such; writes are counted apart and never throttled.
func TestAWSThrottle(t *testing.T) {
	m := moto.Start(t)
	p, err := Start(AWS, "127.0.0.1:0", m.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	sm := secretsmanager.New(secretsmanager.Options{
		Region: moto.Region, BaseEndpoint: aws.String(p.URL), Credentials: moto.Credentials(),
		RetryMaxAttempts: 1,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("s"), SecretString: aws.String("v")}); err != nil {
		t.Fatal(err)
	}
	mark := p.Mark()
	// One read a minute, none banked: the first read passes, the second is
	// throttled.
	p.Throttle(1.0/60, 1)
	if _, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("s")}); err != nil {
		t.Fatalf("first read: %v", err)
	}
	_, err = sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("s")})
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode() != "ThrottlingException" {
		t.Fatalf("second read: got %v, want a ThrottlingException", err)
	}
	// A write passes the throttle.
	if _, err := sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String("s"), SecretString: aws.String("w")}); err != nil {
		t.Fatalf("write under throttle: %v", err)
	}
	p.Throttle(0, 0)
	if _, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("s")}); err != nil {
		t.Fatalf("read after the throttle is off: %v", err)
	}
	got := Count(p.Since(mark))
	want := Counts{Requests: 3, Answered: 2, Throttled: 1, Other: 1}
	if got != want {
		t.Errorf("counts %+v, want %+v", got, want)
	}
}

// TestVaultThrottle: a GET of a secrets engine path is a read, answered
// 429 above the rate; sys/ and auth/ calls are counted apart, never
// throttled.
func TestVaultThrottle(t *testing.T) {
	store := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"data":{}}`))
	}))
	t.Cleanup(store.Close)
	p, err := Start(Vault, "127.0.0.1:0", store.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	p.Throttle(1.0/60, 1)
	get := func(path string) int {
		t.Helper()
		resp, err := http.Get(p.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		path string
		want int
	}{
		{path: "/v1/secret/data/a", want: http.StatusOK},
		{path: "/v1/secret/data/a", want: http.StatusTooManyRequests},
		{path: "/v1/auth/token/lookup-self", want: http.StatusOK},
		{path: "/v1/sys/health", want: http.StatusOK},
	} {
		if got := get(tc.path); got != tc.want {
			t.Errorf("GET %s: %d, want %d", tc.path, got, tc.want)
		}
	}
	if got, want := Count(p.Since(0)), (Counts{Requests: 2, Answered: 1, Throttled: 1, Other: 2}); got != want {
		t.Errorf("counts %+v, want %+v", got, want)
	}
}
