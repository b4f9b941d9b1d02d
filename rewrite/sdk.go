package rewrite

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// sdkRules are how a service's SDKs read a connection string and what they
// issue a client: the aud of its token and the negotiate body around it. Each
// rule names the SDK source it comes from, so that it can be checked again.
type sdkRules struct {
	// appSettings are the settings the Functions app reads its connection
	// string from, the default one first; endpointPrefixes start those of
	// several named endpoints (Microsoft.Azure.SignalR's ServiceOptions
	// reads Azure:SignalR:Endpoints:<name>[:primary|:secondary]).
	appSettings      []string
	endpointPrefixes []string
	// entraAuthType: a connection string with AuthType (aad, azure,
	// azure.app, azure.msi) makes the SDK ignore AccessKey and sign client
	// tokens with a key it fetches through Microsoft Entra ID.
	entraAuthType bool
	// identitySettings: the Functions extension reads a connection's
	// identity-based settings (<connection>__serviceUri, __credential,
	// __clientId, ...) and reaches the service with Microsoft Entra ID.
	identitySettings bool
	// endpointHint is an example endpoint, for messages.
	endpointHint string
	// clientEndpoint: the SDK sends clients to ClientEndpoint when the
	// connection string has one.
	clientEndpoint bool
	// body builds the negotiate body the SDK issues for one endpoint and
	// hub, its token signed with key.
	body func(c ConnectionString, hub, key string, now time.Time) []byte
}

// signalRRules are the Azure SignalR SDK's, which the Functions binding uses
// (Azure/azure-signalr):
//   - src/Microsoft.Azure.SignalR.Common/Utilities/ConnectionStringParser.cs:
//     with AuthType aad, azure, azure.app or azure.msi the AccessKey is
//     never read; Port replaces the Endpoint's port.
//   - src/Microsoft.Azure.SignalR.Common/Endpoints/ServiceEndpoint.cs
//     (BuildAudienceBaseUrlEndWithSlash): the audience base is
//     "{scheme}://{host}/", the port left out whatever it is.
//   - src/Microsoft.Azure.SignalR/EndpointProvider/DefaultServiceEndpointGenerator.cs:
//     aud is "{audience base}client/?hub={hub}", url is
//     "{ClientEndpoint, or the Endpoint with Port, as an absolute URI}client/?hub={hub}",
//     the hub in lowercase.
var signalRRules = sdkRules{
	appSettings: []string{
		"AzureSignalRConnectionString",
		"ConnectionStrings__AzureSignalRConnectionString",
		"ConnectionStrings:AzureSignalRConnectionString",
	},
	endpointPrefixes: []string{"Azure__SignalR__Endpoints__", "Azure:SignalR:Endpoints:"},
	entraAuthType:    true,
	identitySettings: true,
	endpointHint:     "https://<name>.service.signalr.net",
	clientEndpoint:   true,
	body:             signalRBody,
}

// webPubSubRules are those of the Web PubSub SDKs:
//   - Azure/azure-sdk-for-net,
//     sdk/webpubsub/Azure.Messaging.WebPubSub/src/WebPubSubServiceClient_helpers.cs
//     and sdk/webpubsub/Microsoft.Azure.WebJobs.Extensions.WebPubSub/src/Config/WebPubSubServiceAccessUtil.cs:
//     only Endpoint, AccessKey and Port are read (AuthType and
//     ClientEndpoint are not); aud is "{endpoint with Port}/client/hubs/{hub}",
//     port included; the client URL is the same with ws or wss, and the
//     token in its access_token parameter.
//   - Azure/azure-sdk-for-js, sdk/web-pubsub/web-pubsub/src/parseConnectionString.ts
//     and hubClient.ts (getClientAccessToken): the same aud, baseUrl and url.
//   - sdk/webpubsub/Microsoft.Azure.WebJobs.Extensions.WebPubSub/src/Bindings/WebPubSubConnection.cs:
//     the binding's body is {"baseUrl", "url", "accessToken"}.
//   - sdk/webpubsub/Microsoft.Azure.WebJobs.Extensions.WebPubSub/src/Config/WebPubSubServiceAccessUtil.cs
//     (CreateFromIConfiguration): a WebPubSubConnectionString section with
//     no value but a serviceUri is an identity-based connection, its
//     credential made by Microsoft.Extensions.Azure's
//     AzureComponentFactory.CreateTokenCredential from the same section;
//     serverEndpoint and clientEndpoint are not read. The client token then
//     comes from the service (WebPubSubServiceClientFactory.cs hands the
//     credential to WebPubSubServiceClient).
var webPubSubRules = sdkRules{
	appSettings:      []string{"WebPubSubConnectionString"},
	identitySettings: true,
	endpointHint:     "https://<name>.webpubsub.azure.com",
	body:             webPubSubBody,
}

// Key returns the key the service's SDK signs client tokens with for this
// connection string, with the hosts its tokens and clients use, as the
// format's SDK reads the connection string.
//
// For SignalR a connection string with AuthType is refused, AccessKey or
// not: the SDK then ignores the AccessKey and signs with a key it fetches
// through Microsoft Entra ID, which the sidecar does not have, so every
// negotiate would fail. The Web PubSub SDKs do not read AuthType and sign
// with the AccessKey, which they require.
//
// Errors name neither the key nor the connection string.
func (f Format) Key(c ConnectionString) (Key, error) {
	if f.sdk == nil {
		return Key{}, fmt.Errorf("the %s format has no connection string rules", f.Name)
	}
	if c.Endpoint == nil {
		return Key{}, errors.New("the connection string has no Endpoint")
	}
	if f.sdk.entraAuthType && c.AuthType != "" {
		return Key{}, fmt.Errorf("AuthType=%s: the app signs in with Microsoft Entra ID and has no access key", c.AuthType)
	}
	if c.AccessKey == "" {
		if c.AuthType != "" {
			return Key{}, fmt.Errorf("missing AccessKey: the %s SDKs and Functions extension ignore AuthType and sign client tokens with the AccessKey, so the connection string needs one; to connect with Microsoft Entra ID instead, give the app and the sidecar the identity-based settings %s__serviceUri (with __credential, __clientId, ...) and no connection string", f.Name, f.AppSetting())
		}
		return Key{}, errors.New("missing AccessKey")
	}
	k := f.hosts(c)
	k.Secret = []byte(c.AccessKey)
	return k, nil
}

// hosts is the Key, without its secret, that names c's endpoint: the hosts
// its tokens' aud may name and where clients are sent.
func (f Format) hosts(c ConnectionString) Key {
	k := Key{Endpoint: c.Endpoint.String()}
	if f.sdk.entraAuthType {
		k.Hosts = c.Hosts()
	} else {
		k.Hosts = []string{CanonicalHost(c.Endpoint)}
	}
	client := c.Endpoint
	if f.sdk.clientEndpoint && c.ClientEndpoint != nil {
		client = c.ClientEndpoint
	}
	k.ClientHosts = []string{CanonicalHost(client)}
	return k
}

// SDKBody returns the negotiate body the format's SDK (through the Functions
// binding) issues for this connection string and hub at time now: the
// body's URL and its token's aud built as the SDK builds them, the token
// signed with the connection string's AccessKey and carrying no user. It is
// what check feeds the rewriter to prove that each endpoint resolves to
// itself. A ClientEndpoint with a path may differ from the SDK's URL by a
// slash; scheme, host and port are the SDK's.
func (f Format) SDKBody(c ConnectionString, hub string, now time.Time) ([]byte, error) {
	if f.sdk == nil {
		return nil, fmt.Errorf("the %s format has no SDK rules", f.Name)
	}
	if c.Endpoint == nil || c.AccessKey == "" {
		return nil, errors.New("the connection string has no Endpoint or no AccessKey")
	}
	return f.sdk.body(c, hub, c.AccessKey, now), nil
}

func signalRBody(c ConnectionString, hub, key string, now time.Time) []byte {
	hub = strings.ToLower(hub)
	aud := strings.ToLower(c.Endpoint.Scheme) + "://" + formatHost(strings.ToLower(c.Endpoint.Hostname()), "") + "/client/?hub=" + hub
	client := c.Endpoint
	if c.ClientEndpoint != nil {
		client = c.ClientEndpoint
	}
	// The SDK appends to the endpoint's absolute URI without a separator,
	// and the absolute URI of a URL without a path ends with "/".
	base := strings.ToLower(client.Scheme) + "://" + CanonicalHost(client) + client.EscapedPath()
	if client.EscapedPath() == "" {
		base += "/"
	}
	claims := fmt.Sprintf(`{"nbf":%d,"exp":%d,"iat":%d,"aud":%s}`, now.Unix(), now.Add(time.Hour).Unix(), now.Unix(), appendQuoted(nil, aud))
	tok := hs256(`{"alg":"HS256","typ":"JWT"}`, claims, key)
	var b []byte
	b = append(b, `{"url":`...)
	b = appendQuoted(b, base+"client/?hub="+hub)
	b = append(b, `,"accessToken":`...)
	b = appendQuoted(b, tok)
	return append(b, '}')
}

func webPubSubBody(c ConnectionString, hub, key string, now time.Time) []byte {
	endpoint := strings.ToLower(c.Endpoint.Scheme) + "://" + CanonicalHost(c.Endpoint) + c.Endpoint.EscapedPath() + "/"
	aud := endpoint + "client/hubs/" + hub
	scheme := "wss"
	if strings.EqualFold(c.Endpoint.Scheme, "http") {
		scheme = "ws"
	}
	baseURL := scheme + strings.TrimPrefix(aud, strings.ToLower(c.Endpoint.Scheme))
	claims := fmt.Sprintf(`{"nbf":%d,"exp":%d,"iat":%d,"aud":%s}`, now.Unix(), now.Add(time.Hour).Unix(), now.Unix(), appendQuoted(nil, aud))
	tok := hs256(`{"alg":"HS256","typ":"JWT"}`, claims, key)
	var b []byte
	b = append(b, `{"baseUrl":`...)
	b = appendQuoted(b, baseURL)
	b = append(b, `,"url":`...)
	b = appendQuoted(b, baseURL+"?access_token="+url.QueryEscape(tok))
	b = append(b, `,"accessToken":`...)
	b = appendQuoted(b, tok)
	return append(b, '}')
}

// hs256 signs literal header and claims text with the UTF-8 bytes of key, as
// the SDKs do.
func hs256(header, claims, key string) string {
	enc := base64.RawURLEncoding.EncodeToString
	unsigned := enc([]byte(header)) + "." + enc([]byte(claims))
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write([]byte(unsigned))
	return unsigned + "." + enc(mac.Sum(nil))
}
