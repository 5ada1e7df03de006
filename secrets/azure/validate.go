package azure

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/dsv-plugin/dsv/secrets"
)

// Key Vault limits, from the Key Vault documentation (object names).
const (
	maxNameLen   = 127
	versionIDLen = 32
	maxURLLen    = 2048
)

// location is where a reference's secret lives: a vault, a name in it and
// a version ("" for the current one).
type location struct {
	// Vault is the vault's URL, https://HOST[:PORT], without a path.
	Vault   string
	Name    string
	Version string
}

// canonical names the secret, whatever version is read: what ALLOW
// patterns match.
func (l location) canonical() string { return l.Vault + "/secrets/" + l.Name }

// Validate checks a reference without contacting Azure and returns every
// problem at once, each naming the volume option as the user types it.
func (d *Driver) Validate(ref secrets.Ref) error {
	_, err := locate(ref, d.defaultVault)
	return err
}

// locate parses and checks a reference: the secret option is a secret
// URL, https://VAULT.vault.azure.net/secrets/NAME[/VERSION], or a NAME in
// defaultVault; the version-id option pins a version.
func locate(ref secrets.Ref, defaultVault string) (location, error) {
	var errs []error
	loc, err := parseSecret(ref.Name, defaultVault)
	if err != nil {
		errs = append(errs, err)
	}
	if ref.VersionID != "" {
		switch {
		case !validVersion(ref.VersionID):
			errs = append(errs, fmt.Errorf("option %q: %q is not a Key Vault secret version (%d hexadecimal digits)",
				secrets.OptVersionID, quoted(ref.VersionID), versionIDLen))
		case loc.Version != "" && !strings.EqualFold(loc.Version, ref.VersionID):
			errs = append(errs, fmt.Errorf("option %q: %q differs from the version %q in the secret URL; give the version once",
				secrets.OptVersionID, ref.VersionID, loc.Version))
		case loc.Version == "":
			loc.Version = ref.VersionID
		}
	}
	if ref.VersionStage != "" {
		errs = append(errs, fmt.Errorf("option %q: Key Vault has no version stages; use %q to pin a version",
			secrets.OptVersionStage, secrets.OptVersionID))
	}
	if ref.Region != "" {
		errs = append(errs, fmt.Errorf("option %q: the azure backend has no regions; the vault URL says where the secret is",
			secrets.OptRegion))
	}
	return loc, errors.Join(errs...)
}

// parseSecret reads the secret option.
func parseSecret(s, defaultVault string) (location, error) {
	const opt = secrets.OptSecret
	switch {
	case s == "":
		return location{}, fmt.Errorf("option %q is required: a secret URL (https://VAULT.vault.azure.net/secrets/NAME) or a secret name", opt)
	case len(s) > maxURLLen:
		return location{}, fmt.Errorf("option %q: %q is longer than %d characters", opt, quoted(s), maxURLLen)
	case !strings.Contains(s, "/") && !strings.Contains(s, ":"):
		if !validName(s) {
			return location{}, fmt.Errorf("option %q: %q is not a Key Vault secret name (1-%d letters, digits and hyphens)", opt, quoted(s), maxNameLen)
		}
		if defaultVault == "" {
			return location{}, fmt.Errorf("option %q: the secret name %q needs a vault: give the secret URL (https://VAULT.vault.azure.net/secrets/%s), or set the AZURE_KEYVAULT_URL plugin setting",
				opt, s, s)
		}
		return location{Vault: defaultVault, Name: s}, nil
	}
	u, err := url.Parse(s)
	if err != nil || !strings.EqualFold(u.Scheme, "https") || u.Host == "" {
		return location{}, fmt.Errorf("option %q: %q is neither a secret name nor a secret URL (https://VAULT.vault.azure.net/secrets/NAME[/VERSION])", opt, quoted(s))
	}
	vault, err := vaultOf(u)
	if err != nil {
		return location{}, fmt.Errorf("option %q: %w", opt, err)
	}
	parts := strings.Split(strings.TrimPrefix(u.EscapedPath(), "/"), "/")
	if len(parts) > 0 && parts[len(parts)-1] == "" {
		parts = parts[:len(parts)-1] // a trailing slash
	}
	if len(parts) < 2 || len(parts) > 3 || parts[0] != "secrets" {
		return location{}, fmt.Errorf("option %q: the URL's path %q is not /secrets/NAME or /secrets/NAME/VERSION", opt, quoted(u.EscapedPath()))
	}
	loc := location{Vault: vault, Name: parts[1]}
	if !validName(loc.Name) {
		return location{}, fmt.Errorf("option %q: %q in the URL is not a Key Vault secret name (1-%d letters, digits and hyphens)", opt, quoted(loc.Name), maxNameLen)
	}
	if len(parts) == 3 {
		if !validVersion(parts[2]) {
			return location{}, fmt.Errorf("option %q: %q in the URL is not a secret version (%d hexadecimal digits)", opt, quoted(parts[2]), versionIDLen)
		}
		loc.Version = parts[2]
	}
	return loc, nil
}

// ParseVaultURL checks the AZURE_KEYVAULT_URL setting and returns the
// vault's URL in the form secret URLs use (https://HOST[:PORT]).
func ParseVaultURL(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || !strings.EqualFold(u.Scheme, "https") || u.Host == "" {
		return "", fmt.Errorf("%q is not a vault URL (https://VAULT.vault.azure.net)", quoted(s))
	}
	if p := u.EscapedPath(); p != "" && p != "/" {
		return "", fmt.Errorf("%q: a vault URL has no path (https://VAULT.vault.azure.net)", quoted(s))
	}
	return vaultOf(u)
}

// vaultOf returns the vault part of a parsed URL, lower-case, refusing what
// a vault URL cannot carry.
func vaultOf(u *url.URL) (string, error) {
	switch {
	case u.User != nil:
		return "", fmt.Errorf("the URL must not carry a user name or password")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return "", fmt.Errorf("the URL must not have a query or fragment")
	case u.Opaque != "":
		return "", fmt.Errorf("%q is not a https:// URL", quoted(u.String()))
	}
	host := u.Hostname()
	if !validHost(host) {
		return "", fmt.Errorf("%q is not a host name", quoted(host))
	}
	if p := u.Port(); p != "" && !validPort(p) {
		return "", fmt.Errorf("%q is not a port", quoted(p))
	}
	return "https://" + strings.ToLower(u.Host), nil
}

// validHost accepts DNS names and IP addresses. Vaults live under
// vault.azure.net and the sovereign clouds' domains, or behind a private
// endpoint's name; any host is accepted, and the client checks that the vault's
// authentication challenge names the vault's own domain.
func validHost(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	if net.ParseIP(h) != nil {
		return true
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

func validPort(p string) bool {
	if len(p) > 5 {
		return false
	}
	n := 0
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
		n = n*10 + int(p[i]-'0')
	}
	return n > 0 && n <= 65535
}

// validName: 1-127 letters, digits and hyphens.
func validName(s string) bool {
	if s == "" || len(s) > maxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// validVersion: 32 hexadecimal digits.
func validVersion(s string) bool {
	if len(s) != versionIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// quoted shortens a user value for an error message, so a pasted blob does
// not flood `docker volume create`'s output.
func quoted(s string) string { return secrets.Clip(s, 80) }
