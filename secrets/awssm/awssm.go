// Package awssm is the "aws" backend: it reads secrets from AWS Secrets
// Manager, or from an emulator named by AWS_ENDPOINT_URL.
//
// Credentials come from the SDK's default chain (environment, the shared
// files in the plugin's credentials mount, web identity, the instance role),
// and the SDK's own retryer retries what is retryable. The call itself is
// made by awsjson, not by the SDK's client of the service (see Client).
//
// The region of a fetch is, first to last: the region volume option, the
// region in an ARN given as the secret option, Config.DefaultRegion (the
// AWS_REGION plugin setting), the region of the SDK's profile.
package awssm

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/rs/zerolog"

	"github.com/dsv-plugin/dsv/secrets"
	"github.com/dsv-plugin/dsv/secrets/awsauth"
)

// Name is the backend's registry name, the value of the backend option.
const Name = "aws"

// stageCurrent is the staging label AWS reads when no version is pinned.
const stageCurrent = "AWSCURRENT"

// API is the Secrets Manager client narrowed to the one call the backend
// makes, so that tests can inject a fake.
type API interface {
	GetSecretValue(ctx context.Context, in *GetSecretValueInput) (*GetSecretValueOutput, error)
}

// Config configures the backend.
type Config struct {
	// DefaultRegion is the AWS_REGION plugin setting; empty defers to the
	// SDK's profile.
	DefaultRegion string
	// Logger receives debug logs of fetches; never values.
	Logger zerolog.Logger
	// NewClient builds a client for a region ("" means the SDK's own
	// resolution). Nil uses NewClient from this package; tests inject fakes.
	NewClient func(ctx context.Context, region string) (API, error)
}

// Validate checks the plugin-wide settings.
func (c Config) Validate() error {
	if c.DefaultRegion != "" && !ValidRegion(c.DefaultRegion) {
		return fmt.Errorf("setting AWS_REGION: %q is not an AWS region (e.g. us-east-1)", quoted(c.DefaultRegion))
	}
	return nil
}

// Driver is the aws backend. It is safe for concurrent use; it keeps one
// client per region.
type Driver struct {
	defaultRegion string
	log           zerolog.Logger
	clients       *awsauth.Clients[API]
}

var _ secrets.SecretStoreDriver = (*Driver)(nil)

// New returns the aws backend.
func New(cfg Config) *Driver {
	d := &Driver{
		defaultRegion: cfg.DefaultRegion,
		log:           cfg.Logger.With().Str("component", Name).Logger(),
	}
	build := cfg.NewClient
	if build == nil {
		build = NewClient
	}
	d.clients = awsauth.NewClients(build)
	return d
}

// Name returns "aws".
func (d *Driver) Name() string { return Name }

// Fetch reads one version of a secret. Errors are *secrets.Error.
func (d *Driver) Fetch(ctx context.Context, ref secrets.Ref) (secrets.Secret, error) {
	region := d.region(ref)
	client, err := d.clients.Get(ctx, region)
	if err != nil {
		return secrets.Secret{}, d.clientError(ctx, ref, err)
	}

	in := &GetSecretValueInput{SecretID: aws.String(ref.Name)}
	if ref.VersionID != "" {
		in.VersionID = aws.String(ref.VersionID)
	}
	switch {
	case ref.VersionStage != "":
		in.VersionStage = aws.String(ref.VersionStage)
	case ref.VersionID == "":
		in.VersionStage = aws.String(stageCurrent)
	}
	log := d.log.With().
		Str("secret", ref.Name).
		Str("region", region).
		Str("version_id", ref.VersionID).
		Str("version_stage", aws.ToString(in.VersionStage)).
		Logger()
	log.Debug().Msg("fetching")

	out, err := client.GetSecretValue(ctx, in)
	if err != nil {
		err := classify(ctx, ref, region, err)
		log.Debug().Err(err).Msg("fetch failed")
		return secrets.Secret{}, err
	}

	var value []byte
	switch {
	case out.SecretString != nil:
		value = []byte(*out.SecretString)
	case out.SecretBinary != nil:
		value = out.SecretBinary
	default:
		return secrets.Secret{}, secrets.Fail(ref, secrets.ErrBadValue, "this version holds neither a string nor a binary value", nil)
	}
	if ref.Key != "" {
		if value, err = secrets.ExtractKey(ref, value); err != nil {
			return secrets.Secret{}, err
		}
	}
	version := aws.ToString(out.VersionID)
	log.Debug().Str("version", version).Msg("fetched")
	return secrets.Secret{Value: value, Version: version}, nil
}

// region applies the precedence in the package comment; "" leaves the
// choice to the SDK.
func (d *Driver) region(ref secrets.Ref) string {
	if ref.Region != "" {
		return ref.Region
	}
	if m := arnRE.FindStringSubmatch(ref.Name); m != nil && ValidRegion(m[2]) {
		return m[2]
	}
	return d.defaultRegion
}

func (d *Driver) clientError(ctx context.Context, ref secrets.Ref, err error) error {
	return awsauth.ClientError(ctx, ref, err)
}
