// Package gcp is the "gcp" backend: it reads secret versions from Google
// Cloud Secret Manager, or from a server named by the GCP_ENDPOINT setting.
//
// A secret option names a version as projects/P/secrets/S[/versions/V], as
// projects/P/locations/L/secrets/S[/versions/V] for a regional secret, or as
// S alone in the project of the GCP_PROJECT setting. The version is the one
// in the name, else the version-id option, else latest; a version is a
// number, latest, or an alias.
//
// Credentials are Application Default Credentials, looked for in this
// order: the JSON file named by GOOGLE_APPLICATION_CREDENTIALS (in the
// plugin's credentials mount: a service-account key, a workload identity
// federation configuration, an authorized user), read again whenever it
// changes; else, when that file does not exist, the metadata server of the
// Google Cloud host (the plugin runs on the host network). Nothing is looked
// up until the first read of a gcp secret.
//
// Client: Google's official Go clients cost too much for the plugin's
// budget (binary within 30 MB and RSS after 20 mounts within 20 MB with all
// backends; today 15.0 MiB and 17.4 MB). Measured on the plugin binary
// (CGO_ENABLED=0, -trimpath -s -w; 15,696,034 bytes without gcp) and its
// idle RSS (13.8 MB without gcp):
//
//	cloud.google.com/go/secretmanager (gRPC)       +7.4 MiB   +6.6 MB RSS
//	google.golang.org/api/secretmanager/v1 (REST)  +5.9 MiB   +5.0 MB RSS
//	cloud.google.com/go/auth + httptransport       +5.5 MiB
//	cloud.google.com/go/auth/credentials alone     +0.9 MiB   +0.8 MB RSS
//	golang.org/x/oauth2/google                     +0.25 MiB  +0.5 MB RSS
//
// Both generated clients register protobuf descriptors at start-up, which
// is most of their RSS, paid by every plugin whether it reads gcp secrets
// or not. The backend therefore uses Google's golang.org/x/oauth2/google
// for ADC (the service-account JWT flow, external accounts, the metadata
// server through cloud.google.com/go/compute/metadata) and speaks the
// published REST contract of the one call it makes,
// GET v1/{name=projects/*/secrets/*/versions/*}:access, over net/http.
// As built, the backend adds 348,160 bytes (0.33 MiB) to the binary, and
// per test/tools/rss 0.1 MiB of idle RSS and 0.4 MiB after 20 mounts.
package gcp

import (
	"context"
	"fmt"
	"hash/crc32"
	"strings"

	"github.com/rs/zerolog"

	"github.com/dsv-plugin/dsv/secrets"
)

// Name is the backend's registry name, the value of the backend option.
const Name = "gcp"

// Payload is one secret version as AccessSecretVersion returns it.
type Payload struct {
	// Name is the version's resource name, with the project number and
	// the version number: projects/123/secrets/db/versions/4.
	Name string
	// Data is the secret's bytes; never logged, never in an error.
	Data []byte
	// CRC32C is the checksum Secret Manager stores with the version, or
	// nil when the answer had none.
	CRC32C *int64
}

// API is Secret Manager narrowed to the one call the backend makes, so that
// tests can inject a fake.
type API interface {
	// Access reads a version by its resource name. Its errors are
	// *APIError for an answer of the API, *CredentialsError when no
	// access token could be had, or a transport error.
	Access(ctx context.Context, name string) (Payload, error)
}

// Driver is the gcp backend. It is safe for concurrent use.
type Driver struct {
	project  string
	endpoint string
	credFile string
	log      zerolog.Logger
	api      API
}

var _ secrets.SecretStoreDriver = (*Driver)(nil)

// New returns the gcp backend; log receives debug logs of fetches, never
// values. It contacts nothing.
func New(cfg Config, log zerolog.Logger) *Driver {
	d := &Driver{
		project:  cfg.Project,
		endpoint: cfg.Endpoint,
		credFile: cfg.CredentialsFile,
		log:      log.With().Str("component", Name).Logger(),
		api:      cfg.API,
	}
	if d.api == nil {
		d.api = NewClient(cfg)
	}
	return d
}

// Name returns "gcp".
func (d *Driver) Name() string { return Name }

// castagnoli is the CRC32C table.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Fetch reads one version of a secret and checks it against the checksum
// that came with it, when one came. Errors are *secrets.Error.
func (d *Driver) Fetch(ctx context.Context, ref secrets.Ref) (secrets.Secret, error) {
	r, err := d.resolve(ref)
	if err != nil {
		return secrets.Secret{}, secrets.Fail(ref, secrets.ErrBadValue, "recreate the volume with valid options", err)
	}
	name := r.versionName()
	log := d.log.With().Str("secret", ref.Name).Str("version_name", name).Logger()
	log.Debug().Msg("fetching")

	p, err := d.api.Access(ctx, name)
	if err != nil {
		err := d.classify(ctx, ref, name, err)
		log.Debug().Err(err).Msg("fetch failed")
		return secrets.Secret{}, err
	}
	version := versionOf(p.Name)
	switch {
	case p.CRC32C == nil:
		// dataCrc32c is optional in SecretPayload: Secret Manager sends
		// the checksum it stored with the version, and versions added
		// before checksums were stored (mid 2021) have none
		// (https://cloud.google.com/secret-manager/docs/reference/rest/v1/SecretPayload).
		// Such a version is read unchecked, as Google's clients read it.
		log.Info().Str("version", version).Msg("the version has no CRC32C checksum (added before Secret Manager stored them): read without an integrity check")
	case int64(crc32.Checksum(p.Data, castagnoli)) != *p.CRC32C:
		log.Warn().Str("version", version).Msg("checksum mismatch: value refused")
		return secrets.Secret{}, secrets.Fail(ref, secrets.ErrBadValue,
			fmt.Sprintf("the value of version %q does not match its CRC32C checksum: it was corrupted on the way, and nothing was written; try again, and check any proxy between the host and %s", version, d.host(name)), nil)
	}
	value := p.Data
	if ref.Key != "" {
		if value, err = secrets.ExtractKey(ref, value); err != nil {
			return secrets.Secret{}, err
		}
	}
	log.Debug().Str("version", version).Msg("fetched")
	return secrets.Secret{Value: value, Version: version}, nil
}

// versionOf is the version number at the end of a version's resource name.
func versionOf(name string) string {
	if i := strings.LastIndex(name, "/versions/"); i >= 0 {
		return name[i+len("/versions/"):]
	}
	return ""
}
