package main

import (
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

// fault is one failure a test queued: the next request of the process's
// kind (a vault GET, a token request) answers it instead.
type fault struct {
	// Status is the HTTP status: 429 throttles, 5xx fails.
	Status int `json:"status"`
	// RetryAfter, in seconds, is sent as Retry-After when set, as Key
	// Vault and Entra ID do when they throttle
	// (https://learn.microsoft.com/azure/key-vault/general/overview-throttling).
	RetryAfter int `json:"retryAfter"`
}

// faults holds a process's queued failures and its request counts, and
// serves the test-only controls under /fake/: POST /fake/fail with a JSON
// list of faults, GET /fake/counts.
type faults struct {
	mu     sync.Mutex
	next   []fault
	counts map[string]int
}

func newFaults() *faults { return &faults{counts: map[string]int{}} }

// control serves a /fake/ request; false when r is not one.
func (f *faults) control(w http.ResponseWriter, r *http.Request) bool {
	what, ok := strings.CutPrefix(r.URL.Path, "/fake/")
	if !ok {
		return false
	}
	switch {
	case what == "fail" && r.Method == http.MethodPost:
		var add []fault
		if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&add); err != nil {
			http.Error(w, "body: a JSON list of {status, retryAfter}", http.StatusBadRequest)
			return true
		}
		f.mu.Lock()
		f.next = append(f.next, add...)
		f.mu.Unlock()
		writeJSON(w, http.StatusOK, map[string]any{})
	case what == "counts" && r.Method == http.MethodGet:
		f.mu.Lock()
		c := maps.Clone(f.counts)
		f.mu.Unlock()
		writeJSON(w, http.StatusOK, c)
	default:
		http.NotFound(w, r)
	}
	return true
}

// take counts a request of kind and returns the fault queued for it, if
// any, having set its Retry-After header.
func (f *faults) take(w http.ResponseWriter, kind string) (fault, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.counts[kind]++
	if len(f.next) == 0 {
		return fault{}, false
	}
	x := f.next[0]
	f.next = f.next[1:]
	if x.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(x.RetryAfter))
	}
	return x, true
}
