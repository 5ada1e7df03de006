// Command dsv is the Docker volume plugin that mounts secrets as tmpfs files.
// It runs as a managed plugin (see config.json) or, in legacy mode, directly
// on the host with an unmanaged socket under /run/docker/plugins.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/dsv-plugin/dsv/render"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/docker/go-connections/sockets"
	"github.com/rs/zerolog"

	"github.com/dsv-plugin/dsv/metrics"
	"github.com/dsv-plugin/dsv/notify"
	"github.com/dsv-plugin/dsv/pluginmux"
	"github.com/dsv-plugin/dsv/secretprovider"
	"github.com/dsv-plugin/dsv/secrets"
	"github.com/dsv-plugin/dsv/secrets/allowlist"
	"github.com/dsv-plugin/dsv/secrets/awssm"
	"github.com/dsv-plugin/dsv/secrets/azure"
	"github.com/dsv-plugin/dsv/secrets/cache"
	"github.com/dsv-plugin/dsv/secrets/file"
	"github.com/dsv-plugin/dsv/secrets/gate"
	"github.com/dsv-plugin/dsv/secrets/gcp"
	"github.com/dsv-plugin/dsv/secrets/lastgood"
	"github.com/dsv-plugin/dsv/secrets/ssm"
	"github.com/dsv-plugin/dsv/secrets/vault"
	"github.com/dsv-plugin/dsv/tmpfs"
	"github.com/dsv-plugin/dsv/volumes"
)

// version is stamped at build time with -ldflags "-X main.version=...".
var version = "dev"

// gcPercent is the garbage collector's GOGC unless the environment sets
// GOGC. The plugin's live heap is about 1.5 MiB, most of it package tables
// of the AWS SDK and the Vault client; at the runtime's default of 100 the
// heap grows to its 4 MiB minimum goal between collections and stays
// resident. 70 lowers that floor to 2.8 MiB. With test/tools/rss, VmRSS is
// 0.4 MiB lower after 20 mounts and 1.2 MiB lower after 100; but the first
// collection, which costs ~1 MiB once (its code and metadata), now comes
// at the first mount or two rather than after ~7, so a plugin that has
// served fewer than ~15 is up to 0.8 MiB higher. An idle plugin never
// collects; at 60 or less the floor came so close to the heap of start-up
// that it sometimes did (0.6 MiB more idle).
const gcPercent = 70

// tmpfsSize caps each volume's tmpfs. Secrets Manager values are at most
// 64 KiB and the file backend reads at most 1 MiB.
const tmpfsSize = 2 << 20

func main() {
	if err := run(context.Background(), os.Args[1:], os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, "dsv:", err)
		os.Exit(1)
	}
}

// settings are the plugin-wide values from config.json's settable env.
type settings struct {
	LogLevel zerolog.Level
	Backend  string
	Timeout  time.Duration
	CacheTTL time.Duration
	Refresh  time.Duration
	// StoreConcurrency is STORE_CONCURRENCY: the cap on calls in flight
	// to one store; 0: no cap.
	StoreConcurrency int
	// LeaseGrace is LEASE_GRACE: how long a lease of replaced content is
	// kept before it is revoked.
	LeaseGrace time.Duration
	AWSRegion  string
	// Allow is the ALLOW setting as written; run parses it once the
	// backends are known.
	Allow string
	// SwarmIdentityFromServiceName makes a service's name the backend
	// identity of the Swarm secrets it reads (see secretprovider).
	SwarmIdentityFromServiceName bool
	// Vault holds the vault backend's settings (VAULT_*).
	Vault vault.Config
	// Azure holds the azure backend's settings (AZURE_*).
	Azure azure.Config
	// GCP holds the gcp backend's settings (GCP_*, GOOGLE_APPLICATION_CREDENTIALS).
	GCP gcp.Config
	// MetricsAddr is METRICS_ADDR, where the Prometheus endpoint listens;
	// empty: no endpoint.
	MetricsAddr string
	// MetricsObjectNames is METRICS_OBJECT_NAMES: secret names as labels.
	MetricsObjectNames bool
	// Notify is NOTIFY: the default of the notify option.
	Notify notify.Spec
	// StaleIfError is STALE_IF_ERROR: the default of the stale-if-error
	// option.
	StaleIfError time.Duration
}

// defaultStoreConcurrency caps the reads in flight to one store: enough
// for a burst of mounts (reads of one object share one call anyway), few
// enough that a node restarted with many volumes does not fire them all at
// a store that counts requests per second.
const defaultStoreConcurrency = 8

// defaultLeaseGrace keeps a replaced lease (the database user an app's
// open connections use) long enough for a connection pool to move on.
const defaultLeaseGrace = 5 * time.Minute

// loadSettings reads the environment and reports every bad value at once.
// settingsErrPrefix starts the error that lists every bad setting.
const settingsErrPrefix = "invalid plugin settings: "

func loadSettings(getenv func(string) string) (settings, error) {
	s := settings{LogLevel: zerolog.InfoLevel, Backend: file.Name, Timeout: 5 * time.Second, CacheTTL: 30 * time.Second, LeaseGrace: defaultLeaseGrace, StoreConcurrency: defaultStoreConcurrency}
	var problems []string
	if v := getenv("LOG_LEVEL"); v != "" {
		l, err := zerolog.ParseLevel(strings.ToLower(v))
		if err != nil || l == zerolog.NoLevel {
			problems = append(problems, fmt.Sprintf("LOG_LEVEL %q: use debug, info, warn or error", v))
		} else {
			s.LogLevel = l
		}
	}
	if v := getenv("BACKEND"); v != "" {
		s.Backend = v
	}
	if v := getenv("TIMEOUT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			problems = append(problems, fmt.Sprintf("TIMEOUT %q: use a positive Go duration such as 5s or 1500ms", v))
		} else {
			s.Timeout = d
		}
	}
	if v := getenv("CACHE_TTL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			problems = append(problems, fmt.Sprintf("CACHE_TTL %q: use a Go duration such as 5s, or 0 to read the backend at every mount", v))
		} else {
			s.CacheTTL = d
		}
	}
	if v := getenv("STORE_CONCURRENCY"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			problems = append(problems, fmt.Sprintf("STORE_CONCURRENCY %q: use a whole number of calls, e.g. 8, or 0 for no cap", v))
		} else {
			s.StoreConcurrency = n
		}
	}
	if v := getenv("REFRESH"); v != "" {
		d, err := time.ParseDuration(v)
		switch {
		case err != nil || d < 0:
			problems = append(problems, fmt.Sprintf("REFRESH %q: use a Go duration such as 1m, or 0 to read once at mount", v))
		case d > 0 && d < time.Second:
			problems = append(problems, fmt.Sprintf("REFRESH %q: the minimum is 1s", v))
		default:
			s.Refresh = d
		}
	}
	if v := getenv("LEASE_GRACE"); v != "" {
		d, err := render.ParseLeaseGrace(v)
		if err != nil {
			problems = append(problems, fmt.Sprintf("LEASE_GRACE: %v", err))
		} else {
			s.LeaseGrace = d
		}
	}
	if v := getenv("NOTIFY"); v != "" {
		spec, err := notify.Parse(v)
		if err != nil {
			problems = append(problems, fmt.Sprintf("NOTIFY: %v", err))
		} else {
			s.Notify = spec
		}
	}
	if v := getenv("STALE_IF_ERROR"); v != "" {
		d, err := render.ParseStaleIfError(v)
		if err != nil {
			problems = append(problems, fmt.Sprintf("STALE_IF_ERROR: %v", err))
		} else {
			s.StaleIfError = d
		}
	}
	if v := getenv("SWARM_IDENTITY_FROM_SERVICE_NAME"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			problems = append(problems, fmt.Sprintf("SWARM_IDENTITY_FROM_SERVICE_NAME %q: use true or false", v))
		} else {
			s.SwarmIdentityFromServiceName = b
		}
	}
	if v := getenv("METRICS_ADDR"); v != "" {
		if err := metrics.ValidateAddr(v); err != nil {
			problems = append(problems, fmt.Sprintf("METRICS_ADDR %q: %v", v, err))
		} else {
			s.MetricsAddr = v
		}
	}
	if v := getenv("METRICS_OBJECT_NAMES"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			problems = append(problems, fmt.Sprintf("METRICS_OBJECT_NAMES %q: use true or false", v))
		} else {
			s.MetricsObjectNames = b
		}
	}
	s.Allow = getenv("ALLOW")
	s.AWSRegion = getenv("AWS_REGION")
	if s.AWSRegion != "" && !awssm.ValidRegion(s.AWSRegion) {
		problems = append(problems, fmt.Sprintf("AWS_REGION %q: not an AWS region (e.g. us-east-1)", s.AWSRegion))
	}
	vc, err := vault.ConfigFromEnv(getenv)
	if err != nil {
		problems = append(problems, strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	s.Vault = vc
	if s.Azure, err = azure.ConfigFromEnv(getenv); err != nil {
		problems = append(problems, strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	gc, err := gcp.ConfigFromEnv(getenv)
	if err != nil {
		problems = append(problems, strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	s.GCP = gc
	if len(problems) > 0 {
		return s, errors.New(settingsErrPrefix + strings.Join(problems, "; "))
	}
	return s, nil
}

// openLastGood opens the store of last good values (stale-if-error) in
// dir, its key in the kernel's user keyring. Without a keyring (a kernel
// or sandbox that refuses keyctl) there is none: stale-if-error then
// serves nothing, and the log says why.
func openLastGood(dir string, log zerolog.Logger) *lastgood.Store {
	key, created, err := lastgood.KernelKey(dir)
	if err == nil {
		var st *lastgood.Store
		if st, err = lastgood.Open(dir, key, created, nil); err == nil {
			clear(key)
			log.Info().Str("dir", dir).Bool("newKey", created).Int("values", st.Len()).Msg("last good values for stale-if-error: sealed in the state folder, key in the kernel's user keyring")
			return st
		}
	}
	log.Warn().Err(err).Msg("no store of last good values: stale-if-error cannot serve a value through an outage")
	return nil
}

// backendSettings checks the settings that name backends, BACKEND and
// ALLOW, against the registry's names, reporting both at once, and returns
// the parsed ALLOW list (empty: every object allowed).
func backendSettings(s settings, backends []string) (*allowlist.List, error) {
	var problems []string
	if !slices.Contains(backends, s.Backend) {
		problems = append(problems, fmt.Sprintf("BACKEND %q: use one of %s", s.Backend, strings.Join(backends, ", ")))
	}
	allow, err := allowlist.Parse(s.Allow, backends)
	if err != nil {
		problems = append(problems, err.Error())
	}
	if len(problems) > 0 {
		return nil, errors.New(settingsErrPrefix + strings.Join(problems, "; "))
	}
	return allow, nil
}

func run(ctx context.Context, args []string, getenv func(string) string) error {
	fs := flag.NewFlagSet("dsv", flag.ContinueOnError)
	socket := fs.String("socket", "/run/docker/plugins/dsv.sock", "unix socket to serve the plugin API on; its base name is the driver name")
	// The managed plugin's state lives in its PropagatedMount, which
	// `docker plugin upgrade` keeps: the upgrade replaces the whole rootfs.
	statePath := fs.String("state", "/mnt/dsv/.state/state.json", "file that persists volumes across restarts and upgrades")
	mountRoot := fs.String("mounts", "/mnt/dsv", "directory under which each volume's read-only view is mounted (the managed plugin's PropagatedMount)")
	writerRoot := fs.String("writer", "/run/dsv/rw", "directory under which each volume's tmpfs is mounted read-write for the plugin alone (made a private mount; never under -mounts)")
	filesDir := fs.String("files", "/run/dsv/files", "folder served by the file backend")
	templatesDir := fs.String("templates", "/run/dsv/templates", "folder of named templates (template-file option)")
	// The managed plugin's engine mount: /dev/null until the user grants
	// the engine. Legacy mode names the socket with ENGINE_SOCKET.
	engineSocket := fs.String("engine", "/run/dsv/engine.sock", "the engine API's unix socket, for the notify option; anything but a socket there: no engine access (the ENGINE_SOCKET setting overrides it)")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *showVersion {
		fmt.Println("dsv", version)
		return nil
	}

	if getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}

	// Every bad setting is reported at once: each costs the user a
	// disable, set, enable cycle.
	var problems []string
	s, err := loadSettings(getenv)
	if err != nil {
		problems = append(problems, err.Error())
	}
	zerolog.TimeFieldFormat = time.RFC3339Nano
	// Stdout: dockerd logs a plugin's stderr at level error, its stdout at info.
	log := zerolog.New(os.Stdout).Level(s.LogLevel).With().Timestamp().Logger()

	s.Vault.Timeout = s.Timeout // also ALLOW's lookups, logins and token renewals
	vd, err := vault.New(s.Vault, log)
	if err != nil {
		problems = append(problems, err.Error())
	} else {
		defer vd.Close()
	}
	azd, err := azure.New(s.Azure, log)
	if err != nil && s.Azure.Validate() == nil { // else loadSettings said it
		problems = append(problems, err.Error())
	}
	allow, err := backendSettings(s, []string{awssm.Name, azure.Name, file.Name, gcp.Name, ssm.Name, vault.Name})
	if err != nil {
		problems = append(problems, err.Error())
	}
	if v := getenv("ENGINE_SOCKET"); v != "" {
		*engineSocket = v
	}
	// No engine access unless granted: notify and NOTIFY need it.
	granted := notify.Granted(*engineSocket)
	if !granted && !s.Notify.IsZero() {
		problems = append(problems, fmt.Sprintf("NOTIFY %q needs the engine API, which the plugin was not granted: docker plugin set dsv engine.source=/var/run/docker.sock (legacy mode: ENGINE_SOCKET=/var/run/docker.sock); %s is not a socket", s.Notify, *engineSocket))
	}
	if len(problems) > 0 {
		for i, p := range problems {
			problems[i] = strings.TrimPrefix(p, settingsErrPrefix)
		}
		return errors.New(settingsErrPrefix + strings.Join(problems, "; "))
	}
	reg, err := secrets.NewRegistry(
		file.New(*filesDir, log),
		awssm.New(awssm.Config{DefaultRegion: s.AWSRegion, Logger: log}),
		ssm.New(ssm.Config{DefaultRegion: s.AWSRegion, Logger: log}),
		vd,
		azd,
		gcp.New(s.GCP, log),
	)
	if err != nil {
		return err
	}
	// Off (nil) unless METRICS_ADDR is set: no registry, no collector.
	var m *metrics.Metrics
	if s.MetricsAddr != "" {
		m = metrics.New(metrics.Config{ObjectNames: s.MetricsObjectNames, Version: version})
	}
	// Containers are notified through the engine only when it was granted.
	var notifier volumes.Notifier
	if granted {
		notifier = notify.New(*engineSocket, notify.Config{Logger: log, Metrics: m})
	}
	// One gate per store, under the cache: its reads are capped and, when
	// the store throttles, wait out one backoff and are tried again.
	gates, err := gate.New(gate.Config{Concurrency: s.StoreConcurrency, Metrics: m})
	if err != nil {
		return err
	}
	fetcher, err := cache.New(reg, cache.Config{TTL: s.CacheTTL, Timeout: s.Timeout, Metrics: m, Gates: gates})
	if err != nil {
		return err
	}
	lastGood := openLastGood(filepath.Join(filepath.Dir(*statePath), "lastgood"), log)
	store, err := volumes.NewStore(*statePath)
	if err != nil {
		return err
	}
	drv, err := volumes.New(volumes.Config{
		Root:       *mountRoot,
		Writer:     *writerRoot,
		LeaseGrace: s.LeaseGrace,
		Store:      store,
		Registry:   reg,
		Defaults:   render.Defaults{Backend: s.Backend, Templates: render.DirTemplates(*templatesDir), Notify: s.Notify, StaleIfError: s.StaleIfError},
		Allow:      allow,
		Refresh:    s.Refresh,
		Fetcher:    fetcher,
		TmpfsSize:  tmpfsSize,
		Mounter:    tmpfs.Kernel{},
		// The last container of a volume is gone: what rendering its
		// files used is garbage; hand it back at once (a GC of a few
		// MiB of heap, about a millisecond).
		Release:  debug.FreeOSMemory,
		Logger:   log,
		Metrics:  m,
		Notifier: notifier,
		LastGood: lastGood,
	})
	if err != nil {
		return err
	}
	m.WatchVolumes(drv.VolumeStats)
	// Before vd.Close (defers run last first): a renewal or replacement
	// caught by the shutdown finishes, or stops, while Vault is still open.
	defer drv.Close()
	provider, err := secretprovider.New(secretprovider.Config{
		Registry:                reg,
		Fetcher:                 fetcher,
		DefaultBackend:          s.Backend,
		IdentityFromServiceName: s.SwarmIdentityFromServiceName,
		Allow:                   allow,
		Format:                  render.ApplyFormat,
		Formats:                 render.Formats(),
		Logger:                  log,
	})
	if err != nil {
		return err
	}

	if err := os.MkdirAll(filepath.Dir(*socket), 0o755); err != nil {
		return fmt.Errorf("create socket directory: %w", err)
	}
	_ = os.Remove(*socket) // a socket left by a killed predecessor
	l, err := sockets.NewUnixSocket(*socket, 0)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *socket, err)
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if m != nil {
		ml, err := net.Listen("tcp", s.MetricsAddr)
		if err != nil {
			l.Close()
			return fmt.Errorf("METRICS_ADDR: %w", err)
		}
		go func() {
			if err := m.Serve(ctx, ml); err != nil {
				log.Error().Err(err).Str("addr", s.MetricsAddr).Msg("metrics endpoint stopped")
			}
		}()
	}
	go func() {
		<-ctx.Done()
		l.Close()
	}()

	log.Info().Str("version", version).Str("socket", *socket).Str("backend", s.Backend).
		Str("timeout", s.Timeout.String()).Str("refresh", s.Refresh.String()).Str("cacheTTL", s.CacheTTL.String()).Int("storeConcurrency", s.StoreConcurrency).
		Int("allowPatterns", allow.Len()).Str("metrics", s.MetricsAddr).Bool("engine", granted).Msg("serving")
	err = pluginmux.Serve(l,
		pluginmux.API{Implements: pluginmux.VolumeDriver, Prefix: "/VolumeDriver.", Handler: pluginmux.VolumeHandler(m.Driver(drv))},
		pluginmux.API{Implements: pluginmux.SecretProvider, Prefix: "/SecretProvider.", Handler: pluginmux.SecretHandler(provider)},
	)
	if ctx.Err() != nil {
		log.Info().Msg("stopped")
		return nil
	}
	return err
}
