//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// The suite runs on two engines, one after the other (test/dockerd.sh):
//
//   - engine2010: Debian's docker.io, Engine 20.10 (API 1.41), with Debian's
//     docker-compose 1.29: the oldest we support.
//   - engineCurrent: the current engine that test/engine-build.sh builds
//     from pinned modules: Engine 29 (API 1.56), CLI 29, Compose v5, its own
//     containerd 2 and runc 1.5, in a network namespace of its own.
//
// Where they differ, a test branches on env.engine and says why; it never
// skips on one engine what it cannot check there without naming the engine
// whose run checks it.
type engineKind int

const (
	engine2010 engineKind = iota
	engineCurrent
)

func (k engineKind) String() string {
	if k == engineCurrent {
		return "the current engine"
	}
	return "Engine 20.10"
}

// detectEngine tells the engine from its version, and checks it against
// DSV_ENGINE (set by test/dockerd.sh env) when that is set: a run meant for
// one engine must not quietly test the other.
func detectEngine(serverVersion string) (engineKind, error) {
	major, err := strconv.Atoi(strings.SplitN(strings.TrimSpace(serverVersion), ".", 2)[0])
	if err != nil {
		return 0, fmt.Errorf("engine version %q: %w", serverVersion, err)
	}
	kind := engine2010
	if major > 20 {
		kind = engineCurrent
	}
	switch want := os.Getenv("DSV_ENGINE"); {
	case want == "current" && kind != engineCurrent, want == "debian" && kind != engine2010:
		return 0, fmt.Errorf("DSV_ENGINE=%s, but the engine that answers (%s) is %s: run the suite through test/dockerd.sh exec", want, dockerSocket(), kind)
	}
	return kind, nil
}

// checkNetns refuses to run outside the engine's network namespace
// (DSV_DOCKERD_NETNS, set by test/dockerd.sh env): the plugin runs on the
// engine's host network and must reach the suite's servers on 127.0.0.1.
func checkNetns() error {
	name := os.Getenv("DSV_DOCKERD_NETNS")
	if name == "" {
		return nil
	}
	var self, want syscall.Stat_t
	if err := syscall.Stat("/proc/self/ns/net", &self); err != nil {
		return err
	}
	if err := syscall.Stat("/run/netns/"+name, &want); err != nil {
		return fmt.Errorf("the engine's network namespace %s: %w", name, err)
	}
	if self.Ino != want.Ino || self.Dev != want.Dev {
		return fmt.Errorf("the engine runs in network namespace %s, and the suite outside it: the plugin could not reach moto or Vault on 127.0.0.1; run it with test/dockerd.sh exec", name)
	}
	return nil
}

// composeCommand is the Compose the engine's leg tests: docker-compose 1.29
// (Python, Debian's) with Engine 20.10, Compose v5 (the docker CLI plugin)
// with the current engine.
func composeCommand(ctx context.Context, args ...string) result {
	if env.engine == engineCurrent {
		return command(ctx, "docker", append([]string{"compose"}, args...)...)
	}
	return command(ctx, "docker-compose", args...)
}
