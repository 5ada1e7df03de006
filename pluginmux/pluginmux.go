// Package pluginmux serves several Docker plugin protocols on one socket.
//
// A plugin announces one socket, and dockerd sends every protocol the plugin
// implements to it. Serve answers /Plugin.Activate with every protocol and
// hands each call to the handler that owns its path prefix: VolumeHandler
// and SecretHandler, which answer go-plugins-helpers' Driver interfaces as
// its own handlers do (its request and response types, its encoder), in the
// front server's goroutine. go-plugins-helpers' handlers each need an HTTP
// server of their own behind an unexported ServeMux: running them behind a
// reverse proxy on in-memory listeners cost 0.8 MiB of resident memory
// (test/tools/rss), idle and after 20 mounts, for two more HTTP servers, an HTTP
// client and their goroutines.
package pluginmux

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/docker/go-plugins-helpers/sdk"
)

// Names of the protocols in the Activate manifest, spelt as dockerd and
// go-plugins-helpers spell them.
const (
	VolumeDriver   = "VolumeDriver"   // volume.Handler; config.json type docker.volumedriver/1.0
	SecretProvider = "secretprovider" // secrets.Handler; config.json type docker.secretprovider/1.0
)

// shutdownGrace bounds how long Serve waits for calls in flight once its
// listener is closed.
const shutdownGrace = 5 * time.Second

// maxBody bounds a call's request body. Volume options are refused over
// 64 KiB anyway.
const maxBody = 1 << 20

// activatePath is the handshake dockerd sends to a plugin it discovers.
const activatePath = "/Plugin.Activate"

// API is one protocol and its handler.
type API struct {
	// Implements is the protocol's name in the Activate manifest.
	Implements string
	// Prefix is the path prefix of the protocol's calls, e.g. "/VolumeDriver.".
	Prefix string
	// Handler answers the protocol's calls: VolumeHandler, SecretHandler.
	Handler http.Handler
}

// Serve answers every API on l until l is closed, then lets the calls in
// flight finish (briefly) and returns nil. It returns an error when the
// APIs are inconsistent or when l fails.
func Serve(l net.Listener, apis ...API) error {
	manifest, err := check(apis)
	if err != nil {
		return err
	}
	front := &http.Server{Handler: handler(apis, manifest), ReadHeaderTimeout: 30 * time.Second}
	err = front.Serve(l)
	// Let calls in flight finish, briefly: dockerd retries what fails.
	ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	_ = front.Shutdown(ctx)
	cancel()
	if errors.Is(err, net.ErrClosed) || errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// check checks the APIs and makes the Activate manifest.
func check(apis []API) ([]byte, error) {
	if len(apis) == 0 {
		return nil, errors.New("pluginmux: no API to serve")
	}
	var implements []string
	for i, a := range apis {
		if a.Implements == "" || a.Handler == nil || !strings.HasPrefix(a.Prefix, "/") || !strings.HasSuffix(a.Prefix, ".") {
			return nil, fmt.Errorf("pluginmux: API %q needs a name, a handler and a prefix like /VolumeDriver. (got %q)", a.Implements, a.Prefix)
		}
		for _, o := range apis[:i] {
			if o.Implements == a.Implements || strings.HasPrefix(a.Prefix, o.Prefix) || strings.HasPrefix(o.Prefix, a.Prefix) {
				return nil, fmt.Errorf("pluginmux: APIs %q (%s) and %q (%s) overlap", o.Implements, o.Prefix, a.Implements, a.Prefix)
			}
		}
		implements = append(implements, a.Implements)
	}
	return json.Marshal(struct{ Implements []string }{implements})
}

// handler answers Activate and hands the rest to the API that owns the
// path's prefix.
func handler(apis []API, manifest []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == activatePath {
			w.Header().Set("Content-Type", sdk.DefaultContentTypeV1_1)
			_, _ = w.Write(append(manifest, '\n'))
			return
		}
		for _, a := range apis {
			if strings.HasPrefix(req.URL.Path, a.Prefix) {
				req.Body = http.MaxBytesReader(w, req.Body, maxBody)
				a.Handler.ServeHTTP(w, req)
				return
			}
		}
		notFound(w, req)
	})
}

// notFound answers a call no handler knows.
func notFound(w http.ResponseWriter, req *http.Request) {
	writeErr(w, http.StatusNotFound, fmt.Sprintf("%s: not implemented by this plugin", strings.TrimPrefix(req.URL.Path, "/")))
}

// writeErr answers with a body in the plugin protocol's error shape.
func writeErr(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", sdk.DefaultContentTypeV1_1)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(struct{ Err string }{msg})
}
