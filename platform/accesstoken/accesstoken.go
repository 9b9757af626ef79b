// Package accesstoken issues and verifies end-user access tokens: JWTs in
// the RFC 9068 profile ("typ": "at+jwt"), as the sample user service issues
// them and as the gateway verifies them, from that service or from any
// OIDC issuer.
//
// [Verifier] refuses every token it cannot fully vouch for, and says why
// with a sentinel error, so that the gateway can log the reason while
// answering every failure the same way. The JOSE-level sentinels are those
// of package jwks, re-exported here.
package accesstoken

import (
	"errors"
	"slices"
	"time"

	"example.com/rampart/platform/jwks"
)

// Type is the JWT "typ" header of an access token (RFC 9068).
const Type = "at+jwt"

const (
	// DefaultLifetime is how long an issued token lives unless configured.
	DefaultLifetime = 5 * time.Minute
	// MaxLifetime is the longest lifetime an [Issuer] accepts.
	MaxLifetime = time.Hour
	// DefaultLeeway is the clock skew a [Verifier] tolerates unless
	// configured.
	DefaultLeeway = 30 * time.Second
	// MaxLeeway is the largest leeway a [Verifier] accepts.
	MaxLeeway = time.Minute
	// DefaultMaxSize is the longest token a [Verifier] looks at unless
	// configured.
	DefaultMaxSize = 8 << 10
	// MaxTokenSize is the largest MaxSize a [Verifier] accepts, and the
	// longest token [ParseAuthorization] returns.
	MaxTokenSize = 16 << 10
)

// Errors that say why a token was refused. Each verification failure wraps
// exactly one of them.
var (
	// ErrTooLarge: the token or header is over the size limit.
	ErrTooLarge = jwks.ErrTooLarge
	// ErrMalformed: not a compact JWS of canonical base64url, or a header or
	// claims that are not JSON of the right shape.
	ErrMalformed = jwks.ErrMalformed
	// ErrAlgorithm: "alg" is missing, "none", outside the allowlist, or does
	// not fit the key.
	ErrAlgorithm = jwks.ErrAlgorithm
	// ErrHeader: a header parameter other than "alg", "kid" and "typ".
	ErrHeader = jwks.ErrHeader
	// ErrType: "typ" is not "at+jwt".
	ErrType = jwks.ErrType
	// ErrUnknownKey: "kid" names no key of the key source.
	ErrUnknownKey = jwks.ErrUnknownKey
	// ErrWeakKey: the key is an RSA key under 2048 bits.
	ErrWeakKey = jwks.ErrWeakKey
	// ErrSignature: the signature does not verify.
	ErrSignature = jwks.ErrSignature

	// ErrExpired: "exp" is missing, not positive, or past, beyond the leeway.
	ErrExpired = errors.New("accesstoken: token expired")
	// ErrLifetime: "exp" is further ahead than MaxLifetime, beyond the
	// leeway. No issuer of the platform issues longer, and a revoked
	// session is remembered for no longer than its tokens can live.
	ErrLifetime = errors.New("accesstoken: token lives too long")
	// ErrNotYetValid: "nbf" or "iat" is in the future, beyond the leeway.
	ErrNotYetValid = errors.New("accesstoken: token not yet valid")
	// ErrIssuer: "iss" is missing or not the configured issuer.
	ErrIssuer = errors.New("accesstoken: wrong issuer")
	// ErrAudience: "aud" does not hold the configured audience.
	ErrAudience = errors.New("accesstoken: wrong audience")
	// ErrSubject: "sub" is missing or empty.
	ErrSubject = errors.New("accesstoken: no subject")

	// ErrNoToken: the Authorization header is empty or absent.
	ErrNoToken = errors.New("accesstoken: no authorization header")
	// ErrAuthorization: the Authorization header is not "Bearer <token68>".
	ErrAuthorization = errors.New("accesstoken: malformed authorization header")
)

// Claims are the verified contents of an access token.
type Claims struct {
	// Issuer ("iss") is the issuer's URL.
	Issuer string
	// Subject ("sub") is the end user's id.
	Subject string
	// SessionID ("sid") is the user's session, when the issuer names one.
	SessionID string
	// ID ("jti") identifies the token.
	ID string
	// ClientID ("client_id") is the OAuth client the token was issued to.
	ClientID string
	// Scopes ("scope") are the scopes granted.
	Scopes []string
	// IssuedAt ("iat") and Expiry ("exp") bound the token's validity.
	// IssuedAt is zero when the issuer did not say.
	IssuedAt, Expiry time.Time
}

// HasScopes reports whether every one of scopes was granted.
func (c *Claims) HasScopes(scopes ...string) bool {
	for _, s := range scopes {
		if !slices.Contains(c.Scopes, s) {
			return false
		}
	}
	return true
}
