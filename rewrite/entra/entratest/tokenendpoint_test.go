package entratest

import (
	"crypto/x509"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

func TestTokenEndpointWithAzidentity(t *testing.T) {
	issuer := NewIssuer()
	svc := NewService(issuer)
	defer svc.Close()
	ep := NewTokenEndpoint(issuer)
	defer ep.Close()

	cert, key := NewCertificate("sidecar")
	const subject = "system:serviceaccount:chat:sidecar"
	app := App{Identity: NewIdentity(""), Secret: "s3cret~value", Certificate: cert, FederatedSubject: subject}
	ep.Register(app)
	svc.Grant(app.Identity.ObjectID)
	tenant, client := app.Identity.TenantID, app.Identity.ClientID

	tests := []struct {
		name string
		cred func(t *testing.T) (azcore.TokenCredential, error)
	}{
		{"client secret", func(*testing.T) (azcore.TokenCredential, error) {
			return azidentity.NewClientSecretCredential(tenant, client, app.Secret, &azidentity.ClientSecretCredentialOptions{
				ClientOptions: ep.ClientOptions(), DisableInstanceDiscovery: true})
		}},
		{"client certificate", func(*testing.T) (azcore.TokenCredential, error) {
			return azidentity.NewClientCertificateCredential(tenant, client, []*x509.Certificate{cert}, key, &azidentity.ClientCertificateCredentialOptions{
				ClientOptions: ep.ClientOptions(), DisableInstanceDiscovery: true})
		}},
		{"client certificate with chain", func(*testing.T) (azcore.TokenCredential, error) {
			return azidentity.NewClientCertificateCredential(tenant, client, []*x509.Certificate{cert}, key, &azidentity.ClientCertificateCredentialOptions{
				ClientOptions: ep.ClientOptions(), DisableInstanceDiscovery: true, SendCertificateChain: true})
		}},
		{"workload identity", func(t *testing.T) (azcore.TokenCredential, error) {
			path, err := ep.WriteFederatedToken(t.TempDir(), subject)
			if err != nil {
				t.Fatal(err)
			}
			return azidentity.NewWorkloadIdentityCredential(&azidentity.WorkloadIdentityCredentialOptions{
				ClientID: client, TenantID: tenant, TokenFilePath: path,
				ClientOptions: ep.ClientOptions(), DisableInstanceDiscovery: true})
		}},
		{"DefaultAzureCredential, secret in the environment", func(t *testing.T) (azcore.TokenCredential, error) {
			Setenv(t, map[string]string{"AZURE_AUTHORITY_HOST": ep.AuthorityHost(),
				"AZURE_TENANT_ID": tenant, "AZURE_CLIENT_ID": client, "AZURE_CLIENT_SECRET": app.Secret})
			return azidentity.NewDefaultAzureCredential(&azidentity.DefaultAzureCredentialOptions{
				ClientOptions: azcore.ClientOptions{Transport: ep.Client()}, DisableInstanceDiscovery: true})
		}},
		{"DefaultAzureCredential, certificate in the environment", func(t *testing.T) (azcore.TokenCredential, error) {
			path, err := WriteCertificatePEM(t.TempDir(), cert, key)
			if err != nil {
				t.Fatal(err)
			}
			Setenv(t, map[string]string{"AZURE_AUTHORITY_HOST": ep.AuthorityHost(),
				"AZURE_TENANT_ID": tenant, "AZURE_CLIENT_ID": client, "AZURE_CLIENT_CERTIFICATE_PATH": path})
			return azidentity.NewDefaultAzureCredential(&azidentity.DefaultAzureCredentialOptions{
				ClientOptions: azcore.ClientOptions{Transport: ep.Client()}, DisableInstanceDiscovery: true})
		}},
		{"DefaultAzureCredential, workload identity webhook environment", func(t *testing.T) (azcore.TokenCredential, error) {
			path, err := ep.WriteFederatedToken(t.TempDir(), subject)
			if err != nil {
				t.Fatal(err)
			}
			// The variables the AKS workload identity webhook sets.
			Setenv(t, map[string]string{"AZURE_AUTHORITY_HOST": ep.AuthorityHost(),
				"AZURE_TENANT_ID": tenant, "AZURE_CLIENT_ID": client, "AZURE_FEDERATED_TOKEN_FILE": path,
				"AZURE_TOKEN_CREDENTIALS": "prod"})
			return azidentity.NewDefaultAzureCredential(&azidentity.DefaultAzureCredentialOptions{
				ClientOptions: azcore.ClientOptions{Transport: ep.Client()}, DisableInstanceDiscovery: true})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			IsolateEnv(t)
			cred := signsInAs(t, issuer, app.Identity, tt.cred)
			useKey(t, svc, cred)
		})
	}
}

func TestTokenEndpointRefuses(t *testing.T) {
	issuer := NewIssuer()
	ep := NewTokenEndpoint(issuer)
	defer ep.Close()
	cert, _ := NewCertificate("sidecar")
	otherCert, otherKey := NewCertificate("other")
	app := App{Identity: NewIdentity(""), Secret: "right", Certificate: cert, FederatedSubject: "system:serviceaccount:chat:sidecar"}
	ep.Register(app)
	tenant, client := app.Identity.TenantID, app.Identity.ClientID
	opts := ep.ClientOptions()
	opts.Retry = noRetries

	federated := func(t *testing.T, subject string) (azcore.TokenCredential, error) {
		path, err := ep.WriteFederatedToken(t.TempDir(), subject)
		if err != nil {
			t.Fatal(err)
		}
		return azidentity.NewWorkloadIdentityCredential(&azidentity.WorkloadIdentityCredentialOptions{
			ClientID: client, TenantID: tenant, TokenFilePath: path, ClientOptions: opts, DisableInstanceDiscovery: true})
	}
	tests := []struct {
		name     string
		cred     func(t *testing.T) (azcore.TokenCredential, error)
		wantCode int
		wantErr  string
	}{
		{"wrong secret", func(*testing.T) (azcore.TokenCredential, error) {
			return azidentity.NewClientSecretCredential(tenant, client, "wrong", &azidentity.ClientSecretCredentialOptions{ClientOptions: opts, DisableInstanceDiscovery: true})
		}, http.StatusUnauthorized, "invalid_client"},
		{"unknown app", func(*testing.T) (azcore.TokenCredential, error) {
			return azidentity.NewClientSecretCredential(tenant, newGUID(), "right", &azidentity.ClientSecretCredentialOptions{ClientOptions: opts, DisableInstanceDiscovery: true})
		}, http.StatusBadRequest, "AADSTS700016"},
		{"unknown tenant", func(*testing.T) (azcore.TokenCredential, error) {
			return azidentity.NewClientSecretCredential(newGUID(), client, "right", &azidentity.ClientSecretCredentialOptions{ClientOptions: opts, DisableInstanceDiscovery: true})
		}, 0, "AADSTS90002"},
		{"unregistered certificate", func(*testing.T) (azcore.TokenCredential, error) {
			return azidentity.NewClientCertificateCredential(tenant, client, []*x509.Certificate{otherCert}, otherKey, &azidentity.ClientCertificateCredentialOptions{ClientOptions: opts, DisableInstanceDiscovery: true})
		}, http.StatusUnauthorized, "x5t#S256"},
		{"federated token for another subject", func(t *testing.T) (azcore.TokenCredential, error) {
			return federated(t, "system:serviceaccount:chat:other")
		}, http.StatusUnauthorized, "subject"},
		{"instance discovery left on", func(*testing.T) (azcore.TokenCredential, error) {
			// MSAL asks login.microsoftonline.com about a host it does not
			// know; the transport refuses, so nothing leaves the machine.
			o := opts
			o.Transport = &http.Client{Transport: refuseAll{}}
			return azidentity.NewClientSecretCredential(tenant, client, "right", &azidentity.ClientSecretCredentialOptions{ClientOptions: o})
		}, 0, "login.microsoftonline.com"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			IsolateEnv(t)
			cred, err := tt.cred(t)
			if err != nil {
				t.Fatal(err)
			}
			afe := failsToSignIn(t, cred)
			if tt.wantCode != 0 && (afe.RawResponse == nil || afe.RawResponse.StatusCode != tt.wantCode) {
				t.Errorf("GetToken error = %v, want status %d", afe, tt.wantCode)
			}
			if !strings.Contains(afe.Error(), tt.wantErr) {
				t.Errorf("GetToken error = %v, want one mentioning %q", afe, tt.wantErr)
			}
			if testing.Verbose() {
				t.Log(afe)
			}
		})
	}
}

// refuseAll is a transport that sends nothing and names the host it was asked
// to reach.
type refuseAll struct{}

func (refuseAll) RoundTrip(r *http.Request) (*http.Response, error) {
	return nil, errors.New("refused a request to " + r.URL.Host)
}
