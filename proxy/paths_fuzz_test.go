package proxy

import (
	"path"
	"strings"
	"testing"
)

// FuzzNormalize holds normalize to its definition: lowercase, backslashes
// as slashes, then path.Clean of the path rooted with a slash, without the
// trailing one.
func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"/api/negotiate", "/", "", "api//x/", `\API\..\negotiate`, "//a/./b/../negotiate/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		want := strings.TrimSuffix(path.Clean("/"+strings.ToLower(strings.ReplaceAll(p, `\`, "/"))), "/")
		if got := normalize(p); got != want {
			t.Fatalf("normalize(%q) = %q, want %q", p, got, want)
		}
	})
}
