// Package registry runs a real image registry for the end-to-end suite:
// Debian's docker-registry (the distribution registry, package
// docker-registry) on 127.0.0.1, with its own configuration and storage in
// a folder of the caller's, so that the suite can publish the plugin with
// `docker plugin push` and install it with `docker plugin install` as
// users do. dockerd talks plain HTTP to a registry on 127.0.0.0/8.
package registry

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/dsv-plugin/dsv/test/testproc"
)

// Environment variables the package reads.
const (
	// EnvBinary names the registry executable to run instead of the one on
	// PATH.
	EnvBinary = "DOCKER_REGISTRY"
	// EnvRequire, set to 1 (make unit sets it), turns a missing registry
	// from a skip into a failure.
	EnvRequire = "DSV_REQUIRE_REGISTRY"
)

// Binary finds the registry: $DOCKER_REGISTRY, or docker-registry on PATH.
func Binary() (string, error) {
	return testproc.LookPath(EnvBinary, "docker-registry", "apt-get install docker-registry")
}

// Process is a running registry.
type Process struct {
	// Addr is the registry's host:port, 127.0.0.1:PORT: the first part of
	// an image reference.
	Addr string

	*testproc.Process
	client *http.Client
}

// Start runs bin (see Binary) on a free port of 127.0.0.1 with its
// configuration and storage in dir, and returns once it answers. The
// caller must call Stop.
func Start(ctx context.Context, bin, dir string) (*Process, error) {
	return testproc.OnFreePort(ctx, func(port int) (*Process, error) {
		return startOnce(ctx, bin, dir, port)
	})
}

func startOnce(ctx context.Context, bin, dir string, port int) (*Process, error) {
	secret := make([]byte, 16)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	// JSON is YAML: no quoting rules to get wrong.
	cfg, err := json.Marshal(map[string]any{
		"version": 0.1,
		"log":     map[string]any{"level": "warn", "accesslog": map[string]any{"disabled": true}},
		"storage": map[string]any{
			"filesystem": map[string]any{"rootdirectory": filepath.Join(dir, "storage")},
			"delete":     map[string]any{"enabled": true},
		},
		"http": map[string]any{"addr": addr, "secret": hex.EncodeToString(secret)},
	})
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		return nil, err
	}
	p := &Process{Addr: addr, client: &http.Client{Timeout: 30 * time.Second}}
	p.Process, err = testproc.Start(ctx, exec.Command(bin, "serve", cfgPath), testproc.Options{
		Name: "docker-registry on " + addr,
		// The API's base endpoint.
		Ready: func(ctx context.Context) error { return testproc.GetOK(ctx, nil, "http://"+addr+"/v2/") },
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// Descriptor points at a blob: an image's config or one of its layers.
type Descriptor struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
}

// Manifest is an image manifest, schema 2: what `docker plugin push`
// writes.
type Manifest struct {
	MediaType string       `json:"mediaType"`
	Config    Descriptor   `json:"config"`
	Layers    []Descriptor `json:"layers"`
}

// manifestType is the media type of a schema 2 manifest.
const manifestType = "application/vnd.docker.distribution.manifest.v2+json"

// Manifest fetches the manifest of repo:tag.
func (p *Process) Manifest(ctx context.Context, repo, tag string) (Manifest, error) {
	var m Manifest
	b, err := p.fetch(ctx, "/v2/"+repo+"/manifests/"+tag, manifestType)
	if err != nil {
		return m, fmt.Errorf("manifest of %s:%s: %w", repo, tag, err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("manifest of %s:%s: %w", repo, tag, err)
	}
	return m, nil
}

// Blob fetches a blob of repo and checks it against its digest.
func (p *Process) Blob(ctx context.Context, repo string, d Descriptor) ([]byte, error) {
	b, err := p.fetch(ctx, "/v2/"+repo+"/blobs/"+d.Digest, "")
	if err != nil {
		return nil, fmt.Errorf("blob %s of %s: %w", d.Digest, repo, err)
	}
	if got := sha256.Sum256(b); "sha256:"+hex.EncodeToString(got[:]) != d.Digest {
		return nil, fmt.Errorf("blob %s of %s: content does not match its digest", d.Digest, repo)
	}
	return b, nil
}

func (p *Process) fetch(ctx context.Context, path, accept string) ([]byte, error) {
	resp, err := p.get(ctx, path, accept)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(b))
	}
	return b, nil
}

func (p *Process) get(ctx context.Context, path, accept string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.Addr+path, nil)
	if err != nil {
		return nil, err
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	return p.client.Do(req)
}
