package secretprovider

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/dsv-plugin/dsv/secrets"
)

// LabelPrefix starts every label dsv reads, on secrets and on services.
const LabelPrefix = "dsv."

// Labels beyond the reference options of secrets.ParseRef.
const (
	// OptFormat is dsv.format: how the value becomes the secret file's
	// content, with the volumes' formats.
	OptFormat = "format"
	// OptIdentity is dsv.identity. On a service it chooses the backend
	// identity its secrets are read with; on a secret it restricts the
	// secret to services of that identity. Backends that accept it declare
	// it as a ParamsDriver param.
	OptIdentity = "identity"
	// FormatRaw writes the value as stored.
	FormatRaw = "raw"
)

// notForSwarm are volume options that have no meaning for a Swarm secret,
// with what to do instead.
var notForSwarm = map[string]string{
	"uid":            "Swarm sets the file's owner itself: docker service create --secret source=NAME,target=FILE,uid=1000,gid=1000,mode=0400",
	"gid":            "Swarm sets the file's group itself: docker service create --secret source=NAME,target=FILE,uid=1000,gid=1000,mode=0400",
	"mode":           "Swarm sets the file's mode itself: docker service create --secret source=NAME,target=FILE,uid=1000,gid=1000,mode=0400",
	"layout":         "a Swarm secret is one file; its path is the --secret target",
	"filename":       "a Swarm secret is one file; its path is the --secret target",
	"refresh":        "Swarm reads a secret once per task; rotate with a new secret and docker service update --secret-rm OLD --secret-add NEW, or use a dsv volume with refresh",
	"template":       "a Swarm secret holds one value; use a dsv volume for templates",
	"notify":         "Swarm reads a secret once per task and never changes it; use a dsv volume with refresh and notify",
	"stale-if-error": "Swarm reads a secret once per task; use a dsv volume with stale-if-error",
	"template-file":  "a Swarm secret holds one value; use a dsv volume for templates",
}

// notForSwarmPrefixes are the many-file volume options.
var notForSwarmPrefixes = []string{"file.", "template.", "template-file."}

// request is a parsed GetSecret call.
type request struct {
	ref    secrets.Ref
	format string
	// scoped: the value was read for this service (its identity, or a
	// secret restricted to one). It must not be reused for other tasks.
	scoped bool
}

// identity is the backend identity a service reads with, and where it came
// from, for errors.
type identity struct {
	name   string
	source string // `service label "dsv.identity"`, `the service name (SWARM_IDENTITY_FROM_SERVICE_NAME)`
}

// parse reads a secret's labels and its service's labels into a request.
// It reports every problem at once.
func (p *Provider) parse(secretName string, secretLabels map[string]string, serviceName string, serviceLabels map[string]string) (request, error) {
	var problems []error
	raw := map[string]string{}
	for k, v := range secretLabels {
		if name, ok := strings.CutPrefix(k, LabelPrefix); ok {
			raw[name] = v
		}
	}

	req := request{format: FormatRaw}
	for _, k := range sortedKeys(raw) {
		if hint, ok := notForSwarm[k]; ok {
			problems = append(problems, fmt.Errorf("label %q: not for Swarm secrets: %s", LabelPrefix+k, hint))
			delete(raw, k)
			continue
		}
		for _, pre := range notForSwarmPrefixes {
			if strings.HasPrefix(k, pre) {
				problems = append(problems, fmt.Errorf("label %q: not for Swarm secrets: a Swarm secret holds one value; use a dsv volume for many files", LabelPrefix+k))
				delete(raw, k)
				break
			}
		}
	}
	if v, ok := raw[OptFormat]; ok {
		delete(raw, OptFormat)
		if !p.knownFormat(v) {
			problems = append(problems, fmt.Errorf("label %q: unknown format %q; use one of: %s", LabelPrefix+OptFormat, v, strings.Join(p.formats(), ", ")))
		}
		req.format = v
	}
	if raw[secrets.OptKey] == "*" {
		problems = append(problems, fmt.Errorf("label %q: \"*\" writes one file per key, but a Swarm secret is one file; name one key, or use a dsv volume", LabelPrefix+secrets.OptKey))
		delete(raw, secrets.OptKey)
	}

	// The identity: the service chooses it; a secret's label only restricts.
	backend := p.cfg.DefaultBackend
	if v, ok := raw[secrets.OptBackend]; ok {
		backend = v
	}
	acceptsIdentity := p.acceptsParam(backend, OptIdentity)
	svc, err := p.serviceIdentity(serviceName, serviceLabels)
	if err != nil {
		problems = append(problems, err)
	}
	required, restricted := raw[OptIdentity]
	delete(raw, OptIdentity)
	_, knownBackend := p.cfg.Registry.Get(backend)
	switch {
	case !knownBackend:
		// ParseRef names the unknown backend.
	case !acceptsIdentity && restricted:
		problems = append(problems, fmt.Errorf("label %q: backend %q has no identities", LabelPrefix+OptIdentity, backend))
	case !acceptsIdentity:
		// A service's identity applies where backends have them: a
		// service with a Vault identity may also read aws or file secrets.
	case restricted && svc.name == "":
		problems = append(problems, fmt.Errorf("label %q: this secret may only be read with identity %q, and service %q has no identity; deploy it with the service label %s%s=%s",
			LabelPrefix+OptIdentity, required, serviceName, LabelPrefix, OptIdentity, required))
	case restricted && svc.name != required:
		problems = append(problems, fmt.Errorf("label %q: this secret may only be read with identity %q, but service %q has identity %q (from %s)",
			LabelPrefix+OptIdentity, required, serviceName, svc.name, svc.source))
	case svc.name != "":
		raw[OptIdentity] = svc.name
		req.scoped = true
	}

	ref, rest, errs := secrets.ParseRef(secretName, raw, p.cfg.DefaultBackend, p.cfg.Registry)
	for _, e := range errs {
		problems = append(problems, asLabel(e))
	}
	for _, k := range sortedKeys(rest) {
		problems = append(problems, fmt.Errorf("unknown label %q; known labels are: %s", LabelPrefix+k, strings.Join(p.knownLabels(ref.Backend), ", ")))
	}
	req.ref = ref
	if len(problems) > 0 {
		return req, &LabelsError{Problems: problems}
	}
	return req, nil
}

const serviceLabelSource = `service label "` + LabelPrefix + OptIdentity + `"`

// serviceIdentity reads the identity a service's deployer chose: the
// dsv.identity service label, or the service's name when the plugin is set
// to use it. With both, they must agree.
func (p *Provider) serviceIdentity(serviceName string, labels map[string]string) (identity, error) {
	var problems []string
	var id identity
	for _, k := range sortedKeys(labels) {
		name, ok := strings.CutPrefix(k, LabelPrefix)
		if !ok {
			continue
		}
		if name != OptIdentity {
			problems = append(problems, fmt.Sprintf("unknown service label %q of service %q; the only dsv service label is %s%s", k, serviceName, LabelPrefix, OptIdentity))
			continue
		}
		if labels[k] == "" {
			problems = append(problems, fmt.Sprintf("%s of service %q: must not be empty; it names the identity the service's secrets are read with", serviceLabelSource, serviceName))
			continue
		}
		id = identity{name: labels[k], source: serviceLabelSource}
	}
	if p.cfg.IdentityFromServiceName && serviceName != "" {
		switch {
		case id.name == "":
			id = identity{name: serviceName, source: "the service's name (SWARM_IDENTITY_FROM_SERVICE_NAME)"}
		case id.name != serviceName:
			problems = append(problems, fmt.Sprintf("%s of service %q is %q, but SWARM_IDENTITY_FROM_SERVICE_NAME makes the service's name its identity; remove the label or make it match",
				serviceLabelSource, serviceName, id.name))
		}
	}
	if len(problems) > 0 {
		return identity{}, errors.New(strings.Join(problems, "; "))
	}
	return id, nil
}

// LabelsError lists every problem of a secret's and its service's labels.
type LabelsError struct {
	Problems []error
}

func (e *LabelsError) Error() string {
	msgs := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		msgs[i] = p.Error()
	}
	return "invalid labels: " + strings.Join(msgs, "; ")
}

// Unwrap exposes each problem to errors.Is and errors.As.
func (e *LabelsError) Unwrap() []error { return e.Problems }

// asLabel renames the options that secrets.ParseRef and backends name in
// their errors (`option "key"`) to the labels a Swarm user wrote
// (`label "dsv.key"`).
func asLabel(err error) error {
	msg := strings.ReplaceAll(err.Error(), `option "`, `label "`+LabelPrefix)
	return &renamed{msg: msg, err: err}
}

// renamed is an error with a reworded message that still unwraps to the
// original, so error classes survive.
type renamed struct {
	msg string
	err error
}

func (r *renamed) Error() string { return r.msg }
func (r *renamed) Unwrap() error { return r.err }

// acceptsParam reports whether backend declares param.
func (p *Provider) acceptsParam(backend, param string) bool {
	d, ok := p.cfg.Registry.Get(backend)
	if !ok {
		return false
	}
	pd, ok := d.(secrets.ParamsDriver)
	if !ok {
		return false
	}
	for _, name := range pd.Params() {
		if name == param {
			return true
		}
	}
	return false
}

// knownLabels lists the secret labels a backend accepts, for errors.
func (p *Provider) knownLabels(backend string) []string {
	names := append(append([]string{}, secrets.RefOptions...), OptFormat)
	if d, ok := p.cfg.Registry.Get(backend); ok {
		if pd, ok := d.(secrets.ParamsDriver); ok {
			for _, n := range pd.Params() {
				if strings.HasSuffix(n, ".") {
					n += "NAME"
				}
				names = append(names, n)
			}
		}
	}
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = LabelPrefix + n
	}
	return out
}

func (p *Provider) knownFormat(f string) bool {
	for _, k := range p.formats() {
		if k == f {
			return true
		}
	}
	return false
}

// formats lists the dsv.format values, raw first.
func (p *Provider) formats() []string {
	out := []string{FormatRaw}
	for _, f := range p.cfg.Formats {
		if f != FormatRaw {
			out = append(out, f)
		}
	}
	return out
}

func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }
