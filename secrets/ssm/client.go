package ssm

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

// The service's wire protocol, awsJson1.1: every call is a POST of a JSON
// document to the endpoint's root, named by the X-Amz-Target header and
// signed with Signature Version 4 for the signing name "ssm".
const (
	serviceID      = "SSM" // the SDK's name of the service, in errors and AWS_ENDPOINT_URL_SSM
	signingName    = "ssm"
	targetPrefix   = "AmazonSSM."
	jsonType       = "application/x-amz-json-1.1"
	maxAnswerBytes = 1 << 20 // a page of ten 8 KiB parameters is ~100 KiB
)

// userAgent names the plugin and the SDK whose transport and signer it
// uses.
const userAgent = "dsv-ssm aws-sdk-go-v2/" + aws.SDKVersion

// Parameter is a parameter as Parameter Store returns it: the fields the
// backend reads.
type Parameter struct {
	Name    *string `json:"Name,omitempty"`
	Type    string  `json:"Type,omitempty"`
	Value   *string `json:"Value,omitempty"`
	Version int64   `json:"Version,omitempty"`
}

// GetParameterInput is the request of GetParameter. Name may end in
// :VERSION or :LABEL.
type GetParameterInput struct {
	Name           *string `json:"Name"`
	WithDecryption *bool   `json:"WithDecryption,omitempty"`
}

// GetParameterOutput is the answer of GetParameter.
type GetParameterOutput struct {
	Parameter *Parameter `json:"Parameter"`
}

// GetParametersByPathInput is the request of GetParametersByPath.
type GetParametersByPathInput struct {
	Path           *string `json:"Path"`
	Recursive      *bool   `json:"Recursive,omitempty"`
	WithDecryption *bool   `json:"WithDecryption,omitempty"`
	MaxResults     *int32  `json:"MaxResults,omitempty"`
	NextToken      *string `json:"NextToken,omitempty"`
}

// GetParametersByPathOutput is one page of GetParametersByPath; NextToken
// is nil or empty on the last.
type GetParametersByPathOutput struct {
	Parameters []Parameter `json:"Parameters"`
	NextToken  *string     `json:"NextToken"`
}

// Client is a Parameter Store client for the two calls the backend makes,
// built on the parts of the AWS SDK the plugin links anyway (configuration
// and credential chain, signer, HTTP client, retryer). The SDK's own client
// of the service builds a description of its whole API at program start:
// measured on the plugin (test/rss, stripped static build), it cost +4.1 MiB
// of binary and +3.3 MiB of VmRSS, idle and after 20 mounts, whether the
// backend is used or not; this client costs +0.1 MiB of binary and no
// measurable memory until the first read.
//
// Its errors are shaped as the SDK's are, so that awsauth classifies them
// the same: a *smithy.OperationError around a *smithy.GenericAPIError (the
// service's error code and message) in an *awshttp.ResponseError (the HTTP
// status and request id), a *smithyhttp.RequestSendError when no answer
// came, or the credential chain's error.
type Client struct {
	region   string
	endpoint string // the URL requests are sent to
	creds    aws.CredentialsProvider
	http     aws.HTTPClient
	retryer  aws.RetryerV2
	signer   *v4.Signer
}

var _ API = (*Client)(nil)

// NewClient is the default client factory: awsauth's configuration (the
// SDK's credential chain, shared files read again when they change,
// AWS_ENDPOINT_URL, retry settings) for a region, or for the SDK's own
// region when region is "". It reads only local configuration.
func NewClient(ctx context.Context, region string) (API, error) {
	cfg, err := awsauth.LoadConfig(ctx, region)
	if err != nil {
		return nil, err
	}
	return newClient(ctx, cfg)
}

// newClient builds a client from an SDK configuration, resolving the
// endpoint and the retryer as the SDK's service clients do.
func newClient(ctx context.Context, cfg aws.Config) (*Client, error) {
	endpoint, err := resolveEndpoint(ctx, cfg)
	if err != nil {
		return nil, err
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = awshttp.NewBuildableClient()
	}
	return &Client{
		region:   cfg.Region,
		endpoint: endpoint,
		creds:    cfg.Credentials,
		http:     hc,
		retryer:  resolveRetryer(cfg),
		signer:   v4.NewSigner(),
	}, nil
}

// GetParameter reads one parameter.
func (c *Client) GetParameter(ctx context.Context, in *GetParameterInput) (*GetParameterOutput, error) {
	out := &GetParameterOutput{}
	if err := c.call(ctx, "GetParameter", in, out); err != nil {
		return nil, err
	}
	return out, nil
}

// GetParametersByPath reads one page of the parameters of a path.
func (c *Client) GetParametersByPath(ctx context.Context, in *GetParametersByPathInput) (*GetParametersByPathOutput, error) {
	out := &GetParametersByPathOutput{}
	if err := c.call(ctx, "GetParametersByPath", in, out); err != nil {
		return nil, err
	}
	return out, nil
}

// call makes one call, with the retryer's attempts, and decodes the answer
// into out.
func (c *Client) call(ctx context.Context, op string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return &smithy.OperationError{ServiceID: serviceID, OperationName: op, Err: &smithy.SerializationError{Err: err}}
	}
	if err := c.retry(ctx, op, body, out); err != nil {
		return &smithy.OperationError{ServiceID: serviceID, OperationName: op, Err: err}
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
	req.Header.Set("X-Amz-Target", targetPrefix+op)
	req.Header.Set("User-Agent", userAgent)
	if c.creds == nil {
		return &awsauth.CredentialsError{What: "the SDK's configuration has no credential chain", Hint: awsauth.HintNoCredentials}
	}
	creds, err := c.creds.Retrieve(ctx)
	if err != nil {
		return fmt.Errorf("retrieve credentials: %w", err)
	}
	sum := sha256.Sum256(body)
	if err := c.signer.SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), signingName, c.region, time.Now()); err != nil {
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
	if err := decode(resp, out); err != nil {
		return &awshttp.ResponseError{
			ResponseError: &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: resp}, Err: err},
			RequestID:     resp.Header.Get("X-Amzn-Requestid"),
		}
	}
	return nil
}

// decode reads an answer: out from a success, else the service's error.
// No error holds the body of a success, which holds values.
func decode(resp *http.Response, out any) error {
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes+1))
	if err != nil {
		return &smithy.DeserializationError{Err: fmt.Errorf("read the answer: %w", err)}
	}
	if len(data) > maxAnswerBytes {
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
// "ParameterNotFound:http://internal.amazon.com/..."); the message from the
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

// resolveRetryer is the SDK's: the configuration's retryer, else one for
// its retry mode (AWS_RETRY_MODE), with its maximum attempts
// (AWS_MAX_ATTEMPTS).
func resolveRetryer(cfg aws.Config) aws.RetryerV2 {
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
	if v2, ok := r.(aws.RetryerV2); ok {
		return v2
	}
	return retryerV2{r}
}

// retryerV2 gives a retryer without attempt tokens the initial token of
// the older interface, as the SDK does.
type retryerV2 struct{ aws.Retryer }

func (r retryerV2) GetAttemptToken(context.Context) (func(error) error, error) {
	return r.GetInitialToken(), nil
}

// The SDK's configuration sources (environment, shared files) answer these
// for a service client; see resolveEndpoint.
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

// resolveEndpoint follows the SDK's rules for the service: an endpoint
// given (AWS_ENDPOINT_URL_SSM or the shared config's services section, else
// AWS_ENDPOINT_URL) is used as it is; else https://ssm.REGION. and the
// region's partition's domain (amazonaws.com, amazonaws.com.cn for cn-
// regions, ...), with the FIPS and dual-stack variants when the
// configuration asks for them.
func resolveEndpoint(ctx context.Context, cfg aws.Config) (string, error) {
	var base string
	if cfg.BaseEndpoint != nil {
		base = *cfg.BaseEndpoint
	}
	_, global := os.LookupEnv("AWS_ENDPOINT_URL")
	_, own := os.LookupEnv("AWS_ENDPOINT_URL_SSM")
	if !global || own {
		for _, src := range cfg.ConfigSources {
			if s, ok := src.(serviceEndpointSource); ok {
				v, found, err := s.GetServiceBaseEndpoint(ctx, serviceID)
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
	dns, dualDNS, gov := partitionDomains(cfg.Region)
	switch {
	case fips && dualStack:
		return "https://ssm-fips." + cfg.Region + "." + dualDNS + "/", nil
	case fips && gov:
		// GovCloud's regular endpoint is FIPS validated.
		return "https://ssm." + cfg.Region + "." + dns + "/", nil
	case fips:
		return "https://ssm-fips." + cfg.Region + "." + dns + "/", nil
	case dualStack:
		return "https://ssm." + cfg.Region + "." + dualDNS + "/", nil
	}
	return "https://ssm." + cfg.Region + "." + dns + "/", nil
}

// partitionDomains returns the domain and the dual-stack domain of the
// partition a region is in (from the SDK's partitions.json), and whether it
// is GovCloud's. An unknown form is the commercial partition's, as in the
// SDK.
func partitionDomains(region string) (dns, dualStack string, gov bool) {
	switch {
	case strings.HasPrefix(region, "cn-"):
		return "amazonaws.com.cn", "api.amazonwebservices.com.cn", false
	case strings.HasPrefix(region, "us-gov-"):
		return "amazonaws.com", "api.aws", true
	case strings.HasPrefix(region, "us-iso-"):
		return "c2s.ic.gov", "api.aws.ic.gov", false
	case strings.HasPrefix(region, "us-isob-"):
		return "sc2s.sgov.gov", "api.aws.scloud", false
	case strings.HasPrefix(region, "us-isof-"):
		return "csp.hci.ic.gov", "api.aws.hci.ic.gov", false
	case strings.HasPrefix(region, "eu-isoe-"):
		return "cloud.adc-e.uk", "api.cloud-aws.adc-e.uk", false
	case strings.HasPrefix(region, "eusc-de-"):
		return "amazonaws.eu", "api.amazonwebservices.eu", false
	}
	return "amazonaws.com", "api.aws", false
}
