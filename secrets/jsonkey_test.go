package secrets

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// FuzzExtractKey: picking a key out of any value never panics, gives a
// string value raw and any other value as valid JSON, and its errors never
// quote the value: a canary planted in it shows up only as a key name.
func FuzzExtractKey(f *testing.F) {
	for _, s := range [][2]string{
		{`{"password":"`, `","n":1}`}, {`{"a":null,"b":"`, `"}`}, {`{"a":{"b":["`, `"]}}`}, {`"`, `"`},
		{`[`, `]`}, {`{"a":"`, ``}, {``, ``}, {`{"`, `":1}`}, {`{"a":1e999,"b":"`, `"}`},
	} {
		f.Add(s[0], s[1], "password")
		f.Add(s[0], s[1], "a")
	}
	const canary = "fuzz-canary-7c1e"
	f.Fuzz(func(t *testing.T, before, after, key string) {
		value := []byte(before + canary + after)
		out, err := ExtractKey(Ref{Backend: "b", Name: "n", Key: key}, value)
		var obj map[string]json.RawMessage
		isObj := json.Unmarshal(value, &obj) == nil && obj != nil
		if err != nil {
			if !strings.Contains(err.Error(), canary) || strings.Contains(fmt.Sprintf("%q", key), canary) {
				return
			}
			for k := range obj {
				if strings.Contains(quoteAll([]string{k})[0], canary) {
					return // keys may be named, as JSON strings
				}
			}
			t.Fatalf("error quotes the value: %v", err)
		}
		if !isObj {
			t.Fatalf("ExtractKey(%q) succeeded on a value that is not a JSON object", value)
		}
		var s string
		if json.Unmarshal(obj[key], &s) == nil {
			if string(out) != s {
				t.Fatalf("ExtractKey() = %q, want the string %q", out, s)
			}
		} else if !json.Valid(out) {
			t.Fatalf("ExtractKey() = %q, not JSON", out)
		}
	})
}
