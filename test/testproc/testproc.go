// Package testproc holds what the packages that run servers for the tests
// (moto, the registry, Vault, PostgreSQL, the gcp and azure fakes), the
// end-to-end suite and the measuring tools (test/tools/bench, test/tools/rss) share:
// a server Process (start, wait until it is ready, notice an early exit,
// stop once, keep its output's tail), a free port, the tail of a
// process's output, the module's root, a KEY=VALUE flag.
package testproc

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago. It
// can be taken before the caller binds it: callers retry.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer func() { _ = l.Close() }()
	addr, ok := l.Addr().(*net.TCPAddr)
	if !ok {
		return 0, fmt.Errorf("find a free port: unexpected address %v", l.Addr())
	}
	return addr.Port, nil
}

// TailBuffer keeps the last Max bytes written to it; it is safe for
// concurrent use, e.g. as a process's stdout and stderr at once.
type TailBuffer struct {
	Max int

	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *TailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if over := b.buf.Len() - b.Max; over > 0 {
		b.buf.Next(over)
	}
	return len(p), nil
}

func (b *TailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// KeyValues is a repeatable KEY=VALUE command-line flag (the test tools'
// settings and environment).
type KeyValues []string

func (l *KeyValues) String() string { return strings.Join(*l, " ") }

func (l *KeyValues) Set(v string) error {
	if k, _, ok := strings.Cut(v, "="); !ok || k == "" {
		return fmt.Errorf("%q: use KEY=VALUE", v)
	}
	*l = append(*l, v)
	return nil
}

// ModuleRoot finds the directory of the go.mod above the working
// directory (a test runs in its package's directory).
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}
