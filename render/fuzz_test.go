package render

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"unicode"

	"github.com/dsv-plugin/dsv/secrets"
)

// encodeSpec writes a file.NAME spec that parseSpec reads back as m.
func encodeSpec(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, strings.ReplaceAll(k, ",", `\,`)+"="+strings.ReplaceAll(m[k], ",", `\,`))
	}
	return strings.Join(parts, ",")
}

// FuzzParseSpec: the file.NAME spec parser never panics, gives trimmed
// non-empty keys, reads a bare name as the secret, and reads back what
// encodeSpec wrote (a value may not end in a backslash: `\,` is a comma).
func FuzzParseSpec(f *testing.F) {
	for _, s := range []string{
		"prod/db", "secret=prod/db,key=password", `secret=a\,b,key=c`, "secret=db,", "=x", ",", "",
		"secret=a,secret=b", " key = v ", `a\`, `secret=x\\,key=y`, "secret=a=b", "param.x=1,param.y=2",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		m, err := parseSpec(v)
		if err != nil {
			if m != nil {
				t.Fatalf("parseSpec(%q) = %v and an error", v, m)
			}
			return
		}
		if len(m) == 0 {
			t.Fatalf("parseSpec(%q) = an empty spec without an error", v)
		}
		if !strings.Contains(v, "=") {
			if len(m) != 1 || m[secrets.OptSecret] != strings.ReplaceAll(v, `\,`, ",") {
				t.Fatalf("parseSpec(%q) = %v, want the bare secret name", v, m)
			}
			return
		}
		for k, val := range m {
			if k == "" || strings.TrimSpace(k) != k {
				t.Fatalf("parseSpec(%q) gave key %q", v, k)
			}
			if strings.ContainsAny(k, "=\\") || strings.HasSuffix(val, `\`) {
				return // not representable by encodeSpec
			}
		}
		back, err := parseSpec(encodeSpec(m))
		if err != nil || len(back) != len(m) {
			t.Fatalf("parseSpec(encodeSpec(%v)) = %v, %v", m, back, err)
		}
		for k, val := range m {
			if back[k] != val {
				t.Fatalf("parseSpec(encodeSpec(%v))[%q] = %q, want %q", m, k, back[k], val)
			}
		}
	})
}

// FuzzFileObjects: a directory volume of file.NAME, template.NAME and
// template-file.NAME options, with one volume-level option, is either
// refused or safe: a directory of distinct, valid, read-only files whose
// secrets all belong to a known backend.
func FuzzFileObjects(f *testing.F) {
	f.Add("file.db", "secret=db,key=password", "template.dsn", `{{ secret "fake" "db" "user" }}`, "mode", "0400")
	f.Add("file.a", "db", "file.b", "secret=db,key=*", "uid", "1000")
	f.Add("file...", "db", "file./x", "db", "layout", "file")
	f.Add("file.a", `secret=x\,y,format=dotenv`, "template.a", `{{ secret "other" "h" }}`, "format", "json")
	f.Add("template-file.c", "app.tmpl", "template.d", "{{ define \"x\" }}{{ secret \"fake\" \"invalid\" }}{{ end }}", "secret", "x")
	f.Add("file.a\n", "db", "file.b", "secret=db,mode=0644", "refresh", "1s")
	reg := testRegistry(f)
	dir := f.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "app.tmpl"), []byte(`{{ secret "fake" "t" }}`), 0o600); err != nil {
		f.Fatal(err)
	}
	def := Defaults{Backend: "fake", Templates: DirTemplates(dir)}
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2, k3, v3 string) {
		raw := map[string]string{k1: v1, k2: v2, k3: v3}
		o, err := ParseOptions("vol", raw, def, reg)
		if err != nil {
			if len(err.Error()) > 64<<10 {
				t.Fatalf("error of %d bytes", len(err.Error()))
			}
			return
		}
		multi := false
		for k := range raw {
			if strings.HasPrefix(k, prefixFile) || strings.HasPrefix(k, prefixTemplate) || strings.HasPrefix(k, prefixTemplateFile) {
				multi = true
			}
		}
		if multi && o.Layout != LayoutDir {
			t.Fatalf("accepted layout %q for %v", o.Layout, raw)
		}
		names := map[string]bool{}
		for _, obj := range o.Objects {
			if validateFilename(obj.Name) != nil || names[obj.Name] {
				t.Fatalf("accepted file name %q (twice: %v) for %v", obj.Name, names[obj.Name], raw)
			}
			names[obj.Name] = true
			if obj.Mode&0o222 != 0 || obj.Mode&^os.FileMode(0o777) != 0 || obj.UID < 0 || obj.GID < 0 {
				t.Fatalf("accepted %04o %d:%d for %v", obj.Mode, obj.UID, obj.GID, raw)
			}
			refs := []secrets.Ref{obj.Ref}
			if obj.Template != nil {
				refs = refs[:0]
				for _, r := range obj.Template.Refs {
					refs = append(refs, r.Ref)
				}
				if len(refs) == 0 {
					t.Fatalf("accepted template %q without secrets", obj.Name)
				}
			}
			for _, r := range refs {
				if _, ok := reg.Get(r.Backend); !ok {
					t.Fatalf("accepted backend %q for %v", r.Backend, raw)
				}
			}
		}
	})
}

// FuzzCompileTemplate: compiling any text never panics and every problem
// names the template; a template that compiles declares every secret it
// reads, so rendering it with those secrets fails, if at all, for the
// values' sake (a missing key), never for a secret found only at mount,
// and never holds more than a volume does.
func FuzzCompileTemplate(f *testing.F) {
	for _, s := range []string{
		`{{ secret "fake" "db" "password" }}`,
		`postgres://{{ secret "fake" "db" "user" }}:{{ secret "fake" "db" "password" | urlquery }}@{{ secret "other" "host" }}/app`,
		`{{ define "x" }}{{ secret "other" "b" }}{{ end }}{{ template "x" }}{{ secret "fake" "a" }}`,
		`{{ block "b" . }}{{ secret "fake" "a" }}{{ end }}`,
		`{{ with secret "fake" "a" }}{{ . | b64enc }}{{ else }}none{{ end }}`,
		`{{ $x := secret "fake" "a" "k" }}{{ $x | upper }}{{ if eq $x "v" }}yes{{ end }}`,
		`{{ secret "fake" "a" | toJSON }}{{ "k" | secret "fake" "a" }}`,
		`{{ .X }}`, `{{ range 3 }}{{ end }}`, `{{ template "nope" }}`, `{{ print secret }}`,
		`{{ secret "fake" }}`, `{{ secret "gcp" "x" }}`, "{{ secret \"fake\" \"a\" ", `{{/* c */}}`,
		`{{ define "a" }}{{ template "a" }}{{ end }}{{ template "a" }}{{ secret "fake" "x" }}`,
		`{{ (secret "fake" "a").X }}`, `{{ $y := "a" }}{{ $y.Z }}`,
		`{{secret "fake" "0"|secret "fake" "0"}}`, // found: the value became a key, quoted by the error
	} {
		f.Add(s)
	}
	reg := testRegistry(f)
	const canary = "fuzz-canary-value"
	f.Fuzz(func(t *testing.T, text string) {
		refs, problems := compileTemplate("tmpl", text, "fake", nil, reg)
		if len(problems) > 0 {
			for _, p := range problems {
				if !strings.Contains(p.Error(), "tmpl") {
					t.Fatalf("problem %q does not name the template", p)
				}
			}
			return
		}
		if len(refs) == 0 {
			t.Fatalf("compiled %q without secrets and without a problem", text)
		}
		values := map[string]secrets.Secret{}
		for _, r := range refs {
			if _, ok := reg.Get(r.Ref.Backend); !ok {
				t.Fatalf("compiled %q with backend %q", text, r.Ref.Backend)
			}
			values[r.Ref.CacheKey()] = secrets.Secret{Value: []byte(`{"k":"` + canary + `"}`)}
		}
		out, err := renderTemplate(&Template{Name: "tmpl", Text: text, Refs: refs}, text, values, testRenderLimit)
		if len(out) > testRenderLimit {
			t.Fatalf("rendered %d bytes", len(out))
		}
		if err == nil {
			return
		}
		for _, s := range []string{"not one the template declared", "was not fetched"} {
			if strings.Contains(err.Error(), s) {
				t.Fatalf("%q compiled, but its render reads undeclared secrets: %v", text, err)
			}
		}
		if strings.Contains(err.Error(), canary) && !strings.Contains(text, canary) {
			t.Fatalf("render error holds a value: %v", err)
		}
	})
}

// FuzzValidateVolumeName: an accepted name is one safe path segment that
// the docker CLI reads as a volume, not as a drive letter or a path.
func FuzzValidateVolumeName(f *testing.F) {
	for _, s := range []string{"db", "a", "..", "a/b", "-x", "x\n", "é", strings.Repeat("v", 256), "ab:cd", "ab\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := ValidateVolumeName(name)
		if err != nil {
			if len(err.Error()) > 1024 {
				t.Fatalf("error of %d bytes", len(err.Error()))
			}
			return
		}
		if len(name) < 2 || len(name) > 255 || filepath.Base(name) != name || name == ".." ||
			strings.ContainsAny(name, "/:\\ ") || strings.IndexFunc(name, unicode.IsControl) >= 0 {
			t.Fatalf("accepted volume name %q", name)
		}
		first := rune(name[0])
		if !unicode.IsLetter(first) && !unicode.IsDigit(first) {
			t.Fatalf("accepted volume name %q", name)
		}
	})
}

// FuzzReadTemplate: whatever name a template-file option gives, the
// templates folder's reader never returns a file from outside it.
func FuzzReadTemplate(f *testing.F) {
	for _, s := range []string{"app.tmpl", "sub/x.tmpl", "../outside", "link", "sub/../app.tmpl", "/etc/passwd", "", ".", "sub/", "linkdir/outside"} {
		f.Add(s)
	}
	base := f.TempDir()
	dir := filepath.Join(base, "templates")
	for _, d := range []string{dir, filepath.Join(dir, "sub")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			f.Fatal(err)
		}
	}
	const outside = "outside-the-folder"
	for p, content := range map[string]string{
		filepath.Join(base, "outside"):      outside,
		filepath.Join(dir, "app.tmpl"):      "inside",
		filepath.Join(dir, "sub", "x.tmpl"): "inside",
	} {
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			f.Fatal(err)
		}
	}
	for link, target := range map[string]string{"link": "../outside", "linkdir": "..", "abs": filepath.Join(base, "outside")} {
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			f.Fatal(err)
		}
	}
	src := DirTemplates(dir)
	f.Fuzz(func(t *testing.T, name string) {
		text, err := src.ReadTemplate(name)
		if err == nil && text != "inside" {
			t.Fatalf("ReadTemplate(%q) = %q", name, text)
		}
		if err != nil && strings.Contains(err.Error(), outside) {
			t.Fatalf("ReadTemplate(%q) error holds the outside file: %v", name, err)
		}
	})
}

// FuzzApplyFormat: formatting any value never panics, writes valid JSON for
// format=json, and never quotes the value in an error: a canary planted in
// it shows up only as a key name (dotenv names the keys it refuses).
func FuzzApplyFormat(f *testing.F) {
	for _, s := range [][2]string{
		{`{"A":"`, `","b":1}`}, {`{"1x":"`, `"}`}, {`"`, `"`}, {"c2VjcmV0", ""}, {"not base64!", ""},
		{`{"A":null,"B":{"c":["`, `"]}}`}, {"ÿþ", ""}, {`{"A":"it's
`, `"}`}, {`{"`, `":1}`},
	} {
		for i := range Formats() {
			f.Add(uint8(i), s[0], s[1])
		}
	}
	const canary = "fuzz-canary-7c1e"
	f.Fuzz(func(t *testing.T, n uint8, before, after string) {
		format := Formats()[int(n)%len(Formats())] // options allow no other
		value := []byte(before + canary + after)
		out, err := applyFormat(format, value)
		if err != nil {
			if !strings.Contains(err.Error(), canary) {
				return
			}
			var obj map[string]json.RawMessage
			_ = json.Unmarshal(value, &obj)
			for k := range obj {
				if strings.Contains(fmt.Sprintf("%q", k), canary) {
					return // keys may be named
				}
			}
			t.Fatalf("applyFormat(%q) error quotes the value: %v", format, err)
		}
		if format == FormatJSON && !json.Valid(out) {
			t.Fatalf("format=json wrote invalid JSON %q", out)
		}
	})
}
