// Package notify tells the containers that mount a volume that its files
// changed: after a swap it lists, through the Docker Engine API (or
// Podman's, which serves the same calls), every running container of the
// volume and sends each a signal or runs a command in it. It speaks the API
// with net/http over the engine's unix socket, and uses six calls: list
// containers by volume, inspect (a container's main process, which it then
// signals itself when it can: see direct.go), kill with a signal, and exec
// create, start and inspect. It never reads or sends a secret value.
package notify

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
)

// ExecPrefix starts a notify value that runs a command in each container.
const ExecPrefix = "exec:"

// Bounds of an exec command: a reload command is short.
const (
	maxArgs   = 64
	maxArgLen = 4096
)

// Spec is what a volume asks for after each swap that changed its files:
// a signal to each container's main process, or a command run in each
// container. The zero Spec notifies nobody. It holds no value, and is
// persisted with the volume's options.
type Spec struct {
	// Signal is a signal's canonical name, e.g. SIGHUP.
	Signal string `json:"signal,omitempty"`
	// Exec is the command's argv, run without a shell.
	Exec []string `json:"exec,omitempty"`
}

// IsZero reports whether the spec notifies nobody.
func (s Spec) IsZero() bool { return s.Signal == "" && len(s.Exec) == 0 }

// String describes the spec for logs and `docker volume inspect`: the
// signal's name, or exec: and the command with each word quoted as
// needed.
func (s Spec) String() string {
	switch {
	case s.Signal != "":
		return s.Signal
	case len(s.Exec) > 0:
		return ExecPrefix + JoinWords(s.Exec)
	}
	return ""
}

// Parse reads a notify option or setting: a signal name (SIGHUP, HUP,
// SIGUSR1, ...; case does not matter) or exec:COMMAND ARGS, split into
// words as a POSIX shell does (quotes and backslashes), without a shell:
// no variables, globs, pipes or redirections. An empty value is the zero
// Spec.
func Parse(v string) (Spec, error) {
	if v == "" {
		return Spec{}, nil
	}
	if rest, ok := strings.CutPrefix(v, ExecPrefix); ok {
		argv, err := SplitWords(rest)
		if err != nil {
			return Spec{}, fmt.Errorf("exec: %w", err)
		}
		switch {
		case len(argv) == 0:
			return Spec{}, errors.New("exec: names no command; write e.g. exec:nginx -s reload")
		case len(argv) > maxArgs:
			return Spec{}, fmt.Errorf("exec: %d words; at most %d", len(argv), maxArgs)
		}
		for _, a := range argv {
			if len(a) > maxArgLen {
				return Spec{}, fmt.Errorf("exec: a word is %d bytes long; at most %d", len(a), maxArgLen)
			}
			if strings.ContainsRune(a, 0) {
				return Spec{}, errors.New("exec: a word holds a NUL byte, which no argument can")
			}
		}
		return Spec{Exec: argv}, nil
	}
	name, err := SignalName(v)
	if err != nil {
		return Spec{}, err
	}
	return Spec{Signal: name}, nil
}

// signals are the names Docker's kill takes on Linux (moby's
// signal.SignalMap), without SIGKILL and SIGSTOP: dsv notifies an app, it
// does not stop it.
var signals = []string{
	"ABRT", "ALRM", "BUS", "CHLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "PIPE", "PROF", "PWR",
	"QUIT", "SEGV", "STKFLT", "SYS", "TERM", "TRAP", "TSTP", "TTIN", "TTOU", "URG", "USR1", "USR2",
	"VTALRM", "WINCH", "XCPU", "XFSZ",
}

// SignalName returns the canonical name (SIGHUP) of a signal given as
// SIGHUP, HUP or sighup.
func SignalName(v string) (string, error) {
	short := strings.TrimPrefix(strings.ToUpper(v), "SIG")
	for _, s := range signals {
		if s == short {
			return "SIG" + s, nil
		}
	}
	switch short {
	case "KILL", "STOP":
		return "", fmt.Errorf("%q would stop the app, not tell it: use the signal it reloads on (often SIGHUP), or exec:COMMAND", v)
	}
	shown := v
	if len(shown) > 32 || strings.IndexFunc(shown, unicode.IsControl) >= 0 {
		shown = fmt.Sprintf("%.32q", v)
	}
	return "", fmt.Errorf("%q is neither a signal name (e.g. SIGHUP, SIGUSR1) nor exec:COMMAND ARGS", shown)
}
