//go:build e2e

package e2e

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
)

// pluginSettings reads the suite plugin's settings as `docker plugin set`
// takes them: env entries as KEY, mount sources as NAME.source.
func pluginSettings(t testing.TB) map[string]string {
	t.Helper()
	return pluginSettingsOf(t, env.plugin)
}

// pluginSettingsOf reads the settings of the plugin named name. A mount's
// source is read from Config.Mounts, the one dockerd mounts and `docker
// plugin set` changes: Settings.Mounts stops following it once dockerd
// reloads the plugin (a restart, an upgrade).
func pluginSettingsOf(t testing.TB, name string) map[string]string {
	t.Helper()
	out := mustDocker(t, "plugin", "inspect", "--format", `{"Env":{{json .Settings.Env}},"Mounts":{{json .Config.Mounts}}}`, name)
	var s struct {
		Env    []string
		Mounts []struct {
			Name   string
			Source string
		}
	}
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("docker plugin inspect %s: %v: %q", name, err, out)
	}
	m := map[string]string{}
	for _, kv := range s.Env {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	for _, mt := range s.Mounts {
		m[mt.Name+".source"] = mt.Source
	}
	return m
}

// applyPluginSettings disables the plugin, sets the settings and enables it
// again; settings change only while a plugin is disabled.
func applyPluginSettings(t testing.TB, settings map[string]string) error {
	t.Helper()
	args := []string{"plugin", "set", env.plugin}
	for _, k := range slices.Sorted(maps.Keys(settings)) {
		args = append(args, k+"="+settings[k])
	}
	if r := docker(t, "plugin", "disable", "-f", env.plugin); r.err != nil && !strings.Contains(r.stderr, "already disabled") {
		return r.err
	}
	r := docker(t, args...)
	// Enable in any case: the rest of the suite needs the plugin.
	if e := docker(t, "plugin", "enable", env.plugin); e.err != nil {
		if r.err != nil {
			t.Errorf("%v", r)
		}
		t.Errorf("%v", e)
		return e.err
	}
	if r.err != nil {
		t.Errorf("%v", r)
	}
	return r.err
}

// changePluginSettings gives the plugin other settings for the rest of the
// test, and the old ones back when it ends. Call it before newScope: cleanups
// run last-in first-out, so the settings then come back after the scope's
// containers and volumes are gone, and the plugin is never disabled under a
// running container. restored reports, at cleanup time, whether the old
// settings are back (so that a host folder the test pointed a mount at may
// go; a plugin whose mount source is missing cannot be enabled, and dockerd
// 20.10 then panics at its next start).
func changePluginSettings(t *testing.T, settings map[string]string) (restored func() bool) {
	t.Helper()
	before := pluginSettings(t)
	old := map[string]string{}
	for k := range settings {
		v, ok := before[k]
		if !ok {
			t.Fatalf("plugin %s has no setting %q (settings: %v)", env.plugin, k, slices.Sorted(maps.Keys(before)))
		}
		old[k] = v
	}
	ok := false
	t.Cleanup(func() {
		ok = applyPluginSettings(t, old) == nil
		if !ok {
			logf("could not restore plugin %s settings %v", env.plugin, old)
		}
	})
	if err := applyPluginSettings(t, settings); err != nil {
		t.Fatalf("set plugin %s settings %v: %v", env.plugin, settings, err)
	}
	t.Logf("plugin %s: set %v for this test (was %v)", env.plugin, settings, old)
	return func() bool { return ok }
}
