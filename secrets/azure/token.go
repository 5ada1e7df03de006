package azure

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"sync"
	"time"
)

// accessToken is a bearer token and when to renew it.
type accessToken struct {
	token     string
	expiresOn time.Time
	// refreshOn is when the authority suggests renewing it; zero: five
	// minutes before expiresOn.
	refreshOn time.Time
}

// Token renewal, as the SDK's token cache (azcore's BearerTokenPolicy and
// MSAL) does it.
const (
	// refreshMargin: a token is renewed this long before it expires.
	refreshMargin = 5 * time.Minute
	// refreshBackoff: a failed early renewal is not tried again for this
	// long; the current token serves meanwhile.
	refreshBackoff = 30 * time.Second
	// halfLife: a token living longer than this without a refresh_in is
	// renewed at half its life.
	halfLife = 2 * time.Hour
)

func (t accessToken) valid(now time.Time) bool { return t.token != "" && now.Before(t.expiresOn) }

func (t accessToken) refreshDue(now time.Time) bool {
	if t.refreshOn.IsZero() {
		return !now.Before(t.expiresOn.Add(-refreshMargin))
	}
	return !now.Before(t.refreshOn)
}

// tokenCache holds one token. get returns it while it is fresh; once it is
// due for renewal, one caller renews it while the others use it, and a
// failed renewal keeps it until it expires; an expired one must be renewed.
type tokenCache struct {
	sem chan struct{} // held by the one caller that renews

	mu          sync.Mutex
	tok         accessToken
	lastAttempt time.Time
}

func newTokenCache() *tokenCache { return &tokenCache{sem: make(chan struct{}, 1)} }

// get returns the token, renewing it with acquire when needed.
func (c *tokenCache) get(ctx context.Context, acquire func(context.Context) (accessToken, error)) (accessToken, error) {
	for {
		c.mu.Lock()
		tok, now := c.tok, time.Now()
		valid := tok.valid(now)
		if valid && (!tok.refreshDue(now) || now.Sub(c.lastAttempt) < refreshBackoff) {
			c.mu.Unlock()
			return tok, nil
		}
		c.mu.Unlock()
		if valid {
			select {
			case c.sem <- struct{}{}:
			default:
				return tok, nil // another caller renews it
			}
		} else {
			select {
			case c.sem <- struct{}{}:
			case <-ctx.Done():
				return accessToken{}, ctx.Err()
			}
		}
		c.mu.Lock()
		if c.tok != tok {
			// Renewed (or expired) while this caller waited: look again.
			c.mu.Unlock()
			<-c.sem
			continue
		}
		c.lastAttempt = time.Now()
		c.mu.Unlock()
		got, err := acquire(ctx)
		c.mu.Lock()
		if err == nil {
			c.tok = got
		}
		c.mu.Unlock()
		<-c.sem
		switch {
		case err == nil:
			return got, nil
		case valid:
			return tok, nil
		}
		return accessToken{}, err
	}
}

// expire drops the token: the next get acquires a new one.
func (c *tokenCache) expire() {
	c.mu.Lock()
	c.tok = accessToken{}
	c.mu.Unlock()
}

// tokenSet is one cache per scope (and tenant).
type tokenSet struct {
	mu sync.Mutex
	m  map[string]*tokenCache
}

func (s *tokenSet) cache(key string) *tokenCache {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = make(map[string]*tokenCache)
	}
	c, ok := s.m[key]
	if !ok {
		c = newTokenCache()
		s.m[key] = c
	}
	return c
}

// flexInt is a JSON number that may come as a string: the v2.0 token
// endpoint sends numbers, IMDS strings.
type flexInt int64

func (f *flexInt) UnmarshalJSON(b []byte) error {
	b = bytes.Trim(b, `"`)
	if len(b) == 0 || string(b) == "null" {
		return nil
	}
	n, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return errors.New("not a number")
	}
	*f = flexInt(n)
	return nil
}

// errNoToken is a success answer without a token. The decoder's message
// is dropped: it could quote the token.
var errNoToken = errors.New("the answer holds no access token")

// parseToken reads a token answer (Entra's v2.0 token endpoint, IMDS)
// of a request sent at start.
func parseToken(body []byte, start time.Time) (accessToken, error) {
	var r struct {
		AccessToken string  `json:"access_token"`
		ExpiresIn   flexInt `json:"expires_in"`
		ExpiresOn   flexInt `json:"expires_on"`
		RefreshIn   flexInt `json:"refresh_in"`
	}
	if err := json.Unmarshal(body, &r); err != nil || r.AccessToken == "" {
		return accessToken{}, errNoToken
	}
	t := accessToken{token: r.AccessToken}
	switch {
	case r.ExpiresIn > 0:
		t.expiresOn = start.Add(time.Duration(r.ExpiresIn) * time.Second)
	case r.ExpiresOn > 0:
		t.expiresOn = time.Unix(int64(r.ExpiresOn), 0)
	default:
		return accessToken{}, errors.New("the answer gives no expiry of the token")
	}
	switch life := t.expiresOn.Sub(start); {
	case r.RefreshIn > 0:
		t.refreshOn = start.Add(time.Duration(r.RefreshIn) * time.Second)
	case life >= halfLife:
		t.refreshOn = start.Add(life / 2)
	}
	return t, nil
}
