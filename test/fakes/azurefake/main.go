// Command azurefake serves, for the tests of the azure backend, the two
// Azure services the backend talks to, each run as its own process (the
// backend's client and, in test/servers/azuretest's seeding, the official
// SDK both talk to it):
//
//	azurefake keyvault ...  the Key Vault secrets REST API over HTTPS: the
//	                        401 bearer challenge, GET, PUT and PATCH of
//	                        /secrets/{name}[/{version}], Key Vault's error
//	                        bodies (SecretNotFound, Forbidden with the
//	                        SecretDisabled inner code, ...)
//	azurefake entra ...     a Microsoft Entra ID authority over HTTPS: the
//	                        OpenID configuration and the v2.0 token endpoint
//	                        (client secret, certificate assertion, federated
//	                        token), and an IMDS managed identity endpoint
//	                        over HTTP
//
// Tokens are signed with a key both processes read from the file named by
// -token-key, so that the vault accepts exactly the tokens Entra issued,
// for the vault's resource, until they expire (-token-lifetime, 1h by
// default; a short one makes the client refresh them).
//
// Test-only controls, on each process: POST /fake/fail queues failures,
// [{"status": 429, "retryAfter": 2}, {"status": 503}], that the next vault
// GETs (keyvault) or token requests (entra) answer, throttling with
// Retry-After as Key Vault and Entra ID do; GET /fake/counts counts the
// requests by kind (get; token, imds-token). Each process prints one line,
// "ready URL [IMDS-URL]", on stdout once it serves. test/servers/azuretest builds
// and runs it.
package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "azurefake:", err)
		os.Exit(1)
	}
}

// multiFlag is a repeatable flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: azurefake keyvault|entra [flags]")
	}
	mode := args[0]
	fs := flag.NewFlagSet(mode, flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to serve HTTPS on")
	certFile := fs.String("cert", "", "server certificate (PEM)")
	keyFile := fs.String("key", "", "server key (PEM)")
	tokenKey := fs.String("token-key", "", "file with the key that signs tokens")
	tenant := fs.String("tenant", "", "the tenant")
	// keyvault
	resource := fs.String("resource", "https://vault.azure.net", "resource the challenge names and tokens must be for")
	var deny multiFlag
	fs.Var(&deny, "deny", "client id refused secrets/get (repeatable)")
	// entra
	var secretsFlag, certsFlag, federated multiFlag
	fs.Var(&secretsFlag, "client-secret", "CLIENT=SECRETFILE: a client and the file of its secret (repeatable)")
	fs.Var(&certsFlag, "client-cert", "CLIENT=CERTFILE: a client and its certificate (repeatable)")
	fs.Var(&federated, "federated", "CLIENT=TOKENFILE: a client and the file of its federated token (repeatable)")
	imdsListen := fs.String("imds-listen", "", "address to serve the managed identity endpoint on (HTTP)")
	imdsClient := fs.String("imds-client", "", "client id of the managed identity")
	tokenLifetime := fs.Duration("token-lifetime", time.Hour, "how long the tokens entra issues live (at least 1s)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	key, err := os.ReadFile(*tokenKey)
	if err != nil || len(key) < 16 {
		return fmt.Errorf("-token-key: need a file of at least 16 bytes: %v", err)
	}
	if *tenant == "" {
		return errors.New("-tenant is required")
	}
	cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		return fmt.Errorf("-cert, -key: %w", err)
	}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	base := "https://" + l.Addr().String()
	signer := tokenSigner{key: key}

	var handler http.Handler
	ready := "ready " + base
	switch mode {
	case "keyvault":
		handler = newVault(base, *tenant, *resource, signer, deny)
	case "entra":
		if *tokenLifetime < time.Second {
			return errors.New("-token-lifetime: at least 1s")
		}
		e, err := newEntra(base, *tenant, signer, *tokenLifetime, secretsFlag, certsFlag, federated)
		if err != nil {
			return err
		}
		handler = e
		if *imdsListen != "" {
			il, err := net.Listen("tcp", *imdsListen)
			if err != nil {
				return err
			}
			ready += " http://" + il.Addr().String()
			imds := &http.Server{Handler: e.imdsHandler(*imdsClient), ReadHeaderTimeout: 10 * time.Second}
			go func() { _ = imds.Serve(il) }()
		}
	default:
		return fmt.Errorf("unknown mode %q: keyvault or entra", mode)
	}
	srv := &http.Server{
		Handler:           logRequests(handler),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
	}
	fmt.Println(ready)
	return srv.ServeTLS(l, "", "")
}

// logRequests writes one line per request on stderr, for a failed test's
// log. It never logs bodies or headers: they carry values and tokens.
func logRequests(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(rec, r)
		fmt.Fprintf(os.Stderr, "%s %s %s -> %d\n", time.Now().Format("15:04:05.000"), r.Method, r.URL.Path, rec.status)
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}
