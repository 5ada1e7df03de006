package notify

import (
	"errors"
	"strings"
)

// SplitWords splits s into words as a POSIX shell does before expansion,
// and nothing more: blanks (space, tab, newline) separate words; 'single
// quotes' keep everything literally; "double quotes" keep everything but a
// backslash before $, `, ", \ or a newline, which escapes it; outside
// quotes a backslash escapes the next character (a backslash-newline is
// removed). $, `, *, |, ; and the like are ordinary characters: no shell
// ever sees the words.
func SplitWords(s string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		case c == '\\':
			if i+1 == len(s) {
				return nil, errors.New("a backslash ends the command; escape it as \\\\")
			}
			i++
			if s[i] != '\n' {
				w.WriteByte(s[i])
				inWord = true
			}
		case c == '\'':
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return nil, errors.New("a single quote is not closed")
			}
			w.WriteString(s[i+1 : i+1+end])
			i += end + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("$`\"\\\n", s[i+1]) >= 0 {
					i++
					if s[i] == '\n' {
						continue
					}
				}
				w.WriteByte(s[i])
			}
			if i == len(s) {
				return nil, errors.New("a double quote is not closed")
			}
			inWord = true
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, nil
}

// JoinWords is SplitWords's inverse: it quotes each word that needs it,
// so that SplitWords(JoinWords(w)) equals w.
func JoinWords(words []string) string {
	out := make([]string, len(words))
	for i, w := range words {
		if w != "" && strings.IndexFunc(w, needsQuote) < 0 {
			out[i] = w
			continue
		}
		out[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
	}
	return strings.Join(out, " ")
}

func needsQuote(r rune) bool {
	return strings.ContainsRune(" \t\n\\'\"", r)
}
