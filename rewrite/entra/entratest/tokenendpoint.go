package entratest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/golang-jwt/jwt/v5"
)

// Grant and assertion type values (MSAL
// apps/internal/oauth/ops/internal/grant/grant.go).
const (
	grantClientCredentials = "client_credentials"
	assertionTypeJWTBearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
)

// FederatedAudience is the audience Entra expects in a federated token, the
// one the AKS workload identity webhook has Kubernetes put in the projected
// service account token.
const FederatedAudience = "api://AzureADTokenExchange"

// App is an application registration the token endpoint knows. Set any of the
// three ways for it to sign in.
type App struct {
	// Identity is the app's service principal; Identity.TenantID is the
	// tenant it signs in to.
	Identity Identity
	// Secret, when set, is a client secret the app may present.
	Secret string
	// Certificate, when set, is a certificate whose key may sign the app's
	// client assertions (azidentity ClientCertificateCredential).
	Certificate *x509.Certificate
	// FederatedSubject, when set, is the subject of federated tokens from
	// this endpoint's FederatedIssuer that sign the app in (workload identity:
	// "system:serviceaccount:<namespace>:<name>").
	FederatedSubject string
}

// TokenEndpoint stands in for the Entra authority host
// (login.microsoftonline.com) on a loopback TLS server: the tenant OpenID
// discovery document MSAL reads first, and the v2.0 token endpoint for the
// client credentials grant with a client secret, a certificate-signed client
// assertion, or a federated token as a client assertion. Tokens it issues come
// from its Issuer.
//
// MSAL accepts only https authorities (MSAL
// apps/internal/oauth/ops/authority/authority.go, NewInfoFromAuthorityURI;
// azidentity azidentity.go, setAuthorityHost, says the same), hence TLS. Give
// credentials ClientOptions and set DisableInstanceDiscovery: with instance
// discovery on, MSAL asks login.microsoftonline.com about any host it does not
// know (MSAL authority.go, AADInstanceDiscovery), which a test cannot reach.
type TokenEndpoint struct {
	srv    *httptest.Server
	issuer *Issuer
	fedKey *rsa.PrivateKey // signs federated tokens, as a cluster's service account issuer would

	mu   sync.Mutex
	apps map[string]App // by client id

	requests atomic.Int64
}

// TokenLifetime is the lifetime of the tokens a TokenEndpoint issues, as
// Entra's usual expires_in of about an hour.
const TokenLifetime = time.Hour

// NewTokenEndpoint starts a token endpoint that issues tokens with issuer.
// Close it when done.
func NewTokenEndpoint(issuer *Issuer) *TokenEndpoint {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic("entratest: " + err.Error())
	}
	e := &TokenEndpoint{issuer: issuer, fedKey: k, apps: map[string]App{}}
	e.srv = httptest.NewTLSServer(http.HandlerFunc(e.serve))
	return e
}

// Register makes app known, replacing an app with the same client id.
func (e *TokenEndpoint) Register(app App) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.apps[app.Identity.ClientID] = app
}

// AuthorityHost returns the authority host, https://127.0.0.1:port/, for
// azidentity's ClientOptions.Cloud.ActiveDirectoryAuthorityHost or the
// AZURE_AUTHORITY_HOST variable.
func (e *TokenEndpoint) AuthorityHost() string { return e.srv.URL + "/" }

// Client returns an http.Client that trusts the endpoint's certificate.
func (e *TokenEndpoint) Client() *http.Client { return e.srv.Client() }

// ClientOptions returns azidentity client options that reach this endpoint:
// the authority host and a transport trusting its certificate. Credentials
// must also set DisableInstanceDiscovery.
func (e *TokenEndpoint) ClientOptions() azcore.ClientOptions {
	return azcore.ClientOptions{
		Cloud:     cloud.Configuration{ActiveDirectoryAuthorityHost: e.AuthorityHost()},
		Transport: e.Client(),
	}
}

// FederatedIssuer returns the issuer of this endpoint's federated tokens.
func (e *TokenEndpoint) FederatedIssuer() string { return e.srv.URL + "/federation/" }

// FederatedToken returns a token as Kubernetes projects it for a service
// account under workload identity: RS256, iss FederatedIssuer, sub subject,
// aud FederatedAudience, valid for an hour.
func (e *TokenEndpoint) FederatedToken(subject string) string {
	now := time.Now()
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"iss": e.FederatedIssuer(),
		"sub": subject,
		"aud": []string{FederatedAudience},
		"iat": now.Unix(),
		"nbf": now.Unix(),
		"exp": now.Add(time.Hour).Unix(),
	})
	s, err := t.SignedString(e.fedKey)
	if err != nil {
		panic("entratest: signing a federated token: " + err.Error())
	}
	return s
}

// WriteFederatedToken writes FederatedToken(subject) to a file in dir and
// returns its path, for AZURE_FEDERATED_TOKEN_FILE. azidentity reads the
// file anew at most every ten minutes (azidentity workload_identity.go,
// getAssertion).
func (e *TokenEndpoint) WriteFederatedToken(dir, subject string) (string, error) {
	path := filepath.Join(dir, "azure-identity-token")
	if err := os.WriteFile(path, []byte(e.FederatedToken(subject)), 0o600); err != nil {
		return "", fmt.Errorf("writing federated token: %w", err)
	}
	return path, nil
}

// Requests returns how many requests reached the endpoint, discovery
// included.
func (e *TokenEndpoint) Requests() int { return int(e.requests.Load()) }

// Close shuts the endpoint down.
func (e *TokenEndpoint) Close() { e.srv.Close() }

// NewCertificate returns a fresh self-signed certificate and its RSA key for
// App.Certificate and azidentity.NewClientCertificateCredential (MSAL signs
// assertions with RSA keys only: MSAL apps/confidential/confidential.go,
// NewCredFromCert).
func NewCertificate(commonName string) (*x509.Certificate, *rsa.PrivateKey) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic("entratest: " + err.Error())
	}
	tmpl := &x509.Certificate{
		SerialNumber: new(big.Int).SetBytes(randomBytes(16)),
		Subject:      pkix.Name{CommonName: commonName},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic("entratest: " + err.Error())
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		panic("entratest: " + err.Error())
	}
	return cert, key
}

// WriteCertificatePEM writes cert and key, in that order, to one PEM file in
// dir, as AZURE_CLIENT_CERTIFICATE_PATH and azidentity.ParseCertificates take
// them, and returns its path.
func WriteCertificatePEM(dir string, cert *x509.Certificate, key *rsa.PrivateKey) (string, error) {
	b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	b = append(b, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})...)
	path := filepath.Join(dir, "client.pem")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return "", fmt.Errorf("writing certificate: %w", err)
	}
	return path, nil
}

// entraError answers with an OAuth error body as Entra shapes it; MSAL reads
// error and error_description (MSAL
// apps/internal/oauth/ops/authority/authority.go, OAuthResponseBase). The
// AADSTS codes and statuses follow Entra's documented error codes, not an SDK
// source.
func entraError(w http.ResponseWriter, code int, errCode, aadsts, desc string) {
	writeJSON(w, code, map[string]any{
		"error":             errCode,
		"error_description": aadsts + ": " + desc,
		"error_codes":       []int{atoiAADSTS(aadsts)},
		"timestamp":         time.Now().UTC().Format("2006-01-02 15:04:05Z"),
		"trace_id":          newGUID(),
		"correlation_id":    newGUID(),
	})
}

func atoiAADSTS(s string) int {
	n := 0
	for _, c := range strings.TrimPrefix(s, "AADSTS") {
		n = n*10 + int(c-'0')
	}
	return n
}

func (e *TokenEndpoint) serve(w http.ResponseWriter, r *http.Request) {
	e.requests.Add(1)
	tenant, rest, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	switch {
	// MSAL reads the tenant's discovery document at
	// {authority}/v2.0/.well-known/openid-configuration when instance
	// discovery is off (MSAL apps/internal/oauth/resolvers.go,
	// openIDConfigurationEndpoint).
	case rest == "v2.0/.well-known/openid-configuration" && r.Method == http.MethodGet:
		e.serveDiscovery(w, tenant)
	case rest == "oauth2/v2.0/token" && r.Method == http.MethodPost:
		e.serveToken(w, r, tenant)
	default:
		http.NotFound(w, r)
	}
}

func (e *TokenEndpoint) knowsTenant(tenant string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, a := range e.apps {
		if a.Identity.TenantID == tenant {
			return true
		}
	}
	return false
}

func (e *TokenEndpoint) serveDiscovery(w http.ResponseWriter, tenant string) {
	if !e.knowsTenant(tenant) {
		entraError(w, http.StatusBadRequest, "invalid_tenant", "AADSTS90002", fmt.Sprintf("Tenant '%s' not found.", tenant))
		return
	}
	// MSAL requires authorization_endpoint, token_endpoint and issuer
	// (authority.go, TenantDiscoveryResponse.Validate), and the issuer's
	// scheme and host must match the authority's (authority.go,
	// ValidateIssuerMatchesAuthority).
	base := e.srv.URL + "/" + tenant
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                base + "/v2.0",
		"authorization_endpoint":                base + "/oauth2/v2.0/authorize",
		"token_endpoint":                        base + "/oauth2/v2.0/token",
		"token_endpoint_auth_methods_supported": []string{"client_secret_post", "private_key_jwt", "client_secret_basic"},
		"response_types_supported":              []string{"code", "id_token", "code id_token", "id_token token"},
		"tenant_region_scope":                   "WW",
	})
}

func (e *TokenEndpoint) tokenURL(tenant string) string {
	return e.srv.URL + "/" + tenant + "/oauth2/v2.0/token"
}

func (e *TokenEndpoint) serveToken(w http.ResponseWriter, r *http.Request, tenant string) {
	// MSAL posts a form (MSAL apps/internal/oauth/ops/internal/comm/comm.go,
	// URLFormCall) with grant_type, client_id, scope, and client_secret or
	// client_assertion_type + client_assertion (MSAL
	// apps/internal/oauth/ops/accesstokens/accesstokens.go, FromClientSecret,
	// FromAssertion).
	if err := r.ParseForm(); err != nil {
		entraError(w, http.StatusBadRequest, "invalid_request", "AADSTS900144", "The request body is not a valid form.")
		return
	}
	f := r.PostForm
	if g := f.Get("grant_type"); g != grantClientCredentials {
		entraError(w, http.StatusBadRequest, "unsupported_grant_type", "AADSTS70003", fmt.Sprintf("The app requested an unsupported grant type '%s'.", g))
		return
	}
	e.mu.Lock()
	app, ok := e.apps[f.Get("client_id")]
	e.mu.Unlock()
	if !ok || app.Identity.TenantID != tenant {
		entraError(w, http.StatusBadRequest, "unauthorized_client", "AADSTS700016",
			fmt.Sprintf("Application with identifier '%s' was not found in the directory '%s'.", f.Get("client_id"), tenant))
		return
	}
	resource, ok := resourceOf(f.Get("scope"))
	if !ok {
		entraError(w, http.StatusBadRequest, "invalid_scope", "AADSTS1002012",
			fmt.Sprintf("The provided value for scope %s is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier.", f.Get("scope")))
		return
	}
	var err error
	switch {
	case f.Get("client_secret") != "":
		err = checkSecret(app, f.Get("client_secret"))
	case f.Get("client_assertion_type") == assertionTypeJWTBearer && f.Get("client_assertion") != "":
		err = e.checkAssertion(app, f.Get("client_assertion"), e.tokenURL(tenant))
	default:
		entraError(w, http.StatusBadRequest, "invalid_client", "AADSTS7000218", "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")
		return
	}
	if err != nil {
		entraError(w, http.StatusUnauthorized, "invalid_client", "AADSTS7000215", err.Error())
		return
	}
	// The answer MSAL parses: access_token, token_type, and expires_in as a
	// number of seconds (MSAL accesstokens/tokens.go, TokenResponse).
	secs := int(TokenLifetime / time.Second)
	writeJSON(w, http.StatusOK, map[string]any{
		"token_type":     "Bearer",
		"expires_in":     secs,
		"ext_expires_in": secs,
		"access_token":   e.issuer.Issue(app.Identity, resource, TokenLifetime),
	})
}

// resourceOf returns the one resource of a client credentials scope. MSAL adds
// openid, offline_access and profile to every request (MSAL
// accesstokens/accesstokens.go, AppendDefaultScopes); Entra ignores them for
// this grant, and requires the resource scope to end in /.default.
func resourceOf(scope string) (string, bool) {
	var resource string
	for _, s := range strings.Fields(scope) {
		switch s {
		case "openid", "offline_access", "profile":
			continue
		}
		if resource != "" || !strings.HasSuffix(s, "/.default") {
			return "", false
		}
		resource = strings.TrimSuffix(s, "/.default")
	}
	return resource, resource != ""
}

func checkSecret(app App, secret string) error {
	if app.Secret == "" || subtle.ConstantTimeCompare([]byte(app.Secret), []byte(secret)) != 1 {
		return fmt.Errorf("invalid client secret provided for app %s", app.Identity.ClientID)
	}
	return nil
}

// checkAssertion verifies a client assertion: one signed with the app's
// certificate key when its header carries a thumbprint, else a federated
// token.
func (e *TokenEndpoint) checkAssertion(app App, assertion, tokenURL string) error {
	header, err := jwtHeader(assertion)
	if err != nil {
		return err
	}
	_, hasS256 := header["x5t#S256"]
	_, hasSHA1 := header["x5t"]
	if hasS256 || hasSHA1 {
		return checkCertificateAssertion(app, assertion, tokenURL)
	}
	return e.checkFederatedToken(app, assertion)
}

// checkCertificateAssertion checks an assertion as MSAL makes it (MSAL
// accesstokens/accesstokens.go, Credential.JWT): PS256 with x5t#S256, the
// standard (padded, not URL) base64 of the certificate's SHA-256 thumbprint,
// for Entra authorities, or RS256 with x5t (SHA-1) as for ADFS; claims aud =
// the token endpoint URL, iss = sub = client id, jti, nbf, exp 10 minutes
// ahead. A chain in x5c (SendCertificateChain) is not needed here.
func checkCertificateAssertion(app App, assertion, tokenURL string) error {
	if app.Certificate == nil {
		return errors.New("the app has no certificate registered")
	}
	raw := app.Certificate.Raw
	s256 := sha256.Sum256(raw)
	s1 := sha1.Sum(raw)
	p := jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodPS256.Alg(), jwt.SigningMethodRS256.Alg()}),
		jwt.WithAudience(tokenURL),
		jwt.WithIssuer(app.Identity.ClientID),
		jwt.WithSubject(app.Identity.ClientID),
		jwt.WithExpirationRequired(),
	)
	_, err := p.Parse(assertion, func(t *jwt.Token) (any, error) {
		want, name := s256[:], "x5t#S256"
		if t.Method.Alg() == jwt.SigningMethodRS256.Alg() {
			want, name = s1[:], "x5t"
		}
		got, _ := t.Header[name].(string)
		if !thumbprintMatches(got, want) {
			return nil, fmt.Errorf("the assertion's %s does not match the app's certificate", name)
		}
		return app.Certificate.PublicKey, nil
	})
	if err != nil {
		return fmt.Errorf("client assertion: %w", err)
	}
	return nil
}

func thumbprintMatches(got string, want []byte) bool {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(got); err == nil && subtle.ConstantTimeCompare(b, want) == 1 {
			return true
		}
	}
	return false
}

// checkFederatedToken checks a federated token as Entra checks it against a
// federated identity credential: issuer, subject and audience.
func (e *TokenEndpoint) checkFederatedToken(app App, token string) error {
	if app.FederatedSubject == "" {
		return errors.New("the app has no federated identity credential")
	}
	p := jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodRS256.Alg()}),
		jwt.WithIssuer(e.FederatedIssuer()),
		jwt.WithSubject(app.FederatedSubject),
		jwt.WithAudience(FederatedAudience),
		jwt.WithExpirationRequired(),
	)
	if _, err := p.Parse(token, func(*jwt.Token) (any, error) { return &e.fedKey.PublicKey, nil }); err != nil {
		return fmt.Errorf("federated token: %w", err)
	}
	return nil
}

// jwtHeader decodes a compact JWT's header without verifying anything.
func jwtHeader(token string) (map[string]any, error) {
	t, _, err := jwt.NewParser().ParseUnverified(token, jwt.MapClaims{})
	if err != nil {
		return nil, fmt.Errorf("client assertion: %w", err)
	}
	return t.Header, nil
}
