package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/dsv-plugin/dsv/test/fakes/storeproxy"
	"github.com/dsv-plugin/dsv/test/fleet/result"
	"github.com/dsv-plugin/dsv/test/servers/moto"
	"github.com/dsv-plugin/dsv/test/servers/registry"
)

// image is the tasks' image: test/busybox-image.sh's, imported on node 1
// and loaded into every other node (tasks run it with --no-resolve-image).
const image = "dsv-test/busybox:latest"

// pluginAlias is the name every node installs the plugin under.
const pluginAlias = "dsv"

type fleet struct {
	cfg    config
	engine string
	nodes  []*node
	work   string

	reg      *registry.Process
	regFwd   net.Listener
	regAddr  string
	moto     *moto.Process
	aws      *storeproxy.Proxy
	sm       *secretsmanager.Client
	pluginRf string
}

func (f *fleet) mgr() *node { return f.nodes[0] }

func (f *fleet) setup(ctx context.Context, rep *result.Report) error {
	if err := cleanLeftovers(ctx); err != nil {
		return fmt.Errorf("clean up an earlier run: %w", err)
	}
	out, err := run(ctx, "test/engine-build.sh", "--built")
	if err != nil || strings.TrimSpace(out) == "" {
		return fmt.Errorf("the current engine is not built: run make engine-bin (%v)", err)
	}
	f.engine = strings.TrimSpace(out)
	if f.work, err = os.MkdirTemp("", "dsvfleet-"); err != nil {
		return err
	}
	for _, d := range []string{"credentials", "files"} {
		if err := os.MkdirAll(filepath.Join(libRoot, d), 0o700); err != nil {
			return err
		}
	}
	if err := setupBridge(ctx); err != nil {
		return err
	}

	// The registry listens on loopback; the nodes reach it on the bridge
	// through a TCP forwarder.
	regBin, err := registry.Binary()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(f.work, "registry"), 0o700); err != nil {
		return err
	}
	if f.reg, err = registry.Start(ctx, regBin, filepath.Join(f.work, "registry")); err != nil {
		return err
	}
	if f.regFwd, err = forward(hostIP+":0", f.reg.Addr); err != nil {
		return err
	}
	f.regAddr = f.regFwd.Addr().String()

	motoBin, err := moto.Binary()
	if err != nil {
		return err
	}
	if f.moto, err = moto.StartProcess(ctx, motoBin, 0); err != nil {
		return err
	}
	if f.aws, err = storeproxy.Start(storeproxy.AWS, hostIP+":0", f.moto.URL); err != nil {
		return err
	}
	// The harness writes to moto directly: the proxy counts the plugins.
	f.sm = secretsmanager.New(secretsmanager.Options{
		Region: moto.Region, BaseEndpoint: aws.String(f.moto.URL), Credentials: moto.Credentials(),
	})

	t0 := time.Now()
	for i := range f.cfg.nodes {
		f.nodes = append(f.nodes, &node{i: i + 1, engine: f.engine, registry: f.regAddr})
	}
	if err := parallel(f.nodes, 4, func(n *node) error {
		if err := n.setupNetwork(ctx); err != nil {
			return err
		}
		if err := n.startContainerd(ctx); err != nil {
			return err
		}
		return n.startDockerd(ctx)
	}); err != nil {
		return err
	}
	logf("%d engines up in %s", len(f.nodes), time.Since(t0).Round(time.Second))

	if err := f.publishPlugin(ctx); err != nil {
		return err
	}
	if err := f.loadImage(ctx); err != nil {
		return err
	}
	if err := f.formSwarm(ctx); err != nil {
		return err
	}
	if err := f.installPlugin(ctx); err != nil {
		return err
	}
	rep.MemPerNodeMiB = f.memPerNodeMiB()
	logf("fleet of %d ready in %s; memory %.0f MiB per node (PSS of containerd, dockerd, the plugin)", len(f.nodes), time.Since(t0).Round(time.Second), rep.MemPerNodeMiB)
	return nil
}

// publishPlugin builds the plugin from the source tree and pushes it to the
// fleet's registry with build-plugin.sh --push, through node 1's engine:
// the machine's shared engine is not involved.
func (f *fleet) publishPlugin(ctx context.Context) error {
	f.pluginRf = f.regAddr + "/dsv:fleet"
	cmd := exec.CommandContext(ctx, filepath.Join(f.cfg.src, "build-plugin.sh"), "--push", f.pluginRf)
	cmd.Dir = f.cfg.src
	cmd.Env = append(os.Environ(),
		"DOCKER_HOST=unix://"+f.mgr().sock(),
		"PATH="+f.engine+":/usr/local/go/bin:"+os.Getenv("PATH"),
		"DSV_PLUGIN_DIR="+filepath.Join(f.work, "plugin"))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build and push the plugin from %s: %w\n%s", f.cfg.src, err, out)
	}
	logf("plugin %s built from %s and pushed as %s", f.cfg.label, f.cfg.src, f.pluginRf)
	return nil
}

func (f *fleet) loadImage(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, "test/busybox-image.sh")
	cmd.Env = append(os.Environ(), "DOCKER_HOST=unix://"+f.mgr().sock(), "PATH="+f.engine+":"+os.Getenv("PATH"), "DSV_TEST_IMAGE="+image)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("test image on node 1: %w\n%s", err, out)
	}
	tar := filepath.Join(f.work, "image.tar")
	if _, err := f.mgr().docker(ctx, "save", "-o", tar, image); err != nil {
		return err
	}
	return parallel(f.nodes[1:], 4, func(n *node) error {
		_, err := n.docker(ctx, "load", "-q", "-i", tar)
		return err
	})
}

// formSwarm makes node 1 the first manager, nodes 2 and 3 managers too
// (three tolerate one lost), the rest workers.
func (f *fleet) formSwarm(ctx context.Context) error {
	m := f.mgr()
	if _, err := m.docker(ctx, "swarm", "init", "--advertise-addr", m.ip(), "--listen-addr", m.ip()+":2377"); err != nil {
		return err
	}
	tokens := map[string]string{}
	for _, role := range []string{"manager", "worker"} {
		out, err := m.docker(ctx, "swarm", "join-token", "-q", role)
		if err != nil {
			return err
		}
		tokens[role] = strings.TrimSpace(out)
	}
	join := func(n *node) error {
		role := "worker"
		if n.i <= 3 {
			role = "manager"
		}
		_, err := n.docker(ctx, "swarm", "join", "--token", tokens[role], "--advertise-addr", n.ip(), "--listen-addr", n.ip()+":2377", m.ip()+":2377")
		return err
	}
	// Managers one by one (each joins the raft), then workers.
	var managers, workers []*node
	for _, n := range f.nodes[1:] {
		if n.i <= 3 {
			managers = append(managers, n)
		} else {
			workers = append(workers, n)
		}
	}
	if err := parallel(managers, 1, join); err != nil {
		return err
	}
	if err := parallel(workers, 4, join); err != nil {
		return err
	}
	return waitFor(ctx, 2*time.Minute, fmt.Sprintf("%d ready nodes", len(f.nodes)), func() error {
		out, err := m.docker(ctx, "node", "ls", "--format", "{{.Status}}")
		if err != nil {
			return err
		}
		if got := strings.Count(out, "Ready"); got != len(f.nodes) {
			return fmt.Errorf("%d ready", got)
		}
		return nil
	})
}

// installPlugin installs the plugin on every node the way users do, then
// points it at the stores' proxies.
func (f *fleet) installPlugin(ctx context.Context) error {
	return parallel(f.nodes, 4, func(n *node) error {
		if _, err := n.docker(ctx, "plugin", "install", "--alias", pluginAlias, "--grant-all-permissions", "--disable", f.pluginRf); err != nil {
			return fmt.Errorf("node %s: %w", n.name(), err)
		}
		settings := []string{
			"LOG_LEVEL=info", "BACKEND=aws",
			"AWS_REGION=" + moto.Region, "AWS_ENDPOINT_URL=" + f.aws.URL,
			"AWS_ACCESS_KEY_ID=" + moto.AccessKeyID, "AWS_SECRET_ACCESS_KEY=" + moto.SecretAccessKey,
			"CACHE_TTL=" + f.cfg.cacheTTL.String(), "TIMEOUT=" + f.cfg.timeout.String(),
			"METRICS_ADDR=" + n.ip() + ":9469",
			"credentials.source=" + filepath.Join(libRoot, "credentials"),
			"files.source=" + filepath.Join(libRoot, "files"),
			"templates.source=" + filepath.Join(libRoot, "files"),
		}
		if _, err := n.docker(ctx, append([]string{"plugin", "set", pluginAlias}, settings...)...); err != nil {
			return fmt.Errorf("node %s: %w", n.name(), err)
		}
		if _, err := n.docker(ctx, "plugin", "enable", pluginAlias); err != nil {
			return fmt.Errorf("node %s: %w", n.name(), err)
		}
		return nil
	})
}

// cleanup stops everything the run started and removes what it made,
// after a failure or a Ctrl-C too.
func (f *fleet) cleanup() {
	logf("cleaning up")
	var wg sync.WaitGroup
	for _, n := range f.nodes {
		wg.Add(1)
		go func() { defer wg.Done(); n.teardown() }()
	}
	wg.Wait()
	if f.aws != nil {
		_ = f.aws.Close()
	}
	if f.moto != nil {
		_ = f.moto.Stop()
	}
	if f.regFwd != nil {
		_ = f.regFwd.Close()
	}
	if f.reg != nil {
		_ = f.reg.Stop()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := cleanLeftovers(ctx); err != nil {
		logf("cleanup: %v", err)
	}
	if f.work != "" {
		_ = os.RemoveAll(f.work)
	}
}

// forward accepts on addr and copies each connection to target.
func forward(addr, target string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				t, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer t.Close()
				done := make(chan struct{}, 2)
				go func() { _, _ = io.Copy(t, c); done <- struct{}{} }()
				go func() { _, _ = io.Copy(c, t); done <- struct{}{} }()
				<-done
			}()
		}
	}()
	return ln, nil
}

// putSecret creates or updates a secret in moto.
func (f *fleet) putSecret(ctx context.Context, name, value string) error {
	_, err := f.sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String(name), SecretString: aws.String(value)})
	if err == nil {
		return nil
	}
	if _, cerr := f.sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String(name), SecretString: aws.String(value)}); cerr != nil {
		return errors.Join(err, cerr)
	}
	return nil
}
