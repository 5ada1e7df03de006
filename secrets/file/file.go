// Package file is the embedded backend for local development: it serves the
// files of one host folder, which the plugin sees through a settable mount.
package file

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
	"unicode"

	"github.com/rs/zerolog"

	"github.com/dsv-plugin/dsv/secrets"
)

// Name is the backend's name in the backend option.
const Name = "file"

// maxSize bounds what one fetch reads, so a stray large file cannot exhaust
// the plugin's memory.
const maxSize = 1 << 20

// Driver reads secrets below Root.
type Driver struct {
	root string
	log  zerolog.Logger
}

var _ secrets.SecretStoreDriver = (*Driver)(nil)

// New returns a driver serving the folder root.
func New(root string, log zerolog.Logger) *Driver {
	return &Driver{root: root, log: log.With().Str("component", "file").Logger()}
}

// Name implements secrets.SecretStoreDriver.
func (d *Driver) Name() string { return Name }

// Validate refuses options the backend cannot honour and names that would
// leave the folder: absolute paths, "..", and symlinks pointing outside.
func (d *Driver) Validate(ref secrets.Ref) error {
	var problems []error
	if err := ValidateName(ref.Name); err != nil {
		problems = append(problems, err)
	} else if err := d.checkExisting(ref.Name); err != nil {
		problems = append(problems, err)
	}
	for opt, v := range map[string]string{"version-id": ref.VersionID, "version-stage": ref.VersionStage, "region": ref.Region} {
		if v != "" {
			problems = append(problems, fmt.Errorf("option %q is not supported by the file backend", opt))
		}
	}
	return errors.Join(problems...)
}

// Linux limits on a path and on one of its segments.
const (
	maxPathLen    = 4095 // PATH_MAX less the terminating NUL
	maxSegmentLen = 255  // NAME_MAX
)

// ValidateName is the lexical check: a relative path of clean segments,
// within Linux's length limits, without control characters.
func ValidateName(name string) error {
	switch {
	case name == "":
		return errors.New(`option "secret": must name a file in the file backend's folder`)
	case len(name) > maxPathLen:
		return fmt.Errorf(`option "secret": is %d bytes long; a path in the file backend's folder is at most %d`, len(name), maxPathLen)
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		// A trailing line break from a YAML block or an env file is the
		// usual one: refuse it here, not as "not found" at mount.
		return fmt.Errorf("option \"secret\": %q holds a control character (a line break, an escape, NUL); file names in the file backend's folder must not", name)
	case filepath.IsAbs(name):
		return fmt.Errorf("option \"secret\": %q is absolute; give a path relative to the file backend's folder", name)
	case name == "." || !filepath.IsLocal(name) || filepath.Clean(name) != name || strings.HasSuffix(name, "/"):
		return fmt.Errorf("option \"secret\": %q leaves or escapes the file backend's folder; use a clean relative path such as app/db-password", name)
	}
	for _, seg := range strings.Split(name, "/") {
		if len(seg) > maxSegmentLen {
			return fmt.Errorf("option \"secret\": a segment of the path is %d bytes long, longer than %d bytes", len(seg), maxSegmentLen)
		}
	}
	return nil
}

// checkExisting follows symlinks of a name that exists now and refuses one
// that leads out of the folder. A name that does not exist yet is accepted:
// the file may be added before the first mount.
func (d *Driver) checkExisting(name string) error {
	root, err := os.OpenRoot(d.root)
	if err != nil {
		return nil // the folder is checked again, with a clear error, at mount
	}
	defer root.Close()
	_, err = root.Stat(name)
	if err == nil || errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if _, lerr := root.Lstat(name); lerr == nil {
		return fmt.Errorf("option \"secret\": %q is a symlink that leads out of the file backend's folder", name)
	}
	return nil
}

// Fetch reads the file. os.Root refuses any path, symlink included, that
// resolves outside the folder, so a link created after Create cannot escape.
func (d *Driver) Fetch(ctx context.Context, ref secrets.Ref) (secrets.Secret, error) {
	if err := ctx.Err(); err != nil {
		return secrets.Secret{}, secrets.FromContext(ctx, ref)
	}
	root, err := os.OpenRoot(d.root)
	if err != nil {
		return secrets.Secret{}, secrets.Fail(ref, secrets.ErrUnavailable,
			"the plugin cannot open its files folder; set it with: docker plugin set dsv files.source=/path/on/host", err)
	}
	defer root.Close()
	// O_NONBLOCK: opening a FIFO (or another special file) planted in the
	// folder must not block the mount; it is refused below.
	f, err := root.OpenFile(ref.Name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return secrets.Secret{}, classify(ref, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return secrets.Secret{}, classify(ref, err)
	}
	if !st.Mode().IsRegular() {
		return secrets.Secret{}, secrets.Fail(ref, secrets.ErrBadValue, "it is not a regular file", nil)
	}
	if st.Size() > maxSize {
		return secrets.Secret{}, secrets.Fail(ref, secrets.ErrBadValue, fmt.Sprintf("the file is larger than %d KiB", maxSize/1024), nil)
	}
	value, err := io.ReadAll(io.LimitReader(f, maxSize+1))
	if err != nil {
		return secrets.Secret{}, classify(ref, err)
	}
	if len(value) > maxSize {
		return secrets.Secret{}, secrets.Fail(ref, secrets.ErrBadValue, fmt.Sprintf("the file is larger than %d KiB", maxSize/1024), nil)
	}
	if ref.Key != "" {
		value, err = secrets.ExtractKey(ref, value)
		if err != nil {
			return secrets.Secret{}, err
		}
	}
	version := st.ModTime().UTC().Format(time.RFC3339Nano)
	d.log.Debug().Str("secret", ref.Name).Str("version", version).Msg("read")
	return secrets.Secret{Value: value, Version: version}, nil
}

func classify(ref secrets.Ref, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err // the path is in the message already; drop the plugin-side prefix
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return secrets.Fail(ref, secrets.ErrNotFound, "create the file in the folder set with: docker plugin set dsv files.source=/path/on/host", nil)
	case errors.Is(err, fs.ErrPermission):
		return secrets.Fail(ref, secrets.ErrAccessDenied, "the plugin runs as root; check the file's permissions and any LSM policy", err)
	case strings.Contains(err.Error(), "escapes"), strings.Contains(err.Error(), "outside"):
		return secrets.Fail(ref, secrets.ErrAccessDenied, "the path resolves outside the file backend's folder", nil)
	default:
		return secrets.Fail(ref, secrets.ErrUnavailable, "", err)
	}
}
