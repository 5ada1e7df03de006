package secrets

import (
	"fmt"
	"sort"
	"strings"
)

// Option names that address a secret. Volume options, Swarm secret labels
// (with a "dsv." prefix) and the objects of a multi-object volume all use
// these names.
const (
	OptBackend      = "backend"
	OptSecret       = "secret"
	OptKey          = "key"
	OptVersionID    = "version-id"
	OptVersionStage = "version-stage"
	OptRegion       = "region"
)

// RefOptions lists the common reference options, for error messages.
var RefOptions = []string{OptBackend, OptSecret, OptKey, OptVersionID, OptVersionStage, OptRegion}

// ParamsDriver is implemented by backends that accept options beyond the
// common ones (Vault's namespace, method, ...). Params lists their names; a
// name ending in "." accepts any suffix ("param." accepts "param.ttl").
type ParamsDriver interface {
	Params() []string
}

// ParseRef reads the reference options of raw. name is the secret's name
// when the secret option is absent; defaultBackend applies when backend is
// absent. It returns the reference, the options it did not consume (for the
// caller's own parsing), and every problem found — including the backend's
// own Normalize and Validate.
func ParseRef(name string, raw map[string]string, defaultBackend string, reg *Registry) (Ref, map[string]string, []error) {
	var problems []error
	ref := Ref{Backend: defaultBackend, Name: name}
	rest := map[string]string{}
	backendGiven := false
	if v, ok := raw[OptBackend]; ok {
		ref.Backend = v
		backendGiven = true
	}
	backend, known := reg.Get(ref.Backend)
	var params []string
	if pd, ok := backend.(ParamsDriver); known && ok {
		params = pd.Params()
	}

	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := raw[k]
		switch k {
		case OptBackend:
		case OptSecret:
			if v == "" {
				problems = append(problems, fmt.Errorf("option %q: must not be empty; it names the secret in the backend", k))
			}
			ref.Name = v
		case OptKey:
			if v == "" {
				problems = append(problems, fmt.Errorf("option %q: must not be empty; it names a top-level key of a JSON secret", k))
			}
			ref.Key = v
		case OptVersionID, OptVersionStage, OptRegion:
			// Empty is no choice: most likely an unset variable that
			// would silently read another version or region.
			if v == "" {
				problems = append(problems, fmt.Errorf("option %q: must not be empty; give a value or leave the option out for the default", k))
			}
			switch k {
			case OptVersionID:
				ref.VersionID = v
			case OptVersionStage:
				ref.VersionStage = v
			default:
				ref.Region = v
			}
		default:
			if matchParam(params, k) {
				if ref.Params == nil {
					ref.Params = map[string]string{}
				}
				ref.Params[k] = v
				continue
			}
			rest[k] = v
		}
	}

	if !known {
		src := "the BACKEND plugin setting"
		if backendGiven {
			src = fmt.Sprintf("option %q", OptBackend)
		}
		problems = append(problems, fmt.Errorf("%s: unknown backend %q; use one of: %s", src, ref.Backend, strings.Join(reg.Names(), ", ")))
		return ref, rest, problems
	}
	if n, ok := backend.(Normalizer); ok {
		ref = n.Normalize(ref)
	}
	if err := backend.Validate(ref); err != nil {
		problems = append(problems, err)
	}
	return ref, rest, problems
}

func matchParam(params []string, k string) bool {
	for _, p := range params {
		if p == k || (strings.HasSuffix(p, ".") && strings.HasPrefix(k, p) && len(k) > len(p)) {
			return true
		}
	}
	return false
}

// CacheKey identifies what a fetch of ref reads, without the key to extract:
// refs that differ only in Key share one backend read.
func (r Ref) CacheKey() string {
	var b strings.Builder
	for _, s := range []string{r.Backend, r.Name, r.VersionID, r.VersionStage, r.Region} {
		b.WriteString(s)
		b.WriteByte(0)
	}
	pk := make([]string, 0, len(r.Params))
	for k := range r.Params {
		pk = append(pk, k)
	}
	sort.Strings(pk)
	for _, k := range pk {
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(r.Params[k])
		b.WriteByte(0)
	}
	return b.String()
}
