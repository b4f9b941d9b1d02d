package main

import (
	"io"
	"regexp"
)

// secretPatterns match what must never reach a log: anything shaped like a
// JWS (a bearer or service token) and the value of an AccessKey or
// ClientSecret in a connection string.
var secretPatterns = []*regexp.Regexp{
	regexp.MustCompile(`ey[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*`), // a JSON header encodes to "ey..."
	regexp.MustCompile(`(?i)(accesskey|clientsecret)\s*=\s*[^;"'\s]*`),
}

// redact replaces each secret in p.
func redact(p []byte) []byte {
	p = secretPatterns[0].ReplaceAll(p, []byte("[REDACTED]"))
	return secretPatterns[1].ReplaceAll(p, []byte("$1=[REDACTED]"))
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
