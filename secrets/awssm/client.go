package awssm

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"

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
// configuration; credentials are resolved on the first call, and the shared
// files are read again whenever they change (see sharedFilesCredentials).
func NewClient(ctx context.Context, region string) (API, error) {
	var opts []func(*config.LoadOptions) error
	if region != "" {
		opts = append(opts, config.WithRegion(region))
	}
	load := func(ctx context.Context) (aws.Config, error) {
		cfg, err := config.LoadDefaultConfig(ctx, opts...)
		if err != nil {
			return cfg, fmt.Errorf("load AWS configuration: %w", err)
		}
		return cfg, nil
	}
	creds := &sharedFilesCredentials{files: sharedFiles(), load: load}
	creds.stamp = creds.stampFiles() // before the load: a change during it reloads
	cfg, err := load(ctx)
	if err != nil {
		return nil, err
	}
	if cfg.Region == "" {
		return nil, ErrNoRegion
	}
	if cfg.Credentials != nil {
		creds.current = cfg.Credentials
		cfg.Credentials = creds
	}
	return secretsmanager.NewFromConfig(cfg), nil
}

// sharedFiles are the SDK's shared credentials and config files, where it
// looks for them.
func sharedFiles() []string {
	creds := os.Getenv("AWS_SHARED_CREDENTIALS_FILE")
	if creds == "" {
		creds = config.DefaultSharedCredentialsFilename()
	}
	conf := os.Getenv("AWS_CONFIG_FILE")
	if conf == "" {
		conf = config.DefaultSharedConfigFilename()
	}
	return []string{creds, conf}
}

// sharedFilesCredentials is the SDK's credential chain, loaded again when the
// shared files change. The SDK reads keys from those files once, when the
// configuration loads, and caches them for good (they do not expire): keys
// rotated in the credentials mount (by hand, or by a job that writes session
// credentials there) would otherwise need a plugin restart. A stat of each
// file per request is the cost. It also tags credential failures, so that
// "no credentials" is told apart from a network failure: the chain's last
// provider (IMDS) fails with the same send errors as the service.
type sharedFilesCredentials struct {
	files []string
	load  func(context.Context) (aws.Config, error)

	mu      sync.Mutex
	stamp   string                  // the files' identity at the last load
	current aws.CredentialsProvider // the chain of the last load
}

// stampFiles identifies the files' current contents: inode, size and
// modification time of each, or its absence.
func (s *sharedFilesCredentials) stampFiles() string {
	var b strings.Builder
	for _, f := range s.files {
		fi, err := os.Stat(f)
		if err != nil {
			b.WriteString("-;")
			continue
		}
		var ino uint64
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			ino = st.Ino
		}
		fmt.Fprintf(&b, "%d,%d,%d;", ino, fi.Size(), fi.ModTime().UnixNano())
	}
	return b.String()
}

func (s *sharedFilesCredentials) provider(ctx context.Context) (aws.CredentialsProvider, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	stamp := s.stampFiles()
	if stamp == s.stamp {
		return s.current, nil
	}
	cfg, err := s.load(ctx)
	if err != nil {
		// A file caught half written, or broken: say so, and try again
		// at the next request.
		return nil, fmt.Errorf("the shared AWS files %s changed: %w", strings.Join(s.files, ", "), err)
	}
	s.stamp = stamp
	if cfg.Credentials != nil {
		s.current = cfg.Credentials
	}
	return s.current, nil
}

func (s *sharedFilesCredentials) Retrieve(ctx context.Context) (aws.Credentials, error) {
	p, err := s.provider(ctx)
	if err != nil {
		return aws.Credentials{}, &credentialsError{err: err}
	}
	c, err := p.Retrieve(ctx)
	if err != nil {
		return c, &credentialsError{err: err}
	}
	return c, nil
}

// IsCredentialsProvider lets the SDK see through the wrapper (it checks for
// anonymous credentials this way).
func (s *sharedFilesCredentials) IsCredentialsProvider(target aws.CredentialsProvider) bool {
	s.mu.Lock()
	p := s.current
	s.mu.Unlock()
	return aws.IsCredentialsProvider(p, target)
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
	hintRefused       = "the request was refused with an answer that is not AWS's own; check the credentials given to the plugin, the IAM policy, and any proxy or AWS_ENDPOINT_URL on the way"
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
	// A refusal whose body is not AWS's (a proxy's page; moto's checks
	// answer a JSON API in XML) is still a refusal.
	var respErr *smithyhttp.ResponseError
	if errors.As(err, &respErr) && (respErr.HTTPStatusCode() == http.StatusForbidden || respErr.HTTPStatusCode() == http.StatusUnauthorized) {
		return secrets.Fail(ref, secrets.ErrAccessDenied, hintRefused, err)
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
