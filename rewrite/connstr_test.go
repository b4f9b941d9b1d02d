package rewrite

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// testAccessKey looks like a real key: base64 with trailing padding, which
// is why parts are split on their first '=' only.
const testAccessKey = testAccessKeyUnpadded + "="

// testAccessKeyUnpadded is testAccessKey without its padding, which is
// still the whole key.
const testAccessKeyUnpadded = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopq"

// testClientSecret is distinctive so that a leak is easy to spot.
const testClientSecret = "hunter2-client-secret"

// connStringFields is ConnectionString with the URLs as strings, so that
// test tables can spell out what they expect.
type connStringFields struct {
	Endpoint, AccessKey, Version   string
	Port                           int
	ClientEndpoint, ServerEndpoint string
	AuthType, ClientID, TenantID   string
	HasClientSecret, HasClientCert bool
}

func fieldsOf(c ConnectionString) connStringFields {
	return connStringFields{
		Endpoint:        urlString(c.Endpoint),
		AccessKey:       c.AccessKey,
		Version:         c.Version,
		Port:            c.Port,
		ClientEndpoint:  urlString(c.ClientEndpoint),
		ServerEndpoint:  urlString(c.ServerEndpoint),
		AuthType:        c.AuthType,
		ClientID:        c.ClientID,
		TenantID:        c.TenantID,
		HasClientSecret: c.HasClientSecret,
		HasClientCert:   c.HasClientCert,
	}
}

func urlString(u *url.URL) string {
	if u == nil {
		return ""
	}
	return u.String()
}

func mustParse(t *testing.T, s string) ConnectionString {
	t.Helper()
	cs, err := ParseConnectionString(s)
	if err != nil {
		t.Fatalf("ParseConnectionString: %v", err)
	}
	return cs
}

func TestParseConnectionString(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  connStringFields
	}{
		{
			name:  "signalr with trailing semicolon",
			input: "Endpoint=https://x.service.signalr.net;AccessKey=" + testAccessKey + ";Version=1.0;",
			want:  connStringFields{Endpoint: "https://x.service.signalr.net", AccessKey: testAccessKey, Version: "1.0"},
		},
		{
			name:  "web pubsub",
			input: "Endpoint=https://x.webpubsub.azure.com;AccessKey=k;Version=1.0",
			want:  connStringFields{Endpoint: "https://x.webpubsub.azure.com", AccessKey: "k", Version: "1.0"},
		},
		{
			name:  "keys are case-insensitive and keys and values are trimmed",
			input: "  endpoint = https://x.service.signalr.net/ ;  ACCESSKEY =  k==  ; vErSiOn=1.0 ",
			want:  connStringFields{Endpoint: "https://x.service.signalr.net", AccessKey: "k==", Version: "1.0"},
		},
		{
			name:  "value keeps every '=' after the first",
			input: "Endpoint=https://x;AccessKey==a=b==",
			want:  connStringFields{Endpoint: "https://x", AccessKey: "=a=b=="},
		},
		{
			name:  "empty and blank parts are dropped",
			input: ";;Endpoint=https://x;; ;AccessKey=k;;",
			want:  connStringFields{Endpoint: "https://x", AccessKey: "k"},
		},
		{
			name:  "unknown keys are ignored",
			input: "Endpoint=https://x;AccessKey=k;Foo=bar;Bar=",
			want:  connStringFields{Endpoint: "https://x", AccessKey: "k"},
		},
		{
			name:  "every trailing slash is trimmed and the path kept",
			input: "Endpoint=https://x/prefix//;AccessKey=k",
			want:  connStringFields{Endpoint: "https://x/prefix", AccessKey: "k"},
		},
		{
			name:  "an escaped trailing slash is data and is kept",
			input: "Endpoint=https://x/a%2F;AccessKey=k",
			want:  connStringFields{Endpoint: "https://x/a%2F", AccessKey: "k"},
		},
		{
			name:  "an escaped semicolon stays escaped when the path is re-escaped",
			input: "Endpoint=https://x/a b%3B;AccessKey=k",
			want:  connStringFields{Endpoint: "https://x/a%20b%3B", AccessKey: "k"},
		},
		{
			name:  "scheme is lowercased and the host kept as written",
			input: "Endpoint=HTTPS://X.Service.SignalR.net;AccessKey=k",
			want:  connStringFields{Endpoint: "https://X.Service.SignalR.net", AccessKey: "k"},
		},
		{
			name:  "port is applied to the endpoint",
			input: "Endpoint=http://localhost;Port=8080;AccessKey=k",
			want:  connStringFields{Endpoint: "http://localhost:8080", AccessKey: "k", Port: 8080},
		},
		{
			name:  "port overrides the endpoint's own port",
			input: "Endpoint=https://x:8443;Port=9443;AccessKey=k",
			want:  connStringFields{Endpoint: "https://x:9443", AccessKey: "k", Port: 9443},
		},
		{
			name:  "port with leading zeros",
			input: "Endpoint=https://x;Port=0443;AccessKey=k",
			want:  connStringFields{Endpoint: "https://x:443", AccessKey: "k", Port: 443},
		},
		{
			name:  "port on an ipv6 endpoint",
			input: "Endpoint=http://[::1];Port=8080;AccessKey=k",
			want:  connStringFields{Endpoint: "http://[::1]:8080", AccessKey: "k", Port: 8080},
		},
		{
			name:  "leading zeros dropped from the endpoint's port",
			input: "Endpoint=https://x:08080;AccessKey=k",
			want:  connStringFields{Endpoint: "https://x:8080", AccessKey: "k"},
		},
		{
			name:  "ipv6 with zone and underscore host",
			input: "Endpoint=http://[fe80::1%25eth0]:8080;AccessKey=k;ClientEndpoint=https://my_host.example",
			want:  connStringFields{Endpoint: "http://[fe80::1%25eth0]:8080", AccessKey: "k", ClientEndpoint: "https://my_host.example"},
		},
		{
			name:  "bare trailing colon is dropped",
			input: "Endpoint=https://x:;AccessKey=k",
			want:  connStringFields{Endpoint: "https://x", AccessKey: "k"},
		},
		{
			name:  "any 1.x version",
			input: "Endpoint=https://x;AccessKey=k;Version=1.12",
			want:  connStringFields{Endpoint: "https://x", AccessKey: "k", Version: "1.12"},
		},
		{
			// The SDK's pattern, ^1\.\d+(?:[\w-.]+)?$, takes a suffix of
			// word characters, '-' and '.' (Azure/azure-signalr,
			// src/Microsoft.Azure.SignalR.Common/Utilities/ConnectionStringParser.cs).
			name:  "preview version",
			input: "Endpoint=https://x;AccessKey=k;Version=1.0-preview",
			want:  connStringFields{Endpoint: "https://x", AccessKey: "k", Version: "1.0-preview"},
		},
		{
			name:  "version suffix of word characters, dots and dashes",
			input: "Endpoint=https://x;AccessKey=k;Version=1.2.3_rc-1",
			want:  connStringFields{Endpoint: "https://x", AccessKey: "k", Version: "1.2.3_rc-1"},
		},
		{
			// .NET's \d and \w are Unicode classes.
			name:  "version with a non-ASCII digit and letter, as .NET reads them",
			input: "Endpoint=https://x;AccessKey=k;Version=1.٣é",
			want:  connStringFields{Endpoint: "https://x", AccessKey: "k", Version: "1.٣é"},
		},
		{
			name:  "client and server endpoints",
			input: "Endpoint=https://x;AccessKey=k;ClientEndpoint=https://client.example.com/;ServerEndpoint=http://10.0.0.1:8080/",
			want: connStringFields{
				Endpoint: "https://x", AccessKey: "k",
				ClientEndpoint: "https://client.example.com", ServerEndpoint: "http://10.0.0.1:8080",
			},
		},
		{
			name:  "aad with a client secret needs no access key",
			input: "Endpoint=https://x;AuthType=AAD;ClientId=cid;TenantId=tid;ClientSecret=" + testClientSecret,
			want: connStringFields{
				Endpoint: "https://x", AuthType: "aad", ClientID: "cid", TenantID: "tid", HasClientSecret: true,
			},
		},
		{
			name:  "azure.app with a client certificate",
			input: "Endpoint=https://x;AuthType=azure.app;ClientId=cid;TenantId=tid;ClientCert=/etc/cert.pem",
			want: connStringFields{
				Endpoint: "https://x", AuthType: "azure.app", ClientID: "cid", TenantID: "tid", HasClientCert: true,
			},
		},
		{
			name:  "azure.msi",
			input: "Endpoint=https://x;AuthType=Azure.MSI;ClientId=cid",
			want:  connStringFields{Endpoint: "https://x", AuthType: "azure.msi", ClientID: "cid"},
		},
		{
			name:  "azure",
			input: "Endpoint=https://x;AuthType=azure",
			want:  connStringFields{Endpoint: "https://x", AuthType: "azure"},
		},
		{
			name:  "access key is kept alongside an auth type",
			input: "Endpoint=https://x;AccessKey=k;AuthType=aad",
			want:  connStringFields{Endpoint: "https://x", AccessKey: "k", AuthType: "aad"},
		},
		{
			name:  "empty client secret and certificate count as absent",
			input: "Endpoint=https://x;AuthType=aad;ClientSecret=;ClientCert= ",
			want:  connStringFields{Endpoint: "https://x", AuthType: "aad"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs := mustParse(t, tt.input)
			if got := fieldsOf(cs); got != tt.want {
				t.Errorf("ParseConnectionString(%q)\n got %+v\nwant %+v", tt.input, got, tt.want)
			}
		})
	}
}

func TestParseConnectionStringErrors(t *testing.T) {
	const endpointHint = "(expected Endpoint=https://<name>.service.signalr.net)"
	tests := []struct {
		name  string
		input string
		want  string
	}{
		{
			name:  "empty input",
			input: "",
			want:  "connection string: missing Endpoint (expected Endpoint=https://<name>.service.signalr.net;AccessKey=...)",
		},
		{
			name:  "no endpoint",
			input: "AccessKey=" + testAccessKey,
			want:  "connection string: missing Endpoint (expected Endpoint=https://<name>.service.signalr.net;AccessKey=...)",
		},
		{
			name:  "empty endpoint",
			input: "Endpoint= ;AccessKey=" + testAccessKey,
			want:  "connection string: missing Endpoint (expected Endpoint=https://<name>.service.signalr.net;AccessKey=...)",
		},
		{
			name:  "no access key",
			input: "Endpoint=https://x",
			want:  "connection string: missing AccessKey (expected AccessKey=<key>, the key the app signs client tokens with)",
		},
		{
			name:  "empty access key",
			input: "Endpoint=https://x;AccessKey=",
			want:  "connection string: missing AccessKey (expected AccessKey=<key>, the key the app signs client tokens with)",
		},
		{
			name:  "access key run into the endpoint with a comma is not quoted",
			input: "Endpoint=https://x.service.signalr.net,AccessKey=" + testAccessKey,
			want:  "connection string: Endpoint has a host that is not a DNS name or IP address",
		},
		{
			name:  "duplicate access key",
			input: "Endpoint=https://x;AccessKey=" + testAccessKey + ";AccessKey=other",
			want:  `connection string: duplicate key "AccessKey"`,
		},
		{
			name:  "duplicate key in another case uses the documented spelling",
			input: "Endpoint=https://x;accesskey=" + testAccessKey + ";ACCESSKEY=other",
			want:  `connection string: duplicate key "AccessKey"`,
		},
		{
			name:  "duplicate unknown key",
			input: "Endpoint=https://x;AccessKey=" + testAccessKey + ";Foo=1;foo=2",
			want:  `connection string: duplicate key "foo"`,
		},
		{
			name:  "duplicate unknown key containing the access key is not quoted",
			input: "Endpoint=https://x;AccessKey=" + testAccessKey + ";_" + testAccessKeyUnpadded + "=1;_" + testAccessKeyUnpadded + "=2",
			want:  "connection string: duplicate key in part 4",
		},
		{
			name:  "part without equals",
			input: "Endpoint=https://x;AccessKey:" + testAccessKeyUnpadded,
			want:  `connection string: part 2 has no "=" (expected Key=Value)`,
		},
		{
			// The padding makes the key parse as an unknown key with an
			// empty value, which is ignored.
			name:  "access key pasted without its name",
			input: "Endpoint=https://x;" + testAccessKey,
			want:  "connection string: missing AccessKey (expected AccessKey=<key>, the key the app signs client tokens with)",
		},
		{
			name:  "part position counts empty parts",
			input: "Endpoint=https://x;;AccessKey",
			want:  `connection string: part 3 has no "=" (expected Key=Value)`,
		},
		{
			name:  "empty key",
			input: "Endpoint=https://x; =" + testAccessKey,
			want:  "connection string: part 2 has an empty key (expected Key=Value)",
		},
		{
			name:  "port too large",
			input: "Endpoint=https://x;AccessKey=k;Port=70000",
			want:  `connection string: Port "70000" is not a number from 1 to 65535`,
		},
		{
			name:  "port zero",
			input: "Endpoint=https://x;AccessKey=k;Port=0",
			want:  `connection string: Port "0" is not a number from 1 to 65535`,
		},
		{
			name:  "port with a sign",
			input: "Endpoint=https://x;AccessKey=k;Port=+80",
			want:  `connection string: Port "+80" is not a number from 1 to 65535`,
		},
		{
			name:  "port not a number",
			input: "Endpoint=https://x;AccessKey=k;Port=https",
			want:  `connection string: Port "https" is not a number from 1 to 65535`,
		},
		{
			name:  "empty port",
			input: "Endpoint=https://x;AccessKey=k;Port=",
			want:  `connection string: Port "" is not a number from 1 to 65535`,
		},
		{
			name:  "overlong value is not quoted",
			input: "Endpoint=https://x;AccessKey=k;Port=" + strings.Repeat("9", maxQuotedLen+1),
			want:  "connection string: Port is not a number from 1 to 65535",
		},
		{
			name:  "unsupported version",
			input: "Endpoint=https://x;AccessKey=k;Version=2.0",
			want:  `connection string: Version "2.0" is not supported (expected 1.<minor>, such as Version=1.0)`,
		},
		{
			name:  "version without minor",
			input: "Endpoint=https://x;AccessKey=k;Version=1",
			want:  `connection string: Version "1" is not supported (expected 1.<minor>, such as Version=1.0)`,
		},
		{
			name:  "version with another major after the minor",
			input: "Endpoint=https://x;AccessKey=k;Version=1.0 2",
			want:  `connection string: Version "1.0 2" is not supported (expected 1.<minor>, such as Version=1.0)`,
		},
		{
			name:  "version with a character the SDK's pattern refuses",
			input: "Endpoint=https://x;AccessKey=k;Version=1.0+beta",
			want:  `connection string: Version "1.0+beta" is not supported (expected 1.<minor>, such as Version=1.0)`,
		},
		{
			name:  "version without a digit after the dot",
			input: "Endpoint=https://x;AccessKey=k;Version=1.-preview",
			want:  `connection string: Version "1.-preview" is not supported (expected 1.<minor>, such as Version=1.0)`,
		},
		{
			name:  "version holding the client secret is not quoted",
			input: "Endpoint=https://x;AuthType=aad;ClientSecret=" + testClientSecret + ";Version=" + testClientSecret,
			want:  "connection string: Version is not supported (expected 1.<minor>, such as Version=1.0)",
		},
		{
			name:  "unsupported auth type",
			input: "Endpoint=https://x;AuthType=kerberos",
			want:  `connection string: AuthType "kerberos" is not an AuthType the Azure SDK knows: give aad, azure, azure.app or azure.msi to sign in with Microsoft Entra ID, or remove AuthType and give AccessKey`,
		},
		{
			name:  "endpoint without scheme",
			input: "Endpoint=x.service.signalr.net;AccessKey=k",
			want:  `connection string: Endpoint "x.service.signalr.net" is not an absolute http or https URL ` + endpointHint,
		},
		{
			name:  "endpoint with another scheme",
			input: "Endpoint=wss://x.service.signalr.net;AccessKey=k",
			want:  `connection string: Endpoint "wss://x.service.signalr.net" is not an absolute http or https URL ` + endpointHint,
		},
		{
			name:  "endpoint without host",
			input: "Endpoint=https://;AccessKey=k",
			want:  `connection string: Endpoint "https://" is not an absolute http or https URL ` + endpointHint,
		},
		{
			name:  "endpoint that does not parse",
			input: "Endpoint=https://x y;AccessKey=k",
			want:  `connection string: Endpoint "https://x y" is not an absolute http or https URL ` + endpointHint,
		},
		{
			name:  "endpoint holding the access key is not quoted",
			input: "Endpoint=" + testAccessKeyUnpadded + ";AccessKey=" + testAccessKey,
			want:  "connection string: Endpoint is not an absolute http or https URL " + endpointHint,
		},
		{
			name:  "endpoint with a query",
			input: "Endpoint=https://x?hub;AccessKey=k",
			want:  `connection string: Endpoint "https://x?hub" must not have a query or fragment (remove everything from the "?" or "#")`,
		},
		{
			name:  "endpoint with key and value in the query is not quoted",
			input: "Endpoint=https://x?AccessKey=" + testAccessKey,
			want:  `connection string: Endpoint must not have a query or fragment (remove everything from the "?" or "#")`,
		},
		{
			name:  "endpoint with a fragment",
			input: "Endpoint=https://x/#;AccessKey=k",
			want:  `connection string: Endpoint "https://x/#" must not have a query or fragment (remove everything from the "?" or "#")`,
		},
		{
			name:  "endpoint with a password",
			input: "Endpoint=https://user:pass@x;AccessKey=k",
			want:  "connection string: Endpoint must not contain a user name or password",
		},
		{
			name:  "endpoint with punctuation in its host",
			input: "Endpoint=https://x!y;AccessKey=k",
			want:  `connection string: Endpoint "https://x!y" has a host that is not a DNS name or IP address`,
		},
		{
			name:  "endpoint with a bad ipv6 zone",
			input: "Endpoint=https://[fe80::1%25a,b]:8080;AccessKey=k",
			want:  `connection string: Endpoint "https://[fe80::1%25a,b]:8080" has a host that is not a DNS name or IP address`,
		},
		{
			name:  "endpoint with port zero",
			input: "Endpoint=https://x:0;AccessKey=k",
			want:  `connection string: Endpoint "https://x:0" has a port that is not a number from 1 to 65535`,
		},
		{
			name:  "endpoint with port too large",
			input: "Endpoint=https://x:99999;AccessKey=k",
			want:  `connection string: Endpoint "https://x:99999" has a port that is not a number from 1 to 65535`,
		},
		{
			name:  "client endpoint not a url",
			input: "Endpoint=https://x;AccessKey=k;ClientEndpoint=client.example.com",
			want:  `connection string: ClientEndpoint "client.example.com" is not an absolute http or https URL (expected ClientEndpoint=https://<host>)`,
		},
		{
			name:  "server endpoint with another scheme",
			input: "Endpoint=https://x;AccessKey=k;ServerEndpoint=ftp://y",
			want:  `connection string: ServerEndpoint "ftp://y" is not an absolute http or https URL (expected ServerEndpoint=https://<host>)`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs, err := ParseConnectionString(tt.input)
			if err == nil {
				t.Fatalf("ParseConnectionString(%q) = %v, want error %q", tt.input, cs, tt.want)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("ParseConnectionString(%q) error\n got %q\nwant %q", tt.input, got, tt.want)
			}
			for _, secret := range []string{testAccessKey, testAccessKeyUnpadded, testClientSecret} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q contains secret %q", err, secret)
				}
			}
			if fieldsOf(cs) != (connStringFields{}) {
				t.Errorf("ParseConnectionString(%q) returned %+v with its error, want the zero value", tt.input, fieldsOf(cs))
			}
		})
	}
}

func TestConnectionStringHosts(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  []string
	}{
		{
			name:  "https default port omitted",
			input: "Endpoint=https://X.Service.SignalR.net;AccessKey=k",
			want:  []string{"x.service.signalr.net"},
		},
		{
			name:  "explicit https default port omitted",
			input: "Endpoint=https://x;Port=443;AccessKey=k",
			want:  []string{"x"},
		},
		{
			name:  "explicit http default port omitted",
			input: "Endpoint=http://x:80;AccessKey=k",
			want:  []string{"x"},
		},
		{
			name:  "443 is not the default for http; the endpoint as written too",
			input: "Endpoint=http://x;Port=443;AccessKey=k",
			want:  []string{"x:443", "x"},
		},
		{
			name:  "port applied, and the endpoint as written, which current SDKs put in aud",
			input: "Endpoint=http://localhost;Port=8080;AccessKey=k",
			want:  []string{"localhost:8080", "localhost"},
		},
		{
			name:  "ipv6",
			input: "Endpoint=http://[::1]:8080;AccessKey=k",
			want:  []string{"[::1]:8080"},
		},
		{
			// The SDK builds aud from the Endpoint only.
			name:  "client endpoint is not an audience",
			input: "Endpoint=https://x;AccessKey=k;ClientEndpoint=https://Client.example.com:8443/app",
			want:  []string{"x"},
		},
		{
			name:  "server endpoint is not an audience",
			input: "Endpoint=https://x;AccessKey=k;ServerEndpoint=https://internal",
			want:  []string{"x"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mustParse(t, tt.input).Hosts(); !slices.Equal(got, tt.want) {
				t.Errorf("Hosts() = %q, want %q", got, tt.want)
			}
		})
	}
	t.Run("zero value", func(t *testing.T) {
		if got := (ConnectionString{}).Hosts(); got != nil {
			t.Errorf("Hosts() = %q, want nil", got)
		}
	})
}

func TestConnectionStringString(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  string
	}{
		{
			name:  "access key",
			input: "Endpoint=https://x.service.signalr.net/;AccessKey=" + testAccessKey + ";Version=1.0;",
			want:  "Endpoint=https://x.service.signalr.net;AccessKey=<redacted>;Version=1.0",
		},
		{
			name:  "every field",
			input: "Endpoint=http://x;Port=8080;AccessKey=" + testAccessKey + ";Version=1.0;ClientEndpoint=https://c;ServerEndpoint=https://s;AuthType=azure.app;ClientId=cid;TenantId=tid;ClientSecret=" + testClientSecret + ";ClientCert=cert",
			want:  "Endpoint=http://x:8080;AccessKey=<redacted>;Version=1.0;Port=8080;ClientEndpoint=https://c;ServerEndpoint=https://s;AuthType=azure.app;ClientId=cid;TenantId=tid;ClientSecret=<redacted>;ClientCert=<redacted>",
		},
		{
			name:  "aad without access key",
			input: "Endpoint=https://x;AuthType=aad",
			want:  "Endpoint=https://x;AuthType=aad",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs := mustParse(t, tt.input)
			if got := cs.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
			if got, want := cs.GoString(), "rewrite.ConnectionString("+fmt.Sprintf("%q", tt.want)+")"; got != want {
				t.Errorf("GoString() = %q, want %q", got, want)
			}
		})
	}
	t.Run("password in a hand-built endpoint", func(t *testing.T) {
		cs := ConnectionString{Endpoint: &url.URL{Scheme: "https", User: url.UserPassword("u", testClientSecret), Host: "x"}}
		if got, want := cs.String(), "Endpoint=https://u:xxxxx@x"; got != want {
			t.Errorf("String() = %q, want %q", got, want)
		}
	})
	t.Run("zero value", func(t *testing.T) {
		if got := (ConnectionString{}).String(); got != "" {
			t.Errorf("String() = %q, want empty", got)
		}
	})
}

// TestConnectionStringRedaction checks that the usual ways of printing or
// encoding a value, including ones that walk its fields, never show a
// secret.
func TestConnectionStringRedaction(t *testing.T) {
	cs := mustParse(t, "Endpoint=https://x.service.signalr.net;AccessKey="+testAccessKey+";AuthType=aad;ClientSecret="+testClientSecret+";Version=1.0")
	const want = "Endpoint=https://x.service.signalr.net;AccessKey=<redacted>;Version=1.0;AuthType=aad;ClientSecret=<redacted>"

	type exported struct{ CS ConnectionString }
	printed := map[string]string{
		"%v":             fmt.Sprintf("%v", cs),
		"%+v":            fmt.Sprintf("%+v", cs),
		"%#v":            fmt.Sprintf("%#v", cs),
		"%s":             fmt.Sprintf("%s", cs),
		"%q":             fmt.Sprintf("%q", cs),
		"%x":             fmt.Sprintf("%x", cs),
		"%d":             fmt.Sprintf("%d", cs),
		"%t":             fmt.Sprintf("%t", cs),
		"%-300s":         fmt.Sprintf("%-300s", cs),
		"Sprint":         fmt.Sprint(cs),
		"Sprintln":       fmt.Sprintln(cs),
		"pointer %+v":    fmt.Sprintf("%+v", &cs),
		"slice %+v":      fmt.Sprintf("%+v", []ConnectionString{cs}),
		"map %v":         fmt.Sprintf("%v", map[string]ConnectionString{"a": cs}),
		"struct %+v":     fmt.Sprintf("%+v", exported{cs}),
		"struct %#v":     fmt.Sprintf("%#v", exported{cs}),
		"error wrapping": fmt.Errorf("using %v: %w", cs, fmt.Errorf("boom")).Error(),
	}
	data, err := json.Marshal(exported{cs})
	if err != nil {
		t.Fatal(err)
	}
	printed["json"] = string(data)
	for name, newHandler := range map[string]func(*bytes.Buffer) slog.Handler{
		"slog text": func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
		"slog json": func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
	} {
		var b bytes.Buffer
		slog.New(newHandler(&b)).Info("starting", "cs", cs, "parent", exported{cs})
		printed[name] = b.String()
	}

	for name, out := range printed {
		t.Run(name, func(t *testing.T) {
			for _, secret := range []string{testAccessKey, testAccessKeyUnpadded, testClientSecret} {
				if strings.Contains(out, secret) {
					t.Errorf("output %q contains secret %q", out, secret)
				}
			}
			// encoding/json escapes '<' and '>', and %x hex-encodes.
			if !strings.Contains(out, "redacted") && !strings.Contains(out, fmt.Sprintf("%x", want)) {
				t.Errorf("output %q does not show the redacted form", out)
			}
		})
	}

	t.Run("verbs keep width and flags", func(t *testing.T) {
		if got, wantPadded := fmt.Sprintf("%-*s|", len(want)+3, cs), want+"   |"; got != wantPadded {
			t.Errorf("%%-*s = %q, want %q", got, wantPadded)
		}
	})
}
