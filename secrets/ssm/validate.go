package ssm

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/dsv-plugin/dsv/secrets"
	"github.com/dsv-plugin/dsv/secrets/awsauth"
)

// Parameter Store limits, from the API reference.
const (
	// maxNameLen is the longest name, ARN included.
	maxNameLen = 2048
	// maxLevels is the deepest hierarchy.
	maxLevels = 15
	// maxLabelLen is the longest version label.
	maxLabelLen = 100
)

// secretsManagerPrefix reads a Secrets Manager secret through Parameter
// Store; its names take Secrets Manager's characters.
const secretsManagerPrefix = "/aws/reference/secretsmanager/"

// arnRE splits arn:<partition>:ssm:<region>:<account>:parameter/<name>.
var arnRE = regexp.MustCompile(`^arn:(aws(?:-[a-z]+)*):ssm:([^:]*):([0-9]{12}):parameter(/[^:]*)$`)

// Normalize moves a selector from the secret option to the option that
// says the same: /db:3 is version-id 3 of /db, /db:blue the version that
// carries the label blue (version-stage). A name that also has the option,
// or a selector that is neither, is left for Validate to report.
func (d *Driver) Normalize(ref secrets.Ref) secrets.Ref {
	base, sel, ok := splitSelector(ref.Name)
	if !ok || sel == "" || ref.VersionID != "" || ref.VersionStage != "" {
		return ref
	}
	switch {
	case validVersion(sel):
		ref.VersionID = sel
	case validLabel(sel):
		ref.VersionStage = sel
	default:
		return ref
	}
	ref.Name = base
	return ref
}

// Validate checks a reference without contacting AWS and returns every
// problem at once, each naming the volume option as the user types it.
func (d *Driver) Validate(ref secrets.Ref) error {
	var errs []error
	bad := func(opt, format string, args ...any) {
		errs = append(errs, fmt.Errorf("option %q: %s", opt, fmt.Sprintf(format, args...)))
	}
	const opt = secrets.OptSecret
	arnRegion := ""
	path := isPath(ref.Name)
	base, sel, hasSel := splitSelector(ref.Name)
	if path {
		hasSel = false // validPath reports a ':'
	}
	switch {
	case ref.Name == "":
		errs = append(errs, fmt.Errorf("option %q is required: a parameter name (/prod/db/password), its ARN, or a path ending in '/' (/prod/app/)", opt))
	case strings.HasPrefix(ref.Name, "arn:"):
		m := arnRE.FindStringSubmatch(base)
		switch {
		case strings.HasSuffix(base, "/"):
			bad(opt, "%q: a path cannot be an ARN; give the path (/prod/app/) and the region option", quoted(ref.Name))
		case m == nil:
			bad(opt, "%q is not a Parameter Store ARN (arn:<partition>:ssm:<region>:<account>:parameter/<name>)", quoted(ref.Name))
		case !awsauth.ValidRegion(m[2]):
			bad(opt, "the ARN's region %q is not an AWS region (e.g. us-east-1)", quoted(m[2]))
		default:
			arnRegion = m[2]
			if err := validName(m[4]); err != nil {
				bad(opt, "the ARN's parameter name %v", err)
			}
		}
	case path:
		if err := validPath(ref.Name); err != nil {
			bad(opt, "%v", err)
		}
	default:
		if err := validName(base); err != nil {
			bad(opt, "%v", err)
		}
	}

	// Versions: one selector, in the name or in one option.
	switch {
	case path && (ref.VersionID != "" || ref.VersionStage != ""):
		o := secrets.OptVersionID
		if ref.VersionID == "" {
			o = secrets.OptVersionStage
		}
		bad(o, "a path reads the current version of each of its parameters; remove the option, or name one parameter")
	case hasSel && (ref.VersionID != "" || ref.VersionStage != ""):
		bad(opt, "%q has a selector (:%s) and the %s option is given too; give the version once", quoted(ref.Name), quoted(sel), optionOf(ref))
	case hasSel && !validVersion(sel) && !validLabel(sel):
		bad(opt, "%q: the selector %q after ':' is neither a version (1, 2, ...) nor a label (1-%d letters, digits, '.', '-' and '_', not starting with a digit, aws or ssm)",
			quoted(ref.Name), quoted(sel), maxLabelLen)
	case ref.VersionID != "" && ref.VersionStage != "":
		bad(secrets.OptVersionStage, "a parameter version is chosen by number (version-id) or by label (version-stage), not both")
	}
	if ref.VersionID != "" && !validVersion(ref.VersionID) {
		bad(secrets.OptVersionID, "%q is not a parameter version (a number: 1, 2, ...)", quoted(ref.VersionID))
	}
	if ref.VersionStage != "" && !validLabel(ref.VersionStage) {
		bad(secrets.OptVersionStage, "%q is not a parameter label (1-%d letters, digits, '.', '-' and '_', not starting with a digit, aws or ssm)",
			quoted(ref.VersionStage), maxLabelLen)
	}

	for k, v := range ref.Params {
		if k != OptRecursive {
			continue
		}
		if _, err := strconv.ParseBool(v); err != nil {
			bad(k, "%q: use true or false", quoted(v))
		} else if !path && ref.Name != "" {
			bad(k, "applies to a path (a secret option ending in '/'); remove it")
		}
	}

	switch {
	case ref.Region == "":
	case !awsauth.ValidRegion(ref.Region):
		bad(secrets.OptRegion, "%q is not an AWS region (e.g. us-east-1)", quoted(ref.Region))
	case arnRegion != "" && arnRegion != ref.Region:
		bad(secrets.OptRegion, "%q differs from the region %q in the parameter ARN; drop the region option", ref.Region, arnRegion)
	}
	return errors.Join(errs...)
}

func optionOf(ref secrets.Ref) string {
	if ref.VersionID != "" {
		return secrets.OptVersionID
	}
	return secrets.OptVersionStage
}

// isPath reports whether a secret option names a path: it ends in '/'
// (a parameter's name never does).
func isPath(name string) bool {
	return strings.HasSuffix(name, "/") && !strings.HasPrefix(name, "arn:")
}

// recursive reports the recursive option (validated at create).
func recursive(ref secrets.Ref) bool {
	b, _ := strconv.ParseBool(ref.Params[OptRecursive])
	return b
}

// apiPath is the path as GetParametersByPath takes it: without the final
// '/', except for the root.
func apiPath(name string) string {
	if name == "/" {
		return name
	}
	return strings.TrimSuffix(name, "/")
}

// selectorName is the name GetParameter takes: the name with the version
// or label the options choose.
func selectorName(ref secrets.Ref) string {
	switch {
	case ref.VersionID != "":
		return ref.Name + ":" + ref.VersionID
	case ref.VersionStage != "":
		return ref.Name + ":" + ref.VersionStage
	}
	return ref.Name
}

// splitSelector cuts the selector off a name or ARN: /db:3 is /db and 3.
func splitSelector(name string) (base, sel string, ok bool) {
	if strings.HasPrefix(name, "arn:") {
		// arn:partition:ssm:region:account:parameter/NAME[:SELECTOR]
		parts := strings.SplitN(name, ":", 7)
		if len(parts) < 7 {
			return name, "", false
		}
		return strings.Join(parts[:6], ":"), parts[6], true
	}
	return strings.Cut(name, ":")
}

// validName checks a parameter name.
func validName(s string) error {
	switch {
	case s == "":
		return errors.New("is empty")
	case len(s) > maxNameLen:
		return fmt.Errorf("is longer than %d characters", maxNameLen)
	}
	extra := ""
	if strings.HasPrefix(s, secretsManagerPrefix) {
		extra = "+=@"
	}
	for i := 0; i < len(s); i++ {
		if !nameByte(s[i]) && strings.IndexByte(extra, s[i]) < 0 {
			return fmt.Errorf("%q is not a parameter name (letters, digits and /_.-), its ARN, or a path ending in '/'", quoted(s))
		}
	}
	if strings.Contains(s, "/") {
		if !strings.HasPrefix(s, "/") {
			return fmt.Errorf("%q: a name with '/' starts with '/' (/prod/db/password)", quoted(s))
		}
		if strings.Contains(s, "//") || strings.HasSuffix(s, "/") {
			return fmt.Errorf("%q: a name has no empty level ('//')", quoted(s))
		}
		if n := strings.Count(s, "/"); n > maxLevels {
			return fmt.Errorf("%q has %d levels; Parameter Store allows %d", quoted(s), n, maxLevels)
		}
	}
	return nil
}

// validPath checks a path: /, or levels of name characters between slashes.
func validPath(s string) error {
	if !strings.HasPrefix(s, "/") {
		return fmt.Errorf("%q: a path starts with '/' (/prod/app/)", quoted(s))
	}
	if strings.Contains(s, ":") {
		return fmt.Errorf("%q: a path reads the current version of each parameter; it takes no selector", quoted(s))
	}
	if s == "/" {
		return nil
	}
	if err := validName(strings.TrimSuffix(s, "/")); err != nil {
		return fmt.Errorf("the path %v", err)
	}
	return nil
}

func nameByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("/_.-", c) >= 0
}

// validVersion: a positive number without a leading zero.
func validVersion(s string) bool {
	if s == "" || len(s) > 19 || s[0] == '0' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// validLabel: 1-100 characters of letters, digits, '.', '-', '_', not
// starting with a digit, "aws" or "ssm" (any case).
func validLabel(s string) bool {
	if s == "" || len(s) > maxLabelLen || ('0' <= s[0] && s[0] <= '9') {
		return false
	}
	low := strings.ToLower(s)
	if strings.HasPrefix(low, "aws") || strings.HasPrefix(low, "ssm") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// quoted shortens a user value for an error message, so a pasted blob does
// not flood `docker volume create`'s output.
func quoted(s string) string { return secrets.Clip(s, 80) }
