package main

import (
	"io"
	"regexp"
)

// secretPatterns match what must never reach a log: anything shaped like a
// JWS (a bearer or service token) and the value of an AccessKey or
// ClientSecret in a connection string.
var secretPatterns = []*regexp.Regexp{
	// Two dot-joined base64url runs and a third: a token, its dots also
	// percent-encoded. Long runs only, so that host names stay readable.
	regexp.MustCompile(`[A-Za-z0-9_-]{8,}(?:\.|%2[Ee])[A-Za-z0-9_-]{8,}(?:\.|%2[Ee])[A-Za-z0-9_-]*`),
	// A key or secret after =, %3D or a JSON colon.
	regexp.MustCompile(`(?i)(accesskey|clientsecret)("?\s*(?:=|%3D|:)\s*"?)[^;"'\s&]*`),
}

// redact replaces each secret in p.
func redact(p []byte) []byte {
	p = secretPatterns[0].ReplaceAll(p, []byte("[REDACTED]"))
	return secretPatterns[1].ReplaceAll(p, []byte("$1$2[REDACTED]"))
}

// redactingWriter writes what it is given with secrets replaced. It serves
// log lines, each written whole, so a secret never spans two writes.
type redactingWriter struct{ w io.Writer }

func (r redactingWriter) Write(p []byte) (int, error) {
	if _, err := r.w.Write(redact(p)); err != nil {
		return 0, err
	}
	return len(p), nil
}
