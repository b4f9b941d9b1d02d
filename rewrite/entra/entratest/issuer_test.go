package entratest

import (
	"strings"
	"testing"
	"time"
)

func TestIssuerVerify(t *testing.T) {
	issuer := NewIssuer()
	id := NewIdentity("")
	tests := []struct {
		name     string
		token    string
		audience string
		wantErr  string
	}{
		{"scope as audience", issuer.Issue(id, "https://signalr.azure.com/.default", time.Hour), "https://signalr.azure.com/.default", ""},
		{"resource as audience", issuer.Issue(id, "https://signalr.azure.com", time.Hour), "https://signalr.azure.com", ""},
		{"other audience", issuer.Issue(id, "https://vault.azure.net", time.Hour), "https://signalr.azure.com", "audience"},
		{"expired", issuer.Issue(id, "https://signalr.azure.com", -time.Minute), "https://signalr.azure.com", "expired"},
		{"other issuer", NewIssuer().Issue(id, "https://signalr.azure.com", time.Hour), "https://signalr.azure.com", "signature"},
		{"not a token", "abc", "https://signalr.azure.com", "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := issuer.Verify(tt.token, tt.audience)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Verify error = %v, want one mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if got != id {
				t.Errorf("Verify = %+v, want %+v", got, id)
			}
		})
	}
}
