package render

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// applyFormat turns a value into a file's content. Errors never quote it.
func applyFormat(format string, value []byte) ([]byte, error) {
	switch format {
	case FormatRaw, "":
		return value, nil
	case FormatBase64:
		b, err := decodeBase64(value)
		if err != nil {
			return nil, err
		}
		return b, nil
	case FormatJSON:
		if json.Valid(value) {
			var buf bytes.Buffer
			if err := json.Indent(&buf, value, "", "  "); err != nil {
				return nil, errors.New("the value is not valid JSON")
			}
			buf.WriteByte('\n')
			return buf.Bytes(), nil
		}
		b, err := json.Marshal(string(value))
		if err != nil {
			return nil, errors.New("the value cannot be written as a JSON string")
		}
		return append(b, '\n'), nil
	case FormatDotenv:
		return dotenv(value)
	}
	return nil, fmt.Errorf("unknown format %q", format)
}

// decodeBase64 accepts standard and URL-safe alphabets, padded or not, and
// ignores surrounding whitespace and line breaks.
func decodeBase64(value []byte) ([]byte, error) {
	s := strings.Join(strings.Fields(string(value)), "")
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, errors.New("the value is not valid base64 (format=base64 decodes it)")
}

// envNameRE is what dotenv loaders and shells accept as a variable name.
var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// dotenv writes a JSON object as KEY=value lines, sorted by key.
func dotenv(value []byte) ([]byte, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(value, &obj); err != nil || obj == nil {
		return nil, errors.New("format=dotenv needs a JSON object secret (one line per key)")
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		if !envNameRE.MatchString(k) {
			return nil, fmt.Errorf("key %q is not a valid variable name for format=dotenv (letters, digits and _, not starting with a digit)", k)
		}
		raw := obj[k]
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			var buf bytes.Buffer
			if err := json.Compact(&buf, raw); err != nil {
				return nil, fmt.Errorf("key %q holds invalid JSON", k)
			}
			s = buf.String()
			if s == "null" {
				s = ""
			}
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(dotenvQuote(s))
		b.WriteByte('\n')
	}
	return []byte(b.String()), nil
}

// safeUnquoted are characters that mean themselves in every dotenv dialect
// (docker --env-file, compose, godotenv, python-dotenv, node dotenv) and in
// POSIX sh.
var safeUnquoted = regexp.MustCompile(`^[A-Za-z0-9_./:@%+,=-]*$`)

// dotenvQuote quotes a value for dotenv loaders:
//   - plain values stay bare;
//   - values without a single quote or a line break are single-quoted, which
//     every loader takes literally ($, #, spaces, backslashes, unicode);
//   - the rest are double-quoted with \\, \", \n, \r, \$ and \` escaped,
//     which the loaders that support multi-line values decode; sh decodes
//     all but \n and \r, and runs no backquoted command from a value.
func dotenvQuote(s string) string {
	if s != "" && safeUnquoted.MatchString(s) {
		return s
	}
	if !strings.ContainsAny(s, "'\n\r") {
		return "'" + s + "'"
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch r := s[i]; r {
		case '\\':
			b.WriteString(`\\`)
		case '"':
			b.WriteString(`\"`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '$':
			b.WriteString(`\$`)
		case '`':
			b.WriteString("\\`")
		default:
			b.WriteByte(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// ApplyFormat is applyFormat for other packages (the Swarm secret provider).
func ApplyFormat(format string, value []byte) ([]byte, error) { return applyFormat(format, value) }

// Formats lists the formats ApplyFormat knows.
func Formats() []string { return []string{FormatRaw, FormatJSON, FormatDotenv, FormatBase64} }
