// Command gcpfake is a local stand-in for the Google services the gcp
// backend talks to, for its tests: no Secret Manager emulator exists. It
// speaks the published REST contracts, so that the real client code (the
// backend's REST client, golang.org/x/oauth2/google, the metadata client)
// runs unchanged against it:
//
//   - Secret Manager v1: secrets.create, secrets.addVersion,
//     secrets.patch (versionAliases), secrets.setIamPolicy,
//     versions.access/disable/enable/destroy, global and regional
//     (projects/P/locations/L/...); errors as google.rpc.Status JSON.
//   - IAM v1 serviceAccounts.keys.create and keys.delete: a new RSA key,
//     returned as the service-account JSON whose token_uri is this server.
//   - Google's OAuth token endpoint (POST /token): the JWT bearer grant of a
//     service account, whose RS256 signature is checked against the key.
//   - Security Token Service (POST /v1/token): the token exchange of
//     workload identity federation, for subject tokens registered with
//     POST /fake/subjects.
//   - The metadata server's token (/computeMetadata/v1/...), for
//     GCE_METADATA_HOST.
//
// Access tokens are opaque and map to a principal. As in IAM, a principal
// reads a secret when it holds roles/secretmanager.secretAccessor on the
// secret or on its project (POST /fake/grant-project); a secret without a
// policy grants no one. IAM is checked before existence: a missing secret
// answers 404 to a principal with the role on the project, and 403
// "(or it may not exist)" to any other. versions/latest is the most
// recently created version, as Google documents it, so a disabled newest
// version answers FAILED_PRECONDITION. The -admin-token principal may do
// anything.
//
// Test-only endpoints under /fake/: corrupt a version's bytes in transit
// (its checksum stays), drop a version's checksum (a version added before
// mid 2021), fail the next N accesses with a status, disable
// the API of a project, register a federation subject, and count requests.
//
// It listens on 127.0.0.1 and prints one line, {"url": "http://..."}, on
// stdout once it accepts connections.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "gcpfake:", err)
		os.Exit(1)
	}
}

func run() error {
	addr := flag.String("addr", "127.0.0.1:0", "address to listen on")
	admin := flag.String("admin-token", "", "access token of the admin principal (required)")
	ttl := flag.Duration("token-ttl", time.Hour, "lifetime of the access tokens it issues")
	flag.Parse()
	if *admin == "" {
		return fmt.Errorf("-admin-token is required")
	}
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	url := "http://" + l.Addr().String()
	srv := &http.Server{Handler: newServer(url, *admin, *ttl), ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(shut)
	}()
	line, _ := json.Marshal(map[string]string{"url": url})
	fmt.Println(string(line))
	if err := srv.Serve(l); err != nil && err != http.ErrServerClosed {
		return err
	}
	return nil
}
