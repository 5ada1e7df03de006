// Package pgtest runs a real PostgreSQL server, from the Debian postgresql
// package, for tests of the vault backend's database engine: a fresh
// cluster in a temp dir, on a free port of 127.0.0.1, with password
// (scram-sha-256) authentication over TCP.
//
// PostgreSQL refuses to run as root: when the test runs as root, the server
// runs as the postgres user. Start skips the test when PostgreSQL is not
// installed, unless DSV_REQUIRE_POSTGRES=1 (set in CI), where that fails
// the test. Install it with:
//
//	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql
package pgtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dsv-plugin/dsv/test/testproc"
)

// Environment variables the package reads.
const (
	// EnvBinDir names the directory of initdb, postgres and psql.
	EnvBinDir = "DSV_POSTGRES_BIN"
	// EnvRequire, set to 1, turns a missing PostgreSQL from a skip into a
	// failure.
	EnvRequire = "DSV_REQUIRE_POSTGRES"
)

// SuperUser is the cluster's superuser.
const SuperUser = "postgres"

// startTimeout bounds the wait for a new server to accept logins.
const startTimeout = 60 * time.Second

// BinDir finds PostgreSQL's programs: $DSV_POSTGRES_BIN, or the newest
// /usr/lib/postgresql/*/bin.
func BinDir() (string, error) {
	if d := os.Getenv(EnvBinDir); d != "" {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err != nil {
			return "", fmt.Errorf("%s=%q: %w", EnvBinDir, d, err)
		}
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("PostgreSQL not found under /usr/lib/postgresql/*/bin (apt-get install postgresql, or set " + EnvBinDir + ")")
}

func version(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

// Server is a PostgreSQL server owned by one test.
type Server struct {
	// Host and Port are where the server listens.
	Host string
	Port int
	// Password is SuperUser's password.
	Password string

	bin  string
	proc *testproc.Process
}

// Start runs a PostgreSQL server for t and stops it, removing its data,
// when t ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := BinDir()
	if err != nil {
		if os.Getenv(EnvRequire) == "1" {
			t.Fatalf("%s=1: %v", EnvRequire, err)
		}
		t.Skipf("skipping: %v (set %s=1 to fail instead)", err, EnvRequire)
	}
	cred, err := runAs()
	if err != nil {
		t.Fatal(err)
	}
	// Not t.TempDir: its parents are private to root, and the server may
	// run as postgres.
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			t.Fatal(err)
		}
	}

	s := &Server{Host: "127.0.0.1", Password: randomHex(16), bin: bin}
	pwfile := filepath.Join(dir, "pwfile")
	if err := os.WriteFile(pwfile, []byte(s.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if cred != nil {
		if err := os.Chown(pwfile, int(cred.Uid), int(cred.Gid)); err != nil {
			t.Fatal(err)
		}
	}
	data := filepath.Join(dir, "data")
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", SuperUser,
		"--pwfile="+pwfile, "--auth-local=scram-sha-256", "--auth-host=scram-sha-256",
		"--encoding=UTF8", "--locale=C", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	initdb.Dir = dir
	if out, err := initdb.CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v: %s", err, out)
	}
	_ = os.Remove(pwfile)

	if s.proc, err = testproc.OnFreePort(context.Background(), func(port int) (*testproc.Process, error) {
		return s.start(dir, data, port, cred)
	}); err != nil {
		t.Fatal(err)
	}
	s.proc.Cleanup(t)
	return s
}

// runAs returns the credentials to run PostgreSQL with: those of the
// postgres user when running as root, nil (ours) otherwise.
func runAs() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, and no postgres user to run PostgreSQL as: %w", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, err
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, err
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func (s *Server) start(dir, data string, port int, cred *syscall.Credential) (*testproc.Process, error) {
	s.Port = port
	cmd := exec.Command(filepath.Join(s.bin, "postgres"), "-D", data,
		"-p", strconv.Itoa(port),
		"-c", "listen_addresses="+s.Host,
		"-c", "unix_socket_directories="+dir,
		"-c", "fsync=off",
		"-c", "full_page_writes=off",
		"-c", "synchronous_commit=off")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	cmd.Dir = dir
	return testproc.Start(context.Background(), cmd, testproc.Options{
		Name:     fmt.Sprintf("postgres on port %d", port),
		Ready:    func(ctx context.Context) error { return s.CanLogin(ctx, SuperUser, s.Password) },
		Timeout:  startTimeout,
		Interval: 100 * time.Millisecond,
		// Fast shutdown.
		StopSignal: syscall.SIGINT,
	})
}

// URL returns a connection URL for Vault's database engine, with its
// {{username}} and {{password}} placeholders.
func (s *Server) URL() string {
	return fmt.Sprintf("postgresql://{{username}}:{{password}}@%s/postgres?sslmode=disable", net.JoinHostPort(s.Host, strconv.Itoa(s.Port)))
}

// CanLogin reports whether user can log in with password over TCP; the
// error says why not.
func (s *Server) CanLogin(ctx context.Context, user, password string) error {
	_, err := s.psql(ctx, user, password, "select 1")
	return err
}

// Query runs sql as the superuser and returns psql's unaligned output.
func (s *Server) Query(t testing.TB, sql string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	out, err := s.psql(ctx, SuperUser, s.Password, sql)
	if err != nil {
		t.Fatalf("psql %q: %v", sql, err)
	}
	return out
}

// RoleExists reports whether a role (a user) exists.
func (s *Server) RoleExists(t testing.TB, name string) bool {
	t.Helper()
	out := s.Query(t, "select count(*) from pg_roles where rolname = "+literal(name))
	return strings.TrimSpace(out) != "0"
}

func (s *Server) psql(ctx context.Context, user, password, sql string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(s.bin, "psql"),
		"-h", s.Host, "-p", strconv.Itoa(s.Port), "-U", user, "-d", "postgres",
		"-w", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+password, "PGCONNECT_TIMEOUT=5")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("psql as %q: %w: %s", user, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// literal quotes s as an SQL string literal.
func literal(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
