#!/usr/bin/env bash
# localstack/seed.sh creates the demo secrets in a Secrets Manager emulator
# (LocalStack, or moto: both speak the same API). Re-running it puts the same
# values as new versions. It uses the aws CLI when there is one, and plain
# curl against the JSON API otherwise.
#
# Secrets:
#   dsv-demo/db         JSON: {"username":"app","password":...,"host":...,"port":5432}
#   dsv-demo/api-token  a plain string
#
# Usage: localstack/seed.sh
# Environment:
#   AWS_ENDPOINT_URL  the emulator (default: http://127.0.0.1:4566)
#   AWS_REGION        default: us-east-1
#   DSV_SEED_CLIENT   aws or curl, to choose the client (default: aws if found)
#   DSV_SEED_TIMEOUT  seconds to wait for the emulator to answer (default: 60)
set -euo pipefail

endpoint=${AWS_ENDPOINT_URL:-http://127.0.0.1:4566}
endpoint=${endpoint%/}
export AWS_REGION=${AWS_REGION:-us-east-1}
export AWS_DEFAULT_REGION=$AWS_REGION
# Emulators take any credentials; never send real ones to them.
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
unset AWS_SESSION_TOKEN AWS_PROFILE
timeout=${DSV_SEED_TIMEOUT:-60}

client=${DSV_SEED_CLIENT:-}
if [[ -z $client ]]; then
	if command -v aws >/dev/null && aws --version >/dev/null 2>&1; then client=aws; else client=curl; fi
fi
case $client in aws | curl) ;; *) echo "seed.sh: DSV_SEED_CLIENT must be aws or curl" >&2; exit 2 ;; esac

names=(dsv-demo/db dsv-demo/api-token)
values=(
	'{"username":"app","password":"demo-password-not-secret","host":"db.example.internal","port":5432}'
	'demo-api-token-0123456789'
)

# json_string prints $1 as a JSON string literal.
json_string() {
	local s=$1
	s=${s//\\/\\\\}
	s=${s//\"/\\\"}
	s=${s//$'\n'/\\n}
	s=${s//$'\t'/\\t}
	s=${s//$'\r'/\\r}
	printf '"%s"' "$s"
}

# sm_call ACTION JSON: one Secrets Manager call over HTTP. Prints the body;
# fails, printing it to stderr, on a non-2xx status. The Authorization header
# carries no real signature: LocalStack and moto read only the region and the
# access key out of it.
sm_call() {
	local action=$1 body=$2 out status
	out=$(curl -sS -X POST "$endpoint/" \
		-H 'Content-Type: application/x-amz-json-1.1' \
		-H "X-Amz-Target: secretsmanager.$action" \
		-H "X-Amz-Date: $(date -u +%Y%m%dT%H%M%SZ)" \
		-H "Authorization: AWS4-HMAC-SHA256 Credential=$AWS_ACCESS_KEY_ID/$(date -u +%Y%m%d)/$AWS_REGION/secretsmanager/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=0000000000000000000000000000000000000000000000000000000000000000" \
		--data-binary "$body" -w '\n%{http_code}') || return 1
	status=${out##*$'\n'}
	out=${out%$'\n'*}
	if [[ $status != 2* ]]; then
		printf '%s\n' "$out" >&2
		return 1
	fi
	printf '%s\n' "$out"
}

# The emulator may still be starting (LocalStack takes a few seconds).
deadline=$((SECONDS + timeout))
until sm_call ListSecrets '{"MaxResults":1}' >/dev/null 2>&1; do
	if ((SECONDS >= deadline)); then
		echo "seed.sh: no Secrets Manager answers at $endpoint after ${timeout}s" >&2
		sm_call ListSecrets '{"MaxResults":1}' >/dev/null || true
		exit 1
	fi
	sleep 1
done
echo "seed.sh: seeding $endpoint (region $AWS_REGION) with the $client client"

for i in "${!names[@]}"; do
	name=${names[$i]} value=${values[$i]}
	if [[ $client == aws ]]; then
		if err=$(aws --endpoint-url "$endpoint" secretsmanager create-secret \
			--name "$name" --secret-string "$value" --description "dsv demo secret" --output text --query ARN 2>&1); then
			echo "created $name: $err"
		elif [[ $err == *ResourceExistsException* ]]; then
			aws --endpoint-url "$endpoint" secretsmanager put-secret-value \
				--secret-id "$name" --secret-string "$value" --output text --query VersionId >/dev/null
			echo "updated $name"
		else
			echo "seed.sh: create $name: $err" >&2
			exit 1
		fi
	else
		body="{\"Name\":$(json_string "$name"),\"SecretString\":$(json_string "$value"),\"Description\":\"dsv demo secret\"}"
		if err=$(sm_call CreateSecret "$body" 2>&1); then
			echo "created $name"
		elif [[ $err == *ResourceExistsException* ]]; then
			sm_call PutSecretValue "{\"SecretId\":$(json_string "$name"),\"SecretString\":$(json_string "$value")}" >/dev/null
			echo "updated $name"
		else
			echo "seed.sh: create $name: $err" >&2
			exit 1
		fi
	fi
done

cat <<EOF

Point the plugin at this emulator (with the plugin disabled):
  docker plugin set dsv AWS_ENDPOINT_URL=$endpoint AWS_REGION=$AWS_REGION AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
and mount a secret:
  docker volume create -d dsv -o backend=aws -o secret=dsv-demo/db -o key=password db-password
EOF
