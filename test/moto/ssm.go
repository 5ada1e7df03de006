package moto

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/ssm/types"
)

// SSMClient returns a Parameter Store client for the moto server at url in
// Region, signed with the fake credentials.
func SSMClient(url string) *ssm.Client {
	return ssm.New(ssm.Options{Region: Region, BaseEndpoint: aws.String(url), Credentials: Credentials()})
}

// PutParameter creates a parameter, or adds a version to it, and returns
// the version.
func PutParameter(ctx context.Context, c *ssm.Client, name, value string, typ types.ParameterType) (int64, error) {
	out, err := c.PutParameter(ctx, &ssm.PutParameterInput{
		Name:      aws.String(name),
		Value:     aws.String(value),
		Type:      typ,
		Overwrite: aws.Bool(true),
	})
	if err != nil {
		return 0, err
	}
	return out.Version, nil
}

// SSM returns a Parameter Store client for the server in Region, signed
// like the server's other helpers.
func (s *Server) SSM() *ssm.Client {
	return ssm.New(ssm.Options{Region: Region, BaseEndpoint: aws.String(s.URL), Credentials: s.creds})
}

// PutParameter creates a parameter, or adds a version to it, and returns
// the version.
func (s *Server) PutParameter(t testing.TB, name, value string, typ types.ParameterType) int64 {
	t.Helper()
	v, err := PutParameter(s.ctx(t), s.SSM(), name, value, typ)
	if err != nil {
		t.Fatalf("put parameter %q: %v", name, err)
	}
	return v
}

// LabelParameter moves labels to a version of a parameter.
func (s *Server) LabelParameter(t testing.TB, name string, version int64, labels ...string) {
	t.Helper()
	out, err := s.SSM().LabelParameterVersion(s.ctx(t), &ssm.LabelParameterVersionInput{
		Name:             aws.String(name),
		ParameterVersion: aws.Int64(version),
		Labels:           labels,
	})
	if err != nil {
		t.Fatalf("label parameter %q version %d: %v", name, version, err)
	}
	if len(out.InvalidLabels) > 0 {
		t.Fatalf("label parameter %q: moto refused the labels %q", name, out.InvalidLabels)
	}
}
