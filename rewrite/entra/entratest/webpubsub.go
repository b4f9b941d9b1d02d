package entratest

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// WebPubSubResource is the resource (token audience) of Azure Web PubSub's
// data plane; the SDK asks for the scope WebPubSubResource + "/.default"
// (Azure/azure-sdk-for-net,
// sdk/webpubsub/Azure.Messaging.WebPubSub/src/WebPubSubServiceClientOptions.ServiceVersion.cs,
// CredentialScopeName).
const WebPubSubResource = "https://webpubsub.azure.com"

// WebPubSubOwnerRole is the built-in role that lets an identity call the
// service's data-plane API, generateToken included.
const WebPubSubOwnerRole = "Web PubSub Service Owner"

// WebPubSub stands in for Azure Web PubSub's token API on loopback plain
// http: POST /api/hubs/{hub}/:generateToken with an Entra bearer token for
// WebPubSubResource, from an identity holding WebPubSubOwnerRole (see
// Grant), issues a client token signed with a key only the stand-in knows,
// as the service does for apps that connect with Microsoft Entra ID.
// VerifyClientToken checks such tokens as the service does when a client
// connects.
type WebPubSub struct {
	srv    *httptest.Server
	issuer *Issuer
	key    []byte

	mu     sync.Mutex
	roles  map[string]bool // object ids holding WebPubSubOwnerRole
	status int
	last   GenerateTokenCall

	requests atomic.Int64
}

// GenerateTokenCall is what one successful generateToken request asked for.
type GenerateTokenCall struct {
	Caller          Identity // whose Entra token it carried
	Hub             string
	APIVersion      string
	UserID          string
	Roles, Groups   []string
	MinutesToExpire int
	ClientType      string
}

// NewWebPubSub starts a token API that accepts tokens from issuer. Close it
// when done.
func NewWebPubSub(issuer *Issuer) *WebPubSub {
	s := &WebPubSub{issuer: issuer, key: randomBytes(32), roles: map[string]bool{}}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// URL returns the service endpoint, http://127.0.0.1:port, as serviceUri
// gives it.
func (s *WebPubSub) URL() string { return s.srv.URL }

// Grant gives the identity with objectID WebPubSubOwnerRole.
func (s *WebPubSub) Grant(objectID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.roles[objectID] = true
}

// SetStatus makes the API answer every request with code, before looking at
// the token; 0 restores normal answers.
func (s *WebPubSub) SetStatus(code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status = code
}

// Requests returns how many requests reached the API, failed ones included.
func (s *WebPubSub) Requests() int { return int(s.requests.Load()) }

// LastCall returns what the last successful generateToken asked for.
func (s *WebPubSub) LastCall() GenerateTokenCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

// Close shuts the service down.
func (s *WebPubSub) Close() { s.srv.Close() }

// ClientAudience returns the aud of a client token for hub:
// {endpoint}/client/hubs/{hub}, port included (Azure/azure-sdk-for-net,
// sdk/webpubsub/Azure.Messaging.WebPubSub/src/WebPubSubServiceClient_helpers.cs,
// GenerateTokenFromAzureKeyCredential, where the audience is the same).
func (s *WebPubSub) ClientAudience(hub string) string { return s.srv.URL + "/client/hubs/" + hub }

// ClientURL returns where the SDK sends clients of hub: the endpoint with ws
// for http (WebPubSubServiceClient_helpers.cs, GetClientAccessUriInternal).
func (s *WebPubSub) ClientURL(hub string) string {
	return "ws" + strings.TrimPrefix(s.ClientAudience(hub), "http")
}

// VerifyClientToken checks a client token for hub as the service does when
// a client connects: HS256 with the service's own key, aud and exp. It
// returns the token's claims.
func (s *WebPubSub) VerifyClientToken(token, hub string) (map[string]any, error) {
	p := jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithAudience(s.ClientAudience(hub)),
		jwt.WithExpirationRequired(),
	)
	claims := jwt.MapClaims{}
	if _, err := p.ParseWithClaims(token, claims, func(*jwt.Token) (any, error) { return s.key, nil }); err != nil {
		return nil, fmt.Errorf("verifying client token: %w", err)
	}
	return claims, nil
}

const generateTokenSuffix = "/:generateToken"

func (s *WebPubSub) serve(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	s.mu.Lock()
	status := s.status
	s.mu.Unlock()
	if status != 0 {
		http.Error(w, http.StatusText(status), status)
		return
	}
	hub, prefixed := strings.CutPrefix(r.URL.Path, "/api/hubs/")
	hub, suffixed := strings.CutSuffix(hub, generateTokenSuffix)
	if !prefixed || !suffixed || hub == "" || strings.Contains(hub, "/") {
		http.NotFound(w, r)
		return
	}
	// The SDK posts without a body (Azure/azure-sdk-for-js,
	// sdk/web-pubsub/web-pubsub/src/generated/operations/webPubSub.ts,
	// generateClientTokenOperationSpec has no requestBody).
	if r.Method != http.MethodPost {
		http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
		return
	}
	id, err := s.caller(r)
	if err != nil {
		w.Header().Set("WWW-Authenticate", "Bearer")
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	q := r.URL.Query()
	call := GenerateTokenCall{Caller: id, Hub: hub, APIVersion: q.Get("api-version"), UserID: q.Get("userId"),
		Roles: q["role"], Groups: q["group"], MinutesToExpire: 60, ClientType: q.Get("clientType")}
	if v := q.Get("minutesToExpire"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			http.Error(w, "minutesToExpire must be a positive number", http.StatusBadRequest)
			return
		}
		call.MinutesToExpire = n
	}
	if call.APIVersion == "" || call.ClientType != "" && call.ClientType != "default" {
		http.Error(w, "api-version is required, and clientType must be default here", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	granted := s.roles[id.ObjectID]
	if granted {
		s.last = call
	}
	s.mu.Unlock()
	if !granted {
		http.Error(w, "the identity lacks the "+WebPubSubOwnerRole+" role", http.StatusForbidden)
		return
	}
	now := time.Now()
	claims := jwt.MapClaims{"nbf": now.Unix(), "exp": now.Add(time.Duration(call.MinutesToExpire) * time.Minute).Unix(), "iat": now.Unix(), "aud": s.ClientAudience(hub)}
	if call.UserID != "" {
		claims["sub"] = call.UserID
	}
	if len(call.Roles) > 0 {
		claims["role"] = call.Roles
	}
	if len(call.Groups) > 0 {
		claims["webpubsub.group"] = call.Groups
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(s.key)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	// The SDK reads the answer's "token" (WebPubSubServiceClient_helpers.cs,
	// ClientTokenResponseTokenPropertyName).
	writeJSON(w, http.StatusOK, map[string]string{"token": tok})
}

// caller verifies the request's bearer token and returns its identity.
func (s *WebPubSub) caller(r *http.Request) (Identity, error) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return Identity{}, errors.New("a bearer token is required")
	}
	id, err := s.issuer.Verify(token, WebPubSubResource)
	if err != nil {
		return Identity{}, fmt.Errorf("the bearer token is not valid: %w", err)
	}
	return id, nil
}
