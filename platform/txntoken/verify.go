package txntoken

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4"
	josejson "github.com/go-jose/go-jose/v4/json"
	"github.com/go-jose/go-jose/v4/jwt"

	"example.com/rampart/platform/jwks"
)

const (
	// DefaultLeeway is the clock skew a [Verifier] tolerates unless
	// configured. Workloads share a cluster's clock discipline, and tokens
	// live a minute, so it is small.
	DefaultLeeway = 5 * time.Second
	// MaxLeeway is the largest leeway a [Verifier] accepts.
	MaxLeeway = 30 * time.Second
	// MaxSize is the longest token a [Verifier] looks at, and the longest
	// a [Minter] mints.
	MaxSize = 8 << 10
)

// algorithms are the algorithms a transaction token may be signed with:
// those of the platform's own key files.
var algorithms = []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA}

// Errors that say why a token was refused. Each verification failure wraps
// exactly one of them.
var (
	// ErrTooLarge: the token is over MaxSize.
	ErrTooLarge = jwks.ErrTooLarge
	// ErrMalformed: not a compact JWS of canonical base64url, or a header or
	// claims that are not JSON of the right shape.
	ErrMalformed = jwks.ErrMalformed
	// ErrAlgorithm: "alg" is missing, "none", not ES256 or EdDSA, or does not
	// fit the key.
	ErrAlgorithm = jwks.ErrAlgorithm
	// ErrHeader: a header parameter other than "alg", "kid" and "typ".
	ErrHeader = jwks.ErrHeader
	// ErrType: "typ" is not exactly "txntoken+jwt".
	ErrType = jwks.ErrType
	// ErrUnknownKey: "kid" names no key of the key source.
	ErrUnknownKey = jwks.ErrUnknownKey
	// ErrWeakKey: the key is too weak to trust.
	ErrWeakKey = jwks.ErrWeakKey
	// ErrSignature: the signature does not verify.
	ErrSignature = jwks.ErrSignature

	// ErrExpired: "exp" is missing, not positive, or past, beyond the leeway.
	ErrExpired = errors.New("txntoken: token expired")
	// ErrNotYetValid: "iat" or "nbf" is in the future, beyond the leeway.
	ErrNotYetValid = errors.New("txntoken: token not yet valid")
	// ErrLifetime: "iat" is missing, or "exp" is not after it by at most
	// MaxLifetime.
	ErrLifetime = errors.New("txntoken: lifetime too long")
	// ErrIssuer: "iss" is missing or not the configured issuer.
	ErrIssuer = errors.New("txntoken: wrong issuer")
	// ErrAudience: "aud" is not exactly the trust domain.
	ErrAudience = errors.New("txntoken: wrong audience")
	// ErrClaims: "sub", "txn" or "req_wl" is missing.
	ErrClaims = errors.New("txntoken: required claim missing")
)

// VerifierConfig configures [NewVerifier].
type VerifierConfig struct {
	// Keys finds the minter's public keys. Required.
	Keys jwks.KeySource
	// TrustDomain is the only accepted audience. Required.
	TrustDomain string
	// Issuer is the expected "iss", compared exactly. Required.
	Issuer string
	// Leeway is the clock skew tolerated on "exp", "iat" and "nbf". Zero
	// means DefaultLeeway; more than MaxLeeway is refused.
	Leeway time.Duration
}

// Verifier verifies transaction tokens. It is safe for concurrent use.
//
// On top of the checks of [jwks.Verifier], which run first and refuse a
// token over [MaxSize] before anything is parsed and accept only ES256 and
// EdDSA, a token must have "typ" exactly "txntoken+jwt" ([ErrType]), so that
// an access token is never taken for a transaction token; a numeric,
// positive "exp" no further in the past than the leeway ([ErrExpired]); an
// "iat" no further in the future than the leeway and no more than
// [MaxLifetime] before "exp" ([ErrNotYetValid], [ErrLifetime]); exactly the
// configured "iss" ([ErrIssuer]); the trust domain as its one audience
// ([ErrAudience]); and "sub", "txn" and "req_wl" ([ErrClaims]). Claims of
// the wrong JSON type, and duplicate claims, are refused ([ErrMalformed]).
type Verifier struct {
	jws         *jwks.Verifier
	trustDomain string
	issuer      string
	leeway      time.Duration
	now         func() time.Time
}

// NewVerifier returns a Verifier, or an error if cfg lacks a required field
// or asks for too much leeway.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	switch {
	case cfg.Keys == nil:
		return nil, errors.New("creating transaction token verifier: no keys")
	case cfg.TrustDomain == "":
		return nil, errors.New("creating transaction token verifier: no trust domain")
	case cfg.Issuer == "":
		return nil, errors.New("creating transaction token verifier: no issuer")
	case cfg.Leeway < 0 || cfg.Leeway > MaxLeeway:
		return nil, fmt.Errorf("creating transaction token verifier: leeway %v outside [0, %v]",
			cfg.Leeway, MaxLeeway)
	}
	jws, err := jwks.NewVerifier(cfg.Keys, jwks.VerifyOptions{
		Algorithms: algorithms,
		MaxSize:    MaxSize,
		Type:       func(typ string) bool { return typ == Type },
	})
	if err != nil {
		return nil, fmt.Errorf("creating transaction token verifier: %w", err)
	}
	leeway := cfg.Leeway
	if leeway == 0 {
		leeway = DefaultLeeway
	}
	return &Verifier{
		jws:         jws,
		trustDomain: cfg.TrustDomain,
		issuer:      cfg.Issuer,
		leeway:      leeway,
		now:         time.Now,
	}, nil
}

// Verify checks raw as described on [Verifier] and returns the token, to
// read and to forward unchanged. Every error wraps one of the package's
// sentinel errors.
func (v *Verifier) Verify(ctx context.Context, raw string) (*Token, error) {
	return v.VerifyAt(ctx, raw, v.now())
}

// VerifyAt is [Verifier.Verify] with the token's validity judged at the
// instant at rather than now. Events use it: a token travels with the
// event its transaction caused, and must have been valid when that
// transaction committed, however long the event waited to be delivered.
// Only a caller that knows at from a trusted source may use it.
func (v *Verifier) VerifyAt(ctx context.Context, raw string, at time.Time) (*Token, error) {
	payload, err := v.jws.Verify(ctx, raw)
	if err != nil {
		return nil, fmt.Errorf("verifying transaction token: %w", err)
	}
	claims, err := v.checkClaims(payload, at)
	if err != nil {
		return nil, fmt.Errorf("verifying transaction token: %w", err)
	}
	return &Token{Raw: raw, Claims: claims}, nil
}

// checkClaims decodes the verified payload with go-jose's decoder, which
// matches claim names exactly and refuses duplicates, and applies the claim
// rules.
func (v *Verifier) checkClaims(payload []byte, at time.Time) (Claims, error) {
	var wire wireClaims
	if err := josejson.Unmarshal(payload, &wire); err != nil {
		return Claims{}, fmt.Errorf("%w: claims: %w", ErrMalformed, err)
	}
	switch {
	case wire.Expiry == nil:
		return Claims{}, fmt.Errorf("%w: no exp", ErrExpired)
	case *wire.Expiry <= 0:
		return Claims{}, fmt.Errorf("%w: exp %d", ErrExpired, *wire.Expiry)
	case wire.IssuedAt == nil:
		return Claims{}, fmt.Errorf("%w: no iat", ErrLifetime)
	}
	lifetime := wire.Expiry.Time().Sub(wire.IssuedAt.Time())
	if lifetime <= 0 || lifetime > MaxLifetime {
		return Claims{}, fmt.Errorf("%w: %v", ErrLifetime, lifetime)
	}

	expected := jwt.Expected{Issuer: v.issuer, Time: at}
	if err := wire.ValidateWithLeeway(expected, v.leeway); err != nil {
		return Claims{}, validationError(err)
	}
	if len(wire.Audience) != 1 || wire.Audience[0] != v.trustDomain {
		return Claims{}, fmt.Errorf("%w: %q", ErrAudience, []string(wire.Audience))
	}
	switch {
	case wire.Subject == "":
		return Claims{}, fmt.Errorf("%w: sub", ErrClaims)
	case wire.Txn == "":
		return Claims{}, fmt.Errorf("%w: txn", ErrClaims)
	case wire.Workload == "":
		return Claims{}, fmt.Errorf("%w: req_wl", ErrClaims)
	}
	return claimsOf(&wire), nil
}

// validationError maps go-jose's claim errors to the package's.
func validationError(err error) error {
	switch {
	case errors.Is(err, jwt.ErrInvalidIssuer):
		return fmt.Errorf("%w: %w", ErrIssuer, err)
	case errors.Is(err, jwt.ErrExpired):
		return fmt.Errorf("%w: %w", ErrExpired, err)
	case errors.Is(err, jwt.ErrNotValidYet), errors.Is(err, jwt.ErrIssuedInTheFuture):
		return fmt.Errorf("%w: %w", ErrNotYetValid, err)
	}
	return fmt.Errorf("%w: %w", ErrMalformed, err)
}
