package rewrite

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// ownKey is a KeySource holding one key, or failing with err.
type ownKey struct {
	key SigningKey
	err error
}

func (o ownKey) SigningKey() (SigningKey, error) { return o.key, o.err }

const (
	entraHost   = "fake-entra.service.signalr.net"
	appKey      = "the app's temporary key, which the sidecar never sees"
	appKid      = "app-kid-1"
	sidecarKey  = "the sidecar's own temporary key"
	sidecarKid  = "sidecar-kid-7"
	entraHeader = `{"alg":"HS256","kid":"` + appKid + `","typ":"JWT"}`
)

var entraNow = time.Unix(1_800_000_000, 0)

// entraClaims are the claims the SDK writes for an app that signs in with
// Microsoft Entra ID, as in the access-key case: system claims, then nbf,
// exp, iat, then aud.
func entraClaims(extra string) string {
	n := entraNow.Unix()
	return fmt.Sprintf(`{%s"nbf":%d,"exp":%d,"iat":%d,"aud":"https://%s/client/?hub=chat"}`, extra, n, n+3600, n, entraHost)
}

func entraBody(tok string) []byte {
	return []byte(`{"url":"https://` + entraHost + `/client/?hub=chat","accessToken":"` + tok + `"}`)
}

func newEntraRewriter(t *testing.T, src KeySource) *Rewriter {
	t.Helper()
	r, err := New(SignalR(), []Key{
		{Hosts: []string{"fake.service.signalr.net"}, Secret: []byte(fakeAccessKey), Endpoint: "https://fake.service.signalr.net"},
		{Hosts: []string{entraHost}, Source: src, Endpoint: "https://" + entraHost},
	}, Options{Now: func() time.Time { return entraNow }})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func segment(t *testing.T, tok string, i int) string {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[i])
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestEntraTokenSignedWithTheSidecarsKey is the heart of the mode: the app
// signs with a key the sidecar never saw, and the client gets the same
// token, user id added, signed with the sidecar's key under its kid.
func TestEntraTokenSignedWithTheSidecarsKey(t *testing.T) {
	r := newEntraRewriter(t, ownKey{key: SigningKey{ID: sidecarKid, Secret: []byte(sidecarKey)}})
	in := hs256(entraHeader, entraClaims(`"asrs.s.aut":"Bearer",`), appKey)
	out, err := r.Rewrite(entraBody(in), Caller{UserID: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	var body struct{ URL, AccessToken string }
	if err := json.Unmarshal(out, &body); err != nil {
		t.Fatal(err)
	}
	tok := body.AccessToken
	if got, want := segment(t, tok, 0), `{"alg":"HS256","kid":"`+sidecarKid+`","typ":"JWT"}`; got != want {
		t.Errorf("header %s, want %s (the kid replaced, all else kept)", got, want)
	}
	if got, want := segment(t, tok, 1), entraClaims(`"asrs.s.uid":"alice","asrs.s.aut":"Bearer",`); got != want {
		t.Errorf("claims\n%s\nwant\n%s", got, want)
	}
	parts := strings.Split(tok, ".")
	if hs256(segment(t, tok, 0), segment(t, tok, 1), sidecarKey) != tok {
		t.Error("the token is not signed with the sidecar's key")
	}
	if hs256(segment(t, tok, 0), segment(t, tok, 1), appKey) == tok || len(parts) != 3 {
		t.Error("the token is still signed with the app's key")
	}
	if body.URL != "https://"+entraHost+"/client/?hub=chat" {
		t.Errorf("url changed: %s", body.URL)
	}
}

// TestEntraTokenWithTheSidecarsKid is verified as an access key's would be:
// the header is kept byte for byte, and a wrong signature is refused.
func TestEntraTokenWithTheSidecarsKid(t *testing.T) {
	r := newEntraRewriter(t, ownKey{key: SigningKey{ID: sidecarKid, Secret: []byte(sidecarKey)}})
	header := `{"alg":"HS256","typ":"JWT","kid":"` + sidecarKid + `"}`
	out, err := r.Rewrite(entraBody(hs256(header, entraClaims(""), sidecarKey)), Caller{UserID: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), base64.RawURLEncoding.EncodeToString([]byte(header))+".") {
		t.Error("the header was not kept byte for byte")
	}
	_, err = r.Rewrite(entraBody(hs256(header, entraClaims(""), appKey)), Caller{UserID: "bob"})
	if re := (*Error)(nil); !errors.As(err, &re) || re.Reason != ReasonSignature {
		t.Errorf("a token with the sidecar's kid and another key's signature: %v, want %s", err, ReasonSignature)
	}
}

func TestEntraRefusals(t *testing.T) {
	n := entraNow.Unix()
	claimsWith := func(nbf, exp, iat int64, aud string) string {
		return fmt.Sprintf(`{"nbf":%d,"exp":%d,"iat":%d,"aud":%q}`, nbf, exp, iat, aud)
	}
	aud := "https://" + entraHost + "/client/?hub=chat"
	body := func(url, tok string) []byte {
		return []byte(`{"url":"` + url + `","accessToken":"` + tok + `"}`)
	}
	tests := []struct {
		name   string
		src    KeySource
		body   []byte
		reason Reason
		msg    string
	}{
		{"no key of its own yet", ownKey{err: errors.New("the key API answered 403")}, entraBody(hs256(entraHeader, entraClaims(""), appKey)),
			ReasonNoKey, "no key of the sidecar's own for https://" + entraHost + ": the key API answered 403"},
		{"HS512", nil, entraBody(hs256(`{"alg":"HS512","kid":"k","typ":"JWT"}`, entraClaims(""), appKey)),
			ReasonUnverified, "must be HS256"},
		{"a jku in the header", nil, entraBody(hs256(`{"alg":"HS256","kid":"k","jku":"https://evil"}`, entraClaims(""), appKey)),
			ReasonUnverified, `the header has "jku"`},
		{"no kid", nil, entraBody(hs256(`{"alg":"HS256","typ":"JWT"}`, entraClaims(""), appKey)),
			ReasonUnverified, "the header has no kid"},
		{"typ not JWT", nil, entraBody(hs256(`{"alg":"HS256","kid":"k","typ":"at+jwt"}`, entraClaims(""), appKey)),
			ReasonUnverified, "typ is not"},
		{"aud without the hub", nil, entraBody(hs256(entraHeader, claimsWith(n, n+60, n, "https://"+entraHost+"/client/"), appKey)),
			ReasonUnverified, "the aud is not of the form"},
		{"aud with another path", nil, entraBody(hs256(entraHeader, claimsWith(n, n+60, n, "https://"+entraHost+"/api/v1/hubs/chat"), appKey)),
			ReasonUnverified, "the aud is not of the form"},
		{"aud with a second parameter", nil, entraBody(hs256(entraHeader, claimsWith(n, n+60, n, aud+"&x=1"), appKey)),
			ReasonUnverified, "the aud is not of the form"},
		{"no url in the body", nil, []byte(`{"accessToken":"` + hs256(entraHeader, entraClaims(""), appKey) + `"}`),
			ReasonUnverified, "the body has no client URL"},
		{"url for another hub", nil, body("https://"+entraHost+"/client/?hub=admin", hs256(entraHeader, entraClaims(""), appKey)),
			ReasonUnverified, "does not send clients to the hub"},
		{"url for another host", nil, body("https://elsewhere.example/client/?hub=chat", hs256(entraHeader, entraClaims(""), appKey)),
			ReasonUnverified, `the body's url names "elsewhere.example"`},
		{"a second client URL for another host", nil, []byte(`{"url":"https://` + entraHost + `/client/?hub=chat","Url":"https://elsewhere.example/client/?hub=chat","accessToken":"` + hs256(entraHeader, entraClaims(""), appKey) + `"}`),
			ReasonUnverified, "the body's Url does not send clients to the endpoint"},
		{"a second client URL for another hub", nil, []byte(`{"url":"https://` + entraHost + `/client/?hub=chat","Url":"https://` + entraHost + `/client/?hub=admin","accessToken":"` + hs256(entraHeader, entraClaims(""), appKey) + `"}`),
			ReasonUnverified, "the body's Url does not send clients to the hub"},
		{"no exp", nil, entraBody(hs256(entraHeader, fmt.Sprintf(`{"nbf":%d,"aud":%q}`, n, aud), appKey)),
			ReasonUnverified, "no numeric exp"},
		{"expired", nil, entraBody(hs256(entraHeader, claimsWith(n-7200, n-1, n-7200, aud), appKey)),
			ReasonUnverified, "the token expired"},
		{"issued in the future", nil, entraBody(hs256(entraHeader, claimsWith(n, n+3600, n+3600, aud), appKey)),
			ReasonUnverified, "iat is in the future"},
		{"a lifetime over a day", nil, entraBody(hs256(entraHeader, claimsWith(n, n+25*3600, n, aud), appKey)),
			ReasonUnverified, "would live longer than 24h0m0s"},
		{"an asrs.s. claim the SDK never writes", nil, entraBody(hs256(entraHeader, entraClaims(`"asrs.s.apn":"x",`), appKey)),
			ReasonUnverified, `the claim "asrs.s.apn"`},
		// Readers that look claims up without regard to case (.NET's
		// ClaimsIdentity.FindFirst does) would find these first.
		{"the user claim in capitals, naming another user", nil, entraBody(hs256(entraHeader, entraClaims(`"ASRS.S.UID":"victim","asrs.s.uid":"mallory",`), appKey)),
			ReasonUnverified, `the claim "ASRS.S.UID" is not spelt as the SDK writes it`},
		{"a system claim in mixed case", nil, entraBody(hs256(entraHeader, entraClaims(`"Asrs.S.apn":"x",`), appKey)),
			ReasonUnverified, `the claim "Asrs.S.apn" is not spelt as the SDK writes it`},
		{"a legacy user claim in capitals", nil, entraBody(hs256(entraHeader, entraClaims(`"NAMEID":"victim",`), appKey)),
			ReasonUnverified, `the claim "NAMEID" is not spelt as the SDK writes it`},
		{"an access-key endpoint's token with a wrong key", nil, []byte(`{"url":"https://fake.service.signalr.net/client/?hub=chat","accessToken":"` +
			hs256(`{"alg":"HS256","typ":"JWT"}`, claimsWith(n, n+60, n, "https://fake.service.signalr.net/client/?hub=chat"), appKey) + `"}`),
			ReasonSignature, "not signed by a configured access key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := tt.src
			if src == nil {
				src = ownKey{key: SigningKey{ID: sidecarKid, Secret: []byte(sidecarKey)}}
			}
			_, err := newEntraRewriter(t, src).Rewrite(tt.body, Caller{UserID: "mallory"})
			var re *Error
			if !errors.As(err, &re) || re.Reason != tt.reason || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("error %v, want reason %s and %q", err, tt.reason, tt.msg)
			}
			if strings.Contains(err.Error(), appKey) || strings.Contains(err.Error(), sidecarKey) {
				t.Error("the error shows a key")
			}
		})
	}
}

func TestEntraEndpoints(t *testing.T) {
	f := SignalR()
	env := map[string]string{
		"AzureSignalRConnectionString__serviceUri":             "https://fake-a.service.signalr.net",
		"AzureSignalRConnectionString__credential":             "ManagedIdentity",
		"AzureSignalRConnectionString__clientId":               "00000000-0000-0000-0000-00000000000a",
		"Azure__SignalR__Endpoints__west__serviceUri":          "https://fake-west.service.signalr.net",
		"Azure__SignalR__Endpoints__west__serverEndpoint":      "https://private-west.example",
		"Azure__SignalR__Endpoints__west__clientEndpoint":      "https://clients-west.example",
		"Azure__SignalR__Endpoints__east":                      "Endpoint=https://fake-east.service.signalr.net;AuthType=azure.app;TenantId=t;ClientId=c;ClientSecret=" + fakeAccessKey,
		"Azure__SignalR__Endpoints__north__clientId":           "no serviceUri: not a connection",
		"SOMETHING_ELSE__serviceUri":                           "https://not-the-apps.example",
		"Azure__SignalR__Endpoints__south__serviceUri__nested": "ignored",
	}
	list := f.FromEnv(env)
	var sources []string
	for _, n := range list {
		sources = append(sources, n.Source)
	}
	want := []string{"$AzureSignalRConnectionString__serviceUri", "$Azure__SignalR__Endpoints__east", "$Azure__SignalR__Endpoints__south__serviceUri__nested", "$Azure__SignalR__Endpoints__west__serviceUri"}
	if strings.Join(sources, " ") != strings.Join(want, " ") {
		t.Fatalf("sources %v, want %v", sources, want)
	}
	eps, err := f.Endpoints(list[:2:2])
	if err != nil {
		t.Fatal(err)
	}
	west, err := f.Endpoints(list[3:])
	if err != nil {
		t.Fatal(err)
	}
	eps = append(eps, west...)
	got := []string{}
	for _, e := range eps {
		got = append(got, fmt.Sprintf("%v %v %s %d key(s) %v keyURL=%s", e.Hosts, e.ClientHosts, e.URL, len(e.Keys), e.Entra, e.Entra.KeyURL()))
	}
	wantEps := []string{
		"[fake-a.service.signalr.net] [fake-a.service.signalr.net] https://fake-a.service.signalr.net 0 key(s) Endpoint=https://fake-a.service.signalr.net;credential=managedidentity;ClientId=00000000-0000-0000-0000-00000000000a keyURL=https://fake-a.service.signalr.net/api/v1/auth/accessKey",
		"[fake-east.service.signalr.net] [fake-east.service.signalr.net] https://fake-east.service.signalr.net 0 key(s) Endpoint=https://fake-east.service.signalr.net;AuthType=azure.app;ClientId=c;TenantId=t;ClientSecret=<redacted> keyURL=https://fake-east.service.signalr.net/api/v1/auth/accessKey",
		"[fake-west.service.signalr.net] [clients-west.example] https://fake-west.service.signalr.net 0 key(s) Endpoint=https://fake-west.service.signalr.net;ServerEndpoint=https://private-west.example keyURL=https://private-west.example/api/v1/auth/accessKey",
	}
	if strings.Join(got, "\n") != strings.Join(wantEps, "\n") {
		t.Errorf("endpoints\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantEps, "\n"))
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%d"} {
		if s := fmt.Sprintf(verb, eps[1].Entra); strings.Contains(s, fakeAccessKey) {
			t.Errorf("%s shows the client secret: %s", verb, s)
		}
	}
	keys := Keys(eps)
	if len(keys) != 3 || keys[0].Source != nil || keys[0].Secret != nil {
		t.Errorf("Keys: %+v; want three keys, Source left for the caller to set", keys)
	}
}

// TestIdentitySettingsInTwoSpellings: the Functions host reads settings
// without regard to case, with ':' for "__", and which of two spellings
// of one setting wins is not defined. Two that differ are refused, rather
// than the sidecar reaching, on some starts, another endpoint or identity
// than the app; two that agree are one.
func TestIdentitySettingsInTwoSpellings(t *testing.T) {
	f := SignalR()
	for i := 0; i < 20; i++ { // map order varies from run to run
		_, err := f.Endpoints(f.FromEnv(map[string]string{
			"AzureSignalRConnectionString__serviceUri": "https://fake-a.service.signalr.net",
			"AZURESIGNALRCONNECTIONSTRING__SERVICEURI": "https://fake-b.service.signalr.net",
			"AzureSignalRConnectionString:clientId":    "00000000-0000-0000-0000-00000000000a",
		}))
		want := "$AZURESIGNALRCONNECTIONSTRING__serviceUri: AZURESIGNALRCONNECTIONSTRING__SERVICEURI and AzureSignalRConnectionString__serviceUri set the same setting with different values"
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("error %v, want one with %q", err, want)
		}
	}
	eps, err := f.Endpoints(f.FromEnv(map[string]string{
		"AzureSignalRConnectionString__serviceUri": "https://fake-a.service.signalr.net",
		"AzureSignalRConnectionString:serviceUri":  "https://fake-a.service.signalr.net",
		"AzureSignalRConnectionString__credential": "managedidentity",
	}))
	if err != nil || len(eps) != 1 || eps[0].Entra.Credential != "managedidentity" {
		t.Fatalf("one setting in two spellings with one value: %v, %v", eps, err)
	}
}
