package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/negotiate-sidecar/negotiate-sidecar/rewrite/entra"
	"github.com/negotiate-sidecar/negotiate-sidecar/rewrite/entra/entratest"
)

// entraFixture is an app that signs in with a managed identity: the stand-in
// identity endpoint (in the process environment, where azidentity reads
// it), the service's key API, and an app that gets a key of its own from
// the service and signs its negotiate answers with it.
type entraFixture struct {
	issuer   *entratest.Issuer
	svc      *entratest.Service
	identity entratest.Identity
	app      *httptest.Server
	appKid   string
}

func newEntraFixture(t *testing.T, grant bool) *entraFixture {
	t.Helper()
	f := &entraFixture{}
	f.issuer, f.identity = podIdentity(t)
	f.svc = entratest.NewService(f.issuer)
	t.Cleanup(f.svc.Close)
	if grant {
		f.svc.Grant(f.identity.ObjectID)
	}
	// The app's own key, fetched as the SDK fetches it; the sidecar never
	// sees it.
	f.svc.Grant("app-only")
	appID := f.identity
	appID.ObjectID = "app-only"
	req, _ := http.NewRequest(http.MethodGet, f.svc.URL()+entratest.AccessKeyPath, nil)
	var key struct{ KeyId, AccessKey string }
	if err := callAsApp(req, f.issuer.Issue(appID, entratest.SignalRResource, time.Hour), &key); err != nil {
		t.Fatalf("the app's key: %v", err)
	}
	f.appKid = key.KeyId
	f.app = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := time.Now().Unix()
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"nbf": now, "exp": now + 3600, "iat": now, "aud": f.svc.ClientAudience("chat")})
		tok.Header["kid"] = key.KeyId
		s, _ := tok.SignedString([]byte(key.AccessKey))
		w.Header().Set("Content-Type", "text/plain;charset=UTF-8")
		fmt.Fprintf(w, `{"url":%q,"accessToken":%q}`, f.svc.URL()+"/client/?hub=chat", s)
	}))
	t.Cleanup(f.app.Close)
	return f
}

func (f *entraFixture) start(t *testing.T, idp *testIDP) *running {
	t.Helper()
	return startRun(t, map[string]string{"AzureSignalRConnectionString": "Endpoint=" + f.svc.URL() + ";AuthType=azure.msi;Version=1.0;"},
		"--upstream", f.app.URL, "--issuer", idp.URL, "--audience", "api://app")
}

// podIdentity puts a stand-in managed identity endpoint, with a fresh
// issuer, in the process environment, where azidentity reads it, as the
// pod's, and returns the issuer and the identity.
func podIdentity(t *testing.T) (*entratest.Issuer, entratest.Identity) {
	t.Helper()
	entratest.IsolateEnv(t)
	issuer, id := entratest.NewIssuer(), entratest.NewIdentity("")
	mi := entratest.NewManagedIdentity(issuer, id)
	t.Cleanup(mi.Close)
	entratest.Setenv(t, mi.Env())
	return issuer, id
}

// callAsApp sends req with the app's Entra token and decodes the JSON
// answer into v, as the app's SDK asks the service for a key or a client
// token.
func callAsApp(req *http.Request, token string, v any) error {
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil || resp.StatusCode != 200 {
		return fmt.Errorf("%d %v", resp.StatusCode, err)
	}
	return nil
}

// negotiateOK negotiates through r with token and decodes the answer, which
// must be a 200, into out.
func negotiateOK(t *testing.T, r *running, token string, out any) {
	t.Helper()
	code, body := negotiate(t, r.proxy+"/api/negotiate", token)
	if code != 200 {
		t.Fatalf("negotiate: %d %s\n%s", code, body, r.logs)
	}
	if err := json.Unmarshal([]byte(body), out); err != nil {
		t.Fatal(err)
	}
}

// TestRunWithMicrosoftEntraID: the sidecar gets its own key with the pod's
// managed identity, and a negotiate answer the app signed with a key the
// sidecar never saw reaches the client signed with the sidecar's key, for
// the verified user, accepted by the service.
func TestRunWithMicrosoftEntraID(t *testing.T) {
	f := newEntraFixture(t, true)
	idp := newTestIDP(t)
	r := f.start(t, idp)
	waitStatus(t, r.admin+"/readyz", 200)

	var out struct{ URL, AccessToken string }
	negotiateOK(t, r, idp.mint(t, "user-7"), &out)
	claims, err := f.svc.VerifyClientToken(out.AccessToken, "chat")
	if err != nil {
		t.Fatalf("the service refuses the client's token: %v", err)
	}
	if claims["asrs.s.uid"] != "user-7" {
		t.Errorf("asrs.s.uid = %v, want user-7", claims["asrs.s.uid"])
	}
	header, _ := base64.RawURLEncoding.DecodeString(strings.Split(out.AccessToken, ".")[0])
	var h struct{ Kid string }
	_ = json.Unmarshal(header, &h)
	if h.Kid == f.appKid || h.Kid == "" {
		t.Errorf("the client's token has kid %q, the app's is %q: want the sidecar's own", h.Kid, f.appKid)
	}

	_, metrics := get(t, r.admin+"/metrics")
	for _, want := range []string{
		`negotiate_sidecar_entra_key_age_seconds{endpoint="` + f.svc.URL() + `"}`,
		`negotiate_sidecar_entra_key_fetches_total{endpoint="` + f.svc.URL() + `",result="success"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if !strings.Contains(r.logs.String(), `"msg":"got a key from the service"`) {
		t.Errorf("no log line for the key:\n%s", r.logs)
	}
	if strings.Contains(r.logs.String(), out.AccessToken) {
		t.Error("the logs show a token")
	}
}

// TestRunWithoutTheRole: the key API answers 403, so the sidecar is not
// ready, says why, and refuses negotiates without passing the app's token on.
func TestRunWithoutTheRole(t *testing.T) {
	f := newEntraFixture(t, false)
	idp := newTestIDP(t)
	r := f.start(t, idp)
	waitStatus(t, idp.URL+"/.well-known/openid-configuration", 200)
	deadline := time.Now().Add(10 * time.Second)
	var body string
	for time.Now().Before(deadline) {
		var code int
		if code, body = get(t, r.admin+"/readyz"); code == 503 && strings.Contains(body, "SignalR App Server") {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(body, `answered 403: the identity lacks the "SignalR App Server" role`) {
		t.Fatalf("/readyz: %s", body)
	}
	code, nbody := negotiate(t, r.proxy+"/api/negotiate", idp.mint(t, "user-7"))
	if code != http.StatusServiceUnavailable || strings.Contains(nbody, "eyJ") {
		t.Errorf("negotiate: %d %s; want 503 and no token", code, nbody)
	}
	// Access logs are buffered: wait for the line.
	if !waitLog(r, `"reason":"no_key"`) {
		t.Errorf("the refusal is not logged with reason no_key:\n%s", r.logs)
	}
}

func TestCheckMicrosoftEntraID(t *testing.T) {
	for _, grant := range []bool{true, false} {
		t.Run(fmt.Sprintf("role %v", grant), func(t *testing.T) {
			f := newEntraFixture(t, grant)
			idp := newTestIDP(t)
			var stdout syncBuffer
			env := map[string]string{"AzureSignalRConnectionString__serviceUri": f.svc.URL(), "AzureSignalRConnectionString__credential": "managedidentity"}
			err := run(context.Background(), []string{"check", "--upstream", f.app.URL, "--issuer", idp.URL, "--audience", "api://app"}, environ(env), &stdout, io.Discard)
			out := reportSpaces.ReplaceAllString(stdout.String(), " ")
			host := strings.TrimPrefix(f.svc.URL(), "http://")
			want := "ok endpoint " + host + " Microsoft Entra ID as system-assigned managed identity (from $AzureSignalRConnectionString__serviceUri): got key"
			if !grant {
				want = "FAIL endpoint " + host + " " + f.svc.URL() + `/api/v1/auth/accessKey answered 403: the identity lacks the "SignalR App Server" role on the SignalR resource; assign it (role assignments take up to 30 minutes to apply)` +
					"\n -> assign the identity the \"SignalR App Server\" role"
			}
			if !strings.Contains(out, want) || (err == nil) != grant {
				t.Errorf("check returned %v; report lacks %q:\n%s", err, want, stdout.String())
			}
		})
	}
}

// TestSignInHint: when the identity gets no Microsoft Entra token, check's
// advice fits the kind of identity the settings chose.
func TestSignInHint(t *testing.T) {
	tests := []struct{ identity, want string }{
		{"workload identity with client id c", "federated credential names the cluster's OIDC issuer"},
		{"workload identity with client id c, then managed identity with client id c", "federated credential"},
		{"system-assigned managed identity", "the managed identity endpoint gave no token"},
		{"managed identity with client id c", "the managed identity endpoint gave no token"},
		{"service principal c of tenant t (client secret)", "check TenantId, ClientId"},
		{"DefaultAzureCredential", "in AKS check the workload identity label"},
	}
	for _, tt := range tests {
		err := fmt.Errorf("fetching: %w", &entra.TokenError{Identity: tt.identity, Err: errors.New("refused")})
		if got := entraHint(err); !strings.Contains(got, tt.want) {
			t.Errorf("hint for %s: %q, want one with %q", tt.identity, got, tt.want)
		}
	}
}
