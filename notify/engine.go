package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// ErrGone: the container is gone or no longer running (the engine answered
// 404 or 409); it is skipped, not counted as a failure.
var ErrGone = errors.New("the container is gone or not running")

// Engine is a client of the Docker Engine API (or Podman's compatible
// one) on a unix socket. Paths carry no API version: the engine answers
// at its own, and the six calls used have not changed since API 1.25.
type Engine struct {
	socket string
	hc     *http.Client
}

// NewEngine returns a client of the engine API served on socket.
func NewEngine(socket string) *Engine {
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	return &Engine{socket: socket, hc: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, "unix", socket)
		},
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     30 * time.Second,
	}}}
}

// Socket is the path the client dials.
func (e *Engine) Socket() string { return e.socket }

// Granted reports whether a unix socket is at the engine path: the
// managed plugin's engine mount is /dev/null until the user grants the
// engine with `docker plugin set dsv engine.source=/var/run/docker.sock`.
func Granted(socket string) bool {
	fi, err := os.Stat(socket)
	return err == nil && fi.Mode()&os.ModeSocket != 0
}

// Ping checks that the engine answers.
func (e *Engine) Ping(ctx context.Context) error {
	_, err := e.call(ctx, http.MethodGet, "/_ping", nil, nil)
	return err
}

// Container is a running container that mounts a volume.
type Container struct {
	ID   string
	Name string
}

// Containers lists the running containers that mount the named volume,
// however they got it (-v, --mount, --volumes-from, a compose service, a
// Swarm task): the engine's own record of their mounts.
func (e *Engine) Containers(ctx context.Context, volume string) ([]Container, error) {
	filters, err := json.Marshal(map[string][]string{"volume": {volume}})
	if err != nil {
		return nil, err
	}
	var list []struct {
		ID    string   `json:"Id"`
		Names []string `json:"Names"`
	}
	if _, err := e.call(ctx, http.MethodGet, "/containers/json?filters="+url.QueryEscape(string(filters)), nil, &list); err != nil {
		return nil, fmt.Errorf("list the containers of volume %q: %w", volume, err)
	}
	out := make([]Container, 0, len(list))
	for _, c := range list {
		name := c.ID
		if len(c.Names) > 0 {
			name = strings.TrimPrefix(c.Names[0], "/")
		}
		out = append(out, Container{ID: c.ID, Name: name})
	}
	return out, nil
}

// Process is a container's main process as the engine sees it.
type Process struct {
	// Pid is the host PID of the container's main process; 0 when it
	// does not run.
	Pid     int
	Running bool
	Paused  bool
}

// Process inspects a container for its main process.
func (e *Engine) Process(ctx context.Context, id string) (Process, error) {
	var c struct {
		State struct {
			Pid     int  `json:"Pid"`
			Running bool `json:"Running"`
			Paused  bool `json:"Paused"`
		} `json:"State"`
	}
	if _, err := e.call(ctx, http.MethodGet, "/containers/"+url.PathEscape(id)+"/json", nil, &c); err != nil {
		return Process{}, err
	}
	return Process{Pid: c.State.Pid, Running: c.State.Running, Paused: c.State.Paused}, nil
}

// Kill sends a signal to a container's main process.
func (e *Engine) Kill(ctx context.Context, id, signal string) error {
	_, err := e.call(ctx, http.MethodPost, "/containers/"+url.PathEscape(id)+"/kill?signal="+url.QueryEscape(signal), nil, nil)
	return err
}

// Exec runs argv in a container, without a shell and without attaching
// its output, and returns its exit code once it ended.
func (e *Engine) Exec(ctx context.Context, id string, argv []string) (int, error) {
	var created struct {
		ID string `json:"Id"`
	}
	body := map[string]any{"Cmd": argv, "AttachStdin": false, "AttachStdout": false, "AttachStderr": false}
	if _, err := e.call(ctx, http.MethodPost, "/containers/"+url.PathEscape(id)+"/exec", body, &created); err != nil {
		return -1, err
	}
	if created.ID == "" {
		return -1, errors.New("the engine created an exec without an id")
	}
	if _, err := e.call(ctx, http.MethodPost, "/exec/"+url.PathEscape(created.ID)+"/start", map[string]any{"Detach": true, "Tty": false}, nil); err != nil {
		return -1, err
	}
	// A detached exec is watched through its inspect: Running turns false
	// and ExitCode is set when the process ended.
	wait := 5 * time.Millisecond
	for {
		var st struct {
			Running  bool `json:"Running"`
			ExitCode *int `json:"ExitCode"`
			Pid      int  `json:"Pid"`
		}
		if _, err := e.call(ctx, http.MethodGet, "/exec/"+url.PathEscape(created.ID)+"/json", nil, &st); err != nil {
			return -1, err
		}
		if !st.Running && st.ExitCode != nil {
			return *st.ExitCode, nil
		}
		select {
		case <-ctx.Done():
			return -1, fmt.Errorf("the command still runs: %w", ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, 200*time.Millisecond)
	}
}

// call sends one request and decodes a JSON answer into out (if any).
func (e *Engine) call(ctx context.Context, method, path string, in, out any) (int, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://engine"+path, body)
	if err != nil {
		return 0, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("User-Agent", "dsv")
	resp, err := e.hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("engine API at %s: %w", e.socket, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("engine API at %s: %w", e.socket, err)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusConflict:
		return resp.StatusCode, fmt.Errorf("%w: %s", ErrGone, engineMessage(b))
	case resp.StatusCode >= 300:
		return resp.StatusCode, fmt.Errorf("engine API answered %s: %s", resp.Status, engineMessage(b))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("engine API at %s: unreadable answer to %s %s: %w", e.socket, method, strings.SplitN(path, "?", 2)[0], err)
		}
	}
	return resp.StatusCode, nil
}

// engineMessage is the message of an engine's error answer, {"message":
// "..."}, cut short.
func engineMessage(b []byte) string {
	var m struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(b, &m) == nil && m.Message != "" {
		b = []byte(m.Message)
	}
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
