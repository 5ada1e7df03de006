// Package awssm is a stand-in for the aws backend in test/tools/rss/per-store.sh:
// the API cmd/dsv uses, none of the backend's imports. Never built into dsv.
package awssm

import (
	"context"
	"errors"

	"github.com/rs/zerolog"

	"github.com/dsv-plugin/dsv/secrets"
)

// Name is the backend's registry name.
const Name = "aws"

// Driver fails every fetch.
type Driver struct{}

// Name returns the registry name.
func (d *Driver) Name() string { return Name }

// Validate accepts every reference.
func (d *Driver) Validate(secrets.Ref) error { return nil }

// Fetch fails.
func (d *Driver) Fetch(context.Context, secrets.Ref) (secrets.Secret, error) {
	return secrets.Secret{}, errors.New("aws: not in this build")
}

// Config holds what cmd/dsv sets.
type Config struct {
	DefaultRegion string
	Logger        zerolog.Logger
}

// ValidRegion accepts every region.
func ValidRegion(string) bool { return true }

// New returns the stand-in.
func New(Config) *Driver { return &Driver{} }
