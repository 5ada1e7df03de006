package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// fakeEngine speaks the six calls of the Engine API that notify uses,
// as documented for API 1.41 (Engine 20.10) and later: ContainerList with
// a volume filter, ContainerInspect, ContainerKill, ContainerExec,
// ExecStart and ExecInspect.
type fakeEngine struct {
	t *testing.T
	// mounts maps a volume to the containers that mount it.
	mounts map[string][]string
	// gone are containers that answer 409 (not running) to kill and exec.
	gone map[string]bool
	// exitCodes are the exit codes of execs per container (0 if absent).
	exitCodes map[string]int
	// pids are the main processes' PIDs that inspect answers (0 if
	// absent, as for a container that does not run).
	pids map[string]int

	mu       sync.Mutex
	signals  map[string][]string   // container -> signals received
	execs    map[string][][]string // container -> argv run
	running  map[string]string     // exec id -> container
	polls    map[string]int        // exec id -> inspects so far
	inFlight atomic.Int32
	maxIn    atomic.Int32
}

func newFakeEngine(t *testing.T) (*fakeEngine, string) {
	t.Helper()
	f := &fakeEngine{t: t, mounts: map[string][]string{}, gone: map[string]bool{}, exitCodes: map[string]int{}, pids: map[string]int{},
		signals: map[string][]string{}, execs: map[string][][]string{}, running: map[string]string{}, polls: map[string]int{}}
	sock := filepath.Join(t.TempDir(), "engine.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	return f, sock
}

func (f *fakeEngine) fail(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"message": msg})
}

func (f *fakeEngine) serve(w http.ResponseWriter, r *http.Request) {
	n := f.inFlight.Add(1)
	defer f.inFlight.Add(-1)
	for {
		m := f.maxIn.Load()
		if n <= m || f.maxIn.CompareAndSwap(m, n) {
			break
		}
	}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/containers/json":
		var filters map[string][]string
		if err := json.Unmarshal([]byte(r.URL.Query().Get("filters")), &filters); err != nil || len(filters["volume"]) != 1 {
			f.fail(w, http.StatusBadRequest, fmt.Sprintf("bad filters %q", r.URL.Query().Get("filters")))
			return
		}
		var out []map[string]any
		for _, id := range f.mounts[filters["volume"][0]] {
			out = append(out, map[string]any{"Id": id, "Names": []string{"/name-" + id}, "State": "running"})
		}
		if out == nil {
			out = []map[string]any{}
		}
		_ = json.NewEncoder(w).Encode(out)
	case r.Method == http.MethodGet && len(parts) == 3 && parts[0] == "containers" && parts[2] == "json":
		// ContainerInspect: a stopped container still answers, with
		// State.Running false and Pid 0.
		id := parts[1]
		known := f.gone[id]
		for _, ids := range f.mounts {
			known = known || slices.Contains(ids, id)
		}
		if !known {
			f.fail(w, http.StatusNotFound, "No such container: "+id)
			return
		}
		running := !f.gone[id]
		pid := 0
		if running {
			pid = f.pids[id]
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"Id": id, "State": map[string]any{
			"Status": map[bool]string{true: "running", false: "exited"}[running], "Running": running, "Paused": false, "Pid": pid}})
	case r.Method == http.MethodPost && len(parts) == 3 && parts[0] == "containers" && parts[2] == "kill":
		id := parts[1]
		if f.gone[id] {
			f.fail(w, http.StatusConflict, "Container "+id+" is not running")
			return
		}
		// Slow enough that an unbounded notifier would have all 20
		// kills in flight at once.
		time.Sleep(20 * time.Millisecond)
		f.mu.Lock()
		f.signals[id] = append(f.signals[id], r.URL.Query().Get("signal"))
		f.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodPost && len(parts) == 3 && parts[0] == "containers" && parts[2] == "exec":
		id := parts[1]
		if f.gone[id] {
			f.fail(w, http.StatusConflict, "Container "+id+" is not running")
			return
		}
		var body struct{ Cmd []string }
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || r.Header.Get("Content-Type") != "application/json" {
			f.fail(w, http.StatusBadRequest, "bad body")
			return
		}
		f.mu.Lock()
		execID := fmt.Sprintf("exec-%s-%d", id, len(f.running))
		f.running[execID] = id
		f.execs[id] = append(f.execs[id], body.Cmd)
		f.mu.Unlock()
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(map[string]string{"Id": execID})
	case r.Method == http.MethodPost && len(parts) == 3 && parts[0] == "exec" && parts[2] == "start":
		var body struct{ Detach bool }
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || !body.Detach {
			f.fail(w, http.StatusBadRequest, "want a detached start")
			return
		}
		w.WriteHeader(http.StatusOK)
	case r.Method == http.MethodGet && len(parts) == 3 && parts[0] == "exec" && parts[2] == "json":
		f.mu.Lock()
		c, ok := f.running[parts[1]]
		f.polls[parts[1]]++
		polls := f.polls[parts[1]]
		f.mu.Unlock()
		if !ok {
			f.fail(w, http.StatusNotFound, "No such exec instance")
			return
		}
		// The command runs for two inspects, then exits.
		if polls < 3 {
			_ = json.NewEncoder(w).Encode(map[string]any{"Running": true, "ExitCode": nil, "Pid": 42})
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"Running": false, "ExitCode": f.exitCodes[c], "Pid": 42})
	default:
		f.fail(w, http.StatusNotFound, "page not found: "+r.Method+" "+r.URL.Path)
	}
}

func TestNotifySignal(t *testing.T) {
	f, sock := newFakeEngine(t)
	var ids []string
	for i := range 20 {
		ids = append(ids, fmt.Sprintf("c%02d", i))
	}
	f.mounts["vol"] = append(ids, "gone1")
	f.mounts["other"] = []string{"x1"}
	f.gone["gone1"] = true
	n := New(sock, Config{Concurrency: 4, Logger: zerolog.Nop()})
	if !Granted(sock) {
		t.Fatalf("Granted(%s) = false for a listening socket", sock)
	}
	res := n.Notify(context.Background(), "vol", Spec{Signal: "SIGHUP"})
	if res.Containers != 21 || res.Failed != 0 || res.Skipped != 1 || len(res.Errors) != 0 || res.At.IsZero() {
		t.Fatalf("Notify = %+v, want 21 containers, 1 skipped, none failed", res)
	}
	for _, id := range ids {
		if got := f.signals[id]; !slices.Equal(got, []string{"SIGHUP"}) {
			t.Errorf("container %s got signals %q, want one SIGHUP", id, got)
		}
	}
	if got := f.signals["x1"]; len(got) > 0 {
		t.Errorf("a container of another volume got %q", got)
	}
	if m := f.maxIn.Load(); m > 4 {
		t.Errorf("%d requests at once, want at most the concurrency, 4", m)
	}
}

func TestNotifyExec(t *testing.T) {
	f, sock := newFakeEngine(t)
	f.mounts["vol"] = []string{"ok1", "ok2", "bad"}
	f.exitCodes["bad"] = 3
	n := New(sock, Config{Logger: zerolog.Nop()})
	argv := []string{"nginx", "-s", "reload"}
	res := n.Notify(context.Background(), "vol", Spec{Exec: argv})
	if res.Containers != 3 || res.Failed != 1 || len(res.Errors) != 1 {
		t.Fatalf("Notify = %+v, want 3 containers, 1 failed", res)
	}
	if want := "container name-bad: nginx exited with status 3"; res.Errors[0] != want {
		t.Errorf("error %q, want %q", res.Errors[0], want)
	}
	for _, id := range f.mounts["vol"] {
		if got := f.execs[id]; len(got) != 1 || !slices.Equal(got[0], argv) {
			t.Errorf("container %s ran %q, want %q once", id, got, argv)
		}
	}
	for id, polls := range f.polls {
		if polls < 3 {
			t.Errorf("exec %s inspected %d times: the notifier did not wait for the command to end", id, polls)
		}
	}
}

func TestNotifyEngineDown(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	if Granted(sock) {
		t.Fatal("Granted for a missing socket")
	}
	if Granted("/dev/null") {
		t.Fatal("Granted for /dev/null, the engine mount's default")
	}
	n := New(sock, Config{Logger: zerolog.Nop(), Timeout: time.Second})
	res := n.Notify(context.Background(), "vol", Spec{Signal: "SIGHUP"})
	if res.Failed != 1 || len(res.Errors) != 1 || !strings.Contains(res.Errors[0], `list the containers of volume "vol"`) {
		t.Fatalf("Notify with no engine = %+v, want one failure naming the listing", res)
	}
	if res := n.Notify(context.Background(), "vol", Spec{}); res.Containers != 0 || res.Failed != 0 {
		t.Fatalf("Notify of the zero spec = %+v, want nothing done", res)
	}
}
