package proxy_test

import (
	"fmt"

	"github.com/negotiate-sidecar/negotiate-sidecar/proxy"
)

// The default Matcher treats every spelling the Functions host would route to
// a negotiate function as the negotiate route.
func ExampleMatcher() {
	m, err := proxy.NewMatcher(nil)
	if err != nil {
		panic(err)
	}
	for _, p := range []string{"/api/negotiate", "/API/Negotiate/", "/api/x/../negotiate", "/api/chat/negotiate", "/api/messages"} {
		fmt.Println(p, m.Match(p))
	}
	// Output:
	// /api/negotiate true
	// /API/Negotiate/ true
	// /api/x/../negotiate true
	// /api/chat/negotiate true
	// /api/messages false
}
