package proxy

import (
	"fmt"
	"path"
	"strings"
)

// Matcher decides which request paths are negotiate routes.
//
// It must match at least every spelling that the upstream routes to its
// negotiate function, or a caller could reach the function under another
// spelling without being authenticated or rewritten. The Functions host
// matches routes case-insensitively, decodes percent-escapes, resolves dot
// segments and ignores a trailing slash, so the path is normalised the same
// way before it is compared. Erring towards matching costs little: a
// non-negotiate route that matches only has to authenticate.
type Matcher struct {
	patterns []string // lowercase path.Match patterns; empty means the default rule
}

// NewMatcher returns a Matcher for the given path.Match patterns, such as
// "/api/*/negotiate". With no patterns it matches every path whose last
// segment is "negotiate".
func NewMatcher(patterns []string) (*Matcher, error) {
	m := &Matcher{}
	for _, p := range patterns {
		if !strings.HasPrefix(p, "/") {
			return nil, fmt.Errorf("negotiate path %q must start with /", p)
		}
		lp := strings.ToLower(p)
		if _, err := path.Match(lp, ""); err != nil {
			return nil, fmt.Errorf("negotiate path %q: %w", p, err)
		}
		m.patterns = append(m.patterns, strings.TrimSuffix(path.Clean(lp), "/"))
	}
	return m, nil
}

// Match reports whether the decoded request path (url.URL.Path) is a
// negotiate route.
func (m *Matcher) Match(urlPath string) bool {
	p := normalize(urlPath)
	if len(m.patterns) == 0 {
		return strings.HasSuffix(p, "/negotiate")
	}
	for _, pat := range m.patterns {
		if ok, _ := path.Match(pat, p); ok {
			return true
		}
	}
	return false
}

// normalize lowercases the path, treats backslashes as separators (as some
// servers do), resolves dot segments and repeated slashes, and drops a
// trailing slash.
func normalize(p string) string {
	p = strings.ToLower(strings.ReplaceAll(p, `\`, "/"))
	if !strings.HasPrefix(p, "/") {
		// Clean collapses repeated slashes, so a rooted path needs no
		// second one in front, and a path already clean costs no copy.
		p = "/" + p
	}
	return strings.TrimSuffix(path.Clean(p), "/")
}
