package entratest

import (
	"net/http"
	"strconv"
	"strings"
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
	dataPlane
	key  []byte
	last GenerateTokenCall // guarded by mu
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
	s := &WebPubSub{key: randomBytes(32)}
	s.start(issuer, WebPubSubResource, s.serve)
	return s
}

// LastCall returns what the last successful generateToken asked for.
func (s *WebPubSub) LastCall() GenerateTokenCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

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
	return verifyClientToken(token, s.ClientAudience(hub), func(*jwt.Token) (any, error) { return s.key, nil })
}

const generateTokenSuffix = "/:generateToken"

func (s *WebPubSub) serve(w http.ResponseWriter, r *http.Request) {
	if !s.begin(w) {
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
	id, ok := s.admit(w, r, http.MethodPost)
	if !ok {
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
