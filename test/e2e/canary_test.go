//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// canaryMounts counts containers that read the canary from a volume; the
// final check is only meaningful when some did.
var canaryMounts atomic.Int64

// canaryHash is what sha256sum prints for the canary. Containers compare
// hashes so that the canary never reaches a container's own log.
func canaryHash() string {
	sum := sha256.Sum256([]byte(env.canary))
	return hex.EncodeToString(sum[:])
}

// wantCanary runs a container that hashes path and checks it holds the
// canary.
func (sc *scope) wantCanary(opts []string, path string) {
	sc.t.Helper()
	out := sc.mustRun(opts, "sha256sum", path)
	if got := strings.Fields(out); len(got) == 0 || got[0] != canaryHash() {
		sc.t.Fatalf("sha256sum %s in the container = %q, want the canary's hash %s", path, out, canaryHash())
	}
	canaryMounts.Add(1)
}

// TestCanaryMounted mounts the canary from both backends and both layouts;
// after the run, checkCanary looks for it wherever it must not be.
func TestCanaryMounted(t *testing.T) {
	sc := newScope(t)
	file := env.name("canary")
	if err := env.writeFile(file, []byte(env.canary)); err != nil {
		t.Fatal(err)
	}
	secret := env.name("canary")
	createSecret(t, secret, env.canary)

	fileVol := sc.createVolume("canary-file", "secret="+file)
	dirVol := sc.createVolume("canary-dir", "secret="+file, "layout=dir", "filename=c")
	awsVol := sc.createVolume("canary-aws", "backend=aws", "secret="+secret, "uid=1000", "mode=0400")
	sc.wantCanary([]string{"-v", fileVol + ":/run/secrets/c"}, "/run/secrets/c")
	sc.wantCanary([]string{"-v", dirVol + ":/run/secrets"}, "/run/secrets/c")
	sc.wantCanary([]string{"-u", "1000", "-v", awsVol + ":/run/secrets/c"}, "/run/secrets/c")

	// Status carries no value either.
	for _, v := range []string{fileVol, dirVol, awsVol} {
		out := mustDocker(t, "volume", "inspect", v)
		if strings.Contains(out, env.canary) {
			t.Errorf("docker volume inspect %s shows the secret value:\n%s", v, out)
		}
	}
}

// checkCanary runs after every test and cleanup: the canary must not be on
// disk under Docker's root (outside live tmpfs mounts), in the plugin's
// state file, or in dockerd's log, which holds the plugin's output.
func (s *suite) checkCanary() error {
	if canaryMounts.Load() == 0 {
		logf("canary check: no test mounted the canary in this run (filtered with -run?); checking anyway")
	}
	var problems []string
	needle := []byte(s.canary)

	skip := map[string]string{}
	if ms, err := hostMounts(); err != nil {
		problems = append(problems, fmt.Sprintf("read the mount table: %v", err))
	} else {
		for _, m := range ms {
			switch m.fsType {
			// Live tmpfs mounts may hold secrets legitimately; pseudo file
			// systems are not storage; an overlay's merged view repeats its
			// layers, which the walk reads where they are stored.
			case "tmpfs", "proc", "sysfs", "devpts", "mqueue", "cgroup", "cgroup2", "devtmpfs", "overlay", "nsfs":
				skip[m.mountPoint] = m.fsType
			}
		}
	}
	skip[s.filesDir] = "the file backend's folder"

	var scanned int
	err := filepath.WalkDir(s.dockerRoot, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if p != s.dockerRoot {
			if _, ok := skip[p]; ok && de.IsDir() {
				return filepath.SkipDir
			}
		}
		if !de.Type().IsRegular() {
			return nil
		}
		found, err := fileContains(p, needle)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		scanned++
		if found {
			problems = append(problems, "the canary is in "+p)
		}
		return nil
	})
	if err != nil {
		problems = append(problems, fmt.Sprintf("walk %s: %v", s.dockerRoot, err))
	}

	state := s.stateFile()
	if fi, err := os.Stat(state); err != nil {
		problems = append(problems, fmt.Sprintf("the plugin's state file: %v", err))
	} else {
		if fi.Mode().Perm() != 0o600 {
			problems = append(problems, fmt.Sprintf("the plugin's state file %s has mode %04o, want 0600", state, fi.Mode().Perm()))
		}
		if b, err := os.ReadFile(state); err != nil {
			problems = append(problems, err.Error())
		} else if bytes.Contains(b, needle) {
			problems = append(problems, "the canary is in the plugin's state file "+state)
		}
	}

	switch logs, err := s.daemon.readLogs(); {
	case err != nil:
		problems = append(problems, fmt.Sprintf("read dockerd's log: %v", err))
	case len(s.daemon.logs) == 0:
		problems = append(problems, "dockerd's log was not found: it does not log to a file and was not restarted by the suite")
	case canaryMounts.Load() == 0 && (!bytes.Contains(logs, []byte(s.pluginID)) || !bytes.Contains(logs, []byte("mounted"))):
		// A run of tests that never mounted through the managed plugin
		// (e.g. RUN=TestPodman: legacy mode, its output in the test's
		// own log): nothing of a value can be in its log.
		logf("canary check: plugin %.12s mounted nothing in this run; its log is not checked", s.pluginID)
	case !bytes.Contains(logs, []byte(s.pluginID)) || !bytes.Contains(logs, []byte("mounted")):
		// Without the plugin's output in it, the log proves nothing.
		problems = append(problems, fmt.Sprintf("dockerd's log (%v) holds no output of plugin %.12s: cannot check it", s.daemon.logs, s.pluginID))
	case bytes.Contains(logs, needle):
		problems = append(problems, fmt.Sprintf("the canary is in dockerd's log %v:\n%s", s.daemon.logs, linesWith(logs, needle)))
	}
	// docker plugin inspect shows the plugin's settings and mounts.
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	if r := dockerCtx(ctx, "plugin", "inspect", s.plugin); r.err != nil {
		problems = append(problems, fmt.Sprintf("docker plugin inspect: %v", r))
	}
	// Every docker command's output (errors the tests provoked, inspect
	// output, service logs) was scanned as it ended, this one included.
	commands, leaks := outputs.report()
	for _, c := range leaks {
		problems = append(problems, "the canary is in the output of "+c)
	}
	logf("canary check: %d files under %s scanned, %d mount points skipped, dockerd log %v, the output of %d docker commands",
		scanned, s.dockerRoot, len(skip), s.daemon.logs, commands)
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "\n"))
	}
	return nil
}

// fileContains streams a file looking for needle.
func fileContains(path string, needle []byte) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	var carry []byte
	for {
		n, err := f.Read(buf)
		if n > 0 {
			chunk := append(carry, buf[:n]...)
			if bytes.Contains(chunk, needle) {
				return true, nil
			}
			keep := len(needle) - 1
			if keep > len(chunk) {
				keep = len(chunk)
			}
			carry = append([]byte(nil), chunk[len(chunk)-keep:]...)
		}
		if errors.Is(err, io.EOF) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
	}
}

func linesWith(b, needle []byte) string {
	var out []string
	for _, l := range bytes.Split(b, []byte("\n")) {
		if bytes.Contains(l, needle) {
			out = append(out, string(l))
		}
	}
	return strings.Join(out, "\n")
}
