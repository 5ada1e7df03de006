package vault

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sync/singleflight"

	"github.com/dsv-plugin/dsv/secrets"
)

// maxCredentialFile bounds what is read of a token or AppRole file.
const maxCredentialFile = 16 << 10

// authMethod logs in. It returns the token and its lifetime in Auth.
type authMethod interface {
	login(ctx context.Context, d *Driver) (*secretAuth, error)
}

// session is one identity's login: the plugin's own (name "") or that of an
// identity option. It holds one token at a time, keeps it renewed while it
// lives, and logs in again once it ends or Vault rejects it. Concurrent
// callers share one login.
type session struct {
	name string
	auth authMethod
	d    *Driver
	log  zerolog.Logger

	group singleflight.Group

	mu     sync.Mutex
	token  string // "" until the next login
	issuer string // the token's issuer id (see issuerID); "" if unknown
	gen    uint64 // counts logins; a token is known by its generation
	stop   func() // stops the renewal of the current token
	closed bool
}

// label names the session in logs.
func (s *session) label() string {
	if s.name == "" {
		return "plugin"
	}
	return s.name
}

// get returns the current token, logging in when there is none. Each
// caller waits for the login no longer than its own context allows.
func (s *session) get(ctx context.Context) (string, uint64, error) {
	s.mu.Lock()
	if s.token != "" {
		defer s.mu.Unlock()
		return s.token, s.gen, nil
	}
	s.mu.Unlock()
	ch := s.group.DoChan("login", func() (any, error) {
		lctx, cancel := s.loginContext(ctx)
		defer cancel()
		return s.login(lctx)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return "", 0, r.Err
		}
		t := r.Val.(held)
		return t.token, t.gen, nil
	case <-ctx.Done():
		return "", 0, ctx.Err()
	}
}

// loginContext is the context of a login that ctx's caller starts. Every
// caller that needs a token meanwhile waits for this one login, so with
// the TIMEOUT setting it runs under that, not under the context of the
// caller that happened to start it: one that gives up early (or that
// never would) decides for none of the others. Without the setting it is
// the starter's context.
func (s *session) loginContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if s.d.cfg.Timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(context.WithoutCancel(ctx), s.d.cfg.Timeout)
}

// held is a token and its generation.
type held struct {
	token string
	gen   uint64
}

func (s *session) login(ctx context.Context) (held, error) {
	s.mu.Lock()
	if s.token != "" { // a login that finished while this one was queued
		defer s.mu.Unlock()
		return held{s.token, s.gen}, nil
	}
	s.mu.Unlock()

	a, err := s.auth.login(ctx, s.d)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			// The callers still waiting have time left; theirs is not
			// the deadline that passed.
			err = authFail(secrets.ErrTimeout, "vault did not answer the login within the TIMEOUT plugin setting; check that vault is reachable from the host, or raise TIMEOUT", nil)
		}
		s.log.Debug().Err(err).Msg("vault login failed")
		return held{}, err
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stop != nil {
		s.stop()
		s.stop = nil
	}
	s.gen++
	s.token = a.ClientToken
	s.issuer = issuerID(a.Accessor)
	if s.closed {
		return held{s.token, s.gen}, nil
	}
	ttl := time.Duration(a.LeaseDuration) * time.Second
	s.log.Info().Dur("ttl", ttl).Bool("renewable", a.Renewable).Uint64("login", s.gen).Msg("logged in to vault")
	if ttl > 0 {
		s.stop = s.watch(a, s.gen)
	}
	return held{s.token, s.gen}, nil
}

// watch renews the token of generation gen until its maximum TTL, then
// drops it so that the next use logs in again. It returns a stop function.
func (s *session) watch(a *secretAuth, gen uint64) func() {
	// Stopping also ends a renewal in flight.
	ctx, stop := context.WithCancel(context.Background())
	go func() {
		err := s.renew(ctx, a)
		if s.drop(gen) {
			ev := s.log.Debug()
			if err != nil {
				ev = s.log.Warn().Err(err)
			}
			ev.Msg("vault token at its end of life; the next use logs in again")
		}
	}()
	return stop
}

// renew keeps a token renewed until ctx ends or the token nears its
// end, as the api's LifetimeWatcher did (the Vault Agent's rule): renew at
// once, then after two thirds of each new TTL; stop when what is left is
// within a grace of 10-20% of the TTL (so that the next use logs in again
// before the token expires). A denied renewal makes the token
// non-renewable: it is kept until its grace. Failed renewals are tried
// again with exponential backoff (10 s, doubling, up to 5 min) while the
// token lives; the error is returned when the backoff runs past its TTL.
func (s *session) renew(ctx context.Context, a *secretAuth) error {
	token := a.ClientToken
	nonRenewable := !a.Renewable
	start := time.Now()
	lease := time.Duration(a.LeaseDuration) * time.Second
	prior := lease
	grace := renewGrace(prior)
	var failing *renewBackoff
	for {
		if ctx.Err() != nil {
			return nil
		}
		var remaining time.Duration
		var err error
		if nonRenewable {
			remaining = time.Until(start.Add(prior))
		} else {
			var r *secret
			r, err = s.d.api.renewSelf(ctx, s.d.cfg.Namespace, token)
			if err != nil && permissionDenied(err) {
				nonRenewable = true
				continue
			}
			if err != nil || r == nil || r.Auth == nil {
				remaining = time.Until(start.Add(lease))
				if failing == nil {
					failing = newRenewBackoff(remaining)
				}
			} else {
				failing = nil
				s.log.Debug().Int("ttl_seconds", r.Auth.LeaseDuration).Msg("vault token renewed")
				start = time.Now()
				lease = time.Duration(r.Auth.LeaseDuration) * time.Second
				remaining = lease
			}
		}
		var sleep time.Duration
		if failing == nil {
			if remaining > prior {
				grace = renewGrace(remaining)
			}
			sleep = remaining*2/3 + grace/3
		} else {
			var ok bool
			if sleep, ok = failing.next(); !ok {
				return err
			}
		}
		prior = remaining
		if remaining <= grace || remaining-sleep <= grace {
			return nil
		}
		timer := time.NewTimer(sleep)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-timer.C:
		}
	}
}

// renewGrace is how long before a token's end its renewal stops: a random
// 10-20% of ttl, so that many tokens do not end at once.
func renewGrace(ttl time.Duration) time.Duration {
	jitter := ttl / 10
	if jitter <= 0 {
		return 0
	}
	return jitter + rand.N(jitter)
}

// renewBackoff spaces the retries of a failing token renewal: 10 s,
// randomized by half, doubling up to 5 min, while the token lives.
type renewBackoff struct {
	start    time.Time
	interval time.Duration
	limit    time.Duration
}

func newRenewBackoff(limit time.Duration) *renewBackoff {
	return &renewBackoff{start: time.Now(), interval: 10 * time.Second, limit: limit}
}

// next is the wait before the next try; false once that would end past
// the limit.
func (b *renewBackoff) next() (time.Duration, bool) {
	delta := b.interval / 2
	d := b.interval - delta + time.Duration(rand.Int64N(int64(2*delta)+1))
	b.interval = min(b.interval*2, 5*time.Minute)
	if time.Since(b.start)+d > b.limit {
		return 0, false
	}
	return d, true
}

// permissionDenied reports a renewal that Vault refused for the token's
// policies: renewing again is no use.
func permissionDenied(err error) bool {
	return strings.Contains(err.Error(), "permission denied")
}

// drop forgets the token of generation gen, if it is still the current one,
// and tells the leases' holders: the leases it read end with it.
func (s *session) drop(gen uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen != gen || s.token == "" {
		return false
	}
	s.token = ""
	if s.stop != nil {
		s.stop()
		s.stop = nil
	}
	s.d.signalEnded()
	return true
}

// issuerOf is the issuer id of token if it is the session's current token,
// else "".
func (s *session) issuerOf(token string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if token != s.token {
		return ""
	}
	return s.issuer
}

// issuerID names a login token in lease records without revealing it: a
// hash of its accessor (itself not a credential). "" when Vault gave none.
func issuerID(accessor string) string {
	if accessor == "" {
		return ""
	}
	sum := sha256.Sum256([]byte("dsv lease issuer\x00" + accessor))
	return hex.EncodeToString(sum[:8])
}

// valid reports whether Vault still accepts token. A token Vault rejects
// answers 403 to lookup-self; any other failure is no evidence either way.
func (s *session) valid(ctx context.Context, token string) bool {
	_, err := s.d.api.lookupSelf(ctx, s.d.cfg.Namespace, token)
	return !isForbidden(err)
}

func (s *session) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.token = ""
	if s.stop != nil {
		s.stop()
		s.stop = nil
	}
}

// logins is the number of logins so far, for tests.
func (s *session) logins() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gen
}

// current is the current token, for tests.
func (s *session) current() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.token
}

// tokenAuth uses a token given in the environment or in a file. A file is
// read again at each login, so a rotated token is picked up.
type tokenAuth struct {
	env  string
	file string
}

func (t tokenAuth) source() string {
	if t.env != "" {
		return "the " + EnvToken + " setting"
	}
	return fmt.Sprintf("%s (%s)", t.file, EnvTokenFile)
}

func (t tokenAuth) login(ctx context.Context, d *Driver) (*secretAuth, error) {
	token := t.env
	if token == "" {
		var err error
		if token, err = readCredential(t.file); err != nil {
			return nil, authFail(secrets.ErrAccessDenied,
				fmt.Sprintf("no vault token: put one in %s, or set %s=%s", t.file, EnvAuth, AuthAppRole), err)
		}
	}
	sec, err := d.api.lookupSelf(ctx, d.cfg.Namespace, token)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if isForbidden(err) {
			return nil, authFail(secrets.ErrAccessDenied,
				fmt.Sprintf("vault rejects the token from %s: it is invalid or expired (or lacks the default policy); put a valid token there", t.source()),
				loginCause(err))
		}
		return nil, loginError(d, err)
	}
	if sec == nil {
		// An empty answer (a proxy's, say): no evidence the token is good.
		return nil, authFail(secrets.ErrUnavailable, "vault answered the token lookup with nothing", nil)
	}
	ttl, err := sec.tokenTTL()
	if err != nil {
		return nil, authFail(secrets.ErrUnavailable, "vault's token lookup answer is unreadable", err)
	}
	accessor, _ := sec.Data["accessor"].(string)
	return &secretAuth{ClientToken: token, Accessor: accessor, LeaseDuration: int(ttl / time.Second), Renewable: sec.tokenRenewable()}, nil
}

// appRoleAuth logs in with AppRole. A wrapped secret-id is unwrapped once:
// the secret-id is kept in memory for later logins until the file changes.
type appRoleAuth struct {
	mount        string
	roleIDFile   string
	secretIDFile string
	wrapped      bool
	who          string // for hints: "the plugin", `identity "web"`

	mu          sync.Mutex
	lastWrapped string // the wrapping token last unwrapped
	secretID    string // what it unwrapped to
}

func (a *appRoleAuth) login(ctx context.Context, d *Driver) (*secretAuth, error) {
	roleID, err := readCredential(a.roleIDFile)
	if err != nil {
		return nil, authFail(secrets.ErrAccessDenied, fmt.Sprintf("cannot read the AppRole role-id of %s", a.who), err)
	}
	secretID, err := readCredential(a.secretIDFile)
	if err != nil {
		return nil, authFail(secrets.ErrAccessDenied, fmt.Sprintf("cannot read the AppRole secret-id of %s", a.who), err)
	}
	if a.wrapped {
		if secretID, err = a.unwrap(ctx, d, secretID); err != nil {
			return nil, err
		}
	}
	sec, err := d.api.write(ctx, d.cfg.Namespace, "", "auth/"+a.mount+"/login", map[string]any{"role_id": roleID, "secret_id": secretID}, "")
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		// Vault 1.13 answers 500 to an unknown secret-id.
		if s := statusOf(err); s == 400 || s == 403 || rejectedCredentials(err) {
			return nil, authFail(secrets.ErrAccessDenied,
				fmt.Sprintf("AppRole login of %s at auth/%s failed: check the role-id and secret-id files (%s, %s; a secret-id can expire or run out of uses) and %s",
					a.who, a.mount, a.roleIDFile, a.secretIDFile, EnvAppRolePath),
				loginCause(err))
		}
		return nil, loginError(d, err)
	}
	if sec == nil || sec.Auth == nil || sec.Auth.ClientToken == "" {
		return nil, authFail(secrets.ErrAccessDenied, fmt.Sprintf("AppRole login of %s at auth/%s returned no token", a.who, a.mount), nil)
	}
	return sec.Auth, nil
}

// unwrap returns the secret-id inside a wrapping token, unwrapping each
// token once.
func (a *appRoleAuth) unwrap(ctx context.Context, d *Driver, wrapping string) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if wrapping == a.lastWrapped && a.secretID != "" {
		return a.secretID, nil
	}
	sec, err := d.api.unwrap(ctx, d.cfg.Namespace, wrapping)
	if err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		if s := statusOf(err); s == 400 || s == 403 {
			return "", authFail(secrets.ErrAccessDenied,
				fmt.Sprintf("the wrapped secret-id of %s in %s was already unwrapped or has expired (%s=true): a wrapping token works once; put a fresh one in the file",
					a.who, a.secretIDFile, EnvSecretIDWrapped),
				loginCause(err))
		}
		return "", loginError(d, err)
	}
	var id string
	if sec != nil {
		id, _ = sec.Data["secret_id"].(string)
	}
	if id == "" {
		return "", authFail(secrets.ErrAccessDenied,
			fmt.Sprintf("the wrapping token in %s does not hold a secret-id; wrap the answer of auth/%s/role/NAME/secret-id", a.secretIDFile, a.mount), nil)
	}
	a.lastWrapped, a.secretID = wrapping, id
	return id, nil
}

// readCredential reads a token or AppRole file, trimmed.
func readCredential(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer func() { _ = f.Close() }()
	b, err := io.ReadAll(io.LimitReader(f, maxCredentialFile))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return s, nil
}

// loginCause reduces a failed login's error to Vault's answer.
func loginCause(err error) error {
	var re *responseError
	if errors.As(err, &re) {
		return responseCause(re)
	}
	return err
}

// loginError classifies a login that got no usable answer.
func loginError(d *Driver, err error) error {
	var re *responseError
	if errors.As(err, &re) {
		if re.StatusCode == 429 || re.StatusCode >= 500 || plainToTLS(re) {
			return classifyResponse(secrets.Ref{}, op{kind: opRead}, re)
		}
		return authFail(secrets.ErrAccessDenied, "vault refused the login", responseCause(re))
	}
	return d.transportError(secrets.Ref{}, err)
}

// rejectedCredentials reports a login answer that says the role-id or the
// secret-id is wrong, whatever its status.
func rejectedCredentials(err error) bool {
	var re *responseError
	if !errors.As(err, &re) {
		return false
	}
	for _, m := range re.Errors {
		m = strings.ToLower(m)
		if strings.Contains(m, "invalid secret id") || strings.Contains(m, "invalid role id") || strings.Contains(m, "invalid role or secret id") {
			return true
		}
	}
	return false
}
