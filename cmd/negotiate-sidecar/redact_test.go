package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestRedactingWriter(t *testing.T) {
	const tok = "eyJhbGciOiJIUzI1NiJ9.eyJhdWQiOiJ4In0.c2lnbmF0dXJl"
	for _, tc := range []struct{ in, want string }{
		{`Unsolicited response received on idle HTTP channel starting with "LEFTOVER {\"accessToken\":\"` + tok + `\"}"`,
			`Unsolicited response received on idle HTTP channel starting with "LEFTOVER {\"accessToken\":\"[REDACTED]\"}"`},
		{"Endpoint=https://x.service.signalr.net;AccessKey=abc/def+ghi=;Version=1.0;", "Endpoint=https://x.service.signalr.net;AccessKey=[REDACTED];Version=1.0;"},
		{"clientsecret = s3cr3t", "clientsecret = [REDACTED]"},
		{`starting with "Location: /x?t=eyAidHlwIjogIkpXVCJ9%2EeyJhdWQiOiJ4In0%2Ec2lnbmF0dXJl"`, `starting with "Location: /x?t=[REDACTED]"`},
		{`{"AccessKey":"abc/def+ghi="}`, `{"AccessKey":"[REDACTED]"}`},
		{`Endpoint%3Dhttps://x;AccessKey%3Dabc`, `Endpoint%3Dhttps://x;AccessKey%3D[REDACTED]`},
		{"Get \"https://negotiate.service.signalr.net/client/\": EOF", "Get \"https://negotiate.service.signalr.net/client/\": EOF"},
		{"http: TLS handshake error from 10.0.0.1:1234: EOF", "http: TLS handshake error from 10.0.0.1:1234: EOF"},
		{"dial tcp 127.0.0.1:80: connect: connection refused", "dial tcp 127.0.0.1:80: connect: connection refused"},
	} {
		var out bytes.Buffer
		n, err := redactingWriter{&out}.Write([]byte(tc.in))
		if err != nil || n != len(tc.in) {
			t.Fatalf("Write = %d, %v", n, err)
		}
		if out.String() != tc.want {
			t.Errorf("redacted %q\n got %q\nwant %q", tc.in, out.String(), tc.want)
		}
		if strings.Contains(out.String(), "signature") {
			t.Errorf("a token survived: %q", out.String())
		}
	}
}
