package ssm_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dsv-plugin/dsv/secrets"
	"github.com/dsv-plugin/dsv/secrets/ssm"
	"github.com/dsv-plugin/dsv/test/servers/moto"
)

// These tests run the backend with its default client factory against a
// real moto server, configured the way the plugin is: through the
// environment (AWS_ENDPOINT_URL, static keys) and Config.DefaultRegion.

func fetchContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// parse reads options the way volumes and Swarm labels do.
func parse(t *testing.T, d *ssm.Driver, raw map[string]string) secrets.Ref {
	t.Helper()
	reg, err := secrets.NewRegistry(d)
	if err != nil {
		t.Fatal(err)
	}
	ref, rest, errs := secrets.ParseRef("vol", raw, ssm.Name, reg)
	if len(errs) > 0 || len(rest) > 0 {
		t.Fatalf("ParseRef(%v): %v, left %v", raw, errs, rest)
	}
	return ref
}

func TestIntegrationFetch(t *testing.T) {
	srv := moto.Start(t)
	srv.SetEnv(t)
	t.Setenv("AWS_REGION", "") // only Config.DefaultRegion names it

	srv.PutParameter(t, "/prod/db/password", "s3cr3t", moto.ParameterSecureString)
	srv.PutParameter(t, "/prod/db/user", "app", moto.ParameterString)
	srv.PutParameter(t, "/prod/db/hosts", "a,b,c", moto.ParameterStringList)
	srv.PutParameter(t, "/prod/db/json", `{"user":"app","port":5432}`, moto.ParameterSecureString)
	srv.PutParameter(t, "/prod/db/tls/ca", "CA", moto.ParameterString)
	srv.PutParameter(t, "/rot", "v1", moto.ParameterSecureString)
	srv.PutParameter(t, "/rot", "v2", moto.ParameterSecureString)
	srv.PutParameter(t, "/rot", "v3", moto.ParameterSecureString)
	srv.LabelParameter(t, "/rot", 2, "blue")
	for i := range 23 {
		srv.PutParameter(t, fmt.Sprintf("/many/p%02d", i), fmt.Sprint(i), moto.ParameterSecureString)
	}

	tests := []struct {
		name        string
		raw         map[string]string
		want        string
		wantVersion string
		wantErr     error
	}{
		{name: "secure string", raw: map[string]string{"secret": "/prod/db/password"}, want: "s3cr3t", wantVersion: "1"},
		{name: "string", raw: map[string]string{"secret": "/prod/db/user"}, want: "app", wantVersion: "1"},
		{name: "string list", raw: map[string]string{"secret": "/prod/db/hosts"}, want: "a,b,c", wantVersion: "1"},
		{name: "key", raw: map[string]string{"secret": "/prod/db/json", "key": "port"}, want: "5432", wantVersion: "1"},
		{name: "arn", raw: map[string]string{"secret": "arn:aws:ssm:us-east-1:123456789012:parameter/prod/db/password"}, want: "s3cr3t", wantVersion: "1"},
		{name: "current", raw: map[string]string{"secret": "/rot"}, want: "v3", wantVersion: "3"},
		{name: "version selector", raw: map[string]string{"secret": "/rot:1"}, want: "v1", wantVersion: "1"},
		{name: "version-id", raw: map[string]string{"secret": "/rot", "version-id": "1"}, want: "v1", wantVersion: "1"},
		{name: "label selector", raw: map[string]string{"secret": "/rot:blue"}, want: "v2", wantVersion: "2"},
		{name: "version-stage", raw: map[string]string{"secret": "/rot", "version-stage": "blue"}, want: "v2", wantVersion: "2"},
		{name: "path", raw: map[string]string{"secret": "/prod/db/"}, want: `{"hosts":"a,b,c","json":"{\"user\":\"app\",\"port\":5432}","password":"s3cr3t","user":"app"}`, wantVersion: "hosts@1 json@1 password@1 user@1"},
		{name: "recursive path", raw: map[string]string{"secret": "/prod/", "recursive": "true"}, want: `{"db/hosts":"a,b,c","db/json":"{\"user\":\"app\",\"port\":5432}","db/password":"s3cr3t","db/tls/ca":"CA","db/user":"app"}`, wantVersion: "db/hosts@1 db/json@1 db/password@1 db/tls/ca@1 db/user@1"},
		{name: "path key", raw: map[string]string{"secret": "/prod/db/", "key": "password"}, want: "s3cr3t", wantVersion: "hosts@1 json@1 password@1 user@1"},
		{name: "unknown name", raw: map[string]string{"secret": "/no/such"}, wantErr: secrets.ErrNotFound},
		{name: "unknown version", raw: map[string]string{"secret": "/rot:9"}, wantErr: secrets.ErrNotFound},
		{name: "unknown label", raw: map[string]string{"secret": "/rot:green"}, wantErr: secrets.ErrNotFound},
		{name: "empty path", raw: map[string]string{"secret": "/prod/"}, wantErr: secrets.ErrNotFound},
		// moto keeps parameters per region, like AWS.
		{name: "region option", raw: map[string]string{"secret": "/prod/db/password", "region": "eu-west-1"}, wantErr: secrets.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := ssm.New(ssm.Config{DefaultRegion: moto.Region})
			got, err := d.Fetch(fetchContext(t), parse(t, d, tt.raw))
			if tt.wantErr != nil {
				var se *secrets.Error
				if !errors.As(err, &se) || !errors.Is(err, tt.wantErr) {
					t.Fatalf("Fetch() error = %v, want a *secrets.Error of kind %v", err, tt.wantErr)
				}
				t.Logf("error: %v", err)
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

	t.Run("paginated path", func(t *testing.T) {
		d := ssm.New(ssm.Config{DefaultRegion: moto.Region})
		got, err := d.Fetch(fetchContext(t), parse(t, d, map[string]string{"secret": "/many/"}))
		if err != nil {
			t.Fatal(err)
		}
		for i := range 23 {
			if want := fmt.Sprintf(`"p%02d":"%d"`, i, i); !strings.Contains(string(got.Value), want) {
				t.Errorf("path value lacks %s (pages of 10): %s", want, got.Value)
			}
		}
	})
}

// TestIntegrationAccessDenied: moto checks the IAM policy of the key here,
// as AWS does; a refusal names the permission to grant.
func TestIntegrationAccessDenied(t *testing.T) {
	tests := []struct {
		name     string
		actions  []string
		raw      map[string]string
		wantHint string
	}{
		{name: "parameter", actions: []string{"ssm:GetParametersByPath"}, raw: map[string]string{"secret": "/app/db"}, wantHint: "ssm:GetParameter "},
		{name: "path", actions: []string{"ssm:GetParameter"}, raw: map[string]string{"secret": "/app/"}, wantHint: "ssm:GetParametersByPath"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, key := moto.StartAuthWith(t, moto.AuthSetup{Actions: tt.actions, Parameters: map[string]string{"/app/db": "pw"}})
			srv.SetEnv(t)
			t.Setenv("AWS_ACCESS_KEY_ID", key.ID)
			t.Setenv("AWS_SECRET_ACCESS_KEY", key.Secret)
			d := ssm.New(ssm.Config{DefaultRegion: moto.Region})
			_, err := d.Fetch(fetchContext(t), parse(t, d, tt.raw))
			var se *secrets.Error
			if !errors.As(err, &se) || !errors.Is(err, secrets.ErrAccessDenied) || !strings.Contains(se.Hint, tt.wantHint) {
				t.Fatalf("Fetch() error = %v, want access denied naming %q", err, tt.wantHint)
			}
			t.Logf("error: %v", err)
			// The allowed call works with the same key.
			other := map[string]string{"secret": "/app/"}
			if tt.name == "path" {
				other = map[string]string{"secret": "/app/db"}
			}
			if _, err := d.Fetch(fetchContext(t), parse(t, d, other)); err != nil {
				t.Fatalf("the allowed call: %v", err)
			}
		})
	}
}

// TestIntegrationStoppedServer: a dead endpoint fails with a class the user
// can act on.
func TestIntegrationStoppedServer(t *testing.T) {
	srv := moto.Start(t)
	srv.SetEnv(t)
	srv.PutParameter(t, "/db", "v", moto.ParameterSecureString)
	d := ssm.New(ssm.Config{DefaultRegion: moto.Region})
	ref := secrets.Ref{Backend: ssm.Name, Name: "/db"}
	if _, err := d.Fetch(fetchContext(t), ref); err != nil {
		t.Fatalf("Fetch() before stop: %v", err)
	}
	srv.Stop(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := d.Fetch(ctx, ref)
	if !errors.Is(err, secrets.ErrUnavailable) && !errors.Is(err, secrets.ErrTimeout) {
		t.Fatalf("Fetch() error = %v, want ErrUnavailable or ErrTimeout", err)
	}
	t.Logf("error: %v", err)
}
