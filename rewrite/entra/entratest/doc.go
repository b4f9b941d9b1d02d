// Package entratest provides loopback stand-ins for the Microsoft Entra ID
// side of Azure SignalR Service, for tests, as net/http/httptest provides
// servers: an issuer of Entra access tokens, an App Service style managed
// identity endpoint, an Entra token endpoint for client secrets, client
// certificates and workload identity, and the service's key API
// (GET /api/v1/auth/accessKey) that hands out temporary access keys and
// checks client tokens signed with them; and, for Azure Web PubSub, the
// service's token API (POST /api/hubs/{hub}/:generateToken), which issues
// client tokens signed with a key only the service knows, and checks them.
//
// Each stand-in speaks the protocol as the Azure SDKs speak it; the comment
// beside each protocol fact names the SDK source file it comes from, so that
// a test that passes against a stand-in says something about the real thing.
// Paths are relative to the module roots of
// github.com/Azure/azure-sdk-for-go/sdk/azidentity (v1.15.0),
// github.com/AzureAD/microsoft-authentication-library-for-go (v1.10.1, "MSAL")
// and the Azure/azure-signalr, Azure/azure-sdk-for-net and Azure/azure-sdk-for-js
// repositories.
//
// Like httptest, the constructors panic where only a broken machine could make
// them fail (no randomness, no loopback listener).
package entratest
