package pluginmux

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/go-plugins-helpers/secrets"
	"github.com/docker/go-plugins-helpers/volume"
)

// fakeVolumes is a volume.Driver that records its volumes.
type fakeVolumes struct {
	mu   sync.Mutex
	vols map[string]map[string]string
}

var _ volume.Driver = (*fakeVolumes)(nil)

func (f *fakeVolumes) Create(r *volume.CreateRequest) error {
	if r.Options["bad"] != "" {
		return fmt.Errorf("volume %q: bad option", r.Name)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.vols[r.Name] = r.Options
	return nil
}

func (f *fakeVolumes) List() (*volume.ListResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out volume.ListResponse
	for _, n := range slices.Sorted(maps.Keys(f.vols)) {
		out.Volumes = append(out.Volumes, &volume.Volume{Name: n})
	}
	return &out, nil
}

func (f *fakeVolumes) Get(r *volume.GetRequest) (*volume.GetResponse, error) {
	return &volume.GetResponse{Volume: &volume.Volume{Name: r.Name}}, nil
}
func (f *fakeVolumes) Remove(*volume.RemoveRequest) error { return nil }
func (f *fakeVolumes) Path(r *volume.PathRequest) (*volume.PathResponse, error) {
	return &volume.PathResponse{Mountpoint: "/mnt/" + r.Name}, nil
}
func (f *fakeVolumes) Mount(r *volume.MountRequest) (*volume.MountResponse, error) {
	return &volume.MountResponse{Mountpoint: "/mnt/" + r.Name}, nil
}
func (f *fakeVolumes) Unmount(*volume.UnmountRequest) error { return nil }
func (f *fakeVolumes) Capabilities() *volume.CapabilitiesResponse {
	return &volume.CapabilitiesResponse{Capabilities: volume.Capability{Scope: "local"}}
}

// fakeSecrets answers with the secret's name, or an error for "missing".
type fakeSecrets struct{}

func (fakeSecrets) Get(r secrets.Request) secrets.Response {
	if r.SecretName == "missing" {
		return secrets.Response{Err: `secret "missing": not found`}
	}
	return secrets.Response{Value: []byte("value-of-" + r.SecretName + "-for-" + r.ServiceName), DoNotReuse: r.ServiceName == "dynamic"}
}

// serve runs Serve with apis on a fresh unix socket and returns a client
// for it and a function that stops the server and returns Serve's result
// (also called when the test ends).
func serve(t *testing.T, apis ...API) (client *http.Client, stop func() error) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "plugin.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- Serve(l, apis...) }()
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}
	client = &http.Client{Transport: tr, Timeout: 10 * time.Second}
	stopped := false
	stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		tr.CloseIdleConnections()
		l.Close()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			return errors.New("Serve did not return within 10s of its listener closing")
		}
	}
	t.Cleanup(func() { _ = stop() })
	return client, stop
}

// serveBoth serves both protocols behind one unix socket and returns
// a client for it and a function that stops the server and returns Serve's
// result.
func serveBoth(t *testing.T) (call func(path string, body any) (int, map[string]any), stop func() error) {
	t.Helper()
	client, stop := serve(t,
		API{Implements: VolumeDriver, Prefix: "/VolumeDriver.", Handler: VolumeHandler(&fakeVolumes{vols: map[string]map[string]string{}})},
		API{Implements: SecretProvider, Prefix: "/SecretProvider.", Handler: SecretHandler(fakeSecrets{})},
	)
	call = func(path string, body any) (int, map[string]any) {
		t.Helper()
		b, _ := json.Marshal(body)
		resp, err := client.Post("http://plugin"+path, "application/vnd.docker.plugins.v1.2+json", bytes.NewReader(b))
		if err != nil {
			t.Errorf("%s: %v", path, err)
			return 0, nil
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var out map[string]any
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Errorf("%s: status %d, body %q is not JSON: %v", path, resp.StatusCode, raw, err)
		}
		return resp.StatusCode, out
	}
	return call, stop
}

// TestBothProtocols speaks the volume and the secret provider protocols to
// one unix socket, as dockerd does.
func TestBothProtocols(t *testing.T) {
	call, stop := serveBoth(t)

	code, act := call("/Plugin.Activate", nil)
	impl, _ := act["Implements"].([]any)
	if code != http.StatusOK || len(impl) != 2 || impl[0] != "VolumeDriver" || impl[1] != "secretprovider" {
		t.Fatalf("Activate = %d %v, want 200 and Implements [VolumeDriver secretprovider]", code, act)
	}

	tests := []struct {
		name     string
		path     string
		body     any
		wantCode int
		want     map[string]any
	}{
		{name: "volume capabilities", path: "/VolumeDriver.Capabilities", wantCode: 200,
			want: map[string]any{"Capabilities": map[string]any{"Scope": "local"}}},
		{name: "volume create", path: "/VolumeDriver.Create", body: map[string]any{"Name": "v1", "Opts": map[string]string{"secret": "x"}}, wantCode: 200,
			want: map[string]any{}},
		{name: "volume create error", path: "/VolumeDriver.Create", body: map[string]any{"Name": "v2", "Opts": map[string]string{"bad": "1"}}, wantCode: 500,
			want: map[string]any{"Err": `volume "v2": bad option`}},
		{name: "volume list", path: "/VolumeDriver.List", wantCode: 200,
			want: map[string]any{"Volumes": []any{map[string]any{"Name": "v1"}}}},
		{name: "volume mount", path: "/VolumeDriver.Mount", body: map[string]any{"Name": "v1", "ID": "abc"}, wantCode: 200,
			want: map[string]any{"Mountpoint": "/mnt/v1"}},
		{name: "secret", path: "/SecretProvider.GetSecret", body: map[string]any{"SecretName": "db", "ServiceName": "web"}, wantCode: 200,
			want: map[string]any{"Value": "dmFsdWUtb2YtZGItZm9yLXdlYg=="}}, // base64 of value-of-db-for-web
		{name: "secret do not reuse", path: "/SecretProvider.GetSecret", body: map[string]any{"SecretName": "db", "ServiceName": "dynamic"}, wantCode: 200,
			want: map[string]any{"Value": "dmFsdWUtb2YtZGItZm9yLWR5bmFtaWM=", "DoNotReuse": true}},
		{name: "secret error", path: "/SecretProvider.GetSecret", body: map[string]any{"SecretName": "missing"}, wantCode: 500,
			want: map[string]any{"Err": `secret "missing": not found`}},
		{name: "unknown protocol", path: "/NetworkDriver.CreateNetwork", wantCode: 404,
			want: map[string]any{"Err": "NetworkDriver.CreateNetwork: not implemented by this plugin"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, got := call(tt.path, tt.body)
			if code != tt.wantCode {
				t.Errorf("status = %d, want %d (body %v)", code, tt.wantCode, got)
			}
			gotJSON, _ := json.Marshal(got)
			wantJSON, _ := json.Marshal(tt.want)
			if !bytes.Equal(gotJSON, wantJSON) {
				t.Errorf("body = %s, want %s", gotJSON, wantJSON)
			}
		})
	}

	// Concurrent calls of both protocols do not mix answers.
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			svc := fmt.Sprintf("svc%d", i)
			if i%2 == 0 {
				_, got := call("/SecretProvider.GetSecret", map[string]any{"SecretName": "db", "ServiceName": svc})
				if v, _ := got["Value"].(string); v == "" {
					t.Errorf("concurrent GetSecret for %s = %v", svc, got)
				}
				return
			}
			if _, got := call("/VolumeDriver.Path", map[string]any{"Name": svc}); got["Mountpoint"] != "/mnt/"+svc {
				t.Errorf("concurrent Path of %s = %v", svc, got)
			}
		}()
	}
	wg.Wait()

	if err := stop(); err != nil {
		t.Fatalf("Serve after its listener closed = %v, want nil", err)
	}
}

// TestLargeAnswers: answers many times the server's 4 KiB buffer arrive
// whole, one after another and at once, although the List handler answers
// without reading the request body.
func TestLargeAnswers(t *testing.T) {
	vols := map[string]map[string]string{}
	for i := range 1000 {
		vols[fmt.Sprintf("volume-%04d-%s", i, strings.Repeat("x", 40))] = nil
	}
	client, stop := serve(t, API{Implements: VolumeDriver, Prefix: "/VolumeDriver.", Handler: VolumeHandler(&fakeVolumes{vols: vols})})
	list := func() {
		resp, err := client.Post("http://plugin/VolumeDriver.List", "application/vnd.docker.plugins.v1.2+json", strings.NewReader("{}\n"))
		if err != nil {
			t.Error(err)
			return
		}
		defer resp.Body.Close()
		raw, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Errorf("List answer, %d bytes read: %v", len(raw), err)
			return
		}
		var got volume.ListResponse
		if err := json.Unmarshal(raw, &got); err != nil {
			t.Errorf("List answer of %d bytes is not whole: %v", len(raw), err)
			return
		}
		if len(raw) < 32<<10 || len(got.Volumes) != len(vols) {
			t.Errorf("List answered %d volumes in %d bytes, want %d in over 32 KiB", len(got.Volumes), len(raw), len(vols))
		}
	}
	for range 20 {
		list()
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(list)
	}
	wg.Wait()

	if err := stop(); err != nil {
		t.Errorf("Serve = %v", err)
	}
}

// TestServeRejects checks the APIs before serving anything.
func TestServeRejects(t *testing.T) {
	h := http.NotFoundHandler()
	tests := []struct {
		name string
		apis []API
		want string
	}{
		{name: "none", want: "no API"},
		{name: "no prefix", apis: []API{{Implements: VolumeDriver, Handler: h}}, want: "needs a name"},
		{name: "no handler", apis: []API{{Implements: VolumeDriver, Prefix: "/VolumeDriver."}}, want: "needs a name"},
		{name: "same name", apis: []API{{Implements: VolumeDriver, Prefix: "/A.", Handler: h}, {Implements: VolumeDriver, Prefix: "/B.", Handler: h}}, want: "overlap"},
		{name: "nested prefix", apis: []API{{Implements: "a", Prefix: "/A.", Handler: h}, {Implements: "b", Prefix: "/A.B.", Handler: h}}, want: "overlap"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := net.Listen("unix", filepath.Join(t.TempDir(), "s.sock"))
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			err = Serve(l, tt.apis...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Serve = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestAsTheHelpers: every call of both protocols, and a body that is not
// JSON, is answered as go-plugins-helpers' own handlers answer it (status,
// content type, body), for the same driver.
func TestAsTheHelpers(t *testing.T) {
	helperSock := filepath.Join(t.TempDir(), "helpers.sock")
	hl, err := net.Listen("unix", helperSock)
	if err != nil {
		t.Fatal(err)
	}
	vols := &fakeVolumes{vols: map[string]map[string]string{"v0": nil}}
	go func() { _ = volume.NewHandler(vols).Serve(hl) }()
	t.Cleanup(func() { hl.Close() })
	sl, err := net.Listen("unix", filepath.Join(t.TempDir(), "secrets.sock"))
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = secrets.NewHandler(fakeSecrets{}).Serve(sl) }()
	t.Cleanup(func() { sl.Close() })
	clientOf := func(addr string) *http.Client {
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", addr)
		}}}
	}
	helpers, helperSecrets := clientOf(helperSock), clientOf(sl.Addr().String())
	ours, _ := serve(t,
		API{Implements: VolumeDriver, Prefix: "/VolumeDriver.", Handler: VolumeHandler(vols)},
		API{Implements: SecretProvider, Prefix: "/SecretProvider.", Handler: SecretHandler(fakeSecrets{})},
	)
	post := func(c *http.Client, path, body string) (int, string, string) {
		t.Helper()
		resp, err := c.Post("http://plugin"+path, "application/vnd.docker.plugins.v1.2+json", strings.NewReader(body))
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), string(raw)
	}
	calls := []struct{ path, body string }{
		{"/VolumeDriver.Create", `{"Name":"v1","Opts":{"secret":"x"}}`},
		{"/VolumeDriver.Create", `{"Name":"v2","Opts":{"bad":"1"}}`},
		{"/VolumeDriver.Create", `not json`},
		{"/VolumeDriver.Get", `{"Name":"v1"}`},
		{"/VolumeDriver.List", `{}`},
		{"/VolumeDriver.Path", `{"Name":"v1"}`},
		{"/VolumeDriver.Mount", `{"Name":"v1","ID":"abc"}`},
		{"/VolumeDriver.Mount", `{"Name":`},
		{"/VolumeDriver.Unmount", `{"Name":"v1","ID":"abc"}`},
		{"/VolumeDriver.Remove", `{"Name":"v1"}`},
		{"/VolumeDriver.Capabilities", `{}`},
		{"/SecretProvider.GetSecret", `{"SecretName":"db","ServiceName":"dynamic"}`},
		{"/SecretProvider.GetSecret", `{"SecretName":"missing"}`},
		{"/SecretProvider.GetSecret", `[]`},
	}
	for _, c := range calls {
		t.Run(c.path+" "+c.body, func(t *testing.T) {
			helper := helpers
			if strings.HasPrefix(c.path, "/SecretProvider.") {
				helper = helperSecrets
			}
			wantCode, wantType, wantBody := post(helper, c.path, c.body)
			code, typ, body := post(ours, c.path, c.body)
			if code != wantCode || typ != wantType || body != wantBody {
				t.Errorf("answer = %d %q %q, the helpers' %d %q %q", code, typ, body, wantCode, wantType, wantBody)
			}
		})
	}
}
