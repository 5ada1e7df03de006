package awssm

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/smithy-go"

	"github.com/dsv-plugin/dsv/secrets"
	"github.com/dsv-plugin/dsv/secrets/awsauth"
	"github.com/dsv-plugin/dsv/secrets/awsjson"
)

// service is Secrets Manager on the awsJson1.1 protocol. A secret's value
// is at most 64 KiB, as a string or as base64 in the answer's JSON.
var service = awsjson.Service{
	ID:             "Secrets Manager",
	EndpointEnv:    "AWS_ENDPOINT_URL_SECRETS_MANAGER",
	SigningName:    "secretsmanager",
	TargetPrefix:   "secretsmanager.",
	UserAgent:      "dsv-aws aws-sdk-go-v2/" + aws.SDKVersion,
	MaxAnswerBytes: 1 << 20,
	Endpoint:       endpoint,
}

// endpoint is Secrets Manager's rule (the SDK's endpoint rules of the
// service): https://secretsmanager.REGION. and the partition's domain,
// secretsmanager-fips for FIPS; the dual-stack domain when asked, except
// in the commercial and GovCloud partitions, whose regular endpoints are
// dual-stack already, and in China without FIPS.
func endpoint(region string, p awsjson.Partition, fips, dualStack bool) string {
	host := "secretsmanager."
	if fips {
		host = "secretsmanager-fips."
	}
	domain := p.DNS
	switch {
	case !dualStack, p.Name == "aws", p.Name == "aws-us-gov":
	case p.Name == "aws-cn" && !fips:
	default:
		domain = p.DualStack
	}
	return "https://" + host + region + "." + domain + "/"
}

// GetSecretValueInput is the request of GetSecretValue: the fields the
// backend sets.
type GetSecretValueInput struct {
	SecretID     *string `json:"SecretId"`
	VersionID    *string `json:"VersionId,omitempty"`
	VersionStage *string `json:"VersionStage,omitempty"`
}

// GetSecretValueOutput is the answer of GetSecretValue: the fields the
// backend reads. SecretBinary comes as base64, which encoding/json decodes.
type GetSecretValueOutput struct {
	Name         *string `json:"Name,omitempty"`
	VersionID    *string `json:"VersionId,omitempty"`
	SecretString *string `json:"SecretString,omitempty"`
	SecretBinary []byte  `json:"SecretBinary,omitempty"`
}

// Client is a Secrets Manager client for the one call the backend makes,
// on awsjson: the SDK's own client of the service built a description of
// its whole API at start, +0.6 MiB of binary and +0.5 MiB of VmRSS idle and
// after 20 mounts, whether the backend was used or not (test/tools/rss).
type Client struct {
	c *awsjson.Client
}

var _ API = (*Client)(nil)

// GetSecretValue reads one version of a secret.
func (c *Client) GetSecretValue(ctx context.Context, in *GetSecretValueInput) (*GetSecretValueOutput, error) {
	out := &GetSecretValueOutput{}
	if err := c.c.Call(ctx, "GetSecretValue", in, out); err != nil {
		return nil, err
	}
	return out, nil
}

// ErrNoRegion is returned by NewClient when neither the caller nor the SDK's
// configuration names a region.
var ErrNoRegion = awsauth.ErrNoRegion

// NewClient is the default client factory: awsauth's configuration (the
// SDK's credential chain, shared files read again when they change,
// AWS_ENDPOINT_URL, retryer) for a region, or for the SDK's own region when
// region is "". It reads only local configuration.
func NewClient(ctx context.Context, region string) (API, error) {
	cfg, err := awsauth.LoadConfig(ctx, region)
	if err != nil {
		return nil, err
	}
	return newClient(ctx, cfg)
}

// newClient builds a client from an SDK configuration.
func newClient(ctx context.Context, cfg aws.Config) (*Client, error) {
	c, err := awsjson.New(ctx, cfg, service)
	if err != nil {
		return nil, err
	}
	return &Client{c: c}, nil
}

// Hints of the service's own failures.
const (
	hintAccessDenied = "the credentials may not read this secret; allow secretsmanager:GetSecretValue on it (and kms:Decrypt on its key) in the IAM policy"
	hintDecryption   = "the secret's KMS key could not decrypt it; the credentials need kms:Decrypt on that key"
	hintDeleted      = "the secret is scheduled for deletion or otherwise unusable; restore it in AWS"
)

// classify turns a GetSecretValue failure into a *secrets.Error: the
// service's own codes here, what every AWS client shares in awsauth.
func classify(ctx context.Context, ref secrets.Ref, region string, err error) error {
	return awsauth.Classify(ctx, ref, err, awsauth.Call{Service: "secrets manager", Policy: "secretsmanager:GetSecretValue on the secret", Own: func(apiErr smithy.APIError) (error, string, bool) {
		switch apiErr.ErrorCode() {
		case "ResourceNotFoundException":
			return secrets.ErrNotFound, notFoundHint(region), true
		case "InvalidRequestException":
			return secrets.ErrNotFound, hintDeleted, true
		case "InvalidParameterException", "ValidationException":
			return secrets.ErrNotFound, "the request was rejected; check the secret, version-id and version-stage options", true
		case "AccessDeniedException", "AccessDenied":
			return secrets.ErrAccessDenied, hintAccessDenied, true
		case "DecryptionFailure":
			return secrets.ErrAccessDenied, hintDecryption, true
		}
		return nil, "", false
	}})
}

func notFoundHint(region string) string {
	if region == "" {
		region = "the SDK's default region"
	} else {
		region = fmt.Sprintf("%q", region)
	}
	return "check the secret name or ARN, the region (" + region + "), and the version-id and version-stage options"
}
