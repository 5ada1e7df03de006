package awssm

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// TestClientRequest: GetSecretValue goes out as Secrets Manager's
// awsJson1.1 call (target, content type, the input's JSON), signed for the
// service's signing name in the region, and its answer, a binary value in
// base64, comes back as bytes. moto checks neither the signature's scope
// nor the field names' case, AWS does.
func TestClientRequest(t *testing.T) {
	var got *http.Request
	var body []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
		body, _ = io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		_, _ = io.WriteString(w, `{"ARN":"arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-AbCdEf","Name":"db","VersionId":"v1","SecretBinary":"AAH+/w==","VersionStages":["AWSCURRENT"],"CreatedDate":1.7E9}`)
	}))
	t.Cleanup(srv.Close)
	c, err := newClient(context.Background(), aws.Config{
		Region:       "eu-west-1",
		BaseEndpoint: aws.String(srv.URL),
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "AKIDTEST", SecretAccessKey: "secret"}, nil
		}),
		HTTPClient: srv.Client(),
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.GetSecretValue(context.Background(), &GetSecretValueInput{SecretID: aws.String("db"), VersionStage: aws.String("AWSPREVIOUS")})
	if err != nil {
		t.Fatal(err)
	}
	if string(out.SecretBinary) != "\x00\x01\xfe\xff" || aws.ToString(out.VersionID) != "v1" || out.SecretString != nil {
		t.Errorf("answer = binary %q version %q string %v", out.SecretBinary, aws.ToString(out.VersionID), out.SecretString)
	}
	for _, h := range []struct{ name, want string }{
		{"X-Amz-Target", "secretsmanager.GetSecretValue"},
		{"Content-Type", "application/x-amz-json-1.1"},
	} {
		if v := got.Header.Get(h.name); v != h.want {
			t.Errorf("%s = %q, want %q", h.name, v, h.want)
		}
	}
	if auth := got.Header.Get("Authorization"); !strings.Contains(auth, "/eu-west-1/secretsmanager/aws4_request") {
		t.Errorf("Authorization = %q, want the scope of secretsmanager in eu-west-1", auth)
	}
	var in map[string]any
	if err := json.Unmarshal(body, &in); err != nil {
		t.Fatalf("request body %q: %v", body, err)
	}
	if want := map[string]any{"SecretId": "db", "VersionStage": "AWSPREVIOUS"}; len(in) != len(want) || in["SecretId"] != want["SecretId"] || in["VersionStage"] != want["VersionStage"] {
		t.Errorf("request body = %v, want %v", in, want)
	}
}
