package entratest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/golang-jwt/jwt/v5"
)

// signalRScope is the scope the SignalR SDK asks its credential for.
const signalRScope = SignalRResource + "/.default"

// noRetries keeps failing token requests from waiting out azcore's backoff.
var noRetries = policy.RetryOptions{MaxRetries: -1}

// getToken asks cred for a SignalR token, as the SDK does.
func getToken(t *testing.T, cred azcore.TokenCredential) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tok, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{signalRScope}})
	return tok.Token, err
}

// failsToSignIn asks cred for a SignalR token and returns the
// AuthenticationFailedError it must fail with.
func failsToSignIn(t *testing.T, cred azcore.TokenCredential) *azidentity.AuthenticationFailedError {
	t.Helper()
	_, err := getToken(t, cred)
	var afe *azidentity.AuthenticationFailedError
	if !errors.As(err, &afe) {
		t.Fatalf("GetToken error = %v, want an AuthenticationFailedError", err)
	}
	return afe
}

// signsInAs makes a credential with newCred and checks that it gets a
// SignalR token from issuer for want; it returns the credential.
func signsInAs(t *testing.T, issuer *Issuer, want Identity, newCred func(*testing.T) (azcore.TokenCredential, error)) azcore.TokenCredential {
	t.Helper()
	cred, err := newCred(t)
	if err != nil {
		t.Fatal(err)
	}
	token, err := getToken(t, cred)
	if err != nil {
		t.Fatalf("GetToken: %v", err)
	}
	if got, err := issuer.Verify(token, SignalRResource); err != nil || got != want {
		t.Fatalf("token names %+v (%v), want %+v", got, err, want)
	}
	return cred
}

// accessKey is the key API's answer.
type accessKey struct {
	KeyID     string `json:"KeyId"`
	AccessKey string `json:"AccessKey"`
}

// fetchKey calls the key API with token as the SDK does and returns the
// status and, on 200, the key.
func fetchKey(t *testing.T, serviceURL, token string) (int, accessKey) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, serviceURL+AccessKeyPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("calling the key API: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var k accessKey
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, &k); err != nil {
			t.Fatalf("key API body %q: %v", body, err)
		}
		if k.KeyID == "" || k.AccessKey == "" {
			t.Fatalf("key API body %q lacks KeyId or AccessKey", body)
		}
	}
	return resp.StatusCode, k
}

// signClientToken signs a client token for hub as the SDK does with a key
// from the key API: HS256 keyed with the AccessKey's UTF-8 bytes, kid = KeyId.
func signClientToken(t *testing.T, svc *Service, k accessKey, hub, userID string) string {
	t.Helper()
	now := time.Now()
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"asrs.s.uid": userID,
		"nbf":        now.Unix(),
		"exp":        now.Add(time.Hour).Unix(),
		"iat":        now.Unix(),
		"aud":        svc.ClientAudience(hub),
	})
	tok.Header["kid"] = k.KeyID
	s, err := tok.SignedString([]byte(k.AccessKey))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// useKey proves a token from cred opens the key API and the key it gets
// signs client tokens the service accepts.
func useKey(t *testing.T, svc *Service, cred azcore.TokenCredential) {
	t.Helper()
	token, err := getToken(t, cred)
	if err != nil {
		t.Fatalf("GetToken: %v", err)
	}
	code, k := fetchKey(t, svc.URL(), token)
	if code != http.StatusOK {
		t.Fatalf("key API status = %d, want 200", code)
	}
	claims, err := svc.VerifyClientToken(signClientToken(t, svc, k, "Chat", "alice"), "chat")
	if err != nil {
		t.Fatalf("VerifyClientToken: %v", err)
	}
	if claims["asrs.s.uid"] != "alice" {
		t.Errorf("asrs.s.uid = %v, want alice", claims["asrs.s.uid"])
	}
}

func ExampleService_ClientAudience() {
	svc := NewService(NewIssuer())
	defer svc.Close()
	fmt.Println(svc.ClientAudience("Chat"))
	// Output: http://127.0.0.1/client/?hub=chat
}

func azcoreRetry(retries int32, delay time.Duration) policy.RetryOptions {
	return policy.RetryOptions{MaxRetries: retries, RetryDelay: delay, MaxRetryDelay: delay}
}
