// Package vault is the "vault" backend: it reads secrets from HashiCorp
// Vault (or OpenBao) through its HTTP API.
//
// The secret option is a path as users of the Vault CLI write it:
// secret/app/db. The backend asks Vault which mount holds it and what
// engine that is (sys/internal/ui/mounts, as the CLI does), and reads KV v2
// secrets at MOUNT/data/PATH; other engines (database/creds/app,
// pki/issue/web with method=write) are requested as given. The file holds
// the answer's data as a JSON object, so the key option picks a field.
//
// Logins: the plugin logs in with a token (VAULT_TOKEN_FILE, or VAULT_TOKEN)
// or AppRole (VAULT_AUTH=approle); a volume with the identity option logs in
// with that identity's own AppRole credentials instead, so that each volume
// gets only its identity's policies. Logins happen at first use, under the
// fetch's timeout, never at plugin start. Tokens are renewed until their
// maximum TTL; an expired or rejected token is replaced by a new login, and
// the request retried once.
//
// Precedence of the namespace (Vault Enterprise): the namespace option, then
// VAULT_NAMESPACE. Logins always happen in VAULT_NAMESPACE.
package vault

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/dsv-plugin/dsv/secrets"
)

// Name is the backend's registry name, the value of the backend option.
const Name = "vault"

// versionKV1 is the version shown for KV v1 secrets, which have none.
const versionKV1 = "kv1"

// Driver is the vault backend. It is safe for concurrent use.
type Driver struct {
	cfg  Config
	log  zerolog.Logger
	api  *client // each request gives its own namespace and token
	addr string  // VAULT_ADDR as used, for messages

	mu       sync.Mutex
	sessions map[string]*session // by identity; "" is the plugin's login
	mounts   map[mountKey]mountInfo
	closed   bool

	// ended is signalled when a login token ends (at its maximum TTL, or
	// rejected): the leases it issued end with it.
	ended chan struct{}
}

var (
	_ secrets.SecretStoreDriver = (*Driver)(nil)
	_ secrets.ParamsDriver      = (*Driver)(nil)
	_ secrets.LeaseManager      = (*Driver)(nil)
	_ secrets.IssuerNotifier    = (*Driver)(nil)
)

// New returns the vault backend. It checks the settings and builds the
// client, but does not contact Vault: a Vault that is down fails fetches,
// not the plugin's start.
func New(cfg Config, log zerolog.Logger) (*Driver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	conf := cfg.Client
	if conf == nil {
		var err error
		if conf, err = ClientConfigFromEnv(os.Getenv); err != nil {
			return nil, fmt.Errorf("vault client settings (VAULT_ADDR, VAULT_CACERT, VAULT_SKIP_VERIFY, ...): %w", err)
		}
	}
	// The client's own bound is 60 s per request (VAULT_CLIENT_TIMEOUT);
	// the TIMEOUT setting replaces it: the token's renewal runs without a
	// caller, under this bound only.
	cl, err := newClient(conf, cfg.Timeout)
	if err != nil {
		return nil, fmt.Errorf("vault client settings (VAULT_ADDR, VAULT_CACERT, VAULT_SKIP_VERIFY, ...): %w", err)
	}
	return &Driver{
		cfg:      cfg,
		log:      log.With().Str("component", Name).Logger(),
		api:      cl,
		addr:     cl.addr,
		sessions: map[string]*session{},
		mounts:   map[mountKey]mountInfo{},
		ended:    make(chan struct{}, 1),
	}, nil
}

// IssuerEnded is signalled when a login token ends: Vault revokes every
// lease a token read when the token ends, so their holders must replace
// them (Renew refuses a lease of a token that is no longer the session's).
func (d *Driver) IssuerEnded() <-chan struct{} { return d.ended }

func (d *Driver) signalEnded() {
	select {
	case d.ended <- struct{}{}:
	default:
	}
}

// Name returns "vault".
func (d *Driver) Name() string { return Name }

// Close stops the renewal of every token. The driver must not be used
// afterwards.
func (d *Driver) Close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	for _, s := range d.sessions {
		s.close()
	}
}

// bound gives a call the TIMEOUT setting (Config.Timeout), or the
// caller's deadline if that comes first: ALLOW's lookup during a refresh,
// say, has no deadline of its own.
func (d *Driver) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if d.cfg.Timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d.cfg.Timeout)
}

// session returns the login of an identity ("" for the plugin's own).
func (d *Driver) session(identity string) *session {
	d.mu.Lock()
	defer d.mu.Unlock()
	if s, ok := d.sessions[identity]; ok {
		return s
	}
	s := &session{name: identity, d: d}
	s.log = d.log.With().Str("identity", s.label()).Logger()
	switch {
	case identity != "":
		dir := d.cfg.identityDir(identity)
		s.auth = &appRoleAuth{
			mount:        d.cfg.AppRolePath,
			roleIDFile:   dir + "/" + roleIDName,
			secretIDFile: dir + "/" + secretIDName,
			wrapped:      d.cfg.SecretIDWrapped,
			who:          fmt.Sprintf("identity %q", identity),
		}
	case d.cfg.Auth == AuthAppRole:
		s.auth = &appRoleAuth{
			mount:        d.cfg.AppRolePath,
			roleIDFile:   d.cfg.RoleIDFile,
			secretIDFile: d.cfg.SecretIDFile,
			wrapped:      d.cfg.SecretIDWrapped,
			who:          "the plugin",
		}
	default:
		s.auth = tokenAuth{env: d.cfg.Token, file: d.cfg.TokenFile}
	}
	if d.closed {
		s.closed = true
	}
	d.sessions[identity] = s
	return s
}

// call runs fn with a token of s. When Vault answers 403 and the token
// turns out to be rejected (expired, revoked, or rotated out), it logs in
// again and runs fn once more.
func (d *Driver) call(ctx context.Context, s *session, fn func(token string) error) error {
	token, gen, err := s.get(ctx)
	if err != nil {
		return err
	}
	err = fn(token)
	if !isForbidden(err) || ctx.Err() != nil || s.valid(ctx, token) {
		return err
	}
	if s.drop(gen) {
		s.log.Info().Msg("vault rejected the token; logging in again")
	}
	if token, _, err = s.get(ctx); err != nil {
		return err
	}
	return fn(token)
}

// namespace is the namespace of a request (see the package comment).
func (d *Driver) namespace(req request) string {
	if req.namespace != "" {
		return req.namespace
	}
	return d.cfg.Namespace
}

var _ secrets.Canonicalizer = (*Driver)(nil)
var _ secrets.Issuer = (*Driver)(nil)

// Canonical names the object ref reads as the Vault CLI does (KV v2 without
// data/), for the ALLOW setting: secret/data/db is the object secret/db.
// It looks the mount up (cached), with the volume's identity.
func (d *Driver) Canonical(ctx context.Context, ref secrets.Ref) (string, error) {
	ctx, cancel := d.bound(ctx)
	defer cancel()
	t, err := d.locate(withAttempts(ctx), ref)
	if err != nil {
		return "", err
	}
	return logicalPath(t.m, t.req.path), nil
}

// target is what a request of a reference reads: its options, the session
// of its identity, its namespace, and the mount its path is under.
type target struct {
	req request
	s   *session
	ns  string
	m   mountInfo
}

// locate parses ref and finds the mount its path is under (cached). ctx
// comes from withAttempts.
func (d *Driver) locate(ctx context.Context, ref secrets.Ref) (target, error) {
	req, err := parseRequest(ref)
	if err != nil {
		return target{}, secrets.Fail(ref, secrets.ErrBadValue, "recreate the volume with valid options", err)
	}
	t := target{req: req, s: d.session(req.identity), ns: d.namespace(req)}
	if t.m, err = d.mount(ctx, ref, t.s, t.ns, req.path); err != nil {
		return t, err
	}
	// What validPath cannot see, Vault says: a path that reaches one of
	// its own mounts however it is spelled.
	if m := reservedEngine(t.m.engine); m != "" {
		return t, secrets.Fail(ref, secrets.ErrBadValue,
			fmt.Sprintf("vault says the path is in its %s/ mount (%s); dsv does not serve %s", m, reservedMounts[m], reservedList), nil)
	}
	return t, nil
}

// Fetch reads a secret. Errors are *secrets.Error.
func (d *Driver) Fetch(ctx context.Context, ref secrets.Ref) (secrets.Secret, error) {
	ctx, cancel := d.bound(ctx)
	defer cancel()
	ctx = withAttempts(ctx)
	t, err := d.locate(ctx, ref)
	if err != nil {
		return secrets.Secret{}, err
	}
	req, s, ns, m := t.req, t.s, t.ns, t.m
	log := d.log.With().
		Str("secret", req.path).
		Str("namespace", ns).
		Str("identity", s.label()).
		Str("mount", m.prefix).
		Str("engine", m.engine).
		Int("kv_version", m.kv).
		Bool("write", req.write).
		Bool("wrapped", req.wrapTTL > 0).
		Logger()

	if m.kv > 0 && req.write {
		return secrets.Secret{}, secrets.Fail(ref, secrets.ErrBadValue,
			fmt.Sprintf("%s=%s on a KV mount would overwrite the secret; dsv only reads KV secrets", OptMethod, MethodWrite), nil)
	}
	if req.version > 0 && m.kv != 2 {
		return secrets.Secret{}, secrets.Fail(ref, secrets.ErrNotFound,
			fmt.Sprintf("option %q needs a KV v2 mount; %s is %s", "version-id", describeMount(m), describeEngine(m)), nil)
	}
	path, err := apiPath(m, req.path)
	if err != nil {
		return secrets.Secret{}, secrets.Fail(ref, secrets.ErrNotFound, "", err)
	}
	log.Debug().Str("path", path).Msg("fetching")

	var sec *secret
	var issuer string
	wrapTTL := ""
	if req.wrapTTL > 0 {
		wrapTTL = strconv.Itoa(int(req.wrapTTL / time.Second))
	}
	err = d.call(ctx, s, func(token string) error {
		issuer = s.issuerOf(token)
		var err error
		if req.write {
			body := make(map[string]any, len(req.params))
			for k, v := range req.params {
				body[k] = v
			}
			sec, err = d.api.write(ctx, ns, token, path, body, wrapTTL)
		} else {
			sec, err = d.api.read(ctx, ns, token, path, query(req), wrapTTL)
		}
		return err
	})
	if err != nil {
		o := op{kind: opRead, path: path}
		if req.write {
			o.kind = opWrite
		}
		err = d.classify(ctx, ref, o, err)
		log.Debug().Err(err).Msg("fetch failed")
		return secrets.Secret{}, err
	}
	out, err := result(ref, req, m, path, sec)
	if err != nil {
		log.Debug().Err(err).Msg("fetch failed")
		return secrets.Secret{}, err
	}
	if out.Lease != nil {
		out.Lease.Issuer = issuer
	}
	ev := log.Debug().Str("version", out.Version)
	if out.Lease != nil {
		ev = ev.Str("lease", leasePrefix(out.Lease.ID)).Dur("lease_ttl", out.Lease.Duration).Bool("renewable", out.Lease.Renewable)
	}
	ev.Msg("fetched")
	if ref.Key != "" {
		if out.Value, err = secrets.ExtractKey(ref, out.Value); err != nil {
			return secrets.Secret{}, err
		}
	}
	return out, nil
}

// query holds the param.* options and the version of a read.
func query(req request) map[string][]string {
	if len(req.params) == 0 && req.version == 0 {
		return nil
	}
	q := make(map[string][]string, len(req.params)+1)
	for k, v := range req.params {
		q[k] = []string{v}
	}
	if req.version > 0 {
		q["version"] = []string{strconv.Itoa(req.version)}
	}
	return q
}

// result turns Vault's answer into the secret.
func result(ref secrets.Ref, req request, m mountInfo, path string, sec *secret) (secrets.Secret, error) {
	if req.wrapTTL > 0 {
		if sec == nil || sec.WrapInfo == nil || sec.WrapInfo.Token == "" {
			return secrets.Secret{}, secrets.Fail(ref, secrets.ErrBadValue, "vault did not wrap its answer", nil)
		}
		return secrets.Secret{Value: []byte(sec.WrapInfo.Token), Version: sec.WrapInfo.Accessor, NoReuse: true}, nil
	}
	if sec == nil {
		hint := fmt.Sprintf("no secret at %s; check the path and the namespace", path)
		if req.version > 0 {
			hint = fmt.Sprintf("no version %d at %s; check the version-id option, the path and the namespace", req.version, path)
		}
		return secrets.Secret{}, secrets.Fail(ref, secrets.ErrNotFound, hint, nil)
	}
	if m.kv == 2 && !req.write {
		return kv2Result(ref, req, sec)
	}
	if sec.Data == nil {
		return secrets.Secret{}, secrets.Fail(ref, secrets.ErrBadValue, fmt.Sprintf("vault's answer for %s holds no data", path), nil)
	}
	value, err := json.Marshal(sec.Data)
	if err != nil {
		return secrets.Secret{}, secrets.Fail(ref, secrets.ErrBadValue, "vault's answer is not JSON", nil)
	}
	// A write issues something new (a certificate, a token) for each
	// volume: never shared.
	out := secrets.Secret{Value: value, Version: sec.RequestID, NoReuse: req.write}
	if m.kv == 1 {
		out.Version = versionKV1
	}
	if sec.LeaseID != "" {
		out.Lease = &secrets.Lease{
			ID:        sec.LeaseID,
			Duration:  time.Duration(sec.LeaseDuration) * time.Second,
			Renewable: sec.Renewable,
		}
	}
	return out, nil
}

// kv2Result reads data.data and data.metadata of a KV v2 answer.
func kv2Result(ref secrets.Ref, req request, sec *secret) (secrets.Secret, error) {
	data, _ := sec.Data["data"].(map[string]any)
	meta, _ := sec.Data["metadata"].(map[string]any)
	version := fmt.Sprint(meta["version"])
	if meta["version"] == nil {
		version = ""
	}
	if data == nil {
		which := "the latest version"
		switch {
		case req.version > 0:
			which = "version " + strconv.Itoa(req.version)
		case version != "":
			which = "version " + version + ", the latest,"
		}
		if deleted, _ := meta["deletion_time"].(string); deleted != "" {
			return secrets.Secret{}, secrets.Fail(ref, secrets.ErrNotFound,
				which+" was deleted; undelete it with vault kv undelete, or pick another version-id", nil)
		}
		if destroyed, _ := meta["destroyed"].(bool); destroyed {
			return secrets.Secret{}, secrets.Fail(ref, secrets.ErrNotFound, which+" was destroyed; pick another version-id", nil)
		}
		return secrets.Secret{}, secrets.Fail(ref, secrets.ErrNotFound, which+" holds no data", nil)
	}
	value, err := json.Marshal(data)
	if err != nil {
		return secrets.Secret{}, secrets.Fail(ref, secrets.ErrBadValue, "vault's answer is not JSON", nil)
	}
	return secrets.Secret{Value: value, Version: version}, nil
}

func describeMount(m mountInfo) string {
	if m.prefix == "" {
		return "the path's mount"
	}
	return fmt.Sprintf("%q", m.prefix)
}

func describeEngine(m mountInfo) string {
	switch {
	case m.kv == 1:
		return "KV version 1"
	case m.engine != "":
		return fmt.Sprintf("a %s engine", m.engine)
	}
	return "not known to be KV v2"
}

// leasePrefix is what logs show of a lease id.
func leasePrefix(id string) string {
	const n = 8
	if len(id) <= n {
		return id
	}
	return id[:n]
}
