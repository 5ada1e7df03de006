package volumes

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/dsv-plugin/dsv/secrets"
)

func testRegistry(t testing.TB) *secrets.Registry {
	t.Helper()
	reg, err := secrets.NewRegistry(&fakeBackend{name: "fake"}, &fakeBackend{name: "other"})
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

func TestParseOptions(t *testing.T) {
	reg := testRegistry(t)
	tests := []struct {
		name    string
		volume  string
		raw     map[string]string
		want    Options
		wantErr []string // substrings that must all appear
	}{
		{
			name:   "implicit create defaults to the volume name and swarm's owner and mode",
			volume: "db-password",
			raw:    nil,
			want: Options{
				Ref: secrets.Ref{Backend: "fake", Name: "db-password"},
				UID: 0, GID: 0, Mode: 0o444, Layout: LayoutFile, Filename: "db-password",
			},
		},
		{
			name:   "every option",
			volume: "app_db",
			raw: map[string]string{
				"backend": "other", "secret": "prod/app/db", "key": "password", "version-id": "abc",
				"version-stage": "AWSPREVIOUS", "region": "eu-west-1", "uid": "1000", "gid": "1001",
				"mode": "0440", "layout": "dir", "filename": "pw",
			},
			want: Options{
				Ref: secrets.Ref{Backend: "other", Name: "prod/app/db", Key: "password", VersionID: "abc",
					VersionStage: "AWSPREVIOUS", Region: "eu-west-1"},
				UID: 1000, GID: 1001, Mode: 0o440, Layout: LayoutDir, Filename: "pw",
			},
		},
		{
			name:   "filename defaults to the last segment of the name",
			volume: "v1",
			raw:    map[string]string{"secret": "prod/app/db", "layout": "dir"},
			want: Options{
				Ref:  secrets.Ref{Backend: "fake", Name: "prod/app/db"},
				Mode: 0o444, Layout: LayoutDir, Filename: "db",
			},
		},
		{
			name:   "filename of an ARN is the name after the last colon",
			volume: "v1",
			raw:    map[string]string{"secret": "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf"},
			want: Options{
				Ref:  secrets.Ref{Backend: "fake", Name: "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf"},
				Mode: 0o444, Layout: LayoutFile, Filename: "db-AbCdEf",
			},
		},
		{
			name:   "filename alone implies the dir layout",
			volume: "v1",
			raw:    map[string]string{"filename": "password"},
			want: Options{
				Ref:  secrets.Ref{Backend: "fake", Name: "v1"},
				Mode: 0o444, Layout: LayoutDir, Filename: "password",
			},
		},
		{
			name:   "three-digit mode",
			volume: "v1",
			raw:    map[string]string{"mode": "400"},
			want: Options{
				Ref:  secrets.Ref{Backend: "fake", Name: "v1"},
				Mode: 0o400, Layout: LayoutFile, Filename: "v1",
			},
		},
		{
			name:    "unknown option lists the known ones",
			volume:  "v1",
			raw:     map[string]string{"secrte": "x"},
			wantErr: []string{`volume "v1": invalid options`, `unknown option "secrte"`, "known options are: backend, secret"},
		},
		{
			name:    "every problem reported at once",
			volume:  "v1",
			raw:     map[string]string{"uid": "-1", "gid": "root", "mode": "0644", "layout": "tree"},
			wantErr: []string{`option "uid"`, `option "gid": "root" is not a numeric id`, `option "mode": "0644" grants write permission`, `option "layout": "tree" is not a layout`},
		},
		{
			name:    "mode must be octal",
			volume:  "v1",
			raw:     map[string]string{"mode": "0888"},
			wantErr: []string{`option "mode": "0888" is not an octal file mode`},
		},
		{
			name:    "setuid bits refused",
			volume:  "v1",
			raw:     map[string]string{"mode": "4444"},
			wantErr: []string{`option "mode": "4444"`},
		},
		{
			name:    "unknown backend names the choices",
			volume:  "v1",
			raw:     map[string]string{"backend": "gcp"},
			wantErr: []string{`option "backend": unknown backend "gcp"; use one of: fake, other`},
		},
		{
			name:    "backend validation is included",
			volume:  "v1",
			raw:     map[string]string{"secret": "invalid-name", "uid": "x"},
			wantErr: []string{`option "secret": "invalid-name" is not a valid name`, `option "uid"`},
		},
		{
			name:    "empty secret",
			volume:  "v1",
			raw:     map[string]string{"secret": ""},
			wantErr: []string{`option "secret": must not be empty`},
		},
		{
			name:    "filename with a slash",
			volume:  "v1",
			raw:     map[string]string{"layout": "dir", "filename": "a/b"},
			wantErr: []string{`option "filename": "a/b" must be a single file name`},
		},
		{
			name:    "reserved filename",
			volume:  "v1",
			raw:     map[string]string{"layout": "dir", "filename": "..data"},
			wantErr: []string{`option "filename": "..data" is reserved`},
		},
		{
			name:    "filename contradicts layout=file",
			volume:  "v1",
			raw:     map[string]string{"layout": "file", "filename": "x"},
			wantErr: []string{`option "filename": only applies to layout=dir`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseOptions(tt.volume, tt.raw, Defaults{Backend: "fake"}, reg)
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("ParseOptions() = %+v, want an error", got)
				}
				for _, s := range tt.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not contain %q", err, s)
					}
				}
				if err.Error() != strings.ToLower(err.Error()[:1])+err.Error()[1:] {
					t.Errorf("error %q does not start lower-case", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseOptions() error: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseOptions() =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

func TestParseOptionsDefaultBackendSetting(t *testing.T) {
	reg := testRegistry(t)
	_, err := ParseOptions("v1", nil, Defaults{Backend: "nope"}, reg)
	if err == nil || !strings.Contains(err.Error(), `the BACKEND plugin setting: unknown backend "nope"`) {
		t.Fatalf("want the error to blame the BACKEND setting, got %v", err)
	}
}

func TestValidateVolumeName(t *testing.T) {
	for _, name := range []string{"ab", "db-password", "proj_db.1", strings.Repeat("a", 255)} {
		if err := ValidateVolumeName(name); err != nil {
			t.Errorf("ValidateVolumeName(%q) = %v, want nil", name, err)
		}
	}
	for _, name := range []string{"", "a", "-a", ".a", "a/b", "..", "a b", strings.Repeat("a", 256)} {
		if err := ValidateVolumeName(name); err == nil {
			t.Errorf("ValidateVolumeName(%q) = nil, want an error", name)
		}
	}
}

// FuzzParseOptions checks that the parser never panics, that whatever it
// accepts is safe to use as a path segment and a file mode, and that errors
// never echo an option value they did not need to.
func FuzzParseOptions(f *testing.F) {
	seeds := [][3]string{
		{"v1", "mode", "0444"}, {"v1", "mode", "0644"}, {"v1", "uid", "1000"}, {"v1", "filename", "../x"},
		{"v1", "filename", "..data"}, {"v1", "layout", "dir"}, {"v1", "secret", "a/b/c"},
		{"v1", "filename", "a\x00b"}, {"v1", "secret", "arn:aws:secretsmanager:us-east-1:1:secret:x"},
		{"db", "unknown", "x"}, {"v1", "gid", "99999999999"}, {"v1", "mode", "7777"},
	}
	for _, s := range seeds {
		f.Add(s[0], s[1], s[2])
	}
	reg := testRegistry(f)
	f.Fuzz(func(t *testing.T, volume, key, value string) {
		o, err := ParseOptions(volume, map[string]string{key: value}, Defaults{Backend: "fake"}, reg)
		if err != nil {
			return
		}
		if validateFilename(o.Filename) != nil {
			t.Fatalf("accepted unsafe filename %q", o.Filename)
		}
		if o.Mode&0o222 != 0 || o.Mode&^os.FileMode(0o777) != 0 {
			t.Fatalf("accepted mode %o", o.Mode)
		}
		if o.Layout != LayoutFile && o.Layout != LayoutDir {
			t.Fatalf("accepted layout %q", o.Layout)
		}
		if o.UID < 0 || o.GID < 0 {
			t.Fatalf("accepted negative id %d:%d", o.UID, o.GID)
		}
	})
}
