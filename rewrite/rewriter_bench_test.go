package rewrite

import "testing"

// BenchmarkRewrite measures one negotiate body rewrite: parse, verify, set
// the claim, sign. It is the sidecar's whole added cost per negotiate beyond
// the JWT check and the proxy hop.
func BenchmarkRewrite(b *testing.B) {
	r, err := New(SignalR, []Key{{Hosts: []string{"x.service.signalr.net"}, Secret: []byte(testKey)}}, Options{})
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
