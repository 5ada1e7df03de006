//go:build e2e

package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dsv-plugin/dsv/test/servers/azuretest"
	"github.com/dsv-plugin/dsv/test/servers/gcptest"
	"github.com/dsv-plugin/dsv/test/servers/moto"
)

// TestTemplateAcrossClouds: one template combines a Parameter Store
// parameter (moto), a Google Cloud Secret Manager secret (test/fakes/gcpfake) and
// an Azure Key Vault secret (test/fakes/azurefake) into one file, through the real
// plugin; a rotation in any one of them reaches the container at the
// volume's refresh, and docker volume inspect names the version of each.
func TestTemplateAcrossClouds(t *testing.T) {
	az := azuretest.Start(t)
	gc := gcptest.Start(t)
	key, _ := gc.ServiceAccountKey(gcpSA)
	gc.GrantProjectAccessor(gcptest.Project, "serviceAccount:"+gcpSA)
	dir := usePluginFolder(t, "credentials", nil)
	writeCredentials(t, dir, map[string]string{
		"azure/client-secret":  az.ClientSecret + "\n",
		"azure/ca.pem":         mustRead(t, az.CAFile),
		"gcp/credentials.json": string(key),
	})
	changePluginSettings(t, map[string]string{
		"AZURE_KEYVAULT_URL":   az.VaultURL,
		"AZURE_TENANT_ID":      azuretest.Tenant,
		"AZURE_CLIENT_ID":      azuretest.ClientSecretApp,
		"AZURE_AUTHORITY_HOST": az.AuthorityHost,
		"AZURE_CA_FILE":        azureCredsDir + "/ca.pem",
		"GCP_ENDPOINT":         gc.URL,
		"GCP_PROJECT":          gcptest.Project,
	})
	sc := newScope(t)

	host := "/" + env.name("clouds") + "/db-host"
	putParameter(t, host, "db.internal", moto.ParameterString)
	gcpID := env.name("clouds-user")
	gcpSecret := gc.CreateSecret(gcptest.Project, gcpID)
	gc.AddVersion(gcpSecret, []byte(`{"user":"app"}`))
	azName := "clouds-pw-" + randomHex(4)
	pw1, pw2 := "pw1-"+randomHex(8), "pw2-"+randomHex(8)
	az.Set(azName, pw1, nil)

	tmpl := fmt.Sprintf(`postgres://{{ secret "gcp" %q "user" }}:{{ secret "azure" %q }}@{{ secret "ssm" %q }}/app`, gcpID, azName, host)
	vol := sc.createVolume("clouds", "template="+tmpl, "filename=dsn", "refresh=1s")
	c := sc.start("clouds", "-v", vol+":/run/secrets")
	want := func(pw string) string { return "postgres://app:" + pw + "@db.internal/app" }
	if got := readInContainer(t, c, "/run/secrets/dsn"); got != want(pw1) {
		t.Fatalf("the container read %q, want %q", got, want(pw1))
	}
	st := fmt.Sprint(inspectVolume(t, vol).Status)
	for _, b := range []string{"ssm:" + host, "gcp:" + gcpID, "azure:" + azName} {
		if !strings.Contains(st, b) {
			t.Errorf("docker volume inspect does not name %s: %s", b, st)
		}
	}
	if strings.Contains(st, pw1) {
		t.Error("docker volume inspect shows a value")
	}

	az.Set(azName, pw2, nil)
	since := time.Now()
	latency, _, _ := waitForValue(t, c, "/run/secrets/dsn", want(pw2), since, 30*time.Second)
	t.Logf("an Azure rotation reached the combined file %s later", latency.Round(time.Millisecond))
}
