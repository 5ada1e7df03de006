//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCompose declares the volume in a compose file (docker-compose 1.29),
// which prefixes its name with the project's. The driver is the plugin's
// full name (dsv:latest): Docker reports that name as the volume's driver,
// and docker-compose refuses to reuse a volume whose driver differs from
// the file's, so `driver: dsv` works only until the volume exists.
func TestCompose(t *testing.T) {
	sc := newScope(t)
	project := strings.ReplaceAll(env.name("compose"), ".", "")
	dir := t.TempDir()
	file := filepath.Join(dir, "docker-compose.yml")
	yml := fmt.Sprintf(`version: "2.4"
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
`, env.image, env.driver)
	if err := os.WriteFile(file, []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	compose := func(args ...string) result {
		ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
		defer cancel()
		return command(ctx, "docker-compose", append([]string{"--ansi", "never", "-p", project, "-f", file}, args...)...)
	}
	vol := project + "_db"
	sc.volumes = append(sc.volumes, vol)
	sc.onCleanup(func() { compose("down", "-v", "--remove-orphans") })

	r := compose("run", "--rm", "-T", "app")
	if r.err != nil {
		t.Fatalf("%v", r)
	}
	if r.stdout != env.dbUser {
		t.Errorf("docker-compose run prints %q, want the user %q\n%v", r.stdout, env.dbUser, r)
	}
	v := inspectVolume(t, vol)
	if v.Driver != env.driver || v.Status["secret"] != "app/db.json" || v.Status["key"] != "user" {
		t.Errorf("volume %s: driver %q status %v, want driver %s, secret app/db.json, key user", vol, v.Driver, v.Status, env.driver)
	}

	r = compose("up", "--abort-on-container-exit", "--exit-code-from", "app")
	if r.err != nil {
		t.Fatalf("%v", r)
	}
	if !strings.Contains(r.stdout, "| "+env.dbUser) {
		t.Errorf("docker-compose up shows no line with the user %q:\n%v", env.dbUser, r)
	}

	if r := compose("down", "-v"); r.err != nil {
		t.Fatalf("%v", r)
	}
	if volumeExists(t, vol) {
		t.Errorf("volume %s exists after docker-compose down -v", vol)
	}
	wantNoHostMount(t, vol)
}
