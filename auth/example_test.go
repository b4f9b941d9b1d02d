package auth_test

import (
	"fmt"

	"github.com/negotiate-sidecar/negotiate-sidecar/auth"
)

// ParseBearer accepts exactly one RFC 6750 bearer credential.
func ExampleParseBearer() {
	for _, h := range [][]string{
		{"Bearer eyJhbGciOiJSUzI1NiJ9.e30.c2ln"},
		{"bearer abc"},
		{"Basic YWxpY2U6cHc="},
		{"Bearer a", "Bearer b"},
	} {
		tok, ok := auth.ParseBearer(h)
		fmt.Printf("%q -> %q %v\n", h, tok, ok)
	}
	// Output:
	// ["Bearer eyJhbGciOiJSUzI1NiJ9.e30.c2ln"] -> "eyJhbGciOiJSUzI1NiJ9.e30.c2ln" true
	// ["bearer abc"] -> "abc" true
	// ["Basic YWxpY2U6cHc="] -> "" false
	// ["Bearer a" "Bearer b"] -> "" false
}
