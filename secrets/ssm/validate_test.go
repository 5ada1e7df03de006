package ssm

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/dsv-plugin/dsv/secrets"
)

const testARN = "arn:aws:ssm:eu-west-1:123456789012:parameter/prod/db"

// problems splits a Validate error into its joined parts.
func problems(err error) []string {
	if err == nil {
		return nil
	}
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) {
		return []string{err.Error()}
	}
	var out []string
	for _, e := range joined.Unwrap() {
		out = append(out, e.Error())
	}
	return out
}

func TestValidate(t *testing.T) {
	rec := func(v string) map[string]string { return map[string]string{OptRecursive: v} }
	tests := []struct {
		name string
		ref  secrets.Ref
		// want holds one substring per expected problem, in order.
		want []string
	}{
		{name: "hierarchical name", ref: secrets.Ref{Name: "/prod/db/password"}},
		{name: "plain name", ref: secrets.Ref{Name: "db_password-1.x"}},
		{name: "arn", ref: secrets.Ref{Name: testARN}},
		{name: "arn of a plain name", ref: secrets.Ref{Name: "arn:aws-us-gov:ssm:us-gov-west-1:123456789012:parameter/db"}},
		{name: "arn with its own region", ref: secrets.Ref{Name: testARN, Region: "eu-west-1"}},
		{name: "path", ref: secrets.Ref{Name: "/prod/app/"}},
		{name: "root", ref: secrets.Ref{Name: "/"}},
		{name: "recursive path", ref: secrets.Ref{Name: "/prod/app/", Params: rec("true")}},
		{name: "path with key", ref: secrets.Ref{Name: "/prod/app/", Key: "db"}},
		{name: "version", ref: secrets.Ref{Name: "/db", VersionID: "3"}},
		{name: "label", ref: secrets.Ref{Name: "/db", VersionStage: "blue-1.x_y"}},
		{name: "secrets manager reference", ref: secrets.Ref{Name: "/aws/reference/secretsmanager/prod/db+x@y=z"}},
		{name: "every option", ref: secrets.Ref{Name: "/db", Key: "k", VersionStage: "blue", Region: "eu-central-1"}},
		{name: "missing", ref: secrets.Ref{}, want: []string{`option "secret" is required`}},
		{name: "space", ref: secrets.Ref{Name: "/prod db"}, want: []string{`option "secret": "/prod db" is not a parameter name`}},
		{name: "no leading slash", ref: secrets.Ref{Name: "prod/db"}, want: []string{`a name with '/' starts with '/'`}},
		{name: "empty level", ref: secrets.Ref{Name: "/prod//db"}, want: []string{`no empty level`}},
		{name: "too deep", ref: secrets.Ref{Name: strings.Repeat("/a", 16)}, want: []string{"has 16 levels; Parameter Store allows 15"}},
		{name: "too long", ref: secrets.Ref{Name: "/" + strings.Repeat("a", 2048)}, want: []string{"longer than 2048"}},
		{name: "plus outside the reference prefix", ref: secrets.Ref{Name: "/prod/db+x"}, want: []string{"is not a parameter name"}},
		{name: "relative path", ref: secrets.Ref{Name: "prod/app/"}, want: []string{"a path starts with '/'"}},
		{name: "path with empty level", ref: secrets.Ref{Name: "/prod//"}, want: []string{"the path"}},
		{name: "path with a selector", ref: secrets.Ref{Name: "/prod/app:3/"}, want: []string{"takes no selector"}},
		{name: "path with a version", ref: secrets.Ref{Name: "/prod/app/", VersionID: "3"}, want: []string{`option "version-id": a path reads the current version`}},
		{name: "path with a label", ref: secrets.Ref{Name: "/prod/app/", VersionStage: "blue"}, want: []string{`option "version-stage": a path reads the current version`}},
		{name: "path arn", ref: secrets.Ref{Name: "arn:aws:ssm:eu-west-1:123456789012:parameter/prod/"}, want: []string{"a path cannot be an ARN"}},
		{name: "bad arn", ref: secrets.Ref{Name: "arn:aws:secretsmanager:eu-west-1:123456789012:secret:x"}, want: []string{"is not a Parameter Store ARN"}},
		{name: "arn region", ref: secrets.Ref{Name: "arn:aws:ssm:mars:123456789012:parameter/db"}, want: []string{`the ARN's region "mars"`}},
		{name: "arn region differs", ref: secrets.Ref{Name: testARN, Region: "us-east-1"}, want: []string{`option "region": "us-east-1" differs from the region "eu-west-1"`}},
		{name: "bad region", ref: secrets.Ref{Name: "/db", Region: "Europe"}, want: []string{`option "region": "Europe" is not an AWS region`}},
		{name: "selector and option", ref: secrets.Ref{Name: "/db:3", VersionID: "4"}, want: []string{`has a selector (:3) and the version-id option is given too`}},
		{name: "bad selector", ref: secrets.Ref{Name: "/db:3x"}, want: []string{`the selector "3x" after ':' is neither a version`}},
		{name: "empty selector", ref: secrets.Ref{Name: "/db:"}, want: []string{`the selector "" after ':'`}},
		{name: "version and label", ref: secrets.Ref{Name: "/db", VersionID: "1", VersionStage: "blue"}, want: []string{`option "version-stage": a parameter version is chosen by number`}},
		{name: "bad version", ref: secrets.Ref{Name: "/db", VersionID: "0"}, want: []string{`option "version-id": "0" is not a parameter version`}},
		{name: "uuid version", ref: secrets.Ref{Name: "/db", VersionID: "EXAMPLE1-90ab-cdef-fedc-ba987EXAMPLE"}, want: []string{`option "version-id"`}},
		{name: "aws label", ref: secrets.Ref{Name: "/db", VersionStage: "AWSCURRENT"}, want: []string{`option "version-stage": "AWSCURRENT" is not a parameter label`}},
		{name: "ssm label", ref: secrets.Ref{Name: "/db", VersionStage: "ssm-x"}, want: []string{`is not a parameter label`}},
		{name: "long label", ref: secrets.Ref{Name: "/db", VersionStage: strings.Repeat("a", 101)}, want: []string{`is not a parameter label`}},
		{name: "recursive on a parameter", ref: secrets.Ref{Name: "/db", Params: rec("true")}, want: []string{`option "recursive": applies to a path`}},
		{name: "recursive not a bool", ref: secrets.Ref{Name: "/app/", Params: rec("yes please")}, want: []string{`option "recursive": "yes please": use true or false`}},
		{
			name: "every problem at once",
			ref:  secrets.Ref{Name: "/a b", VersionID: "x", Region: "nowhere", Params: rec("1x")},
			want: []string{`option "secret"`, `option "version-id"`, `option "recursive"`, `option "region"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := New(Config{})
			got := problems(d.Validate(tt.ref))
			if len(got) != len(tt.want) {
				t.Fatalf("Validate() problems = %q, want %d matching %q", got, len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("problem %d = %q, want it to contain %q", i, got[i], w)
				}
			}
		})
	}
}

func TestNormalize(t *testing.T) {
	tests := []struct {
		name string
		in   secrets.Ref
		want secrets.Ref
	}{
		{name: "version", in: secrets.Ref{Name: "/db:3"}, want: secrets.Ref{Name: "/db", VersionID: "3"}},
		{name: "label", in: secrets.Ref{Name: "/db:blue"}, want: secrets.Ref{Name: "/db", VersionStage: "blue"}},
		{name: "arn version", in: secrets.Ref{Name: testARN + ":7"}, want: secrets.Ref{Name: testARN, VersionID: "7"}},
		{name: "no selector", in: secrets.Ref{Name: "/db"}, want: secrets.Ref{Name: "/db"}},
		{name: "arn without selector", in: secrets.Ref{Name: testARN}, want: secrets.Ref{Name: testARN}},
		{name: "option too: left for Validate", in: secrets.Ref{Name: "/db:3", VersionStage: "b"}, want: secrets.Ref{Name: "/db:3", VersionStage: "b"}},
		{name: "bad selector: left for Validate", in: secrets.Ref{Name: "/db:aws1"}, want: secrets.Ref{Name: "/db:aws1"}},
		{name: "empty selector", in: secrets.Ref{Name: "/db:"}, want: secrets.Ref{Name: "/db:"}},
	}
	d := New(Config{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := d.Normalize(tt.in)
			if got.Name != tt.want.Name || got.VersionID != tt.want.VersionID || got.VersionStage != tt.want.VersionStage {
				t.Errorf("Normalize(%+v) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

// TestParseRef runs the backend through the option parser volumes and Swarm
// labels use: the selector and the options are one spelling.
func TestParseRef(t *testing.T) {
	reg, err := secrets.NewRegistry(New(Config{}))
	if err != nil {
		t.Fatal(err)
	}
	for _, raw := range []map[string]string{
		{"secret": "/prod/db:3"},
		{"secret": "/prod/db", "version-id": "3"},
	} {
		ref, rest, errs := secrets.ParseRef("vol", raw, Name, reg)
		if len(errs) > 0 || len(rest) > 0 {
			t.Fatalf("ParseRef(%v) = %v, %v", raw, rest, errs)
		}
		if ref.Name != "/prod/db" || ref.VersionID != "3" {
			t.Errorf("ParseRef(%v) = %+v, want /prod/db version 3", raw, ref)
		}
	}
	ref, _, errs := secrets.ParseRef("vol", map[string]string{"secret": "/prod/app/", "recursive": "true"}, Name, reg)
	if len(errs) > 0 || ref.Params[OptRecursive] != "true" || !reg.IsCollection(ref) {
		t.Errorf("ParseRef of a recursive path = %+v, %v; want a collection with recursive=true", ref, errs)
	}
}

// FuzzValidate feeds arbitrary names and options through Normalize and
// Validate: no panic, each problem names an option and stays short, and a
// valid reference asks AWS for a name that Validate also accepts.
func FuzzValidate(f *testing.F) {
	for _, seed := range [][4]string{
		{"/prod/db/password", "", "", ""},
		{"/prod/db:3", "", "", ""},
		{"/prod/db:blue", "", "", ""},
		{"/prod/app/", "", "", "true"},
		{testARN + ":2", "", "", ""},
		{"arn:aws:ssm:eu-west-1:123456789012:parameter/prod/", "", "", ""},
		{"/db", "0", "aws", "x"},
		{"/a:b:c", "1", "", ""},
		{"/" + strings.Repeat("a/", 20), "", "", "false"},
		{"\xff/\x00:", "", "\n", ""},
	} {
		f.Add(seed[0], seed[1], seed[2], seed[3])
	}
	d := New(Config{})
	f.Fuzz(func(t *testing.T, name, version, stage, rec string) {
		ref := secrets.Ref{Backend: Name, Name: name, VersionID: version, VersionStage: stage}
		if rec != "" {
			ref.Params = map[string]string{OptRecursive: rec}
		}
		norm := d.Normalize(ref)
		if again := d.Normalize(norm); again.Name != norm.Name || again.VersionID != norm.VersionID || again.VersionStage != norm.VersionStage {
			t.Fatalf("Normalize is not idempotent: %+v then %+v", norm, again)
		}
		err := d.Validate(norm)
		for _, p := range problems(err) {
			if !strings.HasPrefix(p, `option "`) {
				t.Errorf("problem %q does not name an option", p)
			}
			if len(p) > 1024 {
				t.Errorf("problem is %d bytes long", len(p))
			}
		}
		if err != nil {
			return
		}
		if !utf8.ValidString(norm.Name) || strings.ContainsAny(norm.Name, " \n\x00") {
			t.Errorf("Validate accepted the name %q", norm.Name)
		}
		if isPath(norm.Name) {
			if norm.VersionID != "" || norm.VersionStage != "" {
				t.Errorf("a path was accepted with a version: %+v", norm)
			}
			return
		}
		// The name GetParameter gets, split again, is the same reference.
		again := d.Normalize(secrets.Ref{Backend: Name, Name: selectorName(norm), Params: norm.Params})
		if again.Name != norm.Name || again.VersionID != norm.VersionID || again.VersionStage != norm.VersionStage {
			t.Errorf("selectorName(%+v) = %q reads back as %+v", norm, selectorName(norm), again)
		}
	})
}
