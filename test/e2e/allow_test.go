//go:build e2e

package e2e

import (
	"testing"
)

// TestAllowList sets the plugin's ALLOW setting: a volume naming an object
// outside it fails at docker volume create and nothing is created; a volume
// created before ALLOW was narrowed fails at its next mount, leaving no
// tmpfs; a template naming a refused secret fails at create too.
func TestAllowList(t *testing.T) {
	allowed, refused := env.name("allowed/db"), env.name("refused-db")
	for _, n := range []string{allowed, refused} {
		if err := env.writeFile(n, []byte("value-of-"+n)); err != nil {
			t.Fatal(err)
		}
	}
	// A volume created while everything is allowed, mounted after ALLOW
	// narrows.
	early := env.name("allow-early")
	mustDocker(t, "volume", "create", "-d", env.plugin, "-o", "secret="+refused, early)
	t.Cleanup(func() { docker(t, "volume", "rm", "-f", early) })

	changePluginSettings(t, map[string]string{"ALLOW": "file:" + namePrefix + "*/**, aws:nothing-here"})
	sc := newScope(t)

	vol := sc.createVolume("allow-ok", "secret="+allowed)
	if got := sc.mustRun([]string{"-v", vol + ":/run/secrets/s"}, "cat", "/run/secrets/s"); got != "value-of-"+allowed {
		t.Fatalf("an allowed secret read %q", got)
	}

	name := sc.volume("allow-refused")
	r := dockerFails(t, "volume", "create", "-d", env.plugin, "-o", "secret="+refused, name)
	wantContains(t, "docker volume create's error", r.stderr, name, `file secret "`+refused+`"`, "not allowed by the plugin's ALLOW setting", namePrefix+"*/**")
	if volumeExists(t, name) {
		t.Errorf("volume %s exists after its create was refused", name)
	}

	tmpl := sc.volume("allow-template")
	r = dockerFails(t, "volume", "create", "-d", env.plugin, "-o", `template.app=db={{ secret "file" "`+refused+`" }}`, tmpl)
	wantContains(t, "docker volume create's error", r.stderr, tmpl, refused, "ALLOW")
	if volumeExists(t, tmpl) {
		t.Errorf("volume %s exists after its create was refused", tmpl)
	}

	r = dockerFails(t, "volume", "create", "-d", env.plugin, "-o", "backend=aws", "-o", "secret=prod/db", sc.volume("allow-aws"))
	wantContains(t, "docker volume create's error", r.stderr, `aws secret "prod/db"`, "allowed for aws: nothing-here")

	r = sc.runFail([]string{"-v", early + ":/run/secrets/s"}, "cat", "/run/secrets/s")
	wantContains(t, "docker run's error", r.stderr, early, refused, "ALLOW")
	wantNoHostMount(t, early)
	wantNoMountIDs(t, early)
}

// TestAllowListVaultNames: a KV v2 secret named with data/ is judged by
// the name it is known by. secret/data/app/db matches a pattern written
// for secret/TEAM/app/db as written, and so passes create (no Vault call
// there), but it is the object secret/app/db: the mount is refused.
func TestAllowListVaultNames(t *testing.T) {
	newVaultFixture(t)
	changePluginSettings(t, map[string]string{"ALLOW": "vault:secret/*/app/db"})
	sc := newScope(t)
	vol := sc.createVolume("allow-kv-data", "backend=vault", "secret=secret/data/app/db", "key=password")
	r := sc.runFail([]string{"-v", vol + ":/run/secrets/s"}, "cat", "/run/secrets/s")
	wantContains(t, "docker run's error", r.stderr, vol, `"secret/data/app/db" is the object "secret/app/db"`, "not allowed by the plugin's ALLOW setting")
	wantNoHostMount(t, vol)
}
