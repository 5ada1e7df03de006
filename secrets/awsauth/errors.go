package awsauth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strings"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/processcreds"
	"github.com/aws/aws-sdk-go-v2/credentials/ssocreds"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/dsv-plugin/dsv/secrets"
)

// Hints, one per thing the user can fix.
const (
	HintNoCredentials = "no AWS credentials found; put 'credentials' and 'config' files in the plugin's credentials mount, or run on a host with an instance role"
	hintConfig        = "check the AWS_PROFILE setting and the files in the plugin's credentials mount"
	hintProcess       = "run the profile's credential_process on the host to see why; its output is not shown here, as it can hold keys"
	hintProcessShell  = "the managed plugin's image has no shell to run a credential_process; use the credentials files, an instance role, or the plugin in legacy mode"
	hintSSO           = "sign in again (aws sso login) and check the profile's sso_* settings"
	hintAssumeRole    = "check the profile's role_arn and web identity or source_profile settings, and that the source credentials may call sts:AssumeRole on the role"
	hintUnknownKey    = "the access key id is unknown to AWS; check the credentials given to the plugin"
	hintSignature     = "the secret access key does not match the access key id, or the host clock is wrong"
	hintExpired       = "the session credentials have expired; refresh them in the plugin's credentials mount, or use an instance role"
	hintServer        = "the service failed; try again later"
	hintThrottled     = "AWS throttled the request (rate exceeded), also when tried again until TIMEOUT; read less often: raise CACHE_TTL or the refresh interval, lower STORE_CONCURRENCY, or ask AWS for a higher quota"
)

// CredentialsError is a failure to get credentials, reduced to what failed
// and what to do. It holds no text of the provider that failed: a
// credential_process's output, a token endpoint's answer or a broken line
// of the shared files can hold keys.
type CredentialsError struct {
	// What failed, lower-case, e.g. "the credential_process exited with status 1".
	What string
	// Hint says what to do.
	Hint string
}

func (e *CredentialsError) Error() string { return "get AWS credentials: " + e.What }

// ConfigError is a failure to load the SDK's configuration, reduced like a
// CredentialsError.
type ConfigError struct {
	What string
}

func (e *ConfigError) Error() string { return "load the AWS configuration: " + e.What }

// reduceCredentialsError names the provider that failed, and how, from the
// error's types alone.
func reduceCredentialsError(err error) *CredentialsError {
	var ce *CredentialsError
	if errors.As(err, &ce) {
		return ce
	}
	var pe *processcreds.ProviderError
	if errors.As(err, &pe) {
		var exitErr *exec.ExitError
		switch {
		case errors.Is(err, exec.ErrNotFound):
			return &CredentialsError{What: "the profile's credential_process could not be started", Hint: hintProcessShell}
		case errors.As(err, &exitErr):
			return &CredentialsError{What: fmt.Sprintf("the profile's credential_process exited with status %d", exitErr.ExitCode()), Hint: hintProcess}
		case pe.Err != nil && strings.HasPrefix(pe.Err.Error(), "credential process timed out"):
			return &CredentialsError{What: "the profile's credential_process did not finish in time", Hint: hintProcess}
		}
		return &CredentialsError{
			What: "the profile's credential_process printed no usable credentials (JSON with Version 1, AccessKeyId and SecretAccessKey)",
			Hint: hintProcess,
		}
	}
	var te *ssocreds.InvalidTokenError
	if errors.As(err, &te) {
		return &CredentialsError{What: "the profile's SSO token is missing or expired", Hint: hintSSO}
	}
	var opErr *smithy.OperationError
	if errors.As(err, &opErr) {
		code := ""
		var apiErr smithy.APIError
		if errors.As(err, &apiErr) {
			code = " (" + secrets.Clip(apiErr.ErrorCode(), 64) + ")"
		}
		switch opErr.ServiceID {
		case "STS":
			return &CredentialsError{What: "assuming the profile's role failed" + code, Hint: hintAssumeRole}
		case "SSO", "SSO OIDC":
			return &CredentialsError{What: "getting credentials from AWS SSO failed" + code, Hint: hintSSO}
		}
	}
	return &CredentialsError{What: "no provider of the SDK's credential chain gave credentials", Hint: HintNoCredentials}
}

// reduceConfigError keeps what names a setting (a profile, a file name) and
// drops the rest.
func reduceConfigError(err error) *ConfigError {
	var notExist config.SharedConfigProfileNotExistError
	var load config.SharedConfigLoadError
	var assume config.SharedConfigAssumeRoleError
	var noARN config.CredentialRequiresARNError
	switch {
	case errors.As(err, &notExist):
		return &ConfigError{What: fmt.Sprintf("profile %q is not in the shared files", secrets.Clip(notExist.Profile, 80))}
	case errors.As(err, &load):
		return &ConfigError{What: fmt.Sprintf("the shared file %q could not be read or parsed", secrets.Clip(load.Filename, 200))}
	case errors.As(err, &assume):
		return &ConfigError{What: fmt.Sprintf("profile %q: its role cannot be assumed as configured (role_arn, source_profile, credential_source)", secrets.Clip(assume.Profile, 80))}
	case errors.As(err, &noARN):
		return &ConfigError{What: "a profile gives a " + secrets.Clip(noARN.Type, 40) + " without a role_arn"}
	}
	return &ConfigError{What: "the SDK refused the configuration (its message is not shown, as it can quote the shared files)"}
}

// ClientError classifies a failure of LoadConfig.
func ClientError(ctx context.Context, ref secrets.Ref, err error) error {
	if errors.Is(err, ErrNoRegion) {
		return secrets.Fail(ref, secrets.ErrUnavailable, "set the AWS_REGION plugin setting or the region option", err)
	}
	if e := secrets.FromContext(ctx, ref); e != nil {
		return e
	}
	var ce *ConfigError
	if !errors.As(err, &ce) {
		// Not from LoadConfig (a test's factory): keep nothing of it.
		ce = reduceConfigError(err)
	}
	return secrets.Fail(ref, secrets.ErrAccessDenied, hintConfig, ce)
}

// IsThrottleCode reports whether an AWS error code says the call was
// throttled. The store gate (secrets/gate) retries those, so the SDK's
// retryer must not (see awsjson.ResolveRetryer): one list for both.
func IsThrottleCode(code string) bool {
	switch code {
	case "ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded":
		return true
	}
	return false
}

// Call describes the AWS call whose failure Classify classifies.
type Call struct {
	// Service names the service in hints: "secrets manager".
	Service string
	// Policy is what the IAM policy must allow for the call, for the hint
	// of a refusal: "secretsmanager:GetSecretValue on the secret".
	Policy string
	// Own classifies the service's own API errors (ok false: not one of
	// them); nil for none.
	Own func(smithy.APIError) (kind error, hint string, ok bool)
}

// Classify turns a failed AWS call into a *secrets.Error: the service's
// own API errors by call.Own, then what every AWS client shares. The SDK's
// text is kept as the cause: it names the operation and the request id and
// never carries a value; credential failures carry only their reduced text.
func Classify(ctx context.Context, ref secrets.Ref, err error, call Call) error {
	var ce *CredentialsError
	if errors.As(err, &ce) {
		return secrets.Fail(ref, secrets.ErrAccessDenied, ce.Hint, err)
	}
	if e := secrets.FromContext(ctx, ref); e != nil {
		return e
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		if call.Own != nil {
			if kind, hint, ok := call.Own(apiErr); ok {
				return secrets.Fail(ref, kind, hint, err)
			}
		}
		switch apiErr.ErrorCode() {
		case "UnrecognizedClientException", "InvalidClientTokenId":
			return secrets.Fail(ref, secrets.ErrAccessDenied, hintUnknownKey, err)
		case "InvalidSignatureException", "SignatureDoesNotMatch", "IncompleteSignature":
			return secrets.Fail(ref, secrets.ErrAccessDenied, hintSignature, err)
		case "ExpiredTokenException", "ExpiredToken":
			return secrets.Fail(ref, secrets.ErrAccessDenied, hintExpired, err)
		}
		if IsThrottleCode(apiErr.ErrorCode()) {
			return secrets.Fail(ref, secrets.ErrThrottled, hintThrottled, err)
		}
		return secrets.Fail(ref, secrets.ErrUnavailable, hintServer, err)
	}
	// A refusal whose body is not AWS's (a proxy's page; moto's checks
	// answer a JSON API in XML) is still a refusal.
	var respErr *smithyhttp.ResponseError
	if errors.As(err, &respErr) && (respErr.HTTPStatusCode() == http.StatusForbidden || respErr.HTTPStatusCode() == http.StatusUnauthorized) {
		return secrets.Fail(ref, secrets.ErrAccessDenied, "the request was refused with an answer that is not AWS's own; check the credentials given to the plugin, the IAM policy (it must allow "+call.Policy+"), and any proxy or AWS_ENDPOINT_URL on the way", err)
	}
	var sendErr *smithyhttp.RequestSendError
	var netErr net.Error
	if errors.As(err, &sendErr) || errors.As(err, &netErr) {
		return secrets.Fail(ref, secrets.ErrUnavailable,
			"could not reach "+call.Service+"; check the host's network and DNS, and the AWS_ENDPOINT_URL plugin setting", err)
	}
	return secrets.Fail(ref, secrets.ErrUnavailable, "", err)
}
