package gcp

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"time"
)

// Plugin settings of the gcp backend.
const (
	// EnvProject is the default project of short secret names.
	EnvProject = "GCP_PROJECT"
	// EnvEndpoint is the base URL of the API, for an emulator or a proxy.
	EnvEndpoint = "GCP_ENDPOINT"
	// EnvCredentials names the ADC JSON file, as Google's libraries read it.
	EnvCredentials = "GOOGLE_APPLICATION_CREDENTIALS"
)

// DefaultCredentialsFile is the credentials file in the plugin's
// credentials mount when GOOGLE_APPLICATION_CREDENTIALS is empty.
const DefaultCredentialsFile = "/run/dsv/credentials/gcp/credentials.json"

// Config configures the backend.
type Config struct {
	// Project is the GCP_PROJECT setting: the project of short names.
	Project string
	// Endpoint is the GCP_ENDPOINT setting, e.g. http://127.0.0.1:8085;
	// empty is Google's (regional secrets: its regional endpoints).
	Endpoint string
	// CredentialsFile is the ADC JSON file (GOOGLE_APPLICATION_CREDENTIALS).
	// When it does not exist, the metadata server gives the tokens.
	CredentialsFile string
	// TokenTimeout bounds each request to a token endpoint; 0 is 30s. A
	// fetch returns at its own deadline regardless.
	TokenTimeout time.Duration
	// API replaces the REST client; for tests.
	API API
}

// ConfigFromEnv reads the gcp settings and reports every bad one, each
// naming its setting.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	c := Config{
		Project:         getenv(EnvProject),
		Endpoint:        strings.TrimRight(getenv(EnvEndpoint), "/"),
		CredentialsFile: getenv(EnvCredentials),
	}
	var errs []error
	if c.Project != "" && !validProject(c.Project) {
		errs = append(errs, fmt.Errorf("setting %s: %q is not a project ID (6-30 lower-case letters, digits and -, starting with a letter) nor a project number", EnvProject, quoted(c.Project)))
	}
	if c.Endpoint != "" {
		if err := validEndpoint(c.Endpoint); err != nil {
			errs = append(errs, fmt.Errorf("setting %s: %w", EnvEndpoint, err))
		}
	}
	switch f := c.CredentialsFile; {
	case f == "":
		c.CredentialsFile = DefaultCredentialsFile
	case strings.HasPrefix(strings.TrimSpace(f), "{"):
		// Never quoted: this is a key.
		errs = append(errs, fmt.Errorf("setting %s: give the path of a JSON file in the plugin's credentials mount, never the key itself (settings show in docker plugin inspect)", EnvCredentials))
	case !filepath.IsAbs(f):
		errs = append(errs, fmt.Errorf("setting %s: %q is not an absolute path (e.g. %s)", EnvCredentials, quoted(f), DefaultCredentialsFile))
	}
	return c, errors.Join(errs...)
}

// validEndpoint checks a GCP_ENDPOINT: an http or https URL of a host,
// with an optional path prefix, without credentials, query or fragment.
func validEndpoint(s string) error {
	u, err := url.Parse(s)
	if strings.Contains(s, "@") && (err != nil || u.User != nil) {
		// Never quoted: it may hold a password.
		return errors.New("the URL holds user credentials, or is not a URL; give http(s)://HOST[:PORT] without them")
	}
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an http:// or https:// URL (e.g. http://127.0.0.1:8085)", quoted(s))
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%q: remove the query or fragment", quoted(s))
	}
	if u.Scheme == "http" && !loopback(u.Hostname()) {
		// Every request carries the plugin's bearer token: in clear text
		// only to this machine (an emulator, a local proxy).
		return fmt.Errorf("%q is plain http:// to a host other than this machine; the plugin sends its access tokens there: use https://, or http:// only to 127.0.0.1, [::1] or localhost", quoted(s))
	}
	return nil
}

// loopback reports whether host names this machine: localhost or a
// loopback address (127.0.0.0/8, ::1).
func loopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
