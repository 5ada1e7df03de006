// Package awsjson is a client of the AWS services that speak the awsJson1.1
// protocol (Parameter Store, Secrets Manager), for the few calls the
// backends make, built on the parts of the AWS SDK the plugin links anyway:
// its configuration and credential chain (awsauth), Signature Version 4
// signer, HTTP client and retryer.
//
// The SDK's own client of a service builds a description of the service's
// whole API and its endpoint rules at program start, in every process that
// links it, whether the backend is used or not: measured on the plugin
// (test/tools/rss, stripped static build), +4.1 MiB of binary and +3.3 MiB of
// VmRSS for Parameter Store's, +0.6 MiB and +0.5 MiB for Secrets
// Manager's. A Client here costs nothing until its first call.
//
// Errors are shaped as the SDK's are, so that awsauth classifies them the
// same: a *smithy.OperationError around a *smithy.GenericAPIError (the
// service's error code and message) in an *awshttp.ResponseError (the HTTP
// status and request id), a *smithyhttp.RequestSendError when no answer
// came, or the credential chain's error.
package awsjson

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/dsv-plugin/dsv/secrets"
	"github.com/dsv-plugin/dsv/secrets/awsauth"
)

// jsonType is the content type of the protocol: every call is a POST of a
// JSON document to the endpoint's root, named by the X-Amz-Target header
// and signed with Signature Version 4.
const jsonType = "application/x-amz-json-1.1"

// Service describes one service of the protocol.
type Service struct {
	// ID is the SDK's name of the service ("SSM", "Secrets Manager"): in
	// errors, and the key of its endpoint in the shared config's services
	// section.
	ID string
	// EndpointEnv is the variable of its own endpoint
	// (AWS_ENDPOINT_URL_SSM), which AWS_ENDPOINT_URL does not override.
	EndpointEnv string
	// SigningName is its name in the signature's scope ("ssm").
	SigningName string
	// TargetPrefix precedes the operation in X-Amz-Target ("AmazonSSM.").
	TargetPrefix string
	// UserAgent names the caller.
	UserAgent string
	// MaxAnswerBytes bounds an answer's body.
	MaxAnswerBytes int64
	// Endpoint returns the service's endpoint in a region of the partition
	// whose domains are given, with the FIPS and dual-stack variants as
	// asked: the service's own rules.
	Endpoint func(region string, p Partition, fips, dualStack bool) string
}

// Partition is what endpoint rules know of a region's partition.
type Partition struct {
	Name      string // aws, aws-cn, aws-us-gov, ...
	DNS       string // amazonaws.com
	DualStack string // api.aws
}

// Client makes calls of one service in one region. It is safe for
// concurrent use.
type Client struct {
	svc      Service
	region   string
	endpoint string // the URL requests are sent to
	creds    aws.CredentialsProvider
	http     aws.HTTPClient
	retryer  aws.RetryerV2
	signer   *v4.Signer
}

// New builds a client of svc from an SDK configuration (awsauth.LoadConfig),
// resolving the endpoint and the retryer as the SDK's service clients do.
// It reads only local configuration.
func New(ctx context.Context, cfg aws.Config, svc Service) (*Client, error) {
	endpoint, err := ResolveEndpoint(ctx, cfg, svc)
	if err != nil {
		return nil, err
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = awshttp.NewBuildableClient()
	}
	return &Client{
		svc:      svc,
		region:   cfg.Region,
		endpoint: endpoint,
		creds:    cfg.Credentials,
		http:     hc,
		retryer:  ResolveRetryer(cfg),
		signer:   v4.NewSigner(),
	}, nil
}

// Call makes one call of the operation op, with the retryer's attempts, and decodes the answer
// into out.
func (c *Client) Call(ctx context.Context, op string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return &smithy.OperationError{ServiceID: c.svc.ID, OperationName: op, Err: &smithy.SerializationError{Err: err}}
	}
	if err := c.retry(ctx, op, body, out); err != nil {
		return &smithy.OperationError{ServiceID: c.svc.ID, OperationName: op, Err: err}
	}
	return nil
}

// retry runs attempts as the SDK's retry middleware does: a token from the
// retryer for each attempt, then for each retry (its quota shared by the
// client's calls), the retryer's delay between them, and at most its
// MaxAttempts.
func (c *Client) retry(ctx context.Context, op string, body []byte, out any) error {
	releaseRetry := func(error) error { return nil }
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return &smithy.CanceledError{Err: err}
		}
		releaseAttempt, err := c.retryer.GetAttemptToken(ctx)
		if err != nil {
			return fmt.Errorf("get a retry send token: %w", err)
		}
		err = c.attempt(ctx, op, body, out)
		_ = releaseRetry(err)
		_ = releaseAttempt(err)
		if err == nil || !c.retryer.IsErrorRetryable(err) {
			return err
		}
		if limit := c.retryer.MaxAttempts(); limit > 0 && attempt >= limit {
			return &retry.MaxAttemptsError{Attempt: attempt, Err: err}
		}
		var tokenErr error
		if releaseRetry, tokenErr = c.retryer.GetRetryToken(ctx, err); tokenErr != nil {
			return errors.Join(err, tokenErr)
		}
		delay, delayErr := c.retryer.RetryDelay(attempt, err)
		if delayErr != nil {
			return errors.Join(err, delayErr)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return &smithy.CanceledError{Err: ctx.Err()}
		case <-t.C:
		}
	}
}

// attempt sends the request once, signed with the credentials of the
// moment, and decodes the answer.
func (c *Client) attempt(ctx context.Context, op string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint, bytes.NewReader(body))
	if err != nil {
		return &smithy.SerializationError{Err: err}
	}
	req.Header.Set("Content-Type", jsonType)
	req.Header.Set("X-Amz-Target", c.svc.TargetPrefix+op)
	req.Header.Set("User-Agent", c.svc.UserAgent)
	if c.creds == nil {
		return &awsauth.CredentialsError{What: "the SDK's configuration has no credential chain", Hint: awsauth.HintNoCredentials}
	}
	creds, err := c.creds.Retrieve(ctx)
	if err != nil {
		return fmt.Errorf("retrieve credentials: %w", err)
	}
	sum := sha256.Sum256(body)
	if err := c.signer.SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), c.svc.SigningName, c.region, time.Now()); err != nil {
		return fmt.Errorf("sign the request: %w", err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return &smithy.CanceledError{Err: ctx.Err()}
		}
		return &smithyhttp.RequestSendError{Err: err}
	}
	defer func() { _ = resp.Body.Close() }()
	if err := decode(resp, out, c.svc.MaxAnswerBytes); err != nil {
		return &awshttp.ResponseError{
			ResponseError: &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: resp}, Err: err},
			RequestID:     resp.Header.Get("X-Amzn-Requestid"),
		}
	}
	return nil
}

// decode reads an answer: out from a success, else the service's error.
// No error holds the body of a success, which holds values.
func decode(resp *http.Response, out any, maxAnswerBytes int64) error {
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes+1))
	if err != nil {
		return &smithy.DeserializationError{Err: fmt.Errorf("read the answer: %w", err)}
	}
	if int64(len(data)) > maxAnswerBytes {
		return &smithy.DeserializationError{Err: fmt.Errorf("the answer is larger than %d KiB", maxAnswerBytes>>10)}
	}
	if resp.StatusCode < 200 || resp.StatusCode >= 300 {
		return apiError(resp.Header, data)
	}
	if len(data) == 0 {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return &smithy.DeserializationError{Err: errors.New("the answer is not the JSON document of the call's output")}
	}
	return nil
}

// apiError reads an awsJson error answer as the SDK does: the code from the
// X-Amzn-ErrorType header, else the body's __type, else its code, cut to
// the shape's name ("com.amazonaws.ssm#ParameterNotFound",
// "ResourceNotFoundException:http://internal.amazon.com/..."); the message from the
// body's message or Message. A body that is not JSON (a proxy's page, an
// XML refusal) is a *smithy.DeserializationError; the status still says
// what it was.
func apiError(h http.Header, body []byte) error {
	var info struct {
		Type    string `json:"__type"`
		Message string // message or Message
		Code    any
	}
	if err := json.NewDecoder(bytes.NewReader(body)).Decode(&info); err != nil && !errors.Is(err, io.EOF) {
		return &smithy.DeserializationError{Err: errors.New("the error answer is not JSON")}
	}
	code := h.Get("X-Amzn-ErrorType")
	if code == "" {
		code = info.Type
	}
	if s, ok := info.Code.(string); ok && code == "" {
		code = s
	}
	if i := strings.IndexByte(code, ':'); i >= 0 {
		code = code[:i]
	}
	if i := strings.IndexByte(code, '#'); i >= 0 {
		code = code[i+1:]
	}
	if code == "" {
		code = "UnknownError"
	}
	msg := info.Message
	if msg == "" {
		msg = code
	}
	return &smithy.GenericAPIError{Code: code, Message: msg}
}

// ResolveRetryer is the SDK's: the configuration's retryer, else one for
// its retry mode (AWS_RETRY_MODE), with its maximum attempts
// (AWS_MAX_ATTEMPTS).
func ResolveRetryer(cfg aws.Config) aws.RetryerV2 {
	var r aws.Retryer
	switch {
	case cfg.Retryer != nil:
		r = cfg.Retryer()
		if cfg.RetryMaxAttempts != 0 {
			r = retry.AddWithMaxAttempts(r, cfg.RetryMaxAttempts)
		}
	case cfg.RetryMode == aws.RetryModeAdaptive:
		r = retry.NewAdaptiveMode(func(o *retry.AdaptiveModeOptions) {
			o.StandardOptions = append(o.StandardOptions, func(so *retry.StandardOptions) {
				if cfg.RetryMaxAttempts != 0 {
					so.MaxAttempts = cfg.RetryMaxAttempts
				}
			})
		})
	default:
		r = retry.NewStandard(func(so *retry.StandardOptions) {
			if cfg.RetryMaxAttempts != 0 {
				so.MaxAttempts = cfg.RetryMaxAttempts
			}
		})
	}
	v2, ok := r.(aws.RetryerV2)
	if !ok {
		v2 = retryerV2{r}
	}
	return gateRetriesThrottles{v2}
}

// gateRetriesThrottles leaves throttling answers to the store gate
// (secrets/gate), which retries them with a backoff shared by all the
// calls of the node to the store, within the caller's deadline. The SDK's
// standard retryer would try each throttled call 3 times on its own, and
// take 5 tokens of its retry quota (500) for each retry: under sustained
// throttling (a fleet restarted at once) the quota runs out and every
// call, throttled or not, fails at once with "retry quota exceeded".
type gateRetriesThrottles struct{ aws.RetryerV2 }

func (r gateRetriesThrottles) IsErrorRetryable(err error) bool {
	var coded interface{ ErrorCode() string }
	if errors.As(err, &coded) && awsauth.IsThrottleCode(coded.ErrorCode()) {
		return false
	}
	return r.RetryerV2.IsErrorRetryable(err)
}

// retryerV2 gives a retryer without attempt tokens the initial token of
// the older interface, as the SDK does.
type retryerV2 struct{ aws.Retryer }

func (r retryerV2) GetAttemptToken(context.Context) (func(error) error, error) {
	return r.GetInitialToken(), nil
}

// The SDK's configuration sources (environment, shared files) answer these
// for a service client; see ResolveEndpoint.
type (
	serviceEndpointSource interface {
		GetServiceBaseEndpoint(ctx context.Context, sdkID string) (string, bool, error)
	}
	fipsSource interface {
		GetUseFIPSEndpoint(ctx context.Context) (aws.FIPSEndpointState, bool, error)
	}
	dualStackSource interface {
		GetUseDualStackEndpoint(ctx context.Context) (aws.DualStackEndpointState, bool, error)
	}
)

// ResolveEndpoint follows the SDK's rules: an endpoint given (the service's
// own variable, svc.EndpointEnv, or the shared config's services section,
// else AWS_ENDPOINT_URL) is used as it is; else the service's endpoint in
// the region's partition (svc.Endpoint), with the FIPS and dual-stack
// variants when the configuration asks for them.
func ResolveEndpoint(ctx context.Context, cfg aws.Config, svc Service) (string, error) {
	var base string
	if cfg.BaseEndpoint != nil {
		base = *cfg.BaseEndpoint
	}
	_, global := os.LookupEnv("AWS_ENDPOINT_URL")
	_, own := os.LookupEnv(svc.EndpointEnv)
	if !global || own {
		for _, src := range cfg.ConfigSources {
			if s, ok := src.(serviceEndpointSource); ok {
				v, found, err := s.GetServiceBaseEndpoint(ctx, svc.ID)
				if err != nil {
					break
				}
				if found {
					base = v
					break
				}
			}
		}
	}
	var fips, dualStack bool
	for _, src := range cfg.ConfigSources {
		if s, ok := src.(fipsSource); ok {
			if v, found, err := s.GetUseFIPSEndpoint(ctx); err != nil || found {
				fips = v == aws.FIPSEndpointStateEnabled
				break
			}
		}
	}
	for _, src := range cfg.ConfigSources {
		if s, ok := src.(dualStackSource); ok {
			if v, found, err := s.GetUseDualStackEndpoint(ctx); err != nil || found {
				dualStack = v == aws.DualStackEndpointStateEnabled
				break
			}
		}
	}

	if base != "" {
		switch {
		case fips:
			return "", &awsauth.ConfigError{What: "a FIPS endpoint (AWS_USE_FIPS_ENDPOINT) cannot be used with a custom endpoint (AWS_ENDPOINT_URL)"}
		case dualStack:
			return "", &awsauth.ConfigError{What: "a dual-stack endpoint (AWS_USE_DUALSTACK_ENDPOINT) cannot be used with a custom endpoint (AWS_ENDPOINT_URL)"}
		}
		u, err := url.Parse(base)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return "", &awsauth.ConfigError{What: fmt.Sprintf("the endpoint %q is not an http:// or https:// URL", secrets.Clip(base, 200))}
		}
		u.Path = smithyhttp.JoinPath(u.Path, "/")
		u.RawPath = ""
		return u.String(), nil
	}
	if !smithyhttp.ValidHostLabel(cfg.Region) {
		return "", &awsauth.ConfigError{What: fmt.Sprintf("the region %q cannot be part of a host name", secrets.Clip(cfg.Region, 80))}
	}
	return svc.Endpoint(cfg.Region, PartitionOf(cfg.Region), fips, dualStack), nil
}

// PartitionOf returns the partition a region is in (from the SDK's
// partitions.json). An unknown form is the commercial partition's, as in
// the SDK.
func PartitionOf(region string) Partition {
	switch {
	case strings.HasPrefix(region, "cn-"):
		return Partition{Name: "aws-cn", DNS: "amazonaws.com.cn", DualStack: "api.amazonwebservices.com.cn"}
	case strings.HasPrefix(region, "us-gov-"):
		return Partition{Name: "aws-us-gov", DNS: "amazonaws.com", DualStack: "api.aws"}
	case strings.HasPrefix(region, "us-iso-"):
		return Partition{Name: "aws-iso", DNS: "c2s.ic.gov", DualStack: "api.aws.ic.gov"}
	case strings.HasPrefix(region, "us-isob-"):
		return Partition{Name: "aws-iso-b", DNS: "sc2s.sgov.gov", DualStack: "api.aws.scloud"}
	case strings.HasPrefix(region, "us-isof-"):
		return Partition{Name: "aws-iso-f", DNS: "csp.hci.ic.gov", DualStack: "api.aws.hci.ic.gov"}
	case strings.HasPrefix(region, "eu-isoe-"):
		return Partition{Name: "aws-iso-e", DNS: "cloud.adc-e.uk", DualStack: "api.cloud-aws.adc-e.uk"}
	case strings.HasPrefix(region, "eusc-de-"):
		return Partition{Name: "aws-eusc", DNS: "amazonaws.eu", DualStack: "api.amazonwebservices.eu"}
	}
	return Partition{Name: "aws", DNS: "amazonaws.com", DualStack: "api.aws"}
}
