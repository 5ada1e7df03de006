// Package buildplugin tests build-plugin.sh against a fake docker command
// that keeps its plugins in a folder, as dockerd keeps them under its root.
package buildplugin

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fakeDocker answers the docker commands build-plugin.sh runs. Plugins are
// files $FAKE_DOCKER/plugins/NAME holding their id; a plugin's folder is
// $FAKE_DOCKER/root/plugins/ID, removed with it. FAKE_CREATE_FAIL set makes
// `docker plugin create` fail.
const fakeDocker = `#!/usr/bin/env bash
set -euo pipefail
d=$FAKE_DOCKER
echo "$*" >>"$d/log"
case "$1 ${2:-}" in
"version --format") echo 20.10.99 ;;
"info -f") echo "$d/root" ;;
"plugin inspect")
	shift 2
	fmt=
	if [[ $1 == -f ]]; then fmt=$2; shift 2; fi
	[[ -f $d/plugins/$1 ]] || { echo "Error: No such plugin: $1" >&2; exit 1; }
	case $fmt in
	'') echo '[{}]' ;;
	'{{.Id}}') cat "$d/plugins/$1" ;;
	esac ;;
"plugin disable" | "plugin enable" | "plugin ls") ;;
"plugin rm")
	id=$(cat "$d/plugins/$4")
	rm -rf "$d/root/plugins/$id" "$d/plugins/$4" ;;
"plugin create")
	[[ -z ${FAKE_CREATE_FAIL:-} ]] || { echo "Error response from daemon: fake failure" >&2; exit 1; }
	n=$(($(ls "$d/root/plugins" | wc -l) + 1))
	mkdir -p "$d/root/plugins/id$n/rootfs"
	echo "id$n" >"$d/plugins/$3" ;;
*) echo "fake docker: unexpected: $*" >&2; exit 1 ;;
esac
`

const stateRel = "propagated-mount/.state/state.json"

// TestFailedCreateKeepsVolumes: a `docker plugin create` that fails after
// the old plugin was removed loses no volume record: the next run carries
// them over into the new plugin.
func TestFailedCreateKeepsVolumes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("build-plugin.sh creates the plugin's host folders under /var/lib/dsv; CI runs it as root")
	}
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	fake := filepath.Join(dir, "docker")
	bin := filepath.Join(dir, "bin")
	for _, d := range []string{filepath.Join(fake, "plugins"), filepath.Join(fake, "root", "plugins", "old"), bin} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(bin, "docker"), []byte(fakeDocker), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(fake, "plugins", "dsv"), []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	const state = `{"volumes":{"db":{"options":{"secret":"prod/db"}}}}`
	oldState := filepath.Join(fake, "root", "plugins", "old", stateRel)
	if err := os.MkdirAll(filepath.Dir(oldState), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(oldState, []byte(state), 0o600); err != nil {
		t.Fatal(err)
	}
	backup := filepath.Join(dir, "backup")
	run := func(extra ...string) (string, error) {
		cmd := exec.Command(filepath.Join(repo, "build-plugin.sh"), "--name", "dsv")
		cmd.Env = append(os.Environ(),
			"PATH="+bin+":/usr/local/go/bin:"+os.Getenv("PATH"),
			"FAKE_DOCKER="+fake,
			"DSV_PLUGIN_DIR="+filepath.Join(dir, "plugin"),
			"DSV_STATE_BACKUP="+backup,
			"VERSION=test",
		)
		cmd.Env = append(cmd.Env, extra...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	out, err := run("FAKE_CREATE_FAIL=1")
	if err == nil {
		t.Fatalf("build-plugin.sh succeeded although docker plugin create failed:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(fake, "plugins", "dsv")); err == nil {
		t.Fatalf("the fake did not remove the old plugin:\n%s", out)
	}
	if !strings.Contains(out, "run build-plugin.sh again") {
		t.Errorf("the failed run does not say where the volumes wait:\n%s", out)
	}

	out, err = run()
	if err != nil {
		t.Fatalf("build-plugin.sh after the failed run: %v\n%s", err, out)
	}
	id, err := os.ReadFile(filepath.Join(fake, "plugins", "dsv"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(fake, "root", "plugins", strings.TrimSpace(string(id)), stateRel))
	if err != nil || string(got) != state {
		t.Fatalf("the new plugin's state = %q, %v; want the old plugin's volumes\n%s", got, err, out)
	}
	if entries, _ := os.ReadDir(backup); len(entries) != 0 {
		t.Errorf("the backup is left after it was carried over: %d entries", len(entries))
	}
}
