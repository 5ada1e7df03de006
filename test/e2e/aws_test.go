//go:build e2e

package e2e

import (
	"context"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/dsv-plugin/dsv/test/servers/moto"
)

// secretVersion is a version moto created.
type secretVersion struct {
	ARN       string
	VersionID string
}

func awsCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// createSecret creates a string secret in moto.
func createSecret(t testing.TB, name, value string) secretVersion {
	t.Helper()
	out, err := env.sm.CreateSecret(awsCtx(t), &secretsmanager.CreateSecretInput{
		Name:         aws.String(name),
		SecretString: aws.String(value),
	})
	if err != nil {
		t.Fatalf("moto: create secret %q: %v", name, err)
	}
	return secretVersion{ARN: aws.ToString(out.ARN), VersionID: aws.ToString(out.VersionId)}
}

// createBinarySecret creates a SecretBinary secret in moto.
func createBinarySecret(t testing.TB, name string, value []byte) secretVersion {
	t.Helper()
	out, err := env.sm.CreateSecret(awsCtx(t), &secretsmanager.CreateSecretInput{
		Name:         aws.String(name),
		SecretBinary: value,
	})
	if err != nil {
		t.Fatalf("moto: create secret %q: %v", name, err)
	}
	return secretVersion{ARN: aws.ToString(out.ARN), VersionID: aws.ToString(out.VersionId)}
}

// putSecretValue adds a version, which becomes AWSCURRENT; the one it
// replaces becomes AWSPREVIOUS.
func putSecretValue(t testing.TB, id, value string) secretVersion {
	t.Helper()
	out, err := env.sm.PutSecretValue(awsCtx(t), &secretsmanager.PutSecretValueInput{
		SecretId:     aws.String(id),
		SecretString: aws.String(value),
	})
	if err != nil {
		t.Fatalf("moto: put secret value %q: %v", id, err)
	}
	return secretVersion{ARN: aws.ToString(out.ARN), VersionID: aws.ToString(out.VersionId)}
}

// stopMoto kills the moto server until the returned function starts a new
// one on the same port, which the plugin is configured with. The new server
// is empty: tests seed their own secrets, so nothing needs re-seeding. The
// restart is also registered with t.Cleanup, for a test that fails early.
func stopMoto(t testing.TB) (restart func()) {
	t.Helper()
	u, err := url.Parse(env.moto.URL)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatalf("moto URL %s: %v", env.moto.URL, err)
	}
	if err := env.moto.Stop(); err != nil {
		t.Fatal(err)
	}
	stopped := true
	restart = func() {
		if !stopped {
			return
		}
		stopped = false
		p, err := moto.StartProcess(context.Background(), env.motoBin, port)
		if err != nil {
			// The aws scenarios after this one fail too.
			t.Errorf("restart moto on port %d: %v", port, err)
			return
		}
		env.moto = p
	}
	t.Cleanup(restart)
	return restart
}
