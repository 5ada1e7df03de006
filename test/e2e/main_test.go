//go:build e2e

// Package e2e is dsv's end-to-end suite: it drives the real docker CLI
// against the real plugin (installed by ./build-plugin.sh) and real backends
// (the file store, and a moto server for the aws backend). It needs root and
// a running Docker engine, and reconfigures the plugin it installs. It
// restarts that plugin and dockerd itself (TestRestartResilience), which
// stops every container of the engine: run it where that is acceptable.
//
//	go test -tags e2e -count=1 -timeout 30m -v ./test/e2e/...
//
// Environment:
//
//	DSV_E2E_PLUGIN  name of the plugin to install and test (default: dsv)
//	DSV_E2E_ARCH    the plugin's architecture, amd64 or arm64 (default: the
//	                host's); another than the host's runs emulated, where
//	                binfmt_misc runs it (make e2e-arm64, test/binfmt.sh)
//	DSV_TEST_IMAGE  image the containers run (default: dsv-test/busybox:latest)
//	MOTO_SERVER     moto_server executable (default: found by test/servers/moto)
package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/dsv-plugin/dsv/test/servers/moto"
	"github.com/dsv-plugin/dsv/test/testproc"
)

// Plugin-wide settings the suite gives the plugin.
const (
	awsRegion      = "us-east-1"
	backendTimeout = 3 * time.Second
	// dockerTimeout is Docker's own deadline for a plugin call; a failure
	// must come back well before it.
	dockerTimeout = 30 * time.Second
)

// env is the suite's shared fixture, set up once by TestMain.
var env *suite

// suite holds what every test needs. Tests run one after another (none is
// parallel): the plugin and the moto server are shared, and some tests
// restart them.
type suite struct {
	repo       string // repository root
	plugin     string // plugin name as given, e.g. dsv
	arch       string // the plugin's GOARCH: runtime.GOARCH, or another one run emulated
	driver     string // its full name, e.g. dsv:latest: the volumes' Driver
	image      string // container image
	runID      string // random, in every name this run creates
	counter    atomic.Int64
	dockerRoot string // DockerRootDir, normally /var/lib/docker
	pluginID   string
	filesDir   string // the file backend's folder on the host
	canary     string // a value that must not leak, see TestCanary*
	dbUser     string // values of app/db.json in the file store
	dbPassword string

	motoBin string
	moto    *moto.Process
	sm      *secretsmanager.Client

	daemon *daemonInfo // how dockerd runs and where it logs
	engine engineKind  // which of the two engines the suite tests
}

func TestMain(m *testing.M) {
	closeOnExecInherited()
	os.Exit(runMain(m))
}

// closeOnExecInherited marks every descriptor the suite inherited above
// stderr close-on-exec. Go passes a child the inherited descriptors it did
// not open itself: the caller's lock (`flock /tmp/dsv-docker.lock go test`)
// would live on in a dockerd the suite restarts, held until that engine
// stops.
func closeOnExecInherited() {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: list /proc/self/fd: %v\n", err)
		return
	}
	for _, e := range entries {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			syscall.CloseOnExec(fd)
		}
	}
}

// runMain sets up, runs the tests, cleans up, then checks that the canary
// leaked nowhere. Any setup failure fails the run: CI relies on this suite.
func runMain(m *testing.M) int {
	s, err := setup()
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e setup failed: %v\n", err)
		if s != nil {
			s.teardown()
		}
		return 1
	}
	env = s
	code := m.Run()
	s.teardown()
	if err := s.checkCanary(); err != nil {
		fmt.Fprintf(os.Stderr, "--- FAIL: canary check after the run\n%v\n", err)
		return 1
	}
	fmt.Println("--- PASS: canary check after the run: the canary is nowhere under", s.dockerRoot, "(plugin rootfs included), nor in the state file, dockerd's log, docker plugin inspect, or the output of any docker command the suite ran")
	return code
}

func setup() (*suite, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("the end-to-end suite must run as root: it installs a plugin and reads the host's mount table")
	}
	s := &suite{
		plugin: envOr("DSV_E2E_PLUGIN", "dsv"),
		image:  envOr("DSV_TEST_IMAGE", "dsv-test/busybox:latest"),
		arch:   envOr("DSV_E2E_ARCH", runtime.GOARCH),
		runID:  randomHex(3),
	}
	s.canary = "dsv-canary-" + randomHex(16)
	s.dbUser = "user-" + randomHex(4)
	s.dbPassword = "pw-" + randomHex(8)

	var err error
	if s.repo, err = testproc.ModuleRoot(); err != nil {
		return nil, err
	}
	if err := checkNetns(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := dockerCtx(ctx, "version", "--format", "{{.Server.Version}}")
	if r.err != nil {
		return nil, fmt.Errorf("no Docker engine answers (start one with test/dockerd.sh ensure): %v", r)
	}
	if s.engine, err = detectEngine(r.stdout); err != nil {
		return nil, err
	}
	logf("testing %s %s on %s", s.engine, strings.TrimSpace(r.stdout), dockerSocket())
	r = dockerCtx(ctx, "info", "--format", "{{.DockerRootDir}}")
	if r.err != nil {
		return nil, fmt.Errorf("docker info: %v", r)
	}
	s.dockerRoot = strings.TrimSpace(r.stdout)
	if s.daemon, err = findDaemon(); err != nil {
		return nil, err
	}
	s.sweep()

	logf("building and installing plugin %s (linux/%s) with ./build-plugin.sh --enable", s.plugin, s.arch)
	if err := runScript(s.repo, 10*time.Minute, "./build-plugin.sh", "--enable", "--name", s.plugin, "--arch", s.arch); err != nil {
		return nil, err
	}
	if err := runScript(s.repo, 5*time.Minute, "test/busybox-image.sh"); err != nil {
		return nil, err
	}

	if s.filesDir, err = os.MkdirTemp("", "dsv-e2e-files-"); err != nil {
		return s, err
	}
	if err := os.Chmod(s.filesDir, 0o755); err != nil {
		return s, err
	}
	db := fmt.Sprintf(`{"user":%q,"password":%q,"port":5432}`, s.dbUser, s.dbPassword)
	if err := s.writeFile("app/db.json", []byte(db)); err != nil {
		return s, err
	}

	if s.motoBin, err = moto.Binary(); err != nil {
		return s, fmt.Errorf("the aws scenarios need moto: %w", err)
	}
	if s.moto, err = moto.StartProcess(context.Background(), s.motoBin, 0); err != nil {
		return s, err
	}
	s.sm = secretsmanager.New(secretsmanager.Options{
		Region:       moto.Region,
		BaseEndpoint: aws.String(s.moto.URL),
		Credentials:  moto.Credentials(),
	})

	if err := s.configurePlugin(); err != nil {
		return s, err
	}
	r = dockerCtx(context.Background(), "plugin", "inspect", "--format", "{{.Id}} {{.Name}}", s.plugin)
	f := strings.Fields(r.stdout)
	if r.err != nil || len(f) != 2 {
		return s, fmt.Errorf("plugin inspect: %v", r)
	}
	s.pluginID, s.driver = f[0], f[1]
	logf("plugin %s (%.12s) configured: files.source=%s AWS_ENDPOINT_URL=%s; dockerd pid %d logs to %s",
		s.plugin, s.pluginID, s.filesDir, s.moto.URL, s.daemon.pid, s.daemon.logPath)
	return s, nil
}

// configurePlugin points the plugin at the suite's file folder and moto.
func (s *suite) configurePlugin() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if r := dockerCtx(ctx, "plugin", "disable", "-f", s.plugin); r.err != nil && !strings.Contains(r.stderr, "already disabled") {
		return fmt.Errorf("disable plugin: %v", r)
	}
	set := []string{"plugin", "set", s.plugin, "files.source=" + s.filesDir}
	for k, v := range s.pluginEnv() {
		set = append(set, k+"="+v)
	}
	if r := dockerCtx(ctx, set...); r.err != nil {
		return fmt.Errorf("configure plugin: %v", r)
	}
	if r := dockerCtx(ctx, "plugin", "enable", s.plugin); r.err != nil {
		return fmt.Errorf("enable plugin: %v", r)
	}
	return nil
}

// configuredEnv lists the plugin's env settings the suite changes.
var configuredEnv = map[string]struct{}{
	"AWS_ENDPOINT_URL": {}, "AWS_REGION": {}, "AWS_ACCESS_KEY_ID": {}, "AWS_SECRET_ACCESS_KEY": {},
	"TIMEOUT": {}, "LOG_LEVEL": {}, "BACKEND": {},
}

// pluginEnv is the suite's value of each of configuredEnv.
func (s *suite) pluginEnv() map[string]string {
	return map[string]string{
		"AWS_ENDPOINT_URL":      s.moto.URL,
		"AWS_REGION":            awsRegion,
		"AWS_ACCESS_KEY_ID":     moto.AccessKeyID,
		"AWS_SECRET_ACCESS_KEY": moto.SecretAccessKey,
		"TIMEOUT":               backendTimeout.String(),
		"LOG_LEVEL":             "debug",
		"BACKEND":               "file",
	}
}

// teardown removes what the run made, leaving the plugin installed and
// enabled, and stops moto.
func (s *suite) teardown() {
	s.sweep()
	if s.moto != nil {
		if err := s.moto.Stop(); err != nil {
			logf("stop moto: %v", err)
		}
	}
	if s.filesDir == "" {
		return
	}
	if !s.resetPlugin() {
		logf("kept %s: the plugin still uses it", s.filesDir)
		return
	}
	if err := os.RemoveAll(s.filesDir); err != nil {
		logf("remove %s: %v", s.filesDir, err)
	}
}

// resetPlugin gives every setting the suite changed its config.json
// default again, before the suite's folder goes: a plugin whose bind source
// is missing cannot be enabled, and dockerd 20.10 panics at start when a
// volume's plugin fails to enable.
func (s *suite) resetPlugin() bool {
	defaults, err := s.configDefaults()
	if err != nil {
		logf("reset the plugin's settings: %v", err)
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dockerCtx(ctx, "plugin", "disable", "-f", s.plugin)
	r := dockerCtx(ctx, append([]string{"plugin", "set", s.plugin}, defaults...)...)
	ok := r.err == nil
	if !ok {
		logf("reset the plugin's settings: %v", r)
	}
	if r := dockerCtx(ctx, "plugin", "enable", s.plugin); r.err != nil {
		logf("enable the plugin: %v", r)
	}
	return ok
}

// configDefaults reads config.json's values of the settings that
// configurePlugin changes, as KEY=VALUE arguments of docker plugin set.
func (s *suite) configDefaults() ([]string, error) {
	b, err := os.ReadFile(filepath.Join(s.repo, "config.json"))
	if err != nil {
		return nil, err
	}
	var cfg struct {
		Env []struct {
			Name  string `json:"name"`
			Value string `json:"value"`
		} `json:"env"`
		Mounts []struct {
			Name   string `json:"name"`
			Source string `json:"source"`
		} `json:"mounts"`
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		return nil, fmt.Errorf("config.json: %w", err)
	}
	var out []string
	for _, m := range cfg.Mounts {
		if m.Name == "files" {
			out = append(out, "files.source="+m.Source)
		}
	}
	for _, e := range cfg.Env {
		if _, ok := configuredEnv[e.Name]; ok {
			out = append(out, e.Name+"="+e.Value)
		}
	}
	if len(out) != len(configuredEnv)+1 {
		return nil, fmt.Errorf("config.json lacks some of the settings the suite changes: found %q", out)
	}
	return out, nil
}

// sweep removes containers, compose projects and volumes of this suite,
// including leftovers of an earlier, interrupted run.
func (s *suite) sweep() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r := dockerCtx(ctx, "ps", "-aq", "--filter", "label="+containerLabel)
	if ids := strings.Fields(r.stdout); len(ids) > 0 {
		dockerCtx(ctx, append([]string{"rm", "-f"}, ids...)...)
	}
	r = dockerCtx(ctx, "ps", "-aq", "--filter", "name="+namePrefix)
	if ids := strings.Fields(r.stdout); len(ids) > 0 {
		dockerCtx(ctx, append([]string{"rm", "-f"}, ids...)...)
	}
	r = dockerCtx(ctx, "volume", "ls", "-q", "--filter", "name="+namePrefix)
	for _, v := range strings.Fields(r.stdout) {
		if strings.HasPrefix(v, namePrefix) {
			dockerCtx(ctx, "volume", "rm", "-f", v)
		}
	}
}

// stateFile is the plugin's state file on the host: in its PropagatedMount,
// which `docker plugin upgrade` keeps.
func (s *suite) stateFile() string {
	return filepath.Join(s.dockerRoot, "plugins", s.pluginID, "propagated-mount", ".state", "state.json")
}

// writeFile puts a secret into the file backend's folder.
func (s *suite) writeFile(name string, value []byte) error {
	p := filepath.Join(s.filesDir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, value, 0o600)
}

// name returns a unique name for this run: a volume, a container, a secret.
// Names are long, as one-letter volume names read as drive letters.
func (s *suite) name(label string) string {
	return fmt.Sprintf("%s%s-%03d-%s", namePrefix, s.runID, s.counter.Add(1), label)
}

// namePrefix starts every name the suite creates; containerLabel marks its
// containers.
const (
	namePrefix     = "dsve2e-"
	containerLabel = "dsv-e2e=1"
)

// runScript runs one of the repository's scripts, streaming its output.
func runScript(dir string, timeout time.Duration, name string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func logf(format string, args ...any) {
	fmt.Printf("e2e: "+format+"\n", args...)
}
