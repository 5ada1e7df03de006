package azure

import (
	"net/http"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/dsv-plugin/dsv/secrets"
	"github.com/dsv-plugin/dsv/test/servers/azuretest"
)

// The tests below run the real clients against test/fakes/azurefake failing the
// way Azure does: tokens that expire, throttling with Retry-After, server
// errors.

// TestIntegrationTokenExpiry: Entra's tokens live two seconds here; the
// vault refuses one once it expired, and the backend reads on with fresh
// ones.
func TestIntegrationTokenExpiry(t *testing.T) {
	const lifetime = 2 * time.Second
	env := azuretest.Start(t, azuretest.TokenLifetime(lifetime))
	v := env.Set("db", "pw", nil)

	// The fake enforces expiry: a token the vault took is refused once
	// its lifetime is over.
	cred, err := azidentity.NewClientSecretCredential(azuretest.Tenant, azuretest.ClientSecretApp, env.ClientSecret,
		&azidentity.ClientSecretCredentialOptions{ClientOptions: env.ClientOptions(), DisableInstanceDiscovery: true})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := cred.GetToken(fetchCtx(t), policy.TokenRequestOptions{Scopes: []string{"https://vault.azure.net/.default"}})
	if err != nil {
		t.Fatal(err)
	}
	get := func() int {
		req, _ := http.NewRequestWithContext(fetchCtx(t), http.MethodGet, env.VaultURL+"/secrets/db?api-version=7.5", nil)
		req.Header.Set("Authorization", "Bearer "+tok.Token)
		resp, err := env.ClientOptions().Transport.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	if got := get(); got != http.StatusOK {
		t.Fatalf("a fresh token: HTTP %d, want 200", got)
	}
	if time.Until(tok.ExpiresOn) > lifetime+time.Second {
		t.Fatalf("the token expires at %v, in more than %v", tok.ExpiresOn, lifetime)
	}
	waitPast(tok.ExpiresOn)
	if got := get(); got != http.StatusUnauthorized {
		t.Fatalf("an expired token: HTTP %d, want 401", got)
	}

	// The backend: a read, then another once its token expired.
	d, _ := newIntegrationDriver(t, env, azuretest.ClientSecretApp, map[string]string{"client-secret": env.ClientSecretFile})
	before := env.EntraCounts()["token"]
	wantFetch(t, d, secrets.Ref{Backend: Name, Name: "db"}, "pw", v)
	first := time.Now()
	if n := env.EntraCounts()["token"] - before; n != 1 {
		t.Fatalf("%d token requests for the first read, want 1", n)
	}
	waitPast(first.Add(lifetime))
	wantFetch(t, d, secrets.Ref{Backend: Name, Name: "db"}, "pw", v)
	if n := env.EntraCounts()["token"] - before; n < 2 {
		t.Errorf("%d token requests for two reads across an expiry, want a fresh token for the second", n)
	}
}

// waitPast returns once the clock is past t: the event is the expiry.
func waitPast(t time.Time) {
	for time.Now().Before(t.Add(100 * time.Millisecond)) {
		time.Sleep(50 * time.Millisecond)
	}
}

// TestIntegrationThrottled: a 429 is retried after its Retry-After; one
// that outlasts the retries fails with the throttling hint.
func TestIntegrationThrottled(t *testing.T) {
	env := azuretest.Start(t)
	v := env.Set("db", "pw", nil)
	d, _ := newIntegrationDriver(t, env, azuretest.ClientSecretApp, map[string]string{"client-secret": env.ClientSecretFile})
	ref := secrets.Ref{Backend: Name, Name: "db"}
	wantFetch(t, d, ref, "pw", v) // the token and the challenge

	before := env.VaultCounts()["get"]
	env.FailVault(azuretest.Fault{Status: http.StatusTooManyRequests, RetryAfter: 2})
	start := time.Now()
	wantFetch(t, d, ref, "pw", v)
	if took := time.Since(start); took < 2*time.Second {
		t.Errorf("the read took %v: the retry did not wait the 2s of Retry-After (the SDK's own first delay is under 1.1s)", took)
	}
	if n := env.VaultCounts()["get"] - before; n != 2 {
		t.Errorf("%d GETs, want 2 (one throttled, one retried)", n)
	}

	env.FailVault(azuretest.Fault{Status: http.StatusTooManyRequests, RetryAfter: 1},
		azuretest.Fault{Status: http.StatusTooManyRequests, RetryAfter: 1},
		azuretest.Fault{Status: http.StatusTooManyRequests, RetryAfter: 1})
	wantFetchError(t, d, ref, secrets.ErrThrottled, "HTTP 429", hintThrottled)
	wantFetch(t, d, ref, "pw", v) // nothing left queued
}

// TestIntegrationServerErrors: 5xx answers of the vault and of Entra ID
// are retried; lasting ones fail as unavailable, with what failed.
func TestIntegrationServerErrors(t *testing.T) {
	env := azuretest.Start(t)
	v := env.Set("db", "pw", nil)
	d, _ := newIntegrationDriver(t, env, azuretest.ClientSecretApp, map[string]string{"client-secret": env.ClientSecretFile})
	ref := secrets.Ref{Backend: Name, Name: "db"}
	wantFetch(t, d, ref, "pw", v)

	before := env.VaultCounts()["get"]
	env.FailVault(azuretest.Fault{Status: http.StatusServiceUnavailable}, azuretest.Fault{Status: http.StatusInternalServerError})
	wantFetch(t, d, ref, "pw", v)
	if n := env.VaultCounts()["get"] - before; n != 3 {
		t.Errorf("%d GETs, want 3 (two failed, one retried)", n)
	}
	env.FailVault(azuretest.Fault{Status: 500}, azuretest.Fault{Status: 500}, azuretest.Fault{Status: 500})
	wantFetchError(t, d, ref, secrets.ErrUnavailable, "HTTP 500", hintServer)

	// Entra ID failing: a backend without a token yet cannot get one.
	fresh, _ := newIntegrationDriver(t, env, azuretest.ClientSecretApp, map[string]string{"client-secret": env.ClientSecretFile})
	var many []azuretest.Fault
	for range 8 {
		many = append(many, azuretest.Fault{Status: http.StatusServiceUnavailable})
	}
	env.FailEntra(many...)
	wantFetchError(t, fresh, ref, secrets.ErrUnavailable, "client secret", "Microsoft Entra ID failed")
}
