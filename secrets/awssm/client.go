package awssm

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/smithy-go"

	"github.com/dsv-plugin/dsv/secrets"
	"github.com/dsv-plugin/dsv/secrets/awsauth"
)

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
	return secretsmanager.NewFromConfig(cfg), nil
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
