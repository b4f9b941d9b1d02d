package auth

import (
	"strings"
	"testing"
)

func TestParseBearer(t *testing.T) {
	tests := []struct {
		name   string
		values []string
		want   string
		ok     bool
	}{
		{"plain", []string{"Bearer abc.def.ghi"}, "abc.def.ghi", true},
		{"lowercase scheme", []string{"bearer abc"}, "abc", true},
		{"uppercase scheme", []string{"BEARER abc"}, "abc", true},
		{"surrounding space", []string{"  Bearer   abc  "}, "abc", true},
		{"padding", []string{"Bearer abc=="}, "abc==", true},
		{"all b64token characters", []string{"Bearer aZ09-._~+/="}, "aZ09-._~+/=", true},
		{"no header", nil, "", false},
		{"two headers", []string{"Bearer a", "Bearer b"}, "", false},
		{"scheme only", []string{"Bearer"}, "", false},
		{"scheme and space", []string{"Bearer "}, "", false},
		{"other scheme", []string{"Basic abc"}, "", false},
		{"scheme glued to token", []string{"Bearerabc"}, "", false},
		{"only padding", []string{"Bearer =="}, "", false},
		{"padding in the middle", []string{"Bearer ab=c"}, "", false},
		{"two tokens", []string{"Bearer abc def"}, "", false},
		{"comma list", []string{"Bearer abc, Bearer def"}, "", false},
		{"control character", []string{"Bearer abc\x00"}, "", false},
		{"quotes", []string{`Bearer "abc"`}, "", false},
		{"too long", []string{"Bearer " + strings.Repeat("a", MaxTokenBytes+1)}, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ParseBearer(tt.values)
			if got != tt.want || ok != tt.ok {
				t.Errorf("ParseBearer(%q) = %q, %v; want %q, %v", tt.values, got, ok, tt.want, tt.ok)
			}
		})
	}
}

// FuzzParseBearer checks that whatever a client sends in Authorization, the
// parser neither panics nor returns anything but a non-empty, bounded
// b64token that appears in the header as sent.
func FuzzParseBearer(f *testing.F) {
	for _, s := range []string{"Bearer abc.def.ghi", "bearer x==", "Basic abc", "Bearer ", "Bearer a b", "\tBearer\ta", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		tok, ok := ParseBearer([]string{header})
		if !ok {
			if tok != "" {
				t.Fatalf("refused but returned %q", tok)
			}
			return
		}
		if tok == "" || len(tok) > MaxTokenBytes || !strings.Contains(header, tok) || !isB64Token(tok) {
			t.Fatalf("ParseBearer(%q) = %q", header, tok)
		}
		if strings.ContainsAny(tok, " \t\r\n,\"") {
			t.Fatalf("token %q contains a separator", tok)
		}
	})
}
