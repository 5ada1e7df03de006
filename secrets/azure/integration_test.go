package azure

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"
	"github.com/rs/zerolog"

	"github.com/dsv-plugin/dsv/secrets"
	"github.com/dsv-plugin/dsv/test/servers/azuretest"
)

// The tests below run the backend's own Key Vault and Entra ID clients against
// test/fakes/azurefake's Key Vault and Entra ID processes over HTTPS.

// newIntegrationDriver returns a driver of the local pair whose credentials
// mount (a folder of the test) holds the given files of env.
func newIntegrationDriver(t *testing.T, env *azuretest.Env, clientID string, files map[string]string, opts ...Option) (*Driver, Credentials) {
	t.Helper()
	dir := t.TempDir()
	creds := Credentials{
		TenantID:           azuretest.Tenant,
		ClientID:           clientID,
		SecretFile:         filepath.Join(dir, "client-secret"),
		CertificateFile:    filepath.Join(dir, "client-certificate.pem"),
		FederatedTokenFile: filepath.Join(dir, "federated-token"),
	}
	for name, src := range files {
		copyFile(t, src, filepath.Join(dir, name))
	}
	d, err := New(Config{DefaultVault: env.VaultURL, AuthorityHost: env.AuthorityHost, CAFile: env.CAFile, Credentials: creds}, zerolog.Nop(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return d, creds
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func fetchCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func wantFetch(t *testing.T, d *Driver, ref secrets.Ref, want, wantVersion string) {
	t.Helper()
	got, err := d.Fetch(fetchCtx(t), ref)
	if err != nil {
		t.Fatalf("Fetch(%+v): %v", ref, err)
	}
	if string(got.Value) != want {
		t.Fatalf("Fetch(%+v) = %q, want %q", ref, got.Value, want)
	}
	if wantVersion != "" && got.Version != wantVersion {
		t.Fatalf("Fetch(%+v).Version = %q, want %q", ref, got.Version, wantVersion)
	}
}

func wantFetchError(t *testing.T, d *Driver, ref secrets.Ref, class error, wants ...string) {
	t.Helper()
	got, err := d.Fetch(fetchCtx(t), ref)
	if err == nil {
		t.Fatalf("Fetch(%+v) = %q, want an error", ref, got.Value)
	}
	if !errors.Is(err, class) {
		t.Errorf("Fetch(%+v): %v; want class %v", ref, err, class)
	}
	var se *secrets.Error
	if !errors.As(err, &se) {
		t.Errorf("Fetch: %T is not a *secrets.Error", err)
	}
	for _, w := range wants {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("Fetch(%+v): %q does not contain %q", ref, err, w)
		}
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error spans lines: %q", err)
	}
}

func TestIntegrationClientSecret(t *testing.T) {
	env := azuretest.Start(t)
	d, creds := newIntegrationDriver(t, env, azuretest.ClientSecretApp, map[string]string{"client-secret": env.ClientSecretFile})

	v1 := env.Set("db", `{"user":"app","password":"pw-1"}`, nil)
	v2 := env.Set("db", `{"user":"app","password":"pw-2"}`, nil)
	url := env.VaultURL + "/secrets/db"

	t.Run("name in the default vault reads the current version", func(t *testing.T) {
		wantFetch(t, d, secrets.Ref{Backend: Name, Name: "db"}, `{"user":"app","password":"pw-2"}`, v2)
	})
	t.Run("secret URL, key", func(t *testing.T) {
		wantFetch(t, d, secrets.Ref{Backend: Name, Name: url, Key: "password"}, "pw-2", v2)
	})
	t.Run("version in the URL", func(t *testing.T) {
		wantFetch(t, d, secrets.Ref{Backend: Name, Name: url + "/" + v1, Key: "password"}, "pw-1", v1)
	})
	t.Run("version-id", func(t *testing.T) {
		wantFetch(t, d, secrets.Ref{Backend: Name, Name: "db", VersionID: v1, Key: "password"}, "pw-1", v1)
	})
	t.Run("not found", func(t *testing.T) {
		wantFetchError(t, d, secrets.Ref{Backend: Name, Name: "missing"}, secrets.ErrNotFound, "SecretNotFound", hintNotFound)
		wantFetchError(t, d, secrets.Ref{Backend: Name, Name: "db", VersionID: strings.Repeat("0", 32)}, secrets.ErrNotFound, "SecretNotFound")
	})
	t.Run("disabled version", func(t *testing.T) {
		v := env.Set("disabled", "x", nil)
		env.Update("disabled", v, azsecrets.SecretAttributes{Enabled: ptr(false)})
		ref := secrets.Ref{Backend: Name, Name: "disabled"}
		wantFetchError(t, d, ref, secrets.ErrBadValue, "disabled", "SecretDisabled", hintDisabled)
		_, err := d.Fetch(fetchCtx(t), ref)
		if !errors.Is(err, ErrDisabled) {
			t.Errorf("%v is not ErrDisabled", err)
		}
	})
	t.Run("expired version", func(t *testing.T) {
		env.Set("expired", "x", &azsecrets.SecretAttributes{Expires: ptr(time.Now().Add(-time.Hour))})
		ref := secrets.Ref{Backend: Name, Name: "expired"}
		wantFetchError(t, d, ref, secrets.ErrBadValue, "expired")
		_, err := d.Fetch(fetchCtx(t), ref)
		if !errors.Is(err, ErrExpired) {
			t.Errorf("%v is not ErrExpired", err)
		}
	})
	t.Run("not a JSON object with key", func(t *testing.T) {
		env.Set("plain", "not json", nil)
		wantFetchError(t, d, secrets.Ref{Backend: Name, Name: "plain", Key: "k"}, secrets.ErrBadValue, "not a JSON object")
	})
	t.Run("vault by host name: the challenge must name its domain", func(t *testing.T) {
		// localhost is no loopback IP address: the client checks the
		// challenge's resource (vault.azure.net) against the host.
		local := strings.Replace(url, "127.0.0.1", "localhost", 1)
		wantFetchError(t, d, secrets.Ref{Backend: Name, Name: local}, secrets.ErrAccessDenied, "challenge resource", hintChallenge)
	})
	t.Run("secret rotated in the credentials mount", func(t *testing.T) {
		if err := os.WriteFile(creds.SecretFile, []byte("wrong"), 0o600); err != nil {
			t.Fatal(err)
		}
		// The vault client holds a token; a new vault needs a new one.
		fresh, _ := New(Config{DefaultVault: env.VaultURL, AuthorityHost: env.AuthorityHost, CAFile: env.CAFile, Credentials: creds}, zerolog.Nop())
		wantFetchError(t, fresh, secrets.Ref{Backend: Name, Name: "db"}, secrets.ErrAccessDenied, "client secret", "invalid_client", "AADSTS7000215", hintRefused)
		copyFile(t, env.ClientSecretFile, creds.SecretFile)
		wantFetch(t, fresh, secrets.Ref{Backend: Name, Name: "db", Key: "password"}, "pw-2", v2)
	})
	t.Run("the secret never shows in errors", func(t *testing.T) {
		if err := os.WriteFile(creds.SecretFile, []byte("wrong-secret-value"), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { copyFile(t, env.ClientSecretFile, creds.SecretFile) })
		fresh, _ := New(Config{DefaultVault: env.VaultURL, AuthorityHost: env.AuthorityHost, CAFile: env.CAFile, Credentials: creds}, zerolog.Nop())
		_, err := fresh.Fetch(fetchCtx(t), secrets.Ref{Backend: Name, Name: "db"})
		if err == nil || strings.Contains(err.Error(), "wrong-secret-value") || strings.Contains(err.Error(), env.ClientSecret) {
			t.Fatalf("error %v: want one without the secret", err)
		}
	})
}

func TestIntegrationAccessDenied(t *testing.T) {
	env := azuretest.Start(t)
	d, _ := newIntegrationDriver(t, env, azuretest.DeniedApp, map[string]string{"client-secret": env.ClientSecretFile})
	env.Set("db", "x", nil)
	wantFetchError(t, d, secrets.Ref{Backend: Name, Name: "db"}, secrets.ErrAccessDenied,
		"Forbidden", "secrets/get", "Key Vault Secrets User")
}

func TestIntegrationNoIdentitySettings(t *testing.T) {
	env := azuretest.Start(t)
	d, _ := newIntegrationDriver(t, env, "", map[string]string{"client-secret": env.ClientSecretFile})
	wantFetchError(t, d, secrets.Ref{Backend: Name, Name: "db"}, secrets.ErrAccessDenied, "AZURE_TENANT_ID", "AZURE_CLIENT_ID")
}

func TestIntegrationUntrustedCA(t *testing.T) {
	env := azuretest.Start(t)
	dir := t.TempDir()
	copyFile(t, env.ClientSecretFile, filepath.Join(dir, "client-secret"))
	d, err := New(Config{DefaultVault: env.VaultURL, AuthorityHost: env.AuthorityHost, Credentials: Credentials{
		TenantID: azuretest.Tenant, ClientID: azuretest.ClientSecretApp, SecretFile: filepath.Join(dir, "client-secret"),
	}}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	wantFetchError(t, d, secrets.Ref{Backend: Name, Name: "db"}, secrets.ErrUnavailable, hintTLS)
}

func TestIntegrationCertificate(t *testing.T) {
	env := azuretest.Start(t)
	d, _ := newIntegrationDriver(t, env, azuretest.CertificateApp, map[string]string{"client-certificate.pem": env.CertificateFile})
	v := env.Set("cert-read", "by-certificate", nil)
	wantFetch(t, d, secrets.Ref{Backend: Name, Name: "cert-read"}, "by-certificate", v)
}

func TestIntegrationWorkloadIdentity(t *testing.T) {
	env := azuretest.Start(t)
	d, _ := newIntegrationDriver(t, env, azuretest.WorkloadApp, map[string]string{"federated-token": env.FederatedTokenFile})
	v := env.Set("wi-read", "by-workload-identity", nil)
	wantFetch(t, d, secrets.Ref{Backend: Name, Name: "wi-read"}, "by-workload-identity", v)
}

// imdsAddr is the managed identity endpoint's fixed address.
const imdsAddr = "169.254.169.254:80"

func TestIntegrationManagedIdentity(t *testing.T) {
	env := azuretest.Start(t)
	// The IMDS address is fixed; the dialer sends it to the local
	// endpoint, everything else where it was going.
	var dialer net.Dialer
	toLocal := func(target string) func(ctx context.Context, network, addr string) (net.Conn, error) {
		return func(ctx context.Context, network, addr string) (net.Conn, error) {
			if addr == imdsAddr {
				addr = target
			}
			return dialer.DialContext(ctx, network, addr)
		}
	}
	t.Run("no credential files: the host's managed identity", func(t *testing.T) {
		d, _ := newIntegrationDriver(t, env, azuretest.ManagedIdentityID, nil, WithDial(toLocal(env.IMDSAddr)))
		v := env.Set("mi-read", "by-managed-identity", nil)
		wantFetch(t, d, secrets.Ref{Backend: Name, Name: "mi-read"}, "by-managed-identity", v)
	})
	t.Run("no credential files, no managed identity endpoint", func(t *testing.T) {
		// A port nothing listens on: refused at once, as off Azure
		// where the address leads nowhere.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		closed := l.Addr().String()
		_ = l.Close()
		d, _ := newIntegrationDriver(t, env, "", nil, WithDial(toLocal(closed)))
		wantFetchError(t, d, secrets.Ref{Backend: Name, Name: "mi-read"}, secrets.ErrAccessDenied, "managed identity", hintNotAzure)
	})
	t.Run("an Azure VM without that identity", func(t *testing.T) {
		// IMDS answers (an Azure VM), but the user-assigned identity
		// named is not the VM's.
		d, _ := newIntegrationDriver(t, env, "11111111-0000-4000-8000-0000000000ff", nil, WithDial(toLocal(env.IMDSAddr)))
		wantFetchError(t, d, secrets.Ref{Backend: Name, Name: "mi-read"}, secrets.ErrAccessDenied, "managed identity", hintManaged)
	})
	t.Run("another cloud's metadata server", func(t *testing.T) {
		// Something answers at 169.254.169.254, as on AWS or Google
		// Cloud: the host is not an Azure VM, whatever the answer.
		for _, status := range []int{http.StatusNotFound, http.StatusBadRequest, http.StatusOK} {
			other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(status)
				_, _ = io.WriteString(w, `{"error":"invalid_request","error_description":"not here"}`)
			}))
			d, _ := newIntegrationDriver(t, env, "", nil, WithDial(toLocal(strings.TrimPrefix(other.URL, "http://"))))
			wantFetchError(t, d, secrets.Ref{Backend: Name, Name: "mi-read"}, secrets.ErrAccessDenied, "managed identity", hintNotAzureOther)
			other.Close()
		}
	})
}

func ptr[T any](v T) *T { return &v }
