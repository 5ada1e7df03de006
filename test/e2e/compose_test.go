//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// composeProject is one compose file in a folder of the test's, run under
// a project name of the suite's.
type composeProject struct {
	t       *testing.T
	name    string
	file    string
	command string // for messages: docker-compose or docker compose
}

func newComposeProject(t *testing.T, yml string) *composeProject {
	t.Helper()
	p := &composeProject{
		t:       t,
		name:    strings.ReplaceAll(env.name("compose"), ".", ""),
		file:    filepath.Join(t.TempDir(), "docker-compose.yml"),
		command: "docker-compose",
	}
	if env.engine == engineCurrent {
		p.command = "docker compose"
	}
	if err := os.WriteFile(p.file, []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// run runs the engine's Compose on the project; stdin is empty, so a
// question (such as whether to recreate a volume) cannot be answered.
func (p *composeProject) run(args ...string) result {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	return composeCommand(ctx, append([]string{"--ansi", "never", "-p", p.name, "-f", p.file}, args...)...)
}

func (p *composeProject) mustRun(args ...string) result {
	p.t.Helper()
	r := p.run(args...)
	if r.err != nil {
		p.t.Fatalf("%v", r)
	}
	return r
}

// unixNano is t as docker events --since and --until take it.
func unixNano(t time.Time) string { return fmt.Sprintf("%d.%09d", t.Unix(), t.Nanosecond()) }

// TestCompose declares the volume in a compose file, which prefixes its
// name with the project's, with the Compose of the engine's leg:
// docker-compose 1.29 on Engine 20.10, Compose v5 on the current engine.
// The driver is the plugin's full name (dsv:latest): Docker reports that
// name as the volume's driver, and docker-compose 1.29 refuses to reuse a
// volume whose driver differs from the file's, so `driver: dsv` works there
// only until the volume exists (Compose v5 takes either: TestComposeV5).
func TestCompose(t *testing.T) {
	sc := newScope(t)
	p := newComposeProject(t, fmt.Sprintf(`version: "2.4"
services:
  app:
    image: %s
    network_mode: none
    labels: ["dsv-e2e=1"]
    command: ["cat", "/run/secrets/db"]
    volumes:
      - db:/run/secrets/db
volumes:
  db:
    driver: %s
    driver_opts:
      secret: app/db.json
      key: user
`, env.image, env.driver))
	vol := p.name + "_db"
	sc.volumes = append(sc.volumes, vol)
	sc.onCleanup(func() { p.run("down", "-v", "--remove-orphans") })

	r := p.mustRun("run", "--rm", "-T", "app")
	if r.stdout != env.dbUser {
		t.Errorf("%s run prints %q, want the user %q\n%v", p.command, r.stdout, env.dbUser, r)
	}
	v := inspectVolume(t, vol)
	if v.Driver != env.driver || v.Status["secret"] != "app/db.json" || v.Status["key"] != "user" {
		t.Errorf("volume %s: driver %q status %v, want driver %s, secret app/db.json, key user", vol, v.Driver, v.Status, env.driver)
	}

	r = p.mustRun("up", "--abort-on-container-exit", "--exit-code-from", "app")
	if !strings.Contains(r.stdout, "| "+env.dbUser) {
		t.Errorf("%s up shows no line with the user %q:\n%v", p.command, env.dbUser, r)
	}

	p.mustRun("down", "-v")
	if volumeExists(t, vol) {
		t.Errorf("volume %s exists after %s down -v", vol, p.command)
	}
	wantNoHostMount(t, vol)
}

// TestComposeV5 is how users of the current Compose (`docker compose`)
// write it: `driver: dsv` (the short name, as in `docker volume create -d
// dsv`) with driver_opts, beside an `external: true` volume made with
// docker volume create; a second `up` with unchanged options reuses the
// volume without asking to recreate it; `down -v` removes the project's
// volume and leaves the external one. Engine 20.10's leg has Debian's
// docker-compose 1.29 and no Compose v5: the current engine's leg (make
// e2e-current, run by make test) runs this test.
func TestComposeV5(t *testing.T) {
	if env.engine != engineCurrent {
		t.Skipf("Compose v5 is tested with the current engine (make e2e-current); %s's leg has docker-compose 1.29 (TestCompose)", env.engine)
	}
	sc := newScope(t)
	ext := sc.createVolume("ext", "secret=app/db.json", "key=password")
	p := newComposeProject(t, fmt.Sprintf(`services:
  app:
    image: %s
    network_mode: none
    labels: ["dsv-e2e=1"]
    command: ["sh", "-c", "echo user=$$(cat /run/secrets/user) password=$$(cat /run/secrets/password)"]
    volumes:
      - user:/run/secrets/user
      - ext:/run/secrets/password
volumes:
  user:
    driver: %s
    driver_opts:
      secret: app/db.json
      key: user
  ext:
    external: true
    name: %s
`, env.image, env.plugin, ext))
	vol := p.name + "_user"
	sc.volumes = append(sc.volumes, vol)
	sc.onCleanup(func() { p.run("down", "-v", "--remove-orphans") })
	want := fmt.Sprintf("user=%s password=%s", env.dbUser, env.dbPassword)

	r := p.mustRun("up", "--abort-on-container-exit", "--exit-code-from", "app")
	if !strings.Contains(r.stdout, "| "+want) {
		t.Errorf("docker compose up shows no line %q:\n%v", want, r)
	}
	v := inspectVolume(t, vol)
	if v.Driver != env.driver || v.Options["secret"] != "app/db.json" || v.Options["key"] != "user" {
		t.Errorf("volume %s: driver %q options %v, want driver %s, secret app/db.json, key user", vol, v.Driver, v.Options, env.driver)
	}

	// Unchanged options: the same volume, no question (stdin is empty, so
	// a question would fail the command), and no volume event but mounts.
	since := time.Now()
	r = p.mustRun("up", "--abort-on-container-exit", "--exit-code-from", "app")
	if !strings.Contains(r.stdout, "| "+want) {
		t.Errorf("the second docker compose up shows no line %q:\n%v", want, r)
	}
	if out := r.stdout + r.stderr; strings.Contains(strings.ToLower(out), "recreate") {
		t.Errorf("the second docker compose up, with unchanged options, speaks of recreating:\n%v", r)
	}
	events := mustDocker(t, "events", "--since", unixNano(since), "--until", unixNano(time.Now()),
		"--filter", "type=volume", "--filter", "volume="+vol, "--format", "{{.Action}}")
	if strings.Contains(events, "create") || strings.Contains(events, "destroy") {
		t.Errorf("the second docker compose up, with unchanged options, recreated volume %s; its events:\n%s", vol, events)
	}
	if !strings.Contains(events, "mount") {
		t.Errorf("no mount of volume %s in the events of the second docker compose up (the check reads nothing?): %q", vol, events)
	}

	p.mustRun("down", "-v")
	if volumeExists(t, vol) {
		t.Errorf("volume %s exists after docker compose down -v", vol)
	}
	if !volumeExists(t, ext) {
		t.Errorf("the external volume %s is gone after docker compose down -v", ext)
	}
	wantNoHostMount(t, vol)
	wantNoHostMount(t, ext)
}
