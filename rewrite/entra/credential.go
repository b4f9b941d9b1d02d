// Package entra gets the sidecar its own temporary key from Azure SignalR
// Service with a Microsoft Entra identity, as the Azure SignalR SDK does for
// an app that connects without an access key: an Entra token for
// https://signalr.azure.com/.default, then GET {endpoint}/api/v1/auth/accessKey,
// refreshed every 55 minutes (Azure/azure-signalr,
// src/Microsoft.Azure.SignalR.Common/Auth/MicrosoftEntraAccessKey.cs).
// For Azure Web PubSub, whose service issues client tokens itself in this
// mode, it asks the service for each token instead (TokenClient).
//
// The credential is chosen from the same settings, and in the same way, as
// the app's SDK or the Azure Functions host choose theirs (see Credential).
package entra

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/negotiate-sidecar/negotiate-sidecar/rewrite"
)

// Scope is what the SDK asks Microsoft Entra ID for a token for.
const Scope = "https://signalr.azure.com/.default"

// Options change how credentials reach Microsoft Entra ID.
type Options struct {
	// ClientOptions are every credential's HTTP pipeline options, such as
	// a Transport. The authority host comes from AZURE_AUTHORITY_HOST when
	// Cloud leaves it empty, as azidentity reads it.
	ClientOptions azcore.ClientOptions
	// DisableInstanceDiscovery skips the authority's metadata request
	// (needed for authority hosts unknown to login.microsoftonline.com).
	DisableInstanceDiscovery bool
	// Getenv reads the environment; default os.Getenv.
	Getenv func(string) string
	// ReadFile reads a certificate file; default os.ReadFile.
	ReadFile func(string) ([]byte, error)
}

// Credential returns the credential e describes, and a short description
// of it for logs and reports (no secret in it).
//
// From a connection string, as the SignalR SDK reads one
// (Azure/azure-signalr, src/Microsoft.Azure.SignalR.Common/Utilities/ConnectionStringParser.cs):
//   - azure.msi: a managed identity, user-assigned when ClientId is given;
//   - azure.app: a service principal with ClientSecret, or with ClientCert,
//     the path of a PEM file holding the certificate and its private key;
//   - aad: a service principal as azure.app when TenantId is given, else a
//     managed identity as azure.msi;
//   - azure: DefaultAzureCredential (environment, workload identity,
//     managed identity, Azure CLI).
//
// From the Functions host's identity-based settings, as
// Microsoft.Extensions.Azure's ClientFactory.CreateCredential reads them:
//   - credential managedidentity: a managed identity, by
//     managedIdentityResourceId or clientId when given;
//   - credential workloadidentity: AKS workload identity, tenantId,
//     clientId and tokenFilePath defaulting to AZURE_TENANT_ID,
//     AZURE_CLIENT_ID and AZURE_FEDERATED_TOKEN_FILE;
//   - tenantId, clientId and clientSecret: a service principal;
//   - otherwise DefaultAzureCredential. With clientId (or a resource id),
//     DefaultAzureCredential there tries that managed identity; here the
//     same identity is tried by workload identity, when the pod has it,
//     and then by managed identity.
//
// A certificate named by a store thumbprint (clientCertificate) is refused:
// a Linux container has no certificate store to read it from.
func Credential(e *rewrite.Entra, o Options) (azcore.TokenCredential, string, error) {
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.ReadFile == nil {
		o.ReadFile = os.ReadFile
	}
	if e.IdentityBased {
		return identityCredential(e, o)
	}
	switch e.AuthType {
	case "azure.msi":
		return managedIdentity(e.ClientID, "", o)
	case "aad":
		if e.TenantID == "" {
			return managedIdentity(e.ClientID, "", o)
		}
		return servicePrincipal(e, o)
	case "azure.app":
		return servicePrincipal(e, o)
	case "azure":
		return defaultCredential("", o)
	}
	return nil, "", fmt.Errorf("AuthType %q: no credential for it", e.AuthType)
}

func identityCredential(e *rewrite.Entra, o Options) (azcore.TokenCredential, string, error) {
	switch {
	case e.Credential == "managedidentity":
		return managedIdentity(e.ClientID, e.ResourceID, o)
	case e.Credential == "workloadidentity":
		return workloadIdentity(e.ClientID, e.TenantID, e.TokenFilePath, o)
	case e.TenantID != "" && e.ClientID != "" && e.ClientSecret != "":
		return servicePrincipal(e, o)
	case e.CertificateThumbprint != "":
		return nil, "", errors.New("clientCertificate names a certificate by its thumbprint in a certificate store, which a Linux container does not have: use clientSecret, workload identity or a managed identity, or a connection string with AuthType=azure.app;ClientCert=<path of a PEM file>")
	case e.ClientID != "" || e.ResourceID != "":
		return managedOrWorkload(e, o)
	}
	return defaultCredential(e.TenantID, o)
}

func managedIdentity(clientID, resourceID string, o Options) (azcore.TokenCredential, string, error) {
	opts := &azidentity.ManagedIdentityCredentialOptions{ClientOptions: o.ClientOptions}
	desc := "system-assigned managed identity"
	switch {
	case resourceID != "":
		opts.ID, desc = azidentity.ResourceID(resourceID), "managed identity "+resourceID
	case clientID != "":
		opts.ID, desc = azidentity.ClientID(clientID), "managed identity with client id "+clientID
	}
	c, err := azidentity.NewManagedIdentityCredential(opts)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", desc, err)
	}
	return c, desc, nil
}

func workloadIdentity(clientID, tenantID, tokenFile string, o Options) (azcore.TokenCredential, string, error) {
	// azidentity names only the first missing value, and in its own terms
	// ("set ClientID in the options"): name them all, as they are set.
	var missing []string
	for _, v := range []struct{ value, env, setting string }{
		{clientID, "AZURE_CLIENT_ID", "clientId"},
		{tenantID, "AZURE_TENANT_ID", "tenantId"},
		{tokenFile, "AZURE_FEDERATED_TOKEN_FILE", "tokenFilePath"},
	} {
		if v.value == "" && o.Getenv(v.env) == "" {
			missing = append(missing, fmt.Sprintf("%s (or the %s setting)", v.env, v.setting))
		}
	}
	if len(missing) > 0 {
		verb := "is"
		if len(missing) > 1 {
			verb = "are"
		}
		return nil, "", fmt.Errorf("workload identity: %s %s not set; in AKS the workload identity webhook sets them in every container of a pod labelled azure.workload.identity/use: \"true\" whose ServiceAccount is annotated with azure.workload.identity/client-id (a pod created before either needs to be created again)", strings.Join(missing, ", "), verb)
	}
	c, err := azidentity.NewWorkloadIdentityCredential(&azidentity.WorkloadIdentityCredentialOptions{
		ClientOptions: o.ClientOptions, ClientID: clientID, TenantID: tenantID, TokenFilePath: tokenFile,
		DisableInstanceDiscovery: o.DisableInstanceDiscovery,
	})
	if err != nil {
		return nil, "", fmt.Errorf("workload identity: %w (in AKS, label the pod azure.workload.identity/use: \"true\" and annotate its ServiceAccount with azure.workload.identity/client-id)", err)
	}
	if clientID == "" {
		clientID = o.Getenv("AZURE_CLIENT_ID")
	}
	return c, "workload identity with client id " + clientID, nil
}

// managedOrWorkload tries a named identity by workload identity, when the
// pod has a federated token, then by managed identity.
func managedOrWorkload(e *rewrite.Entra, o Options) (azcore.TokenCredential, string, error) {
	var chain []azcore.TokenCredential
	var descs []string
	if e.TokenFilePath != "" || o.Getenv("AZURE_FEDERATED_TOKEN_FILE") != "" {
		if c, desc, err := workloadIdentity(e.ClientID, e.TenantID, e.TokenFilePath, o); err == nil {
			chain, descs = append(chain, c), append(descs, desc)
		}
	}
	c, desc, err := managedIdentity(e.ClientID, e.ResourceID, o)
	if err != nil {
		return nil, "", err
	}
	chain, descs = append(chain, c), append(descs, desc)
	if len(chain) == 1 {
		return c, desc, nil
	}
	cc, err := azidentity.NewChainedTokenCredential(chain, nil)
	if err != nil {
		return nil, "", err
	}
	return cc, descs[0] + ", then " + descs[1], nil
}

func servicePrincipal(e *rewrite.Entra, o Options) (azcore.TokenCredential, string, error) {
	desc := "service principal " + e.ClientID + " of tenant " + e.TenantID
	if e.ClientSecret != "" {
		c, err := azidentity.NewClientSecretCredential(e.TenantID, e.ClientID, e.ClientSecret, &azidentity.ClientSecretCredentialOptions{
			ClientOptions: o.ClientOptions, DisableInstanceDiscovery: o.DisableInstanceDiscovery,
		})
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", desc, err)
		}
		return c, desc + " (client secret)", nil
	}
	data, err := o.ReadFile(e.ClientCert)
	if err != nil {
		return nil, "", fmt.Errorf("%s: ClientCert: %w (it names a PEM file holding the certificate and its private key)", desc, err)
	}
	certs, key, err := azidentity.ParseCertificates(data, nil)
	if err != nil {
		return nil, "", fmt.Errorf("%s: ClientCert %s: %w (it must be a PEM or unencrypted PKCS#12 file holding the certificate and its private key)", desc, e.ClientCert, err)
	}
	c, err := azidentity.NewClientCertificateCredential(e.TenantID, e.ClientID, certs, key, &azidentity.ClientCertificateCredentialOptions{
		ClientOptions: o.ClientOptions, DisableInstanceDiscovery: o.DisableInstanceDiscovery,
	})
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", desc, err)
	}
	return c, desc + " (certificate " + e.ClientCert + ")", nil
}

func defaultCredential(tenantID string, o Options) (azcore.TokenCredential, string, error) {
	c, err := azidentity.NewDefaultAzureCredential(&azidentity.DefaultAzureCredentialOptions{
		ClientOptions: o.ClientOptions, TenantID: tenantID, DisableInstanceDiscovery: o.DisableInstanceDiscovery,
	})
	if err != nil {
		return nil, "", fmt.Errorf("DefaultAzureCredential: %w", err)
	}
	return c, "DefaultAzureCredential", nil
}
