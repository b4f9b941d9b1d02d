package entratest

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/golang-jwt/jwt/v5"
)

// SignalRResource is the resource (token audience) of Azure SignalR Service's
// data plane; the SDK asks for the scope SignalRResource + "/.default"
// (Azure/azure-signalr src/Microsoft.Azure.SignalR.Common/Constants.cs,
// AsrsDefaultScope).
const SignalRResource = "https://signalr.azure.com"

// AccessKeyPath is the key API's path below the endpoint (ServerEndpoint when
// set, else Endpoint) (Azure/azure-signalr
// src/Microsoft.Azure.SignalR.Common/Auth/MicrosoftEntra/MicrosoftEntraAccessKey.cs).
const AccessKeyPath = "/api/v1/auth/accessKey"

// Service stands in for Azure SignalR Service's key API on loopback plain
// http. GET /api/v1/auth/accessKey with an Entra bearer token for
// SignalRResource gives each call a fresh temporary key of its own,
// {"KeyId": ..., "AccessKey": ...}, when the token's identity holds the
// "SignalR App Server" role (see Grant). VerifyClientToken then checks client
// tokens signed with such a key as the service does.
type Service struct {
	srv    *httptest.Server
	issuer *Issuer

	mu     sync.Mutex
	roles  map[string]bool   // object ids holding the SignalR App Server role
	keys   map[string]string // KeyId → AccessKey
	status int

	requests atomic.Int64
}

// NewService starts a key API that accepts tokens from issuer. Close it when
// done.
func NewService(issuer *Issuer) *Service {
	s := &Service{issuer: issuer, roles: map[string]bool{}, keys: map[string]string{}}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// URL returns the service endpoint, http://127.0.0.1:port, as a connection
// string's Endpoint= gives it.
func (s *Service) URL() string { return s.srv.URL }

// Grant gives the identity with objectID the "SignalR App Server" role, which
// the key API requires.
func (s *Service) Grant(objectID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.roles[objectID] = true
}

// Revoke takes the role away again; keys already given out stay valid.
func (s *Service) Revoke(objectID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.roles, objectID)
}

// SetStatus makes the key API answer every request with code, before looking
// at the token; 0 restores normal answers. The SDK tells 400 (invalid
// argument), 401 (unauthorized) and 404 (inaccessible endpoint) apart and
// reports any other failure as a runtime error (Azure/azure-signalr
// MicrosoftEntraAccessKey.cs, ThrowExceptionOnResponseFailureAsync).
func (s *Service) SetStatus(code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status = code
}

// Requests returns how many requests reached the key API, failed ones
// included.
func (s *Service) Requests() int { return int(s.requests.Load()) }

// AccessKey returns the access key given out with keyID, as a test signing
// like the app needs it.
func (s *Service) AccessKey(keyID string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.keys[keyID]
	return k, ok
}

// Close shuts the service down.
func (s *Service) Close() { s.srv.Close() }

// ClientAudience returns the aud of a client token for hub on this service:
// scheme and host of the endpoint, no port, then /client/?hub= and the hub
// lowercased (Azure/azure-signalr ServiceEndpoint.cs,
// BuildAudienceBaseUrlEndWithSlash, via /work/shared/context/azure-formats.md).
func (s *Service) ClientAudience(hub string) string {
	u, err := url.Parse(s.srv.URL)
	if err != nil {
		panic("entratest: " + err.Error())
	}
	return u.Scheme + "://" + u.Hostname() + "/client/?hub=" + strings.ToLower(hub)
}

// VerifyClientToken checks a client token for hub as the service does: it
// finds the key by the header's kid, checks the HS256 signature keyed with the
// UTF-8 bytes of the AccessKey string (Azure/azure-signalr
// MicrosoftEntraAccessKey.cs, UpdateAccessKey keeps Encoding.UTF8.GetBytes of
// it), then aud and exp. It returns the token's claims.
func (s *Service) VerifyClientToken(token, hub string) (map[string]any, error) {
	p := jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithAudience(s.ClientAudience(hub)),
		jwt.WithExpirationRequired(),
	)
	claims := jwt.MapClaims{}
	_, err := p.ParseWithClaims(token, claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		key, ok := s.AccessKey(kid)
		if !ok {
			return nil, fmt.Errorf("no access key with kid %q", kid)
		}
		return []byte(key), nil
	})
	if err != nil {
		return nil, fmt.Errorf("verifying client token: %w", err)
	}
	return claims, nil
}

func (s *Service) serve(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	s.mu.Lock()
	status := s.status
	s.mu.Unlock()
	if status != 0 {
		http.Error(w, http.StatusText(status), status)
		return
	}
	if r.URL.Path != AccessKeyPath {
		http.NotFound(w, r)
		return
	}
	// The SDK sends GET with Authorization: Bearer <Entra token> and nothing
	// else of note (Azure/azure-signalr MicrosoftEntraAccessKey.cs,
	// UpdateAccessKeyInternalAsync).
	if r.Method != http.MethodGet {
		http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
		return
	}
	id, err := s.caller(r)
	if err != nil {
		w.Header().Set("WWW-Authenticate", "Bearer")
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.roles[id.ObjectID] {
		http.Error(w, "the identity lacks the SignalR App Server role", http.StatusForbidden)
		return
	}
	// A fresh key on every call: each app instance signs with a key of its
	// own, which is the point of the stand-in. The SDK requires both fields to
	// be non-empty strings (Azure/azure-signalr MicrosoftEntraAccessKey.cs,
	// HandleHttpResponseAsync; AccessKeyResponse.cs names them).
	keyID := newGUID()
	key := base64.StdEncoding.EncodeToString(randomBytes(32))
	s.keys[keyID] = key
	writeJSON(w, http.StatusOK, map[string]string{"KeyId": keyID, "AccessKey": key})
}

// caller verifies the request's bearer token and returns its identity.
func (s *Service) caller(r *http.Request) (Identity, error) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return Identity{}, errors.New("a bearer token is required")
	}
	id, err := s.issuer.Verify(token, SignalRResource)
	if err != nil {
		return Identity{}, fmt.Errorf("the bearer token is not valid: %w", err)
	}
	return id, nil
}
