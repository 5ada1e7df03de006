//go:build e2e

package e2e

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"
)

// TestDemoWhateverBackend runs the demo (test/demo.sh, `make demo`) on
// the suite's plugin with BACKEND=aws: the demo's volume names its backend,
// so it still reads its secret from the file backend.
func TestDemoWhateverBackend(t *testing.T) {
	changePluginSettings(t, map[string]string{"BACKEND": "aws"})
	sc := newScope(t)
	// The setting took: a volume that names no backend is an AWS one.
	implicit := sc.createVolume("demo-implicit")
	if got := inspectVolume(t, implicit).Status["backend"]; got != "aws" {
		t.Fatalf("with BACKEND=aws, a volume without the backend option has backend %v, want aws", got)
	}

	vol := sc.volume("demo")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "test/demo.sh")
	cmd.Dir = env.repo
	cmd.Env = append(os.Environ(), "DSV_DEMO_PLUGIN="+env.plugin, "DSV_DEMO_VOLUME="+vol, "DSV_DEMO_INSTALL=0", "DSV_TEST_IMAGE="+env.image)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("test/demo.sh with BACKEND=aws: %v\n%s", err, out)
	}
	wantContains(t, "the demo's output", string(out), "hello from dsv", `"backend":"file"`)
	if volumeExists(t, vol) {
		t.Errorf("the demo left its volume %s", vol)
	}
	if _, err := os.Stat(env.filesDir + "/" + vol); !os.IsNotExist(err) {
		t.Errorf("the demo left its secret in %s: %v", env.filesDir, err)
	}
}
