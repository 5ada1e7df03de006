package render

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dsv-plugin/dsv/secrets"
)

func TestTemplateParse(t *testing.T) {
	reg := testRegistry(t)
	tmplDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(tmplDir, "app.properties"), []byte("user={{ secret \"fake\" \"db\" \"user\" }}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	def := Defaults{Backend: "fake", Templates: DirTemplates(tmplDir)}
	tests := []struct {
		name     string
		raw      map[string]string
		wantRefs []string
		wantErr  []string
	}{
		{
			name:     "inline template, two backends, one read per secret",
			raw:      map[string]string{"template": `postgres://{{ secret "fake" "db" "user" }}:{{ secret "fake" "db" "password" | urlquery }}@{{ secret "other" "host" }}/app`},
			wantRefs: []string{"fake:db", "other:host"},
		},
		{
			name:     "template file",
			raw:      map[string]string{"template-file": "app.properties"},
			wantRefs: []string{"fake:db"},
		},
		{
			name:     "nested in if and range",
			raw:      map[string]string{"layout": "dir", "template.t": "{{ if true }}{{ range $i, $e := list }}{{ end }}{{ secret \"fake\" \"a\" }}{{ end }}"},
			wantErr:  []string{`option "template.t": template: t:1: function "list" not defined`},
			wantRefs: nil,
		},
		{
			name:    "syntax error names the template and line",
			raw:     map[string]string{"template": "line1\n{{ secret \"fake\" \"db\" "},
			wantErr: []string{`option "template": template: v1:2: unclosed action`},
		},
		{
			name:    "non-constant arguments",
			raw:     map[string]string{"template": "a\nb {{ $x := \"db\" }}{{ secret \"fake\" $x }}"},
			wantErr: []string{`template: v1:2:`, "secret takes quoted strings"},
		},
		{
			// The piped value would be the key, and a missing key's error
			// quotes it: another secret's value in the error.
			name:    "a secret piped into secret",
			raw:     map[string]string{"template": `{{ secret "fake" "a" | secret "fake" "b" }}`},
			wantErr: []string{`template: v1:1:`, "secret cannot take a piped value"},
		},
		{
			name:    "fields of data that templates do not have",
			raw:     map[string]string{"template": `{{ secret "fake" "a" }}{{ .Password }}`},
			wantErr: []string{`template: v1:1:`, ".Password: templates have no data"},
		},
		{
			name:    "unknown backend in a template",
			raw:     map[string]string{"template": `{{ secret "gcp" "db" }}`},
			wantErr: []string{`unknown backend "gcp"`},
		},
		{
			name:    "invalid secret name by the backend's rules",
			raw:     map[string]string{"template": `{{ secret "fake" "invalid-x" }}`},
			wantErr: []string{`"invalid-x" is not a valid name`},
		},
		{
			name:    "no secret",
			raw:     map[string]string{"template": `static text`},
			wantErr: []string{`reads no secret`},
		},
		{
			name:    "template file outside the folder",
			raw:     map[string]string{"template-file": "../etc/passwd"},
			wantErr: []string{`option "template-file": template file "../etc/passwd" must be a clean relative path`},
		},
		{
			name:    "missing template file",
			raw:     map[string]string{"template-file": "nope.tmpl"},
			wantErr: []string{`template file "nope.tmpl" does not exist`},
		},
		{
			name:    "secret with a template",
			raw:     map[string]string{"template": `{{ secret "fake" "a" }}`, "secret": "x"},
			wantErr: []string{`option "secret": does not apply to a template volume`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := ParseOptions("v1", tt.raw, def, reg)
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("ParseOptions() = %+v, want an error", o)
				}
				for _, s := range tt.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not contain %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range o.Objects[0].Template.Refs {
				got = append(got, r.Ref.Backend+":"+r.Ref.Name)
			}
			if strings.Join(got, ",") != strings.Join(tt.wantRefs, ",") {
				t.Fatalf("refs = %v, want %v", got, tt.wantRefs)
			}
		})
	}
}

func TestTemplateRender(t *testing.T) {
	reg := testRegistry(t)
	text := "user={{ secret \"fake\" \"db\" \"user\" }}\npass={{ secret \"fake\" \"db\" \"password\" | urlquery }}\nhost={{ secret \"other\" \"host\" | trim }}\nenv={{ secret \"fake\" \"db\" \"password\" | dotenvQuote }}\n"
	refs, problems := compileTemplate("app.env", text, "fake", nil, reg)
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	tmpl := &Template{Name: "app.env", Text: text, Refs: refs}
	values := map[string]secrets.Secret{
		secrets.Ref{Backend: "fake", Name: "db"}.CacheKey():    {Value: []byte(`{"user":"app","password":"p@ss w/rd"}`)},
		secrets.Ref{Backend: "other", Name: "host"}.CacheKey(): {Value: []byte(" db.internal \n")},
	}
	got, err := renderTemplate(tmpl, text, values, testRenderLimit)
	if err != nil {
		t.Fatal(err)
	}
	want := "user=app\npass=p%40ss+w%2Frd\nhost=db.internal\nenv='p@ss w/rd'\n"
	if string(got) != want {
		t.Fatalf("rendered\n%s\nwant\n%s", got, want)
	}

	// A missing key fails with the template's name and line, and without the value.
	bad := "ok\n{{ secret \"fake\" \"db\" \"nope\" }}"
	refs, _ = compileTemplate("dsn", bad, "fake", nil, reg)
	_, err = renderTemplate(&Template{Name: "dsn", Text: bad, Refs: refs}, bad, values, testRenderLimit)
	if err == nil || !strings.Contains(err.Error(), "dsn:2:") || !strings.Contains(err.Error(), `key "nope"`) {
		t.Fatalf("missing key error = %v", err)
	}
	if strings.Contains(err.Error(), "p@ss") {
		t.Fatalf("error leaks the value: %v", err)
	}
}

// testRenderLimit is the render bound the tests give: the plugin's tmpfs
// size.
const testRenderLimit = 2 << 20

// TestTemplateRenderBounded: a template that writes more than a volume
// holds stops at the bound instead of taking the plugin's memory.
func TestTemplateRenderBounded(t *testing.T) {
	reg := testRegistry(t)
	text := `{{ define "a" }}{{ secret "fake" "db" }}{{ printf "%0999999d" 1 }}{{ template "a" }}{{ end }}{{ template "a" }}`
	refs, problems := compileTemplate("loop", text, "fake", nil, reg)
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	values := map[string]secrets.Secret{secrets.Ref{Backend: "fake", Name: "db"}.CacheKey(): {Value: []byte("v")}}
	out, err := renderTemplate(&Template{Name: "loop", Text: text, Refs: refs}, text, values, testRenderLimit)
	if err == nil || !strings.Contains(err.Error(), `template "loop" renders more than 2048 KiB`) {
		t.Fatalf("renderTemplate() = %d bytes, %v; want the size error", len(out), err)
	}
}

// TestTemplateDefinesAreChecked: the secrets of {{ define }} blocks are
// found and validated at create, as the others are.
func TestTemplateDefinesAreChecked(t *testing.T) {
	reg := testRegistry(t)
	refs, problems := compileTemplate("t", `{{ define "x" }}{{ secret "other" "b" }}{{ end }}{{ secret "fake" "a" }}{{ template "x" }}`, "fake", nil, reg)
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	if len(refs) != 2 || refs[0].Ref.Name != "a" || refs[1].Ref.Name != "b" {
		t.Fatalf("refs = %+v, want a then b", refs)
	}
	_, problems = compileTemplate("t", `{{ define "x" }}{{ secret "fake" "invalid-x" }}{{ end }}{{ secret "fake" "a" }}`, "fake", nil, reg)
	if len(problems) != 1 || !strings.Contains(problems[0].Error(), "template: t:1:") || !strings.Contains(problems[0].Error(), `"invalid-x" is not a valid name`) {
		t.Fatalf("problems = %v, want the define's invalid secret", problems)
	}
}

func TestDirTemplatesStayInside(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "tmpl")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(base, "outside"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../outside", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"link", "../outside", "/etc/passwd", "", "."} {
		if _, err := DirTemplates(dir).ReadTemplate(name); err == nil {
			t.Errorf("ReadTemplate(%q) read outside the folder", name)
		}
	}
}

// TestDirTemplatesRefuseSpecialAndHuge: a FIFO in the templates folder is
// refused at once (it hung docker volume create and the volume's lock), and
// a huge file is refused after reading one byte past the limit, not whole.
func TestDirTemplatesRefuseSpecialAndHuge(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "big"), bytes.Repeat([]byte("x"), maxTemplateSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := DirTemplates(dir).ReadTemplate("fifo")
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("ReadTemplate(fifo) = %v, want a refusal", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ReadTemplate of a FIFO blocks")
	}
	if _, err := DirTemplates(dir).ReadTemplate("big"); err == nil || !strings.Contains(err.Error(), "larger than 64 KiB") {
		t.Errorf("ReadTemplate(big) = %v, want a size refusal", err)
	}
}
