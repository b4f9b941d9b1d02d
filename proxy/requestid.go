package proxy

import (
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"net/http"
)

const headerRequestID = "X-Request-Id" // canonical form: see the identity headers

// ensureRequestID keeps a well-formed X-Request-ID from the caller (an
// ingress in front usually sets one) or makes a new one, and sets it on the
// request to the app and on the response, so that one id follows a request
// through every log. W3C traceparent headers are left alone: they pass
// through untouched.
func ensureRequestID(w http.ResponseWriter, r *http.Request) {
	vv := r.Header[headerRequestID]
	if len(vv) != 1 || !validRequestID(vv[0]) {
		// A request id correlates log lines; it guards nothing, so it
		// needs uniqueness, not secrecy: the runtime's per-thread
		// generator gives that without a system call.
		var b [16]byte
		binary.LittleEndian.PutUint64(b[:8], rand.Uint64())
		binary.LittleEndian.PutUint64(b[8:], rand.Uint64())
		var text [32]byte
		hex.Encode(text[:], b[:])
		vv = []string{string(text[:])}
		r.Header[headerRequestID] = vv
	}
	// The request's value serves the response too: header values are
	// replaced, never changed in place.
	w.Header()[headerRequestID] = vv[:1:1]
}

// validRequestID accepts up to 128 visible ASCII characters, so that an id
// cannot break a log line or smuggle a header.
func validRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			return false
		}
	}
	return true
}
