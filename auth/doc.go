// Package auth authenticates callers by their bearer JWT, checked against an
// identity provider's JSON Web Key Set, and names the user each token speaks for.
package auth
