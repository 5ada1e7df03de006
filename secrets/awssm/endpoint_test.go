package awssm

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/dsv-plugin/dsv/secrets/awsauth"
	"github.com/dsv-plugin/dsv/secrets/awsjson"
)

// TestEndpointAsTheSDK: the backend's endpoint rule gives the URL the SDK's
// own client of the service resolves (its endpoint rules, which the test
// links and the plugin does not), in every partition, with and without
// FIPS and dual-stack.
func TestEndpointAsTheSDK(t *testing.T) {
	sdk := secretsmanager.NewDefaultEndpointResolverV2()
	regions := []string{"us-east-1", "eu-west-1", "cn-north-1", "cn-northwest-1", "us-gov-west-1", "us-iso-east-1",
		"us-isob-east-1", "us-isof-south-1", "eu-isoe-west-1", "eusc-de-east-1", "mars-east-1"}
	for _, region := range regions {
		for _, fips := range []bool{false, true} {
			for _, dual := range []bool{false, true} {
				want, err := sdk.ResolveEndpoint(context.Background(), secretsmanager.EndpointParameters{
					Region: aws.String(region), UseFIPS: aws.Bool(fips), UseDualStack: aws.Bool(dual)})
				if err != nil {
					t.Fatalf("the SDK's resolver: %s fips=%v dual-stack=%v: %v", region, fips, dual, err)
				}
				got := endpoint(region, awsjson.PartitionOf(region), fips, dual)
				if strings.TrimSuffix(got, "/") != want.URI.String() {
					t.Errorf("endpoint(%s, fips=%v, dual-stack=%v) = %q, the SDK's %q", region, fips, dual, got, want.URI.String())
				}
			}
		}
	}
}

// TestEndpointSettings: Secrets Manager's own endpoint settings reach the
// client as they reach the SDK's: AWS_ENDPOINT_URL_SECRETS_MANAGER before
// AWS_ENDPOINT_URL, the shared config's secrets_manager service, and no
// other service's setting.
func TestEndpointSettings(t *testing.T) {
	tests := []struct {
		name   string
		env    map[string]string
		config string // the shared config file's content
		want   string
	}{
		{name: "none", want: "https://secretsmanager.eu-west-1.amazonaws.com/"},
		{name: "AWS_ENDPOINT_URL", env: map[string]string{"AWS_ENDPOINT_URL": "http://127.0.0.1:5000"}, want: "http://127.0.0.1:5000/"},
		{name: "its own first", env: map[string]string{"AWS_ENDPOINT_URL": "http://127.0.0.1:5000", "AWS_ENDPOINT_URL_SECRETS_MANAGER": "http://127.0.0.1:5001"}, want: "http://127.0.0.1:5001/"},
		{name: "another service's", env: map[string]string{"AWS_ENDPOINT_URL_SSM": "http://127.0.0.1:5002"}, want: "https://secretsmanager.eu-west-1.amazonaws.com/"},
		{name: "services section", config: "[default]\nservices = local\n[services local]\nsecrets_manager =\n  endpoint_url = http://127.0.0.1:5003\n", want: "http://127.0.0.1:5003/"},
		{name: "fips", env: map[string]string{"AWS_USE_FIPS_ENDPOINT": "true"}, want: "https://secretsmanager-fips.eu-west-1.amazonaws.com/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, k := range []string{"AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SSM", "AWS_ENDPOINT_URL_SECRETS_MANAGER", "AWS_USE_FIPS_ENDPOINT", "AWS_USE_DUALSTACK_ENDPOINT", "AWS_PROFILE", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"} {
				t.Setenv(k, "") // restored after the test
				_ = os.Unsetenv(k)
			}
			conf := filepath.Join(dir, "config")
			if err := os.WriteFile(conf, []byte(tt.config), 0o600); err != nil {
				t.Fatal(err)
			}
			t.Setenv("AWS_CONFIG_FILE", conf)
			t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
			t.Setenv("AWS_ACCESS_KEY_ID", "a")
			t.Setenv("AWS_SECRET_ACCESS_KEY", "b")
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			cfg, err := awsauth.LoadConfig(context.Background(), "eu-west-1")
			if err != nil {
				t.Fatal(err)
			}
			got, err := awsjson.ResolveEndpoint(context.Background(), cfg, service)
			if err != nil || got != tt.want {
				t.Fatalf("ResolveEndpoint() = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
