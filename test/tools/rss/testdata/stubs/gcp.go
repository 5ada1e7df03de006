// Package gcp is a stand-in for the gcp backend in test/tools/rss/per-store.sh:
// the API cmd/dsv uses, none of the backend's imports. Never built into dsv.
package gcp

import (
	"context"
	"errors"

	"github.com/rs/zerolog"

	"github.com/dsv-plugin/dsv/secrets"
)

// Name is the backend's registry name.
const Name = "gcp"

// Driver fails every fetch.
type Driver struct{}

// Name returns the registry name.
func (d *Driver) Name() string { return Name }

// Validate accepts every reference.
func (d *Driver) Validate(secrets.Ref) error { return nil }

// Fetch fails.
func (d *Driver) Fetch(context.Context, secrets.Ref) (secrets.Secret, error) {
	return secrets.Secret{}, errors.New("gcp: not in this build")
}

// Config holds what cmd/dsv sets.
type Config struct{}

// ConfigFromEnv returns an empty Config.
func ConfigFromEnv(func(string) string) (Config, error) { return Config{}, nil }

// New returns the stand-in.
func New(Config, zerolog.Logger) *Driver { return &Driver{} }
