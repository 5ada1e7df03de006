package gcptest

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"
)

// TestTokenEndpointChecksSignature: the fake's token endpoint checks the
// JWT's signature against the key it issued, so a test that reads through
// it proves that the client signed with the right key: a key ID with
// another key's private half is refused, the real pair is accepted.
func TestTokenEndpointChecksSignature(t *testing.T) {
	srv := Start(t)
	const email = "signer@" + Project + ".iam.gserviceaccount.com"
	good, _ := srv.ServiceAccountKey(email)
	other, _ := srv.ServiceAccountKey(email)
	var a, b map[string]string
	if json.Unmarshal(good, &a) != nil || json.Unmarshal(other, &b) != nil {
		t.Fatal("keys.create gave no service-account JSON")
	}
	if !strings.HasPrefix(a["token_uri"], srv.URL) {
		t.Fatalf("token_uri %q is not the fake's", a["token_uri"])
	}
	a["private_key"] = b["private_key"] // a's key ID, b's private key
	forged, _ := json.Marshal(a)

	token := func(js []byte) error {
		ctx := context.WithValue(context.Background(), oauth2.HTTPClient, &http.Client{Timeout: 10 * time.Second})
		creds, err := google.CredentialsFromJSONWithTypeAndParams(ctx, js, google.ServiceAccount,
			google.CredentialsParams{Scopes: []string{"https://www.googleapis.com/auth/cloud-platform"}})
		if err != nil {
			return err
		}
		_, err = oauth2.ReuseTokenSource(nil, creds.TokenSource).Token()
		return err
	}
	if err := token(forged); err == nil || !strings.Contains(err.Error(), "Invalid JWT Signature") {
		t.Fatalf("a JWT signed with another key: %v, want invalid_grant Invalid JWT Signature", err)
	}
	if err := token(good); err != nil {
		t.Fatalf("the real key: %v", err)
	}
}
