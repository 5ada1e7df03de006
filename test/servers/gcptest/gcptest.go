// Package gcptest runs test/fakes/gcpfake, a local stand-in for Secret Manager,
// Google's OAuth token endpoint, STS, IAM key creation and the metadata
// server, as its own process for the tests of the gcp backend, and drives
// it through the same REST contracts: secrets and versions are created with
// Secret Manager's methods, service-account keys with IAM's.
//
// The fake is built from this module's source with `go build` (cached by
// Go's build cache), so it needs nothing but the Go toolchain: the tests
// that use it never skip.
package gcptest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dsv-plugin/dsv/test/testproc"
)

// Project is the project the helpers default to.
const Project = "dsv-test-project"

// startTimeout bounds the build and the wait for the server's first line.
const startTimeout = 2 * time.Minute

var build struct {
	once sync.Once
	path string
	err  error
}

// Binary builds test/fakes/gcpfake once per process and returns its path. Each
// build is renamed into place, so concurrent test processes never see a
// half-written binary.
func Binary() (string, error) {
	build.once.Do(func() {
		root, err := testproc.ModuleRoot()
		if err != nil {
			build.err = err
			return
		}
		dir := filepath.Join(os.TempDir(), fmt.Sprintf("dsv-gcpfake-%d", os.Getuid()))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			build.err = err
			return
		}
		tmp := filepath.Join(dir, fmt.Sprintf("gcpfake.%d.tmp", os.Getpid()))
		ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", tmp, "./test/fakes/gcpfake")
		cmd.Dir = root
		// Built for this machine even when the tests are cross-built (make
		// unit-arm64 runs them emulated): the fake is a server the tests talk
		// to, not the code under test.
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=", "GOARCH=")
		if out, err := cmd.CombinedOutput(); err != nil {
			build.err = fmt.Errorf("go build ./test/fakes/gcpfake: %w: %s", err, out)
			return
		}
		build.path = filepath.Join(dir, "gcpfake")
		build.err = os.Rename(tmp, build.path)
	})
	return build.path, build.err
}

// Process is a running gcpfake.
type Process struct {
	// URL is its base URL, http://127.0.0.1:PORT: GCP_ENDPOINT, the
	// token_uri of its keys, and (without the scheme) GCE_METADATA_HOST.
	URL string
	// AdminToken is the access token of the principal that may do anything.
	AdminToken string

	*testproc.Process
}

// StartProcess runs bin (see Binary) on a free port of 127.0.0.1 and returns
// once it accepts connections; extra args go to the fake. The caller must
// call Stop.
func StartProcess(ctx context.Context, bin string, args ...string) (*Process, error) {
	tok := make([]byte, 16)
	if _, err := rand.Read(tok); err != nil {
		return nil, err
	}
	p := &Process{AdminToken: "admin-" + hex.EncodeToString(tok)}
	cmd := exec.Command(bin, append([]string{"-admin-token", p.AdminToken}, args...)...)
	var err error
	p.Process, err = testproc.Start(ctx, cmd, testproc.Options{
		Name: "gcpfake",
		// The first line says where it listens, once it does.
		ReadyLine: func(line string) error {
			var hello struct {
				URL string `json:"url"`
			}
			if json.Unmarshal([]byte(line), &hello) != nil || hello.URL == "" {
				return errors.New(`want {"url": URL}`)
			}
			p.URL = hello.URL
			return nil
		},
		Timeout: startTimeout,
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// MetadataHost is the value of GCE_METADATA_HOST that points the metadata
// client at the fake.
func (p *Process) MetadataHost() string { return strings.TrimPrefix(p.URL, "http://") }

// Server is a gcpfake owned by one test.
type Server struct {
	*Process
	t testing.TB
}

// Start runs a gcpfake for t and stops it when t ends.
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	p, err := StartProcess(context.Background(), bin, args...)
	if err != nil {
		t.Fatal(err)
	}
	p.Cleanup(t)
	return &Server{Process: p, t: t}
}

// call makes an admin request and decodes the answer into out (may be nil).
func (s *Server) call(method, path string, body, out any) {
	s.t.Helper()
	if err := s.Process.call(method, path, body, out); err != nil {
		s.t.Fatal(err)
	}
}

func (p *Process) call(method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, p.URL+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+p.AdminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("gcpfake %s %s: %w", method, path, err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("gcpfake %s %s: %s: %s", method, path, resp.Status, b)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// CreateSecret creates a secret (secrets.create) and returns its name as
// the user writes it: projects/PROJECT/secrets/ID.
func (s *Server) CreateSecret(project, id string) string {
	s.t.Helper()
	s.call(http.MethodPost, "/v1/projects/"+project+"/secrets?secretId="+url.QueryEscape(id),
		map[string]any{"replication": map[string]any{"automatic": map[string]any{}}}, nil)
	return "projects/" + project + "/secrets/" + id
}

// AddVersion adds a version to a secret (secrets.addVersion, with its
// checksum computed by the fake) and returns its number. secret is
// projects/P[/locations/L]/secrets/S.
func (s *Server) AddVersion(secret string, value []byte) string {
	s.t.Helper()
	v, err := s.Process.AddVersion(secret, value)
	if err != nil {
		s.t.Fatal(err)
	}
	return v
}

// AddVersion is Server.AddVersion without a testing.TB.
func (p *Process) AddVersion(secret string, value []byte) (string, error) {
	var out struct {
		Name string `json:"name"`
	}
	if err := p.call(http.MethodPost, "/v1/"+secret+":addVersion",
		map[string]any{"payload": map[string]any{"data": base64.StdEncoding.EncodeToString(value)}}, &out); err != nil {
		return "", err
	}
	i := strings.LastIndex(out.Name, "/")
	return out.Name[i+1:], nil
}

// SetAliases gives a secret's versions aliases (secrets.patch).
func (s *Server) SetAliases(secret string, aliases map[string]int) {
	s.t.Helper()
	m := map[string]string{}
	for a, n := range aliases {
		m[a] = strconv.Itoa(n)
	}
	s.call(http.MethodPatch, "/v1/"+secret+"?updateMask=versionAliases", map[string]any{"versionAliases": m}, nil)
}

// SetVersionState disables, enables or destroys a version: action is
// "disable", "enable" or "destroy".
func (s *Server) SetVersionState(secret, version, action string) {
	s.t.Helper()
	s.call(http.MethodPost, "/v1/"+secret+"/versions/"+version+":"+action, map[string]any{}, nil)
}

// GrantAccessor gives a secret an IAM policy in which only members (e.g.
// serviceAccount:app@p.iam.gserviceaccount.com) hold
// roles/secretmanager.secretAccessor.
func (s *Server) GrantAccessor(secret string, members ...string) {
	s.t.Helper()
	s.call(http.MethodPost, "/v1/"+secret+":setIamPolicy", map[string]any{"policy": map[string]any{
		"bindings": []map[string]any{{"role": "roles/secretmanager.secretAccessor", "members": members}}}}, nil)
}

// GrantProjectAccessor gives members roles/secretmanager.secretAccessor on
// a project: they read all its secrets, and are told NOT_FOUND (not
// PERMISSION_DENIED) for one that does not exist.
func (s *Server) GrantProjectAccessor(project string, members ...string) {
	s.t.Helper()
	for _, m := range members {
		s.call(http.MethodPost, "/fake/grant-project", map[string]any{"name": project, "principal": m}, nil)
	}
}

// ServiceAccountKey creates a key of a service account (IAM
// serviceAccounts.keys.create) and returns the service-account JSON, whose
// token_uri is the fake's token endpoint, and the key's ID.
func (s *Server) ServiceAccountKey(email string) (json []byte, keyID string) {
	s.t.Helper()
	js, id, err := s.Process.ServiceAccountKey(email)
	if err != nil {
		s.t.Fatal(err)
	}
	return js, id
}

// ServiceAccountKey is Server.ServiceAccountKey without a testing.TB.
func (p *Process) ServiceAccountKey(email string) ([]byte, string, error) {
	var out struct {
		Name           string `json:"name"`
		PrivateKeyData string `json:"privateKeyData"`
	}
	if err := p.call(http.MethodPost, "/v1/projects/-/serviceAccounts/"+email+"/keys", map[string]any{}, &out); err != nil {
		return nil, "", err
	}
	js, err := base64.StdEncoding.DecodeString(out.PrivateKeyData)
	if err != nil {
		return nil, "", err
	}
	return js, out.Name[strings.LastIndex(out.Name, "/")+1:], nil
}

// DeleteKey deletes a service-account key (keys.delete): the token
// endpoint refuses it from then on.
func (s *Server) DeleteKey(email, keyID string) {
	s.t.Helper()
	s.call(http.MethodDelete, "/v1/projects/-/serviceAccounts/"+email+"/keys/"+keyID, nil, nil)
}

// ExternalAccount registers a workload identity federation subject: STS
// exchanges subjectToken for principal. It returns the external_account
// configuration that reads the subject token from subjectTokenFile.
func (s *Server) ExternalAccount(subjectToken, principal, subjectTokenFile string) []byte {
	s.t.Helper()
	const audience = "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/dsv/providers/test"
	s.call(http.MethodPost, "/fake/subjects", map[string]any{"audience": audience, "token": subjectToken, "principal": principal}, nil)
	js, err := json.MarshalIndent(map[string]any{
		"type":               "external_account",
		"audience":           audience,
		"subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
		"token_url":          s.URL + "/v1/token",
		"credential_source":  map[string]any{"file": subjectTokenFile},
		"universe_domain":    "googleapis.com",
	}, "", "  ")
	if err != nil {
		s.t.Fatal(err)
	}
	return js
}

// Corrupt makes the fake flip a byte of a version's value in every answer,
// keeping the checksum: corruption on the way. version is
// projects/P/secrets/S/versions/V.
func (s *Server) Corrupt(version string) {
	s.t.Helper()
	s.call(http.MethodPost, "/fake/corrupt", map[string]any{"name": version}, nil)
}

// DropChecksum makes the fake answer a version without dataCrc32c, as
// Secret Manager answers a version added before it stored checksums.
func (s *Server) DropChecksum(version string) {
	s.t.Helper()
	s.call(http.MethodPost, "/fake/no-checksum", map[string]any{"name": version}, nil)
}

// FailNext makes the next accesses fail with these HTTP statuses, in order.
func (s *Server) FailNext(statuses ...int) {
	s.t.Helper()
	s.call(http.MethodPost, "/fake/fail", map[string]any{"statuses": statuses}, nil)
}

// DisableAPI turns the Secret Manager API off in a project.
func (s *Server) DisableAPI(project string) {
	s.t.Helper()
	s.call(http.MethodPost, "/fake/disable-api", map[string]any{"name": project}, nil)
}

// Counts returns how many requests the fake served, by kind: access,
// oauth (JWT grants), sts, metadata.
func (s *Server) Counts() map[string]int {
	s.t.Helper()
	var out map[string]int
	s.call(http.MethodGet, "/fake/counts", nil, &out)
	return out
}
