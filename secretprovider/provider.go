// Package secretprovider is dsv's Swarm secret driver: it implements
// docker.secretprovider/1.0, so that
//
//	docker secret create --driver dsv --label dsv.backend=aws --label dsv.secret=prod/db NAME
//
// makes a Swarm secret whose value Swarm asks the plugin for each time it
// hands the secret to a task. The secret's dsv.* labels are the volume
// options that address a secret (parsed by secrets.ParseRef) plus
// dsv.format; every read goes through the shared cache.Fetcher, so volumes
// and Swarm secrets share reads. A value that must go to one consumer only
// (secrets.Secret.Unique) is answered with DoNotReuse, so that every task
// gets its own.
//
// The backend identity (dsv.identity, for backends that have identities)
// is chosen by the service: its dsv.identity label, or its name when
// SWARM_IDENTITY_FROM_SERVICE_NAME is set. A secret's own dsv.identity label
// only restricts the secret to services of that identity; it never grants one.
//
// A secret outside the plugin's ALLOW setting is refused before any read.
package secretprovider

import (
	"context"
	"errors"
	"fmt"

	dockersecrets "github.com/docker/go-plugins-helpers/secrets"
	"github.com/rs/zerolog"

	"github.com/dsv-plugin/dsv/secrets"
	"github.com/dsv-plugin/dsv/secrets/allowlist"
	"github.com/dsv-plugin/dsv/secrets/cache"
)

// Config builds a Provider.
type Config struct {
	// Registry holds the backends.
	Registry *secrets.Registry
	// Fetcher is the shared fetcher every read goes through.
	Fetcher *cache.Fetcher
	// DefaultBackend is the BACKEND setting: the backend of secrets
	// without a dsv.backend label.
	DefaultBackend string
	// IdentityFromServiceName is the SWARM_IDENTITY_FROM_SERVICE_NAME
	// setting: a service without a dsv.identity label reads with the
	// identity named like the service.
	IdentityFromServiceName bool
	// Allow is the ALLOW setting: the objects secrets may read. nil allows
	// every object.
	Allow *allowlist.List
	// Format turns a value into the file's content for a dsv.format label
	// other than raw; Formats lists the names it accepts. Without them only
	// raw is accepted.
	Format  func(format string, value []byte) ([]byte, error)
	Formats []string
	// Logger receives the provider's logs; a component field is added.
	Logger zerolog.Logger
}

// Provider answers Swarm's requests for secret values.
type Provider struct {
	cfg Config
	log zerolog.Logger
}

var _ dockersecrets.Driver = (*Provider)(nil)

// New returns a Provider.
func New(cfg Config) (*Provider, error) {
	if cfg.Registry == nil || cfg.Fetcher == nil {
		return nil, errors.New("secretprovider: a registry and a fetcher are required")
	}
	if len(cfg.Formats) > 0 && cfg.Format == nil {
		return nil, errors.New("secretprovider: formats are listed but no Format function applies them")
	}
	return &Provider{cfg: cfg, log: cfg.Logger.With().Str("component", "secretprovider").Logger()}, nil
}

// Get answers one SecretProvider.GetSecret call. Swarm's manager makes it
// when it dispatches a task that uses the secret; an Err fails that task.
func (p *Provider) Get(req dockersecrets.Request) dockersecrets.Response {
	log := p.log.With().Str("secret", req.SecretName).Str("service", req.ServiceName).Str("task", req.TaskName).Logger()
	value, sec, scoped, err := p.get(req)
	if err != nil {
		log.Warn().Err(err).Msg("secret refused")
		return dockersecrets.Response{Err: fmt.Sprintf("dsv: secret %q for service %q: %v", req.SecretName, req.ServiceName, err)}
	}
	// A value read with a service's identity must not be reused: Swarm
	// would keep it on the node under the secret's id, and a task of
	// another service that dsv refuses would fall back to it.
	doNotReuse := sec.Unique() || scoped
	ev := log.Info().Str("version", sec.Version).Bool("doNotReuse", doNotReuse)
	if sec.Lease != nil {
		ev = ev.Str("leaseDuration", sec.Lease.Duration.String())
	}
	ev.Msg("secret served")
	return dockersecrets.Response{Value: value, DoNotReuse: doNotReuse}
}

func (p *Provider) get(req dockersecrets.Request) (value []byte, sec secrets.Secret, scoped bool, err error) {
	r, err := p.parse(req.SecretName, req.SecretLabels, req.ServiceName, req.ServiceLabels)
	if err != nil {
		return nil, secrets.Secret{}, false, err
	}
	// The fetcher bounds each backend call; this bounds the wait, which
	// includes a second read when a single-use value was shared.
	ctx, cancel := context.WithTimeout(context.Background(), 2*p.cfg.Fetcher.Timeout())
	defer cancel()
	if err := p.cfg.Allow.CheckAllRead(ctx, p.cfg.Registry, []secrets.Ref{r.ref}); err != nil {
		return nil, secrets.Secret{}, false, err
	}
	sec, err = p.cfg.Fetcher.Fetch(ctx, r.ref, false)
	if err != nil {
		return nil, secrets.Secret{}, false, err
	}
	value = sec.Value
	if r.format != FormatRaw {
		if value, err = p.cfg.Format(r.format, value); err != nil {
			return nil, secrets.Secret{}, false, fmt.Errorf("%v: label %q: %w", r.ref, LabelPrefix+OptFormat, err)
		}
	}
	return value, sec, r.scoped, nil
}
