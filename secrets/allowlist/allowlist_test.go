package allowlist

import (
	"context"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/dsv-plugin/dsv/secrets"
)

var backends = []string{"aws", "file", "vault"}

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		spec    string
		wantLen int
		wantErr []string
	}{
		{name: "empty", spec: "", wantLen: 0},
		{name: "only separators", spec: " ,\t, \n", wantLen: 0},
		{name: "one entry", spec: "file:*", wantLen: 1},
		{name: "commas and spaces", spec: "aws:prod/app/*, vault:secret/app/**,vault:database/creds/app file:*", wantLen: 4},
		{name: "newlines and tabs", spec: "aws:a\n\tvault:b", wantLen: 2},
		{name: "duplicates count once", spec: "file:* file:*", wantLen: 1},
		{name: "colons after the first belong to the pattern", spec: "aws:arn:aws:secretsmanager:*:*:secret:prod/*", wantLen: 1},
		{name: "missing colon", spec: "file:* secret/app", wantErr: []string{`ALLOW: entry "secret/app": no BACKEND: before the pattern`}},
		{name: "unknown backend", spec: "gcp:x", wantErr: []string{`entry "gcp:x": unknown backend "gcp"; use one of: aws, file, vault`}},
		{name: "empty backend", spec: ":x", wantErr: []string{`entry ":x": unknown backend ""`}},
		{name: "empty pattern", spec: "vault:", wantErr: []string{`entry "vault:": empty pattern (vault:** allows every object of the backend)`}},
		{name: "invalid UTF-8", spec: "aws:\xff", wantErr: []string{`entry "aws:\xff": not valid UTF-8`}},
		{name: "every bad entry at once", spec: "aws:ok, gcp:x, vault:, nocolon",
			wantErr: []string{`entry "gcp:x"`, `entry "vault:"`, `entry "nocolon"`, "write BACKEND:PATTERN entries"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := Parse(tt.spec, backends)
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("Parse(%q) = %d patterns, want an error", tt.spec, l.Len())
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not contain %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.spec, err)
			}
			if l.Len() != tt.wantLen {
				t.Errorf("Parse(%q).Len() = %d, want %d", tt.spec, l.Len(), tt.wantLen)
			}
		})
	}
}

func TestMatch(t *testing.T) {
	tests := []struct {
		pattern string
		name    string
		want    bool
	}{
		{pattern: "prod/db", name: "prod/db", want: true},
		{pattern: "prod/db", name: "prod/db2", want: false},
		{pattern: "prod/db", name: "x/prod/db", want: false},
		{pattern: "prod/app/*", name: "prod/app/db", want: true},
		{pattern: "prod/app/*", name: "prod/app/", want: true},
		{pattern: "prod/app/*", name: "prod/app/db/password", want: false},
		{pattern: "prod/app/*", name: "prod/app", want: false},
		{pattern: "prod/app/**", name: "prod/app/db/password", want: true},
		{pattern: "prod/app/**", name: "prod/app/db", want: true},
		{pattern: "prod/app/**", name: "prod/app", want: false},
		{pattern: "prod/app/**", name: "prod/application", want: false},
		{pattern: "**", name: "arn:aws:secretsmanager:us-east-1:1:secret:prod/db-AbCdEf", want: true},
		{pattern: "*", name: "db-password", want: true},
		{pattern: "*", name: "app/db-password", want: false},
		{pattern: "*/db", name: "prod/db", want: true},
		{pattern: "*/db", name: "a/b/db", want: false},
		{pattern: "**/db", name: "a/b/db", want: true},
		{pattern: "app-*-db", name: "app-eu-db", want: true},
		{pattern: "app-*-db", name: "app-eu/x-db", want: false},
		{pattern: "db?", name: "db1", want: true},
		{pattern: "db?", name: "db", want: false},
		{pattern: "db?", name: "db12", want: false},
		{pattern: "db?", name: "db/", want: false},
		{pattern: "db?", name: "dbé", want: true}, // one character, not one byte
		{pattern: "***", name: "a/b", want: true},
		// Everything but * and ? is literal, regexp metacharacters included.
		{pattern: "app.json", name: "app.json", want: true},
		{pattern: "app.json", name: "appXjson", want: false},
		{pattern: "a+b", name: "a+b", want: true},
		{pattern: "a+b", name: "aab", want: false},
		{pattern: "[ab]", name: "[ab]", want: true},
		{pattern: "[ab]", name: "a", want: false},
		{pattern: "x{2}", name: "xx", want: false},
		{pattern: "x{2}", name: "x{2}", want: true},
		{pattern: `a\*`, name: `a\b`, want: true}, // no escapes: \ is literal, * a wildcard
		{pattern: "(a|b)$^", name: "(a|b)$^", want: true},
		{pattern: "secret/app/*", name: "secret/app/\n", want: true},
	}
	for _, tt := range tests {
		t.Run(tt.pattern+" "+tt.name, func(t *testing.T) {
			l, err := Parse("aws:"+tt.pattern, backends)
			if err != nil {
				t.Fatal(err)
			}
			err = l.Check(secrets.Ref{Backend: "aws", Name: tt.name})
			if got := err == nil; got != tt.want {
				t.Errorf("%q matches %q = %v (err %v), want %v", tt.pattern, tt.name, got, err, tt.want)
			}
			if got := globMatch(tt.pattern, tt.name); got != tt.want {
				t.Errorf("the reference matcher says %v, want %v: fix the test", got, tt.want)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	l, err := Parse("aws:prod/app/*, vault:secret/app/**, vault:database/creds/app", backends)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		ref     secrets.Ref
		wantErr string // exact; "" = allowed
	}{
		{name: "allowed", ref: secrets.Ref{Backend: "vault", Name: "secret/app/db"}},
		{name: "allowed by the second pattern", ref: secrets.Ref{Backend: "vault", Name: "database/creds/app", Key: "password"}},
		{name: "refused lists the backend's patterns", ref: secrets.Ref{Backend: "vault", Name: "secret/other/db"},
			wantErr: `vault secret "secret/other/db": access denied: not allowed by the plugin's ALLOW setting (allowed for vault: secret/app/**, database/creds/app)`},
		{name: "the key is not part of the decision", ref: secrets.Ref{Backend: "aws", Name: "prod/db", Key: "password"},
			wantErr: `aws secret "prod/db": access denied: not allowed by the plugin's ALLOW setting (allowed for aws: prod/app/*)`},
		{name: "patterns are per backend", ref: secrets.Ref{Backend: "aws", Name: "secret/app/db"},
			wantErr: `aws secret "secret/app/db": access denied: not allowed by the plugin's ALLOW setting (allowed for aws: prod/app/*)`},
		{name: "a backend without patterns is closed", ref: secrets.Ref{Backend: "file", Name: "db-password"},
			wantErr: `file secret "db-password": access denied: not allowed by the plugin's ALLOW setting (ALLOW has no pattern for the file backend)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := l.Check(tt.ref)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Check(%v) = %v, want allowed", tt.ref, err)
				}
				return
			}
			if err == nil || err.Error() != tt.wantErr {
				t.Fatalf("Check(%v) = %v\nwant %s", tt.ref, err, tt.wantErr)
			}
			if !errors.Is(err, secrets.ErrAccessDenied) || !errors.Is(err, ErrNotAllowed) {
				t.Errorf("error %v is not access denied and not allowed", err)
			}
		})
	}
}

func TestEmptyAllowsAll(t *testing.T) {
	var nilList *List
	empty, err := Parse("", backends)
	if err != nil {
		t.Fatal(err)
	}
	ref := secrets.Ref{Backend: "vault", Name: "anything/at/all"}
	for name, l := range map[string]*List{"nil": nilList, "empty": empty} {
		if err := l.Check(ref); err != nil {
			t.Errorf("%s list: Check = %v, want allowed", name, err)
		}
		if err := l.CheckAll([]secrets.Ref{ref}); err != nil {
			t.Errorf("%s list: CheckAll = %v, want allowed", name, err)
		}
	}
}

func TestCheckAll(t *testing.T) {
	l, err := Parse("file:app/*", backends)
	if err != nil {
		t.Fatal(err)
	}
	refs := []secrets.Ref{
		{Backend: "file", Name: "app/db"},
		{Backend: "file", Name: "other/db", Key: "user"},
		{Backend: "file", Name: "other/db", Key: "password"},
		{Backend: "aws", Name: "prod/db"},
	}
	err = l.CheckAll(refs)
	want := `file secret "other/db": access denied: not allowed by the plugin's ALLOW setting (allowed for file: app/*); ` +
		`aws secret "prod/db": access denied: not allowed by the plugin's ALLOW setting (ALLOW has no pattern for the aws backend)`
	if err == nil || err.Error() != want {
		t.Fatalf("CheckAll = %v\nwant %s", err, want)
	}
	if !errors.Is(err, secrets.ErrAccessDenied) || !errors.Is(err, ErrNotAllowed) {
		t.Errorf("error %v is not access denied and not allowed", err)
	}
	if err := l.CheckAll(refs[:1]); err != nil {
		t.Errorf("CheckAll of allowed refs = %v", err)
	}
}

// globMatch is a reference matcher, written independently of the regexp
// translation: dynamic programming over runes.
func globMatch(pattern, name string) bool {
	p, s := []rune(pattern), []rune(name)
	// ok[j] is whether p[:i] matches s[:j], for the current i.
	ok := make([]bool, len(s)+1)
	ok[0] = true
	for i := 0; i < len(p); i++ {
		next := make([]bool, len(s)+1)
		switch {
		case p[i] == '*' && i+1 < len(p) && p[i+1] == '*':
			for j := range ok {
				next[j] = ok[j] || (j > 0 && next[j-1])
			}
			i++
		case p[i] == '*':
			for j := range ok {
				next[j] = ok[j] || (j > 0 && s[j-1] != '/' && next[j-1])
			}
		case p[i] == '?':
			for j := 1; j <= len(s); j++ {
				next[j] = ok[j-1] && s[j-1] != '/'
			}
		default:
			for j := 1; j <= len(s); j++ {
				next[j] = ok[j-1] && s[j-1] == p[i]
			}
		}
		ok = next
	}
	return ok[len(s)]
}

// FuzzAllowList: any spec parses or is refused without a panic; a parsed
// list decides like the reference matcher, refuses with ErrAccessDenied
// naming the object, and allows a literal pattern's own text.
func FuzzAllowList(f *testing.F) {
	f.Add("aws:prod/app/*, vault:secret/app/**", "vault", "secret/app/db")
	f.Add("file:*", "file", "db-password")
	f.Add("file:*", "file", "app/db-password")
	f.Add("aws:db?", "aws", "db1")
	f.Add("aws:a.b+c[d]", "aws", "a.b+c[d]")
	f.Add("vault:***", "vault", "a/b/c")
	f.Add("gcp:x", "gcp", "x")
	f.Add("vault:", "vault", "")
	f.Add("nocolon", "file", "nocolon")
	f.Add("", "aws", "anything")
	f.Add("aws:\xff", "aws", "\xff")
	f.Fuzz(func(t *testing.T, spec, backend, name string) {
		l, err := Parse(spec, backends)
		if err != nil {
			if l != nil {
				t.Fatalf("Parse(%q) returned a list and an error", spec)
			}
			if !strings.HasPrefix(err.Error(), "ALLOW: entry ") {
				t.Fatalf("Parse(%q) error %q does not name the setting and the entry", spec, err)
			}
			return
		}
		ref := secrets.Ref{Backend: backend, Name: name}
		err = l.Check(ref)
		if l.Len() == 0 {
			if err != nil {
				t.Fatalf("an empty list refused %v: %v", ref, err)
			}
			return
		}
		want := false
		for _, p := range l.patterns[backend] {
			if utf8.ValidString(name) && globMatch(p.text, name) {
				want = true
			}
			if !strings.ContainsAny(p.text, "*?") && p.text == name && err != nil {
				t.Fatalf("literal pattern %q refused its own text: %v", p.text, err)
			}
		}
		if utf8.ValidString(name) && want != (err == nil) {
			t.Fatalf("Check(%v) = %v, the reference matcher says allowed=%v", ref, err, want)
		}
		if err != nil {
			if !errors.Is(err, secrets.ErrAccessDenied) || !errors.Is(err, ErrNotAllowed) {
				t.Fatalf("refusal %v is not access denied", err)
			}
			if !strings.Contains(err.Error(), ref.String()) {
				t.Fatalf("refusal %q does not name %s", err, ref)
			}
		}
	})
}

// TestARNsMatchOnlyARNPatterns: '*' also matches ':', so a name pattern
// would match the ARN of a secret of any account and region: an ARN is
// matched by ARN patterns (or **) only.
func TestARNsMatchOnlyARNPatterns(t *testing.T) {
	other := "arn:aws:secretsmanager:eu-west-1:999999999999:secret:db-public"
	for _, tt := range []struct {
		spec, name string
		want       bool
	}{
		{"aws:*-public", other, false},
		{"aws:*-public", "db-public", true},
		{"aws:**", other, true},
		{"aws:arn:aws:secretsmanager:*:123456789012:secret:*", other, false},
		{"aws:arn:aws:secretsmanager:*:999999999999:secret:*", other, true},
	} {
		l, err := Parse(tt.spec, backends)
		if err != nil {
			t.Fatal(err)
		}
		if got := l.Check(secrets.Ref{Backend: "aws", Name: tt.name}) == nil; got != tt.want {
			t.Errorf("%s allows %s = %v, want %v", tt.spec, tt.name, got, tt.want)
		}
	}
}

// canonicalBackend names secret/data/X as secret/X, as Vault KV v2 does.
type canonicalBackend struct{ calls int }

func (b *canonicalBackend) Name() string               { return "vault" }
func (b *canonicalBackend) Validate(secrets.Ref) error { return nil }
func (b *canonicalBackend) Fetch(context.Context, secrets.Ref) (secrets.Secret, error) {
	return secrets.Secret{}, errors.New("not read in this test")
}
func (b *canonicalBackend) Canonical(_ context.Context, ref secrets.Ref) (string, error) {
	b.calls++
	if rest, ok := strings.CutPrefix(ref.Name, "secret/data/"); ok {
		return "secret/" + rest, nil
	}
	return ref.Name, nil
}

// TestCheckAllReadJudgesTheCanonicalName: secret/data/db matches a pattern
// meant for secret/*/db as written, but is the object secret/db.
func TestCheckAllReadJudgesTheCanonicalName(t *testing.T) {
	b := &canonicalBackend{}
	reg, err := secrets.NewRegistry(b)
	if err != nil {
		t.Fatal(err)
	}
	l, err := Parse("vault:secret/*/db vault:secret/data/app/*", backends)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	err = l.CheckAllRead(ctx, reg, []secrets.Ref{{Backend: "vault", Name: "secret/data/db"}})
	if !errors.Is(err, secrets.ErrAccessDenied) || !strings.Contains(err.Error(), `"secret/data/db" is the object "secret/db"`) {
		t.Fatalf("secret/data/db under secret/*/db: %v", err)
	}
	// The logical name, allowed as written.
	if err := l.CheckAllRead(ctx, reg, []secrets.Ref{{Backend: "vault", Name: "secret/app/db"}}); err != nil {
		t.Fatalf("secret/app/db: %v", err)
	}
	// No ALLOW: nothing is asked of the backend.
	b.calls = 0
	var none *List
	if err := none.CheckAllRead(ctx, reg, []secrets.Ref{{Backend: "vault", Name: "secret/data/db"}}); err != nil || b.calls != 0 {
		t.Fatalf("without ALLOW: %v, %d lookups", err, b.calls)
	}
}
