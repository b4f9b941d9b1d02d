package entratest

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/golang-jwt/jwt/v5"
)

// dataPlane is what the stand-ins for the services' data-plane APIs (Service,
// WebPubSub) share, as the services share it: a loopback server that counts
// requests, can be told to fail every one, and admits a caller by an Entra
// bearer token for the service's resource from an identity granted the
// service's role.
type dataPlane struct {
	srv      *httptest.Server
	issuer   *Issuer
	resource string // the audience a caller's token must have

	mu     sync.Mutex // guards roles and status, and the embedding stand-in's state
	roles  map[string]bool
	status int

	requests atomic.Int64
}

// start serves handler on loopback, admitting tokens from issuer for
// resource.
func (s *dataPlane) start(issuer *Issuer, resource string, handler http.HandlerFunc) {
	s.issuer, s.resource, s.roles = issuer, resource, map[string]bool{}
	s.srv = httptest.NewServer(handler)
}

// URL returns the service endpoint, http://127.0.0.1:port, as a connection
// string gives it.
func (s *dataPlane) URL() string { return s.srv.URL }

// Grant gives the identity with objectID the role the API requires (the
// type's documentation names it).
func (s *dataPlane) Grant(objectID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.roles[objectID] = true
}

// SetStatus makes the API answer every request with code, before looking at
// the token; 0 restores normal answers.
func (s *dataPlane) SetStatus(code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status = code
}

// Requests returns how many requests reached the API, failed ones included.
func (s *dataPlane) Requests() int { return int(s.requests.Load()) }

// Close shuts the service down.
func (s *dataPlane) Close() { s.srv.Close() }

// begin counts a request and reports whether to serve it: not when
// SetStatus set an answer, which it has then written.
func (s *dataPlane) begin(w http.ResponseWriter) bool {
	s.requests.Add(1)
	s.mu.Lock()
	status := s.status
	s.mu.Unlock()
	if status != 0 {
		http.Error(w, http.StatusText(status), status)
		return false
	}
	return true
}

// admit checks that the request uses method and carries a valid bearer
// token, and returns its identity; otherwise it answers the request itself
// and returns false.
func (s *dataPlane) admit(w http.ResponseWriter, r *http.Request, method string) (Identity, bool) {
	if r.Method != method {
		http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
		return Identity{}, false
	}
	id, err := s.caller(r)
	if err != nil {
		w.Header().Set("WWW-Authenticate", "Bearer")
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return Identity{}, false
	}
	return id, true
}

// caller verifies the request's bearer token and returns its identity.
func (s *dataPlane) caller(r *http.Request) (Identity, error) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return Identity{}, errors.New("a bearer token is required")
	}
	id, err := s.issuer.Verify(token, s.resource)
	if err != nil {
		return Identity{}, fmt.Errorf("the bearer token is not valid: %w", err)
	}
	return id, nil
}

// verifyClientToken checks a client token as both services do when a client
// connects: HS256 with the key that key finds, aud and exp. It returns the
// token's claims.
func verifyClientToken(token, audience string, key jwt.Keyfunc) (map[string]any, error) {
	p := jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithAudience(audience),
		jwt.WithExpirationRequired(),
	)
	claims := jwt.MapClaims{}
	if _, err := p.ParseWithClaims(token, claims, key); err != nil {
		return nil, fmt.Errorf("verifying client token: %w", err)
	}
	return claims, nil
}
