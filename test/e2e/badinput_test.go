//go:build e2e

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"testing"

	"github.com/dsv-plugin/dsv/test/tools/badinput"
)

// engineCreate creates a volume through the Engine API, for inputs that
// argv cannot carry (NUL bytes); it returns the daemon's error message.
func engineCreate(t *testing.T, name string, opts map[string]string) (int, string) {
	t.Helper()
	c := unixClient(dockerSocket())
	body, _ := json.Marshal(map[string]any{"Name": name, "Driver": env.plugin, "DriverOpts": opts})
	// No API version in the path: the engine's own (Engine 29 refuses the
	// versions below its minimum).
	resp, err := c.Post("http://docker/volumes/create", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST /volumes/create: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out struct{ Message string }
	_ = json.Unmarshal(b, &out)
	return resp.StatusCode, out.Message
}

// TestBadInputCorpus gives the real plugin every input of test/tools/badinput
// through docker volume create (the Engine API for those argv cannot
// carry): each is refused with an error naming the problem, and no volume
// is left.
func TestBadInputCorpus(t *testing.T) {
	sc := newScope(t)
	cases := badinput.Cases()
	for i, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			name := c.Volume
			if name == "" {
				name = sc.volume(fmt.Sprintf("bad%02d", i))
			}
			var msg string
			if c.ArgvSafe() {
				args := []string{"volume", "create", "-d", env.plugin}
				for k, v := range c.Options {
					args = append(args, "-o", k+"="+v)
				}
				msg = dockerFails(t, append(args, "--", name)...).stderr
			} else {
				status, m := engineCreate(t, name, c.Options)
				if status < 400 {
					t.Fatalf("POST /volumes/create of case %q succeeded (%d)", c.Name, status)
				}
				msg = m
			}
			wantContains(t, "the error", msg, c.Want...)
			if r := docker(t, "volume", "inspect", name); r.err == nil {
				t.Errorf("volume %q exists after its create was refused", name)
				docker(t, "volume", "rm", "-f", name)
			}
		})
	}
	t.Logf("%d malformed inputs refused at create", len(cases))
}
