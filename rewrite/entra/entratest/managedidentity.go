package entratest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// msiPath is the path App Service gives its identity endpoint; any path works
// for the SDK, which takes IDENTITY_ENDPOINT as it is.
const msiPath = "/msi/token"

// appServiceAPIVersion is the api-version MSAL sends to an App Service identity
// endpoint (MSAL apps/managedidentity/managedidentity.go, appServiceAPIVersion).
const appServiceAPIVersion = "2019-08-01"

// ManagedIdentity is an App Service style managed identity endpoint on
// loopback plain http: the source azidentity picks when IDENTITY_ENDPOINT and
// IDENTITY_HEADER are both set and IDENTITY_SERVER_THUMBPRINT is not (MSAL
// apps/managedidentity/managedidentity.go, GetSource; azidentity
// managed_identity_client.go calls it).
//
// It knows a system-assigned identity and user-assigned ones by client or
// object id, and issues their tokens with its Issuer.
type ManagedIdentity struct {
	srv    *httptest.Server
	issuer *Issuer
	header string

	mu       sync.Mutex
	system   Identity
	users    []Identity
	lifetime time.Duration
	down     bool

	requests atomic.Int64
}

// DefaultManagedIdentityLifetime is the lifetime of the tokens a
// ManagedIdentity issues unless SetTokenLifetime says otherwise. It is below
// five minutes on purpose: MSAL keeps managed identity tokens in one cache for
// the whole process, keyed by the identity's client id (or
// "system_assigned_managed_identity") and not by endpoint (MSAL
// apps/managedidentity/managedidentity.go, cacheManager), and hands out a cached
// token only while it has more than five minutes left (MSAL
// apps/internal/base/storage/items.go, AccessToken.Validate). Shorter tokens
// keep one test's token, signed by one test's Issuer, from reaching the next
// test's credential, and make every GetToken reach the endpoint.
const DefaultManagedIdentityLifetime = 4 * time.Minute

// NewManagedIdentity starts an identity endpoint whose system-assigned identity
// is system (none when it is the zero Identity) and which also knows the
// userAssigned identities. Close it when done.
func NewManagedIdentity(issuer *Issuer, system Identity, userAssigned ...Identity) *ManagedIdentity {
	m := &ManagedIdentity{
		issuer:   issuer,
		header:   newGUID(),
		system:   system,
		users:    append([]Identity(nil), userAssigned...),
		lifetime: DefaultManagedIdentityLifetime,
	}
	m.srv = httptest.NewServer(http.HandlerFunc(m.serve))
	return m
}

// Env returns the environment variables that make azidentity's
// ManagedIdentityCredential (and DefaultAzureCredential) use this endpoint.
// IDENTITY_SERVER_THUMBPRINT is set empty because, when set, it turns the same
// pair into Service Fabric (MSAL apps/managedidentity/managedidentity.go,
// GetSource); an empty value counts as unset there.
func (m *ManagedIdentity) Env() map[string]string {
	return map[string]string{
		"IDENTITY_ENDPOINT":          m.srv.URL + msiPath,
		"IDENTITY_HEADER":            m.header,
		"IDENTITY_SERVER_THUMBPRINT": "",
	}
}

// URL returns the endpoint's IDENTITY_ENDPOINT value.
func (m *ManagedIdentity) URL() string { return m.srv.URL + msiPath }

// SetTokenLifetime sets the lifetime of tokens issued from now on. See
// DefaultManagedIdentityLifetime before making it longer than five minutes.
func (m *ManagedIdentity) SetTokenLifetime(d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lifetime = d
}

// SetDown makes the endpoint answer every request with 500 while down is true.
// For an App Service source azidentity reports this, like any answer other
// than 200, as an AuthenticationFailedError carrying the response, never as
// "credential unavailable", so DefaultAzureCredential stops there rather than
// trying the next credential (azidentity managed_identity_client.go, GetToken:
// only the IMDS source maps answers to credentialUnavailableError). azcore's
// retry policy retries 500, three times by default with exponential delays from
// 800ms (azcore runtime/policy_retry.go, setDefaults); MSAL's own retry is
// turned off by azidentity (WithRetryPolicyDisabled). To refuse connections
// instead, Close the endpoint: azidentity reports that as an
// AuthenticationFailedError without a response, after the same retries.
func (m *ManagedIdentity) SetDown(down bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.down = down
}

// Requests returns how many requests reached the endpoint, failed ones
// included.
func (m *ManagedIdentity) Requests() int { return int(m.requests.Load()) }

// Close shuts the endpoint down; later connections are refused.
func (m *ManagedIdentity) Close() { m.srv.Close() }

// msiError is the error body; the service's exact body is undocumented and no
// SDK parses it: MSAL only quotes it in the error message (MSAL
// apps/managedidentity/managedidentity.go, getTokenForRequest).
func msiError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]any{"statusCode": code, "message": msg})
}

func (m *ManagedIdentity) serve(w http.ResponseWriter, r *http.Request) {
	m.requests.Add(1)
	m.mu.Lock()
	down, lifetime := m.down, m.lifetime
	m.mu.Unlock()
	if down {
		msiError(w, http.StatusInternalServerError, "the identity endpoint is down")
		return
	}
	if r.URL.Path != msiPath {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet {
		msiError(w, http.StatusMethodNotAllowed, "only GET is allowed")
		return
	}
	// MSAL sends the IDENTITY_HEADER value as X-IDENTITY-HEADER (MSAL
	// apps/managedidentity/managedidentity.go, createAppServiceAuthRequest).
	// The real endpoint's status for a missing or wrong header is not
	// documented; these are our choice, and azidentity treats every non-200
	// answer from this source alike.
	switch h := r.Header.Get("X-IDENTITY-HEADER"); {
	case h == "":
		msiError(w, http.StatusBadRequest, "the X-IDENTITY-HEADER header is missing")
		return
	case h != m.header:
		msiError(w, http.StatusUnauthorized, "the X-IDENTITY-HEADER header is not valid")
		return
	}
	q := r.URL.Query()
	if v := q.Get("api-version"); v != appServiceAPIVersion {
		msiError(w, http.StatusBadRequest, "unsupported api-version "+strconv.Quote(v))
		return
	}
	// azidentity trims "/.default" from the scope before MSAL sends it as the
	// v1 resource (azidentity managed_identity_credential.go, GetToken).
	resource := q.Get("resource")
	if resource == "" {
		msiError(w, http.StatusBadRequest, "the resource parameter is missing")
		return
	}
	id, ok := m.identity(q.Get("client_id"), q.Get("object_id")+q.Get("principal_id"), q.Get("mi_res_id"))
	if !ok {
		msiError(w, http.StatusBadRequest, "no such identity is assigned to this app")
		return
	}
	// The answer's shape: access_token, expires_on as a string of Unix
	// seconds, resource, token_type, client_id (azidentity
	// managed_identity_credential_test.go, App Service cases; MSAL
	// apps/internal/oauth/ops/accesstokens/tokens.go, TokenResponse.UnmarshalJSON
	// reads expires_on as a string or a number).
	writeJSON(w, http.StatusOK, map[string]string{
		"access_token": m.issuer.Issue(id, resource, lifetime),
		"expires_on":   strconv.FormatInt(time.Now().Add(lifetime).Unix(), 10),
		"resource":     resource,
		"token_type":   "Bearer",
		"client_id":    id.ClientID,
	})
}

// identity picks the identity a request names: by client_id, or by object_id
// (principal_id is its alias), or the system-assigned one when neither is
// given. MSAL sends at most one of client_id, object_id and mi_res_id (MSAL
// apps/managedidentity/managedidentity.go, createAppServiceAuthRequest).
// Identities here have no Azure resource id, so mi_res_id never matches.
func (m *ManagedIdentity) identity(clientID, objectID, resourceID string) (Identity, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case resourceID != "":
		return Identity{}, false
	case clientID != "" && objectID != "":
		return Identity{}, false
	case clientID == "" && objectID == "":
		return m.system, m.system != Identity{}
	}
	for _, u := range m.users {
		if (clientID != "" && u.ClientID == clientID) || (objectID != "" && u.ObjectID == objectID) {
			return u, true
		}
	}
	return Identity{}, false
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
