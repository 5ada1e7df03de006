package volumes

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/docker/go-plugins-helpers/volume"
)

// TestPluginProtocol speaks Docker's plugin protocol to the real handler over
// a unix socket, as dockerd does, to pin the wire format of each call.
func TestPluginProtocol(t *testing.T) {
	h := newHarness(t)
	h.backend.values["proto-secret"] = "x"
	sock := filepath.Join(t.TempDir(), "dsv.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = volume.NewHandler(h.drv).Serve(l) }()
	t.Cleanup(func() { l.Close() })

	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
	call := func(path string, body any) map[string]any {
		t.Helper()
		b, _ := json.Marshal(body)
		resp, err := client.Post("http://plugin"+path, "application/vnd.docker.plugins.v1.2+json", bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		defer resp.Body.Close()
		var out map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatalf("%s: decode: %v", path, err)
		}
		return out
	}

	act := call("/Plugin.Activate", nil)
	if impl, _ := act["Implements"].([]any); len(impl) != 1 || impl[0] != "VolumeDriver" {
		t.Fatalf("Activate = %v", act)
	}
	if got := call("/VolumeDriver.Capabilities", nil); got["Capabilities"].(map[string]any)["Scope"] != "local" {
		t.Fatalf("Capabilities = %v", got)
	}
	bad := call("/VolumeDriver.Create", map[string]any{"Name": "proto-secret", "Opts": map[string]string{"mode": "0666"}})
	if msg, _ := bad["Err"].(string); !strings.Contains(msg, `option "mode"`) {
		t.Fatalf("Create with a bad mode = %v, want an Err naming the option", bad)
	}
	if got := call("/VolumeDriver.Create", map[string]any{"Name": "proto-secret", "Opts": map[string]string{"mode": "0440"}}); got["Err"] != nil && got["Err"] != "" {
		t.Fatalf("Create = %v", got)
	}
	m := call("/VolumeDriver.Mount", map[string]any{"Name": "proto-secret", "ID": "abc"})
	if !strings.HasSuffix(m["Mountpoint"].(string), "/proto-secret/proto-secret") {
		t.Fatalf("Mount = %v", m)
	}
	g := call("/VolumeDriver.Get", map[string]any{"Name": "proto-secret"})
	if g["Volume"].(map[string]any)["Status"].(map[string]any)["mode"] != "0440" {
		t.Fatalf("Get = %v", g)
	}
	call("/VolumeDriver.Unmount", map[string]any{"Name": "proto-secret", "ID": "abc"})
	if rm := call("/VolumeDriver.Remove", map[string]any{"Name": "proto-secret"}); rm["Err"] != nil && rm["Err"] != "" {
		t.Fatalf("Remove = %v", rm)
	}
	if l := call("/VolumeDriver.List", nil); len(l["Volumes"].([]any)) != 0 {
		t.Fatalf("List after Remove = %v", l)
	}
}
