package entra

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/negotiate-sidecar/negotiate-sidecar/rewrite"
	"github.com/negotiate-sidecar/negotiate-sidecar/rewrite/entra/entratest"
)

// credentialFunc is a TokenCredential made of a function.
type credentialFunc func() (string, error)

func (f credentialFunc) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	tok, err := f()
	return azcore.AccessToken{Token: tok, ExpiresOn: time.Now().Add(time.Hour)}, err
}

// TestSigningKeySaysWhyWhileTheFirstFetchRetries checks that readiness,
// which asks SigningKey, names the failure of the first attempt while the
// fetch waits to try again, rather than "being fetched" until the last
// attempt has failed too, which with azcore's own retries takes tens of
// seconds, and minutes when attempts time out.
func TestSigningKeySaysWhyWhileTheFirstFetchRetries(t *testing.T) {
	issuer := entratest.NewIssuer()
	id := entratest.NewIdentity("")
	svc := entratest.NewService(issuer)
	defer svc.Close()
	svc.Grant(id.ObjectID)
	token := func() (string, error) { return issuer.Issue(id, entratest.SignalRResource, time.Hour), nil }

	tests := []struct {
		name       string
		credential credentialFunc
		status     int // the key API's answer; 0 for a key
		want       string
	}{
		{"the identity endpoint fails", func() (string, error) { return "", errors.New("identity endpoint answered 500") }, 0, "getting a Microsoft Entra token"},
		{"the key API fails", token, http.StatusServiceUnavailable, "answered 503"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc.SetStatus(tt.status)
			defer svc.SetStatus(0)
			endpoint, _ := url.Parse(svc.URL())
			src, err := NewSource(Config{
				Entra:       &rewrite.Entra{Source: "test", Endpoint: endpoint, AuthType: "azure.msi"},
				Credential:  tt.credential,
				Description: "system-assigned managed identity",
				RetryDelay:  time.Hour,
			})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := src.SigningKey(); err == nil || !strings.Contains(err.Error(), "being fetched") {
				t.Fatalf("before any attempt: SigningKey() error = %v, want one saying the key is being fetched", err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { _, err := src.Fetch(ctx); done <- err }()
			defer cancel()

			deadline := time.Now().Add(5 * time.Second)
			for {
				_, err := src.SigningKey()
				if err != nil && strings.Contains(err.Error(), tt.want) {
					if !strings.Contains(err.Error(), "trying again") {
						t.Errorf("SigningKey() error = %q, want it to say the sidecar is trying again", err)
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("SigningKey() error = %v after 5s, want one containing %q while the fetch waits to retry", err, tt.want)
				}
				time.Sleep(10 * time.Millisecond)
			}
			select {
			case <-src.Loaded():
				t.Fatal("the first fetch ended; it should be waiting to try again")
			default:
			}
			if st := src.Status(); st.Failures != 0 || st.Err != nil {
				t.Errorf("Status() = %+v during the fetch, want no failed fetch yet", st)
			}

			cancel()
			if err := <-done; err == nil {
				t.Fatal("Fetch succeeded")
			}
			_, err = src.SigningKey()
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "trying again") {
				t.Errorf("after the fetch: SigningKey() error = %v, want the fetch's failure", err)
			}
			if st := src.Status(); st.Failures != 1 {
				t.Errorf("Status().Failures = %d, want 1", st.Failures)
			}
		})
	}

	t.Run("a success clears the attempt's failure", func(t *testing.T) {
		endpoint, _ := url.Parse(svc.URL())
		calls := 0
		src, err := NewSource(Config{
			Entra: &rewrite.Entra{Source: "test", Endpoint: endpoint, AuthType: "azure.msi"},
			Credential: credentialFunc(func() (string, error) {
				if calls++; calls == 1 {
					return "", errors.New("not yet")
				}
				return token()
			}),
			RetryDelay: time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := src.Fetch(context.Background()); err != nil {
			t.Fatal(err)
		}
		if _, err := src.SigningKey(); err != nil {
			t.Fatalf("SigningKey() after a successful second attempt: %v", err)
		}
	})
}
