package rewrite

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// forwardClaim is one entry of Options.ForwardClaims: the caller's claim name
// and the name it is written under in the token.
type forwardClaim struct {
	from, to string
}

// maxDate bounds the iat and nbf values used in arithmetic, a little over
// 30,000 years from 1970 either way, so that adding a lifetime cannot
// overflow. A token claiming more is not telling the time.
const maxDate = 1 << 40

// CheckOptions reports every problem of opts for the format, as New would.
func CheckOptions(f Format, opts Options) error {
	_, err := checkOptions(f, opts)
	return err
}

// checkOptions validates opts for the format, reporting every problem at
// once, and returns the forwarded claims with their names in the token.
func checkOptions(f Format, opts Options) ([]forwardClaim, error) {
	var errs []error
	var forward []forwardClaim
	seen := make(map[string]bool)
	for _, name := range opts.ForwardClaims {
		if name == "" {
			errs = append(errs, errors.New("a forward claim name is empty"))
			continue
		}
		if seen[name] {
			errs = append(errs, fmt.Errorf("forward claim %q is listed twice", name))
			continue
		}
		seen[name] = true
		to := name
		if slices.Contains(f.PrefixedClaims, name) {
			to = f.CustomClaimPrefix + name
		}
		// The prefixed name is checked too, exactly: a format whose prefix
		// produced one of its own system claims would otherwise let a caller
		// write it.
		if f.reserves(name) || (to != name && f.isSystemClaim(to)) {
			errs = append(errs, fmt.Errorf("forward claim %q would overwrite a system claim of the %s format", name, f.Name))
			continue
		}
		forward = append(forward, forwardClaim{from: name, to: to})
	}
	switch d := opts.MaxTokenLifetime; {
	case d < 0:
		errs = append(errs, fmt.Errorf("the maximum token lifetime %v is negative", d))
	case d > 0 && d < time.Second:
		errs = append(errs, fmt.Errorf("the maximum token lifetime %v is under a second, the resolution of exp", d))
	}
	switch n := opts.MaxTokenLength; {
	case n < 0:
		errs = append(errs, fmt.Errorf("the maximum token length %d is negative", n))
	case f.MaxTokenLength > 0 && n > f.MaxTokenLength:
		errs = append(errs, fmt.Errorf("the maximum token length %d is above the %d characters the %s service accepts", n, f.MaxTokenLength, f.Name))
	}
	if opts.CloseOnCallerExpiry {
		if f.CloseOnExpiryClaim == "" || f.ExpiresOnClaim == "" {
			errs = append(errs, fmt.Errorf("the %s format cannot ask the service to close connections on caller expiry", f.Name))
		}
		if !opts.BindToCallerExpiry {
			errs = append(errs, errors.New("closing connections on caller expiry requires binding the token to the caller's expiry"))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return forward, nil
}

// reserves reports whether name is a claim that forwarding may not write.
func (f Format) reserves(name string) bool {
	if f.isSystemClaim(name) {
		return true
	}
	for _, p := range f.ReservedPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// isSystemClaim reports whether name is exactly one of the format's own claims.
func (f Format) isSystemClaim(name string) bool {
	switch name {
	case "":
		return false
	case f.UserClaim, f.CloseOnExpiryClaim, f.ExpiresOnClaim:
		return true
	}
	return slices.Contains(f.ReservedClaims, name)
}

// applyOptions caps exp and adds the claims the Options ask for. Claims it
// adds go in one block right after the user id, system claims before
// forwarded ones, all ahead of nbf, exp and iat as in the SDK's tokens;
// claims the token already has are overwritten in place, so none can appear
// twice.
func (r *Rewriter) applyOptions(claims object, c Caller) (object, error) {
	claims, err := r.capExpiry(claims, c)
	if err != nil {
		return nil, err
	}
	pos := claims.index(r.format.UserClaim) + 1
	put := func(name string, value json.RawMessage) {
		if i := claims.index(name); i >= 0 {
			claims[i].value = value
			return
		}
		claims = slices.Insert(claims, pos, member{name: name, value: value})
		pos++
	}
	if r.opts.CloseOnCallerExpiry && !c.Expiry.IsZero() {
		// Both are strings, exactly as the SDK writes them: a JSON true or
		// number is not what the service has been seen to accept.
		put(r.format.CloseOnExpiryClaim, json.RawMessage(`"true"`))
		put(r.format.ExpiresOnClaim, appendQuoted(nil, strconv.FormatInt(c.Expiry.Unix(), 10)))
	}
	for _, f := range r.forward {
		v, ok := c.Claims[f.from]
		if !ok || v == nil {
			// A null claim says nothing, and the service's JWT reader may
			// not accept one.
			continue
		}
		raw, err := appendValue(nil, v)
		if err != nil {
			// The value itself stays out of the error: claims can be
			// personal data.
			return nil, fail(ReasonCallerClaim, "caller claim %q, a %T, cannot be written as JSON", f.from, v)
		}
		put(f.to, raw)
	}
	return claims, nil
}

// capExpiry lowers exp to the earliest of the caps the Options set. An exp
// that is already low enough keeps its exact text.
func (r *Rewriter) capExpiry(claims object, c Caller) (object, error) {
	if r.lifetime == 0 && !r.opts.BindToCallerExpiry {
		return claims, nil
	}
	expAt := claims.index("exp")
	var exp float64
	if expAt >= 0 {
		var ok bool
		if exp, ok = jsonNumber(claims[expAt].value); !ok {
			return nil, fail(ReasonMalformedToken, "the exp claim is not a number")
		}
	}
	now := r.opts.Now().Unix()
	// The token must outlive both its own nbf and the present, or the
	// service refuses it or it dies as the client connects.
	validFrom := now
	if nbf, ok := dateClaim(claims, "nbf"); ok && nbf > validFrom {
		validFrom = nbf
	}
	var limit int64
	limited := false
	lower := func(v int64) {
		if !limited || v < limit {
			limit, limited = v, true
		}
	}
	if r.lifetime > 0 {
		issued := now
		if iat, ok := dateClaim(claims, "iat"); ok {
			issued = iat
		}
		lower(addSeconds(issued, r.lifetime))
	}
	if r.opts.BindToCallerExpiry && !c.Expiry.IsZero() {
		callerExp := c.Expiry.Unix()
		if callerExp <= validFrom {
			return nil, fail(ReasonCallerExpired, "the caller's token expires at %d, not after the service token's start at %d", callerExp, validFrom)
		}
		lower(callerExp)
	}
	if !limited || expAt >= 0 && float64(limit) >= exp {
		return claims, nil
	}
	if limit <= validFrom {
		// Only the lifetime can get here: by the upstream's clock the token
		// was issued more than the lifetime ago, or it is not valid until
		// later than that.
		return nil, fail(ReasonMalformedToken, "capped at its maximum lifetime the token would expire at %d, not after its start at %d", limit, validFrom)
	}
	v := json.RawMessage(strconv.AppendInt(nil, limit, 10))
	if expAt < 0 {
		// The SDK always writes exp; for a token without one, the end of
		// the payload is as good a place as any.
		return append(claims, member{name: "exp", value: v}), nil
	}
	claims[expAt].value = v
	return claims, nil
}

// jsonNumber reads a JSON number value. A string is not a number here, even
// one that spells a number: the service would not read it as a date.
func jsonNumber(raw json.RawMessage) (float64, bool) {
	if len(raw) == 0 || raw[0] != '-' && (raw[0] < '0' || raw[0] > '9') {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	return f, err == nil
}

// dateClaim returns the named claim as whole unix seconds, if it is a number
// within maxDate.
func dateClaim(claims object, name string) (int64, bool) {
	i := claims.index(name)
	if i < 0 {
		return 0, false
	}
	f, ok := jsonNumber(claims[i].value)
	if !ok || math.Abs(f) > maxDate {
		return 0, false
	}
	return int64(math.Floor(f)), true
}

// addSeconds adds without wrapping around, should Options.Now return a time
// at the edge of int64.
func addSeconds(t, d int64) int64 {
	if t > math.MaxInt64-d {
		return math.MaxInt64
	}
	return t + d
}
