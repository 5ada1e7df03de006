package secrets

import (
	"bytes"
	"encoding/json"
	"sort"
	"strings"
)

// ExtractKey returns one top-level key of a JSON object secret. A string
// value is returned as its raw text; any other JSON value as compact JSON.
// Errors never quote the value: a JSON syntax error would echo its bytes, so
// the decoder's message is dropped.
func ExtractKey(ref Ref, value []byte) ([]byte, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(value, &obj); err != nil || obj == nil {
		return nil, Fail(ref, ErrBadValue, "the secret is not a JSON object; remove the key option to mount the whole value", nil)
	}
	raw, ok := obj[ref.Key]
	if !ok {
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		return nil, Fail(ref, ErrBadValue, "key not in the secret; its keys are: "+strings.Join(quoteAll(keys), ", "), nil)
	}
	if string(bytes.TrimSpace(raw)) == "null" {
		return nil, Fail(ref, ErrBadValue, "the key's value is null", nil)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return []byte(s), nil
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return nil, Fail(ref, ErrBadValue, "the key's value is not valid JSON", nil)
	}
	return buf.Bytes(), nil
}

func quoteAll(in []string) []string {
	out := make([]string, len(in))
	for i, s := range in {
		b, _ := json.Marshal(s)
		out[i] = string(b)
	}
	return out
}
