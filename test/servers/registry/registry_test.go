package registry

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// TestRoundTrip uploads a blob and a manifest with the registry's own API
// and reads them back through Manifest and Blob.
func TestRoundTrip(t *testing.T) {
	bin, err := Binary()
	if err != nil {
		if os.Getenv(EnvRequire) == "1" {
			t.Fatalf("%s=1: %v", EnvRequire, err)
		}
		t.Skipf("skipping: %v (set %s=1 to fail instead)", err, EnvRequire)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := Start(ctx, bin, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	p.Cleanup(t)

	if _, err := p.Manifest(ctx, "dsv/none", "v1"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("Manifest of a missing image: got %v, want a 404 error", err)
	}

	layer := Descriptor{MediaType: "application/vnd.docker.image.rootfs.diff.tar.gzip"}
	content := []byte("not really a layer")
	layer.Digest, layer.Size = put(t, p, "dsv/test", content), int64(len(content))
	cfg := Descriptor{MediaType: "application/vnd.docker.plugin.v1+json"}
	cfgContent := []byte(`{"entrypoint":["/dsv"]}`)
	cfg.Digest, cfg.Size = put(t, p, "dsv/test", cfgContent), int64(len(cfgContent))
	m, err := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": manifestType, "config": cfg, "layers": []Descriptor{layer}})
	if err != nil {
		t.Fatal(err)
	}
	do(t, http.MethodPut, "http://"+p.Addr+"/v2/dsv/test/manifests/v1", manifestType, m, http.StatusCreated)

	got, err := p.Manifest(ctx, "dsv/test", "v1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Config != cfg || len(got.Layers) != 1 || got.Layers[0] != layer {
		t.Fatalf("Manifest = %+v, want config %+v and layer %+v", got, cfg, layer)
	}
	b, err := p.Blob(ctx, "dsv/test", got.Layers[0])
	if err != nil || !bytes.Equal(b, content) {
		t.Errorf("Blob = %q, %v; want %q", b, err, content)
	}
	wrong := got.Layers[0]
	wrong.Digest = cfg.Digest
	wrong.Digest = wrong.Digest[:len(wrong.Digest)-1] + "0"
	if _, err := p.Blob(ctx, "dsv/test", wrong); err == nil {
		t.Errorf("Blob of an unknown digest: no error")
	}
}

// put uploads a blob in one request and returns its digest.
func put(t *testing.T, p *Process, repo string, content []byte) string {
	t.Helper()
	sum := sha256.Sum256(content)
	digest := "sha256:" + hex.EncodeToString(sum[:])
	resp := do(t, http.MethodPost, "http://"+p.Addr+"/v2/"+repo+"/blobs/uploads/", "", nil, http.StatusAccepted)
	loc, err := resp.Request.URL.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	q := loc.Query()
	q.Set("digest", digest)
	loc.RawQuery = q.Encode()
	do(t, http.MethodPut, loc.String(), "application/octet-stream", content, http.StatusCreated)
	return digest
}

func do(t *testing.T, method, u, contentType string, body []byte, want int) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, u, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != want {
		t.Fatalf("%s %s: %s, want %d", method, u, resp.Status, want)
	}
	return resp
}
