package render

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"text/template/parse"

	"github.com/dsv-plugin/dsv/secrets"
)

// Template is a file rendered with Go's text/template from several secrets,
// read with {{ secret "backend" "name" "key" }}. Its text is configuration,
// not a secret, so it may be persisted; a template file is re-read (and
// re-checked) at every render.
type Template struct {
	// Name is what errors call the template: the file it renders.
	Name string `json:"name"`
	// Text is an inline template; empty when File is set.
	Text string `json:"text,omitempty"`
	// File names a template in the plugin's templates mount.
	File string `json:"file,omitempty"`
	// Refs are the secrets the template reads, found at parse time.
	Refs []TemplateRef `json:"refs"`
	// Defaults are the volume options its secrets inherit (region,
	// backend parameters), kept to re-read a template file at render.
	Defaults map[string]string `json:"defaults,omitempty"`
}

// TemplateRef is one secret a template reads, and where.
type TemplateRef struct {
	Ref  secrets.Ref `json:"ref"`
	Line int         `json:"line"`
}

// TemplateSource reads named templates: the plugin's templates mount.
type TemplateSource interface {
	ReadTemplate(name string) (string, error)
}

// maxTemplateSize bounds a template file.
const maxTemplateSize = 64 << 10

// DirTemplates reads templates below a folder; os.Root keeps reads inside.
type DirTemplates string

// ReadTemplate implements TemplateSource.
func (d DirTemplates) ReadTemplate(name string) (string, error) {
	if name == "" || name == "." || !filepath.IsLocal(name) || filepath.Clean(name) != name {
		return "", fmt.Errorf("template file %q must be a clean relative path inside the templates folder", name)
	}
	root, err := os.OpenRoot(string(d))
	if err != nil {
		return "", fmt.Errorf("template file %q: the templates folder is not available; set it with: docker plugin set dsv templates.source=/path/on/host", name)
	}
	defer root.Close()
	// O_NONBLOCK: a FIFO planted in the folder must not hang docker volume
	// create and the volume's lock; it is refused below, as the file
	// backend refuses one.
	f, err := root.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("template file %q does not exist in the templates folder", name)
		}
		return "", fmt.Errorf("template file %q: %w", name, errors.Unwrap(err))
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("template file %q: %w", name, err)
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("template file %q is not a regular file", name)
	}
	// Read at most one byte past the limit: a huge file is refused, not
	// read whole first.
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(io.LimitReader(f, maxTemplateSize+1)); err != nil {
		return "", fmt.Errorf("template file %q: %w", name, err)
	}
	if buf.Len() > maxTemplateSize {
		return "", fmt.Errorf("template file %q is larger than %d KiB", name, maxTemplateSize>>10)
	}
	return buf.String(), nil
}

// templateFuncs are the functions templates can call besides the builtins.
// secret is replaced at render time; at parse time it is a placeholder.
func templateFuncs(secret func(args ...string) (string, error)) template.FuncMap {
	return template.FuncMap{
		"secret": secret,
		"b64enc": func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) },
		"b64dec": func(s string) (string, error) {
			b, err := decodeBase64([]byte(s))
			return string(b), err
		},
		"toJSON": func(v any) (string, error) {
			b, err := json.Marshal(v)
			return string(b), err
		},
		"dotenvQuote": func(s string) string { return dotenvQuote(s) },
		"trim":        strings.TrimSpace,
		"lower":       strings.ToLower,
		"upper":       strings.ToUpper,
	}
}

// parseTemplate reads and checks a template at create time. opt is the
// option that gives it, for errors.
func (p *optionParser) parseTemplate(opt, name, text, file string, isFile bool, inherit map[string]string) *Template {
	t := &Template{Name: name, Text: text, Defaults: inherit}
	if isFile {
		t.File = file
		if p.def.Templates == nil {
			p.bad(opt, "this plugin has no templates folder")
			return t
		}
		var err error
		if text, err = p.def.Templates.ReadTemplate(file); err != nil {
			p.bad(opt, "%v", err)
			return t
		}
	}
	refs, problems := compileTemplate(name, text, p.def.Backend, inherit, p.reg)
	for _, pr := range problems {
		p.problems = append(p.problems, fmt.Errorf("option %q: %w", opt, pr))
	}
	t.Refs = refs
	return t
}

// compileTemplate parses text and finds its secret calls, which must have
// constant arguments so that every secret is known (and validated) before
// anything is fetched. It also refuses what can only fail at mount: data
// fields (a template has no data), calls of undefined templates, range
// (there is nothing to iterate over), secret used as a value or given a
// piped value (which could put a secret in an error). The calls in
// {{ define }} blocks count as much as the others.
func compileTemplate(name, text, defBackend string, inherit map[string]string, reg *secrets.Registry) ([]TemplateRef, []error) {
	if strings.TrimSpace(text) == "" {
		return nil, []error{fmt.Errorf("template %q is empty", name)}
	}
	tmpl, err := template.New(name).Option("missingkey=error").
		Funcs(templateFuncs(func(...string) (string, error) { return "", nil })).Parse(text)
	if err != nil {
		return nil, []error{err} // "template: NAME:LINE: ..." names the template and line
	}
	c := &templateChecker{root: tmpl, defBackend: defBackend, inherit: inherit, reg: reg, seen: map[string]bool{}}
	// The template itself first, then what it defines, by name, so that
	// refs and problems come in a stable order.
	trees := []*parse.Tree{tmpl.Tree}
	var defined []*template.Template
	for _, t := range tmpl.Templates() {
		if t != tmpl && t.Tree != nil {
			defined = append(defined, t)
		}
	}
	sort.Slice(defined, func(i, j int) bool { return defined[i].Name() < defined[j].Name() })
	for _, t := range defined {
		trees = append(trees, t.Tree)
	}
	for _, tree := range trees {
		if tree != nil && tree.Root != nil {
			c.tree = tree
			c.walk(tree.Root)
		}
	}
	if len(c.refs) == 0 && len(c.problems) == 0 {
		c.problems = append(c.problems, fmt.Errorf("template %q reads no secret; call {{ secret \"backend\" \"name\" \"key\" }}", name))
	}
	return c.refs, c.problems
}

// templateChecker walks the parse trees of one template.
type templateChecker struct {
	root       *template.Template
	tree       *parse.Tree // the tree being walked, for locations
	defBackend string
	inherit    map[string]string
	reg        *secrets.Registry
	seen       map[string]bool
	refs       []TemplateRef
	problems   []error
}

func (c *templateChecker) bad(n parse.Node, format string, args ...any) {
	loc, _ := c.tree.ErrorContext(n)
	c.problems = append(c.problems, fmt.Errorf("template: %s: %s", loc, fmt.Sprintf(format, args...)))
}

// walk visits every node below n.
func (c *templateChecker) walk(n parse.Node) {
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return
		}
		for _, x := range n.Nodes {
			c.walk(x)
		}
	case *parse.ActionNode:
		c.walk(n.Pipe)
	case *parse.PipeNode:
		if n == nil {
			return
		}
		for i, x := range n.Cmds {
			// A piped value becomes the last argument: a key that is
			// another secret's value, which an error would then quote.
			if id, ok := x.Args[0].(*parse.IdentifierNode); ok && id.Ident == "secret" && i > 0 {
				c.bad(x, "secret cannot take a piped value; give backend, name and key as quoted strings, as in {{ secret \"aws\" \"prod/db\" \"password\" }}")
				continue
			}
			c.walk(x)
		}
	case *parse.CommandNode:
		args := n.Args
		if id, ok := args[0].(*parse.IdentifierNode); ok && id.Ident == "secret" {
			c.secretCall(n)
			args = args[1:]
		}
		for _, x := range args {
			c.walk(x)
		}
	case *parse.IdentifierNode:
		if n.Ident == "secret" {
			c.bad(n, "secret must be called with its arguments, as in {{ secret \"aws\" \"prod/db\" \"password\" }}, not passed as a value")
		}
	case *parse.FieldNode:
		c.bad(n, "%s: templates have no data; read secrets with {{ secret \"backend\" \"name\" \"key\" }}", n)
	case *parse.ChainNode:
		c.walk(n.Node)
		c.bad(n, "%s: a secret is a string, which has no fields; read one key with {{ secret \"backend\" \"name\" \"key\" }}", n)
	case *parse.VariableNode:
		if len(n.Ident) > 1 {
			c.bad(n, "%s: variables hold strings, which have no fields; read one key with {{ secret \"backend\" \"name\" \"key\" }}", n)
		}
	case *parse.TemplateNode:
		if c.root.Lookup(n.Name) == nil {
			c.bad(n, "template %q is not defined; define it in the same text with {{ define %q }}...{{ end }}", n.Name, n.Name)
		}
		c.walk(n.Pipe)
	case *parse.IfNode:
		c.walkBranch(&n.BranchNode)
	case *parse.WithNode:
		c.walkBranch(&n.BranchNode)
	case *parse.RangeNode:
		c.bad(n, "range: a dsv template has nothing to iterate over (secrets are strings); read each key with {{ secret \"backend\" \"name\" \"key\" }}")
		c.walkBranch(&n.BranchNode)
	}
}

func (c *templateChecker) walkBranch(b *parse.BranchNode) {
	c.walk(b.Pipe)
	c.walk(b.List)
	c.walk(b.ElseList)
}

// secretCall checks one {{ secret "backend" "name" "key" }} and records
// the secret it reads.
func (c *templateChecker) secretCall(cmd *parse.CommandNode) {
	args := make([]string, 0, len(cmd.Args)-1)
	for _, a := range cmd.Args[1:] {
		sn, ok := a.(*parse.StringNode)
		if !ok {
			c.bad(cmd, "secret takes quoted strings: backend, name and an optional key, as in {{ secret \"aws\" \"prod/db\" \"password\" }}")
			return
		}
		args = append(args, sn.Text)
	}
	if len(args) < 2 || len(args) > 3 {
		c.bad(cmd, "secret takes 2 or 3 arguments: backend, name and an optional key")
		return
	}
	raw := map[string]string{}
	for k, v := range c.inherit {
		raw[k] = v
	}
	raw[secrets.OptBackend] = args[0]
	raw[secrets.OptSecret] = args[1]
	for _, k := range []string{optUID, optGID, optMode, optFormat} {
		delete(raw, k)
	}
	ref, _, errs := secrets.ParseRef(args[1], raw, c.defBackend, c.reg)
	loc, _ := c.tree.ErrorContext(cmd)
	for _, e := range errs {
		c.problems = append(c.problems, fmt.Errorf("template: %s: %w", loc, e))
	}
	if len(errs) > 0 || c.seen[ref.CacheKey()] {
		return
	}
	c.seen[ref.CacheKey()] = true
	c.refs = append(c.refs, TemplateRef{Ref: ref, Line: lineOf(c.tree, cmd)})
}

// renderTemplate executes a template with fetched whole values, keyed by
// Ref.CacheKey, into at most limit bytes: a volume's tmpfs size, so that a
// template that writes a secret in a loop of its own defines cannot take the
// plugin's memory. Errors name the template and line; values never appear
// in them because the engine reports the action, not its result.
func renderTemplate(t *Template, text string, values map[string]secrets.Secret, limit int64) ([]byte, error) {
	lookup := func(args ...string) (string, error) {
		if len(args) < 2 || len(args) > 3 {
			return "", errors.New("secret takes 2 or 3 arguments")
		}
		for _, r := range t.Refs {
			if r.Ref.Backend != args[0] || r.Ref.Name != args[1] {
				continue
			}
			sec, ok := values[r.Ref.CacheKey()]
			if !ok {
				return "", fmt.Errorf("%s was not fetched", r.Ref)
			}
			if len(args) == 2 {
				return string(sec.Value), nil
			}
			ref := r.Ref
			ref.Key = args[2]
			v, err := secrets.ExtractKey(ref, sec.Value)
			return string(v), err
		}
		return "", fmt.Errorf("%s secret %q is not one the template declared", args[0], args[1])
	}
	tmpl, err := template.New(t.Name).Option("missingkey=error").Funcs(templateFuncs(lookup)).Parse(text)
	if err != nil {
		return nil, err
	}
	w := &cappedBuffer{max: int(limit)}
	if err := tmpl.Execute(w, nil); err != nil {
		if errors.Is(err, errTooLarge) {
			return nil, fmt.Errorf("template %q renders more than %d KiB, more than a volume holds", t.Name, limit>>10)
		}
		return nil, err
	}
	return w.buf.Bytes(), nil
}

var errTooLarge = errors.New("rendered output too large")

// cappedBuffer is a bytes.Buffer that refuses to grow beyond max.
type cappedBuffer struct {
	buf bytes.Buffer
	max int
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if b.buf.Len()+len(p) > b.max {
		return 0, errTooLarge
	}
	return b.buf.Write(p)
}

// lineOf reads the line from the engine's "name:line:col" location.
func lineOf(tree *parse.Tree, n parse.Node) int {
	loc, _ := tree.ErrorContext(n)
	parts := strings.Split(loc, ":")
	if len(parts) < 3 {
		return 0
	}
	line, err := strconv.Atoi(parts[len(parts)-2])
	if err != nil {
		return 0
	}
	return line
}
