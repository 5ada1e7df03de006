package gcp

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/dsv-plugin/dsv/secrets"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name        string
		project     string // GCP_PROJECT
		ref         secrets.Ref
		wantVersion string // the resource name read, when valid
		wantErr     []string
	}{
		{name: "full name", ref: secrets.Ref{Name: "projects/my-project/secrets/db"}, wantVersion: "projects/my-project/secrets/db/versions/latest"},
		{name: "full name with a version", ref: secrets.Ref{Name: "projects/my-project/secrets/db/versions/3"}, wantVersion: "projects/my-project/secrets/db/versions/3"},
		{name: "project number", ref: secrets.Ref{Name: "projects/123456789012/secrets/db_pw-2"}, wantVersion: "projects/123456789012/secrets/db_pw-2/versions/latest"},
		{name: "domain-scoped project", ref: secrets.Ref{Name: "projects/example.com:my-project/secrets/db"}, wantVersion: "projects/example.com:my-project/secrets/db/versions/latest"},
		{name: "regional", ref: secrets.Ref{Name: "projects/my-project/locations/europe-west4/secrets/db/versions/prod"}, wantVersion: "projects/my-project/locations/europe-west4/secrets/db/versions/prod"},
		{name: "short name", project: "my-project", ref: secrets.Ref{Name: "db"}, wantVersion: "projects/my-project/secrets/db/versions/latest"},
		{name: "version-id number", project: "my-project", ref: secrets.Ref{Name: "db", VersionID: "12"}, wantVersion: "projects/my-project/secrets/db/versions/12"},
		{name: "version-id alias", ref: secrets.Ref{Name: "projects/my-project/secrets/db", VersionID: "Prod_v2-a"}, wantVersion: "projects/my-project/secrets/db/versions/Prod_v2-a"},
		{name: "version-id latest", ref: secrets.Ref{Name: "projects/my-project/secrets/db", VersionID: "latest"}, wantVersion: "projects/my-project/secrets/db/versions/latest"},
		{name: "same version twice", ref: secrets.Ref{Name: "projects/my-project/secrets/db/versions/2", VersionID: "2"}, wantVersion: "projects/my-project/secrets/db/versions/2"},

		{name: "empty", ref: secrets.Ref{}, wantErr: []string{`option "secret" is required`}},
		{name: "short name without a project", ref: secrets.Ref{Name: "db"}, wantErr: []string{`option "secret"`, "GCP_PROJECT", "projects/PROJECT/secrets/db"}},
		{name: "bad short name", project: "my-project", ref: secrets.Ref{Name: "db.password"}, wantErr: []string{`option "secret": "db.password" is not a secret name`}},
		{name: "not a resource name", ref: secrets.Ref{Name: "secrets/db"}, wantErr: []string{`option "secret"`, "not a Secret Manager resource name"}},
		{name: "trailing slash", ref: secrets.Ref{Name: "projects/my-project/secrets/db/"}, wantErr: []string{`option "secret"`, "not a Secret Manager resource name"}},
		{name: "path traversal", ref: secrets.Ref{Name: "projects/my-project/secrets/../versions/1"}, wantErr: []string{`option "secret"`}},
		{name: "every part bad", ref: secrets.Ref{Name: "projects/My_Project/locations/mars/secrets/a.b/versions/0"},
			wantErr: []string{`"My_Project" is not a project ID`, `"mars" is not a region`, `"a.b" is not a secret name`, `"0" is not a version`}},
		{name: "versions without a version", ref: secrets.Ref{Name: "projects/my-project/secrets/db/versions"}, wantErr: []string{"not a Secret Manager resource name"}},
		{name: "alias NEW", ref: secrets.Ref{Name: "projects/my-project/secrets/db", VersionID: "New"}, wantErr: []string{`option "version-id": "New" is not a version`}},
		{name: "alias Latest", ref: secrets.Ref{Name: "projects/my-project/secrets/db", VersionID: "Latest"}, wantErr: []string{`option "version-id"`}},
		{name: "alias too long", ref: secrets.Ref{Name: "projects/my-project/secrets/db", VersionID: "a" + strings.Repeat("b", 63)}, wantErr: []string{`option "version-id"`}},
		{name: "two versions", ref: secrets.Ref{Name: "projects/my-project/secrets/db/versions/2", VersionID: "3"}, wantErr: []string{`option "version-id": "3" differs from the version "2"`}},
		{name: "stage and region, with the name", ref: secrets.Ref{Name: "db", VersionStage: "AWSCURRENT", Region: "us-east-1"},
			wantErr: []string{`option "secret"`, `option "version-stage": not supported by the gcp backend`, `option "region": not supported by the gcp backend`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := New(Config{Project: tt.project, API: nopAPI{}}, zerolog.Nop())
			tt.ref.Backend = Name
			r, err := d.resolve(tt.ref)
			if vErr := d.Validate(tt.ref); (vErr == nil) != (err == nil) {
				t.Fatalf("Validate() = %v, resolve() = %v", vErr, err)
			}
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("Validate() = nil, want an error (reads %s)", r.versionName())
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not contain %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := r.versionName(); got != tt.wantVersion {
				t.Errorf("reads %q, want %q", got, tt.wantVersion)
			}
		})
	}
}

func TestConfigFromEnv(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		want    Config
		wantErr []string
		notIn   string // never in the error
	}{
		{name: "defaults", env: map[string]string{}, want: Config{CredentialsFile: DefaultCredentialsFile}},
		{name: "every setting", env: map[string]string{EnvProject: "123456", EnvEndpoint: "https://sm.example:8443/base/", EnvCredentials: "/run/dsv/credentials/gcp/wif.json"},
			want: Config{Project: "123456", Endpoint: "https://sm.example:8443/base", CredentialsFile: "/run/dsv/credentials/gcp/wif.json"}},
		{name: "every bad value", env: map[string]string{EnvProject: "UPPER", EnvEndpoint: "127.0.0.1:8085", EnvCredentials: "gcp.json"},
			wantErr: []string{"setting GCP_PROJECT", "setting GCP_ENDPOINT", "setting GOOGLE_APPLICATION_CREDENTIALS: \"gcp.json\" is not an absolute path"}},
		{name: "a key instead of a path", env: map[string]string{EnvCredentials: `{"type":"service_account","private_key":"-----BEGIN PRIVATE KEY-----SECRET"}`},
			wantErr: []string{"never the key itself"}, notIn: "SECRET"},
		{name: "endpoint with a password", env: map[string]string{EnvEndpoint: "https://user:hunter2@sm.example"},
			wantErr: []string{"setting GCP_ENDPOINT", "user credentials"}, notIn: "hunter2"},
		{name: "endpoint with a query", env: map[string]string{EnvEndpoint: "http://h?x=1"}, wantErr: []string{"remove the query"}},
		{name: "plain http to loopback", env: map[string]string{EnvEndpoint: "http://127.0.0.1:8085"},
			want: Config{Endpoint: "http://127.0.0.1:8085", CredentialsFile: DefaultCredentialsFile}},
		{name: "plain http to localhost", env: map[string]string{EnvEndpoint: "http://localhost:8085/"},
			want: Config{Endpoint: "http://localhost:8085", CredentialsFile: DefaultCredentialsFile}},
		{name: "plain http to ::1", env: map[string]string{EnvEndpoint: "http://[::1]:8085"},
			want: Config{Endpoint: "http://[::1]:8085", CredentialsFile: DefaultCredentialsFile}},
		{name: "plain http to another host", env: map[string]string{EnvEndpoint: "http://sm.example:8085"},
			wantErr: []string{"setting GCP_ENDPOINT", `"http://sm.example:8085" is plain http:// to a host other than this machine`, "use https://"}},
		{name: "plain http to a private address", env: map[string]string{EnvEndpoint: "http://10.0.0.7"},
			wantErr: []string{"setting GCP_ENDPOINT", "access tokens"}},
		{name: "plain http to a name that starts like localhost", env: map[string]string{EnvEndpoint: "http://localhost.evil.example"},
			wantErr: []string{"setting GCP_ENDPOINT"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ConfigFromEnv(func(k string) string { return tt.env[k] })
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("ConfigFromEnv() = %+v, want an error", got)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not contain %q", err, w)
					}
				}
				if tt.notIn != "" && strings.Contains(err.Error(), tt.notIn) {
					t.Errorf("error %q quotes %q", err, tt.notIn)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ConfigFromEnv() = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

// FuzzParseName: any secret option is refused with an error that names the
// option, or parses into parts that rebuild a name of Secret Manager's form
// which parses back to the same parts, so nothing else reaches the URL.
func FuzzParseName(f *testing.F) {
	for _, s := range []string{"db", "projects/p-123456/secrets/db", "projects/123/secrets/db/versions/4",
		"projects/example.com:proj-1/locations/us-central1/secrets/x/versions/prod", "projects/p/secrets/../../x",
		"projects//secrets/db", "projects/p/secrets/db:access", "projects/p/secrets/db?x=1", "projects/p/secrets/db/versions/latest#f",
		"projects/pppppp/secrets/" + strings.Repeat("s", 256), "projects/é/secrets/db", "%2e%2e"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := parseName(s)
		if err != nil {
			if !strings.Contains(err.Error(), `option "secret"`) {
				t.Fatalf("error %q names no option", err)
			}
			if len(err.Error()) > 1200 {
				t.Fatalf("error of %d bytes for an input of %d", len(err.Error()), len(s))
			}
			return
		}
		if r.version == "" {
			r.version = versionLatest
		}
		if r.project == "" {
			r.project = "default-project"
		}
		name := r.versionName()
		for _, bad := range []string{"..", "//", "?", "#", "%", ":access", " "} {
			if strings.Contains(name, bad) {
				t.Fatalf("%q gives the name %q, which holds %q", s, name, bad)
			}
		}
		back, err := parseName(name)
		if err != nil || back != r {
			t.Fatalf("%q gives %q, which parses to %+v, %v; want %+v", s, name, back, err, r)
		}
	})
}

type nopAPI struct{}

func (nopAPI) Access(context.Context, string) (Payload, error) {
	return Payload{}, errors.New("not called")
}

// FuzzValidators: the hand-written checks accept exactly what the forms in
// Secret Manager's reference, written as regular expressions, accept.
func FuzzValidators(f *testing.F) {
	for _, s := range []string{"my-project", "example.com:my-project", "123456789012", "0123", "us-central1", "europe-west10",
		"a-b1", "us-central", "db_pw-2", "latest", "Latest", "new", "prod", "1", "01", strings.Repeat("a", 30), strings.Repeat("b", 64)} {
		f.Add(s)
	}
	forms := []struct {
		name  string
		re    *regexp.Regexp
		check func(string) bool
	}{
		{"project", regexp.MustCompile(`^(([a-z0-9.-]{1,63}):)?[a-z][a-z0-9-]{4,28}[a-z0-9]$|^[1-9][0-9]{0,19}$`), validProject},
		{"secret", regexp.MustCompile(`^[A-Za-z0-9_-]{1,255}$`), validSecretID},
		{"location", regexp.MustCompile(`^[a-z]+(-[a-z]+)+[0-9]{1,2}$`), validLocation},
		{"version", regexp.MustCompile(`^latest$|^[1-9][0-9]{0,18}$|^[A-Za-z][A-Za-z0-9_-]{0,62}$`), func(s string) bool {
			return validVersion(s) || strings.EqualFold(s, "latest") && s != "latest" || strings.EqualFold(s, "new")
		}},
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, fm := range forms {
			if got, want := fm.check(s), fm.re.MatchString(s); got != want {
				t.Errorf("%s %q: the check says %v, the form %v", fm.name, s, got, want)
			}
		}
	})
}
