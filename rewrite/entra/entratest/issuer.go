package entratest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Identity is a service principal or managed identity as Microsoft Entra ID
// knows it.
type Identity struct {
	// TenantID is the directory the identity belongs to; tokens carry it as
	// tid and in iss.
	TenantID string
	// ClientID is the application (client) id; tokens carry it as appid.
	// Managed identities are chosen by it (client_id) on the identity
	// endpoint.
	ClientID string
	// ObjectID is the service principal's object id; tokens carry it as oid
	// and sub, and role assignments name it.
	ObjectID string
}

// NewIdentity returns an identity with fresh random client and object ids in
// tenantID, or in a fresh random tenant when tenantID is empty.
func NewIdentity(tenantID string) Identity {
	if tenantID == "" {
		tenantID = newGUID()
	}
	return Identity{TenantID: tenantID, ClientID: newGUID(), ObjectID: newGUID()}
}

// Issuer issues and verifies Entra-like access tokens, signed RS256 with a key
// of its own. Every stand-in in this package that hands out or accepts Entra
// tokens shares one Issuer.
type Issuer struct {
	key *rsa.PrivateKey
	kid string
}

// NewIssuer returns an issuer with a fresh 2048-bit RSA key.
func NewIssuer() *Issuer {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic("entratest: " + err.Error())
	}
	// Entra puts the key's thumbprint in both x5t and kid; any stable value
	// serves for a single key.
	sum := sha256.Sum256(k.PublicKey.N.Bytes())
	return &Issuer{key: k, kid: base64.RawURLEncoding.EncodeToString(sum[:20])}
}

// stsIssuer is the iss of a v1 access token: the v2 token endpoint still issues
// v1 tokens for resources, like https://signalr.azure.com, whose application
// manifest accepts v1 tokens.
func stsIssuer(tenantID string) string {
	return "https://sts.windows.net/" + tenantID + "/"
}

// Issue returns an access token for subject with the given resource as
// audience ("/.default" trimmed, as the v2 endpoint does for a v1 resource),
// valid from now for lifetime, with the claims an Entra v1 app-only access
// token carries.
func (i *Issuer) Issue(subject Identity, resource string, lifetime time.Duration) string {
	now := time.Now()
	claims := jwt.MapClaims{
		"aud":   strings.TrimSuffix(resource, "/.default"),
		"iss":   stsIssuer(subject.TenantID),
		"iat":   now.Unix(),
		"nbf":   now.Unix(),
		"exp":   now.Add(lifetime).Unix(),
		"appid": subject.ClientID,
		"idp":   stsIssuer(subject.TenantID),
		"idtyp": "app",
		"oid":   subject.ObjectID,
		"sub":   subject.ObjectID,
		"tid":   subject.TenantID,
		"uti":   newGUID(),
		"ver":   "1.0",
	}
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	t.Header["kid"] = i.kid
	t.Header["x5t"] = i.kid
	s, err := t.SignedString(i.key)
	if err != nil {
		panic("entratest: signing a token: " + err.Error())
	}
	return s
}

// Verify checks that token was issued by this issuer for audience ("/.default"
// trimmed) and is within its lifetime, and returns the identity it names.
func (i *Issuer) Verify(token, audience string) (Identity, error) {
	p := jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodRS256.Alg()}),
		jwt.WithAudience(strings.TrimSuffix(audience, "/.default")),
		jwt.WithExpirationRequired(),
	)
	claims := jwt.MapClaims{}
	if _, err := p.ParseWithClaims(token, claims, func(*jwt.Token) (any, error) {
		return &i.key.PublicKey, nil
	}); err != nil {
		return Identity{}, fmt.Errorf("verifying access token: %w", err)
	}
	str := func(name string) string { s, _ := claims[name].(string); return s }
	id := Identity{TenantID: str("tid"), ClientID: str("appid"), ObjectID: str("oid")}
	if id.TenantID == "" || id.ClientID == "" || id.ObjectID == "" {
		return Identity{}, errors.New("verifying access token: tid, appid or oid missing")
	}
	if iss := str("iss"); iss != stsIssuer(id.TenantID) {
		return Identity{}, fmt.Errorf("verifying access token: iss %q does not match tenant %q", iss, id.TenantID)
	}
	return id, nil
}

// newGUID returns a random (version 4) GUID in its usual text form.
func newGUID() string {
	b := randomBytes(16)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("entratest: " + err.Error())
	}
	return b
}
