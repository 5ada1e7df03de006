// Package tmpfstest helps tests read a volume as a container does.
package tmpfstest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Visible lists what a reader of a directory volume sees: name -> content,
// through the symlinks, hidden entries excluded.
func Visible(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "..") {
			continue
		}
		p := filepath.Join(dir, e.Name())
		st, err := os.Stat(p)
		if err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		if st.IsDir() {
			for k, v := range Visible(t, p) {
				out[e.Name()+"/"+k] = v
			}
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = string(b)
	}
	return out
}
