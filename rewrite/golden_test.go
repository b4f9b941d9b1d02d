package rewrite

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/golden from the SDK builders and the rewriter")

// goldenNow is the time the SDK builders issue tokens at.
const goldenNow = 1732694400

// Fake access keys: base64 of "golden-<what>-key".
const (
	goldenSignalRPrimary   = "Z29sZGVuLXNpZ25hbHItY2xvdWQtcHJpbWFyeS1rZXk="
	goldenSignalRSecondary = "Z29sZGVuLXNpZ25hbHItY2xvdWQtc2Vjb25kYXJ5LWtleQ=="
	goldenEmulator8888     = "Z29sZGVuLXNpZ25hbHItZW11bGF0b3ItODg4OC1rZXk="
	goldenEmulator8889     = "Z29sZGVuLXNpZ25hbHItZW11bGF0b3ItODg4OS1rZXk="
	goldenPort8443         = "Z29sZGVuLXNpZ25hbHItcG9ydC04NDQzLWtleQ=="
	goldenClientEndpoint   = "Z29sZGVuLXNpZ25hbHItY2xpZW50LWVuZHBvaW50LWtleQ=="
	goldenServerEndpoint   = "Z29sZGVuLXNpZ25hbHItc2VydmVyLWVuZHBvaW50LWtleQ=="
	goldenPubSubPrimary    = "Z29sZGVuLXdlYnB1YnN1Yi1jbG91ZC1wcmltYXJ5LWtleQ=="
	goldenPubSubSecondary  = "Z29sZGVuLXdlYnB1YnN1Yi1jbG91ZC1zZWNvbmRhcnkta2V5"
	goldenPubSubLocal8080  = "Z29sZGVuLXdlYnB1YnN1Yi1sb2NhbC04MDgwLWtleQ=="
	goldenPubSubPort8081   = "Z29sZGVuLXdlYnB1YnN1Yi1wb3J0LTgwODEta2V5"
)

// Where each fact the builders rely on comes from.
const (
	srcSignalRToken = "Azure/azure-signalr src/Microsoft.Azure.SignalR.Common/Auth/AuthUtility.cs, JwtHeader.cs, JwtPayload.cs: " +
		`header {"alg":"HS256","typ":"JWT","kid":<.NET hash of the key>}; claims, then nbf, exp (1 hour), iat, aud; Newtonsoft.Json, compact; HMAC-SHA256 with the key's UTF-8 bytes`
	srcSignalRAud = "Azure/azure-signalr src/Microsoft.Azure.SignalR.Common/Endpoints/ServiceEndpoint.cs (BuildAudienceBaseUrlEndWithSlash): " +
		"aud is {scheme}://{host}/client/?hub={hub}, never a port"
	srcSignalRURL = "Azure/azure-signalr src/Microsoft.Azure.SignalR/EndpointProvider/DefaultServiceEndpointGenerator.cs: " +
		"url is {ClientEndpoint, or Endpoint with Port}client/?hub={hub}; Utilities/ConnectionStringParser.cs: Port replaces the Endpoint's port"
	srcSignalRInfo = "Azure/azure-sdk-for-net sdk/signalr/Microsoft.Azure.WebJobs.Extensions.SignalRService/src/Bindings/SignalRConnectionInfo.cs: " +
		`[JsonProperty("url")], [JsonProperty("accessToken")], Newtonsoft.Json`
	srcSignalRIsolated = "Azure/azure-functions-dotnet-worker extensions/Worker.Extensions.SignalRService/src/Models/SignalRConnectionInfo.cs: " +
		"Url and AccessToken without JSON names; System.Text.Json writes them as declared"
	srcPubSubDotnetToken = "Azure/azure-sdk-for-net sdk/webpubsub/Azure.Messaging.WebPubSub/src/Shared/WebPubSubClientAccessTokenGenerator.cs, Shared/JwtBuilder.cs: " +
		`header {"alg":"HS256","typ":"JWT"}; sub, role, webpubsub.group, nbf, exp, iat, aud; Utf8JsonWriter, compact`
	srcPubSubDotnetURL = "Azure/azure-sdk-for-net sdk/webpubsub/Azure.Messaging.WebPubSub/src/WebPubSubServiceClient_helpers.cs: " +
		"aud is {Endpoint with Port}/client/hubs/{hub}, the port kept; the URL is the same with ws/wss and ?access_token={token}"
	srcPubSubBinding = "Azure/azure-sdk-for-net sdk/webpubsub/Microsoft.Azure.WebJobs.Extensions.WebPubSub/src/Bindings/WebPubSubConnection.cs: " +
		"camelCase baseUrl ({scheme}://{authority}{path}), url, accessToken, Newtonsoft.Json"
	srcPubSubIsolated = "Azure/azure-functions-dotnet-worker extensions/Worker.Extensions.WebPubSub/src/Models/Input/WebPubSubConnection.cs: " +
		`[JsonPropertyName("baseUrl")], [JsonPropertyName("url")], AccessToken without one; System.Text.Json`
	srcPubSubJS = "Azure/azure-sdk-for-js sdk/web-pubsub/web-pubsub/src/hubClient.ts (getClientAccessToken), parseConnectionString.ts: " +
		`returns {token, baseUrl, url}; jsonwebtoken signs {role, webpubsub.group} and appends iat, exp (1h), aud ({endpoint with Port}/client/hubs/{hub}), sub; header {"alg":"HS256","typ":"JWT"}`
)

// goldenCase is a negotiate body exactly as an SDK writes it for one
// connection string, and what the sidecar makes of it.
type goldenCase struct {
	name        string // the file under testdata/golden, without .txt
	title       string
	sources     []string
	format      Format
	cs          string // the connection string the app's SDK read
	contentType string // as the app serves the body; the sidecar ignores it
	aud         string // the token's aud, as the SDK writes it for cs
	url         string // where the client is sent, without the token
	token       func(key, aud string) string
	body        func(url, token string) string
}

var goldenCases = []goldenCase{
	{
		name:        "signalr-node-v4",
		title:       "SignalR, Node.js v4 function returning body: JSON.stringify(connectionInfo); Endpoint without a port; the app's binding put its own user id in",
		sources:     []string{srcSignalRToken, srcSignalRAud, srcSignalRURL, srcSignalRInfo},
		format:      SignalR(),
		cs:          "Endpoint=https://contoso.service.signalr.net;AccessKey=" + goldenSignalRPrimary + ";Version=1.0;",
		contentType: "text/plain;charset=UTF-8",
		aud:         "https://contoso.service.signalr.net/client/?hub=chat",
		url:         "https://contoso.service.signalr.net/client/?hub=chat",
		token:       signalRToken("-1895682698", "mallory"),
		body:        signalRCamelCase,
	},
	{
		name:        "signalr-node-v3",
		title:       "SignalR, Node.js v3 function returning body: connectionInfo; the secondary key of the same endpoint; no user id from the binding",
		sources:     []string{srcSignalRToken, srcSignalRAud, srcSignalRURL, srcSignalRInfo},
		format:      SignalR(),
		cs:          "Endpoint=https://contoso.service.signalr.net;AccessKey=" + goldenSignalRSecondary + ";Version=1.0;",
		contentType: "application/json; charset=utf-8",
		aud:         "https://contoso.service.signalr.net/client/?hub=chat",
		url:         "https://contoso.service.signalr.net/client/?hub=chat",
		token:       signalRToken("1043283911", ""),
		body:        signalRCamelCase,
	},
	{
		name:        "signalr-csharp-inprocess-port",
		title:       "SignalR, C# in-process function returning the binding's SignalRConnectionInfo; Port=8443: the url has the port, aud has none",
		sources:     []string{srcSignalRToken, srcSignalRAud, srcSignalRURL, srcSignalRInfo},
		format:      SignalR(),
		cs:          "Endpoint=https://ported.service.signalr.net;AccessKey=" + goldenPort8443 + ";Port=8443;Version=1.0;",
		contentType: "application/json; charset=utf-8",
		aud:         "https://ported.service.signalr.net/client/?hub=chat",
		url:         "https://ported.service.signalr.net:8443/client/?hub=chat",
		token:       signalRToken("-702139841", ""),
		body:        signalRCamelCase,
	},
	{
		name:        "signalr-isolated-pascalcase-client-endpoint",
		title:       "SignalR, C# isolated worker returning its SignalRConnectionInfo (PascalCase); ClientEndpoint: the url names it, aud the Endpoint",
		sources:     []string{srcSignalRToken, srcSignalRAud, srcSignalRURL, srcSignalRIsolated},
		format:      SignalR(),
		cs:          "Endpoint=https://edge.service.signalr.net;AccessKey=" + goldenClientEndpoint + ";ClientEndpoint=https://chat.contoso.com;Version=1.0;",
		contentType: "application/json; charset=utf-8",
		aud:         "https://edge.service.signalr.net/client/?hub=chat",
		url:         "https://chat.contoso.com/client/?hub=chat",
		token:       signalRToken("88172634", "user-from-binding"),
		body:        signalRPascalCase,
	},
	{
		name:        "signalr-server-endpoint",
		title:       "SignalR, ServerEndpoint set: app servers go there, clients and aud keep the Endpoint",
		sources:     []string{srcSignalRToken, srcSignalRAud, srcSignalRURL, srcSignalRInfo},
		format:      SignalR(),
		cs:          "Endpoint=https://inner.service.signalr.net;AccessKey=" + goldenServerEndpoint + ";ServerEndpoint=https://10.0.0.4;Version=1.0;",
		contentType: "application/json; charset=utf-8",
		aud:         "https://inner.service.signalr.net/client/?hub=chat",
		url:         "https://inner.service.signalr.net/client/?hub=chat",
		token:       signalRToken("-5522119", ""),
		body:        signalRCamelCase,
	},
	{
		name:        "signalr-emulator-port-in-endpoint",
		title:       "SignalR, a local emulator: the port inside the Endpoint URL, kept in the url, absent from aud",
		sources:     []string{srcSignalRToken, srcSignalRAud, srcSignalRURL, srcSignalRInfo},
		format:      SignalR(),
		cs:          "Endpoint=http://127.0.0.1:8888;AccessKey=" + goldenEmulator8888 + ";Version=1.0;",
		contentType: "text/plain;charset=UTF-8",
		aud:         "http://127.0.0.1/client/?hub=chat",
		url:         "http://127.0.0.1:8888/client/?hub=chat",
		token:       signalRToken("1712345678", ""),
		body:        signalRCamelCase,
	},
	{
		name:        "signalr-emulator-second-on-one-host",
		title:       "SignalR, a second emulator on the same host: the same aud as the first, told apart by the url and the key",
		sources:     []string{srcSignalRToken, srcSignalRAud, srcSignalRURL, srcSignalRInfo},
		format:      SignalR(),
		cs:          "Endpoint=http://127.0.0.1:8889;AccessKey=" + goldenEmulator8889 + ";Version=1.0;",
		contentType: "text/plain;charset=UTF-8",
		aud:         "http://127.0.0.1/client/?hub=chat",
		url:         "http://127.0.0.1:8889/client/?hub=chat",
		token:       signalRToken("-1234567890", ""),
		body:        signalRCamelCase,
	},
	{
		name:        "signalr-emulator-third-on-one-host-shared-key",
		title:       "SignalR, a third emulator on the same host with the first one's key: only the url tells them apart",
		sources:     []string{srcSignalRToken, srcSignalRAud, srcSignalRURL, srcSignalRInfo},
		format:      SignalR(),
		cs:          "Endpoint=http://127.0.0.1:8890;AccessKey=" + goldenEmulator8888 + ";Version=1.0;",
		contentType: "text/plain;charset=UTF-8",
		aud:         "http://127.0.0.1/client/?hub=chat",
		url:         "http://127.0.0.1:8890/client/?hub=chat",
		token:       signalRToken("1712345678", ""),
		body:        signalRCamelCase,
	},
	{
		name:        "webpubsub-binding",
		title:       "Web PubSub, the webPubSubConnection binding (Node.js and C# in-process alike), the app's user id and a role in the token",
		sources:     []string{srcPubSubDotnetToken, srcPubSubDotnetURL, srcPubSubBinding},
		format:      WebPubSub(),
		cs:          "Endpoint=https://contoso.webpubsub.azure.com;AccessKey=" + goldenPubSubPrimary + ";Version=1.0;",
		contentType: "application/json; charset=utf-8",
		aud:         "https://contoso.webpubsub.azure.com/client/hubs/chat",
		url:         "wss://contoso.webpubsub.azure.com/client/hubs/chat",
		token:       dotnetWebPubSubToken("mallory", []string{"webpubsub.joinLeaveGroup"}, nil),
		body:        pubSubBinding,
	},
	{
		name:        "webpubsub-sdk",
		title:       "Web PubSub, a Node.js function returning what getClientAccessToken({roles, groups}) returned; the secondary key",
		sources:     []string{srcPubSubJS},
		format:      WebPubSub(),
		cs:          "Endpoint=https://contoso.webpubsub.azure.com;AccessKey=" + goldenPubSubSecondary + ";Version=1.0;",
		contentType: "application/json; charset=utf-8",
		aud:         "https://contoso.webpubsub.azure.com/client/hubs/chat",
		url:         "wss://contoso.webpubsub.azure.com/client/hubs/chat",
		token:       jsWebPubSubToken("", []string{"webpubsub.sendToGroup.lobby", "webpubsub.joinLeaveGroup.lobby"}, []string{"lobby"}),
		body:        pubSubSDK,
	},
	{
		name:        "webpubsub-url-only",
		title:       "Web PubSub, res.json({ url: token.url }) as in the quickstarts; the port inside the Endpoint URL, kept in aud and url",
		sources:     []string{srcPubSubJS},
		format:      WebPubSub(),
		cs:          "Endpoint=http://localhost:8080;AccessKey=" + goldenPubSubLocal8080 + ";Version=1.0;",
		contentType: "application/json; charset=utf-8",
		aud:         "http://localhost:8080/client/hubs/chat",
		url:         "ws://localhost:8080/client/hubs/chat",
		token:       jsWebPubSubToken("", nil, nil),
		body:        pubSubURLOnly,
	},
	{
		name:        "webpubsub-isolated-pascalcase-port",
		title:       "Web PubSub, C# isolated worker returning its WebPubSubConnection (AccessToken in PascalCase); Port=8081 on a host shared with another endpoint",
		sources:     []string{srcPubSubDotnetToken, srcPubSubDotnetURL, srcPubSubIsolated},
		format:      WebPubSub(),
		cs:          "Endpoint=http://localhost;Port=8081;AccessKey=" + goldenPubSubPort8081 + ";Version=1.0;",
		contentType: "application/json; charset=utf-8",
		aud:         "http://localhost:8081/client/hubs/chat",
		url:         "ws://localhost:8081/client/hubs/chat",
		token:       dotnetWebPubSubToken("", nil, nil),
		body:        pubSubIsolated,
	},
}

// signalRToken returns a builder of the SignalR SDK's client tokens, with the
// given kid and, if not empty, the binding's user id.
func signalRToken(kid, uid string) func(key, aud string) string {
	return func(key, aud string) string {
		var claims []byte
		if uid != "" {
			claims = append(appendQuoted(append(claims, `"asrs.s.uid":`...), uid), ',')
		}
		payload := fmt.Sprintf(`{%s"nbf":%d,"exp":%d,"iat":%d,"aud":%s}`, claims, goldenNow, goldenNow+3600, goldenNow, appendQuoted(nil, aud))
		return hs256(`{"alg":"HS256","typ":"JWT","kid":"`+kid+`"}`, payload, key)
	}
}

// dotnetWebPubSubToken returns a builder of the .NET Web PubSub SDK's client
// tokens.
func dotnetWebPubSubToken(sub string, roles, groups []string) func(key, aud string) string {
	return func(key, aud string) string {
		var b []byte
		b = append(b, '{')
		if sub != "" {
			b = append(appendQuoted(append(b, `"sub":`...), sub), ',')
		}
		if len(roles) > 0 {
			b = append(appendJSONList(append(b, `"role":`...), roles), ',')
		}
		if len(groups) > 0 {
			b = append(appendJSONList(append(b, `"webpubsub.group":`...), groups), ',')
		}
		b = fmt.Appendf(b, `"nbf":%d,"exp":%d,"iat":%d,"aud":%s}`, goldenNow, goldenNow+3600, goldenNow, appendQuoted(nil, aud))
		return hs256(`{"alg":"HS256","typ":"JWT"}`, string(b), key)
	}
}

// jsWebPubSubToken returns a builder of the JavaScript Web PubSub SDK's
// client tokens.
func jsWebPubSubToken(sub string, roles, groups []string) func(key, aud string) string {
	return func(key, aud string) string {
		var b []byte
		b = append(b, '{')
		if len(roles) > 0 {
			b = append(appendJSONList(append(b, `"role":`...), roles), ',')
		}
		if len(groups) > 0 {
			b = append(appendJSONList(append(b, `"webpubsub.group":`...), groups), ',')
		}
		b = fmt.Appendf(b, `"iat":%d,"exp":%d,"aud":%s`, goldenNow, goldenNow+3600, appendQuoted(nil, aud))
		if sub != "" {
			b = appendQuoted(append(b, `,"sub":`...), sub)
		}
		return hs256(`{"alg":"HS256","typ":"JWT"}`, string(append(b, '}')), key)
	}
}

func appendJSONList(b []byte, list []string) []byte {
	b = append(b, '[')
	for i, s := range list {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendQuoted(b, s)
	}
	return append(b, ']')
}

func signalRCamelCase(url, tok string) string {
	return `{"url":"` + url + `","accessToken":"` + tok + `"}`
}

func signalRPascalCase(url, tok string) string {
	return `{"Url":"` + url + `","AccessToken":"` + tok + `"}`
}

func pubSubBinding(base, tok string) string {
	return `{"baseUrl":"` + base + `","url":"` + base + `?access_token=` + tok + `","accessToken":"` + tok + `"}`
}

func pubSubSDK(base, tok string) string {
	return `{"token":"` + tok + `","baseUrl":"` + base + `","url":"` + base + `?access_token=` + tok + `"}`
}

func pubSubURLOnly(base, tok string) string {
	return `{"url":"` + base + `?access_token=` + tok + `"}`
}

func pubSubIsolated(base, tok string) string {
	return `{"baseUrl":"` + base + `","url":"` + base + `?access_token=` + tok + `","AccessToken":"` + tok + `"}`
}

// TestGolden rewrites each SDK's body for each connection string form, with
// every fixture's endpoint configured at once, as a sidecar holding all of
// them would: each body must resolve to its own endpoint and key, come out
// with only its token copies changed, and match testdata/golden byte for
// byte. go test ./rewrite -run TestGolden -update writes the files again.
func TestGolden(t *testing.T) {
	keys := map[string][]Key{}
	for _, gc := range goldenCases {
		k, err := gc.format.Key(mustParse(t, gc.cs))
		if err != nil {
			t.Fatalf("%s: %v", gc.name, err)
		}
		keys[gc.format.Name] = append(keys[gc.format.Name], k)
	}
	for _, gc := range goldenCases {
		t.Run(gc.name, func(t *testing.T) {
			cs := mustParse(t, gc.cs)
			r, err := New(gc.format, keys[gc.format.Name], Options{})
			if err != nil {
				t.Fatal(err)
			}
			tok := gc.token(cs.AccessKey, gc.aud)
			in := gc.body(gc.url, tok)

			// check builds what the SDK builds.
			sdk, err := gc.format.SDKBody(cs, "chat", time.Unix(goldenNow, 0))
			if err != nil {
				t.Fatal(err)
			}
			if aud := claimOf(t, tokenIn(t, sdk), "aud"); aud != gc.aud {
				t.Errorf("SDKBody's aud is %s, the SDK's %s", aud, gc.aud)
			}
			if !bytes.Contains(sdk, []byte(`"`+gc.url)) {
				t.Errorf("SDKBody %s lacks the SDK's url %s", sdk, gc.url)
			}

			k, err := r.Resolve([]byte(in))
			if err != nil {
				t.Fatal(err)
			}
			if k.Endpoint != cs.Endpoint.String() || string(k.Secret) != cs.AccessKey {
				t.Errorf("resolved to endpoint %s (the right key: %v), want %s", k.Endpoint, string(k.Secret) == cs.AccessKey, cs.Endpoint)
			}
			out, err := r.Rewrite([]byte(in), Caller{UserID: "alice"})
			if err != nil {
				t.Fatal(err)
			}
			newTok := tokenIn(t, out)
			if strings.Count(string(out), newTok) != strings.Count(in, tok) {
				t.Errorf("%d copies of the new token, want %d", strings.Count(string(out), newTok), strings.Count(in, tok))
			}
			if back := strings.ReplaceAll(string(out), newTok, tok); back != in {
				t.Errorf("more than the token changed:\n got %s\nwant %s", back, in)
			}
			p := strings.Split(newTok, ".")
			if hs256(unb64(t, p[0]), unb64(t, p[1]), cs.AccessKey) != newTok {
				t.Error("the new token is not signed with the endpoint's key")
			}
			if got := claimOf(t, newTok, gc.format.UserClaim); got != "alice" {
				t.Errorf("user claim %s = %q", gc.format.UserClaim, got)
			}

			golden := renderGolden(t, gc, in, string(out))
			path := filepath.Join("testdata", "golden", gc.name+".txt")
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(golden), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./rewrite -run TestGolden -update to create it)", err)
			}
			if golden != string(want) {
				t.Errorf("%s differs from what the SDK builders and the rewriter produce now; if that is intended, run with -update and review the diff:\n%s", path, golden)
			}
		})
	}
}

// renderGolden lays a case out for reading: where its bytes come from, the
// body as the SDK writes it and the sidecar's, each followed by its token's
// claims.
func renderGolden(t *testing.T, gc goldenCase, in, out string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s\n#\n# Built as the SDK builds it:\n", gc.title)
	for _, s := range gc.sources {
		fmt.Fprintf(&b, "#   %s\n", s)
	}
	fmt.Fprintf(&b, "#\n# connection string: %s\n# content type: %s\n# user: alice\n", gc.cs, gc.contentType)
	for _, part := range []struct{ what, body string }{{"the negotiate body from the app", in}, {"the negotiate body from the sidecar", out}} {
		fmt.Fprintf(&b, "\n-- %s --\n%s\n-- its token's header and claims --\n", part.what, part.body)
		p := strings.Split(tokenIn(t, []byte(part.body)), ".")
		fmt.Fprintf(&b, "%s\n%s\n", unb64(t, p[0]), unb64(t, p[1]))
	}
	return b.String()
}

// tokenIn returns the token of a body: its token field, else its url's.
func tokenIn(t *testing.T, body []byte) string {
	t.Helper()
	obj, err := parseObject(body)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"accessToken", "AccessToken", "token"} {
		if s, ok, _ := obj.stringValue(name); ok {
			return s
		}
	}
	if _, s, ok, _ := urlToken(obj, "url"); ok {
		return s
	}
	t.Fatalf("no token in %s", body)
	return ""
}

func claimOf(t *testing.T, tok, name string) string {
	t.Helper()
	var claims map[string]any
	if err := json.Unmarshal([]byte(unb64(t, strings.Split(tok, ".")[1])), &claims); err != nil {
		t.Fatal(err)
	}
	s, _ := claims[name].(string)
	return s
}
