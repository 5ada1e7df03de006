package torn

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestSecret(t *testing.T) {
	var v map[string]string
	if err := json.Unmarshal([]byte(Secret("seed", 7)), &v); err != nil {
		t.Fatal(err)
	}
	if v["a"] != v["b"] || !strings.HasPrefix(v["a"], "7-") || len(v["a"]) != len("7-")+padding {
		t.Fatalf("a and b must be equal, version first, %d bytes of padding: %q", padding, v)
	}
	if v["sum"] != Sum(v["a"], 7) || v["sum"] != SumOf("seed", 7) {
		t.Fatalf("sum = %q", v["sum"])
	}
	if Secret("seed", 7) == Secret("other", 7) || Secret("seed", 7) == Secret("seed", 8) {
		t.Fatal("versions and seeds must differ")
	}
}

func TestParse(t *testing.T) {
	out := "noise\nreads=10 torn=1 badsum=2 gone=3 versions=4 backwards=5 straddled=6 last=7\n"
	r, err := Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	want := Report{Reads: 10, Torn: 1, BadSum: 2, Gone: 3, Versions: 4, Backwards: 5, Straddled: 6, Last: 7}
	if r != want {
		t.Fatalf("Parse = %+v, want %+v", r, want)
	}
	for _, bad := range []string{"reads=1 torn=0", "reads=x torn=0 badsum=0 gone=0 versions=0 backwards=0 straddled=0 last=0", ""} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) succeeded", bad)
		}
	}
}
