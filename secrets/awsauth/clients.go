package awsauth

import (
	"context"
	"sync"
)

// Clients keeps one client per region, built on first use: the aws and
// ssm backends each hold one. Building reads only local configuration, so
// holding the lock while it runs is cheap. Safe for concurrent use.
type Clients[T any] struct {
	build func(ctx context.Context, region string) (T, error)

	mu sync.Mutex
	m  map[string]T // by region; "" is the SDK's default region
}

// NewClients returns a cache that builds clients with build.
func NewClients[T any](build func(ctx context.Context, region string) (T, error)) *Clients[T] {
	return &Clients[T]{build: build, m: map[string]T{}}
}

// Get returns the client of region, building it on first use.
func (c *Clients[T]) Get(ctx context.Context, region string) (T, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cl, ok := c.m[region]; ok {
		return cl, nil
	}
	cl, err := c.build(ctx, region)
	if err != nil {
		return cl, err
	}
	c.m[region] = cl
	return cl, nil
}
