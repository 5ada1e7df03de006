// Package secrets defines the SecretStoreDriver interface that every backend
// implements, the reference to a secret that volumes hand to a backend, the
// error classes backends report, and the registry that maps backend names to
// drivers. Each backend lives in its own package below this one.
package secrets

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Ref names one secret object in one backend, as parsed from volume options.
// It never holds a secret value.
type Ref struct {
	// Backend is the registry name of the backend ("aws", "file").
	Backend string `json:"backend"`
	// Name is the object's name, ARN or path inside the backend.
	Name string `json:"secret"`
	// Key, when set, selects one top-level key of a JSON object secret.
	Key string `json:"key,omitempty"`
	// VersionID pins one version of the object.
	VersionID string `json:"versionId,omitempty"`
	// VersionStage selects a staging label (AWS: AWSCURRENT, AWSPREVIOUS, ...).
	VersionStage string `json:"versionStage,omitempty"`
	// Region overrides the plugin's region for region-scoped backends.
	Region string `json:"region,omitempty"`
	// Params holds backend-specific options, as declared by ParamsDriver.
	Params map[string]string `json:"params,omitempty"`
}

// String describes the object for errors and logs: `aws secret "prod/db"`.
func (r Ref) String() string {
	return fmt.Sprintf("%s secret %q", r.Backend, r.Name)
}

// Secret is a fetched value and what identifies the version that was read.
type Secret struct {
	// Value is the secret's bytes. It must never be logged or put in an error.
	Value []byte
	// Version identifies what was read (a version id, a modification time);
	// it is shown in `docker volume inspect` and must not be derived from Value.
	Version string
	// Lease is set for secrets that expire (Vault dynamic secrets); nil for
	// static ones. A leased secret is never cached or shared between volumes.
	Lease *Lease
	// NoReuse marks a value that must go to one consumer only (a single-use
	// wrapping token, a leased credential): never cached, never shared.
	NoReuse bool
}

// Unique reports whether the value must not be cached or shared.
func (s Secret) Unique() bool { return s.NoReuse || s.Lease != nil }

// Lease is a backend's time-limited grant of a secret.
type Lease struct {
	ID        string        `json:"id"`
	Duration  time.Duration `json:"duration"`
	Renewable bool          `json:"renewable"`
	// Issuer identifies what the lease lives no longer than, when the
	// backend says (Vault: the login token that read it, by a hash of its
	// accessor; never a credential). Opaque; persisted with the lease.
	Issuer string `json:"issuer,omitempty"`
}

// Canonicalizer is implemented by backends where one object goes by more
// than one name (Vault KV v2: secret/app/db and secret/data/app/db).
// Canonical returns the name the object is known by, which the ALLOW
// setting judges before a read. It may ask the backend (a mount lookup).
type Canonicalizer interface {
	Canonical(ctx context.Context, ref Ref) (string, error)
}

// Normalizer is implemented by backends whose secret option can also say
// what a common option says (SSM: /prod/db:3 is version-id 3 of /prod/db).
// ParseRef calls Normalize before Validate, so that one object has one
// spelling for the cache, ALLOW, file names and `docker volume inspect`.
// Normalize leaves a reference it cannot normalize as it is, for Validate
// to report.
type Normalizer interface {
	Normalize(ref Ref) Ref
}

// Collector is implemented by backends where one reference can name a set
// of objects (an SSM path: /prod/app/). Fetch of such a reference returns
// a JSON object from each object's name, relative to the reference (it
// may hold '/' for a deeper object), to its value: key= picks one of them,
// and a volume writes one file per name, as for key=*.
type Collector interface {
	IsCollection(ref Ref) bool
}

// IssuerNotifier is implemented by backends whose leases end with what
// issued them (Vault: a lease ends with the login token that read it).
// IssuerEnded receives a value when an issuer ended or is about to: the
// holders of leases should renew them at once, and Renew fails for those
// whose issuer is gone, so that a fresh secret replaces them in time.
type IssuerNotifier interface {
	IssuerEnded() <-chan struct{}
}

// Issuer is implemented by backends where some references issue a new
// value at every read, known from the reference alone (Vault: method=write,
// wrap-ttl). Such values are never served stale.
type Issuer interface {
	IssuesAnew(ref Ref) bool
}

// LeaseManager is implemented by backends whose secrets carry leases.
type LeaseManager interface {
	// Renew extends a lease and returns its new terms.
	Renew(ctx context.Context, ref Ref, lease Lease) (Lease, error)
	// Revoke ends a lease; revoking an unknown or expired lease is not an error.
	Revoke(ctx context.Context, ref Ref, leaseID string) error
}

// SecretStoreDriver is one backend. Implementations must be safe for
// concurrent use: Docker mounts volumes in parallel.
type SecretStoreDriver interface {
	// Name is the value users give in the backend option.
	Name() string
	// Validate checks a reference at volume-create time without contacting the
	// backend. It returns every problem at once, each naming the option.
	Validate(ref Ref) error
	// Fetch reads the secret. ctx carries the plugin's backend timeout.
	// Errors wrap one of the error classes below.
	Fetch(ctx context.Context, ref Ref) (Secret, error)
}

// Error classes. Backends wrap their failures in an *Error whose Kind is one
// of these, so that the volume driver and users can tell them apart.
var (
	ErrNotFound     = errors.New("not found")
	ErrAccessDenied = errors.New("access denied")
	ErrUnavailable  = errors.New("backend unreachable")
	ErrTimeout      = errors.New("timed out")
	ErrBadValue     = errors.New("unusable value")
	// ErrThrottled is the store's answer that the caller asks too often
	// (AWS ThrottlingException, HTTP 429). It is a kind of ErrUnavailable:
	// errors.Is(err, ErrUnavailable) holds for it, so stale-if-error and
	// every check of unavailability treat it so; the store gate (see
	// secrets/gate) retries it with backoff.
	ErrThrottled error = &subKind{msg: "throttled", of: ErrUnavailable}
)

// subKind is an error class that is also a case of a broader one.
type subKind struct {
	msg string
	of  error
}

func (k *subKind) Error() string { return k.msg }
func (k *subKind) Unwrap() error { return k.of }

// Error is a backend failure that names the object and says what to fix.
// Its text never contains secret bytes.
type Error struct {
	Ref  Ref
	Kind error  // one of the Err* classes
	Hint string // what the user should do, lower-case, may be empty
	Err  error  // the underlying cause, may be nil
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Ref.String())
	if e.Ref.Key != "" {
		fmt.Fprintf(&b, " key %q", e.Ref.Key)
	}
	b.WriteString(": ")
	b.WriteString(e.Kind.Error())
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	if e.Hint != "" {
		b.WriteString(" (")
		b.WriteString(e.Hint)
		b.WriteString(")")
	}
	return b.String()
}

// Unwrap lets errors.Is match both the class and the cause.
func (e *Error) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Err}
}

// Fail builds an *Error; a small helper so backends read uniformly.
func Fail(ref Ref, kind error, hint string, cause error) *Error {
	return &Error{Ref: ref, Kind: kind, Hint: hint, Err: cause}
}

// FromContext turns a context error into a timeout or cancellation failure,
// or returns nil when ctx is still live.
func FromContext(ctx context.Context, ref Ref) error {
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return Fail(ref, ErrTimeout, "no answer within the TIMEOUT plugin setting; check that the backend is reachable from the host, or raise TIMEOUT", nil)
	case ctx.Err() != nil:
		return Fail(ref, ErrUnavailable, "", ctx.Err())
	}
	return nil
}

// Registry maps backend names to drivers. It is built once in main and read
// concurrently afterwards; it has no package-level state.
type Registry struct {
	drivers map[string]SecretStoreDriver
}

// NewRegistry returns a registry holding the given drivers.
func NewRegistry(drivers ...SecretStoreDriver) (*Registry, error) {
	r := &Registry{drivers: make(map[string]SecretStoreDriver, len(drivers))}
	for _, d := range drivers {
		if _, dup := r.drivers[d.Name()]; dup {
			return nil, fmt.Errorf("backend %q registered twice", d.Name())
		}
		r.drivers[d.Name()] = d
	}
	return r, nil
}

// Get returns the named driver.
func (r *Registry) Get(name string) (SecretStoreDriver, bool) {
	d, ok := r.drivers[name]
	return d, ok
}

// LeaseManager returns the named driver's lease manager, if it is one.
func (r *Registry) LeaseManager(name string) (LeaseManager, bool) {
	lm, ok := r.drivers[name].(LeaseManager)
	return lm, ok
}

// IsCollection reports whether ref names a set of objects (see Collector).
func (r *Registry) IsCollection(ref Ref) bool {
	c, ok := r.drivers[ref.Backend].(Collector)
	return ok && c.IsCollection(ref)
}

// IssuesAnew reports whether every read of ref issues a new value (see
// Issuer).
func (r *Registry) IssuesAnew(ref Ref) bool {
	i, ok := r.drivers[ref.Backend].(Issuer)
	return ok && i.IssuesAnew(ref)
}

// Names lists the registered backends, sorted, for error messages and docs.
func (r *Registry) Names() []string {
	names := make([]string, 0, len(r.drivers))
	for n := range r.drivers {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
