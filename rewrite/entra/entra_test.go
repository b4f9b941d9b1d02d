package entra_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/negotiate-sidecar/negotiate-sidecar/rewrite"
	"github.com/negotiate-sidecar/negotiate-sidecar/rewrite/entra"
	"github.com/negotiate-sidecar/negotiate-sidecar/rewrite/entra/entratest"
)

// entraOf parses one connection as the sidecar does and returns its settings.
func entraOf(t *testing.T, ncs rewrite.NamedConnectionString) *rewrite.Entra {
	t.Helper()
	eps, err := rewrite.SignalR().Endpoints([]rewrite.NamedConnectionString{ncs})
	if err != nil {
		t.Fatal(err)
	}
	if len(eps) != 1 || eps[0].Entra == nil {
		t.Fatalf("endpoints %+v: want one reached with Microsoft Entra ID", eps)
	}
	return eps[0].Entra
}

// clientToken signs a client token with key as the SDK does in this mode.
func clientToken(svc *entratest.Service, key rewrite.SigningKey, hub string) string {
	enc := base64.RawURLEncoding.EncodeToString
	now := time.Now().Unix()
	header := enc([]byte(`{"alg":"HS256","kid":"` + key.ID + `","typ":"JWT"}`))
	claims := enc(fmt.Appendf(nil, `{"asrs.s.uid":"u","nbf":%d,"exp":%d,"iat":%d,"aud":%q}`, now, now+3600, now, svc.ClientAudience(hub)))
	mac := hmac.New(sha256.New, key.Secret)
	mac.Write([]byte(header + "." + claims))
	return header + "." + claims + "." + enc(mac.Sum(nil))
}

// fastRetries keeps azcore from waiting out its backoff on failures.
var fastRetries = policy.RetryOptions{MaxRetries: 1, RetryDelay: time.Millisecond, MaxRetryDelay: time.Millisecond}

// TestCredentialsGetTheSidecarAKey runs every way an app can sign in, as
// read from its settings, against the stand-ins: the credential Credential
// chooses gets an Entra token, the key API gives the sidecar a key, and the
// service accepts a client token signed with it.
func TestCredentialsGetTheSidecarAKey(t *testing.T) {
	issuer := entratest.NewIssuer()
	svc := entratest.NewService(issuer)
	defer svc.Close()
	system, user := entratest.NewIdentity(""), entratest.NewIdentity("")
	mi := entratest.NewManagedIdentity(issuer, system, user)
	defer mi.Close()
	ep := entratest.NewTokenEndpoint(issuer)
	defer ep.Close()
	cert, certKey := entratest.NewCertificate("sidecar")
	const subject = "system:serviceaccount:chat:app"
	app := entratest.App{Identity: entratest.NewIdentity(""), Secret: "app-secret~value", Certificate: cert, FederatedSubject: subject}
	ep.Register(app)
	for _, id := range []entratest.Identity{system, user, app.Identity} {
		svc.Grant(id.ObjectID)
	}
	certPath, err := entratest.WriteCertificatePEM(t.TempDir(), cert, certKey)
	if err != nil {
		t.Fatal(err)
	}
	tenant, client := app.Identity.TenantID, app.Identity.ClientID
	endpoint := "Endpoint=" + svc.URL() + ";Version=1.0;"
	identity := func(s map[string]string) rewrite.NamedConnectionString {
		s["serviceuri"] = svc.URL()
		return rewrite.NamedConnectionString{Source: "$AzureSignalRConnectionString__serviceUri", Identity: s}
	}
	tests := []struct {
		name     string
		conn     rewrite.NamedConnectionString
		env      map[string]string // besides the managed identity endpoint's
		wantDesc string
	}{
		{"azure.msi, system-assigned", rewrite.NamedConnectionString{Source: "cs", Value: endpoint + "AuthType=azure.msi"}, nil,
			"system-assigned managed identity"},
		{"azure.msi, user-assigned", rewrite.NamedConnectionString{Source: "cs", Value: endpoint + "AuthType=azure.msi;ClientId=" + user.ClientID}, nil,
			"managed identity with client id " + user.ClientID},
		{"aad with ClientId only: a managed identity", rewrite.NamedConnectionString{Source: "cs", Value: endpoint + "AuthType=aad;ClientId=" + user.ClientID}, nil,
			"managed identity with client id " + user.ClientID},
		{"azure.app with a client secret", rewrite.NamedConnectionString{Source: "cs", Value: endpoint + "AuthType=azure.app;TenantId=" + tenant + ";ClientId=" + client + ";ClientSecret=" + app.Secret},
			map[string]string{"AZURE_AUTHORITY_HOST": ep.AuthorityHost()}, "service principal " + client + " of tenant " + tenant + " (client secret)"},
		{"aad with a client certificate", rewrite.NamedConnectionString{Source: "cs", Value: endpoint + "AuthType=aad;TenantId=" + tenant + ";ClientId=" + client + ";ClientCert=" + certPath},
			map[string]string{"AZURE_AUTHORITY_HOST": ep.AuthorityHost()}, "service principal " + client + " of tenant " + tenant + " (certificate " + certPath + ")"},
		{"identity-based, managedidentity", identity(map[string]string{"credential": "managedidentity"}), nil,
			"system-assigned managed identity"},
		{"identity-based, managedidentity with a clientId", identity(map[string]string{"credential": "managedidentity", "clientid": user.ClientID}), nil,
			"managed identity with client id " + user.ClientID},
		{"identity-based, client secret", identity(map[string]string{"tenantid": tenant, "clientid": client, "clientsecret": app.Secret}),
			map[string]string{"AZURE_AUTHORITY_HOST": ep.AuthorityHost()}, "service principal " + client + " of tenant " + tenant + " (client secret)"},
		{"identity-based, workloadidentity from the webhook's environment", identity(map[string]string{"credential": "workloadidentity"}),
			map[string]string{"AZURE_AUTHORITY_HOST": ep.AuthorityHost(), "AZURE_TENANT_ID": tenant, "AZURE_CLIENT_ID": client, "AZURE_FEDERATED_TOKEN_FILE": "<token>"},
			"workload identity with client id " + client},
		{"identity-based, a clientId alone: that managed identity", identity(map[string]string{"clientid": user.ClientID}), nil,
			"managed identity with client id " + user.ClientID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			entratest.IsolateEnv(t)
			entratest.Setenv(t, mi.Env())
			env := map[string]string{}
			for k, v := range tt.env {
				if v == "<token>" {
					if v, err = ep.WriteFederatedToken(t.TempDir(), subject); err != nil {
						t.Fatal(err)
					}
				}
				env[k] = v
			}
			entratest.Setenv(t, env)
			opts := entra.Options{ClientOptions: azcore.ClientOptions{Transport: ep.Client(), Retry: fastRetries},
				DisableInstanceDiscovery: true, Getenv: func(k string) string { return env[k] }}
			e := entraOf(t, tt.conn)
			cred, desc, err := entra.Credential(e, opts)
			if err != nil {
				t.Fatal(err)
			}
			if desc != tt.wantDesc {
				t.Errorf("description %q, want %q", desc, tt.wantDesc)
			}
			src, err := entra.NewSource(entra.Config{Entra: e, Credential: cred, Description: desc})
			if err != nil {
				t.Fatal(err)
			}
			key, err := src.Fetch(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if got, err := src.SigningKey(); err != nil || got.ID != key.ID {
				t.Errorf("SigningKey() = %q, %v; want the key fetched, %q", got.ID, err, key.ID)
			}
			if _, err := svc.VerifyClientToken(clientToken(svc, key, "chat"), "chat"); err != nil {
				t.Errorf("the service refuses a token signed with the sidecar's key: %v", err)
			}
		})
	}
}

func TestCredentialErrors(t *testing.T) {
	entratest.IsolateEnv(t)
	tests := []struct {
		name string
		conn rewrite.NamedConnectionString
		want string
	}{
		{"a certificate store thumbprint", rewrite.NamedConnectionString{Source: "s", Identity: map[string]string{
			"serviceuri": "https://x.service.signalr.net", "tenantid": "t", "clientid": "c", "clientcertificate": "ABCDEF0123"}},
			"a Linux container does not have"},
		{"a missing certificate file", rewrite.NamedConnectionString{Source: "s", Value: "Endpoint=https://x.service.signalr.net;AuthType=azure.app;TenantId=t;ClientId=c;ClientCert=/nonexistent/cert.pem"},
			"ClientCert: open /nonexistent/cert.pem: no such file or directory (it names a PEM file holding the certificate and its private key)"},
		{"workload identity outside AKS", rewrite.NamedConnectionString{Source: "s", Identity: map[string]string{
			"serviceuri": "https://x.service.signalr.net", "credential": "workloadidentity"}},
			"workload identity: AZURE_CLIENT_ID (or the clientId setting), AZURE_TENANT_ID (or the tenantId setting), AZURE_FEDERATED_TOKEN_FILE (or the tokenFilePath setting) are not set; in AKS the workload identity webhook sets them in every container of a pod labelled azure.workload.identity/use"},
		{"workload identity without a token file", rewrite.NamedConnectionString{Source: "s", Identity: map[string]string{
			"serviceuri": "https://x.service.signalr.net", "credential": "workloadidentity", "clientid": "c", "tenantid": "t"}},
			"workload identity: AZURE_FEDERATED_TOKEN_FILE (or the tokenFilePath setting) is not set;"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := entra.Credential(entraOf(t, tt.conn), entra.Options{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one with %q", err, tt.want)
			}
		})
	}
}

// staticCredential hands out a fixed token, or fails, and counts calls.
type staticCredential struct {
	token string
	err   error
	calls atomic.Int32
}

func (c *staticCredential) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	c.calls.Add(1)
	return azcore.AccessToken{Token: c.token, ExpiresOn: time.Now().Add(time.Hour)}, c.err
}

func newSource(t *testing.T, keyAPI string, cred azcore.TokenCredential, now func() time.Time) *entra.Source {
	t.Helper()
	e := entraOf(t, rewrite.NamedConnectionString{Source: "cs", Value: "Endpoint=" + keyAPI + ";AuthType=azure.msi"})
	src, err := entra.NewSource(entra.Config{Entra: e, Credential: cred, Description: "test identity", Now: now, RetryDelay: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// grantedService is a key API that gives keys to the identity of token.
func grantedService(t *testing.T) (*entratest.Service, string) {
	t.Helper()
	issuer := entratest.NewIssuer()
	id := entratest.NewIdentity("")
	svc := entratest.NewService(issuer)
	t.Cleanup(svc.Close)
	svc.Grant(id.ObjectID)
	return svc, issuer.Issue(id, entratest.SignalRResource, 3*time.Hour)
}

// TestFetchFailures covers what goes wrong between the sidecar and the
// service, and that no failure leaks the key or the Entra token.
func TestFetchFailures(t *testing.T) {
	issuer := entratest.NewIssuer()
	id := entratest.NewIdentity("")
	token := issuer.Issue(id, entratest.SignalRResource, time.Hour)
	tests := []struct {
		name      string
		grant     bool
		status    int // forced on the service
		credErr   error
		wantErr   string
		wantCalls int // requests to the key API
	}{
		{"no role: 403, not retried", false, 0, nil, `answered 403: the identity lacks the "SignalR App Server" role on the SignalR resource; assign it (role assignments take up to 30 minutes to apply)`, 1},
		{"wrong endpoint: 404, not retried", true, http.StatusNotFound, nil, "answered 404: check the endpoint", 1},
		{"service unavailable: 503, retried", true, http.StatusServiceUnavailable, nil, "answered 503", 3},
		{"no Entra token", true, 0, errors.New("identity endpoint unreachable"), "getting a Microsoft Entra token for https://signalr.azure.com/.default as test identity: identity endpoint unreachable", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := entratest.NewService(issuer)
			defer svc.Close()
			if tt.grant {
				svc.Grant(id.ObjectID)
			}
			svc.SetStatus(tt.status)
			src := newSource(t, svc.URL(), &staticCredential{token: token, err: tt.credErr}, nil)
			_, err := src.Fetch(context.Background())
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one with %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), token) {
				t.Error("the error shows the Entra token")
			}
			if svc.Requests() != tt.wantCalls {
				t.Errorf("key API requests = %d, want %d", svc.Requests(), tt.wantCalls)
			}
			if _, kerr := src.SigningKey(); kerr == nil || !strings.Contains(kerr.Error(), tt.wantErr) {
				t.Errorf("SigningKey() error %v, want it to say why: %q", kerr, tt.wantErr)
			}
			if st := src.Status(); st.Failures != 1 || !st.Fetched.IsZero() || st.Err == nil {
				t.Errorf("status %+v, want one failure and no key", st)
			}
		})
	}
}

// TestIdentityEndpointDown: the managed identity endpoint fails, and the
// error says which identity could not sign in.
func TestIdentityEndpointDown(t *testing.T) {
	entratest.IsolateEnv(t)
	issuer := entratest.NewIssuer()
	svc := entratest.NewService(issuer)
	defer svc.Close()
	mi := entratest.NewManagedIdentity(issuer, entratest.NewIdentity(""))
	defer mi.Close()
	entratest.Setenv(t, mi.Env())
	mi.SetDown(true)
	e := entraOf(t, rewrite.NamedConnectionString{Source: "cs", Value: "Endpoint=" + svc.URL() + ";AuthType=azure.msi"})
	cred, desc, err := entra.Credential(e, entra.Options{ClientOptions: azcore.ClientOptions{Retry: fastRetries}})
	if err != nil {
		t.Fatal(err)
	}
	src, err := entra.NewSource(entra.Config{Entra: e, Credential: cred, Description: desc, RetryDelay: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	_, err = src.Fetch(context.Background())
	var te *entra.TokenError
	if !errors.As(err, &te) || !strings.Contains(err.Error(), "as system-assigned managed identity") {
		t.Fatalf("error %v, want a TokenError naming the identity", err)
	}
	if svc.Requests() != 0 {
		t.Errorf("the key API was asked %d times without a token", svc.Requests())
	}
}

func TestFetchRefusesBadAnswers(t *testing.T) {
	const key = "a-key-that-must-not-appear"
	tests := []struct{ name, body, want string }{
		{"not JSON", "<html>" + key, "the answer is not a JSON object"},
		{"no KeyId", `{"AccessKey":"` + key + `"}`, "the answer has no KeyId string"},
		{"keyId in camelCase", `{"keyId":"k","AccessKey":"` + key + `"}`, "the answer has no KeyId string"},
		{"empty AccessKey", `{"KeyId":"k","AccessKey":""}`, "the answer has no AccessKey string"},
		{"AccessKey not a string", `{"KeyId":"k","AccessKey":12}`, "the answer has no AccessKey string"},
		{"huge", `{"KeyId":"k","AccessKey":"` + strings.Repeat("k", 70<<10) + `"}`, "the answer is over 65536 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(tt.body)) }))
			defer srv.Close()
			_, err := newSource(t, srv.URL, &staticCredential{token: "t"}, nil).Fetch(context.Background())
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), key) {
				t.Fatalf("error %v, want %q and no key", err, tt.want)
			}
		})
	}
}

// TestKeyRefreshAndExpiry follows a key through the SDK's schedule: a new
// key replaces the old one, a failed refresh keeps the old one, and a key
// over two hours old is no longer used.
func TestKeyRefreshAndExpiry(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	svc, token := grantedService(t)
	src := newSource(t, svc.URL(), &staticCredential{token: token}, clock)

	first, err := src.Fetch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	now = now.Add(entra.RefreshInterval)
	second, err := src.Fetch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if second.ID == first.ID {
		t.Fatal("the refresh brought the same key")
	}
	if got, _ := src.SigningKey(); got.ID != second.ID {
		t.Errorf("SigningKey() = %q after the refresh, want %q", got.ID, second.ID)
	}

	svc.SetStatus(http.StatusInternalServerError)
	now = now.Add(entra.RefreshInterval)
	if _, err := src.Fetch(context.Background()); err == nil {
		t.Fatal("a refresh against a failing service succeeded")
	}
	if got, err := src.SigningKey(); err != nil || got.ID != second.ID {
		t.Errorf("after a failed refresh SigningKey() = %q, %v; want the last key, %q", got.ID, err, second.ID)
	}
	now = now.Add(entra.KeyLifetime - entra.RefreshInterval + time.Second)
	if _, err := src.SigningKey(); err == nil || !strings.Contains(err.Error(), "past the service's 2h0m0s") || !strings.Contains(err.Error(), "answered 500") {
		t.Errorf("a key past its lifetime: %v, want a refusal naming the lifetime and the last failure", err)
	}
}

func TestRunFetchesAtOnceAndStops(t *testing.T) {
	svc, token := grantedService(t)
	src := newSource(t, svc.URL(), &staticCredential{token: token}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); src.Run(ctx) }()
	select {
	case <-src.Loaded():
	case <-time.After(10 * time.Second):
		t.Fatal("no key within 10s")
	}
	if _, err := src.SigningKey(); err != nil {
		t.Error(err)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not stop with its context")
	}
}

func TestSourceRefusesPlainHTTPBeyondLoopback(t *testing.T) {
	e := entraOf(t, rewrite.NamedConnectionString{Source: "cs", Value: "Endpoint=http://x.service.signalr.net;AuthType=azure.msi"})
	_, err := entra.NewSource(entra.Config{Entra: e, Credential: &staticCredential{}})
	if err == nil || !strings.Contains(err.Error(), "must be https (http only on loopback)") {
		t.Fatalf("error %v", err)
	}
}

func TestPoolKeepsOneSourcePerIdentity(t *testing.T) {
	entratest.IsolateEnv(t)
	issuer := entratest.NewIssuer()
	svc := entratest.NewService(issuer)
	defer svc.Close()
	var fetched atomic.Int32
	p := entra.NewPool(context.Background(), nil, nil, entra.Options{}, func(string, error) { fetched.Add(1) })
	defer p.Close()
	a := entraOf(t, rewrite.NamedConnectionString{Source: "a", Value: "Endpoint=" + svc.URL() + ";AuthType=azure.app;TenantId=t;ClientId=c;ClientSecret=one"})
	again := entraOf(t, rewrite.NamedConnectionString{Source: "b", Value: "Endpoint=" + svc.URL() + ";AuthType=azure.app;TenantId=t;ClientId=c;ClientSecret=one"})
	rotated := entraOf(t, rewrite.NamedConnectionString{Source: "a", Value: "Endpoint=" + svc.URL() + ";AuthType=azure.app;TenantId=t;ClientId=c;ClientSecret=two"})
	s1, id1, err := p.Get(a)
	if err != nil {
		t.Fatal(err)
	}
	s2, id2, _ := p.Get(again)
	s3, id3, _ := p.Get(rotated)
	if s1 != s2 || id1 != id2 {
		t.Error("the same identity got two sources")
	}
	if s3 == s1 || id3 == id1 {
		t.Error("a rotated secret kept the old source")
	}
	p.Retain(map[string]bool{id1: true})
	if n := len(p.Sources()); n != 1 {
		t.Errorf("%d sources after Retain, want 1", n)
	}
}

// wpsEntra parses Web PubSub identity-based settings for endpoint as the
// sidecar does.
func wpsEntra(t *testing.T, endpoint string) *rewrite.Entra {
	t.Helper()
	eps, err := rewrite.WebPubSub().Endpoints([]rewrite.NamedConnectionString{{Source: "$WebPubSubConnectionString__serviceUri",
		Identity: map[string]string{"serviceuri": endpoint, "credential": "managedidentity"}}})
	if err != nil || len(eps) != 1 || eps[0].Entra == nil {
		t.Fatalf("endpoints %+v, %v", eps, err)
	}
	return eps[0].Entra
}

// TestTokenClientAsksTheService: with the pod's managed identity, the
// sidecar asks the Web PubSub service for a client token for the user,
// roles, groups and minutes given, and the service accepts the token.
func TestTokenClientAsksTheService(t *testing.T) {
	entratest.IsolateEnv(t)
	issuer := entratest.NewIssuer()
	svc := entratest.NewWebPubSub(issuer)
	defer svc.Close()
	id := entratest.NewIdentity("")
	mi := entratest.NewManagedIdentity(issuer, id)
	defer mi.Close()
	entratest.Setenv(t, mi.Env())
	svc.Grant(id.ObjectID)

	pool := entra.NewPool(context.Background(), nil, nil, entra.Options{}, nil)
	defer pool.Close()
	c, pid, err := pool.TokenClient(wpsEntra(t, svc.URL()))
	if err != nil {
		t.Fatal(err)
	}
	if again, pid2, _ := pool.TokenClient(wpsEntra(t, svc.URL())); again != c || pid2 != pid {
		t.Error("the pool made a second client for the same endpoint and identity")
	}
	req := rewrite.TokenRequest{Hub: "chat", UserID: "alice", Roles: []string{"webpubsub.joinLeaveGroup"}, Groups: []string{"lobby", "news"}, Minutes: 7}
	tok, err := c.IssueToken(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	claims, err := svc.VerifyClientToken(tok, "chat")
	if err != nil {
		t.Fatal(err)
	}
	if claims["sub"] != "alice" || fmt.Sprint(claims["role"]) != "[webpubsub.joinLeaveGroup]" || fmt.Sprint(claims["webpubsub.group"]) != "[lobby news]" {
		t.Errorf("claims %v", claims)
	}
	call := svc.LastCall()
	if call.Caller != id || call.MinutesToExpire != 7 || call.APIVersion != "2024-12-01" || call.ClientType != "default" {
		t.Errorf("the service was asked %+v", call)
	}
	pool.Retain(nil)
	if again, _, _ := pool.TokenClient(wpsEntra(t, svc.URL())); again == c {
		t.Error("Retain kept a client it was not told to keep")
	}
}

func TestTokenClientFailures(t *testing.T) {
	issuer := entratest.NewIssuer()
	svc := entratest.NewWebPubSub(issuer)
	defer svc.Close()
	id := entratest.NewIdentity("")
	bearer := issuer.Issue(id, entratest.WebPubSubResource, time.Hour)
	req := rewrite.TokenRequest{Hub: "chat", UserID: "alice", Minutes: 60}
	tests := []struct {
		name   string
		cred   azcore.TokenCredential
		status int
		want   string
	}{
		{"without the role", &staticCredential{token: bearer}, 0, `answered 403: the identity lacks the "Web PubSub Service Owner" role on the Web PubSub resource`},
		{"a token for SignalR", &staticCredential{token: issuer.Issue(id, entratest.SignalRResource, time.Hour)}, 0, "refused the identity's token (401)"},
		{"the service is down", &staticCredential{token: bearer}, http.StatusServiceUnavailable, "answered 503"},
		{"no Entra token", &staticCredential{err: errors.New("identity endpoint down")}, 0, "getting a Microsoft Entra token for https://webpubsub.azure.com/.default as test identity: identity endpoint down"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc.SetStatus(tt.status)
			c, err := entra.NewTokenClient(entra.IssuerConfig{Entra: wpsEntra(t, svc.URL()), Credential: tt.cred, Description: "test identity"})
			if err != nil {
				t.Fatal(err)
			}
			tok, err := c.IssueToken(context.Background(), req)
			if err == nil || tok != "" || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("IssueToken: %q, %v; want an error with %q", tok, err, tt.want)
			}
			if strings.Contains(err.Error(), "eyJ") || strings.Contains(err.Error(), "userId") {
				t.Errorf("the error shows a token or the query: %v", err)
			}
		})
	}

	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"token":""}`)
	}))
	defer bad.Close()
	c, _ := entra.NewTokenClient(entra.IssuerConfig{Entra: wpsEntra(t, bad.URL), Credential: &staticCredential{token: bearer}})
	if _, err := c.IssueToken(context.Background(), req); err == nil || !strings.Contains(err.Error(), "the answer has no token string") {
		t.Errorf("an empty token: %v", err)
	}
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer slow.Close()
	c, _ = entra.NewTokenClient(entra.IssuerConfig{Entra: wpsEntra(t, slow.URL), Credential: &staticCredential{token: bearer}})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.IssueToken(ctx, req); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a service slower than the negotiate's deadline: %v", err)
	}
	if _, err := entra.NewTokenClient(entra.IssuerConfig{Entra: wpsEntra(t, "http://wps.example"), Credential: &staticCredential{token: bearer}}); err == nil ||
		!strings.Contains(err.Error(), "must be https") {
		t.Errorf("plain http beyond loopback: %v", err)
	}
}

// TestNoRedirectCarriesTheBearerToken: the key API and the token API never
// redirect. Go's client follows a redirect to the same host name on
// another port or scheme with the Authorization header, so one that did,
// to plain http say, would hand the identity's Entra token to whatever
// listens there. A redirect is an answer like any other failure, and
// nothing reaches its target.
func TestNoRedirectCarriesTheBearerToken(t *testing.T) {
	const bearer = "the-identity's-entra-token"
	var reached atomic.Int32
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		if strings.Contains(r.Header.Get("Authorization"), bearer) {
			t.Errorf("the Entra token reached %s over plain http", r.URL)
		}
		fmt.Fprint(w, `{"KeyId":"k","AccessKey":"the attacker's key","token":"x.y.z"}`)
	}))
	defer elsewhere.Close()
	redirecting := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+r.URL.RequestURI(), http.StatusTemporaryRedirect)
	}))
	defer redirecting.Close()

	e := entraOf(t, rewrite.NamedConnectionString{Source: "cs", Value: "Endpoint=" + redirecting.URL + ";AuthType=azure.msi"})
	src, err := entra.NewSource(entra.Config{Entra: e, Credential: &staticCredential{token: bearer}, Client: redirecting.Client(), Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.Fetch(context.Background()); err == nil || !strings.Contains(err.Error(), "answered 307") {
		t.Errorf("the key API redirecting: %v, want it refused as an answer of 307", err)
	}
	c, err := entra.NewTokenClient(entra.IssuerConfig{Entra: wpsEntra(t, redirecting.URL), Credential: &staticCredential{token: bearer}, Client: redirecting.Client()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.IssueToken(context.Background(), rewrite.TokenRequest{Hub: "chat", UserID: "alice", Minutes: 1}); err == nil || !strings.Contains(err.Error(), "answered 307") {
		t.Errorf("the token API redirecting: %v, want it refused as an answer of 307", err)
	}
	if n := reached.Load(); n != 0 {
		t.Errorf("the redirect's target was asked %d times", n)
	}
}

// TestRunSaysWhenItTriesAgain: after a failed fetch, readiness's reason
// says when the next one comes.
func TestRunSaysWhenItTriesAgain(t *testing.T) {
	svc, token := grantedService(t)
	svc.SetStatus(http.StatusForbidden)
	src := newSource(t, svc.URL(), &staticCredential{token: token}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); src.Run(ctx) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := src.SigningKey()
		if err != nil && strings.Contains(err.Error(), "(next try in 5m0s)") && strings.Contains(err.Error(), "answered 403") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("SigningKey() error %v: want the 403 and when the next try comes", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
