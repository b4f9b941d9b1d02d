package entratest

import (
	"net/http"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// These tests set the environment, so none runs in parallel.

func TestManagedIdentityWithAzidentity(t *testing.T) {
	issuer := NewIssuer()
	system, user := NewIdentity(""), NewIdentity("")
	tests := []struct {
		name string
		want Identity
		cred func(t *testing.T) (azcore.TokenCredential, error)
	}{
		{"system-assigned", system, func(*testing.T) (azcore.TokenCredential, error) {
			return azidentity.NewManagedIdentityCredential(nil)
		}},
		{"user-assigned by client id", user, func(*testing.T) (azcore.TokenCredential, error) {
			return azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{ID: azidentity.ClientID(user.ClientID)})
		}},
		{"user-assigned by object id", user, func(*testing.T) (azcore.TokenCredential, error) {
			return azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{ID: azidentity.ObjectID(user.ObjectID)})
		}},
		{"DefaultAzureCredential", system, func(*testing.T) (azcore.TokenCredential, error) {
			return azidentity.NewDefaultAzureCredential(nil)
		}},
		{"DefaultAzureCredential with AZURE_CLIENT_ID", user, func(t *testing.T) (azcore.TokenCredential, error) {
			// DefaultAzureCredential asks for the user-assigned identity
			// AZURE_CLIENT_ID names (azidentity default_azure_credential.go).
			t.Setenv("AZURE_CLIENT_ID", user.ClientID)
			t.Setenv("AZURE_TOKEN_CREDENTIALS", "ManagedIdentityCredential")
			return azidentity.NewDefaultAzureCredential(nil)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			IsolateEnv(t)
			mi := NewManagedIdentity(issuer, system, user)
			defer mi.Close()
			svc := NewService(issuer)
			defer svc.Close()
			svc.Grant(tt.want.ObjectID)
			Setenv(t, mi.Env())

			cred := signsInAs(t, issuer, tt.want, tt.cred)
			if mi.Requests() != 1 {
				t.Errorf("identity endpoint requests = %d, want 1", mi.Requests())
			}
			useKey(t, svc, cred)
		})
	}
}

func TestManagedIdentityFailures(t *testing.T) {
	issuer := NewIssuer()
	system := NewIdentity("")
	tests := []struct {
		name string
		// break_ spoils the setup after the environment is set.
		break_   func(t *testing.T, mi *ManagedIdentity)
		opts     azidentity.ManagedIdentityCredentialOptions
		wantCode int // status in the error's RawResponse; 0 for none
		wantReqs int
	}{
		{"wrong identity header", func(t *testing.T, _ *ManagedIdentity) { t.Setenv("IDENTITY_HEADER", "wrong") },
			azidentity.ManagedIdentityCredentialOptions{}, http.StatusUnauthorized, 1},
		{"unknown user-assigned identity", func(*testing.T, *ManagedIdentity) {},
			azidentity.ManagedIdentityCredentialOptions{ID: azidentity.ClientID(newGUID())}, http.StatusBadRequest, 1},
		{"down, no retries", func(_ *testing.T, mi *ManagedIdentity) { mi.SetDown(true) },
			azidentity.ManagedIdentityCredentialOptions{ClientOptions: azcore.ClientOptions{Retry: noRetries}}, http.StatusInternalServerError, 1},
		{"down, retried by azcore", func(_ *testing.T, mi *ManagedIdentity) { mi.SetDown(true) },
			azidentity.ManagedIdentityCredentialOptions{ClientOptions: azcore.ClientOptions{Retry: retryFast}}, http.StatusInternalServerError, 3},
		{"connection refused", func(_ *testing.T, mi *ManagedIdentity) { mi.Close() },
			azidentity.ManagedIdentityCredentialOptions{ClientOptions: azcore.ClientOptions{Retry: noRetries}}, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			IsolateEnv(t)
			mi := NewManagedIdentity(issuer, system)
			defer mi.Close()
			Setenv(t, mi.Env())
			tt.break_(t, mi)

			opts := tt.opts
			cred, err := azidentity.NewManagedIdentityCredential(&opts)
			if err != nil {
				t.Fatal(err)
			}
			// An App Service source fails with AuthenticationFailedError,
			// never "credential unavailable", whatever the cause.
			afe := failsToSignIn(t, cred)
			code := 0
			if afe.RawResponse != nil {
				code = afe.RawResponse.StatusCode
			}
			if code != tt.wantCode {
				t.Errorf("status = %d, want %d (%v)", code, tt.wantCode, afe)
			}
			if mi.Requests() != tt.wantReqs {
				t.Errorf("identity endpoint requests = %d, want %d", mi.Requests(), tt.wantReqs)
			}
		})
	}
}

// retryFast keeps azcore's retries of 5xx, two of them, without the wait.
var retryFast = azcoreRetry(2, time.Millisecond)

func TestManagedIdentityRecovers(t *testing.T) {
	IsolateEnv(t)
	issuer := NewIssuer()
	system := NewIdentity("")
	mi := NewManagedIdentity(issuer, system)
	defer mi.Close()
	Setenv(t, mi.Env())
	cred, err := azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{
		ClientOptions: azcore.ClientOptions{Retry: noRetries},
	})
	if err != nil {
		t.Fatal(err)
	}
	mi.SetDown(true)
	if _, err := getToken(t, cred); err == nil {
		t.Fatal("GetToken succeeded while the endpoint was down")
	}
	mi.SetDown(false)
	if _, err := getToken(t, cred); err != nil {
		t.Fatalf("GetToken after recovery: %v", err)
	}
}
