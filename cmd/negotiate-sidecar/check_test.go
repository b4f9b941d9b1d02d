package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/negotiate-sidecar/negotiate-sidecar/auth/authtest"
)

// checkFixture is what check talks to: an identity provider, a second one,
// the app, a URL where nothing listens and a URL that serves a web page.
type checkFixture struct {
	idp, idp2 *testIDP
	app       *httptest.Server
	dead      string
	html      *httptest.Server
	dir       string
}

func newCheckFixture(t *testing.T) *checkFixture {
	t.Helper()
	f := &checkFixture{idp: newTestIDP(t), idp2: newTestIDP(t), dir: t.TempDir()}
	f.app = httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(f.app.Close)
	f.html = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, "<!doctype html><html><body>Sign in</body></html>")
	}))
	t.Cleanup(f.html.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.dead = "http://" + ln.Addr().String()
	ln.Close()
	return f
}

// replace fills in the fixture's addresses in an expected line.
func (f *checkFixture) replace(s string) string {
	return strings.NewReplacer(
		"{idp}", f.idp.URL,
		"{idp-host}", strings.TrimPrefix(f.idp.URL, "http://"),
		"{idp2}", f.idp2.URL,
		"{idp2-host}", strings.TrimPrefix(f.idp2.URL, "http://"),
		"{app}", f.app.URL,
		"{dead}", f.dead,
		"{html}", f.html.URL,
		"{dead-host}", strings.TrimPrefix(f.dead, "http://"),
		"{dir}", f.dir,
	).Replace(s)
}

// mintToken mints a token signed with p's key, from claims over the defaults
// (iss p, aud api://app, sub user-7, exp in an hour). A nil claim is left
// out.
func mintToken(t *testing.T, p *testIDP, claims jwt.MapClaims) string {
	t.Helper()
	return mintSigned(p.URL, p.Key(), claims)
}

// mintSigned is mintToken for the issuer iss, signed with key.
func mintSigned(iss string, key authtest.Key, claims jwt.MapClaims) string {
	all := jwt.MapClaims{"iss": iss, "aud": "api://app", "sub": "user-7", "exp": time.Now().Add(time.Hour).Unix()}
	for k, v := range claims {
		if v == nil {
			delete(all, k)
		} else {
			all[k] = v
		}
	}
	return key.Sign(nil, all)
}

func TestCheck(t *testing.T) {
	const hintNoDiscovery = "-> the issuer URL has no discovery document; check the issuer, or give the JWKS location with --jwks-url"
	const hintIssuerExactly = "-> set issuer to the iss value your tokens carry, exactly, trailing slash included"
	const hintUnreachable = "-> check the URL and that this machine (and the pod) can reach it; the sidecar keeps retrying, but refuses negotiate until keys load"
	const hintNotJWKS = "-> the URL does not serve a JWKS; check --jwks-url"
	expired := time.Now().Add(-time.Hour).Truncate(time.Second)
	otherKey := authtest.NewECKey("rotated")

	tests := []struct {
		name string
		// args and env are added to a good configuration:
		// NEGOTIATE_SIDECAR_UPSTREAM={app}, NEGOTIATE_SIDECAR_ISSUER={idp},
		// --audience api://app and AzureSignalRConnectionString with a fake
		// key. A flag overrides the variable; --audience adds one.
		args    func(t *testing.T, f *checkFixture) []string
		env     map[string]string
		noBase  bool     // args give the whole command line
		want    []string // lines or parts of lines of the report, in order
		wantErr bool
	}{
		{
			name: "all good",
			want: []string{
				"ok configuration read from flags and environment: 1 provider(s), service signalr",
				`ok provider "{idp-host}" 1 key(s) from discovery at {idp}/.well-known/openid-configuration; issuer {idp}, audiences api://app, user claim "sub"`,
				"ok endpoint fake.service.signalr.net 1 key(s), from $AzureSignalRConnectionString; tokens the app's SDK issues for it are accepted",
				"ok upstream {app} answered 404 Not Found in ",
				"\nAll checks passed.\n",
			},
		},
		{
			name: "explicit JWKS URL",
			args: func(t *testing.T, f *checkFixture) []string { return []string{"--jwks-url", f.idp.URL + "/keys"} },
			want: []string{`ok provider "{idp-host}" 1 key(s) from JWKS {idp}/keys; issuer {idp}`, "All checks passed."},
		},
		{
			name: "static JWKS file",
			args: func(t *testing.T, f *checkFixture) []string {
				return []string{"--issuer", "https://offline.example.test/", "--jwks-file", "testdata/jwks.json"}
			},
			want: []string{`ok provider "offline.example.test" 1 key(s) from JWKS file testdata/jwks.json; issuer https://offline.example.test/`, "All checks passed."},
		},
		{
			name: "wrong issuer URL: no discovery document",
			args: func(t *testing.T, f *checkFixture) []string { return []string{"--issuer", f.idp.URL + "/tenant"} },
			want: []string{
				`FAIL provider "{idp-host}" discovery {idp}/tenant/.well-known/openid-configuration: status 404 Not Found`,
				hintNoDiscovery,
				"ok upstream",
				"\n1 problem(s) found.\n",
			},
			wantErr: true,
		},
		{
			name: "discovery names another issuer",
			args: func(t *testing.T, f *checkFixture) []string { return []string{"--issuer", f.idp.URL + "/"} },
			want: []string{
				`FAIL provider "{idp-host}" discovery {idp}/.well-known/openid-configuration: the document names issuer "{idp}", not "{idp}/"`,
				hintIssuerExactly,
				"1 problem(s) found.",
			},
			wantErr: true,
		},
		{
			name: "JWKS URL unreachable",
			args: func(t *testing.T, f *checkFixture) []string { return []string{"--jwks-url", f.dead + "/keys"} },
			want: []string{
				`FAIL provider "{idp-host}" fetching JWKS {dead}/keys: Get "{dead}/keys": dial tcp `,
				hintUnreachable,
				"1 problem(s) found.",
			},
			wantErr: true,
		},
		{
			name: "JWKS URL serves a web page",
			args: func(t *testing.T, f *checkFixture) []string { return []string{"--jwks-url", f.html.URL} },
			want: []string{
				`FAIL provider "{idp-host}" fetching JWKS {html}: not a JWKS document: invalid character '<'`,
				hintNotJWKS,
				"1 problem(s) found.",
			},
			wantErr: true,
		},
		{
			name: "issuer not a URL, for discovery",
			args: func(t *testing.T, f *checkFixture) []string { return []string{"--issuer", "corp-idp"} },
			want: []string{
				`FAIL configuration provider "provider-1": issuer "corp-idp", from which OpenID Connect discovery finds the keys (no JWKS URL is given), must be an absolute http or https URL`,
				"1 problem(s) in the configuration; fix them and run check again.",
			},
			wantErr: true,
		},
		{
			name: "discovery names a JWKS over plain http",
			args: func(t *testing.T, f *checkFixture) []string {
				var srv *httptest.Server
				srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					fmt.Fprintf(w, `{"issuer":%q,"jwks_uri":"http://keys.example.test/keys"}`, srv.URL)
				}))
				t.Cleanup(srv.Close)
				return []string{"--issuer", srv.URL}
			},
			want: []string{
				`/.well-known/openid-configuration: jwks_uri "http://keys.example.test/keys" uses plain http to a host that is not loopback; use https, or set insecure_http: true (--insecure-http) for an identity provider inside the cluster`,
				"-> use https; only for an identity provider inside the cluster without TLS, set insecure_http: true (--insecure-http)",
				"1 problem(s) found.",
			},
			wantErr: true,
		},
		{
			name: "malformed connection string",
			env:  map[string]string{"AzureSignalRConnectionString": "AccessKey=" + fakeAccessKey + ";Version=1.0;"},
			want: []string{
				"FAIL configuration $AzureSignalRConnectionString: connection string: missing Endpoint (expected Endpoint=https://<name>.service.signalr.net;AccessKey=...)",
				"\n1 problem(s) in the configuration; fix them and run check again.\n",
			},
			wantErr: true,
		},
		{
			name: "Microsoft Entra ID connection string",
			env: map[string]string{
				"AzureSignalRConnectionString":    fakeConnectionString,
				"Azure__SignalR__Endpoints__west": "Endpoint=https://fake-west.service.signalr.net;AuthType=azure.app;ClientId=00000000-0000-0000-0000-000000000000;Version=1.0;",
			},
			want: []string{
				"FAIL configuration $Azure__SignalR__Endpoints__west: AuthType=azure.app needs ClientId, TenantId and ClientSecret or ClientCert (the path of a PEM certificate with its private key)",
				"1 problem(s) in the configuration; fix them and run check again.",
			},
			wantErr: true,
		},
		{
			name: "several configuration problems",
			args: func(t *testing.T, f *checkFixture) []string {
				return []string{"--algorithms", "HS256", "--service", "pubsub"}
			},
			want: []string{
				`FAIL configuration --service="pubsub": choose signalr or webpubsub`,
				`FAIL configuration --algorithms="HS256": "HS256" not accepted`,
				"2 problem(s) in the configuration; fix them and run check again.",
			},
			wantErr: true,
		},
		{
			name: "two endpoints, one with two keys",
			env: map[string]string{
				"Azure__SignalR__Endpoints__east__primary":   fakeConnString("https://fake-east.service.signalr.net", fakeAccessKey),
				"Azure__SignalR__Endpoints__east__secondary": fakeConnString("https://fake-east.service.signalr.net", secondFakeAccessKey),
			},
			want: []string{
				"ok endpoint fake.service.signalr.net 1 key(s), from $AzureSignalRConnectionString",
				"ok endpoint fake-east.service.signalr.net 2 key(s), from $Azure__SignalR__Endpoints__east__primary, $Azure__SignalR__Endpoints__east__secondary",
				"All checks passed.",
			},
		},
		{
			// The SDK writes no port in aud: http://127.0.0.1/client/?hub=...
			// for both, and the url tells them apart.
			name: "emulators on one host, the port in the Endpoint",
			env: map[string]string{
				"AzureSignalRConnectionString":      "",
				"Azure__SignalR__Endpoints__first":  fakeConnString("http://127.0.0.1:8081", fakeAccessKey),
				"Azure__SignalR__Endpoints__second": fakeConnString("http://127.0.0.1:8082", secondFakeAccessKey),
			},
			want: []string{
				"ok endpoint 127.0.0.1:8081 1 key(s), from $Azure__SignalR__Endpoints__first; tokens the app's SDK issues for it are accepted",
				"ok endpoint 127.0.0.1:8082 1 key(s), from $Azure__SignalR__Endpoints__second; tokens the app's SDK issues for it are accepted",
				"All checks passed.",
			},
		},
		{
			name: "two endpoints with one key, one host and one ClientEndpoint",
			env: map[string]string{
				"AzureSignalRConnectionString":      "",
				"Azure__SignalR__Endpoints__first":  fakeConnString("http://127.0.0.1:8081", fakeAccessKey, "ClientEndpoint=https://chat.example.test"),
				"Azure__SignalR__Endpoints__second": fakeConnString("http://127.0.0.1:8082", fakeAccessKey, "ClientEndpoint=https://chat.example.test"),
			},
			want: []string{
				"ok endpoint 127.0.0.1:8081 1 key(s), from $Azure__SignalR__Endpoints__first; tokens the app's SDK issues for it are accepted",
				"ok endpoint 127.0.0.1:8082 1 key(s), from $Azure__SignalR__Endpoints__second; tokens the app's SDK issues for it are accepted (indistinguishable from http://127.0.0.1:8081, which has the same key)",
				"All checks passed.",
			},
		},
		{
			name: "Web PubSub with Port",
			args: func(t *testing.T, f *checkFixture) []string { return []string{"--service", "webpubsub"} },
			env:  map[string]string{"WebPubSubConnectionString": fakeConnString("http://localhost", fakeAccessKey, "Port=8080")},
			want: []string{
				"ok endpoint localhost:8080 1 key(s), from $WebPubSubConnectionString; tokens the app's SDK issues for it are accepted",
				"All checks passed.",
			},
		},
		{
			name: "AuthType with an AccessKey, which the SDK then ignores",
			env:  map[string]string{"AzureSignalRConnectionString": fakeConnString("https://fake.service.signalr.net", fakeAccessKey, "AuthType=azure")},
			want: []string{
				"FAIL configuration $AzureSignalRConnectionString: AuthType=azure: the app's SignalR SDK ignores the AccessKey when AuthType is set, and signs in with Microsoft Entra ID; remove the AccessKey",
				"1 problem(s) in the configuration; fix them and run check again.",
			},
			wantErr: true,
		},
		{
			// Every negotiate would be refused with too_long.
			name: "the SDK's tokens exceed --max-token-length",
			args: func(t *testing.T, f *checkFixture) []string { return []string{"--max-token-length", "512"} },
			env:  map[string]string{"AzureSignalRConnectionString": fakeConnString("https://"+strings.Repeat("long-name-", 30)+"x.service.signalr.net", fakeAccessKey)},
			want: []string{
				"FAIL endpoint long-name-long-name-",
				"a token the app's SDK issues with the key from $AzureSignalRConnectionString would be refused: rewriting negotiate body (too_long): the rewritten token has ",
				"-> the app's tokens alone exceed --max-token-length; raise it, or leave it at 0 for the service's limit",
				"1 problem(s) found.",
			},
			wantErr: true,
		},
		{
			name: "upstream down",
			args: func(t *testing.T, f *checkFixture) []string { return []string{"--upstream", f.dead} },
			want: []string{
				`FAIL upstream {dead}: Get "{dead}": dial tcp `,
				"-> start the app, or point --upstream at the port it listens on in the pod",
				"1 problem(s) found.",
			},
			wantErr: true,
		},
		{
			name: "token accepted",
			args: func(t *testing.T, f *checkFixture) []string {
				return []string{"--token", mintToken(t, f.idp, jwt.MapClaims{"exp": time.Now().Add(10 * time.Minute).Unix()})}
			},
			want: []string{`ok token accepted by provider "{idp-host}": user id "user-7", expires in `, "All checks passed."},
		},
		{
			name: "token with Bearer prefix and a nested user claim",
			args: func(t *testing.T, f *checkFixture) []string {
				return []string{"--user-claim", "ext.user.id", "--token", "Bearer " + mintToken(t, f.idp, jwt.MapClaims{"ext": map[string]any{"user": map[string]any{"id": "nested-1"}}})}
			},
			want: []string{`ok token accepted by provider "{idp-host}": user id "nested-1", expires in `, "All checks passed."},
		},
		{
			name: "token for another audience",
			args: func(t *testing.T, f *checkFixture) []string {
				return []string{"--audience", "api://other", "--token", mintToken(t, f.idp, jwt.MapClaims{"aud": []string{"api://chat", "api://admin"}})}
			},
			want: []string{
				"FAIL token refused (audience): token has invalid claims: token has invalid audience",
				`-> the token's aud is [api://chat api://admin]; provider "{idp-host}" accepts api://app, api://other: add the token's audience with --audience, or request tokens for one of these`,
				"1 problem(s) found.",
			},
			wantErr: true,
		},
		{
			name: "token of an unknown issuer",
			args: func(t *testing.T, f *checkFixture) []string {
				return []string{"--token", mintToken(t, f.idp, jwt.MapClaims{"iss": "https://sts.example.test/"})}
			},
			want: []string{
				`FAIL token refused (issuer): issuer "https://sts.example.test/" is not configured`,
				`-> the token's iss is "https://sts.example.test/"; configured issuers: {idp}`,
			},
			wantErr: true,
		},
		{
			name: "expired token",
			args: func(t *testing.T, f *checkFixture) []string {
				return []string{"--token", mintToken(t, f.idp, jwt.MapClaims{"exp": expired.Unix()})}
			},
			want: []string{
				"FAIL token refused (expired): token has invalid claims: token is expired",
				"-> the token expired at " + expired.UTC().Format(time.RFC3339) + "; get a fresh one",
			},
			wantErr: true,
		},
		{
			name: "token without the user claim",
			args: func(t *testing.T, f *checkFixture) []string {
				return []string{"--user-claim", "oid", "--token", mintToken(t, f.idp, jwt.MapClaims{"name": "Ada"})}
			},
			want: []string{
				`FAIL token refused (user_claim): the token has no "oid" claim`,
				"-> choose --user-claim among the token's claims: aud, exp, iss, name, sub",
			},
			wantErr: true,
		},
		{
			name: "token signed with a key the provider does not have",
			args: func(t *testing.T, f *checkFixture) []string {
				return []string{"--token", mintSigned(f.idp.URL, otherKey, jwt.MapClaims{"sub": "x"})}
			},
			want: []string{
				"FAIL token refused (unknown_key): ",
				"-> the token's kid is not in the provider's JWKS: was it issued by another tenant or environment?",
			},
			wantErr: true,
		},
		{
			name: "token of an algorithm not accepted",
			args: func(t *testing.T, f *checkFixture) []string {
				return []string{"--algorithms", "RS256,PS256", "--token", mintToken(t, f.idp, nil)}
			},
			want: []string{
				"FAIL token refused (algorithm): ",
				"-> accepted algorithms: RS256,PS256",
			},
			wantErr: true,
		},
		{
			name: "token with a forged signature",
			args: func(t *testing.T, f *checkFixture) []string {
				forged := authtest.Key{ID: "k1", Method: jwt.SigningMethodES256, Signer: otherKey.Signer} // same iss and kid, another key
				return []string{"--token", mintSigned(f.idp.URL, forged, nil)}
			},
			want:    []string{"FAIL token refused (signature): ", "1 problem(s) found."},
			wantErr: true,
		},
		{
			name: "token with a critical header extension",
			args: func(t *testing.T, f *checkFixture) []string {
				tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{"iss": f.idp.URL, "aud": "api://app", "sub": "x", "exp": time.Now().Add(time.Hour).Unix()})
				tok.Header["kid"] = "k1"
				tok.Header["crit"] = []string{"b64"}
				tok.Header["b64"] = false
				s, err := tok.SignedString(f.idp.Key().Signer)
				if err != nil {
					t.Fatal(err)
				}
				return []string{"--token", s}
			},
			want: []string{
				`FAIL token refused (crit): the header has crit "[b64]", and no JWS extension is understood`,
				`-> the token's header has crit "[b64]": extensions the sidecar must understand, and it understands none; have the identity provider issue tokens without crit`,
				"1 problem(s) found.",
			},
			wantErr: true,
		},
		{
			name:    "not a token",
			args:    func(t *testing.T, f *checkFixture) []string { return []string{"--token", "not-a-jwt"} },
			want:    []string{"FAIL token refused (malformed): "},
			wantErr: true,
		},
		{
			name: "token when no provider loaded",
			args: func(t *testing.T, f *checkFixture) []string {
				return []string{"--issuer", f.dead, "--token", mintToken(t, f.idp, nil)}
			},
			want: []string{
				`FAIL provider "{dead-host}"`,
				"FAIL token no provider could be loaded, so the token cannot be judged",
				"-> fix the providers above first",
				"2 problem(s) found.",
			},
			wantErr: true,
		},
		{
			name:   "configuration file with two providers",
			noBase: true,
			args: func(t *testing.T, f *checkFixture) []string {
				return []string{"--config", writeCheckConfig(t, f, `
upstream: {app}
providers:
  - name: first
    issuer: {idp}
    audiences: [api://app]
  - name: second
    issuer: {idp2}
    audiences: [api://app]
    user_claim: email
`), "--token", mintToken(t, f.idp2, jwt.MapClaims{"email": "ada@example.test"})}
			},
			env: map[string]string{"AzureSignalRConnectionString": fakeConnectionString},
			want: []string{
				"ok configuration read from {dir}/config.yml, flags and environment: 2 provider(s), service signalr",
				`ok provider "first"`,
				`ok provider "second"`,
				`ok token accepted by provider "second": user id "ada@example.test"`,
				"All checks passed.",
			},
		},
		{
			// The sidecar refuses to start with two providers of one
			// issuer, so check must not pass them.
			name:   "two providers with one issuer",
			noBase: true,
			args: func(t *testing.T, f *checkFixture) []string {
				return []string{"--config", writeCheckConfig(t, f, `
upstream: {app}
providers:
  - name: first
    issuer: {idp}
    audiences: [api://app]
  - name: second
    issuer: {idp}
    audiences: [api://admin]
`)}
			},
			want:    []string{"FAIL configuration ", "problem(s) in the configuration; fix them and run check again."},
			wantErr: true,
		},
		{
			name:   "token of a provider that failed to load",
			noBase: true,
			args: func(t *testing.T, f *checkFixture) []string {
				return []string{"--config", writeCheckConfig(t, f, `
upstream: {app}
providers:
  - name: first
    issuer: {idp}
    audiences: [api://app]
  - name: second
    issuer: {idp2}/tenant
    audiences: [api://app]
`), "--token", mintToken(t, f.idp2, jwt.MapClaims{"iss": f.idp2.URL + "/tenant"})}
			},
			env: map[string]string{"AzureSignalRConnectionString": fakeConnectionString},
			want: []string{
				`ok provider "first"`,
				`FAIL provider "second" discovery {idp2}/tenant/.well-known/openid-configuration: status 404 Not Found`,
				hintNoDiscovery,
				`FAIL token refused (issuer): issuer "{idp2}/tenant" is not configured`,
				`-> the token's iss is "{idp2}/tenant"; configured issuers: {idp} (some providers failed to load above)`,
				"2 problem(s) found.",
			},
			wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newCheckFixture(t)
			args := []string{"check"}
			env := map[string]string{"AzureSignalRConnectionString": fakeConnectionString}
			if !tt.noBase {
				args = append(args, "--audience", "api://app")
				env["NEGOTIATE_SIDECAR_UPSTREAM"], env["NEGOTIATE_SIDECAR_ISSUER"] = f.app.URL, f.idp.URL
			}
			if tt.args != nil {
				args = append(args, tt.args(t, f)...)
			}
			for k, v := range tt.env {
				env[k] = v
				if v == "" {
					delete(env, k)
				}
			}
			var stdout, stderr syncBuffer
			err := run(context.Background(), args, environ(env), &stdout, &stderr)
			out := stdout.String()
			// Columns are padded to line up; the tests compare words.
			flat := reportSpaces.ReplaceAllString(out, " ")
			if (err != nil) != tt.wantErr {
				t.Errorf("check returned %v, want error: %v", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, errCheckFailed) {
				t.Errorf("check returned %v, want errCheckFailed", err)
			}
			rest := flat
			for _, w := range tt.want {
				w = f.replace(w)
				i := strings.Index(rest, w)
				if i < 0 {
					t.Errorf("report lacks, or has out of order:\n%s\nreport:\n%s", w, out)
					break
				}
				rest = rest[i+len(w):]
			}
			// Each line is a result, a hint under it, or the summary, so
			// that the report reads as a table.
			for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
				if line != "" && !strings.HasPrefix(line, "ok    ") && !strings.HasPrefix(line, "FAIL  ") && !strings.HasPrefix(line, "      ") && !reportSummary.MatchString(line) {
					t.Errorf("report line out of layout: %q\nreport:\n%s", line, out)
				}
			}
			if strings.Contains(out+stderr.String(), strings.TrimRight(fakeAccessKey, "=")) || strings.Contains(out+stderr.String(), strings.TrimRight(secondFakeAccessKey, "=")) {
				t.Errorf("the output shows an access key:\n%s\n%s", out, stderr.String())
			}
			for i, a := range args {
				if a == "--token" && i+1 < len(args) && strings.Contains(out, strings.TrimPrefix(args[i+1], "Bearer ")) {
					t.Error("the report shows the token")
				}
			}
			if stderr.String() != "" {
				t.Errorf("stderr: %s", stderr.String())
			}
		})
	}
}

var (
	reportSpaces  = regexp.MustCompile(` {2,}`)
	reportSummary = regexp.MustCompile(`^(All checks passed\.|\d+ problem\(s\) (found|in the configuration; fix them and run check again)\.)$`)
)

// writeCheckConfig writes a configuration file with the fixture's addresses.
func writeCheckConfig(t *testing.T, f *checkFixture, text string) string {
	t.Helper()
	p := filepath.Join(f.dir, "config.yml")
	if err := os.WriteFile(p, []byte(f.replace(text)), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheckCommandLine(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
		wantOut string // on stdout
	}{
		{"help", []string{"check", "--help"}, "", "--token JWT"},
		{"unknown flag", []string{"check", "--tokens", "x"}, "unknown flag --tokens (did you mean --token?); negotiate-sidecar check --help lists the flags", ""},
		{"stray argument", []string{"check", "now"}, `unexpected argument "now"; negotiate-sidecar check takes no arguments, and flags start with --`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr syncBuffer
			err := run(context.Background(), tt.args, nil, &stdout, &stderr)
			if got := errString(err); got != tt.wantErr {
				t.Errorf("error %q, want %q", got, tt.wantErr)
			}
			if !strings.Contains(stdout.String(), tt.wantOut) || (tt.wantOut == "" && stdout.String() != "") {
				t.Errorf("stdout, want %q in it:\n%s", tt.wantOut, stdout.String())
			}
			if stderr.String() != "" {
				t.Errorf("stderr:\n%s", stderr.String())
			}
		})
	}
}
