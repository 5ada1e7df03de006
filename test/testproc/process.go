package testproc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Defaults of Options.
const (
	defaultTimeout   = 30 * time.Second
	defaultInterval  = 50 * time.Millisecond
	defaultGrace     = 10 * time.Second
	defaultOutputMax = 16 << 10
)

// freePortAttempts is how many ports OnFreePort tries.
const freePortAttempts = 3

// ErrExited is what the error of Start wraps when the server exited before
// it was ready (errors.Is): the port was taken, or its configuration is
// bad.
var ErrExited = errors.New("exited before it was ready")

// Options say how Start knows that a server is ready and how Stop stops it.
type Options struct {
	// Name names the server in errors and logs ("moto_server").
	Name string
	// ReadyLine, when set, waits for the server's first line on stdout
	// and checks it (and may keep what it says, such as the URL the
	// server chose); an error fails the start. The rest of stdout goes to
	// the output.
	ReadyLine func(line string) error
	// Ready, when set, is called every Interval (after ReadyLine) until
	// it returns nil: the server answers. Its last error is in the error
	// of a start that timed out.
	Ready func(ctx context.Context) error
	// Timeout bounds the wait for the server to be ready (default 30 s);
	// the context given to Start bounds it too.
	Timeout time.Duration
	// Interval is the time between calls of Ready (default 50 ms).
	Interval time.Duration
	// StopSignal asks the server to stop (default SIGKILL). A server that
	// has not exited Grace (default 10 s) after it is killed.
	StopSignal syscall.Signal
	Grace      time.Duration
	// OutputMax is how many bytes of the server's output, stdout and
	// stderr together, Output keeps: the last ones (default 16 KiB).
	OutputMax int
}

// Process is a server started by Start. Its methods are safe for
// concurrent use.
type Process struct {
	name   string
	cmd    *exec.Cmd
	opts   Options
	output *TailBuffer
	exited chan struct{} // closed once the process has been waited for

	stopOnce sync.Once
	stopErr  error
}

// Start runs cmd, a server, and returns once it is ready as o says:
// after its first line (o.ReadyLine) and once it answers (o.Ready). cmd's
// Stdout and Stderr must be unset: Process keeps the tail of both. The
// context bounds the start, not the server's life: the caller stops it
// with Stop (or Cleanup). When the server exits before it is ready the
// error wraps ErrExited; either way the error holds the output's tail.
func Start(ctx context.Context, cmd *exec.Cmd, o Options) (*Process, error) {
	if o.Name == "" {
		o.Name = cmd.Path
	}
	if o.ReadyLine == nil && o.Ready == nil {
		return nil, fmt.Errorf("start %s: no ReadyLine nor Ready to tell when it is ready", o.Name)
	}
	if cmd.Stdout != nil || cmd.Stderr != nil {
		return nil, fmt.Errorf("start %s: Stdout and Stderr belong to the Process", o.Name)
	}
	if o.Timeout <= 0 {
		o.Timeout = defaultTimeout
	}
	if o.Interval <= 0 {
		o.Interval = defaultInterval
	}
	if o.StopSignal == 0 {
		o.StopSignal = syscall.SIGKILL
	}
	if o.Grace <= 0 {
		o.Grace = defaultGrace
	}
	if o.OutputMax <= 0 {
		o.OutputMax = defaultOutputMax
	}
	p := &Process{
		name:   o.Name,
		cmd:    cmd,
		opts:   o,
		output: &TailBuffer{Max: o.OutputMax},
		exited: make(chan struct{}),
	}
	cmd.Stderr = p.output
	var stdout io.Reader
	if o.ReadyLine != nil {
		r, err := cmd.StdoutPipe()
		if err != nil {
			return nil, fmt.Errorf("start %s: %w", o.Name, err)
		}
		stdout = r
	} else {
		cmd.Stdout = p.output
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", o.Name, err)
	}
	lines := make(chan string, 1)
	go func() {
		if stdout != nil {
			// Wait comes after the last read, as os/exec requires.
			r := bufio.NewReader(stdout)
			if line, err := r.ReadString('\n'); err == nil {
				lines <- line[:len(line)-1]
			}
			_, _ = io.Copy(p.output, r)
		}
		_ = cmd.Wait()
		close(p.exited)
	}()

	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	if err := p.waitReady(ctx, lines); err != nil {
		_ = p.Stop()
		return nil, err
	}
	return p, nil
}

// waitReady waits for the first line, then for Ready.
func (p *Process) waitReady(ctx context.Context, lines <-chan string) error {
	notReady := errors.New("no ready line yet")
	if p.opts.ReadyLine != nil {
		select {
		case line := <-lines:
			if err := p.opts.ReadyLine(line); err != nil {
				return fmt.Errorf("%s: its first line %q: %w: %s", p.name, line, err, p.Output())
			}
		case <-p.exited:
			return p.exitedError()
		case <-ctx.Done():
			return p.timeoutError(ctx, notReady)
		}
	}
	if p.opts.Ready == nil {
		return nil
	}
	// A check in flight ends when the server exits: a request to a port
	// another process holds can hang until its timeout.
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-p.exited:
			cancel()
		case <-rctx.Done():
		}
	}()
	tick := time.NewTicker(p.opts.Interval)
	defer tick.Stop()
	for {
		err := p.opts.Ready(rctx)
		if err == nil {
			return nil
		}
		select {
		case <-p.exited:
			return p.exitedError()
		case <-ctx.Done():
			return p.timeoutError(ctx, err)
		case <-tick.C:
		}
	}
}

func (p *Process) exitedError() error {
	return fmt.Errorf("%s %w (%v): %s", p.name, ErrExited, p.cmd.ProcessState, p.Output())
}

func (p *Process) timeoutError(ctx context.Context, last error) error {
	return fmt.Errorf("%s did not get ready: %w (last: %v): %s", p.name, ctx.Err(), last, p.Output())
}

// Stop stops the server (StopSignal, then SIGKILL after Grace) and waits
// for it to exit. Every call, concurrent ones included, waits for that
// one stop and returns its error; a server that had exited already is no
// error.
func (p *Process) Stop() error {
	p.stopOnce.Do(func() {
		p.stopErr = p.stop()
	})
	return p.stopErr
}

func (p *Process) stop() error {
	select {
	case <-p.exited:
		return nil
	default:
	}
	if err := p.cmd.Process.Signal(p.opts.StopSignal); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop %s: %w", p.name, err)
	}
	if p.opts.StopSignal == syscall.SIGKILL {
		<-p.exited
		return nil
	}
	t := time.NewTimer(p.opts.Grace)
	defer t.Stop()
	select {
	case <-p.exited:
		return nil
	case <-t.C:
	}
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill %s: %w", p.name, err)
	}
	<-p.exited
	return nil
}

// Cleanup stops the server when t ends, and logs its output when t
// failed.
func (p *Process) Cleanup(t testing.TB) {
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", p.name, p.Output())
		}
	})
}

// Exited is closed once the server has exited, stopped or not.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Output returns the tail of the server's output, for failure messages.
func (p *Process) Output() string { return p.output.String() }

// OnFreePort calls start with a free port of 127.0.0.1 and returns what it
// returns. A port can be taken between choosing and binding it, so when
// the server exited before it was ready (ErrExited) it tries again with
// another port, three times in all; any other failure is final.
func OnFreePort[T any](ctx context.Context, start func(port int) (T, error)) (T, error) {
	var (
		v   T
		err error
	)
	for range freePortAttempts {
		var port int
		if port, err = FreePort(); err != nil {
			return v, err
		}
		if v, err = start(port); err == nil || !errors.Is(err, ErrExited) || ctx.Err() != nil {
			return v, err
		}
	}
	return v, err
}

// LookPath finds a server's program: the file $env names, which must
// exist; else the first of candidates that is a file; else name on PATH.
// A program not found is an error that says how to install it (install)
// or name it.
func LookPath(env, name, install string, candidates ...string) (string, error) {
	if p := os.Getenv(env); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s=%q: %w", env, p, err)
		}
		return p, nil
	}
	for _, c := range candidates {
		if fi, err := os.Stat(c); err == nil && !fi.IsDir() {
			return c, nil
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s not found (%s, or set %s): %w", name, install, env, err)
	}
	return p, nil
}

// GetOK is a Ready check: a GET of url answers 200. With a nil client it
// uses one with a one-second timeout.
func GetOK(ctx context.Context, client *http.Client, url string) error {
	if client == nil {
		client = &http.Client{Timeout: time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}
