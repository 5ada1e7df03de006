package vault

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// fakeVault emulates the few endpoints the backend calls, to test what it
// sends (paths, namespaces, tokens, wrapping) and how it reacts to answers
// that a real Vault gives rarely or only on failure. Behaviour against
// Vault itself is tested against a real server in the integration tests.
type fakeVault struct {
	srv *httptest.Server

	mu      sync.Mutex
	valid   map[string]bool           // tokens Vault accepts
	deny    map[string]bool           // API paths valid tokens may not use
	mounts  map[string]fakeMount      // by mount path: "secret/"
	answers map[string]fakeAnswer     // by "METHOD path"
	roles   map[string]string         // AppRole role-id -> secret-id
	wrapped map[string]map[string]any // wrapping token -> data
	seen    []seenRequest
	logins  int
	// noMounts answers 404 to sys/internal/ui/mounts, like a Vault (or a
	// proxy) without the endpoint.
	noMounts bool
	// emptyLookup answers auth/token/lookup-self with 200 and no body.
	emptyLookup bool
	// lookupTTL is the ttl, in seconds, that lookup-self gives a token (0:
	// none); with one the token is renewable, and the backend renews it
	// at auth/token/renew-self: answered from renewTTLs when set, else
	// from answers.
	lookupTTL int
	// renewTTLs are the lease durations of the renewals of
	// auth/token/renew-self in turn, the last one repeated.
	renewTTLs []int
	renewals  int
	// stall, when set, picks requests (by API path) that get no answer:
	// they are held until their client goes away, as by a Vault that
	// accepted the connection and hangs.
	stall func(path string) bool
	// released ends the stalled requests, at the test's end.
	released chan struct{}
}

type fakeMount struct {
	engine  string
	version string
}

type fakeAnswer struct {
	status int
	body   string
}

// seenRequest is what the backend sent.
type seenRequest struct {
	Method, Path, Query, Namespace, Token, WrapTTL string
	Body                                           map[string]any
}

func newFakeVault(t *testing.T) *fakeVault {
	t.Helper()
	f := &fakeVault{
		valid:   map[string]bool{},
		deny:    map[string]bool{},
		mounts:  map[string]fakeMount{"secret/": {engine: "kv", version: "2"}, "kv/": {engine: "kv", version: "1"}, "database/": {engine: "database"}, "pki/": {engine: "pki"}},
		answers: map[string]fakeAnswer{},
		roles:   map[string]string{},
		wrapped: map[string]map[string]any{},
	}
	f.released = make(chan struct{})
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	t.Cleanup(func() { close(f.released) }) // before srv.Close, which waits for them
	return f
}

func (f *fakeVault) answer(method, path string, status int, body string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.answers[method+" "+path] = fakeAnswer{status: status, body: body}
}

// stallWhere makes the requests that pick chooses stall (see fakeVault.stall).
func (f *fakeVault) stallWhere(pick func(path string) bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stall = pick
}

func (f *fakeVault) setValid(token string, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.valid[token] = ok
}

func (f *fakeVault) requests() []seenRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]seenRequest(nil), f.seen...)
}

// requestsTo returns the requests to one API path.
func (f *fakeVault) requestsTo(path string) []seenRequest {
	var out []seenRequest
	for _, r := range f.requests() {
		if r.Path == path {
			out = append(out, r)
		}
	}
	return out
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func vaultErrors(w http.ResponseWriter, status int, msgs ...string) {
	if msgs == nil {
		msgs = []string{}
	}
	writeJSON(w, status, map[string]any{"errors": msgs})
}

func (f *fakeVault) serve(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimPrefix(r.URL.Path, "/v1/")
	body := map[string]any{}
	if b, _ := io.ReadAll(r.Body); len(b) > 0 {
		_ = json.Unmarshal(b, &body)
	}
	token := r.Header.Get("X-Vault-Token")
	f.mu.Lock()
	f.seen = append(f.seen, seenRequest{
		Method: r.Method, Path: path, Query: r.URL.RawQuery, Namespace: r.Header.Get("X-Vault-Namespace"),
		Token: token, WrapTTL: r.Header.Get("X-Vault-Wrap-TTL"), Body: body,
	})
	valid := f.valid[token]
	stall := f.stall
	f.mu.Unlock()
	if stall != nil && stall(path) {
		select {
		case <-r.Context().Done():
		case <-f.released:
		}
		return
	}

	switch {
	case path == "auth/approle/login":
		f.mu.Lock()
		defer f.mu.Unlock()
		rid, _ := body["role_id"].(string)
		sid, _ := body["secret_id"].(string)
		if want, ok := f.roles[rid]; !ok || want != sid {
			vaultErrors(w, 400, "invalid role or secret ID")
			return
		}
		f.logins++
		tok := fmt.Sprintf("approle-token-%d", f.logins)
		f.valid[tok] = true
		writeJSON(w, 200, map[string]any{"auth": map[string]any{"client_token": tok, "lease_duration": 0, "renewable": false}})
		return
	case path == "sys/wrapping/unwrap":
		f.mu.Lock()
		defer f.mu.Unlock()
		data, ok := f.wrapped[token]
		if !ok {
			vaultErrors(w, 400, "wrapping token is not valid or does not exist")
			return
		}
		delete(f.wrapped, token)
		writeJSON(w, 200, map[string]any{"data": data})
		return
	}
	if !valid {
		vaultErrors(w, 403, "permission denied")
		return
	}
	switch {
	case path == "auth/token/lookup-self" && f.emptyLookup:
		w.WriteHeader(200)
		return
	case path == "auth/token/lookup-self":
		f.mu.Lock()
		ttl := f.lookupTTL
		f.mu.Unlock()
		writeJSON(w, 200, map[string]any{"data": map[string]any{"ttl": ttl, "renewable": ttl > 0}})
		return
	case path == "auth/token/renew-self" && f.renewTTLs != nil:
		f.mu.Lock()
		ttl := f.renewTTLs[min(f.renewals, len(f.renewTTLs)-1)]
		f.renewals++
		f.mu.Unlock()
		writeJSON(w, 200, map[string]any{"auth": map[string]any{"client_token": token, "lease_duration": ttl, "renewable": true}})
		return
	case strings.HasPrefix(path, "sys/internal/ui/mounts/"):
		p := strings.TrimPrefix(path, "sys/internal/ui/mounts/")
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.noMounts {
			vaultErrors(w, 404)
			return
		}
		for mp, m := range f.mounts {
			if strings.HasPrefix(p+"/", mp) {
				writeJSON(w, 200, map[string]any{"data": map[string]any{"path": mp, "type": m.engine, "options": map[string]any{"version": m.version}}})
				return
			}
		}
		vaultErrors(w, 403, fmt.Sprintf("preflight capability check returned 403, please ensure client's policies grant access to path %q", p+"/"))
		return
	}
	f.mu.Lock()
	a, ok := f.answers[r.Method+" "+path]
	denied := f.deny[path]
	f.mu.Unlock()
	switch {
	case denied:
		vaultErrors(w, 403, "permission denied")
	case !ok:
		vaultErrors(w, 404)
	default:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(a.status)
		_, _ = io.WriteString(w, a.body)
	}
}
