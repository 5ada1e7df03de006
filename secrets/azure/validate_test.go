package azure

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/dsv-plugin/dsv/secrets"
)

const (
	testVault   = "https://myvault.vault.azure.net"
	testVersion = "0123456789abcdef0123456789abcdef"
)

func TestLocate(t *testing.T) {
	tests := []struct {
		name         string
		ref          secrets.Ref
		defaultVault string
		want         location
		wantErr      []string
	}{
		{name: "name in the default vault", ref: secrets.Ref{Name: "db-password"}, defaultVault: testVault,
			want: location{Vault: testVault, Name: "db-password"}},
		{name: "secret URL", ref: secrets.Ref{Name: testVault + "/secrets/db"},
			want: location{Vault: testVault, Name: "db"}},
		{name: "secret URL wins over the default vault", ref: secrets.Ref{Name: "https://other.vault.azure.cn/secrets/db"}, defaultVault: testVault,
			want: location{Vault: "https://other.vault.azure.cn", Name: "db"}},
		{name: "secret URL with version and trailing slash", ref: secrets.Ref{Name: testVault + "/secrets/db/" + testVersion + "/"},
			want: location{Vault: testVault, Name: "db", Version: testVersion}},
		{name: "upper-case host and port", ref: secrets.Ref{Name: "HTTPS://MyVault.Vault.Azure.Net:443/secrets/db"},
			want: location{Vault: "https://myvault.vault.azure.net:443", Name: "db"}},
		{name: "version-id", ref: secrets.Ref{Name: "db", VersionID: testVersion}, defaultVault: testVault,
			want: location{Vault: testVault, Name: "db", Version: testVersion}},
		{name: "version-id equal to the URL's", ref: secrets.Ref{Name: testVault + "/secrets/db/" + testVersion, VersionID: strings.ToUpper(testVersion)},
			want: location{Vault: testVault, Name: "db", Version: testVersion}},
		{name: "loopback emulator", ref: secrets.Ref{Name: "https://127.0.0.1:8443/secrets/db"},
			want: location{Vault: "https://127.0.0.1:8443", Name: "db"}},

		{name: "empty", ref: secrets.Ref{}, wantErr: []string{`option "secret" is required`}},
		{name: "name without a vault", ref: secrets.Ref{Name: "db"}, wantErr: []string{`option "secret"`, "AZURE_KEYVAULT_URL", "https://VAULT.vault.azure.net/secrets/db"}},
		{name: "bad name", ref: secrets.Ref{Name: "db_password"}, defaultVault: testVault, wantErr: []string{`"db_password" is not a Key Vault secret name`}},
		{name: "too long a name", ref: secrets.Ref{Name: strings.Repeat("a", 128)}, defaultVault: testVault, wantErr: []string{"not a Key Vault secret name"}},
		{name: "http", ref: secrets.Ref{Name: "http://myvault.vault.azure.net/secrets/db"}, wantErr: []string{"neither a secret name nor a secret URL"}},
		{name: "a path", ref: secrets.Ref{Name: "prod/db"}, wantErr: []string{"neither a secret name nor a secret URL"}},
		{name: "keys path", ref: secrets.Ref{Name: testVault + "/keys/db"}, wantErr: []string{"is not /secrets/NAME"}},
		{name: "vault URL alone", ref: secrets.Ref{Name: testVault}, wantErr: []string{"is not /secrets/NAME"}},
		{name: "too deep", ref: secrets.Ref{Name: testVault + "/secrets/db/" + testVersion + "/x"}, wantErr: []string{"is not /secrets/NAME"}},
		{name: "dot segments", ref: secrets.Ref{Name: testVault + "/secrets/../keys"}, wantErr: []string{"not a Key Vault secret name"}},
		{name: "escaped slash", ref: secrets.Ref{Name: testVault + "/secrets/a%2Fb"}, wantErr: []string{"not a Key Vault secret name"}},
		{name: "bad version in URL", ref: secrets.Ref{Name: testVault + "/secrets/db/latest"}, wantErr: []string{`"latest" in the URL is not a secret version`}},
		{name: "user info", ref: secrets.Ref{Name: "https://u:p@myvault.vault.azure.net/secrets/db"}, wantErr: []string{"user name or password"}},
		{name: "query", ref: secrets.Ref{Name: testVault + "/secrets/db?api-version=1"}, wantErr: []string{"query or fragment"}},
		{name: "bad host", ref: secrets.Ref{Name: "https://my_vault.vault.azure.net/secrets/db"}, wantErr: []string{"not a host name"}},
		{name: "bad port", ref: secrets.Ref{Name: "https://myvault.vault.azure.net:99999/secrets/db"}, wantErr: []string{"not a port"}},
		{name: "bad version-id", ref: secrets.Ref{Name: "db", VersionID: "v1"}, defaultVault: testVault, wantErr: []string{`option "version-id": "v1" is not a Key Vault secret version`}},
		{name: "version-id differs from the URL's", ref: secrets.Ref{Name: testVault + "/secrets/db/" + testVersion, VersionID: strings.Repeat("f", 32)},
			wantErr: []string{`option "version-id"`, "differs from the version"}},
		{name: "every problem at once", ref: secrets.Ref{Name: "db_x", VersionID: "v", VersionStage: "AWSCURRENT", Region: "us-east-1"}, defaultVault: testVault,
			wantErr: []string{`option "secret"`, `option "version-id"`, `option "version-stage": Key Vault has no version stages`, `option "region": the azure backend has no regions`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := locate(tt.ref, tt.defaultVault)
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("locate(%+v) = %+v, want an error", tt.ref, got)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("locate(%+v): %q does not contain %q", tt.ref, err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("locate(%+v): %v", tt.ref, err)
			}
			if got != tt.want {
				t.Fatalf("locate(%+v) = %+v, want %+v", tt.ref, got, tt.want)
			}
		})
	}
}

func TestParseVaultURL(t *testing.T) {
	tests := []struct {
		in, want string
		wantErr  bool
	}{
		{in: testVault, want: testVault},
		{in: testVault + "/", want: testVault},
		{in: "https://MyVault.vault.usgovcloudapi.net", want: "https://myvault.vault.usgovcloudapi.net"},
		{in: "myvault", wantErr: true},
		{in: "http://myvault.vault.azure.net", wantErr: true},
		{in: testVault + "/secrets", wantErr: true},
		{in: testVault + "?x=1", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseVaultURL(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseVaultURL(%q) = %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestConfigFromEnv(t *testing.T) {
	env := map[string]string{EnvVaultURL: "https://v.vault.azure.net", EnvTenantID: "t", EnvClientID: "c", EnvSecretFile: "/x/../secret"}
	c, err := ConfigFromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	want := Config{DefaultVault: "https://v.vault.azure.net", Credentials: Credentials{TenantID: "t", ClientID: "c",
		SecretFile: "/secret", CertificateFile: DefaultCertificateFile, FederatedTokenFile: DefaultFederatedToken}}
	if c != want {
		t.Fatalf("ConfigFromEnv = %+v, want %+v", c, want)
	}
	bad := map[string]string{EnvVaultURL: "myvault", EnvAuthorityHost: "login.example"}
	_, err = ConfigFromEnv(func(k string) string { return bad[k] })
	for _, w := range []string{"AZURE_KEYVAULT_URL", "AZURE_AUTHORITY_HOST"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("ConfigFromEnv(%v) = %v, want an error naming %s", bad, err, w)
		}
	}
}

// FuzzLocate: any secret option and version-id give a location that
// builds a request for one object, or an error that names the option and
// stays short.
func FuzzLocate(f *testing.F) {
	for _, s := range []string{"db", testVault + "/secrets/db", testVault + "/secrets/db/" + testVersion, "https://127.0.0.1:1/secrets/a/",
		"https://u@h/secrets/x", "https://h/secrets/%2e%2e", "https://[::1]:8443/secrets/x", "https:///secrets/x", "https://h:0/secrets/x",
		strings.Repeat("a", 3000)} {
		f.Add(s, "")
		f.Add(s, testVersion)
	}
	f.Fuzz(func(t *testing.T, name, version string) {
		loc, err := locate(secrets.Ref{Name: name, VersionID: version}, testVault)
		if err != nil {
			if !strings.Contains(err.Error(), `option "`) {
				t.Fatalf("error %q names no option", err)
			}
			if len(err.Error()) > 1200 {
				t.Fatalf("error is %d bytes long", len(err.Error()))
			}
			return
		}
		if !validName(loc.Name) || (loc.Version != "" && !validVersion(loc.Version)) {
			t.Fatalf("locate(%q, %q) = %+v: bad name or version", name, version, loc)
		}
		if !utf8.ValidString(loc.Vault) || strings.ContainsAny(loc.Vault[len("https://"):], "/?#@ ") || !strings.HasPrefix(loc.Vault, "https://") {
			t.Fatalf("locate(%q) = %+v: the vault URL carries more than a host", name, loc)
		}
		if again, err := ParseVaultURL(loc.Vault); err != nil || again != loc.Vault {
			t.Fatalf("vault %q does not parse back: %q, %v", loc.Vault, again, err)
		}
	})
}
