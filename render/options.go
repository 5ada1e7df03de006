// Package render turns a volume's options into its files: it parses and
// validates the options (every problem at once, at create), reads each
// secret once through the fetcher (ALLOW checked before every read), and
// applies keys, formats and templates. It writes nothing: the tmpfs package
// does. Both the Docker volumes and the Swarm secret provider use it.
package render

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/dsv-plugin/dsv/notify"
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
	optUID          = "uid"
	optGID          = "gid"
	optMode         = "mode"
	optLayout       = "layout"
	optFilename     = "filename"
	optFormat       = "format"
	optRefresh      = "refresh"
	optLeaseGrace   = "lease-grace"
	optNotify       = "notify"
	optStaleIfError = "stale-if-error"
	optTemplate     = "template"
	optTemplateFile = "template-file"
	// Prefixes of the options that each add one file to a directory volume.
	prefixFile         = "file."
	prefixTemplate     = "template."
	prefixTemplateFile = "template-file."
)

// fileOptions are the options that shape the files of a volume.
var fileOptions = []string{optUID, optGID, optMode, optLayout, optFilename, optFormat, optRefresh, optLeaseGrace,
	optNotify, optStaleIfError, optTemplate, optTemplateFile, prefixFile + "NAME", prefixTemplate + "NAME", prefixTemplateFile + "NAME"}

// Formats of a secret file.
const (
	FormatRaw    = "raw"
	FormatJSON   = "json"
	FormatDotenv = "dotenv"
	FormatBase64 = "base64"
)

// AllKeys is the key option's value that explodes a JSON secret into one
// file per top-level key.
const AllKeys = "*"

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
// the state file, so it holds names, numbers and template text, never a
// secret value.
type Options struct {
	// Layout is LayoutFile (one object, mounted as the file itself) or
	// LayoutDir (a directory of objects).
	Layout  string   `json:"layout"`
	Objects []Object `json:"objects"`
	// Refresh re-reads a mounted volume's objects at this interval; it
	// applies only when RefreshSet, else the plugin's REFRESH setting does.
	Refresh    time.Duration `json:"refresh,omitempty"`
	RefreshSet bool          `json:"refreshSet,omitempty"`
	// LeaseGrace is how long a lease of replaced content is kept before
	// it is revoked; it applies only when LeaseGraceSet, else the plugin's
	// LEASE_GRACE setting does.
	LeaseGrace    time.Duration `json:"leaseGrace,omitempty"`
	LeaseGraceSet bool          `json:"leaseGraceSet,omitempty"`
	// Notify is what the containers of the volume are sent after a swap
	// that changed its files; it applies only when NotifySet, else the
	// plugin's NOTIFY setting does (see Defaults.NotifyOf).
	Notify    notify.Spec `json:"notify,omitzero"`
	NotifySet bool        `json:"notifySet,omitempty"`
	// StaleIfError is how long after a good read of a secret its value
	// may still be served when its backend is unavailable; it applies
	// only when StaleIfErrorSet, else the plugin's STALE_IF_ERROR
	// setting does (see Defaults.StaleIfErrorOf).
	StaleIfError    time.Duration `json:"staleIfError,omitempty"`
	StaleIfErrorSet bool          `json:"staleIfErrorSet,omitempty"`
}

// Object is one file (or, for key=*, one directory of files) of a volume.
type Object struct {
	// Name is the file's name in the volume.
	Name string `json:"name"`
	// Ref is the secret of a secret object; zero for a template object.
	Ref secrets.Ref `json:"ref"`
	// AllKeys explodes a JSON object secret into one file per top-level
	// key: in the volume's root for a single-secret volume, else in a
	// directory called Name.
	AllKeys bool `json:"AllKeys,omitempty"`
	// Format turns the value into the file's content.
	Format string `json:"format"`
	// Template, when set, renders the file from several secrets.
	Template *Template   `json:"template,omitempty"`
	UID      int         `json:"uid"`
	GID      int         `json:"gid"`
	Mode     os.FileMode `json:"mode"`
}

// Defaults are the plugin-wide settings that options fall back to.
// Precedence, highest first: volume option (for a file of a multi-object
// volume: its own spec, then the volume's options), plugin setting,
// built-in default.
type Defaults struct {
	// Backend is the BACKEND plugin setting.
	Backend string
	// Templates reads named template files (the templates mount); nil when
	// there is none.
	Templates TemplateSource
	// Notify is the NOTIFY setting; the zero Spec notifies nobody.
	Notify notify.Spec
	// StaleIfError is the STALE_IF_ERROR setting; 0 is off.
	StaleIfError time.Duration
}

// NotifyOf is what a volume's containers are sent after a swap: its
// option, else the NOTIFY setting.
func (def Defaults) NotifyOf(o Options) notify.Spec {
	if o.NotifySet {
		return o.Notify
	}
	return def.Notify
}

// StaleIfErrorOf is how long a volume's last good values may be served
// through an outage: its option, else the STALE_IF_ERROR setting.
func (def Defaults) StaleIfErrorOf(o Options) time.Duration {
	if o.StaleIfErrorSet {
		return o.StaleIfError
	}
	return def.StaleIfError
}

// ParseOptions turns Docker's option map into Options and validates them,
// reporting every problem at once. name is the volume's name: it is the
// secret's name when the secret option is absent, which is how implicit
// creation by `docker run -v name:/path` works.
func ParseOptions(name string, raw map[string]string, def Defaults, reg *secrets.Registry) (Options, error) {
	p := &optionParser{def: def, reg: reg}
	o := p.parse(name, p.bounded(raw))
	if len(p.problems) > 0 {
		return Options{}, &OptionsError{Volume: name, Problems: p.problems}
	}
	return o, nil
}

// Bounds of an option. The largest legitimate value is an inline template,
// which gets what a template file gets; the longest name is
// template-file.NAME with a 255-byte file name.
const (
	maxOptionValue = 64 << 10
	maxOptionName  = len(prefixTemplateFile) + 255
)

// bounded returns the options of raw that are within the bounds, and
// reports the others without quoting them: a 100 KiB value must neither
// reach the state file nor flood `docker volume create`'s output.
func (p *optionParser) bounded(raw map[string]string) map[string]string {
	out := make(map[string]string, len(raw))
	for _, k := range sortedKeys(raw) {
		v := raw[k]
		switch {
		case len(k) > maxOptionName:
			p.problems = append(p.problems, fmt.Errorf("option name %q is %d bytes long; no option name is longer than %d", shorten(k), len(k), maxOptionName))
		case len(v) > maxOptionValue:
			p.bad(k, "the value is %d bytes long; the limit is %d (64 KiB)", len(v), maxOptionValue)
		default:
			out[k] = v
		}
	}
	return out
}

func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }

// shorten cuts a user's input for an error message.
func shorten(s string) string { return secrets.Clip(s, 64) }

type optionParser struct {
	def      Defaults
	reg      *secrets.Registry
	problems []error
}

func (p *optionParser) bad(opt, format string, args ...any) {
	p.problems = append(p.problems, fmt.Errorf("option %q: %s", opt, fmt.Sprintf(format, args...)))
}

// inheritable are the volume-level options that the files of a multi-object
// volume take unless their spec says otherwise.
var inheritable = map[string]bool{
	secrets.OptBackend: true, secrets.OptRegion: true, secrets.OptVersionStage: true,
	optUID: true, optGID: true, optMode: true, optFormat: true,
}

// singleOnly are the options that make sense only for a single-object volume.
var singleOnly = []string{secrets.OptSecret, secrets.OptKey, secrets.OptVersionID, optFilename, optTemplate, optTemplateFile}

func (p *optionParser) parse(name string, raw map[string]string) Options {
	multi := map[string]string{}
	top := map[string]string{}
	for k, v := range raw {
		if strings.HasPrefix(k, prefixFile) || strings.HasPrefix(k, prefixTemplate) || strings.HasPrefix(k, prefixTemplateFile) {
			multi[k] = v
		} else {
			top[k] = v
		}
	}

	o := Options{Layout: LayoutFile}
	if v, ok := top[optLayout]; ok {
		if v != LayoutFile && v != LayoutDir {
			p.bad(optLayout, "%q is not a layout; use %q (the secret is the mount) or %q (a directory holding the secret as a file)", v, LayoutFile, LayoutDir)
		}
		o.Layout = v
		delete(top, optLayout)
	}
	if v, ok := top[optRefresh]; ok {
		d, err := parseRefresh(v)
		if err != nil {
			p.bad(optRefresh, "%v", err)
		}
		o.Refresh, o.RefreshSet = d, true
		delete(top, optRefresh)
	}
	if v, ok := top[optLeaseGrace]; ok {
		d, err := ParseLeaseGrace(v)
		if err != nil {
			p.bad(optLeaseGrace, "%v", err)
		}
		o.LeaseGrace, o.LeaseGraceSet = d, true
		delete(top, optLeaseGrace)
	}
	if v, ok := top[optNotify]; ok {
		spec, err := notify.Parse(v)
		switch {
		case err != nil:
			p.bad(optNotify, "%v", err)
		case spec.IsZero():
			p.bad(optNotify, "empty; give a signal name such as SIGHUP, or exec:COMMAND ARGS")
		}
		o.Notify, o.NotifySet = spec, true
		delete(top, optNotify)
	}
	if v, ok := top[optStaleIfError]; ok {
		d, err := ParseStaleIfError(v)
		if err != nil {
			p.bad(optStaleIfError, "%v", err)
		}
		o.StaleIfError, o.StaleIfErrorSet = d, true
		delete(top, optStaleIfError)
	}

	if len(multi) > 0 {
		o.Objects = p.parseMulti(top, multi)
		if o.Layout == LayoutFile {
			if _, given := raw[optLayout]; given {
				p.bad(optLayout, "a volume with file.NAME or template.NAME options is a directory; remove layout=file")
			}
			o.Layout = LayoutDir
		}
	} else {
		obj, layout := p.parseSingle(name, top, raw)
		o.Objects = []Object{obj}
		if layout != "" {
			o.Layout = layout
		}
	}
	if o.StaleIfErrorSet && o.StaleIfError > 0 {
		for _, r := range o.Refs() {
			if p.reg.IssuesAnew(r) {
				p.bad(optStaleIfError, "%s issues a new value at every read (a lease, method=write or wrap-ttl), which is never served stale; remove stale-if-error", r)
			}
		}
	}
	if o.Layout == LayoutFile && o.RefreshSet && o.Refresh > 0 {
		p.bad(optRefresh, "a layout=file volume is one file bind-mounted into the container, which cannot be replaced atomically; use layout=dir (the secret is then the file <target>/%s)", o.Objects[0].Name)
	}
	return o
}

// parseSingle reads a one-object volume. It returns the layout implied by
// its options ("" when none is).
func (p *optionParser) parseSingle(name string, top, raw map[string]string) (Object, string) {
	obj := Object{Format: FormatRaw, UID: defaultUID, GID: defaultGID, Mode: defaultMode}
	implied := ""
	_, layoutGiven := raw[optLayout]
	layout := raw[optLayout]

	rest := top
	tmplText, hasText := top[optTemplate]
	tmplFile, hasFile := top[optTemplateFile]
	switch {
	case hasText && hasFile:
		p.bad(optTemplate, "give either template or template-file, not both")
	case hasText || hasFile:
		for _, k := range []string{secrets.OptSecret, secrets.OptKey, secrets.OptVersionID} {
			if _, ok := top[k]; ok {
				p.bad(k, "does not apply to a template volume: the template names its secrets with {{ secret \"backend\" \"name\" \"key\" }}")
			}
		}
		rest = p.inherit(top)
		opt := optTemplate
		if hasFile {
			opt = optTemplateFile
		}
		obj.Template = p.parseTemplate(opt, name, tmplText, tmplFile, hasFile, rest)
		obj.Name = "config"
		if hasFile {
			obj.Name = defaultFilename(tmplFile)
		}
		own := map[string]string{}
		for k, v := range top {
			_, refOpt := rest[k]
			if k != optTemplate && k != optTemplateFile && (!refOpt || k == optUID || k == optGID || k == optMode || k == optFormat) {
				own[k] = v
			}
		}
		p.fileOptions(&obj, own, nil, "")
	default:
		ref, r, problems := secrets.ParseRef(name, top, p.def.Backend, p.reg)
		p.problems = append(p.problems, problems...)
		// A collection (an SSM path) without a key is one file per
		// object, as key=* is one file per key.
		collection := ref.Key == "" && p.reg.IsCollection(ref)
		if ref.Key == AllKeys || collection {
			ref.Key = ""
			obj.AllKeys = true
			switch {
			case !layoutGiven || layout != LayoutFile:
			case collection:
				p.bad(optLayout, "%q names a set of secrets, one file each, so the volume must be a directory; remove layout=file, or give key=NAME for one of them", shorten(ref.Name))
			default:
				p.bad(secrets.OptKey, "key=* writes one file per key, so the volume must be a directory; remove layout=file")
			}
			implied = LayoutDir
		}
		obj.Ref = ref
		obj.Name = defaultFilename(ref.Name)
		p.fileOptions(&obj, r, nil, "")
	}

	if v, ok := top[optFilename]; ok {
		if err := validateFilename(v); err != nil {
			p.bad(optFilename, "%v", err)
		}
		if layoutGiven && layout == LayoutFile {
			p.bad(optFilename, "only applies to layout=dir; remove it or set layout=dir")
		} else if implied == "" {
			// filename implies the directory layout: the user asked for a named file.
			implied = LayoutDir
		}
		if obj.AllKeys {
			p.bad(optFilename, "does not apply with key=*: each key is a file named after the key")
		}
		obj.Name = v
	}
	if obj.AllKeys && obj.Format != FormatRaw && obj.Format != FormatBase64 {
		p.bad(optFormat, "with key=* each file holds one value; use raw or base64")
	}
	return obj, implied
}

// parseMulti reads the file.NAME, template.NAME and template-file.NAME
// options of a directory volume.
func (p *optionParser) parseMulti(top, multi map[string]string) []Object {
	for _, k := range singleOnly {
		if _, ok := top[k]; ok {
			p.bad(k, "applies to single-secret volumes; with file.NAME options give it in each file's spec, e.g. -o file.db=secret=prod/db,%s=...", k)
			delete(top, k)
		}
	}
	inherit := p.inherit(top)
	names := make([]string, 0, len(multi))
	for k := range multi {
		names = append(names, k)
	}
	sort.Strings(names)
	var objs []Object
	seen := map[string]string{}
	for _, k := range names {
		v := multi[k]
		var fname string
		switch {
		case strings.HasPrefix(k, prefixTemplateFile):
			fname = strings.TrimPrefix(k, prefixTemplateFile)
		case strings.HasPrefix(k, prefixTemplate):
			fname = strings.TrimPrefix(k, prefixTemplate)
		default:
			fname = strings.TrimPrefix(k, prefixFile)
		}
		if err := validateFilename(fname); err != nil {
			p.bad(k, "the file name %v", err)
			continue
		}
		if other, dup := seen[fname]; dup {
			p.bad(k, "file %q is also defined by option %q", fname, other)
			continue
		}
		seen[fname] = k
		obj := Object{Name: fname, Format: FormatRaw, UID: defaultUID, GID: defaultGID, Mode: defaultMode}
		switch {
		case strings.HasPrefix(k, prefixTemplateFile):
			obj.Template = p.parseTemplate(k, fname, "", v, true, inherit)
			p.fileOptions(&obj, map[string]string{}, inherit, "")
		case strings.HasPrefix(k, prefixTemplate):
			obj.Template = p.parseTemplate(k, fname, v, "", false, inherit)
			p.fileOptions(&obj, map[string]string{}, inherit, "")
		default:
			spec, err := parseSpec(v)
			if err != nil {
				p.bad(k, "%v", err)
				continue
			}
			// The volume's backend options (region, version-stage, a
			// backend's own parameters) are defaults for the files of
			// that backend only: a file of another backend would get
			// options it does not take.
			volBackend := p.def.Backend
			if b, ok := inherit[secrets.OptBackend]; ok {
				volBackend = b
			}
			fileBackend := volBackend
			if b, ok := spec[secrets.OptBackend]; ok {
				fileBackend = b
			}
			merged := map[string]string{}
			for ik, iv := range inherit {
				if fileBackend != volBackend && p.backendSpecific(ik) {
					continue
				}
				merged[ik] = iv
			}
			for sk, sv := range spec {
				merged[sk] = sv
			}
			ref, rest, problems := secrets.ParseRef(fname, merged, p.def.Backend, p.reg)
			for _, pr := range problems {
				p.problems = append(p.problems, fmt.Errorf("option %q: %w", k, pr))
			}
			if ref.Key == AllKeys || (ref.Key == "" && p.reg.IsCollection(ref)) {
				ref.Key = ""
				obj.AllKeys = true
			}
			obj.Ref = ref
			p.fileOptions(&obj, rest, nil, k)
			if obj.AllKeys && obj.Format != FormatRaw && obj.Format != FormatBase64 {
				p.bad(k, "with key=* each file holds one value; use format=raw or base64")
			}
		}
		objs = append(objs, obj)
	}
	return objs
}

// inherit picks the volume-level options that every file of a multi-object
// volume (and every secret of a template) takes by default: the
// inheritable ones and the backends' own parameters.
func (p *optionParser) inherit(top map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range top {
		if inheritable[k] || p.isParam(k) {
			out[k] = v
		}
	}
	return out
}

// backendSpecific reports whether a volume-level option addresses secrets
// of one backend.
func (p *optionParser) backendSpecific(k string) bool {
	return k == secrets.OptRegion || k == secrets.OptVersionStage || p.isParam(k)
}

func (p *optionParser) isParam(k string) bool {
	for _, name := range p.reg.Names() {
		b, _ := p.reg.Get(name)
		if pd, ok := b.(secrets.ParamsDriver); ok {
			for _, prm := range pd.Params() {
				if prm == k || (strings.HasSuffix(prm, ".") && strings.HasPrefix(k, prm)) {
					return true
				}
			}
		}
	}
	return false
}

// fileOptions applies uid, gid, mode and format from opts (falling back to
// inherited ones) and reports any other option as unknown. within names the
// file.NAME option the options came from, "" at the volume level.
func (p *optionParser) fileOptions(obj *Object, opts, inherited map[string]string, within string) {
	bad := func(opt, format string, args ...any) {
		if within == "" {
			p.bad(opt, format, args...)
			return
		}
		p.problems = append(p.problems, fmt.Errorf("option %q: option %q: %s", within, opt, fmt.Sprintf(format, args...)))
	}
	merged := map[string]string{}
	for k, v := range inherited {
		if k == optUID || k == optGID || k == optMode || k == optFormat {
			merged[k] = v
		}
	}
	for k, v := range opts {
		merged[k] = v
	}
	var unknown []string
	for k, v := range merged {
		switch k {
		case optUID, optGID:
			n, err := strconv.ParseUint(v, 10, 31)
			if err != nil {
				bad(k, "%q is not a numeric id between 0 and 2147483647", v)
				continue
			}
			if k == optUID {
				obj.UID = int(n)
			} else {
				obj.GID = int(n)
			}
		case optMode:
			m, err := parseMode(v)
			if err != nil {
				bad(k, "%v", err)
				continue
			}
			obj.Mode = m
		case optFormat:
			switch v {
			case FormatRaw, FormatJSON, FormatDotenv, FormatBase64:
				obj.Format = v
			default:
				bad(k, "%q is not a format; use raw, json, dotenv or base64", v)
			}
			if obj.Template != nil && v != FormatRaw {
				bad(k, "a template's output is written as rendered; remove format")
			}
		case optFilename, optTemplate, optTemplateFile:
			// handled by the caller
		default:
			if within == "" && (k == optLayout || k == optRefresh || k == optLeaseGrace || k == optNotify || k == optStaleIfError) {
				continue
			}
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		if within == "" {
			p.problems = append(p.problems, fmt.Errorf("unknown option %q; known options are: %s", k, strings.Join(knownOptions(p.reg, obj.Ref.Backend), ", ")))
		} else {
			p.problems = append(p.problems, fmt.Errorf("option %q: unknown option %q in the spec; a spec takes: %s", within, k, strings.Join(specOptions(p.reg, obj.Ref.Backend), ", ")))
		}
	}
}

// knownOptions lists every option a volume of this backend accepts.
func knownOptions(reg *secrets.Registry, backend string) []string {
	return append(append(append([]string{}, secrets.RefOptions...), fileOptions...), backendParams(reg, backend)...)
}

// specOptions lists what a file.NAME spec accepts.
func specOptions(reg *secrets.Registry, backend string) []string {
	return append(append(append([]string{}, secrets.RefOptions...), optUID, optGID, optMode, optFormat), backendParams(reg, backend)...)
}

func backendParams(reg *secrets.Registry, backend string) []string {
	var out []string
	if b, ok := reg.Get(backend); ok {
		if pd, ok := b.(secrets.ParamsDriver); ok {
			for _, p := range pd.Params() {
				if strings.HasSuffix(p, ".") {
					p += "NAME"
				}
				out = append(out, p)
			}
		}
	}
	return out
}

// parseSpec reads a file.NAME value: either a bare secret name, or
// comma-separated key=value pairs ("\," is a literal comma).
func parseSpec(v string) (map[string]string, error) {
	if v == "" {
		return nil, errors.New("empty spec; give a secret name or key=value pairs such as secret=prod/db,key=password")
	}
	var parts []string
	var cur strings.Builder
	for i := 0; i < len(v); i++ {
		switch {
		case v[i] == '\\' && i+1 < len(v) && v[i+1] == ',':
			cur.WriteByte(',')
			i++
		case v[i] == ',':
			parts = append(parts, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(v[i])
		}
	}
	parts = append(parts, cur.String())
	if len(parts) == 1 && !strings.Contains(parts[0], "=") {
		return map[string]string{secrets.OptSecret: parts[0]}, nil
	}
	out := map[string]string{}
	for _, part := range parts {
		k, val, ok := strings.Cut(part, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("%q is not key=value; write e.g. secret=prod/db,key=password", part)
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("%q is given twice", k)
		}
		out[k] = val
	}
	return out, nil
}

// parseRefresh reads a refresh interval: a Go duration, 0 for never, at
// least one second otherwise.
func parseRefresh(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%q is not a duration; use a Go duration such as 30s or 5m, or 0 to read once at mount", v)
	}
	if d > 0 && d < time.Second {
		return 0, fmt.Errorf("%q is shorter than the minimum of 1s", v)
	}
	return d, nil
}

// MaxLeaseGrace bounds the lease-grace option and the LEASE_GRACE setting.
const MaxLeaseGrace = 24 * time.Hour

// ParseLeaseGrace reads a lease grace period: a Go duration from 0 (revoke
// a replaced lease at once) to MaxLeaseGrace.
func ParseLeaseGrace(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%q is not a duration; use a Go duration such as 5m, or 0 to revoke a replaced lease at once", v)
	}
	if d > MaxLeaseGrace {
		return 0, fmt.Errorf("%q is longer than the maximum of %s", v, MaxLeaseGrace)
	}
	return d, nil
}

// MaxStaleIfError bounds the stale-if-error option and the STALE_IF_ERROR
// setting: a value older than a week is no longer the app's secret.
const MaxStaleIfError = 7 * 24 * time.Hour

// ParseStaleIfError reads how long a last good value may be served through
// an outage: a Go duration from 0 (never) to MaxStaleIfError.
func ParseStaleIfError(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%q is not a duration; use a Go duration such as 1h, or 0 to fail a mount when the store is unavailable", v)
	}
	if d > MaxStaleIfError {
		return 0, fmt.Errorf("%q is longer than the maximum of %s", v, MaxStaleIfError)
	}
	return d, nil
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
	const rule = "use 2 to 255 characters of [a-zA-Z0-9_.-], starting with a letter or digit"
	switch {
	case len(name) > 255:
		return fmt.Errorf("volume name %q is invalid: it is %d bytes long; %s", shorten(name), len(name), rule)
	case !volumeNameRE.MatchString(name):
		return fmt.Errorf("volume name %q is invalid: %s", shorten(name), rule)
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
	case strings.IndexFunc(v, unicode.IsControl) >= 0:
		return fmt.Errorf("%q holds a control character (a line break, an escape, NUL); file names must not", v)
	case strings.Contains(v, "/"):
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
