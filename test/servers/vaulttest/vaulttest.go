// Package vaulttest runs a real Vault dev server (v1.13.0, the last MPL-2.0
// line, built from source by test/vault-build.sh) for the tests of the
// vault backend, with helpers to set up mounts, policies, tokens and
// AppRoles through a root client.
//
// Start skips the test when no binary has been built (or DSV_VAULT_BIN
// names none), unless DSV_REQUIRE_VAULT=1 (set in CI): then it builds one
// if needed, and a failure fails the test.
package vaulttest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dsv-plugin/dsv/test/testproc"
	"github.com/hashicorp/vault/api"
)

// Environment variables the package reads.
const (
	// EnvBin names a vault binary to run instead of building one.
	EnvBin = "DSV_VAULT_BIN"
	// EnvRequire, set to 1, turns a missing vault from a skip into a failure.
	EnvRequire = "DSV_REQUIRE_VAULT"
)

// RootToken is the dev server's root token.
const RootToken = "ROOT"

// buildScript is test/vault-build.sh, relative to the module root.
const buildScript = "test/vault-build.sh"

// vaultVersion is the version test/vault-build.sh builds.
const vaultVersion = "1.13.0"

// Binary returns the vault binary: $DSV_VAULT_BIN, or the one that
// test/vault-build.sh builds (once, ~7 minutes cold) and caches. It builds
// only when build is true (DSV_REQUIRE_VAULT=1); otherwise a binary not
// built yet is an error, so that a plain `go test ./...` does not stall for
// minutes. Concurrent test processes wait for one build.
func Binary(build bool) (string, error) {
	if p := os.Getenv(EnvBin); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s=%q: %w", EnvBin, p, err)
		}
		return p, nil
	}
	if !build {
		if _, err := os.Stat(cachedBinary()); err != nil {
			return "", fmt.Errorf("vault %s is not built yet: run %s (~7 minutes), or set %s", vaultVersion, buildScript, EnvBin)
		}
	}
	root, err := testproc.ModuleRoot()
	if err != nil {
		return "", err
	}
	script := filepath.Join(root, buildScript)
	if _, err := os.Stat(script); err != nil {
		return "", fmt.Errorf("no %s to build vault with (or set %s): %w", buildScript, EnvBin, err)
	}
	unlock, err := lockBuild()
	if err != nil {
		return "", err
	}
	defer unlock()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("bash", script)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s: %w: %s", buildScript, err, tail(stderr.String(), 2000))
	}
	bin := strings.TrimSpace(stdout.String())
	if bin == "" {
		return "", fmt.Errorf("%s printed no path", buildScript)
	}
	return bin, nil
}

// cachedBinary is where test/vault-build.sh keeps the binary (the same
// rule as the script's).
func cachedBinary() string {
	dir := os.Getenv("DSV_CACHE_DIR")
	if dir == "" {
		base := os.Getenv("XDG_CACHE_HOME")
		if base == "" {
			home, _ := os.UserHomeDir()
			base = filepath.Join(home, ".cache")
		}
		dir = filepath.Join(base, "dsv")
	}
	return filepath.Join(dir, "vault-"+vaultVersion)
}

// lockBuild serialises builds across test processes (go test runs packages
// in parallel) with a lock file in the user's cache.
func lockBuild() (func(), error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return func() {}, nil // no cache dir: build without the lock
	}
	dir = filepath.Join(dir, "dsv")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, ".vault-build.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		_ = f.Close()
	}, nil
}

// Server is a Vault dev server owned by one test.
type Server struct {
	// Addr is the server's address, http://127.0.0.1:PORT (https with TLS).
	Addr string
	// CACert is the CA file of a TLS server, "" otherwise.
	CACert string
	// Client is a root client.
	Client *api.Client

	proc *testproc.Process
}

type options struct {
	tls bool
}

// Option changes how Start runs the server.
type Option func(*options)

// TLS serves HTTPS with a CA and certificate that Vault generates
// (-dev-tls); Server.CACert is the CA file.
func TLS() Option { return func(o *options) { o.tls = true } }

// Start runs a Vault dev server for t and stops it when t ends.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	required := os.Getenv(EnvRequire) == "1"
	bin, err := Binary(required)
	if err != nil {
		if required {
			t.Fatalf("%s=1: %v", EnvRequire, err)
		}
		t.Skipf("skipping: %v (with %s=1 the test builds it, or fails)", err, EnvRequire)
	}
	s, err := testproc.OnFreePort(context.Background(), func(port int) (*Server, error) {
		return start(t, bin, port, o)
	})
	if err != nil {
		t.Fatal(err)
	}
	s.proc.Cleanup(t)
	return s
}

func start(t testing.TB, bin string, port int, o options) (*Server, error) {
	dir := t.TempDir()
	listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	args := []string{"server", "-dev", "-dev-root-token-id=" + RootToken, "-dev-listen-address=" + listen, "-dev-no-store-token"}
	scheme := "http"
	if o.tls {
		args = append(args, "-dev-tls", "-dev-tls-cert-dir="+dir)
		scheme = "https"
	}
	s := &Server{Addr: scheme + "://" + listen}
	if o.tls {
		s.CACert = filepath.Join(dir, "vault-ca.pem")
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = serverEnv(dir)
	var err error
	s.proc, err = testproc.Start(context.Background(), cmd, testproc.Options{
		Name:  "vault on " + listen,
		Ready: s.ready(),
	})
	if err != nil {
		return nil, err
	}
	c, err := api.NewClient(s.Config())
	if err != nil {
		_ = s.proc.Stop()
		return nil, err
	}
	c.SetToken(RootToken)
	c.ClearNamespace()
	s.Client = c
	return s, nil
}

// serverEnv is the server's environment: the test's, without VAULT_*
// settings, with HOME in a temp dir (the dev server writes ~/.vault-token
// without -dev-no-store-token, and the token helper reads it).
func serverEnv(home string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "VAULT_") || strings.HasPrefix(kv, "HOME=") {
			continue
		}
		env = append(env, kv)
	}
	// Vault's dependencies parse a CA certificate that Go >= 1.23 rejects
	// unless told otherwise (test/servers/vaultbin sets the same at build time).
	return append(env, "HOME="+home, "GODEBUG=x509negativeserial=1")
}

// ready is the server's Ready check: sys/health answers 200, active and
// unsealed. A TLS server's CA file appears once it runs.
func (s *Server) ready() func(context.Context) error {
	client := &http.Client{Timeout: time.Second}
	return func(ctx context.Context) error {
		if s.CACert != "" && client.Transport == nil {
			tr, err := caTransport(s.CACert)
			if err != nil {
				return err
			}
			client.Transport = tr
		}
		return testproc.GetOK(ctx, client, s.Addr+"/v1/sys/health")
	}
}

func caTransport(caFile string) (*http.Transport, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no certificate in %s", caFile)
	}
	return &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}, nil
}

// Config returns a client configuration for the server (with its CA for a
// TLS server), without a token.
func (s *Server) Config() *api.Config {
	conf := api.DefaultConfig()
	conf.Address = s.Addr
	conf.MaxRetries = 0
	if s.CACert != "" {
		if err := conf.ConfigureTLS(&api.TLSConfig{CACert: s.CACert}); err != nil {
			conf.Error = err
		}
	}
	return conf
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
