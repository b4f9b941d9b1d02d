package entra

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/negotiate-sidecar/negotiate-sidecar/rewrite"
)

// WebPubSubScope is what the Web PubSub SDK asks Microsoft Entra ID for a
// token for (Azure/azure-sdk-for-net,
// sdk/webpubsub/Azure.Messaging.WebPubSub/src/WebPubSubServiceClientOptions.ServiceVersion.cs,
// CredentialScopeName).
const WebPubSubScope = "https://webpubsub.azure.com/.default"

// The token API, as the .NET SDK calls it with a TokenCredential
// (Azure/azure-sdk-for-net,
// sdk/webpubsub/Azure.Messaging.WebPubSub/src/WebPubSubServiceClient_helpers.cs,
// GetClientAccessTokenCore, and the generated WebPubSubServiceClient.cs):
// POST {endpoint}/api/hubs/{hub}/:generateToken with userId, role and group
// (each repeated), minutesToExpire and clientType in the query, and an
// answer {"token": ...}. The api-version is the SDK's latest
// (WebPubSubServiceClientOptions.ServiceVersion.cs, V2024_12_01); the
// default client type is spelt "default" there.
const (
	generateTokenAPIVersion = "2024-12-01"
	defaultClientType       = "default"
)

// IssuerConfig configures a TokenClient.
type IssuerConfig struct {
	// Entra is the endpoint and how the app signs in to it.
	Entra *rewrite.Entra
	// Credential gets the Entra tokens; Description names it in messages.
	Credential  azcore.TokenCredential
	Description string
	// Client asks the token API; default http.DefaultClient. The request's
	// context bounds each call as well. A copy of it is used that follows
	// no redirect: one is a failed answer.
	Client *http.Client
}

// TokenClient asks a Web PubSub service for client tokens with a Microsoft
// Entra identity, as the Web PubSub SDK does for an app that connects
// without an access key. It is a rewrite.TokenIssuer.
type TokenClient struct {
	cfg  IssuerConfig
	base url.URL // the endpoint, path without a trailing slash
}

// NewTokenClient returns a TokenClient for cfg. An endpoint that is not
// https, except on loopback, is refused: the request carries the
// identity's Entra token.
func NewTokenClient(cfg IssuerConfig) (*TokenClient, error) {
	if cfg.Entra == nil || cfg.Entra.Endpoint == nil || cfg.Credential == nil {
		return nil, errors.New("entra: a token client needs an endpoint and a credential")
	}
	base := *cfg.Entra.Endpoint
	if base.Scheme != "https" && !isLoopback(base.Hostname()) {
		return nil, fmt.Errorf("the Web PubSub endpoint %s must be https (http only on loopback): the request carries the identity's token", base.Redacted())
	}
	base.Path, base.RawPath = strings.TrimRight(base.Path, "/"), ""
	cfg.Client = withoutRedirects(cfg.Client)
	return &TokenClient{cfg: cfg, base: base}, nil
}

// Endpoint is the endpoint's URL, for logs.
func (c *TokenClient) Endpoint() string { return c.cfg.Entra.Endpoint.String() }

// Description names the credential.
func (c *TokenClient) Description() string { return c.cfg.Description }

// IssueToken asks the service for a client token, once: a retry would
// outlast the caller's negotiate. Errors name the API without its query
// and hold no token.
func (c *TokenClient) IssueToken(ctx context.Context, req rewrite.TokenRequest) (string, error) {
	u := c.base
	u.Path += "/api/hubs/" + req.Hub + "/:generateToken"
	apiURL := u.String()
	q := url.Values{}
	q.Set("api-version", generateTokenAPIVersion)
	if req.UserID != "" {
		q.Set("userId", req.UserID)
	}
	q["role"] = req.Roles
	q["group"] = req.Groups
	q.Set("minutesToExpire", strconv.Itoa(req.Minutes))
	q.Set("clientType", defaultClientType)
	u.RawQuery = q.Encode()

	tok, err := c.cfg.Credential.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{WebPubSubScope}})
	if err != nil {
		return "", &TokenError{Identity: c.cfg.Description, Scope: WebPubSubScope, Err: err}
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), nil)
	if err != nil {
		return "", &APIError{api: tokenAPI, URL: apiURL, Err: err}
	}
	hr.Header.Set("Accept", "application/json")
	status, body, err := callAPI(c.cfg.Client, hr, tok.Token)
	if err != nil || status != http.StatusOK {
		return "", &APIError{api: tokenAPI, URL: apiURL, Status: status, Err: err}
	}
	// The error never quotes the answer: it may hold a token.
	var answer struct {
		Token *string `json:"token"`
	}
	if err := json.Unmarshal(body, &answer); err != nil || answer.Token == nil || *answer.Token == "" {
		return "", &APIError{api: tokenAPI, URL: apiURL, Status: status, Err: errors.New("the answer has no token string")}
	}
	return *answer.Token, nil
}
