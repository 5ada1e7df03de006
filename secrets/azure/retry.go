package azure

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"time"
)

// maxBody caps an answer read: a secret holds at most 25 KiB
// (https://learn.microsoft.com/azure/key-vault/general/service-limits),
// about six times that as escaped JSON at worst; a token answer is a few
// KiB.
const maxBody = 1 << 20

// answer is an HTTP answer, read whole, so that a try's context can end
// before its body is looked at.
type answer struct {
	status int
	header http.Header
	body   []byte
	// url is the request's URL without its query, for messages.
	url string
}

// errTooLarge is an answer above maxBody.
var errTooLarge = errors.New("the answer is larger than 1 MiB")

// roundTrip sends req and reads the answer.
func roundTrip(c *http.Client, req *http.Request) (*answer, error) {
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxBody {
		return nil, errTooLarge
	}
	u := *req.URL
	u.RawQuery, u.User = "", nil
	return &answer{status: resp.StatusCode, header: resp.Header, body: body, url: u.String()}, nil
}

// retryPolicy says which failures are tried again, how often and after
// what wait: the SDK's retry policy (azcore/runtime/policy_retry.go) with
// the options the backend gave it (MaxRetries 2).
type retryPolicy struct {
	maxRetries int
	// delay is the base wait: the n-th retry waits (2^n-1)*delay,
	// times a jitter in [0.8, 1.3), at most maxDelay; a Retry-After
	// header takes its place, and one longer than maxDelay is not
	// waited for.
	delay, maxDelay time.Duration
	// tryTimeout bounds each try; 0: only the caller's context does.
	tryTimeout time.Duration
	statuses   []int
}

var (
	// httpRetry is Key Vault's and Entra ID's.
	httpRetry = retryPolicy{maxRetries: 2, delay: 800 * time.Millisecond, maxDelay: 60 * time.Second,
		statuses: []int{http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
			http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout}}
	// imdsRetry is the managed identity endpoint's, whose documentation
	// says to retry 404, 410, 429 and 5xx
	// (https://learn.microsoft.com/entra/identity/managed-identities-azure-resources/how-to-use-vm-token#error-handling);
	// azidentity's IMDS defaults with our MaxRetries.
	imdsRetry = retryPolicy{maxRetries: 2, delay: 2 * time.Second, maxDelay: 25 * time.Second, tryTimeout: time.Minute,
		statuses: []int{http.StatusNotFound, http.StatusGone, http.StatusTooManyRequests, 500, 501, 502, 503, 504, 505, 506, 507, 508, 510, 511}}
)

// tryRoom is the least time a wait must leave before the deadline for the
// try after it (and, for a managed identity, the IMDS probe after that).
const tryRoom = 500 * time.Millisecond

// finalError is a failure no retry cures: no token, a challenge refused.
type finalError struct{ err error }

func (e *finalError) Error() string { return e.err.Error() }
func (e *finalError) Unwrap() error { return e.err }

// do runs try until it gives an answer whose status is not retried, or a
// failure that is not, or the retries are spent. A failure to connect or
// send is retried (the requests are idempotent: a GET, a token request),
// except a TLS certificate that is not trusted, which a retry cannot
// change. A wait that would leave less than tryRoom before ctx's deadline
// is not begun: the last answer is returned while the caller can still
// report it.
func (p retryPolicy) do(ctx context.Context, try func(ctx context.Context) (*answer, error)) (*answer, error) {
	for n := 1; ; n++ {
		tctx, cancel := ctx, context.CancelFunc(func() {})
		if p.tryTimeout > 0 {
			tctx, cancel = context.WithTimeout(ctx, p.tryTimeout)
		}
		a, err := try(tctx)
		cancel()
		if cerr := ctx.Err(); cerr != nil {
			if err == nil {
				err = cerr
			}
			return a, err
		}
		var fe *finalError
		switch {
		case errors.As(err, &fe):
			return a, fe.err
		case err != nil && tlsError(err):
			return a, err
		case err == nil && !slices.Contains(p.statuses, a.status):
			return a, nil
		case n > p.maxRetries:
			return a, err
		}
		delay := retryAfter(a)
		if delay <= 0 {
			delay = p.backoff(n)
		} else if delay > p.maxDelay {
			return a, err
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < delay+tryRoom {
			return a, err
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return a, ctx.Err()
		case <-t.C:
		}
	}
}

// backoff is the wait before retry n (1, 2, ...).
func (p retryPolicy) backoff(n int) time.Duration {
	d := time.Duration(float64(time.Duration(1<<n-1)*p.delay) * (0.8 + rand.Float64()/2)) //nolint:gosec // jitter
	return min(d, p.maxDelay)
}

// retryAfter is the wait an answer asks for, 0 for none: retry-after-ms
// and x-ms-retry-after-ms (milliseconds), then Retry-After (seconds or an
// HTTP date), as the SDK reads them.
func retryAfter(a *answer) time.Duration {
	if a == nil {
		return 0
	}
	for _, h := range []string{"Retry-After-Ms", "X-Ms-Retry-After-Ms"} {
		if n, err := strconv.Atoi(a.header.Get(h)); err == nil && n > 0 {
			return time.Duration(n) * time.Millisecond
		}
	}
	v := a.header.Get("Retry-After")
	if n, err := strconv.Atoi(v); err == nil {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return time.Until(t)
	}
	return 0
}
