package secrets

import (
	"errors"
	"strings"
	"testing"
)

func TestExtractKey(t *testing.T) {
	ref := Ref{Backend: "aws", Name: "prod/db", Key: "password"}
	tests := []struct {
		name    string
		key     string
		value   string
		want    string
		wantErr string
	}{
		{name: "string", key: "password", value: `{"password":"p@ss\nword","user":"u"}`, want: "p@ss\nword"},
		{name: "number", key: "port", value: `{"port": 5432}`, want: "5432"},
		{name: "object is compact json", key: "nested", value: `{"nested": { "a" : [1, 2] }}`, want: `{"a":[1,2]}`},
		{name: "null", key: "k", value: `{"k": null}`, wantErr: "the key's value is null"},
		{name: "missing key lists the keys", key: "pass", value: `{"user":"u","password":"SECRET"}`, wantErr: `aws secret "prod/db" key "pass": unusable value (key not in the secret; its keys are: "password", "user")`},
		{name: "not json", key: "k", value: `SECRET-not-json`, wantErr: "the secret is not a JSON object; remove the key option"},
		{name: "json array", key: "k", value: `["SECRET"]`, wantErr: "not a JSON object"},
		{name: "json null", key: "k", value: `null`, wantErr: "not a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ref
			r.Key = tt.key
			got, err := ExtractKey(r, []byte(tt.value))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ExtractKey() error = %v, want %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "SECRET") {
					t.Fatalf("error leaks the value: %v", err)
				}
				if !errors.Is(err, ErrBadValue) {
					t.Fatalf("error %v is not ErrBadValue", err)
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Fatalf("ExtractKey() = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestErrorWordingAndClasses(t *testing.T) {
	cause := errors.New("dial tcp 127.0.0.1:1: connect: connection refused")
	err := Fail(Ref{Backend: "aws", Name: "db"}, ErrUnavailable, "check AWS_ENDPOINT_URL", cause)
	want := `aws secret "db": backend unreachable: dial tcp 127.0.0.1:1: connect: connection refused (check AWS_ENDPOINT_URL)`
	if err.Error() != want {
		t.Errorf("Error() =\n%s\nwant\n%s", err, want)
	}
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, cause) || errors.Is(err, ErrNotFound) {
		t.Error("errors.Is does not match the class and the cause only")
	}
	// Each class reads differently.
	seen := map[string]bool{}
	for _, k := range []error{ErrNotFound, ErrAccessDenied, ErrUnavailable, ErrTimeout, ErrBadValue, ErrThrottled} {
		msg := Fail(Ref{Backend: "x", Name: "y"}, k, "", nil).Error()
		if seen[msg] {
			t.Errorf("two classes read the same: %s", msg)
		}
		seen[msg] = true
	}
	// Throttling is a kind of unavailability: stale-if-error and every
	// check of ErrUnavailable keep treating it so.
	th := Fail(Ref{Backend: "aws", Name: "db"}, ErrThrottled, "", cause)
	if !errors.Is(th, ErrThrottled) || !errors.Is(th, ErrUnavailable) || errors.Is(err, ErrThrottled) || errors.Is(th, ErrTimeout) {
		t.Error("a throttled error does not match ErrThrottled and ErrUnavailable only, or an unavailable one matches ErrThrottled")
	}
}

func TestRegistry(t *testing.T) {
	if _, err := NewRegistry(stub("a"), stub("a")); err == nil {
		t.Fatal("duplicate backend accepted")
	}
	r, err := NewRegistry(stub("b"), stub("a"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(r.Names(), ","); got != "a,b" {
		t.Errorf("Names() = %s", got)
	}
	if _, ok := r.Get("c"); ok {
		t.Error("Get of an unknown backend succeeded")
	}
}
