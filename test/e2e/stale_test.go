//go:build e2e

package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/dsv-plugin/dsv/test/fakes/faultproxy"
)

// awsAccessDenied is Secrets Manager refusing a read (an IAM policy
// without secretsmanager:GetSecretValue).
func awsAccessDenied() faultproxy.Answer {
	return faultproxy.Answer{
		Status: http.StatusBadRequest,
		Header: http.Header{
			"Content-Type":     {"application/x-amz-json-1.1"},
			"X-Amzn-Errortype": {"AccessDeniedException"},
			"X-Amzn-Requestid": {"faultproxy"},
		},
		Body: `{"__type":"AccessDeniedException","message":"not authorized to perform: secretsmanager:GetSecretValue"}`,
	}
}

// TestStaleIfError takes Secrets Manager down (the fault proxy refuses
// connections) under volumes with stale-if-error: a restarted container, a
// new container, a plugin restart and a dockerd restart all still mount
// the last good value (the canary: the run's canary check then proves it
// is nowhere on disk in clear), and docker volume inspect says stale; once
// a volume's window is over, a mount fails naming the outage and the age.
// A refusal (403) or a deleted secret is never masked.
func TestStaleIfError(t *testing.T) {
	proxy, err := faultproxy.Start(env.moto.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	// No cache: every mount below reads (or fails to read) the store.
	changePluginSettings(t, map[string]string{"AWS_ENDPOINT_URL": proxy.URL(), "CACHE_TTL": "0"})
	sc := newScope(t)
	sc.onCleanup(ensurePluginEnabled)
	secret := env.name("stale")
	createSecret(t, secret, env.canary)
	const long, short = 10 * time.Minute, 20 * time.Second
	vol := sc.createVolume("stale", "backend=aws", "secret="+secret, "layout=dir", "filename=s", "stale-if-error="+long.String())
	brief := sc.createVolume("stale-short", "backend=aws", "secret="+secret, "layout=dir", "filename=s", "stale-if-error="+short.String())
	mount := []string{"-v", vol + ":/run/secrets"}
	read := sc.start("stale-first", mount...)
	wantExecCanary(t, read)
	sc.wantCanary([]string{"-v", brief + ":/run/secrets"}, "/run/secrets/s")
	goodRead := time.Now()

	if err := proxy.Refuse(); err != nil {
		t.Fatal(err)
	}
	wantStale := func(when string) {
		t.Helper()
		st := inspectVolume(t, vol).Status
		stale, _ := st["stale"].([]any)
		if len(stale) != 1 {
			t.Fatalf("%s: Status.stale = %v, want one stale object (Status %v)", when, st["stale"], st)
		}
		s := fmt.Sprint(stale[0])
		wantContains(t, when+": Status.stale", s, `aws secret "`+secret+`"`, "backend unreachable", "age:", "readAt:")
	}

	// The container restarts: the last unmount takes the tmpfs down, the
	// next mount reads again and gets the last good value.
	mustDocker(t, "restart", "-t", "1", read)
	wantExecCanary(t, read)
	wantStale("after docker restart")
	mustDocker(t, "rm", "-f", read)
	wantNoHostMount(t, vol)

	// A new container.
	sc.wantCanary(mount, "/run/secrets/s")
	wantStale("a new container")

	// A plugin restart.
	mustDocker(t, "plugin", "disable", "-f", env.plugin)
	mustDocker(t, "plugin", "enable", env.plugin)
	sc.wantCanary(mount, "/run/secrets/s")
	wantStale("after a plugin restart")

	// A dockerd restart.
	if err := env.daemon.restart(env.plugin); err != nil {
		t.Fatalf("restart dockerd: %v", err)
	}
	sc.wantCanary(mount, "/run/secrets/s")
	wantStale("after a dockerd restart")
	t.Logf("the last good value served through the outage for %s", time.Since(goodRead).Round(time.Second))

	// The short window is over: the mount fails, naming the outage and
	// the value's age.
	if wait := short - time.Since(goodRead) + time.Second; wait > 0 {
		time.Sleep(wait) // the age must pass the window: a fixed time by definition
	}
	r := sc.runFail([]string{"-v", brief + ":/run/secrets"}, "true")
	wantContains(t, "docker run's error past the window", r.stderr, brief, `aws secret "`+secret+`"`, "backend unreachable", "its last good value was read", "longer than stale-if-error=20s")

	// A refusal is never masked, and a deleted secret neither.
	if err := proxy.Respond(awsAccessDenied()); err != nil {
		t.Fatal(err)
	}
	r = sc.runFail(mount, "true")
	wantContains(t, "docker run's error when refused", r.stderr, vol, "access denied")
	if err := proxy.Pass(); err != nil {
		t.Fatal(err)
	}
	sc.wantCanary(mount, "/run/secrets/s") // good again
	if _, err := env.sm.DeleteSecret(awsCtx(t), &secretsmanager.DeleteSecretInput{SecretId: aws.String(secret), ForceDeleteWithoutRecovery: aws.Bool(true)}); err != nil {
		t.Fatal(err)
	}
	r = sc.runFail(mount, "true")
	wantContains(t, "docker run's error once deleted", r.stderr, vol, "not found")
	if err := proxy.Refuse(); err != nil {
		t.Fatal(err)
	}
	r = sc.runFail(mount, "true")
	wantContains(t, "docker run's error when down after the deletion", r.stderr, vol, "backend unreachable", "no good value of it was kept")
	if strings.Contains(r.stderr, "stale") && !strings.Contains(r.stderr, "stale-if-error") {
		t.Errorf("a deleted secret was served stale: %v", r)
	}
}
