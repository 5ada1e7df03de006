package vault

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"github.com/dsv-plugin/dsv/secrets"
)

// attempts records the last failed try of the requests of one call. The
// client retries refused connections, 429 and 5xx answers with backoff; when
// the call's TIMEOUT runs out while it does, the error then says why the
// tries failed (vault down, sealed, rate limiting), not only that time ran
// out.
type attempts struct {
	mu     sync.Mutex
	tries  int
	status int   // HTTP status of the last failed try, or 0
	err    error // transport error of the last failed try, or nil
}

type attemptsKey struct{}

// withAttempts gives ctx a fresh record, unless it has one already.
func withAttempts(ctx context.Context) context.Context {
	if _, ok := ctx.Value(attemptsKey{}).(*attempts); ok {
		return ctx
	}
	return context.WithValue(ctx, attemptsKey{}, &attempts{})
}

func (a *attempts) record(resp *http.Response, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded):
		a.tries++
		a.status, a.err = 0, err
	case resp != nil && resp.StatusCode >= 400:
		a.tries++
		a.status, a.err = resp.StatusCode, nil
	case resp != nil:
		// An answer: what failed before it is not why a later request
		// of the call runs out of time.
		a.tries, a.status, a.err = 0, 0, nil
	}
}

// timedOut classifies a call whose context expired: by its last failed try
// when there was one, else as a plain timeout.
func (d *Driver) timedOut(ctx context.Context, ref secrets.Ref, o op, expired error) error {
	a, ok := ctx.Value(attemptsKey{}).(*attempts)
	if !ok {
		return expired
	}
	a.mu.Lock()
	tries, status, err := a.tries, a.status, a.err
	a.mu.Unlock()
	var last error
	switch {
	case err != nil:
		last = d.transportError(ref, err)
	case status != 0:
		last = classifyResponse(ref, o, &responseError{StatusCode: status})
	default:
		return expired
	}
	var se *secrets.Error
	if !errors.As(last, &se) {
		return expired
	}
	c := *se
	giveUp := fmt.Sprintf("gave up at the TIMEOUT plugin setting after %d tries", tries)
	if c.Hint == "" {
		c.Hint = giveUp
	} else {
		c.Hint += "; " + giveUp
	}
	return &c
}
