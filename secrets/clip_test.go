package secrets

import "testing"

func TestClip(t *testing.T) {
	tests := []struct {
		in   string
		max  int
		want string
	}{
		{in: "short", max: 10, want: "short"},
		{in: "exactly10!", max: 10, want: "exactly10!"},
		{in: "0123456789abc", max: 10, want: "0123456789..."},
		{in: "aaaaaaaaaé", max: 10, want: "aaaaaaaaa..."}, // é is 2 bytes: not cut in half
	}
	for _, tt := range tests {
		if got := Clip(tt.in, tt.max); got != tt.want {
			t.Errorf("Clip(%q, %d) = %q, want %q", tt.in, tt.max, got, tt.want)
		}
	}
}
