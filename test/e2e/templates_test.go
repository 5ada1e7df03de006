//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// templateSecrets are the secrets the template tests read: a JSON secret
// in moto and a plain one in the file store, with random values that must
// never appear in an error.
type templateSecrets struct {
	db, host           string // their names
	user, password, hv string // their values
}

func newTemplateSecrets(t *testing.T) templateSecrets {
	t.Helper()
	s := templateSecrets{
		db:       env.name("tmpl/db"),
		host:     env.name("tmpl/host"),
		user:     "tuser" + randomHex(4),
		password: "tpw" + randomHex(8),
		hv:       "db-" + randomHex(4) + ".example:5432",
	}
	createSecret(t, s.db, fmt.Sprintf(`{"user":%q,"password":%q}`, s.user, s.password))
	if err := env.writeFile(s.host, []byte(s.hv)); err != nil {
		t.Fatal(err)
	}
	return s
}

// wantNoValues checks that output shows none of the secrets' values.
func (s templateSecrets) wantNoValues(t *testing.T, what, output string) {
	t.Helper()
	for _, v := range []string{s.user, s.password, s.hv} {
		if strings.Contains(output, v) {
			t.Errorf("%s shows a secret value %q:\n%s", what, v, output)
		}
	}
}

// useTemplatesFolder points the plugin's templates mount at a folder of its
// own for the rest of the test and returns it.
func useTemplatesFolder(t *testing.T) string {
	t.Helper()
	return usePluginFolder(t, "templates", nil)
}

// usePluginFolder points the plugin's mount (templates, credentials) at a
// new, empty folder of its own for the rest of the test, with the other
// settings given, and returns the folder. The folder goes only once the old
// settings are back (a plugin whose mount source is missing cannot be
// enabled, and dockerd 20.10 then panics at its next start).
func usePluginFolder(t *testing.T, mount string, settings map[string]string) string {
	t.Helper()
	dir := filepath.Join("/var/lib/dsv-e2e-"+mount, env.plugin)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	// Registered first, so it runs after the settings are restored.
	var restored func() bool
	t.Cleanup(func() {
		if restored == nil || !restored() {
			logf("kept %s: plugin %s may still use it as %s.source", dir, env.plugin, mount)
			return
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove %s: %v", dir, err)
		}
		_ = os.Remove(filepath.Dir(dir))
	})
	all := map[string]string{mount + ".source": dir}
	for k, v := range settings {
		all[k] = v
	}
	restored = changePluginSettings(t, all)
	return dir
}

// TestTemplates renders files from an AWS secret (moto) and a file store
// secret: inline with template.NAME, and from the templates mount with
// template-file.NAME.
func TestTemplates(t *testing.T) {
	dir := useTemplatesFolder(t)
	s := newTemplateSecrets(t)

	t.Run("inline, two backends", func(t *testing.T) {
		sc := newScope(t)
		// Passed to docker as one argument, as a shell would after
		// quoting: the CLI splits -o at the first '=' only, so the '=',
		// spaces and quotes inside reach the plugin intact.
		tmpl := fmt.Sprintf(`postgres://{{ secret "aws" %q "user" }}:{{ secret "aws" %q "password" }}@{{ secret "file" %q }}/app`, s.db, s.db, s.host)
		vol := sc.createVolume("tmpl-dsn", "template.dsn="+tmpl)
		if got := inspectVolume(t, vol).Options["template.dsn"]; got != tmpl {
			t.Errorf("docker volume inspect: Options[template.dsn] = %q, want the template as given %q", got, tmpl)
		}
		want := "postgres://" + s.user + ":" + s.password + "@" + s.hv + "/app"
		if got := sc.mustRun([]string{"-v", vol + ":/run/secrets"}, "cat", "/run/secrets/dsn"); got != want {
			t.Errorf("cat /run/secrets/dsn = %q, want %q", got, want)
		}
		st := inspectVolume(t, vol)
		s.wantNoValues(t, "docker volume inspect", fmt.Sprint(st.Status))
		t.Logf("Status: %v", st.Status)
	})

	t.Run("template file", func(t *testing.T) {
		sc := newScope(t)
		text := fmt.Sprintf("# app.conf, rendered by dsv\n[db]\nuser = {{ secret \"aws\" %q \"user\" }}\npassword = {{ secret \"aws\" %q \"password\" | dotenvQuote }}\nhost = {{ secret \"file\" %q }}\n", s.db, s.db, s.host)
		if err := os.WriteFile(filepath.Join(dir, "app.conf.tmpl"), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		vol := sc.createVolume("tmpl-file", "template-file.app.conf=app.conf.tmpl", "uid=1000", "mode=0400")
		want := "# app.conf, rendered by dsv\n[db]\nuser = " + s.user + "\npassword = " + s.password + "\nhost = " + s.hv + "\n"
		mnt := []string{"-u", "1000", "-v", vol + ":/run/secrets"}
		if got := sc.mustRun(mnt, "cat", "/run/secrets/app.conf"); got != want {
			t.Errorf("cat /run/secrets/app.conf = %q, want %q", got, want)
		}
		if got := sc.mustRun(mnt, "stat", "-L", "-c", "%u %a", "/run/secrets/app.conf"); got != "1000 400\n" {
			t.Errorf("stat -L -c '%%u %%a' = %q, want 1000 400", got)
		}

		// The file is read again at each first mount: an edit shows in the
		// next container once the volume was unmounted.
		if err := os.WriteFile(filepath.Join(dir, "app.conf.tmpl"), []byte(text+"port = 5432\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if got := sc.mustRun(mnt, "cat", "/run/secrets/app.conf"); got != want+"port = 5432\n" {
			t.Errorf("after editing the template file: cat = %q, want %q", got, want+"port = 5432\n")
		}
	})
}

// TestTemplateErrors: a template that cannot parse fails docker volume
// create, one that reads a secret that does not exist fails docker run;
// both name the template and the line, and neither shows a value.
func TestTemplateErrors(t *testing.T) {
	dir := useTemplatesFolder(t)
	s := newTemplateSecrets(t)
	user := fmt.Sprintf(`{{ secret "aws" %q "user" }}`, s.db)
	password := fmt.Sprintf(`{{ secret "aws" %q "password" }}`, s.db)
	host := fmt.Sprintf(`{{ secret "file" %q }}`, s.host)

	t.Run("syntax error at create", func(t *testing.T) {
		sc := newScope(t)
		vol := sc.volume("tmpl-syntax")
		tmpl := "user = " + user + "\npassword = " + strings.TrimSuffix(password, "}") + "\nhost = " + host + "\n"
		r := dockerFails(t, "volume", "create", "-d", env.plugin, "-o", "template.conf="+tmpl, vol)
		t.Logf("docker volume create: %s", r.stderr)
		// `option "template` matches the full key template.conf, and also
		// the bare "template" that the plugin names today; the template's
		// name and line are what point at the mistake.
		wantContains(t, "docker volume create's error", r.stderr, `volume "`+vol+`"`, `option "template`, "template: conf:2:")
		s.wantNoValues(t, "docker volume create's error", r.stderr+r.stdout)
		if volumeExists(t, vol) {
			t.Errorf("volume %s exists after a failed create", vol)
		}
	})

	t.Run("syntax error in a template file at create", func(t *testing.T) {
		sc := newScope(t)
		if err := os.WriteFile(filepath.Join(dir, "broken.tmpl"), []byte("# broken\nuser = "+user+"\n{{ if }}\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		vol := sc.volume("tmpl-fsyntax")
		r := dockerFails(t, "volume", "create", "-d", env.plugin, "-o", "template-file.out=broken.tmpl", vol)
		t.Logf("docker volume create: %s", r.stderr)
		wantContains(t, "docker volume create's error", r.stderr, `volume "`+vol+`"`, `option "template-file`, "template: out:3:")
		s.wantNoValues(t, "docker volume create's error", r.stderr+r.stdout)
	})

	t.Run("missing template file at create", func(t *testing.T) {
		sc := newScope(t)
		vol := sc.volume("tmpl-nofile")
		r := dockerFails(t, "volume", "create", "-d", env.plugin, "-o", "template-file.out=absent.tmpl", vol)
		t.Logf("docker volume create: %s", r.stderr)
		wantContains(t, "docker volume create's error", r.stderr, `option "template-file`, `template file "absent.tmpl" does not exist`)
	})

	mountFailures := []struct {
		name string
		tmpl string
		want []string
	}{
		{
			name: "missing file secret",
			tmpl: "user = " + user + "\npassword = " + password + "\nhost = {{ secret \"file\" \"" + s.host + "-absent\" }}\n",
			want: []string{`template "conf" line 3`, `file secret "` + s.host + `-absent"`, "not found"},
		},
		{
			name: "missing aws secret",
			tmpl: "host = " + host + "\n\nuser = {{ secret \"aws\" \"" + s.db + "-absent\" \"user\" }}\n",
			want: []string{`template "conf" line 3`, `aws secret "` + s.db + `-absent"`, "not found"},
		},
		{
			name: "missing key",
			tmpl: "user = " + user + "\nport = {{ secret \"aws\" \"" + s.db + "\" \"port\" }}\n",
			want: []string{`template: conf:2:`, `key "port"`, `its keys are: "password", "user"`},
		},
	}
	for _, tt := range mountFailures {
		t.Run(tt.name+" at mount", func(t *testing.T) {
			sc := newScope(t)
			vol := sc.createVolume("tmpl-mount", "template.conf="+tt.tmpl)
			r := sc.runFail([]string{"-v", vol + ":/run/secrets"}, "cat", "/run/secrets/conf")
			t.Logf("docker run: %s", r.stderr)
			wantContains(t, "docker run's error", r.stderr, append(tt.want, `volume "`+vol+`"`)...)
			s.wantNoValues(t, "docker run's error", r.stderr+r.stdout)
			st := inspectVolume(t, vol).Status
			s.wantNoValues(t, "docker volume inspect", fmt.Sprint(st))
			if st["lastError"] == nil {
				t.Errorf("Status has no lastError after the failed mount: %v", st)
			}
			wantNoHostMount(t, vol)
		})
	}
}
