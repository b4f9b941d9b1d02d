package rewrite

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
)

// Entra is how an app signs in to a service endpoint with Microsoft Entra ID
// instead of an access key: read from a connection string's AuthType and
// the keys that go with it, or from the Azure Functions host's
// identity-based settings (AzureSignalRConnectionString__serviceUri and its
// siblings). Such an app signs client tokens with a temporary key the
// service gave it, which the sidecar never sees; the sidecar gets a key of
// its own the same way (package rewrite/entra).
//
// Every fmt verb prints the redacted form returned by String, as for
// ConnectionString.
type Entra struct {
	// Source names where the settings were read, for messages.
	Source string
	// Endpoint is the service endpoint, Port applied; ServerEndpoint, when
	// set, is where the app (and the sidecar) ask for keys instead.
	Endpoint, ServerEndpoint *url.URL
	// AuthType is the connection string's AuthType (aad, azure, azure.app,
	// azure.msi); empty for identity-based settings.
	AuthType string
	// IdentityBased is set for the Functions host's identity-based
	// settings. Credential is then their credential setting, lowercased:
	// managedidentity, workloadidentity, or empty.
	IdentityBased bool
	Credential    string
	// ClientID, TenantID and ResourceID name the identity. ResourceID is a
	// user-assigned managed identity's resource id
	// (managedIdentityResourceId); only identity-based settings have one.
	ClientID, TenantID, ResourceID string
	// ClientSecret is a service principal's secret.
	ClientSecret string
	// ClientCert is the path of a service principal's certificate (a
	// connection string's ClientCert); CertificateThumbprint a certificate
	// store thumbprint (the identity-based clientCertificate setting).
	ClientCert, CertificateThumbprint string
	// TokenFilePath is the workload identity token file (tokenFilePath).
	TokenFilePath string
}

// KeyURL is where the SDK asks for a temporary key: the ServerEndpoint, or
// else the Endpoint, with /api/v1/auth/accessKey appended
// (Azure/azure-signalr, src/Microsoft.Azure.SignalR.Common/Auth/MicrosoftEntraAccessKey.cs).
func (e *Entra) KeyURL() string {
	base := e.Endpoint
	if e.ServerEndpoint != nil {
		base = e.ServerEndpoint
	}
	u := *base
	u.Path = strings.TrimRight(u.Path, "/") + "/api/v1/auth/accessKey"
	u.RawPath = ""
	return u.String()
}

// String describes the settings with the client secret redacted.
func (e *Entra) String() string {
	var parts []string
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+"="+v)
		}
	}
	if e.Endpoint != nil {
		add("Endpoint", e.Endpoint.Redacted())
	}
	if e.ServerEndpoint != nil {
		add("ServerEndpoint", e.ServerEndpoint.Redacted())
	}
	add("AuthType", e.AuthType)
	add("credential", e.Credential)
	add("ClientId", e.ClientID)
	add("TenantId", e.TenantID)
	add("managedIdentityResourceId", e.ResourceID)
	if e.ClientSecret != "" {
		add("ClientSecret", redactedValue)
	}
	add("ClientCert", e.ClientCert)
	add("clientCertificate", e.CertificateThumbprint)
	add("tokenFilePath", e.TokenFilePath)
	return strings.Join(parts, ";")
}

// GoString is String, quoted and labelled with the type.
func (e *Entra) GoString() string { return "rewrite.Entra(" + strconv.Quote(e.String()) + ")" }

// Format prints the redacted form for every verb.
func (e *Entra) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = io.WriteString(f, e.GoString())
		return
	}
	fmt.Fprintf(f, fmt.FormatString(f, verb), e.String())
}

// MarshalText returns the redacted form.
func (e *Entra) MarshalText() ([]byte, error) { return []byte(e.String()), nil }

// entraFromConnectionString checks that a connection string with AuthType
// names a credential the way the SDK requires one
// (Azure/azure-signalr, src/Microsoft.Azure.SignalR.Common/Utilities/ConnectionStringParser.cs):
// azure.app needs ClientId, TenantId and ClientSecret or ClientCert; aad
// with ClientId and TenantId needs one of those too, and otherwise means a
// managed identity; azure.msi is a managed identity, user-assigned with
// ClientId; azure is DefaultAzureCredential.
func entraFromConnectionString(source string, c ConnectionString) (*Entra, error) {
	e := &Entra{
		Source: source, Endpoint: c.Endpoint, ServerEndpoint: c.ServerEndpoint, AuthType: c.AuthType,
		ClientID: c.ClientID, TenantID: c.TenantID, ClientSecret: c.ClientSecret, ClientCert: c.ClientCert,
	}
	if c.AccessKey != "" {
		return nil, fmt.Errorf("AuthType=%s: the app's SignalR SDK ignores the AccessKey when AuthType is set, and signs in with Microsoft Entra ID; remove the AccessKey (or AuthType), in the app's setting and here alike, so that it is clear which one is used", c.AuthType)
	}
	secretOrCert := c.ClientSecret != "" || c.ClientCert != ""
	switch c.AuthType {
	case "azure.app":
		if c.ClientID == "" || c.TenantID == "" || !secretOrCert {
			return nil, fmt.Errorf("AuthType=azure.app needs ClientId, TenantId and ClientSecret or ClientCert (the path of a PEM certificate with its private key)")
		}
	case "aad":
		if c.ClientID != "" && c.TenantID != "" && !secretOrCert {
			return nil, fmt.Errorf("AuthType=aad with ClientId and TenantId needs ClientSecret or ClientCert; without TenantId, ClientId names a user-assigned managed identity")
		}
	}
	return e, nil
}

// identitySettingKeys are the settings of one identity-based connection the
// Functions host reads, lowercased (Microsoft.Extensions.Azure ClientFactory
// for the credential; Microsoft.Azure.WebJobs.Extensions.SignalRService for
// serviceUri, serverEndpoint, clientEndpoint and type).
var identitySettingKeys = []string{
	"serviceuri", "serverendpoint", "clientendpoint", "type",
	"credential", "clientid", "tenantid", "clientsecret", "clientcertificate",
	"clientcertificatestorename", "clientcertificatestorelocation", "managedidentityresourceid",
	"tokenfilepath", "additionallyallowedtenants",
}

// splitIdentitySetting splits "<connection>__<key>" (or ':' for '__') into
// the connection's name and a known identity setting key, lowercased.
func splitIdentitySetting(name string) (conn, key string, ok bool) {
	for _, sep := range []string{"__", ":"} {
		i := strings.LastIndex(name, sep)
		if i <= 0 {
			continue
		}
		k := strings.ToLower(name[i+len(sep):])
		for _, known := range identitySettingKeys {
			if k == known {
				return name[:i], k, true
			}
		}
	}
	return "", "", false
}

// parseSetting parses the URL of an identity-based setting. Its errors
// lose the "connection string: " that parseEndpoint's carry: a setting is
// not one.
func parseSetting(name, v, hint string) (*url.URL, error) {
	u, err := parseEndpoint(name, v, hint, nil)
	if err != nil {
		return nil, errors.New(strings.TrimPrefix(err.Error(), "connection string: "))
	}
	return u, nil
}

// parseIdentitySettings reads one identity-based connection's settings,
// keyed as splitIdentitySetting gives them; hint is an example serviceUri.
func parseIdentitySettings(source string, s map[string]string, hint string) (*Entra, error) {
	e := &Entra{Source: source, IdentityBased: true}
	var err error
	if e.Endpoint, err = parseSetting("serviceUri", s["serviceuri"], hint); err != nil {
		return nil, err
	}
	if v := s["serverendpoint"]; v != "" {
		if e.ServerEndpoint, err = parseSetting("serverEndpoint", v, "https://<host>"); err != nil {
			return nil, err
		}
	}
	e.Credential = strings.ToLower(s["credential"])
	switch e.Credential {
	case "", "managedidentity", "workloadidentity":
	default:
		return nil, fmt.Errorf("credential %q is not one the Functions host knows here: give managedidentity, workloadidentity, or leave it out (client secret, or DefaultAzureCredential)", s["credential"])
	}
	e.ClientID, e.TenantID, e.ResourceID = s["clientid"], s["tenantid"], s["managedidentityresourceid"]
	e.ClientSecret, e.CertificateThumbprint, e.TokenFilePath = s["clientsecret"], s["clientcertificate"], s["tokenfilepath"]
	if e.ClientID != "" && e.ResourceID != "" {
		return nil, fmt.Errorf("give clientId or managedIdentityResourceId, not both")
	}
	return e, nil
}

// SigningKey is a temporary key the service issued to the sidecar, and the
// id the service finds it by.
type SigningKey struct {
	ID     string // the service's KeyId, written as the token's kid
	Secret []byte // the UTF-8 bytes of the AccessKey string
}

// KeySource lends the key the sidecar signs with for an endpoint the app
// reaches with Microsoft Entra ID. SigningKey fails while it holds none,
// saying why.
type KeySource interface {
	SigningKey() (SigningKey, error)
}
