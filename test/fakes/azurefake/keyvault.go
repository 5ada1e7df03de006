package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
)

// vault is a Key Vault holding secrets in memory.
type vault struct {
	tenant, resource string
	signer           tokenSigner
	deny             []string
	faults           *faults

	mu      sync.Mutex
	secrets map[string][]*version // by lower-case name, oldest first
}

type version struct {
	id          string
	name        string // as first set
	value       string
	contentType string
	enabled     bool
	exp, nbf    *int64
	created     int64
	updated     int64
}

// attributes is the JSON of a version's attributes (Unix seconds).
type attributes struct {
	Enabled         *bool  `json:"enabled,omitempty"`
	Expires         *int64 `json:"exp,omitempty"`
	NotBefore       *int64 `json:"nbf,omitempty"`
	Created         int64  `json:"created,omitempty"`
	Updated         int64  `json:"updated,omitempty"`
	RecoveryLevel   string `json:"recoveryLevel,omitempty"`
	RecoverableDays int    `json:"recoverableDays,omitempty"`
}

func newVault(_, tenant, resource string, signer tokenSigner, deny []string) *vault {
	return &vault{tenant: tenant, resource: resource, signer: signer, deny: deny, faults: newFaults(), secrets: map[string][]*version{}}
}

var nameRE = regexp.MustCompile(`^[0-9a-zA-Z-]{1,127}$`)

func (v *vault) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if v.faults.control(w, r) {
		return
	}
	path := strings.TrimSuffix(r.URL.Path, "/")
	parts := strings.Split(strings.TrimPrefix(path, "/"), "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] != "secrets" {
		kvFail(w, http.StatusNotFound, "NotFound", "", "The requested path is not served by this fake.")
		return
	}
	// Key Vault answers an unauthenticated request with the challenge
	// that tells the client which tenant and resource to get a token for.
	c, ok := v.authenticate(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer authorization="https://login.microsoftonline.com/%s", resource="%s"`, v.tenant, v.resource))
		kvFail(w, http.StatusUnauthorized, "Unauthorized", "", "AKV10000: Request is missing a Bearer or PoP token.")
		return
	}
	if r.URL.Query().Get("api-version") == "" {
		kvFail(w, http.StatusBadRequest, "BadParameter", "", "The api-version parameter is missing.")
		return
	}
	name, ver := parts[1], ""
	if len(parts) == 3 {
		ver = parts[2]
	}
	if !nameRE.MatchString(name) {
		kvFail(w, http.StatusBadRequest, "BadParameter", "", "The request URI contains an invalid name: "+name)
		return
	}
	base := "https://" + r.Host
	switch {
	case r.Method == http.MethodGet:
		if f, ok := v.faults.take(w, "get"); ok {
			if f.Status == http.StatusTooManyRequests {
				kvFail(w, f.Status, "Throttled", "", "Request was not processed because too many requests were received. Reason: VaultRequestTypeLimitReached")
			} else {
				kvFail(w, f.Status, "InternalServerError", "", "The service failed (injected).")
			}
			return
		}
		if slices.Contains(v.deny, c.AppID) {
			kvFail(w, http.StatusForbidden, "Forbidden", "AccessDenied", fmt.Sprintf(
				"The user, group or application 'appid=%s;iss=https://sts.windows.net/%s/' does not have secrets get permission on key vault 'fake;location=local'.", c.AppID, v.tenant))
			return
		}
		v.get(w, base, name, ver)
	case r.Method == http.MethodPut && ver == "":
		v.set(w, r, base, name)
	case r.Method == http.MethodPatch && ver != "":
		v.update(w, r, base, name, ver)
	default:
		kvFail(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "", r.Method+" is not served by this fake.")
	}
}

func (v *vault) authenticate(r *http.Request) (claims, bool) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return claims{}, false
	}
	c, err := v.signer.verify(tok)
	if err != nil || strings.TrimSuffix(c.Audience, "/") != strings.TrimSuffix(v.resource, "/") || c.Tenant != v.tenant {
		return claims{}, false
	}
	return c, true
}

func (v *vault) get(w http.ResponseWriter, base, name, ver string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	versions := v.secrets[strings.ToLower(name)]
	var found *version
	switch {
	case ver == "" && len(versions) > 0:
		found = versions[len(versions)-1]
	case ver != "":
		for _, x := range versions {
			if strings.EqualFold(x.id, ver) {
				found = x
			}
		}
	}
	if found == nil {
		id := name
		if ver != "" {
			id += "/" + ver
		}
		kvFail(w, http.StatusNotFound, "SecretNotFound", "", fmt.Sprintf("A secret with (name/id) %s was not found in this key vault. If you recently deleted this secret you may be able to recover it using the correct recovery command.", id))
		return
	}
	if !found.enabled {
		kvFail(w, http.StatusForbidden, "Forbidden", "SecretDisabled", "Operation get is not allowed on a disabled secret.")
		return
	}
	writeJSON(w, http.StatusOK, found.bundle(base, true))
}

// setBody is the body of SetSecret and UpdateSecretProperties.
type setBody struct {
	Value       *string           `json:"value"`
	ContentType *string           `json:"contentType"`
	Attributes  *attributes       `json:"attributes"`
	Tags        map[string]string `json:"tags"`
}

func (v *vault) set(w http.ResponseWriter, r *http.Request, base, name string) {
	var b setBody
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&b); err != nil || b.Value == nil {
		kvFail(w, http.StatusBadRequest, "BadParameter", "", "The request body must hold a value.")
		return
	}
	now := time.Now().Unix()
	x := &version{id: newVersionID(), name: name, value: *b.Value, enabled: true, created: now, updated: now}
	if b.ContentType != nil {
		x.contentType = *b.ContentType
	}
	x.apply(b.Attributes)
	v.mu.Lock()
	k := strings.ToLower(name)
	if old := v.secrets[k]; len(old) > 0 {
		x.name = old[0].name
	}
	v.secrets[k] = append(v.secrets[k], x)
	v.mu.Unlock()
	writeJSON(w, http.StatusOK, x.bundle(base, true))
}

func (v *vault) update(w http.ResponseWriter, r *http.Request, base, name, ver string) {
	var b setBody
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&b); err != nil {
		kvFail(w, http.StatusBadRequest, "BadParameter", "", "The request body is not JSON.")
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, x := range v.secrets[strings.ToLower(name)] {
		if strings.EqualFold(x.id, ver) {
			x.apply(b.Attributes)
			if b.ContentType != nil {
				x.contentType = *b.ContentType
			}
			x.updated = time.Now().Unix()
			writeJSON(w, http.StatusOK, x.bundle(base, false))
			return
		}
	}
	kvFail(w, http.StatusNotFound, "SecretNotFound", "", fmt.Sprintf("A secret with (name/id) %s/%s was not found in this key vault.", name, ver))
}

func (x *version) apply(a *attributes) {
	if a == nil {
		return
	}
	if a.Enabled != nil {
		x.enabled = *a.Enabled
	}
	if a.Expires != nil {
		x.exp = a.Expires
	}
	if a.NotBefore != nil {
		x.nbf = a.NotBefore
	}
}

func (x *version) bundle(base string, withValue bool) map[string]any {
	enabled := x.enabled
	b := map[string]any{
		"id": base + "/secrets/" + x.name + "/" + x.id,
		"attributes": attributes{Enabled: &enabled, Expires: x.exp, NotBefore: x.nbf, Created: x.created, Updated: x.updated,
			RecoveryLevel: "Recoverable+Purgeable", RecoverableDays: 90},
		"tags": map[string]string{},
	}
	if withValue {
		b["value"] = x.value
	}
	if x.contentType != "" {
		b["contentType"] = x.contentType
	}
	return b
}

func newVersionID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// kvFail writes Key Vault's error body.
func kvFail(w http.ResponseWriter, status int, code, inner, msg string) {
	e := map[string]any{"code": code, "message": msg}
	if inner != "" {
		e["innererror"] = map[string]string{"code": inner}
	}
	writeJSON(w, status, map[string]any{"error": e})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
