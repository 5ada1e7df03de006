// Package azure is a stand-in for the azure backend in test/tools/rss/per-store.sh:
// the API cmd/dsv uses, none of the backend's imports. Never built into dsv.
package azure

import (
	"context"
	"errors"

	"github.com/rs/zerolog"

	"github.com/dsv-plugin/dsv/secrets"
)

// Name is the backend's registry name.
const Name = "azure"

// Driver fails every fetch.
type Driver struct{}

// Name returns the registry name.
func (d *Driver) Name() string { return Name }

// Validate accepts every reference.
func (d *Driver) Validate(secrets.Ref) error { return nil }

// Fetch fails.
func (d *Driver) Fetch(context.Context, secrets.Ref) (secrets.Secret, error) {
	return secrets.Secret{}, errors.New("azure: not in this build")
}

// Config holds what cmd/dsv sets.
type Config struct{}

// Validate accepts every Config.
func (Config) Validate() error { return nil }

// ConfigFromEnv returns an empty Config.
func ConfigFromEnv(func(string) string) (Config, error) { return Config{}, nil }

// New returns the stand-in.
func New(Config, zerolog.Logger) (*Driver, error) { return &Driver{}, nil }
