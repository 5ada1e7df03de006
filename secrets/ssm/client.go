package ssm

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/dsv-plugin/dsv/secrets/awsauth"
	"github.com/dsv-plugin/dsv/secrets/awsjson"
)

// maxAnswerBytes bounds an answer: a page of ten 8 KiB parameters is
// ~100 KiB.
const maxAnswerBytes = 1 << 20

// service is Parameter Store on the awsJson1.1 protocol.
var service = awsjson.Service{
	ID:             "SSM",
	EndpointEnv:    "AWS_ENDPOINT_URL_SSM",
	SigningName:    "ssm",
	TargetPrefix:   "AmazonSSM.",
	UserAgent:      "dsv-ssm aws-sdk-go-v2/" + aws.SDKVersion,
	MaxAnswerBytes: maxAnswerBytes,
	Endpoint:       endpoint,
}

// endpoint is Parameter Store's rule: https://ssm.REGION. and the
// partition's domain, ssm-fips for FIPS except in GovCloud, whose regular
// endpoint is FIPS validated, and the dual-stack domain when asked.
func endpoint(region string, p awsjson.Partition, fips, dualStack bool) string {
	switch {
	case fips && dualStack:
		return "https://ssm-fips." + region + "." + p.DualStack + "/"
	case fips && p.Name == "aws-us-gov":
		return "https://ssm." + region + "." + p.DNS + "/"
	case fips:
		return "https://ssm-fips." + region + "." + p.DNS + "/"
	case dualStack:
		return "https://ssm." + region + "." + p.DualStack + "/"
	}
	return "https://ssm." + region + "." + p.DNS + "/"
}

// resolveEndpoint is the endpoint a configuration sends requests to.
func resolveEndpoint(ctx context.Context, cfg aws.Config) (string, error) {
	return awsjson.ResolveEndpoint(ctx, cfg, service)
}

// resolveRetryer is the retryer a configuration's client uses.
func resolveRetryer(cfg aws.Config) aws.RetryerV2 { return awsjson.ResolveRetryer(cfg) }

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
// on awsjson: the SDK's own client of the service cost +4.1 MiB of binary
// and +3.3 MiB of VmRSS, used or not (see awsjson).
type Client struct {
	c *awsjson.Client
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

// newClient builds a client from an SDK configuration.
func newClient(ctx context.Context, cfg aws.Config) (*Client, error) {
	c, err := awsjson.New(ctx, cfg, service)
	if err != nil {
		return nil, err
	}
	return &Client{c: c}, nil
}

// GetParameter reads one parameter.
func (c *Client) GetParameter(ctx context.Context, in *GetParameterInput) (*GetParameterOutput, error) {
	out := &GetParameterOutput{}
	if err := c.c.Call(ctx, "GetParameter", in, out); err != nil {
		return nil, err
	}
	return out, nil
}

// GetParametersByPath reads one page of the parameters of a path.
func (c *Client) GetParametersByPath(ctx context.Context, in *GetParametersByPathInput) (*GetParametersByPathOutput, error) {
	out := &GetParametersByPathOutput{}
	if err := c.c.Call(ctx, "GetParametersByPath", in, out); err != nil {
		return nil, err
	}
	return out, nil
}
