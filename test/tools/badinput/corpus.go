// Package badinput is a corpus of malformed `docker volume create` inputs
// that dsv must refuse at create time, each with the words its error must
// hold so that a user knows what to fix.
//
// Two runners use it: the unit test of this package, which calls the real
// volumes.Driver's Create, and the end-to-end suite, which goes through the
// docker CLI. So this file is self-contained: no test-only code, no files.
//
// The environment the cases assume:
//   - the backends are file, aws and vault; the BACKEND setting is file
//     (the default), so a case without a backend option is a file volume;
//   - the file backend's folder may be empty: no case needs a file in it;
//   - the templates folder may be empty, and holds no file called
//     dsv-badinput-missing.tmpl;
//   - Vault's identities folder has no identity dsv-badinput-missing;
//   - create contacts no backend, so neither AWS nor Vault need answer.
//
// A case with an empty Volume lets the runner pick a valid name that no
// other volume has (e.g. badinput-<n>); the secret option, when a case
// relies on it, is always given. A value holding NUL cannot go through
// argv: see Case.ArgvSafe.
package badinput

import "strings"

// Case is one input that Create must refuse.
type Case struct {
	// Name names the case, for t.Run.
	Name string
	// Volume is the volume name; empty means any valid unused name.
	Volume string
	// Options are the -o options.
	Options map[string]string
	// Want are substrings of the error: the option at fault and what is
	// wrong with it.
	Want []string
}

// ArgvSafe reports whether the case can be given as command-line
// arguments: no NUL in its volume name or options. The others need the
// Engine API (POST /volumes/create).
func (c Case) ArgvSafe() bool {
	if strings.ContainsRune(c.Volume, 0) {
		return false
	}
	for k, v := range c.Options {
		if strings.ContainsRune(k, 0) || strings.ContainsRune(v, 0) {
			return false
		}
	}
	return true
}

// Sizes of the huge inputs.
const (
	// hugeLen is larger than any option value dsv accepts (64 KiB), and
	// below Linux's 128 KiB limit on one argument, so the CLI can pass it.
	hugeLen = 100 << 10
	// longName is longer than a file or volume name may be (255).
	longName = 300
)

// A valid AWS version id (32 to 64 letters, digits and hyphens).
const awsVersionID = "a1b2c3d4-5678-90ab-cdef-EXAMPLE11111"

// Cases returns the corpus, a fresh copy at each call.
func Cases() []Case {
	huge := strings.Repeat("a", hugeLen)
	long := strings.Repeat("n", longName)
	aws := func(kv ...string) map[string]string {
		return with(map[string]string{"backend": "aws", "secret": "prod/db"}, kv...)
	}
	vault := func(kv ...string) map[string]string {
		return with(map[string]string{"backend": "vault", "secret": "secret/app/db"}, kv...)
	}
	ssm := func(kv ...string) map[string]string {
		return with(map[string]string{"backend": "ssm", "secret": "/prod/db"}, kv...)
	}
	file := func(kv ...string) map[string]string { return with(map[string]string{"secret": "db"}, kv...) }
	tmpl := func(text string) map[string]string { return map[string]string{"template": text} }

	return []Case{
		// Unknown and misspelled options.
		{Name: "misspelled secert", Options: map[string]string{"secert": "db"}, Want: []string{`unknown option "secert"`, "known options are", "secret"}},
		{Name: "misspelled filname", Options: file("filname", "db.txt"), Want: []string{`unknown option "filname"`, "filename"}},
		{Name: "misspelled uidd", Options: file("uidd", "1000"), Want: []string{`unknown option "uidd"`, "uid"}},
		{Name: "option names are case-sensitive", Options: map[string]string{"Secret": "db"}, Want: []string{`unknown option "Secret"`}},
		{Name: "prefix without a file name", Options: file("file", "db"), Want: []string{`unknown option "file"`, "file.NAME"}},
		{Name: "misspelled prefix template-files", Options: map[string]string{"template-files.x": "a.tmpl"}, Want: []string{`unknown option "template-files.x"`}},
		{Name: "vault option on a file volume", Options: file("namespace", "team-a"), Want: []string{`unknown option "namespace"`}},
		{Name: "vault option on an aws volume", Options: aws("method", "write"), Want: []string{`unknown option "method"`}},
		{Name: "vault param without a name", Options: vault("param.", "x"), Want: []string{`option "param.": unknown to the vault backend`}},
		{Name: "unknown option in a file spec", Options: map[string]string{"file.db": "secret=db,uidd=1"}, Want: []string{`option "file.db"`, `unknown option "uidd" in the spec`}},
		{Name: "option name with a line break", Options: map[string]string{"secret\n": "db"}, Want: []string{`unknown option "secret\n"`}},
		{Name: "huge option name", Options: file(strings.Repeat("x", 1000), "y"), Want: []string{"option name", "1000 bytes long"}},

		// Empty values.
		{Name: "empty secret", Options: map[string]string{"secret": ""}, Want: []string{`option "secret": must not be empty`}},
		{Name: "empty key", Options: file("key", ""), Want: []string{`option "key": must not be empty`}},
		{Name: "empty mode", Options: file("mode", ""), Want: []string{`option "mode": "" is not an octal file mode`}},
		{Name: "empty uid", Options: file("uid", ""), Want: []string{`option "uid": "" is not a numeric id`}},
		{Name: "empty gid", Options: file("gid", ""), Want: []string{`option "gid": "" is not a numeric id`}},
		{Name: "empty format", Options: file("format", ""), Want: []string{`option "format": "" is not a format`}},
		{Name: "empty layout", Options: file("layout", ""), Want: []string{`option "layout": "" is not a layout`}},
		{Name: "empty refresh", Options: file("layout", "dir", "refresh", ""), Want: []string{`option "refresh": "" is not a duration`}},
		{Name: "empty backend", Options: file("backend", ""), Want: []string{`option "backend": unknown backend ""`}},
		{Name: "empty filename", Options: file("filename", ""), Want: []string{`option "filename": must not be empty`}},
		{Name: "empty template", Options: tmpl(""), Want: []string{`option "template"`, "is empty"}},
		{Name: "empty template-file", Options: map[string]string{"template-file": ""}, Want: []string{`option "template-file"`, "must be a clean relative path"}},
		{Name: "empty file spec", Options: map[string]string{"file.db": ""}, Want: []string{`option "file.db": empty spec`}},
		{Name: "empty aws version-id", Options: aws("version-id", ""), Want: []string{`option "version-id": must not be empty`}},
		{Name: "empty aws version-stage", Options: aws("version-stage", ""), Want: []string{`option "version-stage": must not be empty`}},
		{Name: "empty aws region", Options: aws("region", ""), Want: []string{`option "region": must not be empty`}},
		{Name: "empty vault version-id", Options: vault("version-id", ""), Want: []string{`option "version-id": must not be empty`}},
		{Name: "empty vault namespace", Options: vault("namespace", ""), Want: []string{`option "namespace": "" is not a namespace path`}},
		{Name: "empty vault identity", Options: vault("identity", ""), Want: []string{`option "identity": "" is not an identity name`}},
		{Name: "empty vault method", Options: vault("method", ""), Want: []string{`option "method": "" is not read or write`}},
		{Name: "empty vault wrap-ttl", Options: vault("wrap-ttl", ""), Want: []string{`option "wrap-ttl": "" is not a duration`}},

		// Huge values.
		{Name: "100 KiB file secret name", Options: map[string]string{"secret": huge}, Want: []string{`option "secret"`, "102400 bytes long", "the limit is 65536"}},
		{Name: "100 KiB aws secret name", Options: aws("secret", huge), Want: []string{`option "secret"`, "102400 bytes long"}},
		{Name: "100 KiB key", Options: file("key", huge), Want: []string{`option "key"`, "102400 bytes long"}},
		{Name: "100 KiB uid", Options: file("uid", huge), Want: []string{`option "uid"`, "102400 bytes long"}},
		{Name: "100 KiB template", Options: tmpl(`{{ secret "file" "db" }}` + huge), Want: []string{`option "template"`, "102424 bytes long", "the limit is 65536"}},
		{Name: "5000-byte file secret path", Options: map[string]string{"secret": strings.Repeat("abcd/", 1000) + "x"}, Want: []string{`option "secret"`, "5001 bytes long", "at most 4095"}},
		{Name: "file secret segment longer than 255", Options: map[string]string{"secret": "app/" + long}, Want: []string{`option "secret"`, "longer than 255 bytes"}},
		{Name: "aws secret name of 513 characters", Options: aws("secret", strings.Repeat("s", 513)), Want: []string{`option "secret"`, "is not a secret name", "1-512 characters"}},
		{Name: "vault path of 2000 characters", Options: vault("secret", strings.Repeat("p", 2000)), Want: []string{`option "secret": longer than 1024 characters`}},
		{Name: "filename longer than 255", Options: file("filename", long), Want: []string{`option "filename": is longer than 255 characters`}},
		{Name: "file.NAME longer than 255", Options: map[string]string{"file." + strings.Repeat("n", 260): "db"}, Want: []string{"the file name is longer than 255 characters"}},

		// Modes.
		{Name: "mode 0777 has write bits", Options: file("mode", "0777"), Want: []string{`option "mode": "0777" grants write permission`}},
		{Name: "mode 0644 has a write bit", Options: file("mode", "0644"), Want: []string{`option "mode": "0644" grants write permission`}},
		{Name: "mode abc", Options: file("mode", "abc"), Want: []string{`option "mode": "abc" is not an octal file mode`}},
		{Name: "mode 99999", Options: file("mode", "99999"), Want: []string{`option "mode": "99999" is not an octal file mode`}},
		{Name: "mode -1", Options: file("mode", "-1"), Want: []string{`option "mode": "-1" is not an octal file mode`}},
		{Name: "mode 0o444", Options: file("mode", "0o444"), Want: []string{`option "mode": "0o444" is not an octal file mode`}},
		{Name: "mode 4444 is setuid", Options: file("mode", "4444"), Want: []string{`option "mode": "4444" is not an octal file mode`}},
		{Name: "mode with a trailing line break", Options: file("mode", "0444\n"), Want: []string{`option "mode": "0444\n" is not an octal file mode`}},
		{Name: "writable mode in a file spec", Options: map[string]string{"file.db": "secret=db,mode=0666"}, Want: []string{`option "file.db": option "mode": "0666" grants write permission`}},

		// Owners.
		{Name: "negative uid", Options: file("uid", "-1"), Want: []string{`option "uid": "-1" is not a numeric id between 0 and 2147483647`}},
		{Name: "non-numeric uid", Options: file("uid", "root"), Want: []string{`option "uid": "root" is not a numeric id`}},
		{Name: "uid above 2^32-1", Options: file("uid", "4294967296"), Want: []string{`option "uid": "4294967296" is not a numeric id`}},
		{Name: "gid 2^32-1", Options: file("gid", "4294967295"), Want: []string{`option "gid": "4294967295" is not a numeric id`}},
		{Name: "gid in exponent form", Options: file("gid", "1e3"), Want: []string{`option "gid": "1e3" is not a numeric id`}},
		{Name: "uid with a trailing space", Options: file("uid", "1000 "), Want: []string{`option "uid": "1000 " is not a numeric id`}},
		{Name: "negative gid in a file spec", Options: map[string]string{"file.db": "secret=db,gid=-5"}, Want: []string{`option "file.db": option "gid": "-5" is not a numeric id`}},

		// Path traversal.
		{Name: "file secret ../etc/shadow", Options: map[string]string{"secret": "../etc/shadow"}, Want: []string{`option "secret": "../etc/shadow" leaves or escapes the file backend's folder`}},
		{Name: "file secret /etc/shadow", Options: map[string]string{"secret": "/etc/shadow"}, Want: []string{`option "secret": "/etc/shadow" is absolute`}},
		{Name: "file secret a/../../b", Options: map[string]string{"secret": "a/../../b"}, Want: []string{`option "secret": "a/../../b" leaves or escapes`}},
		{Name: "file secret with a trailing slash", Options: map[string]string{"secret": "app/"}, Want: []string{`option "secret": "app/" leaves or escapes`}},
		{Name: "file secret traversal in a file spec", Options: map[string]string{"file.db": "secret=../../etc/shadow"}, Want: []string{`option "file.db"`, `"../../etc/shadow" leaves or escapes`}},
		{Name: "file secret traversal in a template", Options: tmpl(`{{ secret "file" "../etc/shadow" }}`), Want: []string{`option "template"`, `"../etc/shadow" leaves or escapes`}},
		{Name: "filename ..", Options: file("filename", ".."), Want: []string{`option "filename": ".." is reserved`}},
		{Name: "filename a/../../x", Options: file("filename", "a/../../x"), Want: []string{`option "filename": "a/../../x" must be a single file name`}},
		{Name: "filename absolute", Options: file("filename", "/etc/cron.d/x"), Want: []string{`option "filename": "/etc/cron.d/x" must be a single file name`}},
		{Name: "filename ..data is dsv's", Options: file("filename", "..data"), Want: []string{`option "filename": "..data" is reserved`}},
		{Name: "file.NAME .", Options: map[string]string{"file..": "db"}, Want: []string{`option "file..": the file name "." is reserved`}},
		{Name: "file.NAME ..", Options: map[string]string{"file...": "db"}, Want: []string{`option "file...": the file name ".." is reserved`}},
		{Name: "file.NAME a/../../x", Options: map[string]string{"file.a/../../x": "db"}, Want: []string{`option "file.a/../../x": the file name "a/../../x" must be a single file name`}},
		{Name: "file.NAME absolute", Options: map[string]string{"file./etc/cron.d/x": "db"}, Want: []string{`option "file./etc/cron.d/x"`, "must be a single file name"}},
		{Name: "template.NAME ../x", Options: map[string]string{"template.../x": `{{ secret "file" "db" }}`}, Want: []string{`option "template.../x"`, `"../x" must be a single file name`}},
		{Name: "template-file.NAME ../x", Options: map[string]string{"template-file.cfg": "../x"}, Want: []string{`option "template-file.cfg"`, `template file "../x" must be a clean relative path`}},
		{Name: "template-file absolute", Options: map[string]string{"template-file": "/etc/passwd"}, Want: []string{`option "template-file"`, `template file "/etc/passwd" must be a clean relative path`}},
		{Name: "vault path with ..", Options: vault("secret", "secret/../sys/raw"), Want: []string{`option "secret"`, `".." segments are not allowed`}},
		{Name: "vault identity ../x", Options: vault("identity", "../x"), Want: []string{`option "identity": "../x" is not an identity name`}},
		{Name: "vault identity a/b", Options: vault("identity", "a/b"), Want: []string{`option "identity": "a/b" is not an identity name`}},
		{Name: "vault identity ..", Options: vault("identity", ".."), Want: []string{`option "identity": ".." is not an identity name`}},
		{Name: "vault namespace ../x", Options: vault("namespace", "../x"), Want: []string{`option "namespace": "../x" is not a namespace path`}},

		// Templates.
		{Name: "template syntax error", Options: tmpl("a\n{{ secret \"file\" \"db\" "), Want: []string{`option "template"`, "template:", ":2: unclosed action"}},
		{Name: "template unknown function", Options: tmpl(`{{ secret "file" "db" | nosuch }}`), Want: []string{`option "template"`, `function "nosuch" not defined`}},
		{Name: "template secret with a variable", Options: tmpl(`{{ $x := "db" }}{{ secret "file" $x }}`), Want: []string{`option "template"`, "secret takes quoted strings"}},
		{Name: "template secret with a call", Options: tmpl(`{{ secret "file" (print "d" "b") }}`), Want: []string{`option "template"`, "secret takes quoted strings"}},
		{Name: "template secret with one argument", Options: tmpl(`{{ secret "file" }}`), Want: []string{`option "template"`, "secret takes 2 or 3 arguments"}},
		{Name: "template secret of an unknown backend", Options: tmpl(`{{ secret "nosuch" "db" }}`), Want: []string{`option "template"`, `unknown backend "nosuch"`}},
		{Name: "template reads no secret", Options: tmpl("static text"), Want: []string{`option "template"`, "reads no secret"}},
		{Name: "template uses data", Options: tmpl(`{{ .Password }}{{ secret "file" "db" }}`), Want: []string{`option "template"`, ".Password", "templates have no data"}},
		{Name: "template calls an undefined template", Options: tmpl(`{{ template "nope" }}{{ secret "file" "db" }}`), Want: []string{`option "template"`, `template "nope" is not defined`}},
		{Name: "template hides a secret in a define", Options: tmpl(`{{ define "x" }}{{ secret "file" "../etc/shadow" }}{{ end }}{{ template "x" }}{{ secret "file" "db" }}`), Want: []string{`option "template"`, `"../etc/shadow" leaves or escapes`}},
		{Name: "template passes secret as a value", Options: tmpl(`{{ print secret }}{{ secret "file" "db" }}`), Want: []string{`option "template"`, "secret must be called"}},
		{Name: "template pipes a secret into secret", Options: tmpl(`{{ secret "file" "db" | secret "file" "db" }}`), Want: []string{`option "template"`, "secret cannot take a piped value"}},
		{Name: "template ranges", Options: tmpl(`{{ range 1000000000 }}{{ secret "file" "db" }}{{ end }}`), Want: []string{`option "template"`, "range"}},
		{Name: "template with format", Options: with(tmpl(`{{ secret "file" "db" }}`), "format", "json"), Want: []string{`option "format": a template's output is written as rendered`}},
		{Name: "template and template-file", Options: with(tmpl(`{{ secret "file" "db" }}`), "template-file", "a.tmpl"), Want: []string{`option "template": give either template or template-file`}},
		{Name: "template and secret", Options: with(tmpl(`{{ secret "file" "db" }}`), "secret", "db"), Want: []string{`option "secret": does not apply to a template volume`}},
		{Name: "template.NAME syntax error names its option", Options: map[string]string{"template.cfg": "{{ end }}"}, Want: []string{`option "template.cfg"`, "unexpected {{end}}"}},
		{Name: "template-file missing", Options: map[string]string{"template-file": "dsv-badinput-missing.tmpl"}, Want: []string{`option "template-file"`, `template file "dsv-badinput-missing.tmpl" does not exist`}},

		// Control characters.
		{Name: "volume name with a line break", Volume: "ab\ncd", Options: file(), Want: []string{`volume name "ab\ncd" is invalid`}},
		{Name: "volume name with ESC", Volume: "ab\x1b[31mcd", Options: file(), Want: []string{`volume name "ab\x1b[31mcd" is invalid`}},
		{Name: "volume name with NUL", Volume: "ab\x00cd", Options: file(), Want: []string{`volume name "ab\x00cd" is invalid`}},
		{Name: "file secret with a line break", Options: map[string]string{"secret": "db\n"}, Want: []string{`option "secret": "db\n" holds a control character`}},
		{Name: "file secret with ESC", Options: map[string]string{"secret": "db\x1b[2J"}, Want: []string{`option "secret": "db\x1b[2J" holds a control character`}},
		{Name: "file secret with NUL", Options: map[string]string{"secret": "db\x00.txt"}, Want: []string{`option "secret"`, "control character"}},
		{Name: "filename with a line break", Options: file("filename", "a\nb"), Want: []string{`option "filename": "a\nb" holds a control character`}},
		{Name: "filename with ESC", Options: file("filename", "x\x1b[31m"), Want: []string{`option "filename": "x\x1b[31m" holds a control character`}},
		{Name: "filename with NUL", Options: file("filename", "a\x00b"), Want: []string{`option "filename"`, "control character"}},
		{Name: "file.NAME with ESC", Options: map[string]string{"file.x\x1b[31m": "db"}, Want: []string{`option "file.x\x1b[31m": the file name "x\x1b[31m" holds a control character`}},
		{Name: "aws secret with a line break", Options: aws("secret", "prod/db\n"), Want: []string{`option "secret": "prod/db\n" is not a secret name`}},
		{Name: "aws version-stage with a line break", Options: aws("version-stage", "AWSCURRENT\n"), Want: []string{`option "version-stage": "AWSCURRENT\n" is not a staging label`}},
		{Name: "vault path with ESC", Options: vault("secret", "secret/app\x1b[2J"), Want: []string{`option "secret"`, "control characters are not allowed"}},
		{Name: "vault identity with a line break", Options: vault("identity", "web\n"), Want: []string{`option "identity": "web\n" is not an identity name`}},

		// Volume names.
		{Name: "one-letter volume name", Volume: "a", Options: file(), Want: []string{`volume name "a" is invalid`, "2 to 255 characters"}},
		{Name: "one-digit volume name", Volume: "7", Options: file(), Want: []string{`volume name "7" is invalid`}},
		{Name: "300-character volume name", Volume: long, Options: file(), Want: []string{"volume name", "is invalid", "2 to 255 characters"}},
		{Name: "100 KiB volume name", Volume: huge, Options: file(), Want: []string{"volume name", "102400 bytes", "2 to 255 characters"}},
		{Name: "volume name starting with -", Volume: "-ab", Options: file(), Want: []string{`volume name "-ab" is invalid`, "starting with a letter or digit"}},
		{Name: "volume name starting with .", Volume: ".ab", Options: file(), Want: []string{`volume name ".ab" is invalid`}},
		{Name: "volume name with /", Volume: "ab/cd", Options: file(), Want: []string{`volume name "ab/cd" is invalid`}},
		{Name: "volume name ..", Volume: "..", Options: file(), Want: []string{`volume name ".." is invalid`}},
		{Name: "volume name with a colon", Volume: "ab:cd", Options: file(), Want: []string{`volume name "ab:cd" is invalid`}},
		{Name: "volume name with a space", Volume: "ab cd", Options: file(), Want: []string{`volume name "ab cd" is invalid`}},
		{Name: "volume name not ASCII", Volume: "dépôt", Options: file(), Want: []string{`volume name "dépôt" is invalid`}},

		// Backends.
		{Name: "unknown backend", Options: file("backend", "nosuch"), Want: []string{`option "backend": unknown backend "nosuch"`, "aws, azure, file, gcp, ssm, vault"}},
		{Name: "backend names are lower-case", Options: aws("backend", "AWS"), Want: []string{`option "backend": unknown backend "AWS"`}},
		{Name: "backend with a trailing space", Options: file("backend", "file "), Want: []string{`option "backend": unknown backend "file "`}},
		{Name: "unknown backend in a file spec", Options: map[string]string{"file.db": "backend=nosuch,secret=db"}, Want: []string{`option "file.db": option "backend": unknown backend "nosuch"`}},
		{Name: "file backend with version-id", Options: file("version-id", "1"), Want: []string{`option "version-id" is not supported by the file backend`}},
		{Name: "file backend with region", Options: file("region", "us-east-1"), Want: []string{`option "region" is not supported by the file backend`}},

		// aws.
		{Name: "aws version-id too short", Options: aws("version-id", "abc"), Want: []string{`option "version-id": "abc" is not a version id`}},
		{Name: "aws version-id with _", Options: aws("version-id", strings.ReplaceAll(awsVersionID, "-", "_")), Want: []string{`option "version-id"`, "is not a version id"}},
		{Name: "aws version-stage with a space", Options: aws("version-stage", "AWS CURRENT"), Want: []string{`option "version-stage": "AWS CURRENT" is not a staging label`}},
		{Name: "aws version-stage of 300 characters", Options: aws("version-stage", long), Want: []string{`option "version-stage"`, "is not a staging label"}},
		{Name: "aws region without dashes", Options: aws("region", "useast1"), Want: []string{`option "region": "useast1" is not an AWS region`}},
		{Name: "aws region differs from the ARN's", Options: aws("secret", "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-AbCdEf", "region", "eu-west-1"), Want: []string{`option "region": "eu-west-1" differs from the region "us-east-1" in the secret ARN`}},
		{Name: "aws ARN with a short account", Options: aws("secret", "arn:aws:secretsmanager:us-east-1:123:secret:db"), Want: []string{`option "secret"`, "is not a Secrets Manager ARN"}},
		{Name: "aws ARN with a bad region", Options: aws("secret", "arn:aws:secretsmanager:mars-1:123456789012:secret:db"), Want: []string{`option "secret": the ARN's region "mars-1" is not an AWS region`}},
		{Name: "aws secret name with a space", Options: aws("secret", "prod db"), Want: []string{`option "secret": "prod db" is not a secret name`}},

		// ssm.
		{Name: "ssm selector and version-id", Options: ssm("secret", "/prod/db:3", "version-id", "4"), Want: []string{`option "secret": "/prod/db:3" has a selector (:3) and the version-id option is given too`}},
		{Name: "ssm version-id of aws", Options: ssm("version-id", awsVersionID), Want: []string{`option "version-id"`, "is not a parameter version"}},
		{Name: "ssm label aws", Options: ssm("version-stage", "AWSCURRENT"), Want: []string{`option "version-stage": "AWSCURRENT" is not a parameter label`}},
		{Name: "ssm name without a leading /", Options: ssm("secret", "prod/db"), Want: []string{`option "secret": "prod/db": a name with '/' starts with '/'`}},
		{Name: "ssm recursive on a parameter", Options: ssm("recursive", "true"), Want: []string{`option "recursive": applies to a path`}},
		{Name: "ssm recursive yes", Options: ssm("secret", "/prod/app/", "recursive", "yes"), Want: []string{`option "recursive": "yes": use true or false`}},
		{Name: "ssm path as a file", Options: ssm("secret", "/prod/app/", "layout", "file"), Want: []string{`option "layout": "/prod/app/" names a set of secrets`}},
		{Name: "ssm path with a version", Options: ssm("secret", "/prod/app/", "version-id", "2"), Want: []string{`option "version-id": a path reads the current version`}},

		// vault.
		{Name: "vault version-id abc", Options: vault("version-id", "abc"), Want: []string{`option "version-id": "abc" is not a KV v2 version number`}},
		{Name: "vault version-id 0", Options: vault("version-id", "0"), Want: []string{`option "version-id": "0" is not a KV v2 version number`}},
		{Name: "vault version-id -1", Options: vault("version-id", "-1"), Want: []string{`option "version-id": "-1" is not a KV v2 version number`}},
		{Name: "vault version-stage", Options: vault("version-stage", "AWSCURRENT"), Want: []string{`option "version-stage": not supported by the vault backend`}},
		{Name: "vault region", Options: vault("region", "us-east-1"), Want: []string{`option "region": not supported by the vault backend`}},
		{Name: "vault method delete", Options: vault("method", "delete"), Want: []string{`option "method": "delete" is not read or write`}},
		{Name: "vault wrap-ttl abc", Options: vault("wrap-ttl", "abc"), Want: []string{`option "wrap-ttl": "abc" is not a duration`}},
		{Name: "vault wrap-ttl 500ms", Options: vault("wrap-ttl", "500ms"), Want: []string{`option "wrap-ttl": "500ms": must be at least 1s`}},
		{Name: "vault wrap-ttl 1.5s", Options: vault("wrap-ttl", "1.5s"), Want: []string{`option "wrap-ttl": "1.5s": must be whole seconds`}},
		{Name: "vault wrap-ttl 0", Options: vault("wrap-ttl", "0"), Want: []string{`option "wrap-ttl": "0": must be at least 1s`}},
		{Name: "vault unknown identity", Options: vault("identity", "dsv-badinput-missing"), Want: []string{`option "identity": unknown identity "dsv-badinput-missing"`}},
		{Name: "vault namespace with a leading /", Options: vault("namespace", "/team-a"), Want: []string{`option "namespace": "/team-a" is not a namespace path`}},
		{Name: "vault namespace a//b", Options: vault("namespace", "a//b"), Want: []string{`option "namespace": "a//b" is not a namespace path`}},
		{Name: "vault path with a leading /", Options: vault("secret", "/secret/app/db"), Want: []string{`option "secret": "/secret/app/db": remove the leading /`}},
		{Name: "vault path with v1/", Options: vault("secret", "v1/secret/app/db"), Want: []string{`option "secret": "v1/secret/app/db": give the path without the API prefix v1/`}},
		{Name: "vault path with a trailing /", Options: vault("secret", "secret/app/"), Want: []string{`option "secret": "secret/app/": empty path segment`}},
		{Name: "vault key with wrap-ttl", Options: vault("key", "password", "wrap-ttl", "5m"), Want: []string{`option "key": cannot be used with "wrap-ttl"`}},
		{Name: "vault version-id with method=write", Options: vault("secret", "pki/issue/web", "method", "write", "version-id", "2"), Want: []string{`option "version-id": only for reads`}},
		{Name: "vault: the plugin's own token", Options: vault("secret", "auth/token/lookup-self", "key", "id"), Want: []string{`option "secret": "auth/token/lookup-self": paths under auth/, sys/, cubbyhole/ and identity/ reach the plugin's own Vault token`}},
		{Name: "vault: minting a token", Options: vault("secret", "auth/token/create", "method", "write"), Want: []string{`option "secret": "auth/token/create": paths under auth/`}},
		{Name: "vault: sys/ in a template", Options: map[string]string{"template": `{{ secret "vault" "sys/config/state/sanitized" }}`}, Want: []string{`"sys/config/state/sanitized": paths under auth/, sys/, cubbyhole/ and identity/`}},
		{Name: "vault: an OIDC token of the plugin's identity", Options: vault("secret", "identity/oidc/token/web", "key", "token"), Want: []string{`option "secret": "identity/oidc/token/web": paths under auth/, sys/, cubbyhole/ and identity/`, "mints OIDC tokens in its name"}},
		{Name: "vault: a namespace's sys/", Options: vault("secret", "team-a/sys/config/state/sanitized"), Want: []string{`option "secret": "team-a/sys/config/state/sanitized": Vault Enterprise reads "team-a" as a namespace`, "the sys/ of that namespace"}},
		{Name: "vault: minting a token in a namespace", Options: vault("secret", "team-a/auth/token/create", "method", "write"), Want: []string{`option "secret": "team-a/auth/token/create": Vault Enterprise reads "team-a" as a namespace`, "the auth/ of that namespace"}},
		{Name: "vault: a namespace option ending in sys", Options: vault("secret", "config/state/sanitized", "namespace", "team-a/sys"), Want: []string{`option "namespace": "team-a/sys": sys is Vault's own mount in every namespace`}},
		{Name: "vault: SYS/ in capitals", Options: vault("secret", "SYS/config/state/sanitized"), Want: []string{`option "secret": "SYS/config/state/sanitized": paths under auth/, sys/`}},
		{Name: "vault option in a file spec", Options: map[string]string{"file.db": "backend=vault,secret=secret/app/db,method=erase"}, Want: []string{`option "file.db": option "method": "erase" is not read or write`}},

		// Conflicting options.
		{Name: "layout=file with refresh", Options: file("layout", "file", "refresh", "1m"), Want: []string{`option "refresh": a layout=file volume`, "use layout=dir"}},
		{Name: "key=* with layout=file", Options: file("key", "*", "layout", "file"), Want: []string{`option "key": key=* writes one file per key`, "remove layout=file"}},
		{Name: "filename with layout=file", Options: file("filename", "db.txt", "layout", "file"), Want: []string{`option "filename": only applies to layout=dir`}},
		{Name: "key=* with filename", Options: file("key", "*", "filename", "x"), Want: []string{`option "filename": does not apply with key=*`}},
		{Name: "key=* with format=json", Options: file("key", "*", "format", "json"), Want: []string{`option "format": with key=* each file holds one value`}},
		{Name: "key=* with format=dotenv in a file spec", Options: map[string]string{"file.db": "secret=db,key=*,format=dotenv"}, Want: []string{`option "file.db": with key=* each file holds one value`}},
		{Name: "file.NAME with secret", Options: map[string]string{"file.db": "db", "secret": "x"}, Want: []string{`option "secret": applies to single-secret volumes`}},
		{Name: "file.NAME with layout=file", Options: map[string]string{"file.db": "db", "layout": "file"}, Want: []string{`option "layout": a volume with file.NAME or template.NAME options is a directory`}},
		{Name: "file.NAME and template.NAME of one name", Options: map[string]string{"file.a": "db", "template.a": `{{ secret "file" "db" }}`}, Want: []string{`file "a" is also defined by option "file.a"`}},
		{Name: "unknown layout", Options: file("layout", "directory"), Want: []string{`option "layout": "directory" is not a layout`}},

		// Formats.
		{Name: "format yaml", Options: file("format", "yaml"), Want: []string{`option "format": "yaml" is not a format`, "raw, json, dotenv or base64"}},
		{Name: "format names are lower-case", Options: file("format", "JSON"), Want: []string{`option "format": "JSON" is not a format`}},
		{Name: "format in a file spec", Options: map[string]string{"file.db": "secret=db,format=xml"}, Want: []string{`option "file.db": option "format": "xml" is not a format`}},

		// Refresh.
		{Name: "refresh abc", Options: file("layout", "dir", "refresh", "abc"), Want: []string{`option "refresh": "abc" is not a duration`}},
		{Name: "refresh -1s", Options: file("layout", "dir", "refresh", "-1s"), Want: []string{`option "refresh": "-1s" is not a duration`}},
		{Name: "refresh 500ms", Options: file("layout", "dir", "refresh", "500ms"), Want: []string{`option "refresh": "500ms" is shorter than the minimum of 1s`}},
		{Name: "refresh without a unit", Options: file("layout", "dir", "refresh", "10"), Want: []string{`option "refresh": "10" is not a duration`}},
		{Name: "refresh overflows", Options: file("layout", "dir", "refresh", "9999999999h"), Want: []string{`option "refresh": "9999999999h" is not a duration`}},

		// file.NAME specs.
		{Name: "spec part without =", Options: map[string]string{"file.db": "secret=db,oops"}, Want: []string{`option "file.db": "oops" is not key=value`}},
		{Name: "spec key given twice", Options: map[string]string{"file.db": "secret=a,secret=b"}, Want: []string{`option "file.db": "secret" is given twice`}},
		{Name: "spec with an empty key", Options: map[string]string{"file.db": "=db"}, Want: []string{`option "file.db": "=db" is not key=value`}},
		{Name: "spec with a trailing comma", Options: map[string]string{"file.db": "secret=db,"}, Want: []string{`option "file.db": "" is not key=value`}},
		{Name: "spec with an empty secret", Options: map[string]string{"file.db": "secret="}, Want: []string{`option "file.db": option "secret": must not be empty`}},
	}
}

// with returns m with the key/value pairs kv added.
func with(m map[string]string, kv ...string) map[string]string {
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}
