package proxy

import (
	"encoding/json"
	"net/http"

	"github.com/negotiate-sidecar/negotiate-sidecar/auth"
)

// writeProblem answers with a short RFC 9457 problem document. It is the one
// place where errors become responses; details stay in the logs.
func writeProblem(w http.ResponseWriter, status int, title, detail string) {
	body, _ := json.Marshal(struct {
		Type   string `json:"type"`
		Title  string `json:"title"`
		Status int    `json:"status"`
		Detail string `json:"detail"`
	}{"about:blank", title, status, detail})
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// writeUnauthorized answers 401 with the RFC 6750 challenge. A request
// without a token gets a plain challenge; a bad token gets
// error="invalid_token", so that clients know to get a new one.
func writeUnauthorized(w http.ResponseWriter, reason auth.Reason) {
	challenge, detail := `Bearer`, "A bearer token is required."
	switch reason {
	case auth.ReasonMissing:
	case auth.ReasonExpired:
		challenge = `Bearer error="invalid_token", error_description="the token has expired"`
		detail = "The bearer token has expired."
	default:
		challenge = `Bearer error="invalid_token", error_description="the token is not valid"`
		detail = "The bearer token is not valid."
	}
	w.Header().Set("WWW-Authenticate", challenge)
	writeProblem(w, http.StatusUnauthorized, "Unauthorized", detail)
}
