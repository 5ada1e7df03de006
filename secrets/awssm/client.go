package awssm

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/dsv-plugin/dsv/secrets"
)

// ErrNoRegion is returned by NewClient when neither the caller nor the SDK's
// configuration names a region.
var ErrNoRegion = errors.New("no AWS region configured")

// NewClient is the default client factory: the SDK's default configuration
// (credential chain, shared files, AWS_ENDPOINT_URL, retryer) for a region,
// or for the SDK's own region when region is "". It reads only local
// configuration; credentials are resolved on the first call.
func NewClient(ctx context.Context, region string) (API, error) {
	var opts []func(*config.LoadOptions) error
	if region != "" {
		opts = append(opts, config.WithRegion(region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("load AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		return nil, ErrNoRegion
	}
	if cfg.Credentials != nil {
		cfg.Credentials = markedCredentials{cfg.Credentials}
	}
	return secretsmanager.NewFromConfig(cfg), nil
}

// markedCredentials tags credential retrieval failures, so that "no
// credentials" is told apart from a network failure: the chain's last
// provider (IMDS) fails with the same send errors as the service.
type markedCredentials struct {
	aws.CredentialsProvider
}

func (m markedCredentials) Retrieve(ctx context.Context) (aws.Credentials, error) {
	c, err := m.CredentialsProvider.Retrieve(ctx)
	if err != nil {
		return c, &credentialsError{err: err}
	}
	return c, nil
}

// IsCredentialsProvider lets the SDK see through the wrapper (it checks for
// anonymous credentials this way).
func (m markedCredentials) IsCredentialsProvider(target aws.CredentialsProvider) bool {
	return aws.IsCredentialsProvider(m.CredentialsProvider, target)
}

type credentialsError struct{ err error }

func (e *credentialsError) Error() string { return e.err.Error() }
func (e *credentialsError) Unwrap() error { return e.err }

// Hints, one per thing the user can fix.
const (
	hintNoCredentials = "no AWS credentials found; put 'credentials' and 'config' files in the plugin's credentials mount, or run on a host with an instance role"
	hintAccessDenied  = "the credentials may not read this secret; allow secretsmanager:GetSecretValue on it (and kms:Decrypt on its key) in the IAM policy"
	hintUnknownKey    = "the access key id is unknown to AWS; check the credentials given to the plugin"
	hintSignature     = "the secret access key does not match the access key id, or the host clock is wrong"
	hintExpired       = "the session credentials have expired; refresh them in the plugin's credentials mount, or use an instance role"
	hintDecryption    = "the secret's KMS key could not decrypt it; the credentials need kms:Decrypt on that key"
	hintDeleted       = "the secret is scheduled for deletion or otherwise unusable; restore it in AWS"
	hintUnreachable   = "could not reach secrets manager; check the host's network and DNS, and the AWS_ENDPOINT_URL plugin setting"
	hintServer        = "the service failed; try again later"
	hintThrottled     = "AWS throttled the request (rate exceeded) after the SDK's retries; read less often: raise CACHE_TTL or the refresh interval, or ask AWS for a higher quota"
)

// classify turns a GetSecretValue failure into a *secrets.Error. The SDK's
// text is kept as the cause: it names the operation and the request id and
// never carries the secret value.
func classify(ctx context.Context, ref secrets.Ref, region string, err error) error {
	var ce *credentialsError
	if errors.As(err, &ce) {
		return secrets.Fail(ref, secrets.ErrAccessDenied, hintNoCredentials, err)
	}
	if e := secrets.FromContext(ctx, ref); e != nil {
		return e
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode() {
		case "ResourceNotFoundException":
			return secrets.Fail(ref, secrets.ErrNotFound, notFoundHint(region), err)
		case "InvalidRequestException":
			return secrets.Fail(ref, secrets.ErrNotFound, hintDeleted, err)
		case "InvalidParameterException", "ValidationException":
			return secrets.Fail(ref, secrets.ErrNotFound, "the request was rejected; check the secret, version-id and version-stage options", err)
		case "AccessDeniedException", "AccessDenied":
			return secrets.Fail(ref, secrets.ErrAccessDenied, hintAccessDenied, err)
		case "UnrecognizedClientException", "InvalidClientTokenId":
			return secrets.Fail(ref, secrets.ErrAccessDenied, hintUnknownKey, err)
		case "InvalidSignatureException", "SignatureDoesNotMatch", "IncompleteSignature":
			return secrets.Fail(ref, secrets.ErrAccessDenied, hintSignature, err)
		case "ExpiredTokenException", "ExpiredToken":
			return secrets.Fail(ref, secrets.ErrAccessDenied, hintExpired, err)
		case "DecryptionFailure":
			return secrets.Fail(ref, secrets.ErrAccessDenied, hintDecryption, err)
		case "ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded":
			return secrets.Fail(ref, secrets.ErrUnavailable, hintThrottled, err)
		}
		return secrets.Fail(ref, secrets.ErrUnavailable, hintServer, err)
	}
	var sendErr *smithyhttp.RequestSendError
	var netErr net.Error
	if errors.As(err, &sendErr) || errors.As(err, &netErr) {
		return secrets.Fail(ref, secrets.ErrUnavailable, hintUnreachable, err)
	}
	return secrets.Fail(ref, secrets.ErrUnavailable, "", err)
}

func notFoundHint(region string) string {
	if region == "" {
		region = "the SDK's default region"
	} else {
		region = fmt.Sprintf("%q", region)
	}
	return "check the secret name or ARN, the region (" + region + "), and the version-id and version-stage options"
}
