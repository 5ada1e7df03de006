package render

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dsv-plugin/dsv/notify"
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

// one builds the Options of a single-object volume.
func one(layout string, o Object) Options {
	if o.Format == "" {
		o.Format = FormatRaw
	}
	if o.Mode == 0 {
		o.Mode = 0o444
	}
	return Options{Layout: layout, Objects: []Object{o}}
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
			want:   one(LayoutFile, Object{Name: "db-password", Ref: secrets.Ref{Backend: "fake", Name: "db-password"}}),
		},
		{
			name:   "every option",
			volume: "app_db",
			raw: map[string]string{
				"backend": "other", "secret": "prod/app/db", "key": "password", "version-id": "abc",
				"version-stage": "AWSPREVIOUS", "region": "eu-west-1", "uid": "1000", "gid": "1001",
				"mode": "0440", "layout": "dir", "filename": "pw", "format": "base64", "refresh": "30s",
			},
			want: Options{Layout: LayoutDir, Refresh: 30 * time.Second, RefreshSet: true, Objects: []Object{{
				Name: "pw", Format: FormatBase64, UID: 1000, GID: 1001, Mode: 0o440,
				Ref: secrets.Ref{Backend: "other", Name: "prod/app/db", Key: "password", VersionID: "abc",
					VersionStage: "AWSPREVIOUS", Region: "eu-west-1"},
			}}},
		},
		{
			name:   "filename defaults to the last segment of the name",
			volume: "v1",
			raw:    map[string]string{"secret": "prod/app/db", "layout": "dir"},
			want:   one(LayoutDir, Object{Name: "db", Ref: secrets.Ref{Backend: "fake", Name: "prod/app/db"}}),
		},
		{
			name:   "filename of an ARN is the name after the last colon",
			volume: "v1",
			raw:    map[string]string{"secret": "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf"},
			want: one(LayoutFile, Object{Name: "db-AbCdEf",
				Ref: secrets.Ref{Backend: "fake", Name: "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf"}}),
		},
		{
			name:   "filename alone implies the dir layout",
			volume: "v1",
			raw:    map[string]string{"filename": "password"},
			want:   one(LayoutDir, Object{Name: "password", Ref: secrets.Ref{Backend: "fake", Name: "v1"}}),
		},
		{
			name:   "three-digit mode",
			volume: "v1",
			raw:    map[string]string{"mode": "400"},
			want:   one(LayoutFile, Object{Name: "v1", Mode: 0o400, Ref: secrets.Ref{Backend: "fake", Name: "v1"}}),
		},
		{
			name:   "key=* explodes into a directory",
			volume: "v1",
			raw:    map[string]string{"secret": "app/db", "key": "*"},
			want:   one(LayoutDir, Object{Name: "db", AllKeys: true, Ref: secrets.Ref{Backend: "fake", Name: "app/db"}}),
		},
		{
			name:   "many objects, shorthand and full specs, inheriting volume options",
			volume: "app",
			raw: map[string]string{
				"uid": "1000", "mode": "0400", "backend": "other",
				"file.db-password": "secret=prod/db,key=password,mode=0440",
				"file.api-token":   "prod/api",
				"file.all":         "secret=prod/db,key=*,backend=fake",
				"file.env":         "secret=prod/env,format=dotenv,uid=0",
			},
			want: Options{Layout: LayoutDir, Objects: []Object{
				{Name: "all", AllKeys: true, Format: FormatRaw, UID: 1000, Mode: 0o400, Ref: secrets.Ref{Backend: "fake", Name: "prod/db"}},
				{Name: "api-token", Format: FormatRaw, UID: 1000, Mode: 0o400, Ref: secrets.Ref{Backend: "other", Name: "prod/api"}},
				{Name: "db-password", Format: FormatRaw, UID: 1000, Mode: 0o440, Ref: secrets.Ref{Backend: "other", Name: "prod/db", Key: "password"}},
				{Name: "env", Format: FormatDotenv, UID: 0, Mode: 0o400, Ref: secrets.Ref{Backend: "other", Name: "prod/env"}},
			}},
		},
		{
			name:   "escaped comma in a spec",
			volume: "v1",
			raw:    map[string]string{"file.x": `secret=a\,b`},
			want:   Options{Layout: LayoutDir, Objects: []Object{{Name: "x", Format: FormatRaw, Mode: 0o444, Ref: secrets.Ref{Backend: "fake", Name: "a,b"}}}},
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
			raw:     map[string]string{"uid": "-1", "gid": "root", "mode": "0644", "layout": "tree", "format": "yaml", "refresh": "soon"},
			wantErr: []string{`option "uid"`, `option "gid": "root" is not a numeric id`, `option "mode": "0644" grants write permission`, `option "layout": "tree" is not a layout`, `option "format": "yaml" is not a format`, `option "refresh": "soon" is not a duration`},
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
		{
			name:    "refresh of a file-layout volume",
			volume:  "v1",
			raw:     map[string]string{"refresh": "10s"},
			wantErr: []string{`option "refresh": a layout=file volume is one file bind-mounted`, "use layout=dir"},
		},
		{
			name:   "notify by signal and stale-if-error",
			volume: "v1",
			raw:    map[string]string{"secret": "db", "layout": "dir", "notify": "hup", "stale-if-error": "1h"},
			want: Options{Layout: LayoutDir, Notify: notify.Spec{Signal: "SIGHUP"}, NotifySet: true, StaleIfError: time.Hour, StaleIfErrorSet: true,
				Objects: []Object{{Name: "db", Format: FormatRaw, Mode: 0o444, Ref: secrets.Ref{Backend: "fake", Name: "db"}}}},
		},
		{
			name:   "notify by exec, words split without a shell",
			volume: "v1",
			raw:    map[string]string{"secret": "db", "layout": "dir", "notify": `exec:sh -c 'nginx -s reload'`},
			want: Options{Layout: LayoutDir, Notify: notify.Spec{Exec: []string{"sh", "-c", "nginx -s reload"}}, NotifySet: true,
				Objects: []Object{{Name: "db", Format: FormatRaw, Mode: 0o444, Ref: secrets.Ref{Backend: "fake", Name: "db"}}}},
		},
		{
			name:    "bad notify and stale-if-error",
			volume:  "v1",
			raw:     map[string]string{"secret": "db", "notify": "SIGKILL", "stale-if-error": "-1s"},
			wantErr: []string{`option "notify": "SIGKILL" would stop the app`, `option "stale-if-error": "-1s" is not a duration`},
		},
		{
			name:    "notify exec with an open quote, stale-if-error too long",
			volume:  "v1",
			raw:     map[string]string{"secret": "db", "notify": "exec:sh -c 'x", "stale-if-error": "200h"},
			wantErr: []string{`option "notify": exec: a single quote is not closed`, `option "stale-if-error": "200h" is longer than the maximum of 168h0m0s`},
		},
		{
			name:    "stale-if-error with a secret issued at every read",
			volume:  "v1",
			raw:     map[string]string{"file.a": "ok", "file.b": "issue/cert", "stale-if-error": "1h"},
			wantErr: []string{`option "stale-if-error": fake secret "issue/cert" issues a new value at every read`},
		},
		{
			name:    "refresh too short",
			volume:  "v1",
			raw:     map[string]string{"refresh": "100ms", "layout": "dir"},
			wantErr: []string{`option "refresh": "100ms" is shorter than the minimum of 1s`},
		},
		{
			name:    "key=* with layout=file",
			volume:  "v1",
			raw:     map[string]string{"key": "*", "layout": "file"},
			wantErr: []string{`option "key": key=* writes one file per key`},
		},
		{
			name:    "key=* with dotenv",
			volume:  "v1",
			raw:     map[string]string{"key": "*", "format": "dotenv"},
			wantErr: []string{`option "format": with key=* each file holds one value`},
		},
		{
			name:   "multi-object problems name the file option",
			volume: "v1",
			raw: map[string]string{
				"file.a": "secret=x,mode=0777", "file.b": "secret=invalid-b", "file.c": "nokey=", "file.d": "",
				"file...data": "x", "file.e": "secret=x,colour=red", "secret": "top",
			},
			wantErr: []string{
				`option "file.a": option "mode": "0777" grants write permission`,
				`option "file.b": option "secret": "invalid-b" is not a valid name`,
				`option "file.c": unknown option "nokey" in the spec`,
				`option "file.d": empty spec`,
				`option "file...data": the file name "..data" is reserved`,
				`option "file.e": unknown option "colour"`,
				`option "secret": applies to single-secret volumes`,
			},
		},
		{
			name:    "multi-object volume cannot be layout=file",
			volume:  "v1",
			raw:     map[string]string{"file.a": "x", "layout": "file"},
			wantErr: []string{`option "layout": a volume with file.NAME or template.NAME options is a directory`},
		},
		{
			name:    "duplicate file names",
			volume:  "v1",
			raw:     map[string]string{"file.a": "x", "template.a": `{{ secret "fake" "y" }}`},
			wantErr: []string{`file "a" is also defined by option`},
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
	for _, name := range []string{"", "a", "-a", ".a", "a/b", "..", "a b", "ab\n", "ab\x1b", strings.Repeat("a", 256), strings.Repeat("\xff", 255)} {
		err := ValidateVolumeName(name)
		if err == nil {
			t.Errorf("ValidateVolumeName(%q) = nil, want an error", name)
		} else if len(err.Error()) > 512 {
			t.Errorf("ValidateVolumeName(%d bytes): an error of %d bytes", len(name), len(err.Error()))
		}
	}
}

// TestOptionBounds: an oversized option is refused without being quoted,
// and parsing goes on without it.
func TestOptionBounds(t *testing.T) {
	reg := testRegistry(t)
	_, err := ParseOptions("v1", map[string]string{
		"key":                    strings.Repeat("k", maxOptionValue+1),
		strings.Repeat("o", 300): "x",
		"mode":                   "0644",
	}, Defaults{Backend: "fake"}, reg)
	if err == nil {
		t.Fatal("want an error")
	}
	for _, want := range []string{`option "key": the value is 65537 bytes long; the limit is 65536`, "is 300 bytes long; no option name is longer than 269", `option "mode": "0644" grants write permission`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if len(err.Error()) > 1024 {
		t.Errorf("error of %d bytes quotes the oversized input", len(err.Error()))
	}
	if _, err := ParseOptions("v1", map[string]string{"template": `{{ secret "fake" "a" }}` + strings.Repeat(" ", maxOptionValue-23)}, Defaults{Backend: "fake"}, reg); err != nil {
		t.Errorf("a template of 64 KiB: %v", err)
	}
}

func TestValidateFilename(t *testing.T) {
	for _, v := range []string{"db", "db.txt", ".env", "a..b", "ünï", strings.Repeat("f", 255)} {
		if err := validateFilename(v); err != nil {
			t.Errorf("validateFilename(%q) = %v", v, err)
		}
	}
	for v, want := range map[string]string{
		"": "must not be empty", strings.Repeat("f", 256): "longer than 255", "a/b": "without '/'", ".": "reserved", "..data": "reserved",
		"a\nb": "control character", "a\x1b[31m": "control character", "a\x00b": "control character", "a\u0085b": "control character",
	} {
		if err := validateFilename(v); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("validateFilename(%q) = %v, want %q", v, err, want)
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
		{"v1", "file.a", "secret=x,mode=0400"}, {"v1", "file...", "x"}, {"v1", "file.a/b", "x"},
		{"v1", "template.t", `{{ secret "fake" "a" "k" }}`}, {"v1", "key", "*"}, {"v1", "file.x", `a\,b,c`},
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
		if o.Layout != LayoutFile && o.Layout != LayoutDir {
			t.Fatalf("accepted layout %q", o.Layout)
		}
		if o.Layout == LayoutFile && (len(o.Objects) != 1 || o.Objects[0].AllKeys) {
			t.Fatalf("accepted a file layout of %d objects", len(o.Objects))
		}
		for _, obj := range o.Objects {
			if validateFilename(obj.Name) != nil {
				t.Fatalf("accepted unsafe filename %q", obj.Name)
			}
			if obj.Mode&0o222 != 0 || obj.Mode&^os.FileMode(0o777) != 0 {
				t.Fatalf("accepted mode %o", obj.Mode)
			}
			if obj.UID < 0 || obj.GID < 0 {
				t.Fatalf("accepted negative id %d:%d", obj.UID, obj.GID)
			}
		}
	})
}
