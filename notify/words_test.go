package notify

import (
	"slices"
	"strings"
	"testing"
)

func TestSplitWords(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr string
	}{
		{in: "nginx -s reload", want: []string{"nginx", "-s", "reload"}},
		{in: "  a\t b\n c  ", want: []string{"a", "b", "c"}},
		{in: "", want: nil},
		{in: "   ", want: nil},
		{in: `sh -c 'kill -HUP 1'`, want: []string{"sh", "-c", "kill -HUP 1"}},
		{in: `echo "a b" 'c d'e`, want: []string{"echo", "a b", "c de"}},
		{in: `a\ b`, want: []string{"a b"}},
		{in: `'' ""`, want: []string{"", ""}},
		{in: `"a\"b\\c\$d\e"`, want: []string{`a"b\c$d\e`}},
		{in: `'a\b'`, want: []string{`a\b`}},
		{in: "a\\\nb", want: []string{"ab"}},
		{in: "\"a\\\nb\"", want: []string{"ab"}},
		{in: `$HOME *.conf | ; &&`, want: []string{"$HOME", "*.conf", "|", ";", "&&"}},
		{in: `it's`, wantErr: "single quote is not closed"},
		{in: `"open`, wantErr: "double quote is not closed"},
		{in: `end\`, wantErr: "backslash ends the command"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := SplitWords(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("SplitWords(%q) = %q, %v; want an error with %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("SplitWords(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
			if again, err := SplitWords(JoinWords(got)); err != nil || !slices.Equal(again, got) {
				t.Fatalf("SplitWords(JoinWords(%q)) = %q, %v", got, again, err)
			}
		})
	}
}

// FuzzSplitWords: the splitter never panics, and what it splits joins
// back into a command that splits into the same words.
func FuzzSplitWords(f *testing.F) {
	for _, s := range []string{"nginx -s reload", `sh -c 'kill -HUP 1'`, `"a\"b" c\ d`, "a\\\nb", `'`, `"\`, "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		words, err := SplitWords(s)
		if err != nil {
			return
		}
		again, err := SplitWords(JoinWords(words))
		if err != nil || !slices.Equal(again, words) {
			t.Fatalf("SplitWords(%q) = %q; joined %q splits into %q, %v", s, words, JoinWords(words), again, err)
		}
	})
}

// FuzzParse: the option parser never panics, and a spec it accepts
// describes itself in a form it parses back to the same spec.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"SIGHUP", "hup", "exec:nginx -s reload", "exec:", "SIGKILL", "exec:'a", "exec:a\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		spec, err := Parse(s)
		if err != nil {
			if strings.Contains(err.Error(), "\x00") {
				t.Fatalf("Parse(%q): the error quotes a NUL: %v", s, err)
			}
			return
		}
		back, err := Parse(spec.String())
		if err != nil || back.Signal != spec.Signal || !slices.Equal(back.Exec, spec.Exec) {
			t.Fatalf("Parse(%q) = %+v; Parse(%q) = %+v, %v", s, spec, spec.String(), back, err)
		}
	})
}

func TestParse(t *testing.T) {
	tests := []struct {
		in      string
		want    Spec
		wantErr string
	}{
		{in: "SIGHUP", want: Spec{Signal: "SIGHUP"}},
		{in: "hup", want: Spec{Signal: "SIGHUP"}},
		{in: "SigUsr1", want: Spec{Signal: "SIGUSR1"}},
		{in: "exec:nginx -s reload", want: Spec{Exec: []string{"nginx", "-s", "reload"}}},
		{in: "", want: Spec{}},
		{in: "SIGKILL", wantErr: "would stop the app"},
		{in: "STOP", wantErr: "would stop the app"},
		{in: "SIGFOO", wantErr: "neither a signal name"},
		{in: "9", wantErr: "neither a signal name"},
		{in: "exec:", wantErr: "names no command"},
		{in: "exec:   ", wantErr: "names no command"},
		{in: "exec:sh -c 'x", wantErr: "single quote is not closed"},
		{in: "exec:" + strings.Repeat("a ", 65), wantErr: "at most 64"},
		{in: "exec:a\x00b", wantErr: "NUL"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := Parse(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse(%q) = %+v, %v; want an error with %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got.Signal != tt.want.Signal || !slices.Equal(got.Exec, tt.want.Exec) {
				t.Fatalf("Parse(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			}
		})
	}
}
