package ssm

import (
	"context"
	"strings"

	"github.com/aws/smithy-go"

	"github.com/dsv-plugin/dsv/secrets"
	"github.com/dsv-plugin/dsv/secrets/awsauth"
)

// hintKMS is the hint of a SecureString that could not be decrypted.
const hintKMS = "the parameter is a SecureString its KMS key does not decrypt for these credentials; allow kms:Decrypt on that key in the IAM policy (and the key policy)"

// classify turns a failed call into a *secrets.Error: Parameter Store's
// own codes here, what every AWS client shares in awsauth. permission is
// the IAM action of the call, for the hint of a refusal.
func classify(ctx context.Context, ref secrets.Ref, region, permission string, err error) error {
	what := "the parameter"
	if permission == "ssm:GetParametersByPath" {
		what = "the path"
	}
	policy := permission + " on " + what + ", and kms:Decrypt on the KMS key of a SecureString"
	return awsauth.Classify(ctx, ref, err, awsauth.Call{Service: "SSM Parameter Store", Policy: policy, Own: func(apiErr smithy.APIError) (error, string, bool) {
		switch apiErr.ErrorCode() {
		case "ParameterNotFound":
			return secrets.ErrNotFound, "check the parameter name or ARN and the region (" + regionText(region) + ")", true
		case "ParameterVersionNotFound", "ParameterVersionLabelNotFound":
			return secrets.ErrNotFound, "the parameter has no such version or label; check the version-id or version-stage option (or the :SELECTOR of the secret option)", true
		case "InvalidKeyId":
			return secrets.ErrAccessDenied, "the SecureString's KMS key is disabled, deleted or not usable by these credentials; check the key, and allow kms:Decrypt on it in the IAM policy", true
		case "AccessDeniedException", "AccessDenied":
			// A refusal of the decryption comes as the same code; its
			// message names KMS.
			if strings.Contains(strings.ToLower(apiErr.ErrorMessage()), "kms") {
				return secrets.ErrAccessDenied, hintKMS, true
			}
			return secrets.ErrAccessDenied, "the credentials may not read " + what + "; allow " + policy + " in the IAM policy", true
		case "ValidationException", "InvalidFilterKey", "InvalidFilterOption", "InvalidFilterValue", "InvalidNextToken":
			return secrets.ErrNotFound, "the request was rejected; check the secret, version-id, version-stage and recursive options", true
		}
		return nil, "", false
	}})
}
