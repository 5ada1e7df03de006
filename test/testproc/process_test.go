package testproc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// envFake makes the test binary a fake server instead of running the
// tests: its value is how the fake behaves (see fake).
const envFake = "TESTPROC_FAKE"

func TestMain(m *testing.M) {
	if mode := os.Getenv(envFake); mode != "" {
		os.Exit(fake(mode, os.Args[1:]))
	}
	os.Exit(m.Run())
}

// fake is the fake server. Modes:
//
//	serve PORT   answer 200 on 127.0.0.1:PORT (exit 3 when the port is taken)
//	line         serve on a port of its own, printing "ready URL" first
//	never        log, and never answer
//	exit         log to stderr and exit 3 at once
//	spew         write 100 KiB of log, then serve as "line" does
//	sigint       like line, and on SIGINT log "bye" and exit 0
//	stubborn     like line, and ignore SIGINT
func fake(mode string, args []string) int {
	fmt.Fprintf(os.Stderr, "fake %s starting\n", mode)
	switch mode {
	case "exit":
		fmt.Fprintln(os.Stderr, "fake: listen tcp: address already in use")
		return 3
	case "never":
		time.Sleep(time.Hour) // not select{}: the runtime would call that a deadlock and exit
		return 1
	case "sigint":
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGINT)
		go func() {
			<-c
			fmt.Fprintln(os.Stderr, "fake: bye")
			os.Exit(0)
		}()
	case "stubborn":
		signal.Ignore(syscall.SIGINT)
	case "spew":
		line := strings.Repeat("x", 99) + "\n"
		for range 1024 {
			fmt.Fprint(os.Stderr, line)
		}
		fmt.Fprintln(os.Stderr, "fake: spew done")
	}
	addr := "127.0.0.1:0"
	if mode == "serve" {
		addr = "127.0.0.1:" + args[0]
		fmt.Println("fake: serving") // before it answers: the output holds it once it is ready
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake:", err)
		return 3
	}
	if mode != "serve" {
		fmt.Printf("ready http://%s\n", l.Addr())
		fmt.Println("fake: serving") // after the ready line: output, not the line
	}
	_ = http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok"))
	}))
	return 1
}

// fakeCmd is the test binary as a fake server.
func fakeCmd(mode string, args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), envFake+"="+mode)
	return cmd
}

// readyLine keeps the URL of a "ready URL" line.
func readyLine(url *string) func(string) error {
	return func(line string) error {
		u, ok := strings.CutPrefix(line, "ready ")
		if !ok {
			return errors.New(`want "ready URL"`)
		}
		*url = u
		return nil
	}
}

// waitOutput waits until p's output holds every one of want. Stdout and
// stderr reach the output by their own copies, after Start returns.
func waitOutput(t *testing.T, p *Process, want ...string) {
	t.Helper()
	deadline := time.After(10 * time.Second) // only bounds a failure
	for {
		out, all := p.Output(), true
		for _, w := range want {
			all = all && strings.Contains(out, w)
		}
		if all {
			return
		}
		select {
		case <-p.Exited():
			t.Fatalf("the server exited; output %q lacks %q", p.Output(), want)
		case <-deadline:
			t.Fatalf("output %q lacks %q", p.Output(), want)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// gone reports whether no process has pid any more (it was waited for).
func gone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

func TestStartReady(t *testing.T) {
	tests := []struct {
		name  string
		start func(ctx context.Context) (*Process, string, error)
	}{{
		name: "Ready on a free port",
		start: func(ctx context.Context) (*Process, string, error) {
			var url string
			p, err := OnFreePort(ctx, func(port int) (*Process, error) {
				url = "http://127.0.0.1:" + strconv.Itoa(port)
				return Start(ctx, fakeCmd("serve", strconv.Itoa(port)), Options{
					Name:  "fake",
					Ready: func(ctx context.Context) error { return GetOK(ctx, nil, url) },
				})
			})
			return p, url, err
		},
	}, {
		name: "ReadyLine",
		start: func(ctx context.Context) (*Process, string, error) {
			var url string
			p, err := Start(ctx, fakeCmd("line"), Options{Name: "fake", ReadyLine: readyLine(&url)})
			return p, url, err
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, url, err := tt.start(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			p.Cleanup(t)
			if err := GetOK(context.Background(), nil, url); err != nil {
				t.Fatalf("ready, but: %v", err)
			}
			waitOutput(t, p, "fake: serving") // stdout
			if strings.Contains(p.Output(), "ready http") {
				t.Errorf("output %q holds the ready line", p.Output())
			}
		})
	}
}

func TestStartNeverReady(t *testing.T) {
	ctx := context.Background()
	calls := 0
	attempts := 0
	pid := make(chan int, freePortAttempts)
	_, err := OnFreePort(ctx, func(int) (*Process, error) {
		attempts++
		cmd := fakeCmd("never")
		return Start(ctx, cmd, Options{
			Name: "fake",
			Ready: func(context.Context) error {
				if calls++; calls == 1 {
					pid <- cmd.Process.Pid
				}
				return errors.New("not yet")
			},
			// The server never answers: the timeout is the event.
			Timeout: 300 * time.Millisecond,
		})
	})
	if err == nil || errors.Is(err, ErrExited) || !strings.Contains(err.Error(), "did not get ready") ||
		!strings.Contains(err.Error(), "last: not yet") || !strings.Contains(err.Error(), "fake never starting") {
		t.Fatalf("err = %v, want a timeout with the last check's error and the output", err)
	}
	if attempts != 1 {
		t.Errorf("%d attempts, want 1: a timeout is not a taken port", attempts)
	}
	if calls < 2 {
		t.Errorf("Ready called %d times, want it polled", calls)
	}
	if p := <-pid; !gone(p) {
		t.Errorf("the server (pid %d) still runs after the failed start", p)
	}
}

func TestStartExitsEarly(t *testing.T) {
	tests := []struct {
		name string
		opts Options
	}{
		{name: "Ready", opts: Options{Name: "fake", Ready: func(context.Context) error { return errors.New("not yet") }}},
		{name: "ReadyLine", opts: Options{Name: "fake", ReadyLine: func(string) error { return nil }}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			attempts := 0
			_, err := OnFreePort(context.Background(), func(int) (*Process, error) {
				attempts++
				return Start(context.Background(), fakeCmd("exit"), tt.opts)
			})
			if !errors.Is(err, ErrExited) {
				t.Fatalf("err = %v, want ErrExited", err)
			}
			for _, want := range []string{"exit status 3", "address already in use"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("err = %v, lacks %q", err, want)
				}
			}
			if attempts != freePortAttempts {
				t.Errorf("%d attempts, want %d", attempts, freePortAttempts)
			}
		})
	}
}

// TestOnFreePortRetries: a server that finds its port taken is started
// again on another, and the second start is what the caller gets.
func TestOnFreePortRetries(t *testing.T) {
	ctx := context.Background()
	var ports []int
	p, err := OnFreePort(ctx, func(port int) (*Process, error) {
		ports = append(ports, port)
		if len(ports) == 1 {
			// Take the port, as another process would.
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = l.Close() }()
		}
		url := "http://127.0.0.1:" + strconv.Itoa(port)
		return Start(ctx, fakeCmd("serve", strconv.Itoa(port)), Options{
			Name:  "fake",
			Ready: func(ctx context.Context) error { return GetOK(ctx, nil, url) },
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	p.Cleanup(t)
	if len(ports) != 2 || ports[0] == ports[1] {
		t.Fatalf("ports tried: %v, want two different ones", ports)
	}
}

func TestStartBadReadyLine(t *testing.T) {
	var pid int
	cmd := fakeCmd("line")
	_, err := Start(context.Background(), cmd, Options{Name: "fake", ReadyLine: func(string) error {
		pid = cmd.Process.Pid
		return errors.New("not a URL")
	}})
	if err == nil || errors.Is(err, ErrExited) || !strings.Contains(err.Error(), "not a URL") {
		t.Fatalf("err = %v, want the line refused", err)
	}
	if !gone(pid) {
		t.Errorf("the server (pid %d) still runs after the refused line", pid)
	}
}

func TestStopTwiceAndConcurrently(t *testing.T) {
	var url string
	p, err := Start(context.Background(), fakeCmd("line"), Options{Name: "fake", ReadyLine: readyLine(&url)})
	if err != nil {
		t.Fatal(err)
	}
	pid := p.cmd.Process.Pid
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			err := p.Stop()
			// Every Stop returns only once the server is gone.
			select {
			case <-p.Exited():
			default:
				err = errors.New("Stop returned before the server exited")
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if err := p.Stop(); err != nil {
		t.Errorf("Stop again: %v", err)
	}
	if !gone(pid) {
		t.Errorf("pid %d still there after Stop", pid)
	}
	if GetOK(context.Background(), nil, url) == nil {
		t.Errorf("%s still answers after Stop", url)
	}
}

func TestStopSignal(t *testing.T) {
	tests := []struct {
		mode     string
		grace    time.Duration
		wantBye  bool
		wantKill bool
	}{
		{mode: "sigint", grace: time.Minute, wantBye: true},
		// The stubborn server ignores SIGINT: the grace is the event.
		{mode: "stubborn", grace: 200 * time.Millisecond, wantKill: true},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			var url string
			p, err := Start(context.Background(), fakeCmd(tt.mode), Options{
				Name: "fake", ReadyLine: readyLine(&url),
				StopSignal: syscall.SIGINT, Grace: tt.grace,
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Stop(); err != nil {
				t.Fatal(err)
			}
			if got := strings.Contains(p.Output(), "fake: bye"); got != tt.wantBye {
				t.Errorf("output %q: said bye %v, want %v", p.Output(), got, tt.wantBye)
			}
			ws, _ := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
			if killed := ws.Signaled() && ws.Signal() == syscall.SIGKILL; killed != tt.wantKill {
				t.Errorf("exit %v: killed %v, want %v", p.cmd.ProcessState, killed, tt.wantKill)
			}
		})
	}
}

func TestCleanupStops(t *testing.T) {
	var p *Process
	t.Run("server", func(t *testing.T) {
		var url string
		var err error
		if p, err = Start(context.Background(), fakeCmd("line"), Options{Name: "fake", ReadyLine: readyLine(&url)}); err != nil {
			t.Fatal(err)
		}
		p.Cleanup(t)
	})
	select {
	case <-p.Exited():
	default:
		t.Fatal("the server still runs after its test ended")
	}
}

func TestOutputBounded(t *testing.T) {
	var url string
	p, err := Start(context.Background(), fakeCmd("spew"), Options{Name: "fake", ReadyLine: readyLine(&url), OutputMax: 1000})
	if err != nil {
		t.Fatal(err)
	}
	p.Cleanup(t)
	// Stderr reaches the output in order, stdout by a copy of its own:
	// the last line on stderr says that all of the spew is in.
	waitOutput(t, p, "fake: spew done")
	out := p.Output()
	if len(out) > 1000 || strings.Contains(out, "fake spew starting") {
		t.Errorf("output (%d bytes) is not the last 1000 bytes: %q", len(out), out)
	}
}

func TestStartRefusesMisuse(t *testing.T) {
	cmd := fakeCmd("line")
	cmd.Stdout = os.Stdout
	for _, tt := range []struct {
		name string
		cmd  *exec.Cmd
		opts Options
	}{
		{name: "no readiness", cmd: fakeCmd("line"), opts: Options{Name: "fake"}},
		{name: "own stdout", cmd: cmd, opts: Options{Name: "fake", ReadyLine: func(string) error { return nil }}},
	} {
		if _, err := Start(context.Background(), tt.cmd, tt.opts); err == nil {
			t.Errorf("%s: started", tt.name)
		}
		if tt.cmd.Process != nil {
			t.Errorf("%s: ran the command", tt.name)
		}
	}
}

func TestLookPath(t *testing.T) {
	dir := t.TempDir()
	named, candidate, onPath := filepath.Join(dir, "named"), filepath.Join(dir, "candidate"), filepath.Join(dir, "bin", "srv")
	for _, f := range []string{named, candidate, onPath} {
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	const env = "TESTPROC_LOOKPATH"
	tests := []struct {
		name       string
		env        string
		path       string
		candidates []string
		want       string
		wantErr    []string
	}{
		{name: "the env's file first", env: named, path: filepath.Dir(onPath), candidates: []string{candidate}, want: named},
		{name: "the env's file missing", env: filepath.Join(dir, "absent"), candidates: []string{candidate}, wantErr: []string{env + "=", "absent"}},
		{name: "a candidate before PATH", path: filepath.Dir(onPath), candidates: []string{filepath.Join(dir, "absent"), dir, candidate}, want: candidate},
		{name: "PATH", path: filepath.Dir(onPath), candidates: []string{filepath.Join(dir, "absent")}, want: onPath},
		{name: "nowhere", path: dir, wantErr: []string{"srv not found", "apt-get install srv", "set " + env}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(env, tt.env)
			t.Setenv("PATH", tt.path)
			got, err := LookPath(env, "srv", "apt-get install srv", tt.candidates...)
			if tt.wantErr != nil {
				for _, w := range tt.wantErr {
					if err == nil || !strings.Contains(err.Error(), w) {
						t.Errorf("LookPath = %q, %v, want an error with %q", got, err, w)
					}
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("LookPath = %q, %v, want %q", got, err, tt.want)
			}
		})
	}
}
