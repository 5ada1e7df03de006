package gcp

import (
	"errors"
	"fmt"
	"strings"

	"github.com/dsv-plugin/dsv/secrets"
)

// Limits of Secret Manager's names, from its API reference. The forms are
// checked by hand: counted repetitions such as [A-Za-z0-9_-]{1,255} compile
// into regexp programs that would cost every plugin ~1.5 MiB of memory.
const (
	maxSecretID = 255
	maxAlias    = 63
	maxDomain   = 63
)

// versionLatest is the version read when none is given.
const versionLatest = "latest"

// resource is a secret option parsed into its parts.
type resource struct {
	project  string // ID or number; "" for a short name without a default project
	location string // "" for a global secret
	secret   string
	version  string // "" when the name gives none
}

// secretName is the secret's resource name: projects/P[/locations/L]/secrets/S.
func (r resource) secretName() string {
	if r.location != "" {
		return "projects/" + r.project + "/locations/" + r.location + "/secrets/" + r.secret
	}
	return "projects/" + r.project + "/secrets/" + r.secret
}

// versionName is the resource name AccessSecretVersion reads.
func (r resource) versionName() string {
	return r.secretName() + "/versions/" + r.version
}

// Validate checks a reference without contacting Google and returns every
// problem at once, each naming the volume option as the user types it.
func (d *Driver) Validate(ref secrets.Ref) error {
	_, err := d.resolve(ref)
	return err
}

// resolve parses ref into the version it reads: the project of the name or
// the default project, the version of the name or of version-id, else
// latest.
func (d *Driver) resolve(ref secrets.Ref) (resource, error) {
	var errs []error
	r, err := parseName(ref.Name)
	if err != nil {
		errs = append(errs, err)
	} else if r.project == "" {
		if d.project == "" {
			errs = append(errs, fmt.Errorf("option %q: %q is a short secret name and the %s plugin setting names no default project; give projects/PROJECT/secrets/%s, or set %s",
				secrets.OptSecret, quoted(ref.Name), EnvProject, quoted(ref.Name), EnvProject))
		}
		r.project = d.project
	}
	if ref.VersionID != "" {
		switch {
		case !validVersion(ref.VersionID):
			errs = append(errs, fmt.Errorf("option %q: %q is not a version (latest, a version number such as 3, or an alias: a letter, then up to 62 letters, digits, - and _)",
				secrets.OptVersionID, quoted(ref.VersionID)))
		case err == nil && r.version != "" && r.version != ref.VersionID:
			errs = append(errs, fmt.Errorf("option %q: %q differs from the version %q in the secret name; give the version in one place",
				secrets.OptVersionID, quoted(ref.VersionID), r.version))
		default:
			r.version = ref.VersionID
		}
	}
	if r.version == "" {
		r.version = versionLatest
	}
	if ref.VersionStage != "" {
		errs = append(errs, fmt.Errorf("option %q: not supported by the gcp backend; use %q with a version number or alias", secrets.OptVersionStage, secrets.OptVersionID))
	}
	if ref.Region != "" {
		errs = append(errs, fmt.Errorf("option %q: not supported by the gcp backend; a regional secret is named projects/PROJECT/locations/REGION/secrets/NAME", secrets.OptRegion))
	}
	return r, errors.Join(errs...)
}

// parseName parses a secret option: projects/P/secrets/S[/versions/V],
// projects/P/locations/L/secrets/S[/versions/V], or a secret ID alone (then
// project is ""). Its error names the option.
func parseName(s string) (resource, error) {
	const opt = secrets.OptSecret
	const forms = "projects/PROJECT/secrets/NAME[/versions/VERSION], projects/PROJECT/locations/REGION/secrets/NAME[/versions/VERSION], or NAME with the " + EnvProject + " setting"
	if s == "" {
		return resource{}, fmt.Errorf("option %q is required: %s", opt, forms)
	}
	if !strings.Contains(s, "/") {
		if !validSecretID(s) {
			return resource{}, fmt.Errorf("option %q: %q is not a secret name (1-255 letters, digits, - and _) nor a resource name (%s)", opt, quoted(s), forms)
		}
		return resource{secret: s}, nil
	}
	parts := strings.Split(s, "/")
	bad := func(what string) (resource, error) {
		return resource{}, fmt.Errorf("option %q: %q: %s; use %s", opt, quoted(s), what, forms)
	}
	if parts[0] != "projects" || len(parts) < 4 {
		return bad("not a Secret Manager resource name")
	}
	var r resource
	r.project = parts[1]
	rest := parts[2:]
	if rest[0] == "locations" {
		if len(rest) < 4 {
			return bad("not a Secret Manager resource name")
		}
		r.location = rest[1]
		rest = rest[2:]
	}
	switch {
	case rest[0] != "secrets":
		return bad("not a Secret Manager resource name")
	case len(rest) == 2:
	case len(rest) == 4 && rest[2] == "versions":
		r.version = rest[3]
	default:
		return bad("not a Secret Manager resource name")
	}
	r.secret = rest[1]

	var errs []string
	if !validProject(r.project) {
		errs = append(errs, fmt.Sprintf("%q is not a project ID (6-30 lower-case letters, digits and -, starting with a letter) nor a project number", quoted(r.project)))
	}
	if r.location != "" && !validLocation(r.location) {
		errs = append(errs, fmt.Sprintf("%q is not a region (e.g. us-central1)", quoted(r.location)))
	}
	if !validSecretID(r.secret) {
		errs = append(errs, fmt.Sprintf("%q is not a secret name (1-255 letters, digits, - and _)", quoted(r.secret)))
	}
	if r.version != "" && !validVersion(r.version) {
		errs = append(errs, fmt.Sprintf("%q is not a version (latest, a version number, or an alias)", quoted(r.version)))
	}
	if len(errs) > 0 {
		return resource{}, fmt.Errorf("option %q: %s", opt, strings.Join(errs, "; "))
	}
	return r, nil
}

// validProject reports whether s is a project ID (6-30 lower-case letters,
// digits and hyphens, starting with a letter, not ending with a hyphen),
// optionally domain-scoped (example.com:my-project), or a project number.
func validProject(s string) bool {
	if validNumber(s, 20) {
		return true
	}
	if domain, id, ok := strings.Cut(s, ":"); ok {
		if domain == "" || len(domain) > maxDomain || !all(domain, func(c byte) bool { return lower(c) || digit(c) || c == '.' || c == '-' }) {
			return false
		}
		s = id
	}
	return len(s) >= 6 && len(s) <= 30 && lower(s[0]) && s[len(s)-1] != '-' &&
		all(s, func(c byte) bool { return lower(c) || digit(c) || c == '-' })
}

// validSecretID reports whether s is a secret ID: 1-255 letters, digits,
// hyphens and underscores.
func validSecretID(s string) bool {
	return s != "" && len(s) <= maxSecretID && all(s, idByte)
}

// validLocation reports whether s has the form of a region: lower-case
// words joined by hyphens, the last one ending in one or two digits
// (us-central1, europe-west10).
func validLocation(s string) bool {
	words := strings.Split(s, "-")
	last := words[len(words)-1]
	i := strings.IndexFunc(last, func(r rune) bool { return r >= '0' && r <= '9' })
	if len(words) < 2 || i < 1 || len(last)-i > 2 || !all(last[i:], digit) {
		return false
	}
	words[len(words)-1] = last[:i]
	for _, w := range words {
		if w == "" || !all(w, lower) {
			return false
		}
	}
	return true
}

// validVersion reports whether s names a version: latest, a number, or an
// alias (a letter, then up to 62 letters, digits, - and _; never latest or
// new in any case).
func validVersion(s string) bool {
	switch {
	case s == versionLatest, validNumber(s, 19):
		return true
	case strings.EqualFold(s, versionLatest), strings.EqualFold(s, "new"):
		return false
	}
	return s != "" && len(s) <= maxAlias && (lower(s[0]) || upper(s[0])) && all(s, idByte)
}

// validNumber reports whether s is a positive decimal of at most n digits
// without leading zeros.
func validNumber(s string, n int) bool {
	return s != "" && len(s) <= n && s[0] != '0' && all(s, digit)
}

func all(s string, ok func(byte) bool) bool {
	for i := 0; i < len(s); i++ {
		if !ok(s[i]) {
			return false
		}
	}
	return true
}

func lower(c byte) bool  { return 'a' <= c && c <= 'z' }
func upper(c byte) bool  { return 'A' <= c && c <= 'Z' }
func digit(c byte) bool  { return '0' <= c && c <= '9' }
func idByte(c byte) bool { return lower(c) || upper(c) || digit(c) || c == '-' || c == '_' }

// quoted shortens a user value for an error message.
func quoted(s string) string { return secrets.Clip(s, 80) }
