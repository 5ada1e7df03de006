package vault

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/dsv-plugin/dsv/secrets"
)

// mountTTL is how long what a mount is (its engine and KV version) is
// remembered; a KV v1 mount upgraded to v2 is seen after this long.
const mountTTL = 5 * time.Minute

// mountInfo is what Vault says about the mount a path lives in.
type mountInfo struct {
	// prefix is the part of user paths that names the mount: "secret/".
	// Empty when Vault did not say (then paths are used as given).
	prefix string
	// engine is the mount's type: "kv", "database", "pki", ...
	engine string
	// kv is the KV version, 1 or 2; 0 for other engines.
	kv      int
	expires time.Time
}

type mountKey struct {
	namespace string
	prefix    string
}

// mount returns the mount of path in namespace ns, from the cache or by
// asking Vault the way the Vault CLI does (sys/internal/ui/mounts/PATH).
func (d *Driver) mount(ctx context.Context, ref secrets.Ref, s *session, ns, path string) (mountInfo, error) {
	if m, ok := d.cachedMount(ns, path); ok {
		return m, nil
	}
	var sec *secret
	err := d.call(ctx, s, func(token string) error {
		var err error
		sec, err = d.api.read(ctx, ns, token, "sys/internal/ui/mounts/"+path, nil, "")
		return err
	})
	if err != nil {
		return mountInfo{}, d.classify(ctx, ref, op{kind: opMounts, path: path}, err)
	}
	if sec == nil {
		// A Vault without the endpoint (404): use paths as given, as the
		// CLI does. Not cached: there is no mount path to key it by.
		return mountInfo{}, nil
	}
	m := parseMount(sec, path)
	if m.prefix != "" {
		m.expires = time.Now().Add(mountTTL)
		d.mu.Lock()
		d.mounts[mountKey{namespace: ns, prefix: m.prefix}] = m
		d.mu.Unlock()
	}
	return m, nil
}

// reservedEngine returns the reserved mount (see reservedMounts) of a
// mount of type engine, or "": Vault's own mounts have types of their own,
// with an ns_ prefix in a child namespace of Vault Enterprise.
func reservedEngine(engine string) string {
	switch strings.TrimPrefix(engine, "ns_") {
	case "system":
		return "sys"
	case "token":
		return "auth"
	case "cubbyhole":
		return "cubbyhole"
	case "identity":
		return "identity"
	}
	return ""
}

// cachedMount finds the longest cached mount prefix of path.
func (d *Driver) cachedMount(ns, path string) (mountInfo, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	var best mountInfo
	found := false
	for k, m := range d.mounts {
		if !now.Before(m.expires) {
			delete(d.mounts, k)
			continue
		}
		if k.namespace == ns && underPrefix(path, k.prefix) && len(k.prefix) > len(best.prefix) {
			best, found = m, true
		}
	}
	return best, found
}

// parseMount reads the answer of sys/internal/ui/mounts for path.
func parseMount(sec *secret, path string) mountInfo {
	var m mountInfo
	mountPath, _ := sec.Data["path"].(string)
	m.engine, _ = sec.Data["type"].(string)
	m.prefix = mountPrefix(path, mountPath)
	if m.engine == "kv" || m.engine == "generic" {
		m.kv = 1
		if opts, ok := sec.Data["options"].(map[string]any); ok {
			if v, _ := opts["version"].(string); v == "2" {
				m.kv = 2
			}
		}
	}
	return m
}

// mountPrefix returns the leading part of path that names mountPath. Vault
// reports a mount in a child namespace with the namespace in front
// ("team/secret/"), which the path may not hold: like the Vault CLI
// (addPrefixToKVPath), drop leading segments of the mount path until it
// matches. Empty when nothing matches.
func mountPrefix(path, mountPath string) string {
	mp := strings.Trim(mountPath, "/")
	for mp != "" {
		if underPrefix(path, mp+"/") {
			return mp + "/"
		}
		_, rest, ok := strings.Cut(mp, "/")
		if !ok {
			break
		}
		mp = rest
	}
	return ""
}

// underPrefix reports whether path is the mount prefix itself or below it.
func underPrefix(path, prefix string) bool {
	return prefix != "" && (path+"/" == prefix || strings.HasPrefix(path, prefix))
}

// logicalPath names a KV v2 secret as the CLI does: without the data/ that
// may follow its mount. Other paths are their own name.
func logicalPath(m mountInfo, path string) string {
	if m.kv != 2 || m.prefix == "" {
		return path
	}
	if rest, ok := strings.CutPrefix(path, m.prefix+"data/"); ok {
		return m.prefix + rest
	}
	return path
}

// apiPath is the path to request for path in mount m: KV v2 reads go to
// MOUNT/data/REST; a path that already has data/ after the mount is kept.
func apiPath(m mountInfo, path string) (string, error) {
	if m.kv != 2 || m.prefix == "" {
		return path, nil
	}
	rest := ""
	if path+"/" != m.prefix {
		rest = strings.TrimPrefix(path, m.prefix)
	}
	switch {
	case strings.HasPrefix(rest, "data/"):
		return path, nil
	case rest == "" || rest == "data":
		return "", fmt.Errorf("%q is the KV mount itself; name a secret in it, e.g. %sapp/db", path, m.prefix)
	}
	return m.prefix + "data/" + rest, nil
}
