package awsauth

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/processcreds"
	"github.com/aws/aws-sdk-go-v2/credentials/ssocreds"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/dsv-plugin/dsv/secrets"
)

// leak stands for a key in a provider's text: no reduced error may hold it.
const leak = "AKIALEAKEDKEY0000000"

func TestReduceCredentialsError(t *testing.T) {
	notFound := &exec.Error{Name: "sh", Err: exec.ErrNotFound}
	tests := []struct {
		name     string
		err      error
		wantWhat string
		wantHint string
	}{
		{
			name:     "process output",
			err:      fmt.Errorf("failed to refresh cached credentials, %w", &processcreds.ProviderError{Err: fmt.Errorf("parse failed of process output: %s, error: %w", leak, errors.New("bad"))}),
			wantWhat: "printed no usable credentials",
			wantHint: "run the profile's credential_process",
		},
		{
			name:     "process timeout",
			err:      &processcreds.ProviderError{Err: fmt.Errorf("credential process timed out: %w", errors.New("signal: killed "+leak))},
			wantWhat: "did not finish in time",
			wantHint: "credential_process",
		},
		{
			name:     "no shell",
			err:      &processcreds.ProviderError{Err: fmt.Errorf("error in credential_process: %w", notFound)},
			wantWhat: "could not be started",
			wantHint: "no shell",
		},
		{
			name:     "sso token",
			err:      &ssocreds.InvalidTokenError{Err: errors.New(leak)},
			wantWhat: "SSO token",
			wantHint: "aws sso login",
		},
		{
			name:     "assume role",
			err:      &smithy.OperationError{ServiceID: "STS", OperationName: "AssumeRole", Err: &smithy.GenericAPIError{Code: "AccessDenied", Message: leak}},
			wantWhat: "assuming the profile's role failed (AccessDenied)",
			wantHint: "sts:AssumeRole",
		},
		{
			name:     "dead imds",
			err:      fmt.Errorf("no EC2 IMDS role found, %w", &smithyhttp.RequestSendError{Err: errors.New("dial tcp 169.254.169.254:80: connect: connection refused " + leak)}),
			wantWhat: "no provider",
			wantHint: "credentials mount",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := reduceCredentialsError(tt.err)
			if strings.Contains(got.Error(), leak) || strings.Contains(got.Hint, leak) {
				t.Errorf("reduced error holds the provider's text: %v (%s)", got, got.Hint)
			}
			if !strings.Contains(got.What, tt.wantWhat) || !strings.Contains(got.Hint, tt.wantHint) {
				t.Errorf("reduced = %q (%q), want %q (%q)", got.What, got.Hint, tt.wantWhat, tt.wantHint)
			}
		})
	}
}

func TestReduceConfigError(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{name: "profile", err: config.SharedConfigProfileNotExistError{Profile: "prod", Err: errors.New(leak)}, want: `profile "prod" is not in the shared files`},
		{name: "file", err: config.SharedConfigLoadError{Filename: "/run/dsv/credentials/config", Err: errors.New("bad line " + leak)}, want: `"/run/dsv/credentials/config" could not be read or parsed`},
		{name: "assume role", err: config.SharedConfigAssumeRoleError{Profile: "p", RoleARN: "arn", Err: errors.New(leak)}, want: `profile "p": its role cannot be assumed`},
		{name: "anything else", err: errors.New(leak), want: "its message is not shown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ClientError(context.Background(), secrets.Ref{Backend: "ssm", Name: "/p"}, reduceConfigError(tt.err))
			if !errors.Is(got, secrets.ErrAccessDenied) || !strings.Contains(got.Error(), tt.want) || strings.Contains(got.Error(), leak) {
				t.Errorf("ClientError() = %v, want access denied saying %q and not the cause's text", got, tt.want)
			}
		})
	}
}
