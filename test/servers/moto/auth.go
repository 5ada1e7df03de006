package moto

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// AccessKey is an IAM access key a server started by StartAuth knows.
type AccessKey struct {
	ID, Secret string
}

// authUser is the IAM user StartAuth creates.
const authUser = "dsv"

// StartAuth runs a moto server that, like AWS, refuses requests signed
// with an access key it does not know (moto's IAM checks). It first
// creates, unchecked, an IAM user allowed secretsmanager:* with an access
// key, and the given secrets (name to value); moto's
// INITIAL_NO_AUTH_ACTION_COUNT is the number of those requests, so every
// later one is checked. The server's helpers then sign with that key.
func StartAuth(t testing.TB, secrets map[string]string) (*Server, AccessKey) {
	t.Helper()
	return StartAuthWith(t, AuthSetup{Secrets: secrets})
}

// AuthSetup is what StartAuthWith creates before moto checks keys.
type AuthSetup struct {
	// Actions are the IAM actions the user is allowed; nil allows
	// secretsmanager:*.
	Actions []string
	// Secrets are Secrets Manager secrets, name to value.
	Secrets map[string]string
	// Parameters are SSM SecureString parameters, name to value.
	Parameters map[string]string
}

// StartAuthWith is StartAuth with the user's allowed actions and SSM
// parameters too.
func StartAuthWith(t testing.TB, a AuthSetup) (*Server, AccessKey) {
	t.Helper()
	secrets := a.Secrets
	actions := a.Actions
	if actions == nil {
		actions = []string{"secretsmanager:*"}
	}
	// CreateUser, PutUserPolicy, CreateAccessKey, CreateSecret and
	// PutParameter each.
	setup := 3 + len(secrets) + len(a.Parameters)
	s := start(t, []string{"INITIAL_NO_AUTH_ACTION_COUNT=" + strconv.Itoa(setup)})
	ctx := s.ctx(t)
	policy, err := json.Marshal(map[string]any{
		"Version":   "2012-10-17",
		"Statement": []map[string]any{{"Effect": "Allow", "Action": actions, "Resource": "*"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, call := range []url.Values{
		{"Action": {"CreateUser"}, "UserName": {authUser}},
		{"Action": {"PutUserPolicy"}, "UserName": {authUser}, "PolicyName": {"dsv"}, "PolicyDocument": {string(policy)}},
	} {
		if _, err := s.iam(ctx, call); err != nil {
			t.Fatal(err)
		}
	}
	body, err := s.iam(ctx, url.Values{"Action": {"CreateAccessKey"}, "UserName": {authUser}})
	if err != nil {
		t.Fatal(err)
	}
	var created struct {
		Key struct {
			ID     string `xml:"AccessKeyId"`
			Secret string `xml:"SecretAccessKey"`
		} `xml:"CreateAccessKeyResult>AccessKey"`
	}
	if err := xml.Unmarshal(body, &created); err != nil || created.Key.ID == "" || created.Key.Secret == "" {
		t.Fatalf("moto CreateAccessKey: %v: %s", err, body)
	}
	key := AccessKey{ID: created.Key.ID, Secret: created.Key.Secret}
	names := make([]string, 0, len(secrets))
	for n := range secrets {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		s.CreateSecret(t, n, secrets[n])
	}
	names = names[:0]
	for n := range a.Parameters {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		s.PutParameter(t, n, a.Parameters[n], ParameterSecureString)
	}

	// From here on moto checks keys: the fake ones must be refused, or
	// the tests that rely on it would prove nothing. (moto answers this
	// JSON API's refusal in XML, InvalidClientTokenId; AWS answers JSON.)
	_, err = s.client.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("any")})
	var respErr *smithyhttp.ResponseError
	if !errors.As(err, &respErr) || respErr.HTTPStatusCode() != http.StatusForbidden {
		t.Fatalf("moto with INITIAL_NO_AUTH_ACTION_COUNT=%d does not refuse an unknown key after the setup: %v", setup, err)
	}
	s.creds = aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
		return aws.Credentials{AccessKeyID: key.ID, SecretAccessKey: key.Secret}, nil
	})
	s.client = secretsmanager.New(secretsmanager.Options{
		Region:       Region,
		BaseEndpoint: aws.String(s.URL),
		Credentials:  s.creds,
	})
	return s, key
}

// iam calls moto's IAM query API, signed with the fake credentials, and
// returns the answer's XML.
func (s *Server) iam(ctx context.Context, params url.Values) ([]byte, error) {
	params.Set("Version", "2010-05-08")
	form := params.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/", bytes.NewReader([]byte(form)))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	sum := sha256.Sum256([]byte(form))
	creds := aws.Credentials{AccessKeyID: AccessKeyID, SecretAccessKey: SecretAccessKey}
	if err := v4.NewSigner().SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), "iam", Region, time.Now()); err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("moto IAM %s: %w", params.Get("Action"), err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("moto IAM %s: %s: %s", params.Get("Action"), resp.Status, body)
	}
	return body, nil
}
