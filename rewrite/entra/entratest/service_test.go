package entratest

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestServiceKeyAPI(t *testing.T) {
	issuer := NewIssuer()
	granted, other := NewIdentity(""), NewIdentity("")
	tests := []struct {
		name   string
		token  string
		status int // forced with SetStatus
		want   int
	}{
		{"granted", issuer.Issue(granted, signalRScope, time.Hour), 0, http.StatusOK},
		{"no token", "", 0, http.StatusUnauthorized},
		{"token from another issuer", NewIssuer().Issue(granted, signalRScope, time.Hour), 0, http.StatusUnauthorized},
		{"token for another resource", issuer.Issue(granted, "https://vault.azure.net/.default", time.Hour), 0, http.StatusUnauthorized},
		{"expired token", issuer.Issue(granted, signalRScope, -time.Minute), 0, http.StatusUnauthorized},
		{"no role", issuer.Issue(other, signalRScope, time.Hour), 0, http.StatusForbidden},
		{"forced 503", issuer.Issue(granted, signalRScope, time.Hour), http.StatusServiceUnavailable, http.StatusServiceUnavailable},
		{"forced 404", issuer.Issue(granted, signalRScope, time.Hour), http.StatusNotFound, http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := NewService(issuer)
			defer svc.Close()
			svc.Grant(granted.ObjectID)
			svc.SetStatus(tt.status)
			if got, _ := fetchKey(t, svc.URL(), tt.token); got != tt.want {
				t.Errorf("status = %d, want %d", got, tt.want)
			}
			if svc.Requests() != 1 {
				t.Errorf("requests = %d, want 1", svc.Requests())
			}
		})
	}
}

func TestServiceGivesEachCallItsOwnKey(t *testing.T) {
	issuer := NewIssuer()
	id := NewIdentity("")
	svc := NewService(issuer)
	defer svc.Close()
	svc.Grant(id.ObjectID)
	token := issuer.Issue(id, signalRScope, time.Hour)
	_, first := fetchKey(t, svc.URL(), token)
	_, second := fetchKey(t, svc.URL(), token)
	if first.KeyID == second.KeyID || first.AccessKey == second.AccessKey {
		t.Fatalf("two calls got the same key: %+v, %+v", first, second)
	}
	for _, k := range []accessKey{first, second} {
		if _, err := svc.VerifyClientToken(signClientToken(t, svc, k, "chat", "u"), "chat"); err != nil {
			t.Errorf("key %s: %v", k.KeyID, err)
		}
	}

	svc.Revoke(id.ObjectID)
	if code, _ := fetchKey(t, svc.URL(), token); code != http.StatusForbidden {
		t.Errorf("after Revoke status = %d, want 403", code)
	}
	if _, err := svc.VerifyClientToken(signClientToken(t, svc, first, "chat", "u"), "chat"); err != nil {
		t.Errorf("a key given out before Revoke stopped working: %v", err)
	}
}

func TestServiceVerifyClientToken(t *testing.T) {
	issuer := NewIssuer()
	id := NewIdentity("")
	svc := NewService(issuer)
	defer svc.Close()
	svc.Grant(id.ObjectID)
	_, k := fetchKey(t, svc.URL(), issuer.Issue(id, signalRScope, time.Hour))

	sign := func(method jwt.SigningMethod, kid string, key []byte, claims jwt.MapClaims) string {
		tok := jwt.NewWithClaims(method, claims)
		if kid != "" {
			tok.Header["kid"] = kid
		}
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	now := time.Now()
	claims := func(aud string, exp time.Time) jwt.MapClaims {
		return jwt.MapClaims{"asrs.s.uid": "u", "nbf": now.Unix(), "iat": now.Unix(), "exp": exp.Unix(), "aud": aud}
	}
	good := claims(svc.ClientAudience("chat"), now.Add(time.Hour))
	tests := []struct {
		name    string
		token   string
		wantErr string
	}{
		{"as the SDK signs", sign(jwt.SigningMethodHS256, k.KeyID, []byte(k.AccessKey), good), ""},
		{"hub in other case", sign(jwt.SigningMethodHS256, k.KeyID, []byte(k.AccessKey), claims(svc.ClientAudience("CHAT"), now.Add(time.Hour))), ""},
		{"unknown kid", sign(jwt.SigningMethodHS256, "nope", []byte(k.AccessKey), good), "no access key"},
		{"no kid", sign(jwt.SigningMethodHS256, "", []byte(k.AccessKey), good), "no access key"},
		{"other key", sign(jwt.SigningMethodHS256, k.KeyID, []byte("other"), good), "signature"},
		{"HS512", sign(jwt.SigningMethodHS512, k.KeyID, []byte(k.AccessKey), good), "signing method"},
		{"other hub", sign(jwt.SigningMethodHS256, k.KeyID, []byte(k.AccessKey), claims(svc.ClientAudience("news"), now.Add(time.Hour))), "audience"},
		{"expired", sign(jwt.SigningMethodHS256, k.KeyID, []byte(k.AccessKey), claims(svc.ClientAudience("chat"), now.Add(-time.Minute))), "expired"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := svc.VerifyClientToken(tt.token, "chat")
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("VerifyClientToken: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("VerifyClientToken error = %v, want one mentioning %q", err, tt.wantErr)
			}
		})
	}
}
