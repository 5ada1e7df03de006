package main

import (
	"context"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/dsv-plugin/dsv/notify"
	"github.com/dsv-plugin/dsv/secrets/azure"
	"github.com/dsv-plugin/dsv/secrets/gcp"
	"github.com/dsv-plugin/dsv/secrets/vault"
)

func TestLoadSettings(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		want    settings
		wantErr []string
	}{
		{
			name: "defaults",
			env:  map[string]string{},
			want: settings{LogLevel: zerolog.InfoLevel, Backend: "file", Timeout: 5 * time.Second, CacheTTL: 30 * time.Second, LeaseGrace: 5 * time.Minute, StoreConcurrency: 8,
				GCP: gcp.Config{CredentialsFile: gcp.DefaultCredentialsFile}},
		},
		{
			name: "every setting",
			env: map[string]string{"LOG_LEVEL": "DEBUG", "BACKEND": "aws", "TIMEOUT": "1500ms", "CACHE_TTL": "0", "REFRESH": "1m", "AWS_REGION": "eu-west-1",
				"SWARM_IDENTITY_FROM_SERVICE_NAME": "true", "LEASE_GRACE": "0", "GCP_PROJECT": "my-project", "GCP_ENDPOINT": "http://127.0.0.1:8085/",
				"GOOGLE_APPLICATION_CREDENTIALS": "/run/dsv/credentials/gcp/sa.json", "METRICS_ADDR": "127.0.0.1:9469", "METRICS_OBJECT_NAMES": "true",
				"NOTIFY": "exec:nginx -s reload", "STALE_IF_ERROR": "1h", "STORE_CONCURRENCY": "0"},
			want: settings{LogLevel: zerolog.DebugLevel, Backend: "aws", Timeout: 1500 * time.Millisecond, Refresh: time.Minute, AWSRegion: "eu-west-1",
				SwarmIdentityFromServiceName: true, MetricsAddr: "127.0.0.1:9469", MetricsObjectNames: true,
				Notify: notify.Spec{Exec: []string{"nginx", "-s", "reload"}}, StaleIfError: time.Hour,
				GCP: gcp.Config{Project: "my-project", Endpoint: "http://127.0.0.1:8085", CredentialsFile: "/run/dsv/credentials/gcp/sa.json"}},
		},
		{
			name: "every bad value at once",
			env: map[string]string{"LOG_LEVEL": "loud", "TIMEOUT": "5", "CACHE_TTL": "-1s", "REFRESH": "10ms", "AWS_REGION": "useast1", "SWARM_IDENTITY_FROM_SERVICE_NAME": "yes", "LEASE_GRACE": "48h",
				"GCP_PROJECT": "x", "GCP_ENDPOINT": "ftp://h", "GOOGLE_APPLICATION_CREDENTIALS": "sa.json", "METRICS_ADDR": "9469", "METRICS_OBJECT_NAMES": "maybe",
				"NOTIFY": "SIGKILL", "STALE_IF_ERROR": "forever", "STORE_CONCURRENCY": "-1"},
			wantErr: []string{`LEASE_GRACE: "48h" is longer than the maximum of 24h0m0s`, "setting GCP_PROJECT", "setting GCP_ENDPOINT", "setting GOOGLE_APPLICATION_CREDENTIALS", `REFRESH "10ms": the minimum is 1s`, `LOG_LEVEL "loud"`, `TIMEOUT "5": use a positive Go duration`, `CACHE_TTL "-1s"`, `AWS_REGION "useast1"`, `SWARM_IDENTITY_FROM_SERVICE_NAME "yes": use true or false`,
				`METRICS_ADDR "9469": use HOST:PORT, e.g. 127.0.0.1:9469`, `METRICS_OBJECT_NAMES "maybe": use true or false`,
				`NOTIFY: "SIGKILL" would stop the app`, `STALE_IF_ERROR: "forever" is not a duration`, `STORE_CONCURRENCY "-1": use a whole number of calls, e.g. 8, or 0 for no cap`},
		},
		{
			name:    "negative timeout",
			env:     map[string]string{"TIMEOUT": "-1s"},
			wantErr: []string{`TIMEOUT "-1s"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := loadSettings(func(k string) string { return tt.env[k] })
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("loadSettings() = %+v, want an error", got)
				}
				for _, s := range tt.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not contain %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Vault.Auth != "token" {
				t.Errorf("VAULT_AUTH default = %q, want token", got.Vault.Auth)
			}
			got.Vault = vault.Config{} // the vault package tests its own settings
			got.Azure = azure.Config{} // the azure package tests its own settings
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("loadSettings() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestBackendSettings(t *testing.T) {
	backends := []string{"aws", "file", "vault"}
	tests := []struct {
		name     string
		env      map[string]string
		patterns int
		wantErr  []string
	}{
		{name: "defaults: every object allowed", env: map[string]string{}},
		{name: "allow list", env: map[string]string{"ALLOW": "aws:prod/app/*, vault:secret/app/** file:*"}, patterns: 3},
		{name: "bad entry named", env: map[string]string{"ALLOW": "aws:prod/*, gcp:x"},
			wantErr: []string{`invalid plugin settings: ALLOW: entry "gcp:x": unknown backend "gcp"; use one of: aws, file, vault`}},
		{name: "both bad at once", env: map[string]string{"BACKEND": "gcp", "ALLOW": "vault:"},
			wantErr: []string{`BACKEND "gcp": use one of aws, file, vault`, `ALLOW: entry "vault:": empty pattern`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := loadSettings(func(k string) string { return tt.env[k] })
			if err != nil {
				t.Fatal(err)
			}
			allow, err := backendSettings(s, backends)
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("backendSettings() = %d patterns, want an error", allow.Len())
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not contain %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if allow.Len() != tt.patterns {
				t.Errorf("ALLOW has %d patterns, want %d", allow.Len(), tt.patterns)
			}
		})
	}
}

// TestRunNamesEveryBadSetting: settings read by the three stages (the
// settings themselves, the vault client, backends and ALLOW) are reported
// in one error, so one `docker plugin set` can fix them all.
func TestRunNamesEveryBadSetting(t *testing.T) {
	env := map[string]string{
		"TIMEOUT": "5", "LOG_LEVEL": "loud", "AWS_REGION": "useast1", "GCP_PROJECT": "Not_A_Project",
		"BACKEND": "nosuch", "ALLOW": "nosuch:x", "METRICS_ADDR": "127.0.0.1:99999",
	}
	// Vault's client reads its variables from the process environment.
	t.Setenv("VAULT_SKIP_VERIFY", "maybe")
	dir := t.TempDir()
	err := run(context.Background(), []string{"-socket", filepath.Join(dir, "dsv.sock"), "-state", filepath.Join(dir, "state.json"), "-mounts", filepath.Join(dir, "mnt")},
		func(k string) string { return env[k] })
	if err == nil {
		t.Fatal("run started with bad settings")
	}
	msg := err.Error()
	for _, want := range []string{"TIMEOUT", "LOG_LEVEL", "AWS_REGION", "VAULT_SKIP_VERIFY", `BACKEND "nosuch"`, `ALLOW: entry "nosuch:x"`, "GCP_PROJECT", `METRICS_ADDR "127.0.0.1:99999"`} {
		if !strings.Contains(msg, want) {
			t.Errorf("the error does not name %s:\n%s", want, msg)
		}
	}
	if strings.Count(msg, "invalid plugin settings") != 1 {
		t.Errorf("want one list of problems:\n%s", msg)
	}
}
