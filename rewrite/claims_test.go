package rewrite

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

const (
	// testNow is a minute after the iat of sdkClaims.
	testNow   = 1732694460
	signalAud = `"aud":"https://x.service.signalr.net/client/?hub=chat"`
	pubsubAud = `"aud":"https://x.service.signalr.net/client/hubs/chat"`
)

func newOptionsRewriter(t testing.TB, f Format, opts Options) *Rewriter {
	t.Helper()
	if opts.Now == nil {
		opts.Now = func() time.Time { return time.Unix(testNow, 0) }
	}
	r, err := New(f, []Key{{Hosts: []string{"x.service.signalr.net"}, Secret: []byte(testKey)}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// rewriteClaims signs claims, rewrites them for the caller and returns the
// new payload text, after checking that the header is untouched and the
// token is signed with the key.
func rewriteClaims(t *testing.T, r *Rewriter, claims string, c Caller) (string, error) {
	t.Helper()
	tok := signHS256(sdkHeader, claims, testKey)
	out, err := r.Rewrite([]byte(`{"accessToken":"`+tok+`"}`), c)
	if err != nil {
		return "", err
	}
	newTok := tokenOf(t, out)
	parts := strings.Split(newTok, ".")
	if parts[0] != strings.Split(tok, ".")[0] {
		t.Errorf("header segment changed: %s", unb64(t, parts[0]))
	}
	payload := unb64(t, parts[1])
	if newTok != signHS256(sdkHeader, payload, testKey) {
		t.Errorf("the rewritten token is not signed with the access key")
	}
	return payload, nil
}

func TestForwardClaims(t *testing.T) {
	caller := Caller{
		UserID: "alice",
		Claims: map[string]any{
			"name":   `Alice "A" <alice@contoso.com> & co`,
			"tid":    "72f988bf-86f1-41af-91ab-2d7cd011db47",
			"age":    json.Number("42"),
			"big":    json.Number("12345678901234567890123"),
			"ratio":  json.Number("1.50e3"),
			"admin":  true,
			"roles":  []any{"reader", "writer", json.Number("7"), nil},
			"empty":  []any{},
			"addr":   map[string]any{"zip": "98052", "city": "Redmond", "geo": []any{json.Number("47.6"), json.Number("-122.1")}},
			"gone":   nil,
			"sub":    "alice-sub",
			"exp":    json.Number("1732697000"),
			"iss":    "https://login.microsoftonline.com/x/v2.0",
			"aud":    []any{"api://a", "api://b"},
			"nbf":    json.Number("1732694000"),
			"iat":    json.Number("1732694000"),
			"jti":    "abc",
			"nameid": "mallory",
		},
	}
	tests := []struct {
		name    string
		format  Format
		forward []string
		claims  string
		want    string
	}{
		{
			name:    "strings are escaped as the user id is, leaving <>& alone",
			forward: []string{"name", "tid"},
			claims:  sdkClaims,
			want:    `{"asrs.s.uid":"alice","name":"Alice \"A\" <alice@contoso.com> & co","tid":"72f988bf-86f1-41af-91ab-2d7cd011db47","nbf":1732694400,"exp":1732698000,"iat":1732694400,` + signalAud + `}`,
		},
		{
			name:    "numbers keep their exact digits, booleans stay booleans",
			forward: []string{"age", "big", "ratio", "admin"},
			claims:  sdkClaims,
			want:    `{"asrs.s.uid":"alice","age":42,"big":12345678901234567890123,"ratio":1.50e3,"admin":true,"nbf":1732694400,"exp":1732698000,"iat":1732694400,` + signalAud + `}`,
		},
		{
			name:    "arrays stay arrays and objects stay objects",
			forward: []string{"roles", "empty", "addr"},
			claims:  sdkClaims,
			want:    `{"asrs.s.uid":"alice","roles":["reader","writer",7,null],"empty":[],"addr":{"city":"Redmond","geo":[47.6,-122.1],"zip":"98052"},"nbf":1732694400,"exp":1732698000,"iat":1732694400,` + signalAud + `}`,
		},
		{
			name:    "registered names are written with the asrs.u. prefix",
			forward: []string{"sub", "exp", "iss", "aud", "nbf", "iat", "jti"},
			claims:  sdkClaims,
			want:    `{"asrs.s.uid":"alice","asrs.u.sub":"alice-sub","asrs.u.exp":1732697000,"asrs.u.iss":"https://login.microsoftonline.com/x/v2.0","asrs.u.aud":["api://a","api://b"],"asrs.u.nbf":1732694000,"asrs.u.iat":1732694000,"asrs.u.jti":"abc","nbf":1732694400,"exp":1732698000,"iat":1732694400,` + signalAud + `}`,
		},
		{
			name:    "claims the caller lacks or holds as null are skipped",
			forward: []string{"missing", "tid", "gone"},
			claims:  sdkClaims,
			want:    `{"asrs.s.uid":"alice","tid":"72f988bf-86f1-41af-91ab-2d7cd011db47","nbf":1732694400,"exp":1732698000,"iat":1732694400,` + signalAud + `}`,
		},
		{
			name:    "a claim the token has is overwritten where it stands",
			forward: []string{"tid", "sub"},
			claims:  `{"nbf":1,"tid":"upstream","exp":99999999999,"asrs.u.sub":"upstream",` + signalAud + `}`,
			want:    `{"asrs.s.uid":"alice","nbf":1,"tid":"72f988bf-86f1-41af-91ab-2d7cd011db47","exp":99999999999,"asrs.u.sub":"alice-sub",` + signalAud + `}`,
		},
		{
			name:    "new claims follow a user id that was already in the token",
			forward: []string{"tid"},
			claims:  `{"asrs.s.aut":"Bearer","asrs.s.uid":"anonymous","exp":1,` + signalAud + `}`,
			want:    `{"asrs.s.aut":"Bearer","asrs.s.uid":"alice","tid":"72f988bf-86f1-41af-91ab-2d7cd011db47","exp":1,` + signalAud + `}`,
		},
		{
			name:    "web pubsub: forwarded claims follow sub",
			format:  WebPubSub(),
			forward: []string{"tid", "nameid"},
			claims:  `{"sub":"anonymous","role":["webpubsub.joinLeaveGroup"],"exp":1732698000,"iat":1732694400,` + pubsubAud + `}`,
			want:    `{"sub":"alice","tid":"72f988bf-86f1-41af-91ab-2d7cd011db47","nameid":"mallory","role":["webpubsub.joinLeaveGroup"],"exp":1732698000,"iat":1732694400,` + pubsubAud + `}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := tt.format
			if f.Name == "" {
				f = SignalR()
			}
			r := newOptionsRewriter(t, f, Options{ForwardClaims: tt.forward})
			got, err := rewriteClaims(t, r, tt.claims, caller)
			if err != nil {
				t.Fatalf("Rewrite: %v", err)
			}
			if got != tt.want {
				t.Errorf("claims\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestNewRefusesOptions(t *testing.T) {
	tests := []struct {
		name   string
		format Format
		opts   Options
		want   string
	}{
		{"empty name", SignalR(), Options{ForwardClaims: []string{""}}, `a forward claim name is empty`},
		{"the user claim", SignalR(), Options{ForwardClaims: []string{"asrs.s.uid"}}, `forward claim "asrs.s.uid" would overwrite a system claim of the signalr format`},
		{"another system claim", SignalR(), Options{ForwardClaims: []string{"asrs.s.aut"}}, `forward claim "asrs.s.aut" would overwrite a system claim of the signalr format`},
		{"an already prefixed name", SignalR(), Options{ForwardClaims: []string{"asrs.u.exp"}}, `forward claim "asrs.u.exp" would overwrite a system claim of the signalr format`},
		{"the close-on-expiry claim", SignalR(), Options{ForwardClaims: []string{"asrs.s.coae"}}, `forward claim "asrs.s.coae" would overwrite a system claim of the signalr format`},
		{"the old user claim", SignalR(), Options{ForwardClaims: []string{"nameid"}}, `forward claim "nameid" would overwrite a system claim of the signalr format`},
		{"a name twice", SignalR(), Options{ForwardClaims: []string{"tid", "tid"}}, `forward claim "tid" is listed twice`},
		{"web pubsub: the user claim", WebPubSub(), Options{ForwardClaims: []string{"sub"}}, `forward claim "sub" would overwrite a system claim of the webpubsub format`},
		{"web pubsub: roles", WebPubSub(), Options{ForwardClaims: []string{"role"}}, `forward claim "role" would overwrite a system claim of the webpubsub format`},
		{"web pubsub: groups", WebPubSub(), Options{ForwardClaims: []string{"webpubsub.group"}}, `forward claim "webpubsub.group" would overwrite a system claim of the webpubsub format`},
		{"web pubsub: groups, old spelling", WebPubSub(), Options{ForwardClaims: []string{"group"}}, `forward claim "group" would overwrite a system claim of the webpubsub format`},
		{"web pubsub: aud", WebPubSub(), Options{ForwardClaims: []string{"aud"}}, `forward claim "aud" would overwrite a system claim of the webpubsub format`},
		{"web pubsub: exp", WebPubSub(), Options{ForwardClaims: []string{"exp"}}, `forward claim "exp" would overwrite a system claim of the webpubsub format`},
		{"web pubsub: iat", WebPubSub(), Options{ForwardClaims: []string{"iat"}}, `forward claim "iat" would overwrite a system claim of the webpubsub format`},
		{"web pubsub: nbf", WebPubSub(), Options{ForwardClaims: []string{"nbf"}}, `forward claim "nbf" would overwrite a system claim of the webpubsub format`},
		{"web pubsub: iss", WebPubSub(), Options{ForwardClaims: []string{"iss"}}, `forward claim "iss" would overwrite a system claim of the webpubsub format`},
		{"web pubsub: jti", WebPubSub(), Options{ForwardClaims: []string{"jti"}}, `forward claim "jti" would overwrite a system claim of the webpubsub format`},
		{"web pubsub: asrs", WebPubSub(), Options{ForwardClaims: []string{"asrs.s.uid"}}, `forward claim "asrs.s.uid" would overwrite a system claim of the webpubsub format`},
		{"negative lifetime", SignalR(), Options{MaxTokenLifetime: -time.Minute}, `the maximum token lifetime -1m0s is negative`},
		{"sub-second lifetime", SignalR(), Options{MaxTokenLifetime: 500 * time.Millisecond}, `the maximum token lifetime 500ms is under a second, the resolution of exp`},
		{"close without bind", SignalR(), Options{CloseOnCallerExpiry: true}, `closing connections on caller expiry requires binding the token to the caller's expiry`},
		{"web pubsub: close", WebPubSub(), Options{CloseOnCallerExpiry: true, BindToCallerExpiry: true}, `the webpubsub format cannot ask the service to close connections on caller expiry`},
		{
			name:   "every problem at once",
			format: WebPubSub(),
			opts:   Options{ForwardClaims: []string{"tid", "", "sub", "tid"}, MaxTokenLifetime: -1, CloseOnCallerExpiry: true},
			want: `a forward claim name is empty
forward claim "sub" would overwrite a system claim of the webpubsub format
forward claim "tid" is listed twice
the maximum token lifetime -1ns is negative
the webpubsub format cannot ask the service to close connections on caller expiry
closing connections on caller expiry requires binding the token to the caller's expiry`,
		},
		{
			name:   "a custom format whose prefix lands on a system claim",
			format: Format{Name: "odd", UserClaim: "uid", TokenFields: []string{"t"}, PrefixedClaims: []string{"id"}, CustomClaimPrefix: "u"},
			opts:   Options{ForwardClaims: []string{"id"}},
			want:   `forward claim "id" would overwrite a system claim of the odd format`,
		},
		{
			name:   "a format with prefixed claims but no prefix",
			format: Format{Name: "odd", UserClaim: "uid", TokenFields: []string{"t"}, PrefixedClaims: []string{"exp"}},
			want:   `rewrite: the format has prefixed claims but no custom claim prefix`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := New(tt.format, []Key{{Hosts: []string{"x"}, Secret: []byte("k")}}, tt.opts)
			if err == nil {
				t.Fatalf("New = %v, nil; want error %q", r, tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("error\n got %s\nwant %s", err, tt.want)
			}
		})
	}
}

func TestNewAcceptsOptions(t *testing.T) {
	tests := []struct {
		name   string
		format Format
		opts   Options
	}{
		{"signalr: registered and custom names", SignalR(), Options{ForwardClaims: []string{"sub", "exp", "iss", "tid", "roles", "email"}}},
		{"signalr: every option", SignalR(), Options{ForwardClaims: []string{"tid"}, MaxTokenLifetime: time.Hour, BindToCallerExpiry: true, CloseOnCallerExpiry: true}},
		{"web pubsub: custom names and lifetimes", WebPubSub(), Options{ForwardClaims: []string{"tid", "email", "nameid"}, MaxTokenLifetime: time.Second, BindToCallerExpiry: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.format, []Key{{Hosts: []string{"x"}, Secret: []byte("k")}}, tt.opts); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestTokenLifetime(t *testing.T) {
	const (
		iat = 1732694400
		exp = iat + 3600
	)
	at := func(unix int64) time.Time { return time.Unix(unix, 0) }
	tests := []struct {
		name   string
		format Format
		opts   Options
		expiry time.Time
		claims string
		want   string
	}{
		{
			name:   "lifetime caps exp at iat plus the lifetime",
			opts:   Options{MaxTokenLifetime: 10 * time.Minute},
			claims: sdkClaims,
			want:   `{"asrs.s.uid":"alice","nbf":1732694400,"exp":1732695000,"iat":1732694400,` + signalAud + `}`,
		},
		{
			name:   "lifetime counts whole seconds",
			opts:   Options{MaxTokenLifetime: 10*time.Minute + 999*time.Millisecond},
			claims: sdkClaims,
			want:   `{"asrs.s.uid":"alice","nbf":1732694400,"exp":1732695000,"iat":1732694400,` + signalAud + `}`,
		},
		{
			name:   "a longer lifetime keeps exp as it was",
			opts:   Options{MaxTokenLifetime: 2 * time.Hour},
			claims: sdkClaims,
			want:   `{"asrs.s.uid":"alice",` + sdkClaims[1:],
		},
		{
			name:   "an exp already below the cap keeps its exact text",
			opts:   Options{MaxTokenLifetime: 2 * time.Hour},
			claims: `{"iat":1732694400,"exp":1.7326980000000001e9,` + signalAud + `}`,
			want:   `{"asrs.s.uid":"alice","iat":1732694400,"exp":1.7326980000000001e9,` + signalAud + `}`,
		},
		{
			name:   "an exp above the cap in any notation is replaced by an integer",
			opts:   Options{MaxTokenLifetime: 10 * time.Minute},
			claims: `{"iat":1732694400.9,"exp":1.732698e9,` + signalAud + `}`,
			want:   `{"asrs.s.uid":"alice","iat":1732694400.9,"exp":1732695000,` + signalAud + `}`,
		},
		{
			name:   "without iat the lifetime counts from now",
			opts:   Options{MaxTokenLifetime: 10 * time.Minute},
			claims: `{"exp":1732698000,` + signalAud + `}`,
			want:   `{"asrs.s.uid":"alice","exp":1732695060,` + signalAud + `}`,
		},
		{
			name:   "an iat that is not a number counts as none",
			opts:   Options{MaxTokenLifetime: 10 * time.Minute},
			claims: `{"iat":"1732694400","exp":1732698000,` + signalAud + `}`,
			want:   `{"asrs.s.uid":"alice","iat":"1732694400","exp":1732695060,` + signalAud + `}`,
		},
		{
			name:   "a token without exp gets the cap at the end",
			opts:   Options{MaxTokenLifetime: 10 * time.Minute},
			claims: `{"iat":1732694400,` + signalAud + `}`,
			want:   `{"asrs.s.uid":"alice","iat":1732694400,` + signalAud + `,"exp":1732695000}`,
		},
		{
			name:   "without a cap to apply a token without exp stays so",
			opts:   Options{BindToCallerExpiry: true},
			claims: `{"iat":1732694400,` + signalAud + `}`,
			want:   `{"asrs.s.uid":"alice","iat":1732694400,` + signalAud + `}`,
		},
		{
			name:   "without lifetime options an exp that is not a number is kept",
			claims: `{"exp":"soon",` + signalAud + `}`,
			want:   `{"asrs.s.uid":"alice","exp":"soon",` + signalAud + `}`,
		},
		{
			name:   "binding caps exp at the caller's expiry",
			opts:   Options{BindToCallerExpiry: true},
			expiry: at(iat + 1200),
			claims: sdkClaims,
			want:   `{"asrs.s.uid":"alice","nbf":1732694400,"exp":1732695600,"iat":1732694400,` + signalAud + `}`,
		},
		{
			name:   "binding drops the fraction of the caller's expiry",
			opts:   Options{BindToCallerExpiry: true},
			expiry: time.Unix(iat+1200, 999_999_999),
			claims: sdkClaims,
			want:   `{"asrs.s.uid":"alice","nbf":1732694400,"exp":1732695600,"iat":1732694400,` + signalAud + `}`,
		},
		{
			name:   "a caller expiring after the token changes nothing",
			opts:   Options{BindToCallerExpiry: true},
			expiry: at(exp + 1),
			claims: sdkClaims,
			want:   `{"asrs.s.uid":"alice",` + sdkClaims[1:],
		},
		{
			name:   "a caller without expiry changes nothing",
			opts:   Options{BindToCallerExpiry: true, CloseOnCallerExpiry: true},
			claims: sdkClaims,
			want:   `{"asrs.s.uid":"alice",` + sdkClaims[1:],
		},
		{
			name:   "the caller's expiry wins over a longer lifetime",
			opts:   Options{MaxTokenLifetime: 30 * time.Minute, BindToCallerExpiry: true},
			expiry: at(iat + 1200),
			claims: sdkClaims,
			want:   `{"asrs.s.uid":"alice","nbf":1732694400,"exp":1732695600,"iat":1732694400,` + signalAud + `}`,
		},
		{
			name:   "a shorter lifetime wins over the caller's expiry",
			opts:   Options{MaxTokenLifetime: 10 * time.Minute, BindToCallerExpiry: true},
			expiry: at(iat + 1200),
			claims: sdkClaims,
			want:   `{"asrs.s.uid":"alice","nbf":1732694400,"exp":1732695000,"iat":1732694400,` + signalAud + `}`,
		},
		{
			name:   "close on expiry writes coae and aeo as strings after the user id",
			opts:   Options{BindToCallerExpiry: true, CloseOnCallerExpiry: true},
			expiry: time.Unix(iat+1200, 500_000_000),
			claims: sdkClaims,
			want:   `{"asrs.s.uid":"alice","asrs.s.coae":"true","asrs.s.aeo":"1732695600","nbf":1732694400,"exp":1732695600,"iat":1732694400,` + signalAud + `}`,
		},
		{
			name:   "close on expiry overwrites the upstream's claims in place",
			opts:   Options{BindToCallerExpiry: true, CloseOnCallerExpiry: true},
			expiry: at(iat + 1200),
			claims: `{"asrs.s.uid":"anonymous","asrs.s.aeo":"0","nbf":1732694400,"exp":1732698000,"asrs.s.coae":"false",` + signalAud + `}`,
			want:   `{"asrs.s.uid":"alice","asrs.s.aeo":"1732695600","nbf":1732694400,"exp":1732695600,"asrs.s.coae":"true",` + signalAud + `}`,
		},
		{
			name:   "every option: system claims, then forwarded ones, then the token's own",
			opts:   Options{ForwardClaims: []string{"tid", "sub"}, MaxTokenLifetime: 30 * time.Minute, BindToCallerExpiry: true, CloseOnCallerExpiry: true},
			expiry: at(iat + 1200),
			claims: sdkClaims,
			want:   `{"asrs.s.uid":"alice","asrs.s.coae":"true","asrs.s.aeo":"1732695600","tid":"contoso","asrs.u.sub":"alice-sub","nbf":1732694400,"exp":1732695600,"iat":1732694400,` + signalAud + `}`,
		},
		{
			name:   "web pubsub: lifetime and binding",
			format: WebPubSub(),
			opts:   Options{MaxTokenLifetime: 30 * time.Minute, BindToCallerExpiry: true},
			expiry: at(iat + 1200),
			claims: `{"sub":"anonymous","exp":1732698000,"iat":1732694400,` + pubsubAud + `}`,
			want:   `{"sub":"alice","exp":1732695600,"iat":1732694400,` + pubsubAud + `}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := tt.format
			if f.Name == "" {
				f = SignalR()
			}
			r := newOptionsRewriter(t, f, tt.opts)
			c := Caller{UserID: "alice", Claims: map[string]any{"tid": "contoso", "sub": "alice-sub"}, Expiry: tt.expiry}
			got, err := rewriteClaims(t, r, tt.claims, c)
			if err != nil {
				t.Fatalf("Rewrite: %v", err)
			}
			if got != tt.want {
				t.Errorf("claims\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestOptionsRefuse(t *testing.T) {
	lifetime := Options{MaxTokenLifetime: time.Hour}
	bind := Options{BindToCallerExpiry: true}
	tests := []struct {
		name   string
		opts   Options
		claims string
		caller Caller
		want   Reason
	}{
		{"exp a string", lifetime, `{"exp":"1732698000",` + signalAud + `}`, Caller{}, ReasonMalformedToken},
		{"exp null", lifetime, `{"exp":null,` + signalAud + `}`, Caller{}, ReasonMalformedToken},
		{"exp out of range", lifetime, `{"exp":1e400,` + signalAud + `}`, Caller{}, ReasonMalformedToken},
		{"exp an array", bind, `{"exp":[1],` + signalAud + `}`, Caller{}, ReasonMalformedToken},
		{"lifetime over before now", lifetime, `{"iat":1732690000,"exp":1732698000,` + signalAud + `}`, Caller{}, ReasonMalformedToken},
		{"lifetime over before nbf", lifetime, `{"nbf":1732700000,"iat":1732694400,"exp":1732703600,` + signalAud + `}`, Caller{}, ReasonMalformedToken},
		{"caller expired before now", bind, `{"exp":1732698000,` + signalAud + `}`, Caller{Expiry: time.Unix(testNow-1, 0)}, ReasonCallerExpired},
		{"caller expiring now", bind, `{"exp":1732698000,` + signalAud + `}`, Caller{Expiry: time.Unix(testNow, 999_000_000)}, ReasonCallerExpired},
		{"caller expiring at nbf", bind, `{"nbf":1732700000,"exp":1732703600,` + signalAud + `}`, Caller{Expiry: time.Unix(1732700000, 0)}, ReasonCallerExpired},
		{"caller expired after nbf but before now", bind, sdkClaims, Caller{Expiry: time.Unix(testNow-30, 0)}, ReasonCallerExpired},
		{"a NaN claim", Options{ForwardClaims: []string{"x"}}, sdkClaims, Caller{Claims: map[string]any{"x": math.NaN()}}, ReasonCallerClaim},
		{"a bad json.Number", Options{ForwardClaims: []string{"x"}}, sdkClaims, Caller{Claims: map[string]any{"x": json.Number("twelve")}}, ReasonCallerClaim},
		{"a forwarded claim too long", Options{ForwardClaims: []string{"x"}}, sdkClaims, Caller{Claims: map[string]any{"x": strings.Repeat("x", 3000)}}, ReasonTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newOptionsRewriter(t, SignalR(), tt.opts)
			tt.caller.UserID = "alice"
			got, err := rewriteClaims(t, r, tt.claims, tt.caller)
			var re *Error
			if !errors.As(err, &re) {
				t.Fatalf("Rewrite = %s, %v; want a *rewrite.Error", got, err)
			}
			if re.Reason != tt.want {
				t.Errorf("reason = %s (%v), want %s", re.Reason, err, tt.want)
			}
			if strings.Contains(err.Error(), "twelve") {
				t.Errorf("the error quotes a claim value: %v", err)
			}
		})
	}
}

func TestOptionsDefaultNowIsTheClock(t *testing.T) {
	r, err := New(SignalR(), []Key{{Hosts: []string{"x.service.signalr.net"}, Secret: []byte(testKey)}}, Options{MaxTokenLifetime: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now().Unix()
	got, err := rewriteClaims(t, r, `{"exp":99999999999,`+signalAud+`}`, Caller{UserID: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	var claims struct{ Exp int64 }
	if err := json.Unmarshal([]byte(got), &claims); err != nil {
		t.Fatal(err)
	}
	if after := time.Now().Unix(); claims.Exp < before+60 || claims.Exp > after+60 {
		t.Errorf("exp = %d, want a minute after %d..%d", claims.Exp, before, after)
	}
}
