package lastgood

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Permissions of the key: everything for its possessor; view, read and
// search for processes of its uid. The plugin's session keyring is one
// runc made for it, which the user keyring is not linked to, so a
// restarted plugin does not possess the key it finds there (measured: its
// read is refused) unless its uid may read it. Processes of that uid that
// may call keyctl (the host's root, a container without Docker's seccomp
// profile) can read it: they can read the plugin's memory as well.
const keyPerm = 0x3f000000 | 0x00010000 | 0x00020000 | 0x00080000

// KernelKey returns the 32-byte key of the store in dir from the user
// keyring, or makes one and adds it there; created is true when it was
// made (the keyring had none: the first start, or the first since a
// reboot). The key's name comes from dir/id, a random id made at the
// first start, so that two plugins on one host keep their own keys.
func KernelKey(dir string) (key []byte, created bool, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, err
	}
	id, err := storeID(filepath.Join(dir, "id"))
	if err != nil {
		return nil, false, err
	}
	desc := "dsv:lastgood:" + id
	if kid, err := unix.KeyctlSearch(unix.KEY_SPEC_USER_KEYRING, "user", desc, 0); err == nil {
		buf := make([]byte, 64)
		n, err := unix.KeyctlBuffer(unix.KEYCTL_READ, kid, buf, 0)
		if err == nil && n == 32 {
			return buf[:32], false, nil
		}
		// Unreadable or not ours: replace it.
		_, _ = unix.KeyctlInt(unix.KEYCTL_UNLINK, kid, unix.KEY_SPEC_USER_KEYRING, 0, 0)
	}
	key = make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, false, err
	}
	// Made in the process keyring, which this process possesses, so that
	// it may set the key's permissions; then linked into the user
	// keyring, which keeps it once the process is gone. (Added to the
	// user keyring directly, the managed plugin does not possess it, and
	// the kernel refuses it the permission change: measured.)
	kid, err := unix.AddKey("user", desc, key, unix.KEY_SPEC_PROCESS_KEYRING)
	if err != nil {
		return nil, false, fmt.Errorf("add a key to the kernel's keyring: %w", err)
	}
	if _, err := unix.KeyctlInt(unix.KEYCTL_SETPERM, kid, keyPerm, 0, 0); err != nil {
		_, _ = unix.KeyctlInt(unix.KEYCTL_UNLINK, kid, unix.KEY_SPEC_PROCESS_KEYRING, 0, 0)
		return nil, false, fmt.Errorf("set the permissions of the kernel key: %w", err)
	}
	if _, err := unix.KeyctlInt(unix.KEYCTL_LINK, kid, unix.KEY_SPEC_USER_KEYRING, 0, 0); err != nil {
		_, _ = unix.KeyctlInt(unix.KEYCTL_UNLINK, kid, unix.KEY_SPEC_PROCESS_KEYRING, 0, 0)
		return nil, false, fmt.Errorf("keep the key in the kernel's user keyring: %w", err)
	}
	_, _ = unix.KeyctlInt(unix.KEYCTL_UNLINK, kid, unix.KEY_SPEC_PROCESS_KEYRING, 0, 0)
	return key, true, nil
}

// storeID reads the store's id from path, or writes a new one.
func storeID(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		id := strings.TrimSpace(string(b))
		if len(id) == 32 && strings.Trim(id, "0123456789abcdef") == "" {
			return id, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	raw := make([]byte, 16)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	id := hex.EncodeToString(raw)
	return id, writeFile(path, []byte(id+"\n"))
}
