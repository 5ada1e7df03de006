package notify

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/dsv-plugin/dsv/metrics"
)

// Outcomes of one container's notification, the label of
// dsv_notifications_total.
const (
	OutcomeSignalled = "signalled"
	OutcomeExecuted  = "executed"
	OutcomeFailed    = "failed"
	OutcomeSkipped   = "skipped"
)

// Result is what one notification of a volume's containers did, for
// `docker volume inspect`. It holds names and exit codes, never a value.
type Result struct {
	// At is when the notification ended.
	At time.Time `json:"at"`
	// Containers is the number of running containers found.
	Containers int `json:"containers"`
	// Failed counts those whose signal or command failed.
	Failed int `json:"failed,omitempty"`
	// Skipped counts those gone or stopped before their turn.
	Skipped int `json:"skipped,omitempty"`
	// Errors names the failures (at most maxErrors), each with its
	// container.
	Errors []string `json:"errors,omitempty"`
}

// maxErrors bounds Result.Errors.
const maxErrors = 5

// Config tunes a Notifier.
type Config struct {
	// Concurrency bounds the containers notified at once; 32 when 0.
	Concurrency int
	// Timeout bounds one container's notification: the signal, or the
	// command from its start to its end; 30s when 0.
	Timeout time.Duration
	// Logger gets one line per container notified; a component field
	// is added.
	Logger zerolog.Logger
	// Metrics counts notifications by outcome; nil counts nothing.
	Metrics *metrics.Metrics
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Notifier notifies a volume's containers through the engine API.
type Notifier struct {
	engine *Engine
	cfg    Config
	log    zerolog.Logger
	// direct signals a container's process itself (signalDirect); a test
	// replaces it.
	direct func(pid int, id string, sig unix.Signal) error
}

// New returns a Notifier that talks to the engine API on socket.
func New(socket string, cfg Config) *Notifier {
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 32
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Notifier{engine: NewEngine(socket), cfg: cfg, log: cfg.Logger.With().Str("component", "notify").Logger(), direct: signalDirect}
}

// Engine is the notifier's engine client.
func (n *Notifier) Engine() *Engine { return n.engine }

// Notify sends spec to every running container that mounts volume, at
// most Concurrency at once, and returns when each got it (or failed, or
// its Timeout passed). A container that is gone or stopped is skipped; one
// that fails does not stop the others.
func (n *Notifier) Notify(ctx context.Context, volume string, spec Spec) Result {
	if spec.IsZero() {
		return Result{At: n.cfg.Now().UTC()}
	}
	lctx, cancel := context.WithTimeout(ctx, n.cfg.Timeout)
	list, err := n.engine.Containers(lctx, volume)
	cancel()
	if err != nil {
		n.cfg.Metrics.Notified(volume, OutcomeFailed)
		n.log.Warn().Str("volume", volume).Err(err).Msg("cannot list the volume's containers; none was notified")
		return Result{At: n.cfg.Now().UTC(), Failed: 1, Errors: []string{err.Error()}}
	}
	res := Result{Containers: len(list)}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, n.cfg.Concurrency)
	for _, c := range list {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			outcome, err := n.one(ctx, volume, c, spec)
			n.cfg.Metrics.Notified(volume, outcome)
			mu.Lock()
			defer mu.Unlock()
			switch outcome {
			case OutcomeFailed:
				res.Failed++
				if len(res.Errors) < maxErrors {
					res.Errors = append(res.Errors, fmt.Sprintf("container %s: %v", c.Name, err))
				}
			case OutcomeSkipped:
				res.Skipped++
			}
		}()
	}
	wg.Wait()
	res.At = n.cfg.Now().UTC()
	return res
}

// one notifies one container and logs it: one line, without a value.
func (n *Notifier) one(ctx context.Context, volume string, c Container, spec Spec) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.Timeout)
	defer cancel()
	start := time.Now()
	ev := func(e *zerolog.Event) *zerolog.Event {
		e = e.Str("volume", volume).Str("container", c.Name).Str("id", shortID(c.ID)).Dur("took", time.Since(start))
		if spec.Signal != "" {
			return e.Str("signal", spec.Signal)
		}
		return e.Str("exec", spec.Exec[0])
	}
	var err error
	code := 0
	via := ""
	if spec.Signal != "" {
		via, err = n.signal(ctx, c.ID, spec.Signal)
	} else {
		code, err = n.engine.Exec(ctx, c.ID, spec.Exec)
		if err == nil && code != 0 {
			err = fmt.Errorf("%s exited with status %d", spec.Exec[0], code)
		}
	}
	switch {
	case errors.Is(err, ErrGone):
		ev(n.log.Info()).Err(err).Msg("container gone or stopped before its notification; skipped")
		return OutcomeSkipped, err
	case err != nil:
		ev(n.log.Warn()).Err(err).Msg("notification failed")
		return OutcomeFailed, err
	case spec.Signal != "":
		ev(n.log.Info()).Str("via", via).Msg("container signalled")
		return OutcomeSignalled, nil
	}
	ev(n.log.Info()).Msg("command run in container")
	return OutcomeExecuted, nil
}

// signal sends a signal to a container's main process: directly through a
// pidfd when the process is known and seen here (see direct.go), else by
// the engine's kill. It returns which way it went: "pidfd" or "engine".
func (n *Notifier) signal(ctx context.Context, id, name string) (string, error) {
	if sig := unix.SignalNum(name); sig != 0 {
		p, err := n.engine.Process(ctx, id)
		switch {
		case errors.Is(err, ErrGone):
			return "engine", err
		case err == nil && !p.Running:
			return "engine", fmt.Errorf("%w: not running", ErrGone)
		case err == nil && !p.Paused:
			err = n.direct(p.Pid, id, sig)
			if err == nil || !errors.Is(err, errNoDirect) {
				return "pidfd", err
			}
			n.log.Debug().Str("id", shortID(id)).Err(err).Msg("signalling through the engine instead")
		}
	}
	return "engine", n.engine.Kill(ctx, id, name)
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
