//go:build e2e

package e2e

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
)

// dotenvValues exercise each way the dotenv format quotes a value. POSIX sh
// does not decode \n inside double quotes, so no value here holds a line
// break: the file is consumed by `. file` in busybox sh.
var dotenvValues = map[string]any{
	// A single quote forces double quotes, where $, \, " and the
	// backquote are escaped: sh would run `id` and $(id) otherwise.
	"DB_PASS": `p@ss w0rd $HOME #not-a-comment it's \back "q" ` + "`id`" + ` $(id)`,
	// No single quote: single quotes, which sh takes literally.
	"API_KEY": `a b $x #y \z "q" ` + "`id`" + ` $(id)`,
	"PLAIN":   "plain-value_1.2",
	"PORT":    5432,
}

// dotenvScript sources the file and prints each variable on its own line.
const dotenvScript = `. "$1" && printf '%s\n' "$DB_PASS" "$API_KEY" "$PLAIN" "$PORT"`

func dotenvWant() string {
	return strings.Join([]string{
		dotenvValues["DB_PASS"].(string), dotenvValues["API_KEY"].(string), dotenvValues["PLAIN"].(string), "5432",
	}, "\n") + "\n"
}

// binaryValue is every byte value a shell or a JSON layer may mangle.
func binaryValue() []byte {
	b := []byte{0x00, 0x01, 0xff, 0xfe, '\n', '\r', 0x80, '$', '\'', '"', '\\', 0x7f, 0x00}
	for i := range 256 {
		b = append(b, byte(i))
	}
	return append(b, []byte(randomHex(8))...)
}

// wrapped breaks s into 76-character lines, as MIME base64 does.
func wrapped(s string) string {
	var b strings.Builder
	for len(s) > 76 {
		b.WriteString(s[:76] + "\n")
		s = s[76:]
	}
	b.WriteString(s + "\n")
	return b.String()
}

// odHex turns `od -An -v -tx1` output back into bytes.
func odHex(t *testing.T, out string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(out), ""))
	if err != nil {
		t.Fatalf("od output %q: %v", out, err)
	}
	return b
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestFormats checks what containers read from the dotenv, base64 and
// key=* formats, on single-secret volumes and on one volume of file.NAME
// specs.
func TestFormats(t *testing.T) {
	blob := binaryValue()
	keys := map[string]any{
		"user":     "kuser-" + randomHex(4),
		"password": "kpw-" + randomHex(8),
		"port":     5432,
		"opts":     map[string]bool{"ssl": true},
	}
	keysWant := map[string]string{"user": keys["user"].(string), "password": keys["password"].(string), "port": "5432", "opts": `{"ssl":true}`}

	dotenvSecret := env.name("dotenv")
	createSecret(t, dotenvSecret, mustJSON(t, dotenvValues))
	b64Secret := env.name("b64")
	createSecret(t, b64Secret, wrapped(base64.StdEncoding.EncodeToString(blob)))
	b64File := env.name("b64url")
	if err := env.writeFile(b64File, []byte(base64.RawURLEncoding.EncodeToString(blob))); err != nil {
		t.Fatal(err)
	}
	keysSecret := env.name("keys")
	createSecret(t, keysSecret, mustJSON(t, keys))

	// wantKeys checks the files of a key=* object in dir: names, values
	// read as uid 1000, owner 1000:1000, mode 0400, unreadable by others.
	wantKeys := func(t *testing.T, sc *scope, mnt []string, dir string) {
		t.Helper()
		if got := sc.mustRun(mnt, "ls", dir); got != "opts\npassword\nport\nuser\n" {
			t.Errorf("ls %s = %q, want one file per key: opts, password, port, user", dir, got)
		}
		asApp := append([]string{"-u", "1000"}, mnt...)
		for k, want := range keysWant {
			if got := sc.mustRun(asApp, "cat", dir+"/"+k); got != want {
				t.Errorf("cat %s/%s as uid 1000 = %q, want %q", dir, k, got, want)
			}
		}
		got := sc.mustRun(mnt, "stat", "-L", "-c", "%n %u %g %a", dir+"/opts", dir+"/password", dir+"/port", dir+"/user")
		want := ""
		for _, k := range []string{"opts", "password", "port", "user"} {
			want += dir + "/" + k + " 1000 1000 400\n"
		}
		if got != want {
			t.Errorf("stat -L of the key files =\n%s\nwant\n%s", got, want)
		}
		r := sc.runFail(append([]string{"-u", "1001"}, mnt...), "cat", dir+"/password")
		wantContains(t, "cat as uid 1001", r.stderr, "Permission denied")
	}

	t.Run("dotenv sourced by sh", func(t *testing.T) {
		sc := newScope(t)
		vol := sc.createVolume("dotenv", "backend=aws", "secret="+dotenvSecret, "format=dotenv", "filename=app.env")
		mnt := []string{"-v", vol + ":/run/secrets"}
		t.Logf("app.env:\n%s", sc.mustRun(mnt, "cat", "/run/secrets/app.env"))
		if got := sc.mustRun(mnt, "sh", "-c", dotenvScript, "sh", "/run/secrets/app.env"); got != dotenvWant() {
			t.Errorf("variables after . /run/secrets/app.env =\n%q\nwant\n%q", got, dotenvWant())
		}
	})

	t.Run("base64 decodes to the binary value", func(t *testing.T) {
		sc := newScope(t)
		for _, opts := range [][]string{
			{"backend=aws", "secret=" + b64Secret, "format=base64"}, // standard alphabet, padded, wrapped at 76
			{"backend=file", "secret=" + b64File, "format=base64"},  // URL-safe alphabet, unpadded
		} {
			vol := sc.createVolume("b64", opts...)
			out := sc.mustRun([]string{"-v", vol + ":/run/secrets/blob"}, "od", "-An", "-v", "-tx1", "/run/secrets/blob")
			if got := odHex(t, out); string(got) != string(blob) {
				t.Errorf("%v: the file holds % x, want % x", opts, got, blob)
			}
		}
	})

	t.Run("key=* with uid, gid and mode", func(t *testing.T) {
		sc := newScope(t)
		vol := sc.createVolume("keys", "backend=aws", "secret="+keysSecret, "key=*", "uid=1000", "gid=1000", "mode=0400")
		wantKeys(t, sc, []string{"-v", vol + ":/run/secrets"}, "/run/secrets")
	})

	t.Run("one volume of file.NAME specs", func(t *testing.T) {
		sc := newScope(t)
		vol := sc.createVolume("specs", "backend=aws",
			"file.app.env=secret="+dotenvSecret+",format=dotenv",
			"file.blob=secret="+b64Secret+",format=base64",
			"file.url=backend=file,secret="+b64File+",format=base64",
			"file.db=secret="+keysSecret+",key=*,uid=1000,gid=1000,mode=0400",
			"file.password="+keysSecret, // a bare name: the whole secret, raw
		)
		mnt := []string{"-v", vol + ":/run/secrets"}
		if got := sc.mustRun(mnt, "ls", "/run/secrets"); got != "app.env\nblob\ndb\npassword\nurl\n" {
			t.Errorf("ls /run/secrets = %q, want app.env, blob, db, password and url", got)
		}
		if got := sc.mustRun(mnt, "sh", "-c", dotenvScript, "sh", "/run/secrets/app.env"); got != dotenvWant() {
			t.Errorf("variables after . /run/secrets/app.env =\n%q\nwant\n%q", got, dotenvWant())
		}
		for _, f := range []string{"blob", "url"} {
			out := sc.mustRun(mnt, "od", "-An", "-v", "-tx1", "/run/secrets/"+f)
			if got := odHex(t, out); string(got) != string(blob) {
				t.Errorf("/run/secrets/%s holds % x, want % x", f, got, blob)
			}
		}
		if got := sc.mustRun(mnt, "cat", "/run/secrets/password"); got != mustJSON(t, keys) {
			t.Errorf("cat /run/secrets/password = %q, want the whole secret %q", got, mustJSON(t, keys))
		}
		wantKeys(t, sc, mnt, "/run/secrets/db")
	})
}
