package volumes

import (
	"errors"
	"fmt"
	"os"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/dsv-plugin/dsv/secrets"
)

// Layouts: how a volume appears in the container.
const (
	// LayoutFile mounts the secret itself as a file at the target path.
	LayoutFile = "file"
	// LayoutDir mounts a directory that holds the secret as a named file.
	LayoutDir = "dir"
)

// Volume option names, beyond the reference options of secrets.ParseRef.
const (
	optUID      = "uid"
	optGID      = "gid"
	optMode     = "mode"
	optLayout   = "layout"
	optFilename = "filename"
)

// fileOptions are the options that shape the files of a volume.
var fileOptions = []string{optUID, optGID, optMode, optLayout, optFilename}

// Swarm's defaults for secret files.
const (
	defaultUID  = 0
	defaultGID  = 0
	defaultMode = os.FileMode(0o444)
)

// volumeNameRE is Docker's own rule for volume names.
var volumeNameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

// modeRE accepts 3 or 4 octal digits, as Swarm and chmod do.
var modeRE = regexp.MustCompile(`^0?[0-7]{3}$`)

// Options is a volume's parsed, validated configuration. It is persisted in
// the state file, so it holds names and numbers only, never a secret value.
type Options struct {
	Ref      secrets.Ref `json:"ref"`
	UID      int         `json:"uid"`
	GID      int         `json:"gid"`
	Mode     os.FileMode `json:"mode"`
	Layout   string      `json:"layout"`
	Filename string      `json:"filename"`
}

// Defaults are the plugin-wide settings that options fall back to.
// Precedence, highest first: volume option, plugin setting, built-in default.
type Defaults struct {
	// Backend is the BACKEND plugin setting.
	Backend string
}

// ParseOptions turns Docker's option map into Options and validates them,
// reporting every problem at once. name is the volume's name: it is the
// secret's name when the secret option is absent, which is how implicit
// creation by `docker run -v name:/path` works.
func ParseOptions(name string, raw map[string]string, def Defaults, reg *secrets.Registry) (Options, error) {
	ref, rest, problems := secrets.ParseRef(name, raw, def.Backend, reg)
	bad := func(opt, format string, args ...any) {
		problems = append(problems, fmt.Errorf("option %q: %s", opt, fmt.Sprintf(format, args...)))
	}

	o := Options{Ref: ref, UID: defaultUID, GID: defaultGID, Mode: defaultMode, Layout: LayoutFile}
	var unknown []string
	for k, v := range rest {
		switch k {
		case optUID, optGID:
			n, err := strconv.ParseUint(v, 10, 31)
			if err != nil {
				bad(k, "%q is not a numeric id between 0 and 2147483647", v)
				continue
			}
			if k == optUID {
				o.UID = int(n)
			} else {
				o.GID = int(n)
			}
		case optMode:
			m, err := parseMode(v)
			if err != nil {
				bad(k, "%v", err)
				continue
			}
			o.Mode = m
		case optLayout:
			if v != LayoutFile && v != LayoutDir {
				bad(k, "%q is not a layout; use %q (the secret is the mount) or %q (a directory holding the secret as a file)", v, LayoutFile, LayoutDir)
			}
			o.Layout = v
		case optFilename:
			if err := validateFilename(v); err != nil {
				bad(k, "%v", err)
			}
			o.Filename = v
		default:
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		problems = append(problems, fmt.Errorf("unknown option %q; known options are: %s", k, strings.Join(knownOptions(reg, o.Ref.Backend), ", ")))
	}

	if o.Filename != "" && o.Layout == LayoutFile {
		if _, given := raw[optLayout]; given {
			bad(optFilename, "only applies to layout=dir; remove it or set layout=dir")
		} else {
			// filename implies the directory layout: the user asked for a named file.
			o.Layout = LayoutDir
		}
	}
	if o.Filename == "" {
		o.Filename = defaultFilename(o.Ref.Name)
	}
	if len(problems) > 0 {
		return Options{}, &OptionsError{Volume: name, Problems: problems}
	}
	return o, nil
}

// knownOptions lists every option a volume of this backend accepts.
func knownOptions(reg *secrets.Registry, backend string) []string {
	known := append(append([]string{}, secrets.RefOptions...), fileOptions...)
	if b, ok := reg.Get(backend); ok {
		if pd, ok := b.(secrets.ParamsDriver); ok {
			for _, p := range pd.Params() {
				if strings.HasSuffix(p, ".") {
					p += "NAME"
				}
				known = append(known, p)
			}
		}
	}
	return known
}

// OptionsError reports every invalid option of one volume.
type OptionsError struct {
	Volume   string
	Problems []error
}

func (e *OptionsError) Error() string {
	msgs := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		msgs[i] = p.Error()
	}
	return fmt.Sprintf("volume %q: invalid options: %s", e.Volume, strings.Join(msgs, "; "))
}

// Unwrap exposes the individual problems to errors.Is and errors.As.
func (e *OptionsError) Unwrap() []error { return e.Problems }

// ValidateVolumeName applies Docker's rule for volume names, which are also
// directory names under the mount root.
func ValidateVolumeName(name string) error {
	if !volumeNameRE.MatchString(name) || len(name) > 255 {
		return fmt.Errorf("volume name %q is invalid: use 2 to 255 characters of [a-zA-Z0-9_.-], starting with a letter or digit", name)
	}
	return nil
}

// parseMode reads an octal permission. dsv files are read-only for everyone:
// the tmpfs is shared by every container of the volume, so a write bit would
// let one container change what another reads.
func parseMode(v string) (os.FileMode, error) {
	if !modeRE.MatchString(v) {
		return 0, fmt.Errorf("%q is not an octal file mode; use 3 or 4 octal digits such as 0444, 0440 or 0400", v)
	}
	n, err := strconv.ParseUint(v, 8, 32)
	if err != nil {
		return 0, fmt.Errorf("%q is not an octal file mode: %w", v, err)
	}
	m := os.FileMode(n)
	if m&0o222 != 0 {
		return 0, fmt.Errorf("%q grants write permission; dsv files are read-only, use e.g. 0444, 0440 or 0400", v)
	}
	return m, nil
}

// validateFilename accepts one path segment. Names starting with ".." are
// reserved for dsv's own bookkeeping inside the volume.
func validateFilename(v string) error {
	switch {
	case v == "":
		return errors.New("must not be empty")
	case len(v) > 255:
		return errors.New("is longer than 255 characters")
	case strings.ContainsAny(v, "/\x00"):
		return fmt.Errorf("%q must be a single file name, without '/'", v)
	case v == "." || strings.HasPrefix(v, ".."):
		return fmt.Errorf("%q is reserved; choose a name that does not start with '..'", v)
	}
	return nil
}

// defaultFilename is the last segment of a secret's name or ARN, made safe.
func defaultFilename(secret string) string {
	base := secret
	if i := strings.LastIndexAny(base, "/:"); i >= 0 {
		base = base[i+1:]
	}
	base = path.Clean(base)
	if validateFilename(base) != nil {
		return "secret"
	}
	return base
}
