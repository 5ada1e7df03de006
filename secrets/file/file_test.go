package file

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode"

	"github.com/rs/zerolog"

	"github.com/dsv-plugin/dsv/secrets"
)

// folder lays out a backend folder with a sibling "outside" that must stay
// unreachable.
func folder(t *testing.T) (root, outside string) {
	t.Helper()
	base := t.TempDir()
	root = filepath.Join(base, "files")
	outside = filepath.Join(base, "outside")
	for _, dir := range []string{filepath.Join(root, "app"), outside} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	write := func(path, v string) {
		if err := os.WriteFile(path, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(root, "plain"), "hello\n")
	write(filepath.Join(root, "app", "db.json"), `{"user":"app","password":"pw","port":5432}`)
	write(filepath.Join(outside, "host-secret"), "NOT-YOURS")
	links := map[string]string{
		filepath.Join(root, "escape"):        filepath.Join(outside, "host-secret"),
		filepath.Join(root, "app", "up"):     "../../outside/host-secret",
		filepath.Join(root, "inside"):        "app/db.json",
		filepath.Join(root, "app", "parent"): "../plain",
	}
	for link, target := range links {
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	return root, outside
}

func TestValidate(t *testing.T) {
	root, _ := folder(t)
	d := New(root, zerolog.New(io.Discard))
	tests := []struct {
		name    string
		ref     secrets.Ref
		wantErr string
	}{
		{name: "plain file", ref: secrets.Ref{Name: "plain"}},
		{name: "nested file", ref: secrets.Ref{Name: "app/db.json", Key: "password"}},
		{name: "not there yet", ref: secrets.Ref{Name: "later/added"}},
		{name: "symlink inside", ref: secrets.Ref{Name: "inside"}},
		{name: "symlink to a sibling inside", ref: secrets.Ref{Name: "app/parent"}},
		{name: "dot-dot", ref: secrets.Ref{Name: "../outside/host-secret"}, wantErr: `leaves or escapes`},
		{name: "dot-dot in the middle", ref: secrets.Ref{Name: "app/../../x"}, wantErr: `leaves or escapes`},
		{name: "unclean", ref: secrets.Ref{Name: "app//db.json"}, wantErr: `clean relative path`},
		{name: "absolute", ref: secrets.Ref{Name: "/etc/shadow"}, wantErr: `is absolute`},
		{name: "empty", ref: secrets.Ref{Name: ""}, wantErr: `must name a file`},
		{name: "absolute symlink out", ref: secrets.Ref{Name: "escape"}, wantErr: `symlink that leads out`},
		{name: "relative symlink out", ref: secrets.Ref{Name: "app/up"}, wantErr: `symlink that leads out`},
		{name: "trailing line break", ref: secrets.Ref{Name: "plain\n"}, wantErr: `"plain\n" holds a control character`},
		{name: "escape sequence", ref: secrets.Ref{Name: "a\x1b[2Jb"}, wantErr: `holds a control character`},
		{name: "NUL", ref: secrets.Ref{Name: "a\x00b"}, wantErr: `holds a control character`},
		{name: "longest path", ref: secrets.Ref{Name: strings.Repeat("abc/", 1023) + "abc"}},
		{name: "path beyond PATH_MAX", ref: secrets.Ref{Name: strings.Repeat("abc/", 1023) + "abcd"}, wantErr: `is 4096 bytes long; a path in the file backend's folder is at most 4095`},
		{name: "longest segment", ref: secrets.Ref{Name: "app/" + strings.Repeat("s", 255)}},
		{name: "segment beyond NAME_MAX", ref: secrets.Ref{Name: "app/" + strings.Repeat("s", 256)}, wantErr: `a segment of the path is 256 bytes long`},
		{name: "aws-only options", ref: secrets.Ref{Name: "plain", VersionID: "x", Region: "us-east-1"}, wantErr: `option "region" is not supported by the file backend`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := d.Validate(tt.ref)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Validate(%q) = %v, want nil", tt.ref.Name, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Validate(%q) = %v, want an error containing %q", tt.ref.Name, err, tt.wantErr)
			}
		})
	}
}

func TestFetch(t *testing.T) {
	root, _ := folder(t)
	d := New(root, zerolog.New(io.Discard))
	tests := []struct {
		name     string
		ref      secrets.Ref
		want     string
		wantKind error
	}{
		{name: "whole file", ref: secrets.Ref{Name: "plain"}, want: "hello\n"},
		{name: "json string key", ref: secrets.Ref{Name: "app/db.json", Key: "password"}, want: "pw"},
		{name: "json number key", ref: secrets.Ref{Name: "app/db.json", Key: "port"}, want: "5432"},
		{name: "symlink inside", ref: secrets.Ref{Name: "inside", Key: "user"}, want: "app"},
		{name: "missing key", ref: secrets.Ref{Name: "app/db.json", Key: "nope"}, wantKind: secrets.ErrBadValue},
		{name: "key of a non-json file", ref: secrets.Ref{Name: "plain", Key: "k"}, wantKind: secrets.ErrBadValue},
		{name: "missing file", ref: secrets.Ref{Name: "nope"}, wantKind: secrets.ErrNotFound},
		{name: "directory", ref: secrets.Ref{Name: "app"}, wantKind: secrets.ErrBadValue},
		{name: "symlink out, created after create", ref: secrets.Ref{Name: "escape"}, wantKind: secrets.ErrAccessDenied},
		{name: "relative symlink out", ref: secrets.Ref{Name: "app/up"}, wantKind: secrets.ErrAccessDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.ref.Backend = Name
			got, err := d.Fetch(context.Background(), tt.ref)
			if tt.wantKind != nil {
				if !errors.Is(err, tt.wantKind) {
					t.Fatalf("Fetch = %v, want %v", err, tt.wantKind)
				}
				if strings.Contains(err.Error(), "NOT-YOURS") || strings.Contains(err.Error(), "hello") || strings.Contains(err.Error(), `"pw"`) {
					t.Fatalf("error leaks a value: %v", err)
				}
				if !strings.Contains(err.Error(), `file secret "`+tt.ref.Name+`"`) {
					t.Fatalf("error %q does not name the object", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			if string(got.Value) != tt.want {
				t.Fatalf("Fetch = %q, want %q", got.Value, tt.want)
			}
			if _, err := time.Parse(time.RFC3339Nano, got.Version); err != nil {
				t.Fatalf("version %q is not a modification time", got.Version)
			}
		})
	}
}

func TestFetchErrors(t *testing.T) {
	root, _ := folder(t)
	ref := secrets.Ref{Backend: Name, Name: "plain"}

	_, err := New(filepath.Join(root, "missing-folder"), zerolog.New(io.Discard)).Fetch(context.Background(), ref)
	if !errors.Is(err, secrets.ErrUnavailable) || !strings.Contains(err.Error(), "files.source") {
		t.Errorf("missing folder: %v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Nanosecond)
	defer cancel()
	<-ctx.Done()
	_, err = New(root, zerolog.New(io.Discard)).Fetch(ctx, ref)
	if !errors.Is(err, secrets.ErrTimeout) {
		t.Errorf("expired context: %v", err)
	}

	// A FIFO planted in the folder: refused at once, not a read that
	// blocks the mount until a writer comes.
	if err := syscall.Mkfifo(filepath.Join(root, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := New(root, zerolog.New(io.Discard)).Fetch(context.Background(), secrets.Ref{Backend: Name, Name: "fifo"})
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, secrets.ErrBadValue) || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("fifo: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("reading a FIFO blocks")
	}

	big := filepath.Join(root, "big")
	if err := os.WriteFile(big, make([]byte, maxSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = New(root, zerolog.New(io.Discard)).Fetch(context.Background(), secrets.Ref{Backend: Name, Name: "big"})
	if !errors.Is(err, secrets.ErrBadValue) {
		t.Errorf("oversized file: %v", err)
	}
}

// FuzzValidateName: whatever the lexical check accepts stays inside the folder.
func FuzzValidateName(f *testing.F) {
	for _, s := range []string{"plain", "app/db.json", "../x", "/etc/passwd", "a/../b", "a/./b", "", ".", "..", "a\x00b", "a/", "./a", `..\x`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if ValidateName(name) != nil {
			return
		}
		if len(name) > maxPathLen || strings.IndexFunc(name, unicode.IsControl) >= 0 {
			t.Fatalf("accepted %q: too long or with a control character", name)
		}
		joined := filepath.Join("/root-dir", name)
		if !strings.HasPrefix(joined, "/root-dir/") {
			t.Fatalf("accepted %q, which joins to %q", name, joined)
		}
	})
}
