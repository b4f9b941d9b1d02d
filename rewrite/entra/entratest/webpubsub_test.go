package entratest

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"
)

// generateToken calls the token API as the SDK does and returns the status
// and, on 200, the token.
func generateToken(t *testing.T, svc *WebPubSub, hub, bearer string, q url.Values) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, svc.URL()+"/api/hubs/"+hub+"/:generateToken?"+q.Encode(), nil)
	req.Header.Set("Authorization", "Bearer "+bearer)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var answer struct{ Token string }
	_ = json.NewDecoder(resp.Body).Decode(&answer)
	return resp.StatusCode, answer.Token
}

func TestWebPubSubGenerateToken(t *testing.T) {
	issuer := NewIssuer()
	svc := NewWebPubSub(issuer)
	defer svc.Close()
	owner, stranger := NewIdentity(""), NewIdentity("")
	svc.Grant(owner.ObjectID)
	q := url.Values{"api-version": {"2024-12-01"}, "userId": {"alice"}, "role": {"webpubsub.joinLeaveGroup", "webpubsub.sendToGroup.lobby"},
		"group": {"lobby"}, "minutesToExpire": {"5"}, "clientType": {"default"}}

	code, tok := generateToken(t, svc, "chat", issuer.Issue(owner, WebPubSubResource+"/.default", time.Hour), q)
	if code != 200 {
		t.Fatalf("generateToken: %d", code)
	}
	claims, err := svc.VerifyClientToken(tok, "chat")
	if err != nil {
		t.Fatal(err)
	}
	roles, _ := json.Marshal(claims["role"])
	groups, _ := json.Marshal(claims["webpubsub.group"])
	expSec, _ := claims["exp"].(float64)
	left := time.Until(time.Unix(int64(expSec), 0))
	if claims["sub"] != "alice" || string(roles) != `["webpubsub.joinLeaveGroup","webpubsub.sendToGroup.lobby"]` || string(groups) != `["lobby"]` ||
		left > 5*time.Minute || left < 4*time.Minute {
		t.Errorf("claims %v", claims)
	}
	if c := svc.LastCall(); c.Caller != owner || c.MinutesToExpire != 5 || c.APIVersion != "2024-12-01" {
		t.Errorf("last call %+v", c)
	}
	if _, err := svc.VerifyClientToken(tok, "other"); err == nil {
		t.Error("a token for chat is accepted for another hub")
	}

	for _, tt := range []struct {
		name   string
		bearer string
		want   int
	}{
		{"without the role", issuer.Issue(stranger, WebPubSubResource, time.Hour), http.StatusForbidden},
		{"a token for SignalR", issuer.Issue(owner, SignalRResource, time.Hour), http.StatusUnauthorized},
		{"a token from another issuer", NewIssuer().Issue(owner, WebPubSubResource, time.Hour), http.StatusUnauthorized},
	} {
		if code, tok := generateToken(t, svc, "chat", tt.bearer, q); code != tt.want || tok != "" {
			t.Errorf("%s: %d, want %d and no token", tt.name, code, tt.want)
		}
	}
	svc.SetStatus(http.StatusServiceUnavailable)
	if code, _ := generateToken(t, svc, "chat", issuer.Issue(owner, WebPubSubResource, time.Hour), q); code != http.StatusServiceUnavailable {
		t.Errorf("SetStatus: %d", code)
	}
}
