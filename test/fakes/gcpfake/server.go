package main

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"hash/crc32"
	"hash/fnv"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Grant types and roles the server knows.
const (
	grantJWTBearer     = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	grantTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	roleAccessor       = "roles/secretmanager.secretAccessor"
	roleAdmin          = "roles/secretmanager.admin"
	scopeCloudPlatform = "https://www.googleapis.com/auth/cloud-platform"
	// metadataPrincipal is the instance's default service account.
	metadataPrincipal = "serviceAccount:default@compute.fake.iam.gserviceaccount.com"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type version struct {
	data      []byte
	crc       int64
	state     string // ENABLED, DISABLED, DESTROYED
	corrupted bool   // access flips a byte in transit, keeping crc
	// noCRC: the version was added before Secret Manager stored
	// checksums (mid 2021); access answers without dataCrc32c, which is
	// optional in SecretPayload.
	noCRC   bool
	created time.Time
}

type secret struct {
	versions []*version // versions[i] is number i+1
	aliases  map[string]int
	// readers are the members of the accessor role in the secret's IAM
	// policy; a secret without a policy grants no one, as in IAM.
	readers map[string]bool
}

type token struct {
	principal string
	expiry    time.Time
}

type server struct {
	url   string
	admin string
	ttl   time.Duration

	mu       sync.Mutex
	numbers  map[string]string // project ID -> number
	ids      map[string]string // number -> project ID
	secrets  map[string]*secret
	disabled map[string]bool // project numbers whose API is off
	// projectReaders are the members of the accessor role on a project
	// (by number): they read every secret of it, and are told 404 for
	// one that does not exist.
	projectReaders map[string]map[string]bool
	keys           map[string]*rsa.PublicKey // key ID -> public key
	keyOwner       map[string]string         // key ID -> service account email
	subjects       map[string]string         // federation subject token -> principal
	tokens         map[string]token          // access token -> principal
	failNext       []int                     // statuses of the next accesses
	counts         map[string]int            // requests by kind
}

func newServer(url, admin string, ttl time.Duration) *server {
	return &server{
		url: url, admin: admin, ttl: ttl,
		numbers: map[string]string{}, ids: map[string]string{}, secrets: map[string]*secret{},
		disabled: map[string]bool{}, projectReaders: map[string]map[string]bool{}, keys: map[string]*rsa.PublicKey{}, keyOwner: map[string]string{},
		subjects: map[string]string{}, tokens: map[string]token{}, counts: map[string]int{},
	}
}

// rpcError writes a google.rpc.Status error as Google's REST APIs do.
func rpcError(w http.ResponseWriter, code int, status, msg string, reason string) {
	e := map[string]any{"code": code, "message": msg, "status": status}
	if reason != "" {
		e["details"] = []map[string]any{{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": "googleapis.com"}}
	}
	writeJSON(w, code, map[string]any{"error": e})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case p == "/token" && r.Method == http.MethodPost:
		s.count("oauth")
		s.oauthToken(w, r)
	case p == "/v1/token" && r.Method == http.MethodPost:
		s.count("sts")
		s.stsToken(w, r)
	case strings.HasPrefix(p, "/computeMetadata/v1/"):
		s.count("metadata")
		s.metadata(w, r)
	case strings.HasPrefix(p, "/v1/projects/-/serviceAccounts/"):
		s.iam(w, r, strings.TrimPrefix(p, "/v1/projects/-/serviceAccounts/"))
	case strings.HasPrefix(p, "/v1/projects/"):
		s.secretManager(w, r, strings.TrimPrefix(p, "/v1/"))
	case strings.HasPrefix(p, "/fake/"):
		s.fake(w, r, strings.TrimPrefix(p, "/fake/"))
	default:
		rpcError(w, http.StatusNotFound, "NOT_FOUND", "no such method: "+r.Method+" "+p, "")
	}
}

func (s *server) count(kind string) {
	s.mu.Lock()
	s.counts[kind]++
	s.mu.Unlock()
}

// newToken issues an access token for a principal.
func (s *server) newToken(principal string) (string, int64) {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	t := "ya29.fake-" + hex.EncodeToString(b)
	s.mu.Lock()
	s.tokens[t] = token{principal: principal, expiry: time.Now().Add(s.ttl)}
	s.mu.Unlock()
	return t, int64(s.ttl / time.Second)
}

// principal authenticates a request: its bearer token's principal, or ""
// after writing a 401.
func (s *server) principal(w http.ResponseWriter, r *http.Request) string {
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		rpcError(w, http.StatusUnauthorized, "UNAUTHENTICATED", "Request is missing required authentication credential. Expected OAuth 2 access token.", "CREDENTIALS_MISSING")
		return ""
	}
	if tok == s.admin {
		return "admin"
	}
	s.mu.Lock()
	t, ok := s.tokens[tok]
	s.mu.Unlock()
	if !ok || time.Now().After(t.expiry) {
		rpcError(w, http.StatusUnauthorized, "UNAUTHENTICATED", "Request had invalid authentication credentials. Expected OAuth 2 access token.", "ACCESS_TOKEN_TYPE_UNSUPPORTED")
		return ""
	}
	return t.principal
}

// isAdmin reports whether the request is the admin's, or answers 401 or 403.
func (s *server) isAdmin(w http.ResponseWriter, r *http.Request) bool {
	switch s.principal(w, r) {
	case "":
		return false
	case "admin":
		return true
	}
	rpcError(w, http.StatusForbidden, "PERMISSION_DENIED", "Permission denied on "+r.URL.Path, "IAM_PERMISSION_DENIED")
	return false
}

// oauthToken is Google's token endpoint for the JWT bearer grant.
func (s *server) oauthToken(w http.ResponseWriter, r *http.Request) {
	fail := func(code, desc string) {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": code, "error_description": desc})
	}
	if err := r.ParseForm(); err != nil {
		fail("invalid_request", "bad form")
		return
	}
	if r.PostForm.Get("grant_type") != grantJWTBearer {
		fail("unsupported_grant_type", "Invalid grant_type: "+r.PostForm.Get("grant_type"))
		return
	}
	parts := strings.Split(r.PostForm.Get("assertion"), ".")
	if len(parts) != 3 {
		fail("invalid_grant", "Invalid JWT: Token must be a short-lived token and in a reasonable timeframe")
		return
	}
	var hdr struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}
	var claims struct {
		Iss   string `json:"iss"`
		Scope string `json:"scope"`
		Aud   string `json:"aud"`
		Exp   int64  `json:"exp"`
		Iat   int64  `json:"iat"`
	}
	if decodeSegment(parts[0], &hdr) != nil || decodeSegment(parts[1], &claims) != nil || hdr.Alg != "RS256" {
		fail("invalid_grant", "Invalid JWT: malformed")
		return
	}
	s.mu.Lock()
	key, owner := s.keys[hdr.Kid], s.keyOwner[hdr.Kid]
	s.mu.Unlock()
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if key == nil || owner != claims.Iss || err != nil {
		fail("invalid_grant", "Invalid JWT Signature.")
		return
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if rsa.VerifyPKCS1v15(key, crypto.SHA256, sum[:], sig) != nil {
		fail("invalid_grant", "Invalid JWT Signature.")
		return
	}
	now := time.Now().Unix()
	switch {
	case claims.Aud != s.url+"/token":
		fail("invalid_grant", "Invalid JWT: audience "+claims.Aud)
		return
	case claims.Exp < now || claims.Iat > now+60 || claims.Exp-claims.Iat > 3600:
		fail("invalid_grant", "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.")
		return
	case !strings.Contains(" "+claims.Scope+" ", " "+scopeCloudPlatform+" "):
		fail("invalid_scope", "Invalid OAuth scope or ID token audience provided.")
		return
	}
	t, ttl := s.newToken("serviceAccount:" + claims.Iss)
	writeJSON(w, http.StatusOK, map[string]any{"access_token": t, "expires_in": ttl, "token_type": "Bearer"})
}

func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// stsToken is the Security Token Service's token exchange.
func (s *server) stsToken(w http.ResponseWriter, r *http.Request) {
	fail := func(code, desc string) {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": code, "error_description": desc})
	}
	if err := r.ParseForm(); err != nil {
		fail("invalid_request", "bad form")
		return
	}
	f := r.PostForm
	if f.Get("grant_type") != grantTokenExchange {
		fail("invalid_request", "Invalid value for \"grant_type\"")
		return
	}
	s.mu.Lock()
	principal, ok := s.subjects[f.Get("audience")+"\x00"+f.Get("subject_token")]
	s.mu.Unlock()
	if !ok {
		fail("invalid_grant", "The subject token is invalid for audience "+f.Get("audience"))
		return
	}
	if !strings.Contains(" "+f.Get("scope")+" ", " "+scopeCloudPlatform+" ") {
		fail("invalid_scope", "Invalid scope")
		return
	}
	t, ttl := s.newToken(principal)
	writeJSON(w, http.StatusOK, map[string]any{"access_token": t, "expires_in": ttl, "token_type": "Bearer",
		"issued_token_type": "urn:ietf:params:oauth:token-type:access_token"})
}

// metadata serves the instance's default service account token.
func (s *server) metadata(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Metadata-Flavor", "Google")
	if r.Header.Get("Metadata-Flavor") != "Google" {
		http.Error(w, "Missing required header \"Metadata-Flavor\": \"Google\"", http.StatusForbidden)
		return
	}
	if r.URL.Path != "/computeMetadata/v1/instance/service-accounts/default/token" {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	t, ttl := s.newToken(metadataPrincipal)
	writeJSON(w, http.StatusOK, map[string]any{"access_token": t, "expires_in": ttl, "token_type": "Bearer"})
}

// iam serves serviceAccounts.keys.create and keys.delete: rest is
// EMAIL/keys or EMAIL/keys/KEYID.
func (s *server) iam(w http.ResponseWriter, r *http.Request, rest string) {
	if !s.isAdmin(w, r) {
		return
	}
	email, keyPath, _ := strings.Cut(rest, "/keys")
	switch {
	case r.Method == http.MethodPost && keyPath == "":
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			rpcError(w, http.StatusInternalServerError, "INTERNAL", err.Error(), "")
			return
		}
		b := make([]byte, 20)
		_, _ = rand.Read(b)
		kid := hex.EncodeToString(b)
		der, _ := x509.MarshalPKCS8PrivateKey(key)
		sa := map[string]string{
			"type": "service_account", "project_id": strings.SplitN(strings.SplitN(email, "@", 2)[1], ".", 2)[0],
			"private_key_id": kid, "private_key": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
			"client_email": email, "client_id": "1" + strconv.Itoa(len(email)) + kid[:8],
			"auth_uri": s.url + "/o/oauth2/auth", "token_uri": s.url + "/token",
			"universe_domain": "googleapis.com",
		}
		js, _ := json.MarshalIndent(sa, "", "  ")
		s.mu.Lock()
		s.keys[kid] = &key.PublicKey
		s.keyOwner[kid] = email
		s.mu.Unlock()
		writeJSON(w, http.StatusOK, map[string]any{
			"name":           "projects/-/serviceAccounts/" + email + "/keys/" + kid,
			"privateKeyType": "TYPE_GOOGLE_CREDENTIALS_FILE", "keyAlgorithm": "KEY_ALG_RSA_2048",
			"privateKeyData": base64.StdEncoding.EncodeToString(js),
		})
	case r.Method == http.MethodDelete && strings.HasPrefix(keyPath, "/"):
		kid := keyPath[1:]
		s.mu.Lock()
		_, ok := s.keys[kid]
		delete(s.keys, kid)
		delete(s.keyOwner, kid)
		s.mu.Unlock()
		if !ok {
			rpcError(w, http.StatusNotFound, "NOT_FOUND", "Unknown key "+kid, "")
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{})
	default:
		rpcError(w, http.StatusNotFound, "NOT_FOUND", "no such method", "")
	}
}

// projectNumber returns a project's number, given its ID or number,
// registering an ID on first sight.
func (s *server) projectNumber(p string) string {
	if _, ok := s.ids[p]; ok {
		return p
	}
	if n, ok := s.numbers[p]; ok {
		return n
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(p))
	n := strconv.FormatUint(100000000000+h.Sum64()%900000000000, 10)
	s.numbers[p], s.ids[n] = n, p
	return n
}

// secretManager serves Secret Manager methods; name is the resource path
// after /v1/, with a :method suffix for custom methods.
func (s *server) secretManager(w http.ResponseWriter, r *http.Request, name string) {
	principal := s.principal(w, r)
	if principal == "" {
		return
	}
	name, method, _ := strings.Cut(name, ":")
	seg := strings.Split(name, "/")
	// projects/P[/locations/L]/secrets[/S[/versions/V]]
	if len(seg) < 3 || seg[0] != "projects" {
		rpcError(w, http.StatusNotFound, "NOT_FOUND", "no such resource: "+name, "")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	num := s.projectNumber(seg[1])
	if s.disabled[num] {
		rpcError(w, http.StatusForbidden, "PERMISSION_DENIED", "Secret Manager API has not been used in project "+num+" before or it is disabled.", "SERVICE_DISABLED")
		return
	}
	prefix := "projects/" + num
	rest := seg[2:]
	if rest[0] == "locations" && len(rest) >= 3 {
		prefix += "/locations/" + rest[1]
		rest = rest[2:]
	}
	if rest[0] != "secrets" {
		rpcError(w, http.StatusNotFound, "NOT_FOUND", "no such resource: "+name, "")
		return
	}
	switch {
	case len(rest) == 1 && r.Method == http.MethodPost && method == "":
		s.createSecret(w, r, principal, prefix)
		return
	case len(rest) < 2:
		rpcError(w, http.StatusNotFound, "NOT_FOUND", "no such method", "")
		return
	}
	secretName := prefix + "/secrets/" + rest[1]
	sec, ok := s.secrets[secretName]
	if !ok {
		// IAM is checked before existence: a caller who may not read the
		// project's secrets learns nothing of which exist, and gets
		// Google's 403 "(or it may not exist)"; one who may gets 404.
		if principal != "admin" && !s.projectReaders[num][principal] {
			rpcError(w, http.StatusForbidden, "PERMISSION_DENIED", "Permission 'secretmanager.versions.access' denied for resource '"+name+"' (or it may not exist).", "IAM_PERMISSION_DENIED")
			return
		}
		rpcError(w, http.StatusNotFound, "NOT_FOUND", "Secret ["+secretName+"] not found or has no versions.", "")
		return
	}
	if len(rest) == 2 {
		if principal != "admin" {
			rpcError(w, http.StatusForbidden, "PERMISSION_DENIED", "Permission denied on resource "+secretName, "IAM_PERMISSION_DENIED")
			return
		}
		switch {
		case method == "addVersion" && r.Method == http.MethodPost:
			s.addVersion(w, r, secretName, sec)
		case method == "setIamPolicy" && r.Method == http.MethodPost:
			s.setIamPolicy(w, r, sec)
		case method == "" && r.Method == http.MethodPatch:
			s.patchSecret(w, r, secretName, sec)
		default:
			rpcError(w, http.StatusNotFound, "NOT_FOUND", "no such method", "")
		}
		return
	}
	if len(rest) != 4 || rest[2] != "versions" {
		rpcError(w, http.StatusNotFound, "NOT_FOUND", "no such resource: "+name, "")
		return
	}
	n := s.lookupVersion(sec, rest[3])
	vname := secretName + "/versions/" + rest[3]
	if method == "access" && r.Method == http.MethodGet {
		s.counts["access"]++
		if len(s.failNext) > 0 {
			code := s.failNext[0]
			s.failNext = s.failNext[1:]
			rpcError(w, code, statusName(code), "injected failure", "")
			return
		}
		if principal != "admin" && !sec.readers[principal] && !s.projectReaders[num][principal] {
			rpcError(w, http.StatusForbidden, "PERMISSION_DENIED", "Permission 'secretmanager.versions.access' denied for resource '"+vname+"' (or it may not exist).", "IAM_PERMISSION_DENIED")
			return
		}
	} else if principal != "admin" {
		rpcError(w, http.StatusForbidden, "PERMISSION_DENIED", "Permission denied on resource "+vname, "IAM_PERMISSION_DENIED")
		return
	}
	if n == 0 {
		rpcError(w, http.StatusNotFound, "NOT_FOUND", "Secret Version ["+vname+"] not found.", "")
		return
	}
	v := sec.versions[n-1]
	vname = secretName + "/versions/" + strconv.Itoa(n)
	switch {
	case method == "access" && r.Method == http.MethodGet:
		if v.state != "ENABLED" {
			rpcError(w, http.StatusBadRequest, "FAILED_PRECONDITION", "Secret Version ["+vname+"] is in "+v.state+" state.", "")
			return
		}
		data := append([]byte(nil), v.data...)
		if v.corrupted {
			if len(data) == 0 {
				data = []byte{0}
			} else {
				data[len(data)/2] ^= 0x20
			}
		}
		payload := map[string]any{"data": base64.StdEncoding.EncodeToString(data)}
		if !v.noCRC {
			payload["dataCrc32c"] = strconv.FormatInt(v.crc, 10)
		}
		writeJSON(w, http.StatusOK, map[string]any{"name": vname, "payload": payload})
	case r.Method == http.MethodPost && (method == "disable" || method == "enable" || method == "destroy"):
		switch method {
		case "disable":
			v.state = "DISABLED"
		case "enable":
			if v.state == "DESTROYED" {
				rpcError(w, http.StatusBadRequest, "FAILED_PRECONDITION", "Secret Version ["+vname+"] is DESTROYED.", "")
				return
			}
			v.state = "ENABLED"
		default:
			v.state, v.data = "DESTROYED", nil
		}
		writeJSON(w, http.StatusOK, versionJSON(vname, v))
	default:
		rpcError(w, http.StatusNotFound, "NOT_FOUND", "no such method", "")
	}
}

// lookupVersion resolves latest, a number or an alias; 0 when none. latest
// is "an alias to the most recently created SecretVersion"
// (projects.secrets.versions.access): the newest, whatever its state, so
// that a disabled newest version answers FAILED_PRECONDITION.
func (s *server) lookupVersion(sec *secret, v string) int {
	if v == "latest" {
		return len(sec.versions)
	}
	if n, err := strconv.Atoi(v); err == nil {
		if n >= 1 && n <= len(sec.versions) {
			return n
		}
		return 0
	}
	return sec.aliases[v]
}

func versionJSON(name string, v *version) map[string]any {
	return map[string]any{"name": name, "state": v.state, "createTime": v.created.UTC().Format(time.RFC3339Nano)}
}

func (s *server) createSecret(w http.ResponseWriter, r *http.Request, principal, prefix string) {
	if principal != "admin" {
		rpcError(w, http.StatusForbidden, "PERMISSION_DENIED", "Permission 'secretmanager.secrets.create' denied", "IAM_PERMISSION_DENIED")
		return
	}
	id := r.URL.Query().Get("secretId")
	if id == "" {
		rpcError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "secretId is required", "")
		return
	}
	name := prefix + "/secrets/" + id
	if _, ok := s.secrets[name]; ok {
		rpcError(w, http.StatusConflict, "ALREADY_EXISTS", "Secret ["+name+"] already exists.", "")
		return
	}
	s.secrets[name] = &secret{aliases: map[string]int{}}
	writeJSON(w, http.StatusOK, map[string]any{"name": name, "replication": map[string]any{"automatic": map[string]any{}}})
}

func (s *server) addVersion(w http.ResponseWriter, r *http.Request, name string, sec *secret) {
	var body struct {
		Payload struct {
			Data       []byte `json:"data"`
			DataCrc32c string `json:"dataCrc32c"`
		} `json:"payload"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&body); err != nil {
		rpcError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "bad body", "")
		return
	}
	crc := int64(crc32.Checksum(body.Payload.Data, castagnoli))
	if body.Payload.DataCrc32c != "" && body.Payload.DataCrc32c != strconv.FormatInt(crc, 10) {
		rpcError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "Checksum mismatch", "")
		return
	}
	if len(body.Payload.Data) > 64<<10 {
		rpcError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "Secret Payload cannot exceed 65536 bytes.", "")
		return
	}
	v := &version{data: body.Payload.Data, crc: crc, state: "ENABLED", created: time.Now()}
	sec.versions = append(sec.versions, v)
	writeJSON(w, http.StatusOK, versionJSON(name+"/versions/"+strconv.Itoa(len(sec.versions)), v))
}

func (s *server) setIamPolicy(w http.ResponseWriter, r *http.Request, sec *secret) {
	var body struct {
		Policy struct {
			Bindings []struct {
				Role    string   `json:"role"`
				Members []string `json:"members"`
			} `json:"bindings"`
		} `json:"policy"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&body); err != nil {
		rpcError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "bad body", "")
		return
	}
	sec.readers = map[string]bool{}
	for _, b := range body.Policy.Bindings {
		if b.Role == roleAccessor || b.Role == roleAdmin {
			for _, m := range b.Members {
				sec.readers[m] = true
			}
		}
	}
	writeJSON(w, http.StatusOK, body.Policy)
}

func (s *server) patchSecret(w http.ResponseWriter, r *http.Request, name string, sec *secret) {
	if r.URL.Query().Get("updateMask") != "versionAliases" {
		rpcError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "only updateMask=versionAliases is served", "")
		return
	}
	var body struct {
		VersionAliases map[string]string `json:"versionAliases"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&body); err != nil {
		rpcError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "bad body", "")
		return
	}
	aliases := map[string]int{}
	for a, v := range body.VersionAliases {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > len(sec.versions) {
			rpcError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "alias "+a+" names no version", "")
			return
		}
		aliases[a] = n
	}
	sec.aliases = aliases
	writeJSON(w, http.StatusOK, map[string]any{"name": name, "versionAliases": body.VersionAliases})
}

// fake serves the test-only controls. They take the admin token.
func (s *server) fake(w http.ResponseWriter, r *http.Request, what string) {
	if !s.isAdmin(w, r) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var body struct {
		Name      string `json:"name"`      // corrupt: a version's resource name; disable-api, grant-project: a project
		Statuses  []int  `json:"statuses"`  // fail
		Audience  string `json:"audience"`  // subjects
		Token     string `json:"token"`     // subjects
		Principal string `json:"principal"` // subjects, grant-project
	}
	if r.Method == http.MethodPost {
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&body); err != nil {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
	}
	switch what {
	case "corrupt", "no-checksum":
		seg := strings.Split(body.Name, "/")
		if len(seg) < 6 {
			http.Error(w, "name a version", http.StatusBadRequest)
			return
		}
		seg[1] = s.projectNumber(seg[1])
		sec, ok := s.secrets[strings.Join(seg[:len(seg)-2], "/")]
		if !ok {
			http.Error(w, "no such secret", http.StatusNotFound)
			return
		}
		n := s.lookupVersion(sec, seg[len(seg)-1])
		if n == 0 {
			http.Error(w, "no such version", http.StatusNotFound)
			return
		}
		if what == "corrupt" {
			sec.versions[n-1].corrupted = true
		} else {
			sec.versions[n-1].noCRC = true
		}
	case "fail":
		s.failNext = append(s.failNext, body.Statuses...)
	case "disable-api":
		s.disabled[s.projectNumber(body.Name)] = true
	case "grant-project":
		// The accessor role on a project, as Resource Manager's
		// projects.setIamPolicy would add it.
		num := s.projectNumber(body.Name)
		if s.projectReaders[num] == nil {
			s.projectReaders[num] = map[string]bool{}
		}
		s.projectReaders[num][body.Principal] = true
	case "subjects":
		s.subjects[body.Audience+"\x00"+body.Token] = body.Principal
	case "counts":
		counts := map[string]int{}
		for k, v := range s.counts {
			counts[k] = v
		}
		writeJSON(w, http.StatusOK, counts)
		return
	default:
		http.Error(w, "unknown control", http.StatusNotFound)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{})
}

// statusName is the google.rpc.Code name of an HTTP status.
func statusName(code int) string {
	names := map[int]string{400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
		409: "ALREADY_EXISTS", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 501: "NOT_IMPLEMENTED", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
	if n, ok := names[code]; ok {
		return n
	}
	return "UNKNOWN"
}
