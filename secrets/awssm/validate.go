package awssm

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/dsv-plugin/dsv/secrets"
	"github.com/dsv-plugin/dsv/secrets/awsauth"
)

// AWS limits, from the Secrets Manager API reference.
const (
	maxNameLen      = 512
	minVersionIDLen = 32
	maxVersionIDLen = 64
	maxStageLen     = 256
	// A full ARN's name part carries a 7-character suffix ("-AbCdEf").
	maxARNNameLen = maxNameLen + 7
)

var (
	// arnRE splits arn:<partition>:secretsmanager:<region>:<account>:secret:<name>.
	arnRE = regexp.MustCompile(`^arn:(aws(?:-[a-z]+)*):secretsmanager:([^:]*):([0-9]{12}):secret:(.*)$`)
)

// Validate checks a reference without contacting AWS and returns every
// problem at once, each naming the volume option as the user types it.
func (d *Driver) Validate(ref secrets.Ref) error {
	var errs []error
	arnRegion, err := validateSecret(ref.Name)
	if err != nil {
		errs = append(errs, err)
	}
	if ref.VersionID != "" && !validVersionID(ref.VersionID) {
		errs = append(errs, fmt.Errorf("option %q: %q is not a version id (%d-%d letters, digits and hyphens)",
			"version-id", quoted(ref.VersionID), minVersionIDLen, maxVersionIDLen))
	}
	if ref.VersionStage != "" && !validStage(ref.VersionStage) {
		errs = append(errs, fmt.Errorf("option %q: %q is not a staging label (1-%d characters without spaces, e.g. AWSCURRENT or AWSPREVIOUS)",
			"version-stage", quoted(ref.VersionStage), maxStageLen))
	}
	switch {
	case ref.Region == "":
	case !ValidRegion(ref.Region):
		errs = append(errs, fmt.Errorf("option %q: %q is not an AWS region (e.g. us-east-1)", "region", quoted(ref.Region)))
	case arnRegion != "" && arnRegion != ref.Region:
		errs = append(errs, fmt.Errorf("option %q: %q differs from the region %q in the secret ARN; drop the region option",
			"region", ref.Region, arnRegion))
	}
	return errors.Join(errs...)
}

// ValidRegion reports whether s has the form of an AWS region name.
func ValidRegion(s string) bool {
	return awsauth.ValidRegion(s)
}

// validateSecret checks a secret name or ARN and returns the ARN's region.
func validateSecret(s string) (arnRegion string, err error) {
	const opt = "secret"
	if s == "" {
		return "", fmt.Errorf("option %q is required: a secret name or ARN", opt)
	}
	if strings.HasPrefix(s, "arn:") {
		m := arnRE.FindStringSubmatch(s)
		if m == nil {
			return "", fmt.Errorf("option %q: %q is not a Secrets Manager ARN (arn:<partition>:secretsmanager:<region>:<account>:secret:<name>)",
				opt, quoted(s))
		}
		region, name := m[2], m[4]
		if !ValidRegion(region) {
			return "", fmt.Errorf("option %q: the ARN's region %q is not an AWS region (e.g. us-east-1)", opt, quoted(region))
		}
		if !validName(name, maxARNNameLen) {
			return "", fmt.Errorf("option %q: the ARN's secret name %q is not a secret name (1-%d characters of letters, digits and /_+=.@-)",
				opt, quoted(name), maxNameLen)
		}
		return region, nil
	}
	if !validName(s, maxNameLen) {
		return "", fmt.Errorf("option %q: %q is not a secret name (1-%d characters of letters, digits and /_+=.@-) or a Secrets Manager ARN",
			opt, quoted(s), maxNameLen)
	}
	return "", nil
}

func validName(s string, maxLen int) bool {
	if s == "" || len(s) > maxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !nameByte(s[i]) {
			return false
		}
	}
	return true
}

func nameByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("/_+=.@-", c) >= 0
}

func validVersionID(s string) bool {
	if len(s) < minVersionIDLen || len(s) > maxVersionIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func validStage(s string) bool {
	if !utf8.ValidString(s) || utf8.RuneCountInString(s) > maxStageLen {
		return false
	}
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return false
		}
	}
	return s != ""
}

// quoted shortens a user value for an error message, so a pasted blob does
// not flood `docker volume create`'s output.
func quoted(s string) string { return secrets.Clip(s, 80) }
