// Package awsauth is what the AWS backends share: the SDK configuration
// (the default credential chain, read again when the shared files in the
// credentials mount change, and the region), the region rule, and the
// classes of the failures every AWS client has in common (credentials,
// signing, throttling, refusals, the network).
//
// Errors of credential providers and of the configuration are reduced to
// what failed and what to do: their own text can quote a credential_process's
// output or a line of the shared files, keys included, and an error travels to
// `docker volume inspect` and the log.
package awsauth

import (
	"context"
	"errors"
	"os"
	"regexp"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/dsv-plugin/dsv/secrets/credfile"
)

// ErrNoRegion is returned by LoadConfig when neither the caller nor the
// SDK's configuration names a region.
var ErrNoRegion = errors.New("no AWS region configured")

// regionRE matches us-east-1, eu-central-1, us-gov-west-1, cn-north-1,
// us-isob-east-1, eusc-de-east-1.
var regionRE = regexp.MustCompile(`^[a-z]{2,4}(-[a-z]+)+-[0-9]{1,2}$`)

// ValidRegion reports whether s has the form of an AWS region name.
func ValidRegion(s string) bool {
	return regionRE.MatchString(s)
}

// LoadConfig is the SDK's default configuration (credential chain, shared
// files, AWS_ENDPOINT_URL, retryer) for a region, or for the SDK's own
// region when region is "". It reads only local configuration; credentials
// are resolved on the first call, and the shared files are read again
// whenever they change (see sharedFilesCredentials). Its errors are
// ErrNoRegion or a *ConfigError.
func LoadConfig(ctx context.Context, region string) (aws.Config, error) {
	var opts []func(*config.LoadOptions) error
	if region != "" {
		opts = append(opts, config.WithRegion(region))
	}
	load := func(ctx context.Context) (aws.Config, error) {
		cfg, err := config.LoadDefaultConfig(ctx, opts...)
		if err != nil {
			return cfg, reduceConfigError(err)
		}
		return cfg, nil
	}
	creds := &sharedFilesCredentials{files: sharedFiles(), load: load}
	creds.stamp = creds.stampFiles() // before the load: a change during it reloads
	cfg, err := load(ctx)
	if err != nil {
		return aws.Config{}, err
	}
	if cfg.Region == "" {
		return aws.Config{}, ErrNoRegion
	}
	if cfg.Credentials != nil {
		creds.current = cfg.Credentials
		cfg.Credentials = creds
	}
	return cfg, nil
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
// file per request is the cost. It also turns credential failures into a
// *CredentialsError, so that "no credentials" is told apart from a network
// failure (the chain's last provider, IMDS, fails with the same send errors
// as the service) and no provider's text reaches an error.
type sharedFilesCredentials struct {
	files []string
	load  func(context.Context) (aws.Config, error)

	mu      sync.Mutex
	stamp   string                  // the files' identity at the last load
	current aws.CredentialsProvider // the chain of the last load
}

// stampFiles identifies the files' current contents (credfile.Stamp).
func (s *sharedFilesCredentials) stampFiles() string {
	return credfile.Stamp(s.files...)
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
		return nil, &CredentialsError{
			What: "the shared AWS files " + strings.Join(s.files, ", ") + " changed and could not be loaded: " + err.Error(),
			Hint: hintConfig,
		}
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
		return aws.Credentials{}, err
	}
	c, err := p.Retrieve(ctx)
	if err != nil {
		return aws.Credentials{}, reduceCredentialsError(err)
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
