// Package moto runs a real moto server, an AWS emulator, for the tests,
// benchmarks and end-to-end suite of the aws backend.
//
// Start is for tests: it skips when moto_server is missing, unless
// DSV_REQUIRE_MOTO=1 (set in CI), where a missing emulator fails the test.
// StartProcess is the same server without a testing.TB.
package moto

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

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

// startTimeout bounds the wait for a new server to answer.
const startTimeout = 30 * time.Second

// Binary finds moto_server: $MOTO_SERVER, the dev image's pyenv install, or
// PATH.
func Binary() (string, error) {
	if p := os.Getenv(EnvServer); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s=%q: %w", EnvServer, p, err)
		}
		return p, nil
	}
	var candidates []string
	if out, err := exec.Command("pyenv", "root").Output(); err == nil {
		if root := strings.TrimSpace(string(out)); root != "" {
			candidates = append(candidates, filepath.Join(root, "versions", pythonVersion, "bin", "moto_server"))
		}
	}
	candidates = append(candidates, filepath.Join("/root/.pyenv/versions", pythonVersion, "bin/moto_server"))
	for _, c := range candidates {
		if fi, err := os.Stat(c); err == nil && !fi.IsDir() {
			return c, nil
		}
	}
	p, err := exec.LookPath("moto_server")
	if err != nil {
		return "", fmt.Errorf("moto_server not found (set %s, or pip install 'moto[server]'): %w", EnvServer, err)
	}
	return p, nil
}

// Process is a running moto_server.
type Process struct {
	// URL is the server's base URL, http://127.0.0.1:PORT.
	URL string

	cmd    *exec.Cmd
	output *testproc.TailBuffer
	exited chan struct{} // closed when the process has been waited for
	once   sync.Once
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
	if port != 0 {
		return startOnce(ctx, bin, port, env)
	}
	// A free port can be taken between choosing and binding it: try again.
	var err error
	for range 3 {
		if port, err = testproc.FreePort(); err != nil {
			return nil, err
		}
		var p *Process
		if p, err = startOnce(ctx, bin, port, env); err == nil {
			return p, nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, err
}

func startOnce(ctx context.Context, bin string, port int, env []string) (*Process, error) {
	p := &Process{
		URL:    "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		output: &testproc.TailBuffer{Max: 8 << 10},
		exited: make(chan struct{}),
	}
	p.cmd = exec.Command(bin, "-H", "127.0.0.1", "-p", strconv.Itoa(port))
	if env != nil {
		p.cmd.Env = append(os.Environ(), env...)
	}
	p.cmd.Stdout = p.output
	p.cmd.Stderr = p.output
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.exited)
	}()

	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if ready(ctx, client, p.URL) {
			return p, nil
		}
		select {
		case <-p.exited:
			return nil, fmt.Errorf("moto_server on port %d exited before answering: %s", port, p.Output())
		case <-ctx.Done():
			_ = p.Stop()
			return nil, fmt.Errorf("moto_server on port %d did not answer: %w: %s", port, ctx.Err(), p.Output())
		case <-tick.C:
		}
	}
}

func ready(ctx context.Context, client *http.Client, url string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/moto-api/data.json", nil)
	if err != nil {
		return false
	}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// Stop kills the server and waits for it to exit. It is safe to call more
// than once; later calls do nothing.
func (p *Process) Stop() error {
	var err error
	p.once.Do(func() {
		if kerr := p.cmd.Process.Kill(); kerr != nil && !errors.Is(kerr, os.ErrProcessDone) {
			err = fmt.Errorf("kill moto_server: %w", kerr)
		}
		<-p.exited
	})
	return err
}

// Output returns the tail of the server's log, for failure messages.
func (p *Process) Output() string {
	return p.output.String()
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
