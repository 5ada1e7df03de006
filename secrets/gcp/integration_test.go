package gcp_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/dsv-plugin/dsv/secrets"
	"github.com/dsv-plugin/dsv/secrets/gcp"
	"github.com/dsv-plugin/dsv/test/servers/gcptest"
)

// These tests run the backend with its real REST client and the real
// golang.org/x/oauth2/google and metadata clients against test/fakes/gcpfake, a
// separate process: a service-account key signs a JWT that the fake's token
// endpoint checks, the access token it gets reads the version over HTTP,
// and the checksum the fake sends is checked.

func TestMain(m *testing.M) {
	// No test may reach the real metadata address (169.254.169.254): a
	// test that falls through to the metadata server without setting
	// GCE_METADATA_HOST finds a closed local port.
	if os.Getenv("GCE_METADATA_HOST") == "" {
		os.Setenv("GCE_METADATA_HOST", "127.0.0.1:1")
	}
	os.Exit(m.Run())
}

const appSA = "app@" + gcptest.Project + ".iam.gserviceaccount.com"

func fetchContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// writeFile writes a credentials file the way a deployment would: a new
// file renamed over the old one.
func writeFile(t *testing.T, path string, content []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, content, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// withKey returns a driver whose credentials file holds a new key of appSA.
func withKey(t *testing.T, srv *gcptest.Server, project string) (*gcp.Driver, string) {
	t.Helper()
	key, _ := srv.ServiceAccountKey(appSA)
	file := filepath.Join(t.TempDir(), "credentials.json")
	writeFile(t, file, key)
	return gcp.New(gcp.Config{Project: project, Endpoint: srv.URL, CredentialsFile: file}, zerolog.Nop()), file
}

func TestIntegrationFetch(t *testing.T) {
	srv := gcptest.Start(t)
	db := srv.CreateSecret(gcptest.Project, "db")
	srv.AddVersion(db, []byte(`{"user":"app","pass":"pw-1","port":5432}`))
	srv.AddVersion(db, []byte(`{"user":"app","pass":"pw-2","port":5432}`))
	srv.SetAliases(db, map[string]int{"prod": 1})
	blob := srv.CreateSecret(gcptest.Project, "blob")
	srv.AddVersion(blob, []byte{0, 1, 2, 0xfe, 0xff})
	regional := "projects/" + gcptest.Project + "/locations/europe-west4/secrets/regional"
	srv.CreateSecret(gcptest.Project+"/locations/europe-west4", "regional")
	srv.AddVersion(regional, []byte("in-europe"))
	off := srv.CreateSecret(gcptest.Project, "off")
	srv.AddVersion(off, []byte("v1"))
	srv.AddVersion(off, []byte("v2"))
	srv.SetVersionState(off, "2", "disable")
	gone := srv.CreateSecret(gcptest.Project, "gone")
	srv.AddVersion(gone, []byte("v1"))
	srv.SetVersionState(gone, "1", "destroy")
	bad := srv.CreateSecret(gcptest.Project, "corrupted")
	srv.AddVersion(bad, []byte("s3cr3t-corrupted"))
	srv.Corrupt(bad + "/versions/1")
	legacy := srv.CreateSecret(gcptest.Project, "legacy")
	srv.AddVersion(legacy, []byte("from-2020"))
	srv.DropChecksum(legacy + "/versions/1")
	// appSA holds the accessor role on gcptest.Project; in other-project,
	// on one secret only.
	srv.GrantProjectAccessor(gcptest.Project, "serviceAccount:"+appSA)
	private := srv.CreateSecret("other-project", "private")
	srv.AddVersion(private, []byte("v"))
	srv.GrantAccessor(private, "serviceAccount:other@"+gcptest.Project+".iam.gserviceaccount.com")
	noPolicy := srv.CreateSecret("other-project", "no-policy")
	srv.AddVersion(noPolicy, []byte("v"))
	srv.CreateSecret("other-project", "db")
	srv.AddVersion("projects/other-project/secrets/db", []byte("elsewhere"))
	srv.GrantAccessor("projects/other-project/secrets/db", "serviceAccount:"+appSA)
	srv.DisableAPI("off-project")

	d, _ := withKey(t, srv, gcptest.Project)
	tests := []struct {
		name        string
		ref         secrets.Ref
		want        []byte
		wantVersion string
		wantErr     error
		wantHint    string
	}{
		{name: "full name, latest", ref: secrets.Ref{Name: db}, want: []byte(`{"user":"app","pass":"pw-2","port":5432}`), wantVersion: "2"},
		{name: "short name", ref: secrets.Ref{Name: "db"}, want: []byte(`{"user":"app","pass":"pw-2","port":5432}`), wantVersion: "2"},
		{name: "version in the name", ref: secrets.Ref{Name: db + "/versions/1"}, want: []byte(`{"user":"app","pass":"pw-1","port":5432}`), wantVersion: "1"},
		{name: "version-id", ref: secrets.Ref{Name: "db", VersionID: "1"}, want: []byte(`{"user":"app","pass":"pw-1","port":5432}`), wantVersion: "1"},
		{name: "alias", ref: secrets.Ref{Name: "db", VersionID: "prod", Key: "pass"}, want: []byte("pw-1"), wantVersion: "1"},
		{name: "key", ref: secrets.Ref{Name: db, Key: "pass"}, want: []byte("pw-2"), wantVersion: "2"},
		{name: "key of a number", ref: secrets.Ref{Name: db, Key: "port"}, want: []byte("5432"), wantVersion: "2"},
		{name: "binary", ref: secrets.Ref{Name: "blob"}, want: []byte{0, 1, 2, 0xfe, 0xff}, wantVersion: "1"},
		{name: "regional", ref: secrets.Ref{Name: regional}, want: []byte("in-europe"), wantVersion: "1"},
		{name: "another project", ref: secrets.Ref{Name: "projects/other-project/secrets/db"}, want: []byte("elsewhere"), wantVersion: "1"},
		{name: "a version without a checksum", ref: secrets.Ref{Name: "legacy"}, want: []byte("from-2020"), wantVersion: "1"},
		{name: "an older version of a secret whose newest is disabled", ref: secrets.Ref{Name: "off", VersionID: "1"}, want: []byte("v1"), wantVersion: "1"},

		{name: "missing key", ref: secrets.Ref{Name: db, Key: "password"}, wantErr: secrets.ErrBadValue, wantHint: `its keys are: "pass", "port", "user"`},
		// latest is the newest version, not the newest enabled one.
		{name: "latest, disabled", ref: secrets.Ref{Name: "off"}, wantErr: secrets.ErrNotFound, wantHint: "disabled or destroyed"},
		// Where the identity may read the project's secrets, a missing
		// one is not found; elsewhere IAM answers first: denied.
		{name: "unknown secret", ref: secrets.Ref{Name: "nope"}, wantErr: secrets.ErrNotFound, wantHint: "check the project, the secret name"},
		{name: "unknown secret, no access to the project", ref: secrets.Ref{Name: "projects/other-project/secrets/nope"}, wantErr: secrets.ErrAccessDenied, wantHint: "roles/secretmanager.secretAccessor"},
		{name: "a secret without a policy", ref: secrets.Ref{Name: "projects/other-project/secrets/no-policy"}, wantErr: secrets.ErrAccessDenied, wantHint: "roles/secretmanager.secretAccessor"},
		{name: "unknown version", ref: secrets.Ref{Name: "db", VersionID: "9"}, wantErr: secrets.ErrNotFound},
		{name: "unknown alias", ref: secrets.Ref{Name: "db", VersionID: "staging"}, wantErr: secrets.ErrNotFound},
		{name: "disabled version", ref: secrets.Ref{Name: "off", VersionID: "2"}, wantErr: secrets.ErrNotFound, wantHint: "disabled or destroyed"},
		{name: "destroyed version", ref: secrets.Ref{Name: "gone"}, wantErr: secrets.ErrNotFound, wantHint: "disabled or destroyed"},
		{name: "corrupted on the way", ref: secrets.Ref{Name: "corrupted"}, wantErr: secrets.ErrBadValue, wantHint: "does not match its CRC32C checksum"},
		{name: "no accessor role", ref: secrets.Ref{Name: private}, wantErr: secrets.ErrAccessDenied, wantHint: "roles/secretmanager.secretAccessor"},
		{name: "api disabled", ref: secrets.Ref{Name: "projects/off-project/secrets/db"}, wantErr: secrets.ErrAccessDenied, wantHint: "enable secretmanager.googleapis.com"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.ref.Backend = gcp.Name
			if err := d.Validate(tt.ref); err != nil {
				t.Fatalf("Validate() = %v", err)
			}
			got, err := d.Fetch(fetchContext(t), tt.ref)
			if tt.wantErr != nil {
				var se *secrets.Error
				if !errors.As(err, &se) || !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.wantHint) {
					t.Fatalf("Fetch() = %q, %v; want a *secrets.Error of class %v saying %q", got.Value, err, tt.wantErr, tt.wantHint)
				}
				if strings.Contains(err.Error(), "s3cr3t") {
					t.Errorf("the error quotes the value: %v", err)
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
	// Every read above shared one token: the JWT grant ran once.
	if n := srv.Counts()["oauth"]; n != 1 {
		t.Errorf("the token endpoint was asked %d times, want 1 (the token is reused)", n)
	}
}

// TestIntegrationCredentials: the ways to the plugin's credentials, and
// what each failure says.
func TestIntegrationCredentials(t *testing.T) {
	srv := gcptest.Start(t)
	db := srv.CreateSecret(gcptest.Project, "db")
	srv.AddVersion(db, []byte("pw"))
	srv.GrantAccessor(db, "serviceAccount:"+appSA, "principal://iam.googleapis.com/dsv-host", "serviceAccount:default@compute.fake.iam.gserviceaccount.com")
	ref := secrets.Ref{Backend: gcp.Name, Name: db}
	fetch := func(t *testing.T, d *gcp.Driver) (string, error) {
		t.Helper()
		s, err := d.Fetch(fetchContext(t), ref)
		return string(s.Value), err
	}
	wantErr := func(t *testing.T, err error, class error, hint string) {
		t.Helper()
		if !errors.Is(err, class) || !strings.Contains(err.Error(), hint) {
			t.Fatalf("got %v, want class %v saying %q", err, class, hint)
		}
		t.Logf("error: %v", err)
	}

	t.Run("service-account key rotated in the file", func(t *testing.T) {
		d, file := withKey(t, srv, "")
		if v, err := fetch(t, d); err != nil || v != "pw" {
			t.Fatalf("with the first key: %q, %v", v, err)
		}
		// A deleted key in a fresh file: refused by the token endpoint.
		oldKey, oldID := srv.ServiceAccountKey(appSA)
		srv.DeleteKey(appSA, oldID)
		writeFile(t, file, oldKey)
		_, err := fetch(t, d)
		wantErr(t, err, secrets.ErrAccessDenied, "the token endpoint refused the credentials in "+file)
		// A new key written over it works at the next read, same driver.
		newKey, _ := srv.ServiceAccountKey(appSA)
		writeFile(t, file, newKey)
		if v, err := fetch(t, d); err != nil || v != "pw" {
			t.Fatalf("after the new key was written: %q, %v", v, err)
		}
	})

	t.Run("workload identity federation", func(t *testing.T) {
		dir := t.TempDir()
		subject := filepath.Join(dir, "subject-token")
		file := filepath.Join(dir, "credentials.json")
		writeFile(t, subject, []byte("oidc-token-of-the-host"))
		writeFile(t, file, srv.ExternalAccount("oidc-token-of-the-host", "principal://iam.googleapis.com/dsv-host", subject))
		d := gcp.New(gcp.Config{Endpoint: srv.URL, CredentialsFile: file}, zerolog.Nop())
		if v, err := fetch(t, d); err != nil || v != "pw" {
			t.Fatalf("with the federation config: %q, %v", v, err)
		}
		if srv.Counts()["sts"] == 0 {
			t.Error("the read did not go through the token exchange")
		}
		// An unknown subject token: refused by STS.
		file2 := filepath.Join(dir, "credentials2.json")
		writeFile(t, file2, srv.ExternalAccount("registered", "principal://x", subject+".other"))
		writeFile(t, subject+".other", []byte("not-registered"))
		_, err := fetch(t, gcp.New(gcp.Config{Endpoint: srv.URL, CredentialsFile: file2}, zerolog.Nop()))
		wantErr(t, err, secrets.ErrAccessDenied, "credentials in "+file2)
	})

	t.Run("metadata server", func(t *testing.T) {
		t.Setenv("GCE_METADATA_HOST", srv.MetadataHost())
		d := gcp.New(gcp.Config{Endpoint: srv.URL, CredentialsFile: filepath.Join(t.TempDir(), "absent.json")}, zerolog.Nop())
		before := srv.Counts()["metadata"]
		for range 3 {
			if v, err := fetch(t, d); err != nil || v != "pw" {
				t.Fatalf("through the metadata server: %q, %v", v, err)
			}
		}
		if n := srv.Counts()["metadata"] - before; n != 1 {
			t.Errorf("the metadata server was asked %d times for 3 reads, want 1", n)
		}
	})

	t.Run("no credentials at all", func(t *testing.T) {
		// TestMain's GCE_METADATA_HOST: a closed port.
		file := filepath.Join(t.TempDir(), "absent.json")
		d := gcp.New(gcp.Config{Endpoint: srv.URL, CredentialsFile: file}, zerolog.Nop())
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, err := d.Fetch(ctx, ref)
		wantErr(t, err, secrets.ErrAccessDenied, "no Google credentials found: no file at "+file)
	})

	for _, bad := range []struct{ name, content, hint string }{
		{name: "not JSON", content: "-----BEGIN PRIVATE KEY-----\ns3cr3t\n", hint: "not a JSON object"},
		{name: "unknown type", content: `{"type":"api_key","key":"s3cr3t"}`, hint: `type "api_key" is not one of`},
		{name: "broken key", content: `{"type":"service_account","client_email":"a@b","private_key":"s3cr3t","token_uri":"http://127.0.0.1:1/token"}`, hint: "check the file"},
	} {
		t.Run("credentials file: "+bad.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "credentials.json")
			writeFile(t, file, []byte(bad.content))
			_, err := fetch(t, gcp.New(gcp.Config{Endpoint: srv.URL, CredentialsFile: file}, zerolog.Nop()))
			wantErr(t, err, secrets.ErrAccessDenied, bad.hint)
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("the error quotes the file: %v", err)
			}
		})
	}
}

// TestIntegrationRetries: passing failures are tried again within the
// deadline; lasting ones fail with their class.
func TestIntegrationRetries(t *testing.T) {
	srv := gcptest.Start(t)
	db := srv.CreateSecret(gcptest.Project, "db")
	srv.AddVersion(db, []byte("pw"))
	srv.GrantAccessor(db, "serviceAccount:"+appSA)
	d, _ := withKey(t, srv, gcptest.Project)
	ref := secrets.Ref{Backend: gcp.Name, Name: "db"}

	before := srv.Counts()["access"]
	srv.FailNext(503, 429)
	if s, err := d.Fetch(fetchContext(t), ref); err != nil || string(s.Value) != "pw" {
		t.Fatalf("after two passing failures: %q, %v", s.Value, err)
	}
	if n := srv.Counts()["access"] - before; n != 3 {
		t.Errorf("%d tries, want 3", n)
	}

	srv.FailNext(429, 429, 429)
	_, err := d.Fetch(fetchContext(t), ref)
	if !errors.Is(err, secrets.ErrUnavailable) || !strings.Contains(err.Error(), "throttled") {
		t.Fatalf("throttled three times: %v, want unavailable, throttled", err)
	}

	srv.FailNext(500, 403)
	_, err = d.Fetch(fetchContext(t), ref)
	if !errors.Is(err, secrets.ErrAccessDenied) {
		t.Fatalf("a refusal after a server failure: %v, want access denied (not tried again)", err)
	}
	srv.FailNext() // nothing queued: the next read works
	if _, err := d.Fetch(fetchContext(t), ref); err != nil {
		t.Fatal(err)
	}
}

// TestIntegrationStoppedServer: a dead endpoint fails with a class the user
// can act on, within the deadline.
func TestIntegrationStoppedServer(t *testing.T) {
	srv := gcptest.Start(t)
	db := srv.CreateSecret(gcptest.Project, "db")
	srv.AddVersion(db, []byte("pw"))
	srv.GrantAccessor(db, "serviceAccount:"+appSA)
	d, _ := withKey(t, srv, gcptest.Project)
	ref := secrets.Ref{Backend: gcp.Name, Name: "db"}
	if _, err := d.Fetch(fetchContext(t), ref); err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, timeout := range []time.Duration{5 * time.Second, 100 * time.Millisecond} {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		start := time.Now()
		_, err := d.Fetch(ctx, ref)
		cancel()
		took := time.Since(start)
		if !errors.Is(err, secrets.ErrUnavailable) && !errors.Is(err, secrets.ErrTimeout) {
			t.Fatalf("timeout %v: %v, want unavailable or timeout", timeout, err)
		}
		if took > timeout+time.Second {
			t.Errorf("timeout %v: returned after %v", timeout, took)
		}
		t.Logf("timeout %v: failed after %v: %v", timeout, took.Round(time.Millisecond), err)
	}
}
