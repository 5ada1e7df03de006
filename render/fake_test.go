package render

import (
	"context"
	"fmt"
	"strings"

	"github.com/dsv-plugin/dsv/secrets"
)

// fakeBackend is a backend that refuses names starting with "invalid" and
// reads nothing: parsing tests need only its name, its validation and its
// collections.
type fakeBackend struct{ name string }

func (b *fakeBackend) Name() string { return b.name }

// IsCollection makes a name ending in '/' a collection (secrets.Collector).
func (b *fakeBackend) IsCollection(ref secrets.Ref) bool { return strings.HasSuffix(ref.Name, "/") }
func (b *fakeBackend) Validate(ref secrets.Ref) error {
	if strings.HasPrefix(ref.Name, "invalid") {
		return fmt.Errorf("option %q: %q is not a valid name", "secret", ref.Name)
	}
	return nil
}
func (b *fakeBackend) Fetch(context.Context, secrets.Ref) (secrets.Secret, error) {
	return secrets.Secret{}, secrets.ErrNotFound
}

// IssuesAnew makes a name starting with "issue/" issue a new value at every
// read (secrets.Issuer), as Vault's method=write does.
func (b *fakeBackend) IssuesAnew(ref secrets.Ref) bool { return strings.HasPrefix(ref.Name, "issue/") }
