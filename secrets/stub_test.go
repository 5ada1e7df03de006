package secrets

import "context"

// stub is a backend that only has a name, for registry tests.
type stub string

func (s stub) Name() string                               { return string(s) }
func (s stub) Validate(Ref) error                         { return nil }
func (s stub) Fetch(context.Context, Ref) (Secret, error) { return Secret{}, nil }
