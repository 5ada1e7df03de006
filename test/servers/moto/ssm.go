package moto

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// ParameterType is the type of a Parameter Store parameter.
type ParameterType string

// The parameter types.
const (
	ParameterString       ParameterType = "String"
	ParameterStringList   ParameterType = "StringList"
	ParameterSecureString ParameterType = "SecureString"
)

// SSM calls moto's Parameter Store. It writes what the tests read with the
// plugin's own client (secrets/ssm), and is written apart from it, from
// the service's protocol (awsJson1.1), so that the two do not share a
// mistake moto would let pass.
type SSM struct {
	url   string
	creds aws.CredentialsProvider
}

// SSMClient returns a Parameter Store client for the moto server at url in
// Region, signed with the fake credentials.
func SSMClient(url string) *SSM {
	return &SSM{url: url, creds: Credentials()}
}

// SSM returns a Parameter Store client for the server in Region, signed
// like the server's other helpers.
func (s *Server) SSM() *SSM {
	return &SSM{url: s.URL, creds: s.creds}
}

// call makes one call (op is "PutParameter") and decodes its answer into
// out.
func (c *SSM) call(ctx context.Context, op string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url+"/", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	req.Header.Set("X-Amz-Target", "AmazonSSM."+op)
	creds, err := c.creds.Retrieve(ctx)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(body)
	if err := v4.NewSigner().SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), "ssm", Region, time.Now()); err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("moto SSM %s: %w", op, err)
	}
	defer func() { _ = resp.Body.Close() }()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("moto SSM %s: %s: %s", op, resp.Status, answer)
	}
	if err := json.Unmarshal(answer, out); err != nil {
		return fmt.Errorf("moto SSM %s: %w: %s", op, err, answer)
	}
	return nil
}

// PutParameter creates a parameter, or adds a version to it, and returns
// the version.
func PutParameter(ctx context.Context, c *SSM, name, value string, typ ParameterType) (int64, error) {
	var out struct{ Version int64 }
	err := c.call(ctx, "PutParameter", map[string]any{"Name": name, "Value": value, "Type": typ, "Overwrite": true}, &out)
	if err != nil {
		return 0, err
	}
	if out.Version < 1 {
		return 0, fmt.Errorf("moto SSM PutParameter %q: no version in the answer", name)
	}
	return out.Version, nil
}

// PutParameter creates a parameter, or adds a version to it, and returns
// the version.
func (s *Server) PutParameter(t testing.TB, name, value string, typ ParameterType) int64 {
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
	var out struct{ InvalidLabels []string }
	err := s.SSM().call(s.ctx(t), "LabelParameterVersion", map[string]any{"Name": name, "ParameterVersion": version, "Labels": labels}, &out)
	if err != nil {
		t.Fatalf("label parameter %q version %d: %v", name, version, err)
	}
	if len(out.InvalidLabels) > 0 {
		t.Fatalf("label parameter %q: moto refused the labels %q", name, out.InvalidLabels)
	}
}
