package proxy

import (
	"bufio"
	"compress/gzip"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/negotiate-sidecar/negotiate-sidecar/rewrite"
)

// The attack corpus: one table of the ways a caller has got a token, or an
// identity, that was not its own, through JWT libraries and proxies. Each
// case names where the class is described (RFC 8725, "JSON Web Token Best
// Current Practices", and public advisories), is sent to the real handler in
// front of a stand-in app, and asserts both what reached the app and what
// came back to the caller.

// appAnswer is how the stand-in app answers every request in a case.
type appAnswer func(w http.ResponseWriter, r *http.Request)

// signalRApp answers as the negotiate binding does, for any method.
func signalRApp(w http.ResponseWriter, r *http.Request) { io.WriteString(w, negotiateBody(accessKey)) }

// tokenWithStatus answers every request with a valid service token, but with
// the given status, as a function that returns the binding's value from an
// error branch would.
func tokenWithStatus(status int) appAnswer {
	return func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(status)
		io.WriteString(w, negotiateBody(accessKey))
	}
}

// segment base64url-encodes a JWS segment.
func segment(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// callerClaims is a valid caller payload for the harness's provider.
func callerClaims(extra string) string {
	return fmt.Sprintf(`{"iss":%q,"aud":%q,"sub":"alice","exp":%d%s}`, issuer, audience, time.Now().Add(time.Minute).Unix(), extra)
}

// signES256 signs header.payload with key, as a JWS ES256 signature.
func signES256(t *testing.T, key *ecdsa.PrivateKey, header, payload string) string {
	t.Helper()
	unsigned := segment(header) + "." + segment(payload)
	sig, err := jwt.SigningMethodES256.Sign(unsigned, key)
	if err != nil {
		t.Fatal(err)
	}
	return unsigned + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func signHS256(secret []byte, header, payload string) string {
	unsigned := segment(header) + "." + segment(payload)
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(unsigned))
	return unsigned + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// reached says what the app must have seen.
type reached int

const (
	reachedNothing   reached = iota // the request never reached the app
	reachedAnonymous                // it did, with no identity headers at all
	reachedAsAlice                  // it did, as the verified alice and no one else
)

type attack struct {
	name   string
	source string
	app    appAnswer
	// send builds the request; raw, if set instead, is written to the
	// socket as it is, for what a Go client refuses to send.
	send func(t *testing.T, h *harness) *http.Request
	raw  string
	// want is the status the caller must get; reached, what the app saw.
	want    int
	reached reached
	// reason, if set, must appear in the negotiate log line.
	reason string
}

func TestAttackCorpus(t *testing.T) {
	post := func(path string, hdr func(*harness, *testing.T) http.Header) func(*testing.T, *harness) *http.Request {
		return func(t *testing.T, h *harness) *http.Request {
			req, err := http.NewRequest("POST", h.front.URL+path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if hdr != nil {
				for k, v := range hdr(h, t) {
					req.Header[k] = v
				}
			}
			return req
		}
	}
	withToken := func(tok func(*harness, *testing.T) string) func(*harness, *testing.T) http.Header {
		return func(h *harness, t *testing.T) http.Header { return bearer(tok(h, t)) }
	}
	valid := func(h *harness, t *testing.T) string { return h.mint(t, nil) }
	es256 := func(header, payload string) func(*harness, *testing.T) string {
		return func(h *harness, t *testing.T) string { return signES256(t, h.key, header, payload) }
	}
	const kid = `"kid":"k1"`

	cases := []attack{
		// RFC 8725 section 2.1 and 3.1: algorithm "none" and its spellings
		// (CVE-2015-9235, node-jsonwebtoken; CVE-2015-2951, JWT-SIMPLE).
		{name: "alg none", source: "RFC 8725 2.1; CVE-2015-9235",
			send: post("/api/negotiate", withToken(func(*harness, *testing.T) string {
				return segment(`{"alg":"none","typ":"JWT"}`) + "." + segment(callerClaims("")) + "."
			})), want: 401, reached: reachedNothing, reason: "algorithm"},
		{name: "alg nOnE", source: "RFC 8725 3.1",
			send: post("/api/negotiate", withToken(func(*harness, *testing.T) string {
				return segment(`{"alg":"nOnE","typ":"JWT"}`) + "." + segment(callerClaims("")) + "."
			})), want: 401, reached: reachedNothing, reason: "algorithm"},
		// RFC 8725 2.1 and 3.1: the public key used as an HMAC secret
		// (CVE-2016-5431, php-jose; CVE-2016-10555, jwt-simple).
		{name: "HS256 keyed with the public key (PEM)", source: "RFC 8725 2.1; CVE-2016-10555",
			send: post("/api/negotiate", withToken(func(h *harness, t *testing.T) string {
				der, err := x509.MarshalPKIXPublicKey(&h.key.PublicKey)
				if err != nil {
					t.Fatal(err)
				}
				pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
				return signHS256(pemKey, `{"alg":"HS256","typ":"JWT",`+kid+`}`, callerClaims(""))
			})), want: 401, reached: reachedNothing, reason: "algorithm"},
		// RFC 8725 3.10 / RFC 7515 4.1.3: a key the token brings along
		// (CVE-2018-0114, node-jose), or points to (jku, x5u).
		{name: "embedded jwk of the attacker's key", source: "CVE-2018-0114",
			send: post("/api/negotiate", withToken(func(h *harness, t *testing.T) string {
				mine, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
				enc := func(i *big.Int) string { return base64.RawURLEncoding.EncodeToString(i.FillBytes(make([]byte, 32))) }
				hdr := fmt.Sprintf(`{"alg":"ES256","typ":"JWT",%s,"jwk":{"kty":"EC","crv":"P-256","x":%q,"y":%q}}`, kid, enc(mine.X), enc(mine.Y))
				return signES256(t, mine, hdr, callerClaims(""))
			})), want: 401, reached: reachedNothing, reason: "signature"},
		{name: "jku pointing elsewhere, signed by the attacker", source: "RFC 8725 3.10",
			send: post("/api/negotiate", withToken(func(h *harness, t *testing.T) string {
				mine, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
				return signES256(t, mine, `{"alg":"ES256","typ":"JWT","kid":"evil","jku":"https://attacker.example/jwks.json"}`, callerClaims(""))
			})), want: 401, reached: reachedNothing, reason: "unknown_key"},
		// kid used as a path or a query by some libraries.
		{name: "kid path traversal", source: "RFC 8725 3.10",
			send: post("/api/negotiate", withToken(es256(`{"alg":"ES256","typ":"JWT","kid":"../../../../dev/null"}`, callerClaims("")))),
			want: 401, reached: reachedNothing, reason: "unknown_key"},
		{name: "kid injection", source: "RFC 8725 3.10",
			send: post("/api/negotiate", withToken(es256(`{"alg":"ES256","typ":"JWT","kid":"k1' OR '1'='1"}`, callerClaims("")))),
			want: 401, reached: reachedNothing, reason: "unknown_key"},
		// RFC 7515 4.1.11: an extension marked critical that the sidecar
		// does not understand (b64: false would change what is signed).
		{name: "crit names an extension", source: "RFC 7515 4.1.11; RFC 7797",
			send: post("/api/negotiate", withToken(es256(`{"alg":"ES256","typ":"JWT",`+kid+`,"b64":false,"crit":["b64"]}`, callerClaims("")))),
			want: 401, reached: reachedNothing, reason: "crit"},
		// CVE-2022-21449 ("psychic signatures"): r = s = 0.
		{name: "ECDSA signature of zeros", source: "CVE-2022-21449",
			send: post("/api/negotiate", withToken(func(*harness, *testing.T) string {
				return segment(`{"alg":"ES256","typ":"JWT",`+kid+`}`) + "." + segment(callerClaims("")) + "." + base64.RawURLEncoding.EncodeToString(make([]byte, 64))
			})), want: 401, reached: reachedNothing, reason: "signature"},
		{name: "signature stripped", source: "RFC 8725 2.1",
			send: post("/api/negotiate", withToken(func(h *harness, t *testing.T) string {
				tok := h.mint(t, nil)
				return tok[:strings.LastIndexByte(tok, '.')+1]
			})), want: 401, reached: reachedNothing},
		{name: "payload swapped under a valid signature", source: "RFC 8725 2.1",
			send: post("/api/negotiate", withToken(func(h *harness, t *testing.T) string {
				p := strings.Split(h.mint(t, nil), ".")
				p[1] = segment(strings.Replace(callerClaims(""), `"alice"`, `"mallory"`, 1))
				return strings.Join(p, ".")
			})), want: 401, reached: reachedNothing, reason: "signature"},
		// RFC 8725 3.8, 3.9, 2.8: issuer, audience and substitution.
		{name: "token of another issuer", source: "RFC 8725 3.8",
			send: post("/api/negotiate", withToken(func(h *harness, t *testing.T) string { return h.mint(t, jwt.MapClaims{"iss": "https://evil.example/"}) })),
			want: 401, reached: reachedNothing, reason: "issuer"},
		{name: "token for another audience", source: "RFC 8725 2.8, 3.9",
			send: post("/api/negotiate", withToken(func(h *harness, t *testing.T) string { return h.mint(t, jwt.MapClaims{"aud": "api://other"}) })),
			want: 401, reached: reachedNothing, reason: "audience"},
		{name: "expired token", source: "RFC 7519 4.1.4",
			send: post("/api/negotiate", withToken(func(h *harness, t *testing.T) string {
				return h.mint(t, jwt.MapClaims{"exp": time.Now().Add(-time.Hour).Unix()})
			})),
			want: 401, reached: reachedNothing, reason: "expired"},
		{name: "token without exp", source: "RFC 8725 3.10",
			send: post("/api/negotiate", withToken(es256(`{"alg":"ES256","typ":"JWT",`+kid+`}`, fmt.Sprintf(`{"iss":%q,"aud":%q,"sub":"alice"}`, issuer, audience)))),
			want: 401, reached: reachedNothing},
		{name: "token not valid yet", source: "RFC 7519 4.1.5",
			send: post("/api/negotiate", withToken(func(h *harness, t *testing.T) string {
				return h.mint(t, jwt.MapClaims{"nbf": time.Now().Add(time.Hour).Unix()})
			})),
			want: 401, reached: reachedNothing, reason: "not_yet_valid"},
		{name: "JWE instead of JWS", source: "RFC 8725 3.11",
			send: post("/api/negotiate", withToken(func(*harness, *testing.T) string {
				return segment(`{"alg":"RSA-OAEP","enc":"A256GCM"}`) + ".a.b.c.d"
			})), want: 401, reached: reachedNothing, reason: "malformed"},
		{name: "user id with a line break", source: "CWE-113",
			send: post("/api/negotiate", withToken(func(h *harness, t *testing.T) string {
				return h.mint(t, jwt.MapClaims{"sub": "alice\r\nX-MS-CLIENT-PRINCIPAL-ID: admin"})
			})),
			want: 401, reached: reachedNothing, reason: "user_claim"},
		{name: "oversized token", source: "RFC 8725 3.1 (denial of service)",
			send: post("/api/negotiate", withToken(func(h *harness, t *testing.T) string {
				return h.mint(t, jwt.MapClaims{"pad": strings.Repeat("a", 20<<10)})
			})), want: 401, reached: reachedNothing, reason: "malformed"},
		{name: "two Authorization headers", source: "RFC 6750 2.1",
			send: post("/api/negotiate", func(h *harness, t *testing.T) http.Header {
				return http.Header{"Authorization": {"Bearer " + h.mint(t, nil), "Bearer " + h.mint(t, jwt.MapClaims{"sub": "mallory"})}}
			}), want: 401, reached: reachedNothing, reason: "malformed"},
		{name: "token in the query instead of the header", source: "RFC 6750 5.3",
			send: func(t *testing.T, h *harness) *http.Request {
				req, _ := http.NewRequest("POST", h.front.URL+"/api/negotiate?access_token="+h.mint(t, nil), nil)
				return req
			}, want: 401, reached: reachedNothing, reason: "missing"},

		// Identity headers forged by the client (the Easy Auth headers are
		// trusted by the app only because a proxy sets them).
		{name: "forged principal id on a negotiate", source: "App Service authentication headers",
			app: signalRApp,
			send: post("/api/negotiate", func(h *harness, t *testing.T) http.Header {
				hdr := bearer(h.mint(t, nil))
				hdr["X-Ms-Client-Principal-Id"] = []string{"mallory"}
				hdr["x_ms_client_principal_id"] = []string{"mallory"}
				return hdr
			}), want: 200, reached: reachedAsAlice},
		{name: "forged principal on another route, no token", source: "App Service authentication headers",
			app: func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") },
			send: post("/api/messages", func(*harness, *testing.T) http.Header {
				return http.Header{"X-Ms-Client-Principal": {"eyJjbGFpbXMiOltdfQ=="}, "X-Ms-Client-Principal-Name": {"mallory"}}
			}), want: 200, reached: reachedAnonymous},
		// A proxy deletes the headers Connection names after the sidecar
		// set them (the hop-by-hop header attack).
		{name: "Connection names the principal id", source: "RFC 9110 7.6.1 (hop-by-hop header abuse)",
			app: signalRApp,
			send: post("/api/negotiate", func(h *harness, t *testing.T) http.Header {
				hdr := bearer(h.mint(t, nil))
				hdr.Set("Connection", "keep-alive, X-MS-CLIENT-PRINCIPAL-ID, x_ms_client_principal, X-MS-CLIENT-PRINCIPAL-NAME, Authorization, X-Request-ID")
				return hdr
			}), want: 200, reached: reachedAsAlice},
		{name: "Connection names the principal id on another route", source: "RFC 9110 7.6.1 (hop-by-hop header abuse)",
			app: func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") },
			send: post("/api/messages", func(h *harness, t *testing.T) http.Header {
				hdr := bearer(h.mint(t, nil))
				hdr.Set("Connection", "X-MS-CLIENT-PRINCIPAL-ID, X-MS-CLIENT-PRINCIPAL-IDP, X-MS-CLIENT-PRINCIPAL")
				return hdr
			}), want: 200, reached: reachedAsAlice},

		// Anonymous tokens: answers the rewrite never sees.
		{name: "OPTIONS without preflight headers", source: "CORS preflight bypass",
			app: signalRApp,
			send: func(t *testing.T, h *harness) *http.Request {
				req, _ := http.NewRequest("OPTIONS", h.front.URL+"/api/negotiate", nil)
				return req
			},
			want: 401, reached: reachedNothing, reason: "missing"},
		{name: "preflight answered with a token", source: "CORS preflight bypass",
			app: signalRApp,
			send: func(t *testing.T, h *harness) *http.Request {
				req, _ := http.NewRequest("OPTIONS", h.front.URL+"/api/negotiate", nil)
				req.Header.Set("Origin", "https://app.example")
				req.Header.Set("Access-Control-Request-Method", "POST")
				req.Header.Set("Authorization", "Bearer "+h.mint(t, jwt.MapClaims{"sub": "mallory"}))
				return req
			}, want: 200, reached: reachedAnonymous, reason: ReasonTokenInPreflight},
		{name: "token in a 500", source: "unrewritten token in an error answer",
			app: tokenWithStatus(500), send: post("/api/negotiate", withToken(valid)),
			want: 502, reached: reachedAsAlice, reason: ReasonTokenInStatus},
		{name: "token in a 401 from the app", source: "unrewritten token in an error answer",
			app: tokenWithStatus(401), send: post("/api/negotiate", withToken(valid)),
			want: 502, reached: reachedAsAlice, reason: ReasonTokenInStatus},
		{name: "token in a redirect's Location", source: "unrewritten token in an error answer",
			app: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Location", "https://x.service.signalr.net/client/?hub=chat&access_token="+serviceToken(`{"aud":"`+hubAud+`"}`, accessKey))
				w.WriteHeader(302)
			}, send: post("/api/negotiate", withToken(valid)),
			want: 502, reached: reachedAsAlice, reason: ReasonTokenInStatus},

		// Tokens the rewrite does not know of: in headers, other fields,
		// nested, or behind escapes.
		{name: "token in a response header", source: "unrewritten token outside the body",
			app: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("X-Service-Token", serviceToken(`{"aud":"`+hubAud+`"}`, accessKey))
				signalRApp(w, r)
			}, send: post("/api/negotiate", withToken(valid)),
			want: 502, reached: reachedAsAlice, reason: ReasonForeignToken},
		{name: "token in a cookie", source: "unrewritten token outside the body",
			app: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Add("Set-Cookie", "sr="+serviceToken(`{"aud":"`+hubAud+`"}`, accessKey)+"; HttpOnly")
				signalRApp(w, r)
			}, send: post("/api/negotiate", withToken(valid)),
			want: 502, reached: reachedAsAlice, reason: ReasonForeignToken},
		{name: "a second token field beside the rewritten one", source: "unrewritten token outside the known fields",
			app: func(w http.ResponseWriter, r *http.Request) {
				tok := serviceToken(`{"aud":"`+hubAud+`"}`, accessKey)
				io.WriteString(w, `{"url":"https://x.service.signalr.net/client/?hub=chat","accessToken":"`+tok+`","token":"`+tok+`"}`)
			}, send: post("/api/negotiate", withToken(valid)),
			want: 502, reached: reachedAsAlice, reason: ReasonForeignToken},
		{name: "a nested token beside the rewritten one", source: "unrewritten token outside the known fields",
			app: func(w http.ResponseWriter, r *http.Request) {
				tok := serviceToken(`{"aud":"`+hubAud+`"}`, accessKey)
				io.WriteString(w, `{"accessToken":"`+tok+`","conn":{"accessToken":"`+tok+`"}}`)
			}, send: post("/api/negotiate", withToken(valid)),
			want: 502, reached: reachedAsAlice, reason: ReasonForeignToken},
		{name: "JSON-escaped token in an error", source: "unrewritten token behind escapes",
			app: func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(500)
				io.WriteString(w, `{"detail":"`+strings.Replace(serviceToken(`{"aud":"`+hubAud+`"}`, accessKey), "eyJ", `ey\u004a`, 1)+`"}`)
			}, send: post("/api/negotiate", withToken(valid)),
			want: 502, reached: reachedAsAlice, reason: ReasonTokenInStatus},
		{name: "percent-encoded token in a redirect", source: "unrewritten token behind escapes",
			app: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Location", "/login?next="+strings.ReplaceAll(serviceToken(`{"aud":"`+hubAud+`"}`, accessKey), ".", "%2E"))
				w.WriteHeader(302)
			}, send: post("/api/negotiate", withToken(valid)),
			want: 502, reached: reachedAsAlice, reason: ReasonTokenInStatus},
		{name: "token with a spaced header in an error", source: "unrewritten token not starting eyJ",
			app: func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(500)
				io.WriteString(w, segment(`{ "alg": "HS256" }`)+"."+segment(`{"aud":"`+hubAud+`"}`)+".c2ln")
			}, send: post("/api/negotiate", withToken(valid)),
			want: 502, reached: reachedAsAlice, reason: ReasonTokenInStatus},
		{name: "token in an ETag of a 304", source: "unrewritten token outside the body",
			app: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("ETag", `"`+serviceToken(`{"aud":"`+hubAud+`"}`, accessKey)+`"`)
				w.WriteHeader(304)
			}, send: post("/api/negotiate", withToken(valid)),
			want: 502, reached: reachedAsAlice, reason: ReasonTokenInStatus},
		{name: "preflight answered with a token in headers", source: "CORS preflight bypass",
			app: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Access-Control-Allow-Origin", "*")
				w.Header().Set("Access-Control-Expose-Headers", serviceToken(`{"aud":"`+hubAud+`"}`, accessKey))
				w.Header().Set("X-Service-Token", serviceToken(`{"aud":"`+hubAud+`"}`, accessKey))
				w.WriteHeader(204)
			},
			send: func(t *testing.T, h *harness) *http.Request {
				req, _ := http.NewRequest("OPTIONS", h.front.URL+"/api/negotiate", nil)
				req.Header.Set("Origin", "https://app.example")
				req.Header.Set("Access-Control-Request-Method", "POST")
				return req
			}, want: 204, reached: reachedAnonymous, reason: ReasonTokenInPreflight},

		{name: "gzip behind a second Content-Encoding", source: "unrewritten token behind an encoding",
			app: func(w http.ResponseWriter, r *http.Request) {
				w.Header()["Content-Encoding"] = []string{"identity", "gzip"}
				w.WriteHeader(500)
				zw := gzip.NewWriter(w)
				io.WriteString(zw, negotiateBody(accessKey))
				zw.Close()
			}, send: post("/api/negotiate", withToken(valid)),
			want: 502, reached: reachedAsAlice, reason: ReasonUnreadable},

		// Protocol upgrades the sidecar does not read (h2c smuggling).
		{name: "h2c upgrade on another route", source: "h2c smuggling (Bishop Fox, 2020)",
			app: func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("Upgrade") != "" || r.Header.Get("Http2-Settings") != "" {
					w.WriteHeader(101)
					return
				}
				io.WriteString(w, "plain")
			},
			raw:  "GET /api/messages HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
			want: 200, reached: reachedAnonymous},
		{name: "websocket upgrade on a negotiate route", source: "h2c smuggling (Bishop Fox, 2020)",
			app:  signalRApp,
			raw:  "GET /api/negotiate HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
			want: 401, reached: reachedNothing},

		// Request smuggling: ambiguous framing must not reach the app.
		{name: "two Content-Length values", source: "RFC 9112 6.3; CWE-444",
			raw:  "POST /api/negotiate HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 44\r\n\r\n",
			want: 400, reached: reachedNothing},
		{name: "identity header in obsolete line folding", source: "RFC 9112 5.2; CWE-444",
			app:  func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") },
			raw:  "GET /api/messages HTTP/1.1\r\nHost: x\r\nX-Other: a\r\nX-MS-CLIENT-PRINCIPAL-ID: a\r\n mallory\r\n\r\n",
			want: 200, reached: reachedAnonymous},
		{name: "HTTP/2 prior knowledge on the HTTP/1 port", source: "h2c smuggling",
			raw:  "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
			want: 505, reached: reachedNothing},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			app := tc.app
			if app == nil {
				app = signalRApp
			}
			h := newHarness(t, http.HandlerFunc(app), nil)
			status, header, body := sendAttack(t, h, tc)
			if status != tc.want {
				t.Errorf("%s: status %d, want %d; body %q", tc.source, status, tc.want, body)
			}
			checkNoForeignToken(t, status, header, body)
			checkReached(t, h, tc.reached)
			if tc.reason != "" && !strings.Contains(h.logText(), `"reason":"`+tc.reason+`"`) {
				t.Errorf("the log lacks reason %q:\n%s", tc.reason, h.logText())
			}
		})
	}
}

// sendAttack sends the case's request and returns the status, headers and body.
func sendAttack(t *testing.T, h *harness, tc attack) (int, http.Header, string) {
	t.Helper()
	if tc.raw == "" {
		resp, err := h.front.Client().Do(tc.send(t, h))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}
	conn, err := net.Dial("tcp", strings.TrimPrefix(h.front.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, tc.raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == 101 {
		return 101, resp.Header, ""
	}
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// checkNoForeignToken fails if the answer holds, anywhere, a token that does
// not name alice, or a token in the body that the access key does not verify.
func checkNoForeignToken(t *testing.T, status int, header http.Header, body string) {
	t.Helper()
	scan, err := rewrite.New(rewrite.SignalR(), []rewrite.Key{{Hosts: []string{"x.service.signalr.net"}, Secret: []byte(accessKey)}}, rewrite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for name, vv := range header {
		for _, v := range vv {
			if scan.ForeignToken([]byte(v), "alice") {
				t.Fatalf("the caller got a token not naming alice in %s: %q", name, v)
			}
		}
	}
	if scan.ForeignToken([]byte(body), "alice") {
		t.Fatalf("the caller got a token not naming alice: %q", body)
	}
	if status == 200 && strings.Contains(body, "accessToken") {
		claimsOf(t, body) // verifies with the access key
	}
}

func checkReached(t *testing.T, h *harness, want reached) {
	t.Helper()
	seen := h.up.requests()
	if want == reachedNothing {
		if len(seen) != 0 {
			t.Fatalf("the app saw %d request(s); want none", len(seen))
		}
		return
	}
	if len(seen) != 1 {
		t.Fatalf("the app saw %d request(s); want 1", len(seen))
	}
	r := seen[0]
	for name, v := range r.Header {
		if isIdentityHeader(name) && want == reachedAnonymous {
			t.Errorf("an anonymous request reached the app with %s: %q", name, v)
		}
		if strings.Contains(strings.ToLower(strings.Join(v, ",")), "mallory") {
			t.Errorf("a forged value reached the app in %s: %q", name, v)
		}
	}
	for _, name := range []string{"Upgrade", "Http2-Settings"} {
		if v := r.Header.Get(name); v != "" {
			t.Errorf("the app saw %s: %q", name, v)
		}
	}
	if want == reachedAsAlice {
		for _, name := range []string{"X-MS-CLIENT-PRINCIPAL-ID", "X-MS-CLIENT-PRINCIPAL-NAME", "X-MS-CLIENT-PRINCIPAL-IDP", "X-MS-CLIENT-PRINCIPAL", "Authorization", "X-Request-ID"} {
			if r.Header.Get(name) == "" {
				t.Errorf("the app did not get %s", name)
			}
		}
		if got := r.Header.Get("X-MS-CLIENT-PRINCIPAL-ID"); got != "" && got != "alice" {
			t.Errorf("the app saw principal %q, want alice", got)
		}
	}
}

// The echoing app, with Microsoft Entra ID. In this mode the app signs
// SignalR tokens with a key the sidecar never sees, so an app that copies
// request data into its negotiate answer (a userId or hub from the query,
// claims from the body, as Functions code passes them to the binding) is
// the attacker's pen. The sidecar must still hand the caller nothing but a
// token for alice, for the endpoint and hub the app's token names, with no
// other user in it.

const (
	entraHost  = "fake-entra.service.signalr.net"
	entraAud   = "https://" + entraHost + "/client/?hub=chat"
	appTempKey = "app-temporary-key-0f3c"
	ownKid     = "sidecar-kid"
	ownSecret  = "sidecar-own-key-9a71"
)

// ownKey lends the sidecar's own key.
type ownKey struct{}

func (ownKey) SigningKey() (rewrite.SigningKey, error) {
	return rewrite.SigningKey{ID: ownKid, Secret: []byte(ownSecret)}, nil
}

// echoingApp signs, with its temporary key, a token whose extra claims,
// kid and url come from the caller's query: claims=, kid=, Url=.
func echoingApp(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	now := time.Now().Unix()
	kid := "app-kid"
	if v := q.Get("kid"); v != "" {
		kid = v
	}
	claims := fmt.Sprintf(`{%s"nbf":%d,"exp":%d,"iat":%d,"aud":%q}`, q.Get("claims"), now, now+3600, now, entraAud)
	tok := signHS256([]byte(appTempKey), `{"alg":"HS256","kid":"`+kid+`","typ":"JWT"}`, claims)
	extra := ""
	if v := q.Get("Url"); v != "" {
		extra = `,"Url":"` + v + `"`
	}
	io.WriteString(w, `{"url":"`+entraAud+`","accessToken":"`+tok+`"`+extra+`}`)
}

func TestEntraEchoingApp(t *testing.T) {
	cases := []struct {
		name, query string
		want        int
		reason      string
	}{
		{"nothing echoed", "", 200, ""},
		{"another user in ASRS.S.UID", "?claims=" + url.QueryEscape(`"ASRS.S.UID":"mallory",`), 502, "unverified"},
		{"another user in NameId", "?claims=" + url.QueryEscape(`"NameId":"mallory",`), 502, "unverified"},
		{"another user in asrs.s.uid", "?claims=" + url.QueryEscape(`"asrs.s.uid":"mallory",`), 200, ""},
		{"a claim the SDK never writes", "?claims=" + url.QueryEscape(`"asrs.s.apn":"mallory",`), 502, "unverified"},
		{"a second url elsewhere", "?Url=" + url.QueryEscape("https://mallory.example/client/?hub=chat"), 502, "unverified"},
		{"the sidecar's own kid", "?kid=" + ownKid, 502, "signature"},
		{"exp given twice, the first for a year", "?claims=" + url.QueryEscape(`"exp":99999999999,`), 502, "malformed_token"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, echoingApp, func(c *Config) {
				rw, err := rewrite.New(rewrite.SignalR(), []rewrite.Key{{Hosts: []string{entraHost}, Source: ownKey{}, Endpoint: "https://" + entraHost}}, rewrite.Options{})
				if err != nil {
					t.Fatal(err)
				}
				c.Rewriter = rw
			})
			req, _ := http.NewRequest("POST", h.front.URL+"/api/negotiate"+tc.query, nil)
			req.Header = bearer(h.mint(t, nil))
			resp, err := h.front.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d; body %s\n%s", resp.StatusCode, tc.want, body, h.logText())
			}
			if tc.reason != "" && !strings.Contains(h.logText(), `"reason":"`+tc.reason+`"`) {
				t.Errorf("the log lacks reason %q:\n%s", tc.reason, h.logText())
			}
			if strings.Contains(string(body), "mallory") || strings.Contains(h.logText(), appTempKey) || strings.Contains(h.logText(), ownSecret) {
				t.Errorf("the answer names mallory, or the log shows a key: %s", body)
			}
			if resp.StatusCode != 200 {
				return
			}
			var b struct{ AccessToken string }
			if err := json.Unmarshal(body, &b); err != nil {
				t.Fatal(err)
			}
			tok, err := jwt.Parse(b.AccessToken, func(tok *jwt.Token) (any, error) {
				if tok.Header["kid"] != ownKid {
					return nil, fmt.Errorf("kid %v", tok.Header["kid"])
				}
				return []byte(ownSecret), nil
			}, jwt.WithValidMethods([]string{"HS256"}), jwt.WithAudience(entraAud))
			if err != nil {
				t.Fatalf("the token does not verify with the sidecar's key under its kid: %v", err)
			}
			claims := tok.Claims.(jwt.MapClaims)
			for name, v := range claims {
				if strings.EqualFold(name, "asrs.s.uid") && v != "alice" {
					t.Errorf("%s = %v, want alice", name, v)
				}
			}
		})
	}
}
