package testproc

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestTailBufferKeepsTheEnd(t *testing.T) {
	b := &TailBuffer{Max: 10}
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() { fmt.Fprintf(b, "line %d\n", i) })
	}
	wg.Wait()
	fmt.Fprint(b, "0123456789END")
	if got := b.String(); got != "3456789END" {
		t.Fatalf("tail = %q, want the last 10 bytes", got)
	}
}

func TestFreePortCanBeBound(t *testing.T) {
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatalf("port %d from FreePort: %v", port, err)
	}
	_ = l.Close()
}

func TestModuleRoot(t *testing.T) {
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil || !strings.Contains(string(b), "module github.com/dsv-plugin/dsv") {
		t.Fatalf("ModuleRoot = %s: %v", root, err)
	}
}

func TestKeyValues(t *testing.T) {
	var l KeyValues
	for _, v := range []string{"A=1", "B=", "C=x=y"} {
		if err := l.Set(v); err != nil {
			t.Fatalf("Set(%q): %v", v, err)
		}
	}
	for _, v := range []string{"A", "=1", ""} {
		if err := l.Set(v); err == nil {
			t.Errorf("Set(%q) accepted", v)
		}
	}
	if l.String() != "A=1 B= C=x=y" {
		t.Fatalf("String() = %q", l.String())
	}
}
