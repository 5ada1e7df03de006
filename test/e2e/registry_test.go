//go:build e2e

package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dsv-plugin/dsv/test/servers/registry"
)

// TestRegistryInstallUpgrade publishes the plugin as users get it: pushed
// by build-plugin.sh --push to a real registry (Debian's docker-registry on
// 127.0.0.1), installed with `docker plugin install --alias`, then upgraded
// to a second tag with `docker plugin upgrade` while a container uses a
// volume. Volumes, changed settings and the running container's files
// survive; the arm64 image, pushed under its own tag, holds an arm64
// binary (it cannot run here).
func TestRegistryInstallUpgrade(t *testing.T) {
	reg := startRegistry(t)
	repo := path.Base(strings.SplitN(env.plugin, ":", 2)[0]) + "-registry"
	tag := func(s string) string { return env.runID + "-" + s }
	ref := func(s string) string { return reg.Addr + "/" + repo + ":" + tag(s) }
	alias := repo + "-upgrade"
	images := []struct{ tag, arch, version string }{
		{tag: "v1", arch: "amd64", version: "e2e-" + env.runID + "-v1"},
		{tag: "v2", arch: "amd64", version: "e2e-" + env.runID + "-v2"},
		{tag: "v1-arm64", arch: "arm64", version: "e2e-" + env.runID + "-v1"},
	}
	machines := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}

	// A plugin left by an interrupted run has this test's alias: its own.
	removePlugin(alias)
	t.Cleanup(func() { removePlugin(alias) })

	t.Setenv("DSV_PLUGIN_DIR", filepath.Join(t.TempDir(), "plugin"))
	for _, im := range images {
		t.Setenv("VERSION", im.version)
		if err := runScript(env.repo, 10*time.Minute, "./build-plugin.sh", "--push", ref(im.tag), "--arch", im.arch); err != nil {
			t.Fatal(err)
		}
		if r := docker(t, "plugin", "inspect", ref(im.tag)); r.err == nil {
			t.Errorf("build-plugin.sh --push left plugin %s installed", ref(im.tag))
		}
		wantPushedPlugin(t, reg, repo, tag(im.tag), machines[im.arch], im.version)
	}

	files := t.TempDir()
	if err := os.Chmod(files, 0o755); err != nil {
		t.Fatal(err)
	}
	before, after := "before-"+randomHex(8), "after-"+randomHex(8)
	writeSecret := func(v string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(files, "app-token"), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeSecret(before)
	// Settings given at install time, as `docker plugin set` would.
	settings := map[string]string{"files.source": files, "LOG_LEVEL": "debug", "CACHE_TTL": "0"}
	install := []string{"plugin", "install", "--grant-all-permissions", "--alias", alias, ref("v1")}
	for k, v := range settings {
		install = append(install, k+"="+v)
	}
	mustDocker(t, install...)

	sc := newScope(t)
	// Before the scope removes the volumes: a failure may leave the plugin disabled.
	sc.onCleanup(func() { dockerCtx(context.Background(), "plugin", "enable", alias) })
	vol, dirVol := sc.volume("upgrade"), sc.volume("upgrade-dir")
	mustDocker(t, "volume", "create", "-d", alias, "-o", "backend=file", "-o", "secret=app-token", vol)
	mustDocker(t, "volume", "create", "-d", alias, "-o", "backend=file", "-o", "secret=app-token", "-o", "filename=token", dirVol)
	running := sc.start("upgrade-running", "--stop-timeout", "1", "-v", vol+":/run/secrets/token")
	wantExec(t, running, before)

	// Upgrading takes a disabled plugin, and disabling one whose volume a
	// container uses takes -f.
	r := dockerFails(t, "plugin", "upgrade", "--grant-all-permissions", "--skip-remote-check", alias, ref("v2"))
	wantContains(t, "docker plugin upgrade of an enabled plugin", r.stdout+r.stderr, "disabled")
	r = dockerFails(t, "plugin", "disable", alias)
	wantContains(t, "docker plugin disable of a plugin in use", r.stderr, "in use")
	// The README's steps. dockerd 20.10's upgrade keeps env settings but
	// gives mounts the new image's sources: they are set again.
	mounts := mustDocker(t, "plugin", "inspect", "--format", "{{range .Config.Mounts}}{{.Name}}.source={{.Source}} {{end}}", alias)
	mustDocker(t, "plugin", "disable", "-f", alias)
	wantExec(t, running, before)
	mustDocker(t, "plugin", "upgrade", "--grant-all-permissions", "--skip-remote-check", alias, ref("v2"))
	t.Logf("protocol: mounts after the upgrade: %s (before: %s)",
		mustDocker(t, "plugin", "inspect", "--format", "{{range .Config.Mounts}}{{.Name}}.source={{.Source}} {{end}}", alias), mounts)
	mustDocker(t, append([]string{"plugin", "set", alias}, strings.Fields(mounts)...)...)
	mustDocker(t, "plugin", "enable", alias)

	info := strings.Fields(mustDocker(t, "plugin", "inspect", "--format", "{{.Id}} {{.PluginReference}} {{.Name}}", alias))
	if len(info) != 3 || info[1] != ref("v2") {
		t.Fatalf("after the upgrade, plugin %s: got %q, want its reference to be %s", alias, info, ref("v2"))
	}
	out, err := exec.Command(filepath.Join(env.dockerRoot, "plugins", info[0], "rootfs", "dsv"), "-version").CombinedOutput()
	if got, want := strings.TrimSpace(string(out)), "dsv "+images[1].version; err != nil || got != want {
		t.Errorf("the upgraded plugin's binary says %q (%v), want %q", got, err, want)
	}
	got := pluginSettingsOf(t, alias)
	for k, v := range settings {
		if got[k] != v {
			t.Errorf("after the upgrade, setting %s = %q, want %q as set at install", k, got[k], v)
		}
	}
	listed := mustDocker(t, "volume", "ls", "-q", "--filter", "driver="+info[2])
	for _, v := range []string{vol, dirVol} {
		if !strings.Contains("\n"+listed, "\n"+v+"\n") {
			t.Errorf("docker volume ls does not list %s after the upgrade:\n%s", v, listed)
		}
	}
	t.Logf("after the upgrade, %s Status: %v", vol, inspectVolume(t, vol).Status)

	// The running container keeps the files it was given; new mounts read
	// the backend again, through the files.source setting kept by the
	// upgrade (CACHE_TTL=0: no cached value).
	writeSecret(after)
	wantExec(t, running, before)
	if out := sc.mustRun([]string{"-v", vol + ":/run/secrets/token"}, "cat", "/run/secrets/token"); out != after {
		t.Errorf("a new container reads %q from %s after the upgrade, want %q", out, vol, after)
	}
	if out := sc.mustRun([]string{"-v", dirVol + ":/run/secrets"}, "cat", "/run/secrets/token"); out != after {
		t.Errorf("a new container reads %q from %s after the upgrade, want %q", out, dirVol, after)
	}
	mustDocker(t, "rm", "-f", running)
	for _, v := range []string{vol, dirVol} {
		wantNoHostMount(t, v)
		mustDocker(t, "volume", "rm", v)
	}
}

// startRegistry runs a registry for the test, with its storage in a
// temporary folder.
func startRegistry(t *testing.T) *registry.Process {
	t.Helper()
	bin, err := registry.Binary()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	reg, err := registry.Start(ctx, bin, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	reg.Cleanup(t)
	return reg
}

// wantPushedPlugin checks what the registry holds under repo:tag: a plugin
// config whose entrypoint is /dsv, and one layer whose /dsv is a binary
// for machine stamped with version.
func wantPushedPlugin(t *testing.T, reg *registry.Process, repo, tag string, machine elf.Machine, version string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m, err := reg.Manifest(ctx, repo, tag)
	if err != nil {
		t.Fatal(err)
	}
	if m.Config.MediaType != "application/vnd.docker.plugin.v1+json" || len(m.Layers) != 1 {
		t.Fatalf("%s:%s: config %s with %d layers, want a plugin config and one layer", repo, tag, m.Config.MediaType, len(m.Layers))
	}
	b, err := reg.Blob(ctx, repo, m.Config)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Entrypoint []string `json:"entrypoint"`
	}
	if err := json.Unmarshal(b, &cfg); err != nil || len(cfg.Entrypoint) != 1 || cfg.Entrypoint[0] != "/dsv" {
		t.Errorf("%s:%s: plugin config entrypoint %q (%v), want [/dsv]", repo, tag, cfg.Entrypoint, err)
	}
	layer, err := reg.Blob(ctx, repo, m.Layers[0])
	if err != nil {
		t.Fatal(err)
	}
	bin, err := fileInLayer(layer, "dsv")
	if err != nil {
		t.Fatalf("%s:%s: %v", repo, tag, err)
	}
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		t.Fatalf("%s:%s: /dsv is not an ELF binary: %v", repo, tag, err)
	}
	defer f.Close()
	if f.Machine != machine || f.FileHeader.Class != elf.ELFCLASS64 {
		t.Errorf("%s:%s: /dsv is for %v (%v), want %v", repo, tag, f.Machine, f.FileHeader.Class, machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s:%s: /dsv is dynamically linked; the rootfs has no libc", repo, tag)
		}
	}
	if !bytes.Contains(bin, []byte(version)) {
		t.Errorf("%s:%s: /dsv does not carry its version %q", repo, tag, version)
	}
	t.Logf("%s:%s: plugin config, one layer of %d bytes, /dsv for %v (%d bytes)", repo, tag, m.Layers[0].Size, f.Machine, len(bin))
}

// fileInLayer returns the content of the regular file name in a gzipped
// tar layer.
func fileInLayer(layer []byte, name string) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(layer))
	if err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("layer has no /%s", name)
		}
		if err != nil {
			return nil, fmt.Errorf("layer: %w", err)
		}
		if path.Clean("/"+h.Name) == "/"+name && h.Typeflag == tar.TypeReg {
			return io.ReadAll(io.LimitReader(tr, 256<<20))
		}
	}
}

// wantExec checks the secret a running container reads at
// /run/secrets/token.
func wantExec(t *testing.T, container, want string) {
	t.Helper()
	if got := mustDocker(t, "exec", container, "cat", "/run/secrets/token"); got != want {
		t.Fatalf("container %s reads %q, want %q", container, got, want)
	}
}

// removePlugin disables and removes a plugin of the test's own, if it is
// installed.
func removePlugin(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if r := dockerCtx(ctx, "plugin", "inspect", name); r.err != nil {
		return
	}
	dockerCtx(ctx, "plugin", "disable", "-f", name)
	if r := dockerCtx(ctx, "plugin", "rm", "-f", name); r.err != nil {
		logf("remove plugin %s: %v", name, r)
	}
}
