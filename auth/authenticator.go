package auth

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// DefaultAlgorithms returns the asymmetric JWS algorithms accepted by
// default, which are also the only ones that may be chosen. Symmetric (HS*)
// algorithms are never accepted against a JWKS: a public key used as an HMAC
// secret would let anyone who knows it mint tokens.
func DefaultAlgorithms() []string {
	return []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
}

// maxUserIDBytes bounds the user id. Azure's client tokens must stay under
// 4096 characters in all, and an id this long is certainly a mistake.
const maxUserIDBytes = 1024

// Provider is one identity provider whose tokens are accepted.
type Provider struct {
	// Name labels the provider in logs and metrics. Default: the issuer.
	Name string
	// Issuer is the required value of the iss claim, compared exactly. A
	// token is routed to the provider whose Issuer equals its iss, before
	// any signature is checked, and only that provider's keys can verify
	// it: a key of one issuer never validates a token claiming another.
	Issuer string
	// Audiences lists accepted aud values; a token must carry at least one.
	Audiences []string
	// Algorithms lists accepted alg values. Default DefaultAlgorithms.
	// "none" and HS* are refused.
	Algorithms []string
	// Leeway is the clock skew allowed on exp, nbf and iat, at most
	// MaxLeeway.
	Leeway time.Duration
	// UserClaim names the claim that holds the user id. A claim of exactly
	// that name is used if present (URI claim names contain dots), otherwise
	// the name is read as a dotted path into nested objects. Default "sub".
	UserClaim string
	// Keys finds the verification key for a token.
	Keys jwt.Keyfunc
	// Loaded reports whether any key is loaded yet; nil means always.
	Loaded func() bool
	// Generation returns a number that changes whenever the set of keys
	// behind Keys changes, a key added or removed (KeySet.Generation). A
	// cached token verified under another generation is checked again.
	// Nil: the provider's tokens are never cached.
	Generation func() uint64
}

// Config configures an Authenticator.
type Config struct {
	// Providers are the accepted identity providers; at least one, with
	// distinct issuers.
	Providers []Provider
	// Cache, if set, remembers tokens that verified (see Cache). Share one
	// across reloads: the new Authenticator never sees the old one's entries.
	Cache *Cache
	// Now returns the current time; default time.Now.
	Now func() time.Time
}

// Identity is a verified caller. Identities may come from a Cache and be
// shared with other requests.
type Identity struct {
	// UserID is the value of the configured user claim.
	UserID string
	// Name is a human-readable name for the caller, for the
	// X-MS-CLIENT-PRINCIPAL-NAME header: preferred_username, email, name or
	// upn, whichever comes first, else the user id.
	Name string
	// Issuer is the token's iss claim.
	Issuer string
	// Provider is the Name of the provider that verified the token.
	Provider string
	// Expiry is the token's exp.
	Expiry time.Time

	// payload is the token's claims as the JSON it carried, never written
	// after verify makes it. A cached identity keeps them so, rather than
	// decoded: a map of interfaces costs several times the text, and the
	// collector scans it on every cycle.
	payload []byte
	// claims are the decoded payload, in the identity that verify returns
	// (never in a cached one), so that what a request derives from a token
	// it has just checked needs no second decode.
	claims map[string]any

	// memo holds what consumers derive from the identity (see Memo). Every
	// copy of an Identity shares it, cached ones included.
	memo *memo
}

// memo is an identity's few derived values, one per consumer. It is read on
// every request that presents a cached token, from many at once, and
// written once per consumer: readers load a slice that never changes, and
// a writer replaces it. A sync.Map would cost several hundred bytes per
// cached token for the one or two values it holds.
type memo struct {
	values atomic.Pointer[[]memoValue]
}

type memoValue struct{ key, value any }

func (m *memo) load(key any) (any, bool) {
	if p := m.values.Load(); p != nil {
		for _, v := range *p {
			if v.key == key {
				return v.value, true
			}
		}
	}
	return nil, false
}

// loadOrStore returns the value stored for key, storing value first if
// there is none.
func (m *memo) loadOrStore(key, value any) any {
	for {
		old := m.values.Load()
		var next []memoValue
		if old != nil {
			for _, v := range *old {
				if v.key == key {
					return v.value
				}
			}
			next = append(make([]memoValue, 0, len(*old)+1), *old...)
		}
		next = append(next, memoValue{key, value})
		if m.values.CompareAndSwap(old, &next) {
			return value
		}
	}
}

// Claims returns all of the token's claims, numbers kept as json.Number, or
// nil for an Identity not made by an Authenticator. An identity from the
// cache decodes them at each call, so a consumer that needs them on every
// request should derive what it needs once, with Memo. The map may be shared
// with other uses of the same Identity: treat it as read-only.
func (id Identity) Claims() map[string]any {
	if id.claims != nil || id.payload == nil {
		return id.claims
	}
	claims, err := decodeClaims(id.payload)
	if err != nil {
		return nil // verify decoded the same text, so this does not happen
	}
	return claims
}

// decodeClaims decodes a token's payload as jwt.Parser.ParseUnverified does
// with WithJSONNumber.
func decodeClaims(payload []byte) (map[string]any, error) {
	claims := map[string]any{}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	if err := dec.Decode(&claims); err != nil {
		return nil, err
	}
	return claims, nil
}

// Memo returns the value compute gives for key, computed once per verified
// token and kept with it: a consumer derives a per-caller value (a header,
// say) once rather than on every request that presents the same token from
// the cache. key must be comparable; compute must depend on the identity
// alone. An Identity not made by an Authenticator computes every time.
func (id Identity) Memo(key any, compute func() any) any {
	if id.memo == nil {
		return compute()
	}
	if v, ok := id.memo.load(key); ok {
		return v
	}
	return id.memo.loadOrStore(key, compute())
}

// Reason says why a token was refused, in words safe to show the caller and
// to use as a metric label.
type Reason string

// The reasons a request can be refused.
const (
	ReasonMissing     Reason = "missing"       // no bearer token
	ReasonMalformed   Reason = "malformed"     // not a well-formed JWT
	ReasonAlgorithm   Reason = "algorithm"     // alg not accepted
	ReasonUnknownKey  Reason = "unknown_key"   // no key with that kid
	ReasonSignature   Reason = "signature"     // signature does not verify
	ReasonExpired     Reason = "expired"       // exp passed
	ReasonNotYetValid Reason = "not_yet_valid" // nbf or iat in the future
	ReasonIssuer      Reason = "issuer"        // iss names no configured provider
	ReasonAudience    Reason = "audience"      // no accepted aud
	ReasonUserClaim   Reason = "user_claim"    // user claim missing, empty or unusable
	ReasonNoKeys      Reason = "no_keys"       // no verification key loaded yet
	ReasonCrit        Reason = "crit"          // the header marks extensions critical (crit), none of which is understood
)

// Reasons returns every Reason a refusal can have.
func Reasons() []Reason {
	return []Reason{ReasonMissing, ReasonMalformed, ReasonAlgorithm, ReasonUnknownKey, ReasonSignature, ReasonExpired,
		ReasonNotYetValid, ReasonIssuer, ReasonAudience, ReasonUserClaim, ReasonNoKeys, ReasonCrit}
}

// Error is a refused token. Its message carries the detail for logs; Reason
// is what the caller may learn.
type Error struct {
	Reason Reason
	// Provider is the Name of the provider the token was routed to, or ""
	// when it never reached one.
	Provider string
	Err      error
}

func (e *Error) Error() string { return fmt.Sprintf("token refused (%s): %v", e.Reason, e.Err) }
func (e *Error) Unwrap() error { return e.Err }

// Authenticator verifies bearer tokens.
type Authenticator struct {
	providers map[string]*provider // by issuer
	names     []string
	now       func() time.Time
	peek      *jwt.Parser
	cache     *Cache
}

type provider struct {
	Provider
	validator *jwt.Validator
}

// MaxLeeway is the most clock skew a Provider may allow.
const MaxLeeway = 5 * time.Minute

// ErrNoProvider is the problem of a configuration without a provider.
var ErrNoProvider = errors.New("no identity provider is configured")

// CheckIssuer, CheckAudiences, CheckAlgorithms and CheckLeeway judge one
// field of a Provider each; CheckProviders applies them to every provider,
// with what concerns providers together. New applies CheckProviders.

// CheckIssuer requires an issuer.
func CheckIssuer(issuer string) error {
	if issuer == "" {
		return errors.New("an issuer is required: the exact iss claim of your callers' tokens")
	}
	return nil
}

// CheckAudiences requires at least one audience, none empty.
func CheckAudiences(audiences []string) error {
	switch {
	case len(audiences) == 0:
		return errors.New("at least one audience is required: the aud your callers' tokens carry")
	case slices.Contains(audiences, ""):
		return errors.New("an audience is empty; list the aud values your callers' tokens carry")
	}
	return nil
}

// CheckAlgorithms accepts only DefaultAlgorithms; an empty list means them all.
func CheckAlgorithms(algorithms []string) error {
	var refused []string
	for _, alg := range algorithms {
		if !slices.Contains(DefaultAlgorithms(), alg) {
			refused = append(refused, strconv.Quote(alg))
		}
	}
	if len(refused) > 0 {
		return fmt.Errorf("%s not accepted; choose from %s (never none or HS*)", strings.Join(refused, " and "), strings.Join(DefaultAlgorithms(), ","))
	}
	return nil
}

// CheckLeeway accepts a leeway from 0 to MaxLeeway.
func CheckLeeway(d time.Duration) error {
	if d < 0 || d > MaxLeeway {
		return fmt.Errorf("choose a value from 0s to %s", strings.TrimSuffix(strings.TrimSuffix(MaxLeeway.String(), "0s"), "0s"))
	}
	return nil
}

// CheckProviders judges every provider's fields, each problem prefixed with
// the provider's name, and what CheckDistinct judges. Keys are not judged.
func CheckProviders(ps []Provider) error {
	if len(ps) == 0 {
		return ErrNoProvider
	}
	var problems []error
	for _, p := range ps {
		for _, err := range []error{CheckIssuer(p.Issuer), CheckAudiences(p.Audiences), CheckAlgorithms(p.Algorithms), CheckLeeway(p.Leeway)} {
			if err != nil {
				problems = append(problems, fmt.Errorf("provider %q: %w", providerName(p), err))
			}
		}
	}
	return errors.Join(append(problems, CheckDistinct(ps))...)
}

// CheckDistinct requires distinct names and issuers: a token must map to
// exactly one provider, and names label metrics.
func CheckDistinct(ps []Provider) error {
	var problems []error
	var names, issuers []string
	for _, p := range ps {
		where := fmt.Sprintf("provider %q", providerName(p))
		if slices.Contains(names, providerName(p)) {
			problems = append(problems, fmt.Errorf("%s: the name is used twice; give each provider its own name (names label metrics and must differ)", where))
		}
		if p.Issuer != "" && slices.Contains(issuers, p.Issuer) {
			problems = append(problems, fmt.Errorf("%s: issuer %q is configured twice; a token must map to exactly one provider, so merge their audiences into one", where, p.Issuer))
		}
		names, issuers = append(names, providerName(p)), append(issuers, p.Issuer)
	}
	return errors.Join(problems...)
}

func providerName(p Provider) string {
	if p.Name == "" {
		return p.Issuer
	}
	return p.Name
}

// New checks cfg and returns an Authenticator. All problems are reported
// together.
func New(cfg Config) (*Authenticator, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	a := &Authenticator{providers: map[string]*provider{}, now: cfg.Now, peek: jwt.NewParser(jwt.WithJSONNumber()), cache: cfg.Cache}
	var problems []error
	if err := CheckProviders(cfg.Providers); err != nil {
		problems = append(problems, err)
	}
	for _, p := range cfg.Providers {
		p.Name = providerName(p)
		if len(p.Algorithms) == 0 {
			p.Algorithms = DefaultAlgorithms()
		}
		if p.UserClaim == "" {
			p.UserClaim = "sub"
		}
		if p.Keys == nil {
			problems = append(problems, fmt.Errorf("provider %q: a key source is required", p.Name))
		}
		a.names = append(a.names, p.Name)
		a.providers[p.Issuer] = &provider{Provider: p, validator: jwt.NewValidator(
			jwt.WithIssuer(p.Issuer),
			jwt.WithAudience(p.Audiences...),
			jwt.WithLeeway(p.Leeway),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithTimeFunc(cfg.Now),
		)}
	}
	if len(problems) > 0 {
		return nil, errors.Join(problems...)
	}
	return a, nil
}

// Providers returns the names of the configured providers, in order.
func (a *Authenticator) Providers() []string { return slices.Clone(a.names) }

// Authenticate verifies the bearer token in the Authorization header values
// and returns the caller's identity. Every failure is an *Error.
func (a *Authenticator) Authenticate(authorization []string) (Identity, error) {
	raw, ok := ParseBearer(authorization)
	if !ok {
		if len(authorization) == 0 {
			return Identity{}, &Error{Reason: ReasonMissing, Err: errors.New("no Authorization header")}
		}
		return Identity{}, &Error{Reason: ReasonMalformed, Err: errors.New("the Authorization header is not a single Bearer token")}
	}
	if a.cache == nil {
		id, _, _, err := a.verify(raw)
		return id, err
	}
	key := tokenKey(raw)
	if id, ok := a.cache.get(key, a, a.now()); ok {
		return id, nil
	}
	id, p, generation, err := a.verify(raw)
	if err != nil {
		return id, err
	}
	if p.Generation != nil && !id.Expiry.IsZero() {
		// Kept as long as a fresh check would accept the token: until exp
		// plus the leeway (nbf and iat only become more valid with time).
		// The decoded claims stay with this request alone.
		cached := id
		cached.claims = nil
		a.cache.put(key, a, generation, p.Generation, id.Expiry.Add(p.Leeway), entrySize(cached), cached)
	}
	return id, nil
}

// tokenKey returns the cache key of a token: its SHA-256. A token of usual
// size is hashed from a copy on the stack, so that a cache hit allocates
// nothing.
func tokenKey(raw string) [sha256.Size]byte {
	var buf [2048]byte
	if len(raw) <= len(buf) {
		return sha256.Sum256(buf[:copy(buf[:], raw)])
	}
	return sha256.Sum256([]byte(raw))
}

// verify checks raw against the provider its iss names. It returns that
// provider and its key generation as read before the signature was checked,
// so that a key removed during the check makes a cache entry stale at once.
func (a *Authenticator) verify(raw string) (Identity, *provider, uint64, error) {
	// Route by the claimed issuer first. Nothing read here is trusted: it
	// only picks whose keys and rules the token must then satisfy.
	// An alg golang-jwt does not know ("nOnE") fails here already, and is
	// refused as an algorithm, not as a malformed token.
	payload, err := strictSegments(raw)
	if err != nil {
		return Identity{}, nil, 0, &Error{Reason: ReasonMalformed, Err: err}
	}
	// The token is decoded once: what routes it is what is then verified.
	claims := jwt.MapClaims{}
	tok, parts, err := a.peek.ParseUnverified(raw, claims)
	if err != nil {
		return Identity{}, nil, 0, &Error{Reason: reasonOf(err), Err: err}
	}
	iss, _ := claims["iss"].(string)
	p := a.providers[iss]
	if p == nil {
		return Identity{}, nil, 0, &Error{Reason: ReasonIssuer, Err: fmt.Errorf("issuer %q is not configured", truncate(iss, 200))}
	}
	// golang-jwt ignores crit. RFC 7515 section 4.1.11 requires refusing a
	// token whose crit names an extension the recipient does not
	// understand, and we understand none; an empty or non-list crit is
	// malformed. The signature is beside the point: an extension could
	// change what the signature or the claims mean. Checked before the keys
	// are looked for, so that such a token is refused (401) even while keys
	// load, rather than told to retry.
	if crit, ok := tok.Header["crit"]; ok {
		return Identity{}, nil, 0, &Error{Reason: ReasonCrit, Provider: p.Name, Err: fmt.Errorf("the header has crit %q, and no JWS extension is understood", truncate(fmt.Sprint(crit), 200))}
	}
	if p.Loaded != nil && !p.Loaded() {
		return Identity{}, nil, 0, &Error{Reason: ReasonNoKeys, Provider: p.Name, Err: errors.New("no verification key is loaded yet")}
	}
	var generation uint64
	if p.Generation != nil {
		generation = p.Generation()
	}
	if err := p.check(tok, raw[:len(parts[0])+1+len(parts[1])], claims); err != nil {
		return Identity{}, nil, 0, &Error{Reason: reasonOf(err), Provider: p.Name, Err: err}
	}
	uid, err := userID(claims, p.UserClaim)
	if err != nil {
		return Identity{}, nil, 0, &Error{Reason: ReasonUserClaim, Provider: p.Name, Err: err}
	}
	var expiry time.Time
	if exp, err := claims.GetExpirationTime(); err == nil && exp != nil {
		expiry = exp.Time
	}
	// The issuer is the provider's own string, equal to iss: a cached
	// identity holds no copy of it.
	return Identity{UserID: uid, Name: displayName(claims, uid), Issuer: p.Issuer, Provider: p.Name, Expiry: expiry,
		payload: payload, claims: claims, memo: &memo{}}, p, generation, nil
}

// check verifies a token that ParseUnverified decoded, as the provider's
// rules require: what jwt.Parser.ParseWithClaims does after its own
// ParseUnverified (an accepted alg, the key, the signature over signed, the
// claims), in the same order and with errors that wrap the same jwt errors
// with the same words, so that reasonOf reads them alike.
func (p *provider) check(tok *jwt.Token, signed string, claims jwt.MapClaims) error {
	if alg := tok.Method.Alg(); !slices.Contains(p.Algorithms, alg) {
		return fmt.Errorf("%w: signing method %v is invalid", jwt.ErrTokenSignatureInvalid, alg)
	}
	key, err := p.Keys(tok)
	if err != nil {
		return fmt.Errorf("%w: error while executing keyfunc: %w", jwt.ErrTokenUnverifiable, err)
	}
	switch have := key.(type) {
	case jwt.VerificationKeySet:
		if len(have.Keys) == 0 {
			return fmt.Errorf("%w: keyfunc returned empty verification key set", jwt.ErrTokenUnverifiable)
		}
		for _, k := range have.Keys {
			if err = tok.Method.Verify(signed, tok.Signature, k); err == nil {
				break
			}
		}
	default:
		err = tok.Method.Verify(signed, tok.Signature, have)
	}
	if err != nil {
		return fmt.Errorf("%w: %w", jwt.ErrTokenSignatureInvalid, err)
	}
	if err := p.validator.Validate(claims); err != nil {
		return fmt.Errorf("%w: %w", jwt.ErrTokenInvalidClaims, err)
	}
	return nil
}

// truncate bounds text taken from a token before it goes into a log.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// reasonOf maps golang-jwt's errors to a Reason. Order matters: a token can
// carry several problems, and the signature outranks the claims because a
// token whose signature fails says nothing trustworthy about its claims.
func reasonOf(err error) Reason {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return ReasonMalformed
	case errors.Is(err, jwkset.ErrKeyNotFound):
		return ReasonUnknownKey
	case strings.Contains(err.Error(), "signing method"):
		// golang-jwt reports an alg outside WithValidMethods, and an alg it
		// does not know, only in words.
		return ReasonAlgorithm
	case errors.Is(err, jwt.ErrTokenUnverifiable), errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return ReasonSignature
	case errors.Is(err, jwt.ErrTokenExpired):
		return ReasonExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return ReasonNotYetValid
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return ReasonIssuer
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return ReasonAudience
	}
	return ReasonMalformed
}

// userID reads the user claim: first as a top-level claim of exactly that
// name, then as a dotted path into nested objects.
func userID(claims map[string]any, name string) (string, error) {
	v, ok := claims[name]
	if !ok && strings.Contains(name, ".") {
		v, ok = lookupPath(claims, strings.Split(name, "."))
	}
	if !ok {
		return "", fmt.Errorf("the token has no %q claim", name)
	}
	s, isString := v.(string)
	switch {
	case !isString:
		return "", fmt.Errorf("claim %q is not a string", name)
	case s == "":
		return "", fmt.Errorf("claim %q is empty", name)
	case len(s) > maxUserIDBytes:
		return "", fmt.Errorf("claim %q is longer than %d bytes", name, maxUserIDBytes)
	case !headerSafe(s):
		return "", fmt.Errorf("claim %q contains control characters", name)
	}
	return s, nil
}

func lookupPath(claims map[string]any, path []string) (any, bool) {
	var cur any = claims
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[p]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func displayName(claims map[string]any, fallback string) string {
	for _, c := range []string{"preferred_username", "email", "name", "upn"} {
		if s, ok := claims[c].(string); ok && s != "" && len(s) <= maxUserIDBytes && headerSafe(s) {
			return s
		}
	}
	return fallback
}

// headerSafe reports whether s can travel in an HTTP header value: no control
// characters other than tab. The user id is sent upstream in headers, and a
// value that cannot be sent must be refused here rather than fail later.
func headerSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}
