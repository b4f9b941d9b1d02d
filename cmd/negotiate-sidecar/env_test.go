package main

import (
	"strings"
	"testing"
)

// secondFakeAccessKey is base64 of "fake-secondary-key-for-tests", padded.
const secondFakeAccessKey = "ZmFrZS1zZWNvbmRhcnkta2V5LWZvci10ZXN0cw=="

func fakeConnString(endpoint, key string, extra ...string) string {
	return strings.Join(append([]string{"Endpoint=" + endpoint, "AccessKey=" + key, "Version=1.0"}, extra...), ";") + ";"
}

// TestNoConnectionString: without any connection string the error names
// the app's own setting for the service and the sidecar's flags.
func TestNoConnectionString(t *testing.T) {
	east := fakeConnString("https://fake-east.service.signalr.net", fakeAccessKey)
	for _, tt := range []struct {
		service string
		env     environment
		want    string
	}{
		{"signalr", environment{"WebPubSubConnectionString": east}, "no connection string: set AzureSignalRConnectionString (the app's own setting), --connection-string or --connection-string-file"},
		{"webpubsub", environment{"AzureSignalRConnectionString": east}, "no connection string: set WebPubSubConnectionString (the app's own setting), --connection-string or --connection-string-file"},
	} {
		s := settings{Service: tt.service}
		if _, err := endpoints(s, tt.env); errString(err) != tt.want {
			t.Errorf("%s: error %q, want %q", tt.service, errString(err), tt.want)
		}
	}
}
