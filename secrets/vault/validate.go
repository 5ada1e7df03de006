package vault

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/dsv-plugin/dsv/secrets"
)

// Volume options of the vault backend, beyond the common ones.
const (
	OptNamespace   = "namespace"
	OptIdentity    = "identity"
	OptMethod      = "method"
	OptWrapTTL     = "wrap-ttl"
	OptParamPrefix = "param."
)

// Values of the method option.
const (
	MethodRead  = "read"
	MethodWrite = "write"
)

// Limits.
const (
	maxPathLen = 1024
	// minWrapTTL is Vault's smallest wrapping TTL.
	minWrapTTL = time.Second
)

// identityRE is the form of an identity name: a directory name.
var identityRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// request is a reference parsed into what the backend does.
type request struct {
	path      string            // the secret option as given: secret/app/db
	namespace string            // the namespace option; "" means Config.Namespace
	identity  string            // the identity option; "" means the plugin's login
	write     bool              // method=write
	params    map[string]string // param.NAME options, by NAME
	wrapTTL   time.Duration     // 0: no wrapping
	version   int               // version-id; 0 means the latest
}

// Params lists the options the backend accepts beyond the common ones.
func (d *Driver) Params() []string {
	return []string{OptNamespace, OptIdentity, OptMethod, OptWrapTTL, OptParamPrefix}
}

// Validate checks a reference without contacting Vault: the options, and
// that the identity's directory exists. It returns every problem at once,
// each naming the volume option.
func (d *Driver) Validate(ref secrets.Ref) error {
	req, err := parseRequest(ref)
	errs := []error{err}
	if req.identity != "" && identityRE.MatchString(req.identity) {
		errs = append(errs, d.checkIdentity(req.identity))
	}
	return errors.Join(errs...)
}

// checkIdentity reports a missing identity directory or file.
func (d *Driver) checkIdentity(name string) error {
	dir := d.cfg.identityDir(name)
	fi, err := os.Stat(dir)
	if err != nil || !fi.IsDir() {
		return fmt.Errorf("option %q: unknown identity %q: no directory %s; create it with %s and %s files holding the identity's AppRole credentials",
			OptIdentity, quoted(name), secrets.Clip(dir, 160), roleIDName, secretIDName)
	}
	var missing []string
	for _, f := range []string{roleIDName, secretIDName} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("option %q: identity %q: %s has no %s file", OptIdentity, quoted(name), secrets.Clip(dir, 160), strings.Join(missing, " or "))
	}
	return nil
}

// parseRequest reads the options of ref and reports every problem.
func parseRequest(ref secrets.Ref) (request, error) {
	var errs []error
	req := request{path: ref.Name}
	if err := validPath(ref.Name); err != nil {
		errs = append(errs, fmt.Errorf("option %q: %w", secrets.OptSecret, err))
	}
	if ref.VersionStage != "" {
		errs = append(errs, fmt.Errorf("option %q: not supported by the vault backend; use %q with a KV v2 version number", secrets.OptVersionStage, secrets.OptVersionID))
	}
	if ref.Region != "" {
		errs = append(errs, fmt.Errorf("option %q: not supported by the vault backend; set VAULT_ADDR, or use %q for a Vault Enterprise namespace", secrets.OptRegion, OptNamespace))
	}

	method := MethodRead
	keys := make([]string, 0, len(ref.Params))
	for k := range ref.Params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := ref.Params[k]
		switch {
		case k == OptNamespace:
			if err := validNamespace(v); err != nil {
				errs = append(errs, fmt.Errorf("option %q: %w", k, err))
			}
			req.namespace = strings.Trim(v, "/")
		case k == OptIdentity:
			if !identityRE.MatchString(v) || v == "." || v == ".." {
				errs = append(errs, fmt.Errorf("option %q: %q is not an identity name (letters, digits and _.-)", k, quoted(v)))
			}
			req.identity = v
		case k == OptMethod:
			method = v
			if v != MethodRead && v != MethodWrite {
				errs = append(errs, fmt.Errorf("option %q: %q is not %s or %s", k, quoted(v), MethodRead, MethodWrite))
			}
		case k == OptWrapTTL:
			ttl, err := parseTTL(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("option %q: %w", k, err))
			}
			req.wrapTTL = ttl
		case strings.HasPrefix(k, OptParamPrefix) && len(k) > len(OptParamPrefix):
			if req.params == nil {
				req.params = map[string]string{}
			}
			req.params[strings.TrimPrefix(k, OptParamPrefix)] = v
		default:
			errs = append(errs, fmt.Errorf("option %q: unknown to the vault backend", k))
		}
	}
	req.write = method == MethodWrite

	if ref.VersionID != "" {
		n, err := strconv.Atoi(ref.VersionID)
		switch {
		case err != nil || n <= 0:
			errs = append(errs, fmt.Errorf("option %q: %q is not a KV v2 version number (1, 2, ...)", secrets.OptVersionID, quoted(ref.VersionID)))
		case req.write:
			errs = append(errs, fmt.Errorf("option %q: only for reads of KV v2 secrets, not with %s=%s", secrets.OptVersionID, OptMethod, MethodWrite))
		default:
			req.version = n
		}
	}
	if ref.Key != "" && req.wrapTTL > 0 {
		errs = append(errs, fmt.Errorf("option %q: cannot be used with %q: the file holds a wrapping token, not the secret", secrets.OptKey, OptWrapTTL))
	}
	return req, errors.Join(errs...)
}

// reservedMounts are Vault's own mounts, present in every namespace. Read
// or written with the plugin's token they would hand it out
// (auth/token/lookup-self), mint children (auth/token/create) or OIDC
// tokens in its name (identity/oidc/token/ROLE), open its wrapped answers
// (sys/wrapping/unwrap), or show Vault's configuration: never a volume's
// secret, whatever ALLOW says. Each maps to what it reaches, for errors.
var reservedMounts = map[string]string{
	"auth":      "logins and tokens: auth/token/lookup-self shows the plugin's own token, auth/token/create mints new ones",
	"sys":       "Vault's configuration, and the plugin's own wrapped answers and leases",
	"cubbyhole": "the private storage of the plugin's own token",
	"identity":  "the plugin's identity: identity/oidc/token/ROLE mints OIDC tokens in its name",
}

// reservedList names the reserved mounts in errors.
const reservedList = "auth/, sys/, cubbyhole/ and identity/"

// reservedMount returns the reserved mount that the path segment seg
// names, or "". Vault's mount paths are case-sensitive, but a case or a
// space does not make a path a secret: matched loosely, to refuse
// whatever a proxy or a future Vault might fold.
func reservedMount(seg string) string {
	seg = strings.TrimSpace(seg)
	for m := range reservedMounts {
		if strings.EqualFold(seg, m) {
			return m
		}
	}
	return ""
}

// validPath checks a Vault path as users write it: secret/app/db.
func validPath(p string) error {
	switch {
	case p == "":
		return errors.New("required: a Vault path such as secret/app/db or database/creds/app")
	case len(p) > maxPathLen:
		return fmt.Errorf("longer than %d characters", maxPathLen)
	case !utf8.ValidString(p):
		return errors.New("not valid UTF-8")
	case strings.HasPrefix(p, "/"):
		return fmt.Errorf("%q: remove the leading /", quoted(p))
	case strings.HasPrefix(p, "v1/"):
		return fmt.Errorf("%q: give the path without the API prefix v1/", quoted(p))
	}
	for _, r := range p {
		if unicode.IsControl(r) {
			return fmt.Errorf("%q: control characters are not allowed", quoted(p))
		}
	}
	for _, seg := range strings.Split(p, "/") {
		switch seg {
		case "":
			return fmt.Errorf("%q: empty path segment (// or a trailing /)", quoted(p))
		case ".", "..":
			return fmt.Errorf("%q: %q segments are not allowed", quoted(p), seg)
		}
	}
	return reservedPath(p)
}

// reservedPath refuses a path that reaches one of Vault's own mounts. The
// path is judged as the client sends it (cleaned, as path.Join does).
// Vault Enterprise (and OpenBao) read leading segments that name a
// namespace as that namespace, so team-a/auth/token/create is the token
// store of namespace team-a: a reserved mount is refused at any depth,
// except as the last segment (secret/app/auth is a secret; team-a/sys
// alone reaches no endpoint).
func reservedPath(p string) error {
	segs := strings.Split(strings.TrimPrefix(path.Clean("/"+p), "/"), "/")
	for i, seg := range segs {
		m := reservedMount(seg)
		if m == "" || (i > 0 && i == len(segs)-1) {
			continue
		}
		if i == 0 {
			return fmt.Errorf("%q: paths under %s reach the plugin's own Vault token, its identity and Vault's configuration, not secrets (%s/ is %s); dsv does not serve them",
				quoted(p), reservedList, m, reservedMounts[m])
		}
		ns := strings.Join(segs[:i], "/")
		return fmt.Errorf("%q: Vault Enterprise reads %q as a namespace when one has that name, and this is then the %s/ of that namespace (%s); dsv serves none of %s in any namespace, so no path holds one of those names before its last segment (a KV folder so named cannot be read through dsv)",
			quoted(p), quoted(ns), m, reservedMounts[m], reservedList)
	}
	return nil
}

// validNamespace checks a namespace path such as team-a or team-a/app.
func validNamespace(ns string) error {
	t := strings.TrimSuffix(ns, "/")
	if t == "" || strings.HasPrefix(t, "/") {
		return fmt.Errorf("%q is not a namespace path (e.g. team-a or team-a/app)", quoted(ns))
	}
	for _, seg := range strings.Split(t, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("%q is not a namespace path (e.g. team-a or team-a/app)", quoted(ns))
		}
		for _, r := range seg {
			if unicode.IsSpace(r) || unicode.IsControl(r) || r == '+' || r == '*' {
				return fmt.Errorf("%q: namespace names hold no spaces, control characters, + or *", quoted(ns))
			}
		}
		// The namespace goes in front of the path: team-a/sys would make
		// every path one under namespace team-a's sys/.
		if m := reservedMount(seg); m != "" {
			return fmt.Errorf("%q: %s is Vault's own mount in every namespace (%s), not a namespace; dsv does not serve it", quoted(ns), m, reservedMounts[m])
		}
	}
	return nil
}

// parseTTL reads a Go duration (30s, 5m) or a number of seconds.
func parseTTL(s string) (time.Duration, error) {
	var d time.Duration
	if n, err := strconv.Atoi(s); err == nil {
		d = time.Duration(n) * time.Second
	} else if d, err = time.ParseDuration(s); err != nil {
		return 0, fmt.Errorf("%q is not a duration (e.g. 60s, 5m) or a number of seconds", quoted(s))
	}
	if d < minWrapTTL {
		return 0, fmt.Errorf("%q: must be at least %s", quoted(s), minWrapTTL)
	}
	if d%time.Second != 0 {
		return 0, fmt.Errorf("%q: must be whole seconds", quoted(s))
	}
	return d, nil
}

// quoted shortens a user value for an error message, so a pasted blob does
// not flood `docker volume create`'s output.
func quoted(s string) string { return secrets.Clip(s, 80) }

// IssuesAnew reports whether every read of ref issues a new value
// (method=write, wrap-ttl): such values are never served stale.
func (d *Driver) IssuesAnew(ref secrets.Ref) bool {
	req, _ := parseRequest(ref)
	return req.write || req.wrapTTL > 0
}
