package render

import (
	"strings"
	"testing"
)

func TestDotenvQuoting(t *testing.T) {
	tests := []struct {
		name  string
		value string
		want  string
	}{
		{name: "plain", value: "abc-123_./:@%+,=", want: "abc-123_./:@%+,="},
		{name: "empty", value: "", want: "''"},
		{name: "space", value: "a b", want: "'a b'"},
		{name: "dollar stays literal", value: "pa$$word${HOME}", want: "'pa$$word${HOME}'"},
		{name: "hash is not a comment", value: "a#b", want: "'a#b'"},
		{name: "double quote", value: `say "hi"`, want: `'say "hi"'`},
		{name: "backslash", value: `C:\path`, want: `'C:\path'`},
		{name: "unicode", value: "päss wörd ✓", want: "'päss wörd ✓'"},
		{name: "single quote", value: "it's", want: `"it's"`},
		{name: "newline", value: "line1\nline2", want: `"line1\nline2"`},
		{name: "newline with specials", value: "a\"b\\c$d\r\n'e", want: `"a\"b\\c\$d\r\n'e"`},
		{name: "backquote with a single quote", value: "it's `id`", want: "\"it's \\`id\\`\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := dotenvQuote(tt.value)
			if got != tt.want {
				t.Fatalf("dotenvQuote(%q) = %s, want %s", tt.value, got, tt.want)
			}
			if back := dotenvUnquote(t, got); back != tt.value {
				t.Fatalf("a dotenv loader reads %s back as %q, want %q", got, back, tt.value)
			}
		})
	}
}

// dotenvUnquote is what dotenv loaders (godotenv, python-dotenv, node
// dotenv) do with the three forms dotenvQuote writes.
func dotenvUnquote(t testing.TB, s string) string {
	t.Helper()
	switch {
	case len(s) >= 2 && s[0] == '\'' && s[len(s)-1] == '\'':
		return s[1 : len(s)-1]
	case len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"':
		var b strings.Builder
		in := s[1 : len(s)-1]
		for i := 0; i < len(in); i++ {
			if in[i] == '\\' && i+1 < len(in) {
				i++
				switch in[i] {
				case 'n':
					b.WriteByte('\n')
				case 'r':
					b.WriteByte('\r')
				default:
					b.WriteByte(in[i])
				}
				continue
			}
			if in[i] == '"' || in[i] == '$' || in[i] == '`' {
				t.Fatalf("unescaped %q inside double quotes: %s", in[i], s)
			}
			b.WriteByte(in[i])
		}
		return b.String()
	default:
		if strings.ContainsAny(s, " #$'\"\\\n") {
			t.Fatalf("bare value with specials: %s", s)
		}
		return s
	}
}

func FuzzDotenvQuote(f *testing.F) {
	for _, s := range []string{"", "a", "a b", "it's", "a\nb", `"$x"`, "\\", "'\n'", "#", "ü"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		q := dotenvQuote(s)
		if strings.ContainsAny(q, "\n") {
			t.Fatalf("quoted value spans lines: %q", q)
		}
		if back := dotenvUnquote(t, q); back != s {
			t.Fatalf("%q quoted as %s reads back as %q", s, q, back)
		}
	})
}

func TestDotenvDocument(t *testing.T) {
	got, err := applyFormat(FormatDotenv, []byte(`{"DB_USER":"app","DB_PASS":"p w'\n","PORT":5432,"EMPTY":null,"OBJ":{"a":1}}`))
	if err != nil {
		t.Fatal(err)
	}
	want := "DB_PASS=\"p w'\\n\"\nDB_USER=app\nEMPTY=''\nOBJ='{\"a\":1}'\nPORT=5432\n"
	if string(got) != want {
		t.Fatalf("dotenv =\n%s\nwant\n%s", got, want)
	}
	for _, bad := range []string{`"just a string"`, `not json SECRET`, `{"bad-name":"x"}`, `{"1X":"y"}`} {
		_, err := applyFormat(FormatDotenv, []byte(bad))
		if err == nil {
			t.Errorf("dotenv of %s succeeded", bad)
		} else if strings.Contains(err.Error(), "SECRET") {
			t.Errorf("error leaks the value: %v", err)
		}
	}
}

func TestFormats(t *testing.T) {
	tests := []struct {
		format, in, want string
		wantErr          bool
	}{
		{format: FormatRaw, in: "a\x00b", want: "a\x00b"},
		{format: FormatBase64, in: "aGVsbG8=", want: "hello"},
		{format: FormatBase64, in: "aGVsbG8", want: "hello"},
		{format: FormatBase64, in: "aGVs\nbG8=\n", want: "hello"},
		{format: FormatBase64, in: "-_8", want: "\xfb\xff"},
		{format: FormatBase64, in: "not base64 SECRET!", wantErr: true},
		{format: FormatJSON, in: `{"a":1}`, want: "{\n  \"a\": 1\n}\n"},
		{format: FormatJSON, in: `plain "text"`, want: "\"plain \\\"text\\\"\"\n"},
	}
	for _, tt := range tests {
		got, err := applyFormat(tt.format, []byte(tt.in))
		if tt.wantErr {
			if err == nil || strings.Contains(err.Error(), "SECRET") {
				t.Errorf("%s(%q): err = %v, want an error without the value", tt.format, tt.in, err)
			}
			continue
		}
		if err != nil || string(got) != tt.want {
			t.Errorf("%s(%q) = %q, %v; want %q", tt.format, tt.in, got, err, tt.want)
		}
	}
}
