package entratest

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"strings"

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
//
// Of the failures SetStatus can force, the SDK tells 400 (invalid argument),
// 401 (unauthorized) and 404 (inaccessible endpoint) apart and reports any
// other as a runtime error (Azure/azure-signalr MicrosoftEntraAccessKey.cs,
// ThrowExceptionOnResponseFailureAsync).
type Service struct {
	dataPlane
	keys map[string]string // KeyId → AccessKey, guarded by mu
}

// NewService starts a key API that accepts tokens from issuer. Close it when
// done.
func NewService(issuer *Issuer) *Service {
	s := &Service{keys: map[string]string{}}
	s.start(issuer, SignalRResource, s.serve)
	return s
}

// Revoke takes the role away again; keys already given out stay valid.
func (s *Service) Revoke(objectID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.roles, objectID)
}

// AccessKey returns the access key given out with keyID, as a test signing
// like the app needs it.
func (s *Service) AccessKey(keyID string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.keys[keyID]
	return k, ok
}

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
	return verifyClientToken(token, s.ClientAudience(hub), func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		key, ok := s.AccessKey(kid)
		if !ok {
			return nil, fmt.Errorf("no access key with kid %q", kid)
		}
		return []byte(key), nil
	})
}

func (s *Service) serve(w http.ResponseWriter, r *http.Request) {
	if !s.begin(w) {
		return
	}
	if r.URL.Path != AccessKeyPath {
		http.NotFound(w, r)
		return
	}
	// The SDK sends GET with Authorization: Bearer <Entra token> and nothing
	// else of note (Azure/azure-signalr MicrosoftEntraAccessKey.cs,
	// UpdateAccessKeyInternalAsync).
	id, ok := s.admit(w, r, http.MethodGet)
	if !ok {
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
