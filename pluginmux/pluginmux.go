// Package pluginmux serves several Docker plugin protocols on one socket.
//
// A plugin announces one socket, and dockerd sends every protocol the plugin
// implements to it. go-plugins-helpers builds each protocol's handler on its
// own sdk.Handler, whose ServeMux is unexported and answers /Plugin.Activate
// with that protocol alone. Serve runs each handler unchanged on an
// in-memory listener and puts a front server on the plugin's socket that
// answers /Plugin.Activate with every protocol and forwards each call to the
// handler that owns its path prefix.
package pluginmux

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
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

// maxBody bounds a call's request body, which Serve reads whole before
// forwarding it. Volume options are refused over 64 KiB anyway.
const maxBody = 1 << 20

// activatePath is the handshake dockerd sends to a plugin it discovers.
const activatePath = "/Plugin.Activate"

// API is one protocol served by a go-plugins-helpers handler.
type API struct {
	// Implements is the protocol's name in the Activate manifest.
	Implements string
	// Prefix is the path prefix of the protocol's calls, e.g. "/VolumeDriver.".
	Prefix string
	// Serve serves the protocol on a listener until the listener closes: a
	// helper handler's Serve method.
	Serve func(net.Listener) error
}

// route is a running API.
type route struct {
	API
	l         *pipeListener
	transport *http.Transport
	proxy     *httputil.ReverseProxy
}

// Serve answers every API on l until l is closed, then stops the handlers
// and returns nil. It returns an error when the APIs are inconsistent, when
// l fails, or when a handler stops on its own.
func Serve(l net.Listener, apis ...API) error {
	routes, manifest, err := build(apis)
	if err != nil {
		return err
	}
	stopped := make(chan error, len(routes))
	for _, r := range routes {
		go func() {
			err := r.Serve(r.l)
			stopped <- fmt.Errorf("%s handler stopped: %w", r.Implements, err)
		}()
	}
	front := &http.Server{Handler: handler(routes, manifest), ReadHeaderTimeout: 30 * time.Second}
	served := make(chan error, 1)
	go func() { served <- front.Serve(l) }()

	var handlerErr error
	select {
	case err = <-served:
	case handlerErr = <-stopped:
		_ = front.Close()
		<-served
	}
	// Let calls in flight finish, briefly: dockerd retries what fails.
	ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	_ = front.Shutdown(ctx)
	cancel()
	for _, r := range routes {
		_ = r.l.Close()
		r.transport.CloseIdleConnections()
	}
	if handlerErr != nil {
		return handlerErr
	}
	if errors.Is(err, net.ErrClosed) || errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// build checks the APIs and makes their routes and the Activate manifest.
func build(apis []API) ([]*route, []byte, error) {
	if len(apis) == 0 {
		return nil, nil, errors.New("pluginmux: no API to serve")
	}
	var routes []*route
	var implements []string
	for _, a := range apis {
		if a.Implements == "" || a.Serve == nil || !strings.HasPrefix(a.Prefix, "/") || !strings.HasSuffix(a.Prefix, ".") {
			return nil, nil, fmt.Errorf("pluginmux: API %q needs a name, a Serve function and a prefix like /VolumeDriver. (got %q)", a.Implements, a.Prefix)
		}
		for _, r := range routes {
			if r.Implements == a.Implements || strings.HasPrefix(a.Prefix, r.Prefix) || strings.HasPrefix(r.Prefix, a.Prefix) {
				return nil, nil, fmt.Errorf("pluginmux: APIs %q (%s) and %q (%s) overlap", r.Implements, r.Prefix, a.Implements, a.Prefix)
			}
		}
		r := &route{API: a, l: newPipeListener()}
		r.transport = &http.Transport{DialContext: r.l.dial, MaxIdleConnsPerHost: 16}
		r.proxy = &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.Out.URL.Scheme = "http"
				pr.Out.URL.Host = "plugin"
			},
			Transport: r.transport,
			ErrorHandler: func(w http.ResponseWriter, req *http.Request, err error) {
				writeErr(w, http.StatusBadGateway, fmt.Sprintf("%s: %s handler: %v", strings.TrimPrefix(req.URL.Path, "/"), a.Implements, err))
			},
		}
		routes = append(routes, r)
		implements = append(implements, a.Implements)
	}
	manifest, err := json.Marshal(struct{ Implements []string }{implements})
	if err != nil {
		return nil, nil, err
	}
	return routes, manifest, nil
}

// handler answers Activate and forwards the rest by path prefix.
func handler(routes []*route, manifest []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == activatePath {
			w.Header().Set("Content-Type", sdk.DefaultContentTypeV1_1)
			_, _ = w.Write(append(manifest, '\n'))
			return
		}
		for _, r := range routes {
			if strings.HasPrefix(req.URL.Path, r.Prefix) {
				// The whole body goes to the handler before its answer comes
				// back: a handler that answers without reading the body (List)
				// would otherwise have the front server discard and close the
				// body while the proxy still sends it, and the proxy would
				// tear the connection down in the middle of an answer larger
				// than the front server's 4 KiB buffer.
				body, err := io.ReadAll(io.LimitReader(req.Body, maxBody+1))
				if err != nil {
					writeErr(w, http.StatusBadRequest, fmt.Sprintf("%s: reading the request: %v", strings.TrimPrefix(req.URL.Path, "/"), err))
					return
				}
				if len(body) > maxBody {
					writeErr(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("%s: request body over %d bytes", strings.TrimPrefix(req.URL.Path, "/"), maxBody))
					return
				}
				req.Body = io.NopCloser(bytes.NewReader(body))
				req.ContentLength = int64(len(body))
				req.TransferEncoding = nil
				r.proxy.ServeHTTP(w, req)
				return
			}
		}
		writeErr(w, http.StatusNotFound, fmt.Sprintf("%s: not implemented by this plugin", strings.TrimPrefix(req.URL.Path, "/")))
	})
}

// writeErr answers with a body in the plugin protocol's error shape.
func writeErr(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", sdk.DefaultContentTypeV1_1)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(struct{ Err string }{msg})
}
