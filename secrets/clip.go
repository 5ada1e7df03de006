package secrets

import "unicode/utf8"

// Clip cuts a user's input to at most maxLen bytes, on a rune boundary,
// marking the cut with "...", so that a pasted blob does not flood an
// error message.
func Clip(s string, maxLen int) string {
	if len(s) <= maxLen {
		return s
	}
	cut := maxLen
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}
