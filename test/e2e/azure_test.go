//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"

	"github.com/dsv-plugin/dsv/test/servers/azuretest"
)

// azureCredsDir is the azure/ folder of the credentials mount, as the
// plugin sees it.
const azureCredsDir = "/run/dsv/credentials/azure"

// useAzure starts a local Key Vault and Entra ID (test/fakes/azurefake) for the
// test and points the plugin at them: the client secret and the test CA
// are files in the credentials mount (azure/client-secret, azure/ca.pem),
// the rest are plugin settings, none secret. The settings and the mount
// come back when the test ends.
func useAzure(t *testing.T) *azuretest.Env {
	t.Helper()
	az := azuretest.Start(t)
	// The credentials folder first, with nothing the plugin must read at
	// start; then the files; then the settings that name them (the CA is
	// read when the plugin starts).
	dir := usePluginFolder(t, "credentials", nil)
	writeCredentials(t, dir, map[string]string{
		"azure/client-secret": az.ClientSecret + "\n",
		"azure/ca.pem":        mustRead(t, az.CAFile),
	})
	changePluginSettings(t, map[string]string{
		"AZURE_KEYVAULT_URL":   az.VaultURL,
		"AZURE_TENANT_ID":      azuretest.Tenant,
		"AZURE_CLIENT_ID":      azuretest.ClientSecretApp,
		"AZURE_AUTHORITY_HOST": az.AuthorityHost,
		"AZURE_CA_FILE":        azureCredsDir + "/ca.pem",
	})
	return az
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestAzure reads Key Vault secrets through the real plugin, whose real
// azsecrets and azidentity clients talk HTTPS to the local Key Vault and
// Entra ID processes.
func TestAzure(t *testing.T) {
	az := useAzure(t)

	t.Run("file volume, secret named in the default vault", func(t *testing.T) {
		sc := newScope(t)
		name := "db-password-" + randomHex(4)
		value := "az-pw-" + randomHex(8)
		version := az.Set(name, value, nil)
		vol := sc.createVolume("az-file", "backend=azure", "secret="+name)
		if got := sc.mustRun([]string{"-v", vol + ":/run/secrets/db"}, "cat", "/run/secrets/db"); got != value {
			t.Fatalf("container read %q, want %q", got, value)
		}
		st := inspectVolume(t, vol).Status
		if !strings.Contains(fmt.Sprint(st), version) {
			t.Errorf("docker volume inspect Status %v does not name the version read, %s", st, version)
		}
		if strings.Contains(fmt.Sprint(st), value) {
			t.Errorf("docker volume inspect Status shows the value")
		}
	})

	t.Run("JSON key, secret URL with version", func(t *testing.T) {
		sc := newScope(t)
		name := "app-db-" + randomHex(4)
		v1 := az.Set(name, `{"user":"app","password":"first"}`, nil)
		az.Set(name, `{"user":"app","password":"second"}`, nil)
		current := sc.createVolume("az-key", "backend=azure", "secret="+az.VaultURL+"/secrets/"+name, "key=password")
		pinned := sc.createVolume("az-pinned", "backend=azure", "secret="+az.VaultURL+"/secrets/"+name+"/"+v1, "key=password")
		got := sc.mustRun([]string{"-v", current + ":/run/secrets/cur", "-v", pinned + ":/run/secrets/old"}, "sh", "-c", "cat /run/secrets/cur; echo; cat /run/secrets/old")
		if got != "second\nfirst" {
			t.Fatalf("container read %q, want the current then the pinned password", got)
		}
	})

	t.Run("bad options fail the create", func(t *testing.T) {
		r := docker(t, "volume", "create", "-d", env.plugin, "-o", "backend=azure", "-o", "secret=https://myvault.vault.azure.net/keys/k",
			"-o", "version-id=latest", env.name("az-bad"))
		if r.err == nil {
			t.Fatalf("docker volume create succeeded, want a refusal")
		}
		wantContains(t, "docker volume create's error", r.stderr, `option "secret"`, "/secrets/NAME", `option "version-id"`)
	})

	t.Run("disabled secret", func(t *testing.T) {
		sc := newScope(t)
		name := "disabled-" + randomHex(4)
		v := az.Set(name, "never-read-"+randomHex(4), nil)
		az.Update(name, v, azsecrets.SecretAttributes{Enabled: ptrTo(false)})
		vol := sc.createVolume("az-disabled", "backend=azure", "secret="+name)
		r := sc.runFail([]string{"-v", vol + ":/run/secrets/s"}, "true")
		wantContains(t, "docker run's error for a disabled secret", r.stderr, vol, name, "the secret version is disabled", "enable the version in Key Vault")
	})

	t.Run("identity without secrets/get", func(t *testing.T) {
		changePluginSettings(t, map[string]string{"AZURE_CLIENT_ID": azuretest.DeniedApp})
		sc := newScope(t)
		name := "denied-" + randomHex(4)
		az.Set(name, "x", nil)
		vol := sc.createVolume("az-denied", "backend=azure", "secret="+name)
		r := sc.runFail([]string{"-v", vol + ":/run/secrets/s"}, "true")
		wantContains(t, "docker run's error for a denied read", r.stderr, vol, "access denied", "secrets/get", "Key Vault Secrets User")
	})

	t.Run("rotation with refresh", func(t *testing.T) {
		sc := newScope(t)
		name := "rotated-" + randomHex(4)
		first := "first-" + randomHex(6)
		az.Set(name, first, nil)
		vol := sc.createVolume("az-rot", "backend=azure", "secret="+name, "layout=dir", "filename=x", "refresh="+rotationRefresh.String())
		c := sc.start("az-rot", "-v", vol+":/run/secrets")
		if got := mustDocker(t, "exec", c, "cat", "/run/secrets/x"); got != first {
			t.Fatalf("before the rotation the container reads %q, want %q", got, first)
		}
		for i := 1; i <= 2; i++ {
			want := fmt.Sprintf("rotated-%d-%s", i, randomHex(6))
			start := time.Now()
			version := az.Set(name, want, nil)
			lat, polls, _ := waitForValue(t, c, "/run/secrets/x", want, start, 15*time.Second)
			t.Logf("rotation %d: new version %s seen after %s (%d polls)", i, version, lat.Round(time.Millisecond), polls)
			eventually(t, 10*time.Second, "docker volume inspect names the new version", func() string {
				if st := inspectVolume(t, vol).Status; fmt.Sprint(st["version"]) != version {
					return fmt.Sprintf("Status.version = %v, want %s", st["version"], version)
				}
				return ""
			})
		}
	})

	wantNotInPluginInspect(t, map[string]string{"azure client secret": az.ClientSecret})
	if b, err := os.ReadFile(filepath.Join(env.dockerRoot, "plugins", env.pluginID, "rootfs", "dsv")); err == nil && strings.Contains(string(b), az.ClientSecret) {
		t.Errorf("the plugin binary holds the client secret")
	}
}

// TestAzureSwarmSecret: a Swarm secret whose labels name a Key Vault
// secret and a key of it.
func TestAzureSwarmSecret(t *testing.T) {
	az := useAzure(t)
	sw := joinSwarm(t)
	name := "swarm-db-" + randomHex(4)
	pw := "az-swarm-pw-" + randomHex(6)
	az.Set(name, `{"username":"admin","password":"`+pw+`"}`, nil)
	sec := sw.secret("azure", "dsv.backend=azure", "dsv.secret="+name, "dsv.key=password")
	svc := sw.service("azure", []string{"--secret", sec}, printThenSleep("cat /run/secrets/"+sec+"; echo")...)
	wantRunning(t, svc, 1)
	wantLogLines(t, svc, pw, 1)
}

func ptrTo[T any](v T) *T { return &v }
