// Package allowlist is the plugin's ALLOW setting: which objects of which
// backend volumes and Swarm secrets may read. It is a guard-rail that narrows
// what a volume's creator can reach with the plugin's credentials, not a
// boundary against someone who can call the Docker API.
//
// A spec is a list of BACKEND:PATTERN entries separated by commas and/or
// whitespace:
//
//	aws:prod/app/*, vault:secret/app/**, vault:database/creds/app, file:*
//
// PATTERN is a glob over the object's name as the user wrote it (the secret
// option): '*' matches any run of characters except '/', '**' any run
// including '/', '?' one character except '/'; everything else is literal.
// An empty spec allows every object.
package allowlist

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/dsv-plugin/dsv/secrets"
)

// Setting is the plugin setting that holds the spec, for messages.
const Setting = "ALLOW"

// ErrNotAllowed is the cause of every refusal; its class is
// secrets.ErrAccessDenied.
var ErrNotAllowed = errors.New("not allowed by the plugin's " + Setting + " setting")

// List is a parsed ALLOW setting. A nil or empty List allows every object.
// It is read-only after Parse and safe for concurrent use.
type List struct {
	// patterns holds, per backend, the patterns as written and compiled,
	// in the order of the spec.
	patterns map[string][]pattern
	n        int
}

type pattern struct {
	text string
	re   *regexp.Regexp
}

// Parse reads a spec. backends are the registry's backend names; an entry
// naming another backend, an entry without a colon or with an empty pattern
// is refused. Every bad entry is reported at once, by its text.
func Parse(spec string, backends []string) (*List, error) {
	l := &List{patterns: map[string][]pattern{}}
	var problems []string
	entries := strings.FieldsFunc(spec, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
	for _, e := range entries {
		backend, pat, ok := strings.Cut(e, ":")
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("entry %q: no BACKEND: before the pattern", e))
		case !slices.Contains(backends, backend):
			problems = append(problems, fmt.Sprintf("entry %q: unknown backend %q; use one of: %s", e, backend, strings.Join(backends, ", ")))
		case pat == "":
			problems = append(problems, fmt.Sprintf("entry %q: empty pattern (%s:** allows every object of the backend)", e, backend))
		case !utf8.ValidString(pat):
			problems = append(problems, fmt.Sprintf("entry %q: not valid UTF-8", e))
		default:
			if slices.ContainsFunc(l.patterns[backend], func(p pattern) bool { return p.text == pat }) {
				continue
			}
			re, err := compile(pat)
			if err != nil {
				problems = append(problems, fmt.Sprintf("entry %q: %v", e, err))
				continue
			}
			l.patterns[backend] = append(l.patterns[backend], pattern{text: pat, re: re})
			l.n++
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%s: %s; write BACKEND:PATTERN entries separated by commas or spaces, such as vault:secret/app/**", Setting, strings.Join(problems, "; "))
	}
	return l, nil
}

// compile turns a glob into an anchored regular expression: '**' is any
// run, '*' any run without '/', '?' one character other than '/', and
// every other character stands for itself.
func compile(glob string) (*regexp.Regexp, error) {
	var b strings.Builder
	// (?s): '.' also matches a newline; names are matched as written.
	b.WriteString(`(?s)^`)
	lit := 0 // start of the pending literal run
	for i := 0; i < len(glob); i++ {
		var re string
		switch {
		case glob[i] == '*' && i+1 < len(glob) && glob[i+1] == '*':
			re = `.*`
		case glob[i] == '*':
			re = `[^/]*`
		case glob[i] == '?':
			re = `[^/]`
		default:
			continue
		}
		b.WriteString(regexp.QuoteMeta(glob[lit:i]))
		b.WriteString(re)
		if re == `.*` {
			i++
		}
		lit = i + 1
	}
	b.WriteString(regexp.QuoteMeta(glob[lit:]))
	b.WriteString(`$`)
	return regexp.Compile(b.String())
}

// Len is the number of patterns in force; 0 means every object is allowed.
func (l *List) Len() int {
	if l == nil {
		return 0
	}
	return l.n
}

// Check reports whether ref's object may be read: nil when allowed, else a
// *secrets.Error of class secrets.ErrAccessDenied, caused by ErrNotAllowed,
// that names the backend and object and lists the backend's patterns.
func (l *List) Check(ref secrets.Ref) error {
	if l.Len() == 0 {
		return nil
	}
	pats := l.patterns[ref.Backend]
	arn := strings.HasPrefix(ref.Name, "arn:")
	for _, p := range pats {
		// An ARN names account and region: only a pattern that is an ARN
		// too may match it ('*' also matches ':'), or ** (everything).
		if arn != strings.HasPrefix(p.text, "arn:") && p.text != "**" {
			continue
		}
		if p.re.MatchString(ref.Name) {
			return nil
		}
	}
	// The decision is about the object, whatever key is read from it.
	obj := secrets.Ref{Backend: ref.Backend, Name: ref.Name}
	if len(pats) == 0 {
		return secrets.Fail(obj, secrets.ErrAccessDenied, fmt.Sprintf("%s has no pattern for the %s backend", Setting, ref.Backend), ErrNotAllowed)
	}
	texts := make([]string, len(pats))
	for i, p := range pats {
		texts[i] = p.text
	}
	return secrets.Fail(obj, secrets.ErrAccessDenied, fmt.Sprintf("allowed for %s: %s", ref.Backend, strings.Join(texts, ", ")), ErrNotAllowed)
}

// CheckAllRead is CheckAll before a read: an object of a backend where it
// has several names (secrets.Canonicalizer) must also be allowed under the
// name it is known by, so that secret/data/db cannot pass for a pattern
// written for secret/*/db.
func (l *List) CheckAllRead(ctx context.Context, reg *secrets.Registry, refs []secrets.Ref) error {
	if err := l.CheckAll(refs); err != nil || l.Len() == 0 {
		return err
	}
	return eachObject(refs, func(r secrets.Ref) error {
		b, ok := reg.Get(r.Backend)
		c, canon := b.(secrets.Canonicalizer)
		if !ok || !canon {
			return nil
		}
		name, err := c.Canonical(ctx, r)
		if err != nil || name == r.Name {
			return err
		}
		if err := l.Check(secrets.Ref{Backend: r.Backend, Name: name}); err != nil {
			return fmt.Errorf("%q is the object %q: %w", r.Name, name, err)
		}
		return nil
	})
}

// CheckAll checks every ref and reports every refused object once, in the
// order given; nil when all are allowed.
func (l *List) CheckAll(refs []secrets.Ref) error {
	if l.Len() == 0 {
		return nil
	}
	return eachObject(refs, l.Check)
}

// eachObject runs check once per object (backend and name) of refs, in
// order, and lists every refusal.
func eachObject(refs []secrets.Ref, check func(secrets.Ref) error) error {
	var errs []error
	seen := map[[2]string]bool{}
	for _, r := range refs {
		k := [2]string{r.Backend, r.Name}
		if seen[k] {
			continue
		}
		seen[k] = true
		if err := check(r); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return refusals(errs)
}

// refusals lists every refused object on one line.
type refusals []error

func (e refusals) Error() string {
	msgs := make([]string, len(e))
	for i, err := range e {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "; ")
}

// Unwrap exposes each refusal to errors.Is and errors.As.
func (e refusals) Unwrap() []error { return e }
