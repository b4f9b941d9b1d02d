package rewrite

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// The fake access keys of these tests: base64 of "fake-key-for-tests" and
// of "fake-secondary-key-for-tests".
const (
	fakeAccessKey       = "ZmFrZS1rZXktZm9yLXRlc3Rz"
	secondFakeAccessKey = "ZmFrZS1zZWNvbmRhcnkta2V5LWZvci10ZXN0cw=="
)

// formatOf is the format of the service name; "" is signalr.
func formatOf(t *testing.T, name string) Format {
	t.Helper()
	if name == "" {
		name = "signalr"
	}
	f, err := FormatByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// errString is err's message, or "" for nil.
func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestFormatByName(t *testing.T) {
	for _, name := range FormatNames() {
		if f := formatOf(t, name); f.Name != name {
			t.Errorf("FormatByName(%q).Name = %q", name, f.Name)
		}
	}
	if _, err := FormatByName("pubsub"); errString(err) != "choose signalr or webpubsub" {
		t.Errorf("FormatByName(pubsub) = %v", err)
	}
	// Each call is a fresh value: changing one changes no other.
	f := SignalR()
	f.TokenFields[0] = "changed"
	if SignalR().TokenFields[0] != "accessToken" {
		t.Error("a format's lists are shared between calls")
	}
}

func fakeConnString(endpoint, key string, extra ...string) string {
	return strings.Join(append([]string{"Endpoint=" + endpoint, "AccessKey=" + key, "Version=1.0"}, extra...), ";") + ";"
}

func TestConnectionStringsFromEnv(t *testing.T) {
	east := fakeConnString("https://fake-east.service.signalr.net", fakeAccessKey)
	west := fakeConnString("https://fake-west.service.signalr.net", secondFakeAccessKey)
	wps := fakeConnString("https://fake.webpubsub.azure.com", fakeAccessKey)
	type ncs = NamedConnectionString
	tests := []struct {
		name    string
		env     map[string]string
		service string
		want    []ncs
	}{
		{
			name:    "the Functions app's default setting",
			env:     map[string]string{"AzureSignalRConnectionString": east},
			service: "signalr",
			want:    []ncs{{Source: "$AzureSignalRConnectionString", Value: east}},
		},
		{
			name:    "ConnectionStrings section, Kubernetes spelling",
			env:     map[string]string{"ConnectionStrings__AzureSignalRConnectionString": east},
			service: "signalr",
			want:    []ncs{{Source: "$ConnectionStrings__AzureSignalRConnectionString", Value: east}},
		},
		{
			name:    "ConnectionStrings section, colon spelling",
			env:     map[string]string{"ConnectionStrings:AzureSignalRConnectionString": east},
			service: "signalr",
			want:    []ncs{{Source: "$ConnectionStrings:AzureSignalRConnectionString", Value: east}},
		},
		{
			name:    "value trimmed, blank values ignored",
			env:     map[string]string{"AzureSignalRConnectionString": "  " + east + "\n", "ConnectionStrings__AzureSignalRConnectionString": " \t", "Azure__SignalR__Endpoints__blank": "  "},
			service: "signalr",
			want:    []ncs{{Source: "$AzureSignalRConnectionString", Value: east}},
		},
		{
			name: "named endpoints in every spelling, sorted by variable",
			env: map[string]string{
				"Azure__SignalR__Endpoints__west":            west,
				"Azure__SignalR__Endpoints__east__primary":   east,
				"Azure__SignalR__Endpoints__east__secondary": west,
				"Azure:SignalR:Endpoints:north:primary":      east,
				"Azure:SignalR:Endpoints:north:secondary":    west,
				"AzureSignalRConnectionString":               east,
			},
			service: "signalr",
			want: []ncs{
				{Source: "$AzureSignalRConnectionString", Value: east},
				{Source: "$Azure:SignalR:Endpoints:north:primary", Value: east},
				{Source: "$Azure:SignalR:Endpoints:north:secondary", Value: west},
				{Source: "$Azure__SignalR__Endpoints__east__primary", Value: east},
				{Source: "$Azure__SignalR__Endpoints__east__secondary", Value: west},
				{Source: "$Azure__SignalR__Endpoints__west", Value: west},
			},
		},
		{
			name:    "endpoint prefix in any letter case",
			env:     map[string]string{"AZURE__SIGNALR__ENDPOINTS__east": east, "azure__signalr__endpoints__west": west},
			service: "signalr",
			want:    []ncs{{Source: "$AZURE__SIGNALR__ENDPOINTS__east", Value: east}, {Source: "$azure__signalr__endpoints__west", Value: west}},
		},
		{
			name: "unrelated variables",
			env: map[string]string{
				"Azure__SignalR__Endpoints__":      east, // no endpoint name
				"AzureSignalRConnectionStringOld":  east,
				"WebPubSubConnectionString":        wps,
				"NEGOTIATE_SIDECAR_LOG_LEVEL":      "debug",
				"Azure__SignalR__ServiceTransport": "Persistent",
			},
			service: "signalr",
			want:    nil,
		},
		{
			name: "Web PubSub reads WebPubSubConnectionString only",
			env: map[string]string{
				"WebPubSubConnectionString":       wps,
				"AzureSignalRConnectionString":    east,
				"Azure__SignalR__Endpoints__east": east,
			},
			service: "webpubsub",
			want:    []ncs{{Source: "$WebPubSubConnectionString", Value: wps}},
		},
		{
			name:    "nothing",
			env:     nil,
			service: "signalr",
			want:    nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := formatOf(t, tt.service).FromEnv(tt.env)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

// endpointView is an endpoint with its keys as strings, for test tables.
type endpointView struct {
	hosts       []string
	clientHosts []string
	url         string
	sources     []string
	keys        []string
}

func viewEndpoints(es []Endpoint) []endpointView {
	var out []endpointView
	for _, e := range es {
		v := endpointView{hosts: e.Hosts, clientHosts: e.ClientHosts, url: e.URL}
		for _, k := range e.Keys {
			v.sources = append(v.sources, k.Source)
			v.keys = append(v.keys, string(k.Secret))
		}
		out = append(out, v)
	}
	return out
}

func TestParseEndpoints(t *testing.T) {
	type ncs = NamedConnectionString
	const host = "fake.service.signalr.net"
	h := func(hosts ...string) []string { return hosts }
	tests := []struct {
		name    string
		service string // default signalr
		in      []ncs
		want    []endpointView
	}{
		{
			name: "one",
			in:   []ncs{{Source: "$AzureSignalRConnectionString", Value: fakeConnString("https://"+host, fakeAccessKey)}},
			want: []endpointView{{h(host), h(host), "https://" + host, []string{"$AzureSignalRConnectionString"}, []string{fakeAccessKey}}},
		},
		{
			name: "a port in the Endpoint, as emulators have",
			in:   []ncs{{Source: "a", Value: fakeConnString("http://127.0.0.1:8888", fakeAccessKey)}},
			want: []endpointView{{h("127.0.0.1:8888"), h("127.0.0.1:8888"), "http://127.0.0.1:8888", []string{"a"}, []string{fakeAccessKey}}},
		},
		{
			name: "Port is part of the host, and the host as written stays, as SDKs before 2021 put it in aud",
			in:   []ncs{{Source: "a", Value: fakeConnString("https://"+host, fakeAccessKey, "Port=8443")}},
			want: []endpointView{{h(host+":8443", host), h(host + ":8443"), "https://" + host + ":8443", []string{"a"}, []string{fakeAccessKey}}},
		},
		{
			name: "the scheme's default Port is left out",
			in:   []ncs{{Source: "a", Value: fakeConnString("https://"+host, fakeAccessKey, "Port=443")}},
			want: []endpointView{{h(host), h(host), "https://" + host + ":443", []string{"a"}, []string{fakeAccessKey}}},
		},
		{
			name: "ClientEndpoint is where clients go, not an audience",
			in:   []ncs{{Source: "a", Value: fakeConnString("https://"+host, fakeAccessKey, "ClientEndpoint=https://chat.example.test:4443")}},
			want: []endpointView{{h(host), h("chat.example.test:4443"), "https://" + host, []string{"a"}, []string{fakeAccessKey}}},
		},
		{
			name: "ServerEndpoint adds none",
			in:   []ncs{{Source: "a", Value: fakeConnString("https://"+host, fakeAccessKey, "ServerEndpoint=https://internal.example.test")}},
			want: []endpointView{{h(host), h(host), "https://" + host, []string{"a"}, []string{fakeAccessKey}}},
		},
		{
			name: "primary and secondary key of one endpoint",
			in: []ncs{
				{Source: "$Azure__SignalR__Endpoints__east__primary", Value: fakeConnString("https://"+host, fakeAccessKey)},
				{Source: "$Azure__SignalR__Endpoints__east__secondary", Value: fakeConnString("https://"+strings.ToUpper(host)+"/", secondFakeAccessKey)},
			},
			want: []endpointView{{h(host), h(host), "https://" + host, []string{"$Azure__SignalR__Endpoints__east__primary", "$Azure__SignalR__Endpoints__east__secondary"}, []string{fakeAccessKey, secondFakeAccessKey}}},
		},
		{
			name: "the same key from two sources",
			in: []ncs{
				{Source: "$AzureSignalRConnectionString", Value: fakeConnString("https://"+host, fakeAccessKey)},
				{Source: "connection string 1 of the configuration", Value: fakeConnString("https://"+host, fakeAccessKey)},
			},
			want: []endpointView{{h(host), h(host), "https://" + host, []string{"$AzureSignalRConnectionString"}, []string{fakeAccessKey}}},
		},
		{
			name: "two endpoints",
			in: []ncs{
				{Source: "east", Value: fakeConnString("https://fake-east.service.signalr.net", fakeAccessKey)},
				{Source: "west", Value: fakeConnString("https://fake-west.service.signalr.net", fakeAccessKey)},
			},
			want: []endpointView{
				{h("fake-east.service.signalr.net"), h("fake-east.service.signalr.net"), "https://fake-east.service.signalr.net", []string{"east"}, []string{fakeAccessKey}},
				{h("fake-west.service.signalr.net"), h("fake-west.service.signalr.net"), "https://fake-west.service.signalr.net", []string{"west"}, []string{fakeAccessKey}},
			},
		},
		{
			name: "one host on two ports is two endpoints",
			in: []ncs{
				{Source: "a", Value: fakeConnString("https://"+host, fakeAccessKey)},
				{Source: "b", Value: fakeConnString("https://"+host, secondFakeAccessKey, "Port=8443")},
			},
			want: []endpointView{
				{h(host), h(host), "https://" + host, []string{"a"}, []string{fakeAccessKey}},
				{h(host+":8443", host), h(host + ":8443"), "https://" + host + ":8443", []string{"b"}, []string{secondFakeAccessKey}},
			},
		},
		{
			name:    "Web PubSub: the Endpoint with Port is the audience and where clients go",
			service: "webpubsub",
			in:      []ncs{{Source: "$WebPubSubConnectionString", Value: fakeConnString("http://localhost", fakeAccessKey, "Port=8080")}},
			want:    []endpointView{{h("localhost:8080"), h("localhost:8080"), "http://localhost:8080", []string{"$WebPubSubConnectionString"}, []string{fakeAccessKey}}},
		},
		{
			name:    "Web PubSub: AuthType and ClientEndpoint ignored, as its SDKs ignore them",
			service: "webpubsub",
			in:      []ncs{{Source: "a", Value: fakeConnString("https://fake.webpubsub.azure.com", fakeAccessKey, "AuthType=aad", "ClientEndpoint=https://chat.example.test")}},
			want:    []endpointView{{h("fake.webpubsub.azure.com"), h("fake.webpubsub.azure.com"), "https://fake.webpubsub.azure.com", []string{"a"}, []string{fakeAccessKey}}},
		},
		{
			name: "none",
			in:   nil,
			want: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := formatOf(t, tt.service).Endpoints(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(viewEndpoints(got), tt.want) {
				t.Errorf("\n got %+v\nwant %+v", viewEndpoints(got), tt.want)
			}
		})
	}
}

func TestParseEndpointsErrors(t *testing.T) {
	type ncs = NamedConnectionString
	good := ncs{Source: "$AzureSignalRConnectionString", Value: fakeConnString("https://fake.service.signalr.net", fakeAccessKey)}
	tests := []struct {
		name    string
		service string // default signalr
		in      []ncs
		want    string
	}{
		{
			name: "azure.app without TenantId",
			in:   []ncs{{Source: "$AzureSignalRConnectionString", Value: "Endpoint=https://fake.service.signalr.net;AuthType=azure.app;ClientId=x;ClientSecret=" + fakeAccessKey}},
			want: "$AzureSignalRConnectionString: AuthType=azure.app needs ClientId, TenantId and ClientSecret or ClientCert (the path of a PEM certificate with its private key)",
		},
		{
			name: "aad with a tenant and neither secret nor certificate",
			in:   []ncs{{Source: "a", Value: "Endpoint=https://fake.service.signalr.net;AuthType=AAD;ClientId=x;TenantId=t"}},
			want: "a: AuthType=aad with ClientId and TenantId needs ClientSecret or ClientCert; without TenantId, ClientId names a user-assigned managed identity",
		},
		{
			name: "identity-based settings with an unknown credential",
			in:   []ncs{{Source: "$AzureSignalRConnectionString__serviceUri", Identity: map[string]string{"serviceuri": "https://fake.service.signalr.net", "credential": "Kerberos"}}},
			want: `$AzureSignalRConnectionString__serviceUri: credential "Kerberos" is not one the Functions host knows here: give managedidentity, workloadidentity, or leave it out (client secret, or DefaultAzureCredential)`,
		},
		{
			name: "identity-based settings with a serviceUri that is not a URL",
			in:   []ncs{{Source: "$AzureSignalRConnectionString__serviceUri", Identity: map[string]string{"serviceuri": "fake.service.signalr.net"}}},
			want: `$AzureSignalRConnectionString__serviceUri: serviceUri "fake.service.signalr.net" is not an absolute http or https URL (expected serviceUri=https://<name>.service.signalr.net)`,
		},
		{
			name: "one endpoint both with an access key and with Microsoft Entra ID",
			in: []ncs{
				{Source: "a", Value: fakeConnString("https://fake.service.signalr.net", fakeAccessKey)},
				{Source: "b", Value: "Endpoint=https://fake.service.signalr.net;AuthType=azure.msi"},
			},
			want: "b: the endpoint https://fake.service.signalr.net is also given with an access key in a; give the app and the sidecar one way to reach it",
		},
		{
			name:    "Web PubSub identity-based settings with a serverEndpoint, which the extension does not read",
			service: "webpubsub",
			in:      []ncs{{Source: "$WebPubSubConnectionString__serviceUri", Identity: map[string]string{"serviceuri": "https://fake.webpubsub.azure.com", "serverendpoint": "https://private.example"}}},
			want:    "$WebPubSubConnectionString__serviceUri: the webpubsub Functions extension does not read serverEndpoint; remove it, so that the app and the sidecar both reach serviceUri",
		},
		{
			name:    "Web PubSub identity-based settings with a serviceUri that is not a URL",
			service: "webpubsub",
			in:      []ncs{{Source: "$WebPubSubConnectionString__serviceUri", Identity: map[string]string{"serviceuri": "fake.webpubsub.azure.com"}}},
			want:    `$WebPubSubConnectionString__serviceUri: serviceUri "fake.webpubsub.azure.com" is not an absolute http or https URL (expected serviceUri=https://<name>.webpubsub.azure.com)`,
		},
		{
			name:    "Web PubSub without AccessKey",
			service: "webpubsub",
			in:      []ncs{{Source: "$WebPubSubConnectionString", Value: "Endpoint=https://fake.webpubsub.azure.com;AuthType=aad;Version=1.0;"}},
			want:    "$WebPubSubConnectionString: missing AccessKey: the webpubsub SDKs and Functions extension ignore AuthType and sign client tokens with the AccessKey, so the connection string needs one; to connect with Microsoft Entra ID instead, give the app and the sidecar the identity-based settings WebPubSubConnectionString__serviceUri (with __credential, __clientId, ...) and no connection string",
		},
		{
			name: "missing AccessKey, and no word of AuthType",
			in:   []ncs{{Source: "a", Value: "Endpoint=https://fake.service.signalr.net;Version=1.0;"}},
			want: "a: connection string: missing AccessKey (expected AccessKey=<key>, the key the app signs client tokens with)",
		},
		{
			name: "malformed",
			in:   []ncs{{Source: "connection string 2 of the configuration", Value: "AccessKey=" + fakeAccessKey}},
			want: "connection string 2 of the configuration: connection string: missing Endpoint (expected Endpoint=https://<name>.service.signalr.net;AccessKey=...)",
		},
		{
			name: "every bad one reported, good ones ignored",
			in: []ncs{
				{Source: "first", Value: "Endpoint=https://fake.service.signalr.net;" + fakeAccessKey},
				good,
				{Source: "second", Value: fakeConnString("https://fake.service.signalr.net", fakeAccessKey, "Version=2.0")},
			},
			want: "first: connection string: part 2 has no \"=\" (expected Key=Value)\n" +
				"second: connection string: duplicate key \"Version\"",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := formatOf(t, tt.service).Endpoints(tt.in)
			got := errString(err)
			if got != tt.want {
				t.Errorf("error:\n%s\nwant:\n%s", got, tt.want)
			}
			for _, in := range tt.in {
				if in.Value != "" && strings.Contains(got, in.Value) || strings.Contains(got, fakeAccessKey) {
					t.Errorf("the error shows a connection string or key: %s", got)
				}
			}
		})
	}
}

// TestParseEndpointsNeverShowsTheKey feeds connection strings broken in
// the ways people break them, with the key in every position, and checks
// that each error names its source and shows neither the key nor the value.
func TestParseEndpointsNeverShowsTheKey(t *testing.T) {
	for _, key := range []string{fakeAccessKey, secondFakeAccessKey} {
		unpadded := strings.TrimRight(key, "=")
		for i, cs := range []string{
			"AccessKey=" + key,
			"Endpoint=https://fake.service.signalr.net," + "AccessKey=" + key,
			"Endpoint=https://fake.service.signalr.net AccessKey=" + key,
			"Endpoint=https://fake.service.signalr.net;" + key,
			"Endpoint=https://fake.service.signalr.net;=" + key,
			"Endpoint=" + key + ";AccessKey=" + key,
			"Endpoint=https://fake.service.signalr.net?key=" + key + ";AccessKey=" + key,
			"Endpoint=https://user:" + key + "@fake.service.signalr.net;AccessKey=" + key,
			"Endpoint=https://fake.service.signalr.net;AccessKey=" + key + ";Version=" + key,
			"Endpoint=https://fake.service.signalr.net;AccessKey=" + key + ";Port=" + unpadded,
			"Endpoint=https://fake.service.signalr.net;AccessKey=" + key + ";AuthType=" + unpadded,
			"Endpoint=https://fake.service.signalr.net;AccessKey=" + key + ";accesskey=" + key,
			"Endpoint=https://fake.service.signalr.net;AccessKey=" + key + ";ClientEndpoint=" + unpadded,
			"Endpoint=https://fake.service.signalr.net;AuthType=azure.app;ClientSecret=" + key,
			"Endpoint=https://fake.service.signalr.net;AccessKey=" + key + ";" + unpadded + "=1;" + unpadded + "=2",
		} {
			source := "$Azure__SignalR__Endpoints__case" + string(rune('a'+i))
			_, err := formatOf(t, "signalr").Endpoints([]NamedConnectionString{{Source: source, Value: cs}})
			if err == nil {
				t.Errorf("%s: no error", source)
				continue
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, source+": ") {
				t.Errorf("%s: error does not start with the source: %s", source, msg)
			}
			if strings.Contains(msg, unpadded) || strings.Contains(msg, cs) {
				t.Errorf("%s: error shows the key: %s", source, msg)
			}
		}
	}
}

func TestCollectConnectionStrings(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	east := fakeConnString("https://fake-east.service.signalr.net", fakeAccessKey)
	west := fakeConnString("https://fake-west.service.signalr.net", secondFakeAccessKey)
	newline := write("newline", east+"\n")
	crlf := write("crlf", "  "+west+"\r\n")
	empty := write("empty", "\n")
	missing := filepath.Join(dir, "missing")

	type ncs = NamedConnectionString
	tests := []struct {
		name    string
		service string
		env     map[string]string
		strings []string
		files   []string
		want    []ncs
		wantErr string
	}{
		{
			name:  "a file, trailing newline trimmed",
			files: []string{newline},
			want:  []ncs{{Source: newline, Value: east}},
		},
		{
			name:  "a file with CRLF and leading spaces",
			files: []string{crlf},
			want:  []ncs{{Source: crlf, Value: west}},
		},
		{
			name:    "environment, then configuration, then files",
			env:     map[string]string{"Azure__SignalR__Endpoints__west": west, "AzureSignalRConnectionString": east},
			strings: []string{" " + west + " ", east},
			files:   []string{crlf, newline},
			want: []ncs{
				{Source: "$AzureSignalRConnectionString", Value: east},
				{Source: "$Azure__SignalR__Endpoints__west", Value: west},
				{Source: "connection string 1 of the configuration", Value: west},
				{Source: "connection string 2 of the configuration", Value: east},
				{Source: crlf, Value: west},
				{Source: newline, Value: east},
			},
		},
		{
			name:    "empty file",
			env:     map[string]string{"AzureSignalRConnectionString": east},
			files:   []string{empty},
			want:    []ncs{{Source: "$AzureSignalRConnectionString", Value: east}},
			wantErr: "connection string file " + empty + " is empty",
		},
		{
			name:    "missing file",
			files:   []string{missing, newline},
			want:    []ncs{{Source: newline, Value: east}},
			wantErr: "connection string file: open " + missing + ": no such file or directory; check --connection-string-file (connection_string_files in the file): it names a file holding one connection string, such as a mounted Secret's key",
		},
		{
			name:    "two bad files",
			files:   []string{missing, empty},
			wantErr: "connection string file: open " + missing + ": no such file or directory; check --connection-string-file (connection_string_files in the file): it names a file holding one connection string, such as a mounted Secret's key\nconnection string file " + empty + " is empty",
		},
		{
			name: "none for SignalR",
			env:  map[string]string{"WebPubSubConnectionString": east},
		},
		{
			name:    "none for Web PubSub",
			service: "webpubsub",
			env:     map[string]string{"AzureSignalRConnectionString": east},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := formatOf(t, tt.service).Collect(Sources{Env: tt.env, Inline: tt.strings, Files: tt.files})
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("\n got %q\nwant %q", got, tt.want)
			}
			if e := errString(err); e != tt.wantErr {
				t.Errorf("error:\n%s\nwant:\n%s", e, tt.wantErr)
			}
		})
	}
}
