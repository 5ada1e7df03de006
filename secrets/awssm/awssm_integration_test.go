package awssm_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/dsv-plugin/dsv/secrets"
	"github.com/dsv-plugin/dsv/secrets/awssm"
	"github.com/dsv-plugin/dsv/test/servers/moto"
)

// These tests run the backend with its default client factory against a
// real moto server, configured the way the plugin is: through the
// environment (AWS_ENDPOINT_URL, static keys) and Config.DefaultRegion.
// Nothing but AWS_ENDPOINT_URL sends the SDK to moto, so they also prove
// that the SDK honours it.

func fetchContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestIntegrationFetch(t *testing.T) {
	srv := moto.Start(t)
	srv.SetEnv(t)
	t.Setenv("AWS_REGION", "") // only Config.DefaultRegion and the ARN name one

	plain := srv.CreateSecret(t, "db-password", "s3cr3t")
	nested := srv.CreateSecret(t, "prod/app/db", `{"user":"app","pass":"pw","port":5432}`)
	rotated := srv.CreateSecret(t, "rotated", "old")
	current := srv.PutSecretValue(t, "rotated", "new")
	staged := srv.PutSecretValue(t, "rotated", "next", "AWSPENDING")
	blob := srv.CreateBinarySecret(t, "blob", []byte{0, 1, 2, 0xfe, 0xff})

	tests := []struct {
		name          string
		defaultRegion string
		ref           secrets.Ref
		want          []byte
		wantVersion   string
		wantErr       error
	}{
		{name: "name", defaultRegion: "us-east-1", ref: secrets.Ref{Name: "db-password"}, want: []byte("s3cr3t"), wantVersion: plain.VersionID},
		{name: "name with slashes", defaultRegion: "us-east-1", ref: secrets.Ref{Name: "prod/app/db"}, want: []byte(`{"user":"app","pass":"pw","port":5432}`), wantVersion: nested.VersionID},
		// No default region: the ARN names it.
		{name: "arn", ref: secrets.Ref{Name: plain.ARN}, want: []byte("s3cr3t"), wantVersion: plain.VersionID},
		{name: "key", defaultRegion: "us-east-1", ref: secrets.Ref{Name: "prod/app/db", Key: "pass"}, want: []byte("pw"), wantVersion: nested.VersionID},
		{name: "key of a number", defaultRegion: "us-east-1", ref: secrets.Ref{Name: nested.ARN, Key: "port"}, want: []byte("5432"), wantVersion: nested.VersionID},
		{name: "missing key", defaultRegion: "us-east-1", ref: secrets.Ref{Name: "prod/app/db", Key: "password"}, wantErr: secrets.ErrBadValue},
		{name: "binary", defaultRegion: "us-east-1", ref: secrets.Ref{Name: "blob"}, want: []byte{0, 1, 2, 0xfe, 0xff}, wantVersion: blob.VersionID},
		{name: "current after rotation", defaultRegion: "us-east-1", ref: secrets.Ref{Name: "rotated"}, want: []byte("new"), wantVersion: current.VersionID},
		{name: "AWSCURRENT", defaultRegion: "us-east-1", ref: secrets.Ref{Name: "rotated", VersionStage: "AWSCURRENT"}, want: []byte("new"), wantVersion: current.VersionID},
		{name: "AWSPREVIOUS", defaultRegion: "us-east-1", ref: secrets.Ref{Name: "rotated", VersionStage: "AWSPREVIOUS"}, want: []byte("old"), wantVersion: rotated.VersionID},
		{name: "custom stage", defaultRegion: "us-east-1", ref: secrets.Ref{Name: "rotated", VersionStage: "AWSPENDING"}, want: []byte("next"), wantVersion: staged.VersionID},
		{name: "version id", defaultRegion: "us-east-1", ref: secrets.Ref{Name: "rotated", VersionID: rotated.VersionID}, want: []byte("old"), wantVersion: rotated.VersionID},
		{name: "version id of a staged version", defaultRegion: "us-east-1", ref: secrets.Ref{Name: rotated.ARN, VersionID: staged.VersionID}, want: []byte("next"), wantVersion: staged.VersionID},
		{name: "unknown name", defaultRegion: "us-east-1", ref: secrets.Ref{Name: "no/such/secret"}, wantErr: secrets.ErrNotFound},
		{name: "unknown version id", defaultRegion: "us-east-1", ref: secrets.Ref{Name: "rotated", VersionID: "00000000-0000-0000-0000-000000000000"}, wantErr: secrets.ErrNotFound},
		{name: "unknown stage", defaultRegion: "us-east-1", ref: secrets.Ref{Name: "rotated", VersionStage: "NOPE"}, wantErr: secrets.ErrNotFound},
		// moto keeps secrets per region, like AWS.
		{name: "region option", defaultRegion: "us-east-1", ref: secrets.Ref{Name: "db-password", Region: "eu-west-1"}, wantErr: secrets.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.ref.Backend = "aws"
			d := awssm.New(awssm.Config{DefaultRegion: tt.defaultRegion})
			if err := d.Validate(tt.ref); err != nil {
				t.Fatalf("Validate() = %v", err)
			}
			got, err := d.Fetch(fetchContext(t), tt.ref)
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
			if !bytes.Equal(got.Value, tt.want) || got.Version != tt.wantVersion {
				t.Errorf("Fetch() = %q version %q, want %q version %q", got.Value, got.Version, tt.want, tt.wantVersion)
			}
		})
	}
}

// TestIntegrationStoppedServer checks that a dead endpoint fails with a
// class the user can act on, and returns.
func TestIntegrationStoppedServer(t *testing.T) {
	srv := moto.Start(t)
	srv.SetEnv(t)
	srv.CreateSecret(t, "db", "v")
	d := awssm.New(awssm.Config{DefaultRegion: "us-east-1"})
	ref := secrets.Ref{Backend: "aws", Name: "db"}
	if _, err := d.Fetch(fetchContext(t), ref); err != nil {
		t.Fatalf("Fetch() before stop: %v", err)
	}

	srv.Stop(t)
	// The client built above is reused: it must not hold on to anything.
	for _, timeout := range []time.Duration{10 * time.Second, 200 * time.Millisecond} {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		start := time.Now()
		_, err := d.Fetch(ctx, ref)
		cancel()
		if !errors.Is(err, secrets.ErrUnavailable) && !errors.Is(err, secrets.ErrTimeout) {
			t.Fatalf("Fetch() with timeout %v error = %v, want ErrUnavailable or ErrTimeout", timeout, err)
		}
		t.Logf("timeout %v: failed after %v: %v", timeout, time.Since(start).Round(time.Millisecond), err)
	}
}

// TestIntegrationSharedFilesReloaded: keys in the shared credentials file
// are read again when the file changes, without a new client: an unknown
// key is refused (moto checks keys here, as AWS does), the right key written
// over it works at the next read, and an unknown one written after it is
// refused again.
func TestIntegrationSharedFilesReloaded(t *testing.T) {
	srv, key := moto.StartAuth(t, map[string]string{"app/db": "pw-1"})
	srv.SetEnv(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	credsFile := os.Getenv("AWS_SHARED_CREDENTIALS_FILE")
	write := func(id, secret string) {
		t.Helper()
		// As a job that writes credentials would: a new file renamed over
		// the old one.
		tmp := credsFile + ".new"
		if err := os.WriteFile(tmp, []byte("[default]\naws_access_key_id = "+id+"\naws_secret_access_key = "+secret+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, credsFile); err != nil {
			t.Fatal(err)
		}
	}
	d := awssm.New(awssm.Config{DefaultRegion: moto.Region})
	ref := secrets.Ref{Name: "app/db"}

	write("AKIAUNKNOWN0000000000", "not-a-key")
	_, err := d.Fetch(fetchContext(t), ref)
	if !errors.Is(err, secrets.ErrAccessDenied) || !strings.Contains(err.Error(), "check the credentials given to the plugin") {
		t.Fatalf("an unknown key: got %v, want access denied pointing at the credentials", err)
	}
	write(key.ID, key.Secret)
	sec, err := d.Fetch(fetchContext(t), ref)
	if err != nil || string(sec.Value) != "pw-1" {
		t.Fatalf("after the right key was written: %q, %v", sec.Value, err)
	}
	// Another key id: the SDK's signer caches its derived signing key by
	// key id, and AWS never gives two keys the same id.
	write("AKIAUNKNOWN1111111111", key.Secret)
	if _, err := d.Fetch(fetchContext(t), ref); !errors.Is(err, secrets.ErrAccessDenied) {
		t.Fatalf("after an unknown key was written: got %v, want access denied", err)
	}
}
