package rewrite

import (
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// FuzzParseConnectionString checks that the parser never panics, that its
// errors never show a secret or the input, and that a successful parse
// yields bare absolute http or https endpoints without a trailing '/' and
// survives being written back out and parsed again.
func FuzzParseConnectionString(f *testing.F) {
	for _, seed := range []string{
		// Valid.
		"Endpoint=https://x.service.signalr.net;AccessKey=" + testAccessKey + ";Version=1.0;",
		"Endpoint=https://x.webpubsub.azure.com;AccessKey=" + testAccessKey + ";Version=1.0",
		" endpoint = HTTP://Localhost/ ; port = 8080 ; accesskey = k== ",
		"Endpoint=http://[::1]:8080/prefix//;AccessKey=k;Port=9090",
		"Endpoint=https://x/a%2F%3B;AccessKey=k",
		"Endpoint=http://[fe80::1%25en0]:08080/;AccessKey=k;Port=9",
		"Endpoint=https://x;AccessKey=k;ClientEndpoint=https://c:443/;ServerEndpoint=http://s:80",
		"Endpoint=https://x;AuthType=azure.app;ClientId=cid;TenantId=tid;ClientSecret=" + testClientSecret,
		"Endpoint=https://x;AuthType=azure.msi;ClientCert=/cert.pem;Foo=bar",
		// Broken.
		"",
		";;;",
		"Endpoint=https://x",
		"Endpoint=https://x;AccessKey",
		"Endpoint=https://x;=k",
		"Endpoint=https://x;AccessKey=a;accesskey=b",
		"Endpoint=https://x;AccessKey=k;Port=70000",
		"Endpoint=https://x;AccessKey=k;Version=2.0",
		"Endpoint=https://x;AuthType=kerberos",
		"Endpoint=ftp://" + testAccessKeyUnpadded + ";AccessKey=" + testAccessKey,
		"Endpoint=https://x.service.signalr.net,AccessKey=" + testAccessKey,
		"Endpoint=https://user:" + testClientSecret + "@x;AccessKey=k",
		"Endpoint=https://x?a=b#c;AccessKey=k",
		"Endpoint=https://x:0;AccessKey=k",
		"Endpoint=https://x;AccessKey=k;ClientEndpoint=c",
	} {
		f.Add(seed)
	}

	f.Fuzz(func(t *testing.T, s string) {
		cs, err := ParseConnectionString(s)
		secrets := fuzzSecrets(s)
		if err != nil {
			checkParseError(t, s, err.Error(), secrets)
			return
		}
		checkParsed(t, s, cs)
	})
}

// fuzzSecrets returns the trimmed, non-empty values of the secret keys in s,
// with and without base64 '=' padding, found by a split written
// independently of the parser's.
func fuzzSecrets(s string) []string {
	var secrets []string
	for part := range strings.SplitSeq(s, ";") {
		key, value, ok := strings.Cut(part, "=")
		if !ok {
			continue
		}
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		switch strings.ToLower(key) {
		case "accesskey", "clientsecret", "clientcert":
			for _, v := range []string{value, strings.TrimRight(value, "=")} {
				if v != "" {
					secrets = append(secrets, v)
				}
			}
		}
	}
	return secrets
}

// checkParseError checks that an error message is a single line with the
// usual prefix and shows no secret and not the input itself.
//
// Any input text an error shows is quoted with %q; the only other variable
// text is a part number. So a leak has to appear inside a quoted segment,
// and only those are searched: the fixed wording ("connection string",
// "Endpoint=https://...") contains short strings that a fuzzed key may
// equal without anything having leaked.
func checkParseError(t *testing.T, input, msg string, secrets []string) {
	t.Helper()
	if !strings.HasPrefix(msg, "connection string: ") {
		t.Errorf("error %q lacks the \"connection string: \" prefix", msg)
	}
	if strings.ContainsAny(msg, "\r\n") {
		t.Errorf("error %q spans several lines", msg)
	}
	trimmedInput := strings.TrimSpace(input)
	for _, seg := range quotedSegments(msg) {
		if fixedQuotedText(seg) {
			continue
		}
		for _, secret := range secrets {
			if strings.Contains(seg, secret) {
				t.Fatalf("error %q shows secret %q from input %q", msg, secret, input)
			}
		}
		if len(secrets) > 0 && strings.Contains(seg, trimmedInput) {
			t.Fatalf("error %q shows input %q", msg, input)
		}
	}
}

// fixedQuotedText reports whether seg is quoted text that the parser always
// writes, whatever the input: a canonical key name or a punctuation mark.
func fixedQuotedText(seg string) bool {
	switch seg {
	case "=", "?", "#":
		return true
	}
	return canonicalKey(seg) == seg
}

// quotedSegments returns the unquoted contents of the Go-quoted strings in
// msg, in order.
func quotedSegments(msg string) []string {
	var segs []string
	for i := 0; i < len(msg); {
		j := strings.IndexByte(msg[i:], '"')
		if j < 0 {
			break
		}
		i += j
		q, err := strconv.QuotedPrefix(msg[i:])
		if err != nil {
			i++
			continue
		}
		seg, err := strconv.Unquote(q)
		if err != nil {
			panic("QuotedPrefix returned text that Unquote rejects: " + q)
		}
		segs = append(segs, seg)
		i += len(q)
	}
	return segs
}

// checkParsed checks the invariants of a successful parse, then rebuilds a
// connection string from the result and checks that it parses to the same
// result.
func checkParsed(t *testing.T, input string, cs ConnectionString) {
	t.Helper()
	if cs.Endpoint == nil {
		t.Fatalf("ParseConnectionString(%q) succeeded with a nil Endpoint", input)
	}
	for _, e := range []struct {
		name string
		u    *url.URL
	}{
		{"Endpoint", cs.Endpoint},
		{"ClientEndpoint", cs.ClientEndpoint},
		{"ServerEndpoint", cs.ServerEndpoint},
	} {
		if e.u == nil {
			continue
		}
		if e.u.Scheme != "http" && e.u.Scheme != "https" {
			t.Errorf("%s %q from input %q is not http or https", e.name, e.u, input)
		}
		if e.u.Hostname() == "" || e.u.User != nil || e.u.RawQuery != "" || e.u.Fragment != "" || e.u.ForceQuery {
			t.Errorf("%s %q from input %q is not a bare absolute URL", e.name, e.u, input)
		}
		if str := e.u.String(); strings.HasSuffix(str, "/") || strings.HasSuffix(e.u.EscapedPath(), "/") {
			t.Errorf("%s %q from input %q ends with '/'", e.name, str, input)
		}
	}
	if cs.AccessKey == "" && cs.AuthType == "" {
		t.Errorf("ParseConnectionString(%q) succeeded with neither AccessKey nor AuthType", input)
	}
	if cs.Port != 0 && cs.Endpoint.Port() != strconv.Itoa(cs.Port) {
		t.Errorf("Endpoint %q from input %q does not have Port %d applied", cs.Endpoint, input, cs.Port)
	}

	hosts := cs.Hosts()
	if len(hosts) == 0 {
		t.Errorf("Hosts() from input %q is empty", input)
	}
	for i, h := range hosts {
		if h == "" || h != strings.ToLower(h) || slices.Contains(hosts[i+1:], h) {
			t.Errorf("Hosts() from input %q = %q: want non-empty, lowercase, unique", input, hosts)
		}
	}

	if want := cs.AccessKey != ""; strings.Contains(cs.String(), "AccessKey=<redacted>") != want {
		t.Errorf("String() = %q from input %q: want AccessKey=<redacted> only when a key is set", cs.String(), input)
	}

	rebuilt := unredactedString(cs)
	again, err := ParseConnectionString(rebuilt)
	if err != nil {
		t.Fatalf("rebuilt %q from input %q does not parse: %v", rebuilt, input, err)
	}
	if got, want := fieldsOf(again), fieldsOf(cs); got != want {
		t.Errorf("rebuilt %q from input %q parses to\n%+v\nwant\n%+v", rebuilt, input, got, want)
	}
}

// unredactedString writes cs back as a connection string, secrets
// included, with placeholders for the client secret and certificate, which
// are not kept.
func unredactedString(cs ConnectionString) string {
	parts := []string{"Endpoint=" + cs.Endpoint.String()}
	add := func(key, value string) {
		if value != "" {
			parts = append(parts, key+"="+value)
		}
	}
	add("AccessKey", cs.AccessKey)
	add("Version", cs.Version)
	if cs.Port != 0 {
		add("Port", strconv.Itoa(cs.Port))
	}
	if cs.ClientEndpoint != nil {
		add("ClientEndpoint", cs.ClientEndpoint.String())
	}
	if cs.ServerEndpoint != nil {
		add("ServerEndpoint", cs.ServerEndpoint.String())
	}
	add("AuthType", cs.AuthType)
	add("ClientId", cs.ClientID)
	add("TenantId", cs.TenantID)
	if cs.HasClientSecret {
		add("ClientSecret", "secret")
	}
	if cs.HasClientCert {
		add("ClientCert", "cert")
	}
	return strings.Join(parts, ";")
}
