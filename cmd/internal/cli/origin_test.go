package cli

import "testing"

// TestMaskedHidesSecrets: a message that quotes a setting's value never
// quotes a password or a key with it.
func TestMaskedHidesSecrets(t *testing.T) {
	for in, want := range map[string]string{
		"http://user:S3CRET@127.0.0.1:80":                                       "http://REDACTED@127.0.0.1:80",
		"Endpoint=https://x.service.signalr.net;AccessKey=abc/d+e=;Version=1.0": "Endpoint=https://x.service.signalr.net;AccessKey=REDACTED;Version=1.0",
		"Endpoint=https://x;AuthType=azure.app;ClientSecret=s3cr3t":             "Endpoint=https://x;AuthType=azure.app;ClientSecret=REDACTED",
		"https://keys.example.test/jwks.json?sv=2024&sig=SAS%2Fsecret":          "https://keys.example.test/jwks.json?REDACTED",
		"http://127.0.0.1:80": "http://127.0.0.1:80",
		"30s":                 "30s",
	} {
		if got := masked(in); got != want {
			t.Errorf("masked(%q) = %q, want %q", in, got, want)
		}
	}
	o := Origin{Source: Flag, Name: "--upstream", Text: "http://u:PW@h"}
	if got := o.String(); got != `--upstream="http://REDACTED@h"` {
		t.Errorf("Origin.String() = %q", got)
	}
}
