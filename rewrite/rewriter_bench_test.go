package rewrite

import (
	"testing"
	"time"
)

// BenchmarkRewrite measures one negotiate body rewrite: parse, verify, set
// the claim, sign. It is the sidecar's whole added cost per negotiate beyond
// the JWT check and the proxy hop.
func BenchmarkRewrite(b *testing.B) {
	r, err := New(SignalR(), []Key{{Hosts: []string{"x.service.signalr.net"}, Secret: []byte(testKey)}}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	in := body(signHS256(sdkHeader, sdkClaims, testKey))
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if _, err := r.Rewrite(in, Caller{UserID: "alice@contoso.com"}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRewriteWithOptions adds every option: two forwarded claims, both
// exp caps and the close-on-expiry claims.
func BenchmarkRewriteWithOptions(b *testing.B) {
	r := newOptionsRewriter(b, SignalR(), Options{
		ForwardClaims:       []string{"tid", "roles"},
		MaxTokenLifetime:    30 * time.Minute,
		BindToCallerExpiry:  true,
		CloseOnCallerExpiry: true,
	})
	in := body(signHS256(sdkHeader, sdkClaims, testKey))
	c := Caller{
		UserID: "alice@contoso.com",
		Claims: map[string]any{"tid": "72f988bf-86f1-41af-91ab-2d7cd011db47", "roles": []any{"reader", "writer"}},
		Expiry: time.Unix(1732695600, 0),
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if _, err := r.Rewrite(in, c); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkForeignToken measures the last check of a negotiate: the scan of
// a rewritten body for a token that does not name the caller.
func BenchmarkForeignToken(b *testing.B) {
	r, err := New(SignalR(), []Key{{Hosts: []string{"x.service.signalr.net"}, Secret: []byte(testKey)}}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	out, err := r.Rewrite(body(signHS256(sdkHeader, sdkClaims, testKey)), Caller{UserID: "alice@contoso.com"})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(out)))
	for b.Loop() {
		if r.ForeignToken(out, "alice@contoso.com") {
			b.Fatal("the caller's own token counted as foreign")
		}
	}
}
