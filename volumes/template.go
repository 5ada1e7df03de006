package volumes

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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
	f, err := root.Open(name)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("template file %q does not exist in the templates folder", name)
		}
		return "", fmt.Errorf("template file %q: %w", name, errors.Unwrap(err))
	}
	defer f.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(f); err != nil {
		return "", fmt.Errorf("template file %q: %w", name, err)
	}
	if buf.Len() > 64<<10 {
		return "", fmt.Errorf("template file %q is larger than 64 KiB", name)
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

// parseTemplate reads and checks a template at create time.
func (p *optionParser) parseTemplate(name, text, file string, isFile bool, inherit map[string]string) *Template {
	t := &Template{Name: name, Text: text, Defaults: inherit}
	opt := optTemplate
	if isFile {
		opt = optTemplateFile
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
// anything is fetched.
func compileTemplate(name, text, defBackend string, inherit map[string]string, reg *secrets.Registry) ([]TemplateRef, []error) {
	if strings.TrimSpace(text) == "" {
		return nil, []error{fmt.Errorf("template %q is empty", name)}
	}
	tmpl, err := template.New(name).Option("missingkey=error").
		Funcs(templateFuncs(func(...string) (string, error) { return "", nil })).Parse(text)
	if err != nil {
		return nil, []error{err} // "template: NAME:LINE: ..." names the template and line
	}
	var refs []TemplateRef
	var problems []error
	seen := map[string]bool{}
	walkCommands(tmpl.Tree.Root, func(cmd *parse.CommandNode) {
		id, ok := cmd.Args[0].(*parse.IdentifierNode)
		if !ok || id.Ident != "secret" {
			return
		}
		loc, _ := tmpl.Tree.ErrorContext(cmd)
		ctx := loc
		line := lineOf(tmpl.Tree, cmd)
		args := make([]string, 0, len(cmd.Args)-1)
		for _, a := range cmd.Args[1:] {
			sn, ok := a.(*parse.StringNode)
			if !ok {
				problems = append(problems, fmt.Errorf("template: %s: secret takes quoted strings: backend, name and an optional key, as in {{ secret \"aws\" \"prod/db\" \"password\" }}", ctx))
				return
			}
			args = append(args, sn.Text)
		}
		if len(args) < 2 || len(args) > 3 {
			problems = append(problems, fmt.Errorf("template: %s: secret takes 2 or 3 arguments: backend, name and an optional key", ctx))
			return
		}
		raw := map[string]string{}
		for k, v := range inherit {
			raw[k] = v
		}
		raw[secrets.OptBackend] = args[0]
		raw[secrets.OptSecret] = args[1]
		for _, k := range []string{optUID, optGID, optMode, optFormat} {
			delete(raw, k)
		}
		ref, _, errs := secrets.ParseRef(args[1], raw, defBackend, reg)
		for _, e := range errs {
			problems = append(problems, fmt.Errorf("template: %s: %w", ctx, e))
		}
		if len(errs) > 0 || seen[ref.CacheKey()] {
			return
		}
		seen[ref.CacheKey()] = true
		refs = append(refs, TemplateRef{Ref: ref, Line: line})
	})
	if len(refs) == 0 && len(problems) == 0 {
		problems = append(problems, fmt.Errorf("template %q reads no secret; call {{ secret \"backend\" \"name\" \"key\" }}", name))
	}
	return refs, problems
}

// renderTemplate executes a template with fetched whole values, keyed by
// Ref.CacheKey. Errors name the template and line; values never appear in
// them because the engine reports the action, not its result.
func renderTemplate(t *Template, text string, values map[string]secrets.Secret) ([]byte, error) {
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
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, nil); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// walkCommands calls fn for every command in the tree, nested ones included.
func walkCommands(n parse.Node, fn func(*parse.CommandNode)) {
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return
		}
		for _, c := range n.Nodes {
			walkCommands(c, fn)
		}
	case *parse.ActionNode:
		walkCommands(n.Pipe, fn)
	case *parse.PipeNode:
		if n == nil {
			return
		}
		for _, c := range n.Cmds {
			walkCommands(c, fn)
		}
	case *parse.CommandNode:
		fn(n)
		for _, a := range n.Args {
			walkCommands(a, fn)
		}
	case *parse.IfNode:
		walkBranch(&n.BranchNode, fn)
	case *parse.RangeNode:
		walkBranch(&n.BranchNode, fn)
	case *parse.WithNode:
		walkBranch(&n.BranchNode, fn)
	case *parse.TemplateNode:
		walkCommands(n.Pipe, fn)
	}
}

func walkBranch(b *parse.BranchNode, fn func(*parse.CommandNode)) {
	walkCommands(b.Pipe, fn)
	walkCommands(b.List, fn)
	walkCommands(b.ElseList, fn)
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
