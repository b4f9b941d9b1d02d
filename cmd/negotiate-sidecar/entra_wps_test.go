package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/negotiate-sidecar/negotiate-sidecar/rewrite/entra/entratest"
)

// wpsFixture is a Web PubSub app that connects with a managed identity: the
// stand-in identity endpoint (in the process environment, where azidentity
// reads it), the service's token API, and an app that asks the service for
// a client token for a user of its own choosing, with roles and groups, and
// returns the binding's body.
type wpsFixture struct {
	issuer   *entratest.Issuer
	svc      *entratest.WebPubSub
	identity entratest.Identity // the sidecar's, through the identity endpoint
	app      *httptest.Server
	// forge, when set, makes the app return a token of its own making with
	// an extra claim instead of the service's.
	forge bool
}

var (
	wpsRoles  = []string{"webpubsub.joinLeaveGroup", "webpubsub.sendToGroup.lobby"}
	wpsGroups = []string{"lobby"}
)

func newWPSFixture(t *testing.T, grant bool) *wpsFixture {
	t.Helper()
	f := &wpsFixture{}
	f.issuer, f.identity = podIdentity(t)
	f.svc = entratest.NewWebPubSub(f.issuer)
	t.Cleanup(f.svc.Close)
	if grant {
		f.svc.Grant(f.identity.ObjectID)
	}
	appID := entratest.NewIdentity(f.identity.TenantID)
	f.svc.Grant(appID.ObjectID)
	f.app = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := f.appToken(t, appID)
		base := f.svc.ClientURL("chat")
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"baseUrl":%q,"url":%q,"accessToken":%q}`, base, base+"?access_token="+tok, tok)
	}))
	t.Cleanup(f.app.Close)
	return f
}

// appToken is what the Functions extension gets from the service for the
// app: a token for a user the app chose, which the sidecar must replace.
func (f *wpsFixture) appToken(t *testing.T, appID entratest.Identity) string {
	if f.forge {
		now := time.Now().Unix()
		s, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "admin", "webpubsub.superuser": true,
			"nbf": now, "exp": now + 3600, "iat": now, "aud": f.svc.ClientAudience("chat")}).SignedString([]byte("the app's guess"))
		return s
	}
	q := url.Values{"api-version": {"2024-12-01"}, "userId": {"chosen-by-the-app"}, "role": wpsRoles, "group": wpsGroups, "minutesToExpire": {"60"}}
	req, _ := http.NewRequest(http.MethodPost, f.svc.URL()+"/api/hubs/chat/:generateToken?"+q.Encode(), nil)
	var answer struct{ Token string }
	if err := callAsApp(req, f.issuer.Issue(appID, entratest.WebPubSubResource, time.Hour), &answer); err != nil {
		t.Errorf("the app's token: %v", err)
	}
	return answer.Token
}

func (f *wpsFixture) start(t *testing.T, idp *testIDP) *running {
	t.Helper()
	return startRun(t, map[string]string{"WebPubSubConnectionString__serviceUri": f.svc.URL(), "WebPubSubConnectionString__credential": "managedidentity"},
		"--service", "webpubsub", "--upstream", f.app.URL, "--issuer", idp.URL, "--audience", "api://app")
}

// waitLog waits for text in the buffered logs.
func waitLog(r *running, text string) bool {
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if strings.Contains(r.logs.String(), text) {
			return true
		}
	}
	return false
}

// TestRunWebPubSubWithMicrosoftEntraID: the service signed the app's token
// with a key nobody else holds; the sidecar asks it, with the pod's managed
// identity, for a token for the verified user with the app's roles and
// groups, and the service accepts that token.
func TestRunWebPubSubWithMicrosoftEntraID(t *testing.T) {
	f := newWPSFixture(t, true)
	idp := newTestIDP(t)
	r := f.start(t, idp)
	waitStatus(t, r.admin+"/readyz", 200)

	var out struct{ BaseURL, URL, AccessToken string }
	negotiateOK(t, r, idp.mint(t, "user-7"), &out)
	claims, err := f.svc.VerifyClientToken(out.AccessToken, "chat")
	if err != nil {
		t.Fatalf("the service refuses the client's token: %v", err)
	}
	asStrings := func(v any) []string {
		var s []string
		b, _ := json.Marshal(v)
		_ = json.Unmarshal(b, &s)
		return s
	}
	if claims["sub"] != "user-7" || !slices.Equal(asStrings(claims["role"]), wpsRoles) || !slices.Equal(asStrings(claims["webpubsub.group"]), wpsGroups) {
		t.Errorf("claims %v; want sub user-7 with the app's roles and groups", claims)
	}
	if out.URL != f.svc.ClientURL("chat")+"?access_token="+out.AccessToken || out.BaseURL != f.svc.ClientURL("chat") {
		t.Errorf("url %s, baseUrl %s", out.URL, out.BaseURL)
	}
	call := f.svc.LastCall()
	if call.Caller != f.identity || call.UserID != "user-7" || call.MinutesToExpire < 59 || call.MinutesToExpire > 60 {
		t.Errorf("the service was asked %+v; want the sidecar's identity asking for user-7 for the app token's minutes", call)
	}
	if !waitLog(r, `"outcome":"rewritten"`) || strings.Contains(r.logs.String(), out.AccessToken) {
		t.Errorf("want a rewritten line and no token in the logs:\n%s", r.logs)
	}
}

// TestRunWebPubSubWithoutTheRole: generateToken answers the sidecar 403, so
// the negotiate is refused with 502, reason issue, and the log says which
// role the identity lacks.
func TestRunWebPubSubWithoutTheRole(t *testing.T) {
	f := newWPSFixture(t, false)
	idp := newTestIDP(t)
	r := f.start(t, idp)
	waitStatus(t, r.admin+"/readyz", 200)
	code, body := negotiate(t, r.proxy+"/api/negotiate", idp.mint(t, "user-7"))
	if code != http.StatusBadGateway || strings.Contains(body, "eyJ") {
		t.Errorf("negotiate: %d %s; want 502 and no token", code, body)
	}
	if !waitLog(r, `"reason":"issue"`) || !strings.Contains(r.logs.String(), `answered 403: the identity lacks the \"Web PubSub Service Owner\" role`) {
		t.Errorf("the refusal is not logged with reason issue and the role:\n%s", r.logs)
	}
	if strings.Contains(r.logs.String(), "eyJ") {
		t.Error("the logs show a token")
	}
}

// TestRunWebPubSubRefusesAForgedToken: a body whose token the service could
// not have issued (a claim it never writes) is refused before the service
// is asked for anything.
func TestRunWebPubSubRefusesAForgedToken(t *testing.T) {
	f := newWPSFixture(t, true)
	f.forge = true
	idp := newTestIDP(t)
	r := f.start(t, idp)
	waitStatus(t, r.admin+"/readyz", 200)
	before := f.svc.Requests()
	code, body := negotiate(t, r.proxy+"/api/negotiate", idp.mint(t, "user-7"))
	if code != http.StatusBadGateway || strings.Contains(body, "eyJ") {
		t.Errorf("negotiate: %d %s; want 502 and no token", code, body)
	}
	if !waitLog(r, `"reason":"unverified"`) || !strings.Contains(r.logs.String(), `the claim \"webpubsub.superuser\"`) {
		t.Errorf("the refusal is not logged with reason unverified:\n%s", r.logs)
	}
	if n := f.svc.Requests(); n != before {
		t.Errorf("the sidecar asked the service %d time(s) for a forged body", n-before)
	}
}

func TestCheckWebPubSubWithMicrosoftEntraID(t *testing.T) {
	for _, grant := range []bool{true, false} {
		t.Run(fmt.Sprintf("role %v", grant), func(t *testing.T) {
			f := newWPSFixture(t, grant)
			idp := newTestIDP(t)
			var stdout syncBuffer
			env := map[string]string{"WebPubSubConnectionString__serviceUri": f.svc.URL(), "WebPubSubConnectionString__credential": "managedidentity"}
			err := run(context.Background(), []string{"check", "--service", "webpubsub", "--upstream", f.app.URL, "--issuer", idp.URL, "--audience", "api://app"}, environ(env), &stdout, io.Discard)
			out := reportSpaces.ReplaceAllString(stdout.String(), " ")
			host := strings.TrimPrefix(f.svc.URL(), "http://")
			want := "ok endpoint " + host + " Microsoft Entra ID as system-assigned managed identity (from $WebPubSubConnectionString__serviceUri): the service issued a client token"
			if !grant {
				want = "FAIL endpoint " + host + " " + f.svc.URL() + `/api/hubs/check/:generateToken answered 403: the identity lacks the "Web PubSub Service Owner" role on the Web PubSub resource`
			}
			if !strings.Contains(out, want) || (err == nil) != grant {
				t.Errorf("check returned %v; report lacks %q:\n%s", err, want, stdout.String())
			}
		})
	}
}
