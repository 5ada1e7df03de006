package awssm

import (
	"errors"
	"strings"
	"testing"
	"unicode"

	"github.com/dsv-plugin/dsv/secrets"
)

const (
	testARN       = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/db-AbCdEf"
	testVersionID = "EXAMPLE1-90ab-cdef-fedc-ba987EXAMPLE"
)

// problems splits a Validate error into its joined parts.
func problems(err error) []string {
	if err == nil {
		return nil
	}
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) {
		return []string{err.Error()}
	}
	var out []string
	for _, e := range joined.Unwrap() {
		out = append(out, e.Error())
	}
	return out
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		ref  secrets.Ref
		// want holds one substring per expected problem, in order.
		want []string
	}{
		{name: "plain name", ref: secrets.Ref{Name: "db-password"}},
		{name: "every name character", ref: secrets.Ref{Name: "a/Z_0+=.@-"}},
		{name: "name of 512", ref: secrets.Ref{Name: strings.Repeat("a", 512)}},
		{name: "arn", ref: secrets.Ref{Name: testARN}},
		{name: "partial arn", ref: secrets.Ref{Name: "arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/db"}},
		{name: "gov arn", ref: secrets.Ref{Name: "arn:aws-us-gov:secretsmanager:us-gov-west-1:123456789012:secret:x"}},
		{name: "china arn", ref: secrets.Ref{Name: "arn:aws-cn:secretsmanager:cn-north-1:123456789012:secret:x"}},
		{name: "every option", ref: secrets.Ref{Name: "db", Key: "any key at all", VersionID: testVersionID, VersionStage: "AWSPREVIOUS", Region: "eu-central-1"}},
		{name: "arn with its own region", ref: secrets.Ref{Name: testARN, Region: "eu-west-1"}},
		{name: "custom stage", ref: secrets.Ref{Name: "db", VersionStage: "blue/green_é"}},
		{
			name: "missing name",
			ref:  secrets.Ref{},
			want: []string{`option "secret" is required`},
		},
		{
			name: "name with a space",
			ref:  secrets.Ref{Name: "prod db"},
			want: []string{`option "secret": "prod db" is not a secret name (1-512 characters of letters, digits and /_+=.@-)`},
		},
		{
			name: "name with a colon",
			ref:  secrets.Ref{Name: "prod:db"},
			want: []string{`option "secret": "prod:db" is not a secret name`},
		},
		{
			name: "name of 513",
			ref:  secrets.Ref{Name: strings.Repeat("a", 513)},
			want: []string{`option "secret": "aaaa`},
		},
		{
			name: "not a secrets manager arn",
			ref:  secrets.Ref{Name: "arn:aws:s3:::bucket"},
			want: []string{`option "secret": "arn:aws:s3:::bucket" is not a Secrets Manager ARN (arn:<partition>:secretsmanager:<region>:<account>:secret:<name>)`},
		},
		{
			name: "arn with a short account",
			ref:  secrets.Ref{Name: "arn:aws:secretsmanager:us-east-1:1234:secret:x"},
			want: []string{`is not a Secrets Manager ARN`},
		},
		{
			name: "arn with a bad region",
			ref:  secrets.Ref{Name: "arn:aws:secretsmanager:useast1:123456789012:secret:x"},
			want: []string{`option "secret": the ARN's region "useast1" is not an AWS region (e.g. us-east-1)`},
		},
		{
			name: "arn with a bad name",
			ref:  secrets.Ref{Name: "arn:aws:secretsmanager:us-east-1:123456789012:secret:a b"},
			want: []string{`option "secret": the ARN's secret name "a b" is not a secret name`},
		},
		{
			name: "arn without a name",
			ref:  secrets.Ref{Name: "arn:aws:secretsmanager:us-east-1:123456789012:secret:"},
			want: []string{`the ARN's secret name "" is not a secret name`},
		},
		{
			name: "short version id",
			ref:  secrets.Ref{Name: "db", VersionID: "abc"},
			want: []string{`option "version-id": "abc" is not a version id (32-64 letters, digits and hyphens)`},
		},
		{
			name: "version id with an underscore",
			ref:  secrets.Ref{Name: "db", VersionID: strings.Repeat("a", 31) + "_"},
			want: []string{`option "version-id"`},
		},
		{
			name: "version id of 65",
			ref:  secrets.Ref{Name: "db", VersionID: strings.Repeat("a", 65)},
			want: []string{`option "version-id"`},
		},
		{
			name: "stage with a space",
			ref:  secrets.Ref{Name: "db", VersionStage: "AWS CURRENT"},
			want: []string{`option "version-stage": "AWS CURRENT" is not a staging label (1-256 characters without spaces, e.g. AWSCURRENT or AWSPREVIOUS)`},
		},
		{
			name: "stage of 257",
			ref:  secrets.Ref{Name: "db", VersionStage: strings.Repeat("s", 257)},
			want: []string{`option "version-stage"`},
		},
		{
			name: "region without hyphens",
			ref:  secrets.Ref{Name: "db", Region: "useast1"},
			want: []string{`option "region": "useast1" is not an AWS region (e.g. us-east-1)`},
		},
		{
			name: "region with capitals",
			ref:  secrets.Ref{Name: "db", Region: "US-EAST-1"},
			want: []string{`option "region": "US-EAST-1" is not an AWS region`},
		},
		{
			name: "region that is a host name",
			ref:  secrets.Ref{Name: "db", Region: "us-east-1.evil.example"},
			want: []string{`option "region"`},
		},
		{
			name: "region against the arn",
			ref:  secrets.Ref{Name: testARN, Region: "us-east-1"},
			want: []string{`option "region": "us-east-1" differs from the region "eu-west-1" in the secret ARN`},
		},
		{
			name: "every problem at once",
			ref:  secrets.Ref{Name: "a b", VersionID: "x", VersionStage: "a\tb", Region: "mars"},
			want: []string{`option "secret"`, `option "version-id"`, `option "version-stage"`, `option "region"`},
		},
		{
			name: "long value shortened",
			ref:  secrets.Ref{Name: strings.Repeat("é", 100)},
			want: []string{strings.Repeat("é", 40) + `..."`},
		},
	}
	d := New(Config{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := problems(d.Validate(tt.ref))
			if len(got) != len(tt.want) {
				t.Fatalf("Validate(%+v) = %q, want %d problems %q", tt.ref, got, len(tt.want), tt.want)
			}
			for i, msg := range got {
				if !strings.Contains(msg, tt.want[i]) {
					t.Errorf("problem %d = %q, want it to contain %q", i, msg, tt.want[i])
				}
				if first := []rune(msg)[0]; unicode.IsUpper(first) {
					t.Errorf("problem %d = %q starts upper-case", i, msg)
				}
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{name: "unset", cfg: Config{}},
		{name: "region", cfg: Config{DefaultRegion: "us-gov-west-1"}},
		{name: "bad region", cfg: Config{DefaultRegion: "us_east_1"}, wantErr: `setting AWS_REGION: "us_east_1" is not an AWS region`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Validate() = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestValidRegion(t *testing.T) {
	for _, r := range []string{"us-east-1", "eu-central-1", "us-gov-west-1", "cn-north-1", "ap-southeast-5", "us-isob-east-1", "eusc-de-east-1", "il-central-1"} {
		if !ValidRegion(r) {
			t.Errorf("ValidRegion(%q) = false", r)
		}
	}
	for _, r := range []string{"", "useast1", "us-east", "us-east-", "-us-east-1", "us-east-1a", "US-EAST-1", "us east 1", "us-east-1/", "u-east-1", "us-east-123"} {
		if ValidRegion(r) {
			t.Errorf("ValidRegion(%q) = true", r)
		}
	}
}

// nameOK is the AWS rule for a secret name, written independently of the
// validator: 1 to maxLen bytes of [A-Za-z0-9/_+=.@-].
func nameOK(s string, maxLen int) bool {
	const allowed = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/_+=.@-"
	if len(s) < 1 || len(s) > maxLen {
		return false
	}
	for _, r := range s {
		if !strings.ContainsRune(allowed, r) {
			return false
		}
	}
	return true
}

func FuzzValidate(f *testing.F) {
	f.Add("db", "", "", "", "")
	f.Add("prod/db/password", "pass", testVersionID, "AWSPREVIOUS", "us-east-1")
	f.Add(testARN, "", "", "", "eu-west-1")
	f.Add("arn:aws:secretsmanager:us-east-1:123456789012:secret:a b", "", "", "", "")
	f.Add("arn:aws:secretsmanager::123456789012:secret:x", "", "", "", "")
	f.Add("arn:", "", "", "", "")
	f.Add("../../etc/passwd", "", "", "", "")
	f.Add("a\x00b", "k", "\xff", "AWS\tCURRENT", "us-east-1.evil")
	f.Add(strings.Repeat("a", 513), "", strings.Repeat("0", 64), strings.Repeat("s", 256), "ap-southeast-5")
	f.Add("é", "", "", "é", "eu-central-1")
	d := New(Config{})
	f.Fuzz(func(t *testing.T, name, key, versionID, stage, region string) {
		ref := secrets.Ref{Name: name, Key: key, VersionID: versionID, VersionStage: stage, Region: region}
		err := d.Validate(ref)
		if err != nil {
			for _, msg := range problems(err) {
				if !strings.HasPrefix(msg, "option ") {
					t.Errorf("problem %q does not name its option", msg)
				}
			}
			return
		}
		if rest, isARN := strings.CutPrefix(name, "arn:"); isARN {
			// partition:secretsmanager:region:account:secret:name, where
			// name may carry AWS's 7-character suffix.
			parts := strings.Split(rest, ":")
			if len(parts) != 6 || parts[1] != "secretsmanager" || parts[4] != "secret" ||
				strings.Trim(parts[2], "abcdefghijklmnopqrstuvwxyz0123456789-") != "" || !nameOK(parts[5], 512+7) {
				t.Errorf("accepted ARN %q", name)
			}
		} else if !nameOK(name, 512) {
			t.Errorf("accepted name %q", name)
		}
		if versionID != "" && (len(versionID) < 32 || len(versionID) > 64 || strings.Trim(versionID, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") != "") {
			t.Errorf("accepted version-id %q", versionID)
		}
		if strings.IndexFunc(stage, unicode.IsSpace) >= 0 {
			t.Errorf("accepted version-stage %q", stage)
		}
		if region != "" && !ValidRegion(region) {
			t.Errorf("accepted region %q", region)
		}
	})
}
