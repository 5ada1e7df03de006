//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The Swarm scenarios run on a single-node swarm that the test creates with
// `docker swarm init --advertise-addr 127.0.0.1` and leaves when it ends,
// unless the engine already was a swarm manager (then it is left as it was).
// Tasks print what they read, then sleep; the tests read `docker service
// logs`. The suite's busybox image is local, hence --no-resolve-image.

// swarmTaskTimeout bounds the wait for tasks to run, fail or go away.
const swarmTaskTimeout = 90 * time.Second

// swarmCacheTTL is config.json's CACHE_TTL, which the suite leaves as it is:
// how long the manager's plugin may answer with a value it read before.
const swarmCacheTTL = 30 * time.Second

// swarmSession owns the services, stacks, secrets and volumes of one test
// on the swarm, and removes them when the test ends: services first (their
// containers pin the volumes), then volumes and secrets, then what other
// nodes need (afterServices), then the swarm.
type swarmSession struct {
	t             *testing.T
	services      []string
	stacks        []string
	secrets       []string
	volumes       []string
	afterServices []func()
}

// joinSwarm makes the engine a single-node swarm manager for the test, or
// uses the swarm it manages already.
func joinSwarm(t *testing.T) *swarmSession {
	t.Helper()
	state := strings.TrimSpace(mustDocker(t, "info", "--format", "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}"))
	switch state {
	case "inactive false":
		return initSwarm(t, "127.0.0.1")
	case "active true":
		logf("the engine already is a swarm manager: using that swarm and leaving it in place")
	default:
		t.Fatalf("the engine is in swarm state %q; the Swarm tests need an engine outside any swarm, or a manager", state)
	}
	sw := &swarmSession{t: t}
	t.Cleanup(sw.cleanup)
	return sw
}

// initSwarm runs docker swarm init on addr and leaves the swarm when the
// test ends, removing the docker_gwbridge network that init made.
func initSwarm(t *testing.T, addr string) *swarmSession {
	t.Helper()
	hadBridge := docker(t, "network", "inspect", "docker_gwbridge").err == nil
	mustDocker(t, "swarm", "init", "--advertise-addr", addr, "--listen-addr", addr+":2377")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
		defer cancel()
		if r := dockerCtx(ctx, "swarm", "leave", "--force"); r.err != nil {
			t.Errorf("leave the swarm: %v", r)
		}
		if !hadBridge {
			dockerCtx(ctx, "network", "rm", "docker_gwbridge")
		}
	})
	sw := &swarmSession{t: t}
	t.Cleanup(sw.cleanup)
	return sw
}

func (sw *swarmSession) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for _, s := range sw.stacks {
		dockerCtx(ctx, "stack", "rm", s)
	}
	if len(sw.services) > 0 {
		dockerCtx(ctx, append([]string{"service", "rm"}, sw.services...)...)
	}
	// Swarm removes task containers in the background; volumes stay pinned
	// until they are gone.
	var filters []string
	for _, s := range sw.services {
		filters = append(filters, "label=com.docker.swarm.service.name="+s)
	}
	for _, s := range sw.stacks {
		filters = append(filters, "label=com.docker.stack.namespace="+s)
	}
	for _, f := range filters {
		deadline := time.Now().Add(swarmTaskTimeout)
		for time.Now().Before(deadline) {
			if r := dockerCtx(ctx, "ps", "-aq", "--filter", f); r.err == nil && strings.TrimSpace(r.stdout) == "" {
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	for _, v := range sw.volumes {
		r := dockerCtx(ctx, "volume", "rm", "-f", v)
		if r.err != nil && !strings.Contains(strings.ToLower(r.stderr), "no such volume") {
			sw.t.Errorf("cleanup: %v", r)
		}
	}
	if len(sw.secrets) > 0 {
		dockerCtx(ctx, append([]string{"secret", "rm"}, sw.secrets...)...)
	}
	for _, f := range sw.afterServices {
		f()
	}
}

// volume reserves a volume name that the session removes.
func (sw *swarmSession) volume(label string) string {
	n := env.name(label)
	sw.volumes = append(sw.volumes, n)
	return n
}

// secret creates a dsv Swarm secret with labels (KEY=VALUE) and returns its name.
func (sw *swarmSession) secret(label string, labels ...string) string {
	sw.t.Helper()
	name := env.name(label)
	args := []string{"secret", "create", "--driver", env.plugin}
	for _, l := range labels {
		args = append(args, "--label", l)
	}
	mustDocker(sw.t, append(args, name)...)
	sw.secrets = append(sw.secrets, name)
	return name
}

// printThenSleep is a task's command: run script, then sleep until Swarm
// stops the task (a shell that is PID 1 ignores SIGTERM unless trapped).
func printThenSleep(script string) []string {
	return []string{"sh", "-c", script + `; trap "exit 0" TERM; sleep 600 & wait`}
}

// service creates a service of the test image and returns its name; opts go
// between `docker service create` and the image.
func (sw *swarmSession) service(label string, opts []string, cmd ...string) string {
	sw.t.Helper()
	name := env.name(label)
	sw.services = append(sw.services, name)
	args := []string{"service", "create", "--detach", "--name", name, "--no-resolve-image",
		"--container-label", containerLabel, "--stop-grace-period", "2s", "--restart-delay", "1s"}
	args = append(args, opts...)
	args = append(args, env.image)
	mustDocker(sw.t, append(args, cmd...)...)
	return name
}

// swarmTask is a line of `docker service ps`.
type swarmTask struct {
	id, name, desired, current, err string
}

func serviceTasks(t testing.TB, service string) []swarmTask {
	t.Helper()
	out := mustDocker(t, "service", "ps", "--no-trunc", "--format", "{{.ID}}|{{.Name}}|{{.DesiredState}}|{{.CurrentState}}|{{.Error}}", service)
	var tasks []swarmTask
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.SplitN(l, "|", 5)
		if len(f) == 5 {
			tasks = append(tasks, swarmTask{id: f[0], name: f[1], desired: f[2], current: f[3], err: f[4]})
		}
	}
	return tasks
}

func describeTasks(tasks []swarmTask) string {
	var b strings.Builder
	for _, tk := range tasks {
		fmt.Fprintf(&b, "\n  %s %s desired=%s current=%q error=%q", tk.id, tk.name, tk.desired, tk.current, tk.err)
	}
	return b.String()
}

// wantRunning waits until exactly n tasks of the service are running and
// no task is on its way out.
func wantRunning(t testing.TB, service string, n int) []swarmTask {
	t.Helper()
	var running []swarmTask
	eventually(t, swarmTaskTimeout, fmt.Sprintf("service %s runs %d task(s)", service, n), func() string {
		tasks := serviceTasks(t, service)
		running = running[:0]
		for _, tk := range tasks {
			if tk.desired == "Running" && strings.HasPrefix(tk.current, "Running") {
				running = append(running, tk)
			} else if tk.desired == "Running" || strings.HasPrefix(tk.current, "Running") {
				return "tasks:" + describeTasks(tasks)
			}
		}
		if len(running) != n {
			return "tasks:" + describeTasks(tasks)
		}
		return ""
	})
	return running
}

// serviceLogs is what the service's tasks printed, without prefixes.
func serviceLogs(t testing.TB, service string) string {
	t.Helper()
	return mustDocker(t, "service", "logs", "--raw", service)
}

// wantLogLines waits until the service's tasks printed line at least n times.
func wantLogLines(t testing.TB, service, line string, n int) {
	t.Helper()
	eventually(t, swarmTaskTimeout, fmt.Sprintf("service %s printed %q %d time(s)", service, line, n), func() string {
		logs := serviceLogs(t, service)
		got := 0
		for _, l := range strings.Split(logs, "\n") {
			if strings.TrimRight(l, "\r") == line {
				got++
			}
		}
		if got < n {
			return fmt.Sprintf("%d time(s); logs:\n%s\ntasks:%s", got, clip(logs), describeTasks(serviceTasks(t, service)))
		}
		return ""
	})
}

// wantPluginLog waits until dockerd's log holds a line with every want.
func wantPluginLog(t testing.TB, what string, wants ...string) string {
	t.Helper()
	if len(env.daemon.logs) == 0 {
		t.Fatalf("dockerd's log was not found (it does not log to a file): cannot check %s", what)
	}
	var found string
	eventually(t, swarmTaskTimeout, what, func() string {
		logs, err := env.daemon.readLogs()
		if err != nil {
			return err.Error()
		}
	lines:
		for _, l := range bytes.Split(logs, []byte("\n")) {
			for _, w := range wants {
				if !bytes.Contains(l, []byte(w)) {
					continue lines
				}
			}
			found = string(l)
			return ""
		}
		return fmt.Sprintf("no line of dockerd's log %v holds all of %q", env.daemon.logs, wants)
	})
	return found
}

// TestSwarmSecrets: Swarm secrets with the dsv driver, read by services,
// from moto and from the file store; Swarm's own uid/gid/mode; and how a
// bad label fails a task.
func TestSwarmSecrets(t *testing.T) {
	sw := joinSwarm(t)

	t.Run("aws", func(t *testing.T) {
		name := env.name("swarm/db")
		pw := "swarm-pw-" + randomHex(6)
		createSecret(t, name, `{"username":"admin","password":"`+pw+`"}`)
		sec := sw.secret("aws", "dsv.backend=aws", "dsv.secret="+name, "dsv.key=password")
		svc := sw.service("aws", []string{"--secret", sec}, printThenSleep("cat /run/secrets/"+sec+"; echo")...)
		wantRunning(t, svc, 1)
		wantLogLines(t, svc, pw, 1)
	})

	t.Run("file store, secret named like the Swarm secret", func(t *testing.T) {
		sec := env.name("filesecret")
		value := "file-value-" + randomHex(6)
		if err := env.writeFile(sec, []byte(value)); err != nil {
			t.Fatal(err)
		}
		mustDocker(t, "secret", "create", "--driver", env.plugin, sec)
		sw.secrets = append(sw.secrets, sec)
		svc := sw.service("file", []string{"--secret", "source=" + sec + ",target=app-secret"}, printThenSleep("cat /run/secrets/app-secret; echo")...)
		wantRunning(t, svc, 1)
		wantLogLines(t, svc, value, 1)
	})

	t.Run("a new task reads the current value", func(t *testing.T) {
		sec := env.name("rotated")
		v1, v2 := "v1-"+randomHex(4), "v2-"+randomHex(4)
		if err := env.writeFile(sec, []byte(v1)); err != nil {
			t.Fatal(err)
		}
		mustDocker(t, "secret", "create", "--driver", env.plugin, sec)
		sw.secrets = append(sw.secrets, sec)
		svc := sw.service("rotated", []string{"--secret", sec}, printThenSleep("cat /run/secrets/"+sec+"; echo")...)
		wantRunning(t, svc, 1)
		wantLogLines(t, svc, v1, 1)
		if err := env.writeFile(sec, []byte(v2)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(swarmCacheTTL + time.Second) // the manager's plugin may reuse v1 until then
		mustDocker(t, "service", "update", "--detach", "--force", svc)
		wantLogLines(t, svc, v2, 1)
		wantRunning(t, svc, 1)
	})

	t.Run("Swarm sets owner and mode", func(t *testing.T) {
		sec := sw.secret("owned", "dsv.secret=app/db.json", "dsv.key=user")
		svc := sw.service("owned", []string{"--secret", "source=" + sec + ",target=db-user,uid=1000,gid=1001,mode=0400"},
			printThenSleep("stat -c 'owner=%u:%g mode=%a' /run/secrets/db-user; cat /run/secrets/db-user; echo")...)
		wantRunning(t, svc, 1)
		wantLogLines(t, svc, "owner=1000:1001 mode=400", 1)
		wantLogLines(t, svc, env.dbUser, 1)
	})

	t.Run("bad labels fail the task", func(t *testing.T) {
		sec := sw.secret("badlabels", "dsv.secret=app/db.json", "dsv.mode=0400", "dsv.colour=red")
		id := strings.TrimSpace(mustDocker(t, "secret", "inspect", "--format", "{{.ID}}", sec))
		svc := sw.service("badlabels", []string{"--secret", sec}, printThenSleep("cat /run/secrets/"+sec)...)

		// Docker 20.10 does not pass the provider's error on: the manager
		// logs it at debug level and dispatches the task without the secret,
		// which then fails on the node with the secret's ID.
		want := "unable to get secret from secret store: secret " + id + " not found"
		var shown string
		eventually(t, swarmTaskTimeout, "a task of "+svc+" fails for its secret", func() string {
			tasks := serviceTasks(t, svc)
			for _, tk := range tasks {
				if strings.Contains(tk.err, want) {
					shown = tk.err
					return ""
				}
				if strings.HasPrefix(tk.current, "Running") {
					t.Fatalf("a task runs despite the bad labels:%s", describeTasks(tasks))
				}
			}
			return "tasks:" + describeTasks(tasks)
		})
		t.Logf("docker service ps --no-trunc shows: %s", shown)

		// The provider's error, with every problem, is in the plugin's log
		// on the manager: that is where the README's troubleshooting points.
		line := wantPluginLog(t, "the plugin logs why it refused "+sec,
			`secret refused`, sec, svc, `dsv.mode`, `not for Swarm secrets: Swarm sets the file's mode itself`, `unknown label`, `dsv.colour`)
		t.Logf("the plugin's log: %s", line)
	})

	t.Run("a service identity applies to backends that have identities", func(t *testing.T) {
		// A service deployed with a (Vault) identity also reads file
		// secrets; TestSwarmVault shows the identity used where it applies.
		sec := sw.secret("identity", "dsv.secret=app/db.json", "dsv.key=user")
		svc := sw.service("identity", []string{"--label", "dsv.identity=web", "--secret", sec}, printThenSleep("cat /run/secrets/"+sec+"; echo")...)
		wantRunning(t, svc, 1)
		wantLogLines(t, svc, env.dbUser, 1)
	})
}

// TestSwarmVolume: a service with a dsv volume; `docker service update
// --force` and a killed task reschedule it; old tasks unmount and no tmpfs
// is left on the host.
func TestSwarmVolume(t *testing.T) {
	sw := joinSwarm(t)
	vol := sw.volume("swarmvol")
	mount := "type=volume,volume-driver=" + env.plugin + ",source=" + vol + ",target=/run/secrets/db," +
		"volume-opt=secret=app/db.json,volume-opt=key=password"
	svc := sw.service("vol", []string{"--mount", mount}, printThenSleep("cat /run/secrets/db; echo")...)
	wantRunning(t, svc, 1)
	wantLogLines(t, svc, env.dbPassword, 1)
	wantMounts(t, vol, 1)
	baseline := volumeHostMounts(t, vol)
	if len(baseline) == 0 {
		t.Fatalf("no host mount of %s while a task uses it", vol)
	}

	for i := 2; i <= 3; i++ {
		mustDocker(t, "service", "update", "--detach", "--force", svc)
		wantLogLines(t, svc, env.dbPassword, i)
		wantRunning(t, svc, 1)
		wantMounts(t, vol, 1)
	}

	// Rescheduling: kill the task's container; Swarm starts another task.
	ids := strings.Fields(mustDocker(t, "ps", "-q", "--filter", "label=com.docker.swarm.service.name="+svc))
	if len(ids) != 1 {
		t.Fatalf("want one container of %s, got %q", svc, ids)
	}
	mustDocker(t, "kill", ids[0])
	wantLogLines(t, svc, env.dbPassword, 4)
	wantRunning(t, svc, 1)
	wantMounts(t, vol, 1)

	if got := volumeHostMounts(t, vol); len(got) != len(baseline) {
		t.Errorf("after 3 replaced tasks the host has %d mounts of %s, want %d as with one task:\n%s",
			len(got), vol, len(baseline), strings.Join(got, "\n"))
	}
	if ms, err := hostMounts(); err == nil {
		n := 0
		for _, m := range ms {
			if strings.HasPrefix(m.mountPoint, propagatedMount()+"/") && m.fsType == "tmpfs" {
				n++
			}
		}
		t.Logf("tmpfs entries under %s with one task running: %d", propagatedMount(), n)
	}

	mustDocker(t, "service", "rm", svc)
	wantMounts(t, vol, 0)
	wantNoHostMount(t, vol)
}

// TestSwarmStack deploys a compose file (version 3.8) with `docker stack
// deploy`: a dsv volume (driver + driver_opts) and two dsv secrets (driver +
// labels), one from moto and one from the file store.
func TestSwarmStack(t *testing.T) {
	sw := joinSwarm(t)
	stack := strings.ReplaceAll(env.name("stack"), ".", "")
	sw.stacks = append(sw.stacks, stack)
	awsName := env.name("stack/db")
	pw := "stack-pw-" + randomHex(6)
	createSecret(t, awsName, `{"password":"`+pw+`"}`)
	vol := stack + "_creds"
	sw.volumes = append(sw.volumes, vol)

	yml := fmt.Sprintf(`version: "3.8"
services:
  app:
    image: %[1]s
    labels: ["dsv-e2e=1"]
    stop_grace_period: 2s
    command: ["sh", "-c", "echo pw=$$(cat /run/secrets/db-password) user=$$(cat /run/secrets/db-user) vol=$$(cat /run/secrets/vol); trap 'exit 0' TERM; sleep 600 & wait"]
    secrets:
      - source: db
        target: db-password
        uid: "1000"
        mode: 0400
      - source: user
        target: db-user
    volumes:
      - creds:/run/secrets/vol
volumes:
  creds:
    driver: %[2]s
    driver_opts:
      secret: app/db.json
      key: user
secrets:
  db:
    driver: %[2]s
    labels:
      dsv.backend: aws
      dsv.secret: %[3]s
      dsv.key: password
  user:
    driver: %[2]s
    labels:
      dsv.secret: app/db.json
      dsv.key: user
`, env.image, env.plugin, awsName)
	file := filepath.Join(t.TempDir(), "stack.yml")
	if err := os.WriteFile(file, []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	mustDocker(t, "stack", "deploy", "--resolve-image", "never", "-c", file, stack)
	svc := stack + "_app"
	wantRunning(t, svc, 1)
	wantLogLines(t, svc, fmt.Sprintf("pw=%s user=%s vol=%s", pw, env.dbUser, env.dbUser), 1)
	if v := inspectVolume(t, vol); v.Driver != env.driver || v.Status["secret"] != "app/db.json" {
		t.Errorf("volume %s: driver %q status %v, want driver %s and secret app/db.json", vol, v.Driver, v.Status, env.driver)
	}
	if d := strings.TrimSpace(mustDocker(t, "secret", "inspect", "--format", "{{.Spec.Driver.Name}}", stack+"_db")); d != env.plugin {
		t.Errorf("secret %s_db has driver %q, want %s", stack, d, env.plugin)
	}

	mustDocker(t, "stack", "rm", stack)
	wantMounts(t, vol, 0)
	wantNoHostMount(t, vol)
}
