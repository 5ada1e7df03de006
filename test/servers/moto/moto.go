// Package moto runs a real moto server, an AWS emulator, for the tests,
// benchmarks and end-to-end suite of the aws backend.
//
// Start is for tests: it skips when moto_server is missing, unless
// DSV_REQUIRE_MOTO=1 (set in CI), where a missing emulator fails the test.
// StartProcess is the same server without a testing.TB.
package moto

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/dsv-plugin/dsv/test/testproc"
)

// Environment variables the package reads.
const (
	// EnvServer names the moto_server executable to run.
	EnvServer = "MOTO_SERVER"
	// EnvRequire, set to 1, turns a missing moto_server from a skip into a
	// failure.
	EnvRequire = "DSV_REQUIRE_MOTO"
)

// pythonVersion is the pyenv version moto is installed under in the dev
// image.
const pythonVersion = "3.11.7"

// Binary finds moto_server: $MOTO_SERVER, the dev image's pyenv install, or
// PATH.
func Binary() (string, error) {
	var candidates []string
	if out, err := exec.Command("pyenv", "root").Output(); err == nil {
		if root := strings.TrimSpace(string(out)); root != "" {
			candidates = append(candidates, filepath.Join(root, "versions", pythonVersion, "bin", "moto_server"))
		}
	}
	candidates = append(candidates, filepath.Join("/root/.pyenv/versions", pythonVersion, "bin/moto_server"))
	return testproc.LookPath(EnvServer, "moto_server", "pip install 'moto[server]'", candidates...)
}

// Process is a running moto_server.
type Process struct {
	// URL is the server's base URL, http://127.0.0.1:PORT.
	URL string

	*testproc.Process
}

// StartProcess runs bin (see Binary) on 127.0.0.1:port, or on a free port
// when port is 0, and returns once the server answers HTTP. The caller must
// call Stop.
func StartProcess(ctx context.Context, bin string, port int) (*Process, error) {
	return startProcess(ctx, bin, port, nil)
}

// startProcess is StartProcess with extra environment variables for the
// server (KEY=VALUE).
func startProcess(ctx context.Context, bin string, port int, env []string) (*Process, error) {
	start := func(port int) (*Process, error) {
		url := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		cmd := exec.Command(bin, "-H", "127.0.0.1", "-p", strconv.Itoa(port))
		if env != nil {
			cmd.Env = append(os.Environ(), env...)
		}
		proc, err := testproc.Start(ctx, cmd, testproc.Options{
			Name: fmt.Sprintf("moto_server on port %d", port),
			Ready: func(ctx context.Context) error {
				return testproc.GetOK(ctx, nil, url+"/moto-api/data.json")
			},
		})
		if err != nil {
			return nil, err
		}
		return &Process{URL: url, Process: proc}, nil
	}
	if port != 0 {
		return start(port)
	}
	return testproc.OnFreePort(ctx, start)
}

// Reset drops every resource the server holds.
func (p *Process) Reset(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.URL+"/moto-api/reset", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("reset moto: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("reset moto: %s", resp.Status)
	}
	return nil
}
