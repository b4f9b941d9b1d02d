package rewrite

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestFormatKey(t *testing.T) {
	const k = testKey
	tests := []struct {
		name   string
		format Format
		cs     string
		want   Key
		err    string // a part of the error
	}{
		{
			name:   "SignalR",
			format: SignalR(),
			cs:     "Endpoint=https://x.service.signalr.net;AccessKey=" + k + ";Version=1.0;",
			want:   Key{Endpoint: "https://x.service.signalr.net", Hosts: []string{"x.service.signalr.net"}, ClientHosts: []string{"x.service.signalr.net"}, Secret: []byte(k)},
		},
		{
			name:   "SignalR emulator: port in the Endpoint",
			format: SignalR(),
			cs:     "Endpoint=http://127.0.0.1:8888;AccessKey=" + k + ";Version=1.0;",
			want:   Key{Endpoint: "http://127.0.0.1:8888", Hosts: []string{"127.0.0.1:8888"}, ClientHosts: []string{"127.0.0.1:8888"}, Secret: []byte(k)},
		},
		{
			name:   "SignalR with Port",
			format: SignalR(),
			cs:     "Endpoint=https://x.service.signalr.net;AccessKey=" + k + ";Port=8443",
			want:   Key{Endpoint: "https://x.service.signalr.net:8443", Hosts: []string{"x.service.signalr.net:8443", "x.service.signalr.net"}, ClientHosts: []string{"x.service.signalr.net:8443"}, Secret: []byte(k)},
		},
		{
			name:   "SignalR sends clients to ClientEndpoint",
			format: SignalR(),
			cs:     "Endpoint=https://x.service.signalr.net;AccessKey=" + k + ";ClientEndpoint=https://chat.example.com:4443/hub;ServerEndpoint=https://10.0.0.1",
			want:   Key{Endpoint: "https://x.service.signalr.net", Hosts: []string{"x.service.signalr.net"}, ClientHosts: []string{"chat.example.com:4443"}, Secret: []byte(k)},
		},
		{
			name:   "SignalR refuses AuthType with an AccessKey, which its SDK ignores",
			format: SignalR(),
			cs:     "Endpoint=https://x.service.signalr.net;AccessKey=" + k + ";AuthType=aad;ClientId=cid",
			err:    "AuthType=aad: the app signs in with Microsoft Entra ID and has no access key",
		},
		{
			name:   "SignalR refuses AuthType without an AccessKey",
			format: SignalR(),
			cs:     "Endpoint=https://x.service.signalr.net;AuthType=azure.msi",
			err:    "AuthType=azure.msi: the app signs in with Microsoft Entra ID and has no access key",
		},
		{
			name:   "Web PubSub",
			format: WebPubSub(),
			cs:     "Endpoint=https://x.webpubsub.azure.com;AccessKey=" + k + ";Version=1.0;",
			want:   Key{Endpoint: "https://x.webpubsub.azure.com", Hosts: []string{"x.webpubsub.azure.com"}, ClientHosts: []string{"x.webpubsub.azure.com"}, Secret: []byte(k)},
		},
		{
			name:   "Web PubSub with Port: its aud carries the port",
			format: WebPubSub(),
			cs:     "Endpoint=http://localhost;Port=8080;AccessKey=" + k,
			want:   Key{Endpoint: "http://localhost:8080", Hosts: []string{"localhost:8080"}, ClientHosts: []string{"localhost:8080"}, Secret: []byte(k)},
		},
		{
			name:   "Web PubSub ignores AuthType and ClientEndpoint, as its SDKs do",
			format: WebPubSub(),
			cs:     "Endpoint=https://x.webpubsub.azure.com;AccessKey=" + k + ";AuthType=aad;ClientEndpoint=https://chat.example.com",
			want:   Key{Endpoint: "https://x.webpubsub.azure.com", Hosts: []string{"x.webpubsub.azure.com"}, ClientHosts: []string{"x.webpubsub.azure.com"}, Secret: []byte(k)},
		},
		{
			name:   "Web PubSub needs the AccessKey whatever AuthType says",
			format: WebPubSub(),
			cs:     "Endpoint=https://x.webpubsub.azure.com;AuthType=aad",
			err:    "missing AccessKey: the webpubsub SDKs and Functions extension ignore AuthType and sign client tokens with the AccessKey",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs := mustParse(t, tt.cs)
			got, err := tt.format.Key(cs)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Key() = %+v, %v; want an error with %q", got, err, tt.err)
				}
				if strings.Contains(err.Error(), strings.TrimRight(k, "=")) {
					t.Errorf("the error shows the key: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Key()\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// SDKBody builds what the SDK issues; the rewriter resolves it to the
// endpoint it was built for, even among endpoints on one host.
func TestSDKBodyResolvesToItsEndpoint(t *testing.T) {
	now := time.Unix(1732694400, 0)
	for _, tt := range []struct {
		format Format
		css    []string
		want   []string // the body of the first connection string
	}{
		{
			format: SignalR(),
			css: []string{
				"Endpoint=http://127.0.0.1:8081;AccessKey=first-emulator-key;Version=1.0;",
				"Endpoint=http://127.0.0.1:8082;AccessKey=second-emulator-key;Version=1.0;",
				"Endpoint=http://127.0.0.1;Port=8083;AccessKey=first-emulator-key;Version=1.0;",
				"Endpoint=https://x.service.signalr.net;AccessKey=cloud-key;ClientEndpoint=https://chat.example.com",
			},
			want: []string{`"url":"http://127.0.0.1:8081/client/?hub=chat"`, `"aud":"http://127.0.0.1/client/?hub=chat"`},
		},
		{
			format: WebPubSub(),
			css: []string{
				"Endpoint=http://127.0.0.1:8081;AccessKey=first-emulator-key;Version=1.0;",
				"Endpoint=http://127.0.0.1;Port=8082;AccessKey=first-emulator-key;Version=1.0;",
				"Endpoint=https://x.webpubsub.azure.com;AccessKey=cloud-key",
			},
			want: []string{`"baseUrl":"ws://127.0.0.1:8081/client/hubs/Chat"`, `"aud":"http://127.0.0.1:8081/client/hubs/Chat"`},
		},
	} {
		t.Run(tt.format.Name, func(t *testing.T) {
			var keys []Key
			for _, s := range tt.css {
				k, err := tt.format.Key(mustParse(t, s))
				if err != nil {
					t.Fatal(err)
				}
				keys = append(keys, k)
			}
			r, err := New(tt.format, keys, Options{})
			if err != nil {
				t.Fatal(err)
			}
			for i, s := range tt.css {
				b, err := tt.format.SDKBody(mustParse(t, s), "Chat", now)
				if err != nil {
					t.Fatal(err)
				}
				if i == 0 {
					var m map[string]string
					if err := json.Unmarshal(b, &m); err != nil {
						t.Fatal(err)
					}
					tok := m["accessToken"]
					seen := string(b) + unb64(t, strings.Split(tok, ".")[1])
					for _, w := range tt.want {
						if !strings.Contains(seen, w) {
							t.Errorf("body and claims lack %s: %s", w, seen)
						}
					}
				}
				got, err := r.Resolve(b)
				if err != nil {
					t.Fatalf("%s: %v", s, err)
				}
				if got.Endpoint != keys[i].Endpoint || string(got.Secret) != string(keys[i].Secret) {
					t.Errorf("%s resolved to %s", s, got.Endpoint)
				}
				if _, err := r.Rewrite(b, Caller{UserID: "check"}); err != nil {
					t.Errorf("%s: %v", s, err)
				}
			}
		})
	}
}
