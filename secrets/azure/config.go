package azure

import (
	"path/filepath"
)

// Plugin settings the backend reads (see ConfigFromEnv). None holds a
// secret: the client secret, certificate and federated token are files.
const (
	EnvVaultURL        = "AZURE_KEYVAULT_URL"
	EnvTenantID        = "AZURE_TENANT_ID"
	EnvClientID        = "AZURE_CLIENT_ID"
	EnvAuthorityHost   = "AZURE_AUTHORITY_HOST"
	EnvCAFile          = "AZURE_CA_FILE"
	EnvSecretFile      = "AZURE_CLIENT_SECRET_FILE"
	EnvCertificateFile = "AZURE_CLIENT_CERTIFICATE_PATH"
	EnvFederatedToken  = "AZURE_FEDERATED_TOKEN_FILE"
)

// Environment of managed identity endpoints other than IMDS, which Azure's
// hosts set and azidentity's ManagedIdentityCredential read: App Service
// and Container Apps set IDENTITY_ENDPOINT and IDENTITY_HEADER, Azure
// Arc's agent IDENTITY_ENDPOINT and IMDS_ENDPOINT. They are no plugin
// settings: a managed plugin's environment holds config.json's only, so
// they reach the legacy install alone (systemd's DefaultEnvironment, as
// Arc's agent sets it).
const (
	EnvIdentityEndpoint = "IDENTITY_ENDPOINT"
	EnvIdentityHeader   = "IDENTITY_HEADER"
	EnvArcIMDSEndpoint  = "IMDS_ENDPOINT"
)

// Defaults: the credentials mount of the managed plugin holds an azure/
// folder.
const (
	DefaultCredentialsDir  = "/run/dsv/credentials/azure"
	DefaultSecretFile      = DefaultCredentialsDir + "/client-secret"
	DefaultCertificateFile = DefaultCredentialsDir + "/client-certificate.pem"
	DefaultFederatedToken  = DefaultCredentialsDir + "/federated-token"
)

// ConfigFromEnv reads the backend's plugin settings and reports every bad
// one at once. Unset file settings take the defaults in the credentials
// mount.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	or := func(k, def string) string {
		if v := getenv(k); v != "" {
			return filepath.Clean(v)
		}
		return def
	}
	c := Config{
		DefaultVault:  getenv(EnvVaultURL),
		AuthorityHost: getenv(EnvAuthorityHost),
		CAFile:        getenv(EnvCAFile),
		Credentials: Credentials{
			TenantID:           getenv(EnvTenantID),
			ClientID:           getenv(EnvClientID),
			SecretFile:         or(EnvSecretFile, DefaultSecretFile),
			CertificateFile:    or(EnvCertificateFile, DefaultCertificateFile),
			FederatedTokenFile: or(EnvFederatedToken, DefaultFederatedToken),
			IdentityEndpoint:   getenv(EnvIdentityEndpoint),
			IdentityHeader:     getenv(EnvIdentityHeader),
			ArcIMDSEndpoint:    getenv(EnvArcIMDSEndpoint),
		},
	}
	return c, c.Validate()
}
