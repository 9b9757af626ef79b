package accesstoken

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	josejson "github.com/go-jose/go-jose/v4/json"
	"github.com/go-jose/go-jose/v4/jwt"

	"example.com/rampart/platform/jwks"
)

// Algorithms an access token may be signed with. ES256 and EdDSA are the
// default; RS256 and PS256 are for external OIDC issuers and must be listed
// explicitly.
var (
	defaultAlgorithms = []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA}
	allowedAlgorithms = []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA, jose.RS256, jose.PS256}
)

// VerifierConfig configures [NewVerifier].
type VerifierConfig struct {
	// Issuer is the expected "iss", compared exactly. Required.
	Issuer string
	// Audience must be one of the token's "aud" values. Required.
	Audience string
	// Keys finds the issuer's keys: a [jwks.Remote] for an external issuer,
	// a [jwks.KeySet] in the issuing process. Required.
	Keys jwks.KeySource
	// Leeway is the clock skew tolerated on "exp", "nbf" and "iat". Zero
	// means DefaultLeeway; more than MaxLeeway is refused.
	Leeway time.Duration
	// Algorithms is the "alg" allowlist. Empty means ES256 and EdDSA; RS256
	// and PS256 may be added for issuers that need them. Others are refused.
	Algorithms []jose.SignatureAlgorithm
	// MaxSize is the longest token looked at, in bytes. Zero means
	// DefaultMaxSize; more than MaxTokenSize is refused.
	MaxSize int
	// Remember is how many verified tokens to remember, the least recently
	// used forgotten first, so that a token seen again costs a hash and a
	// map lookup rather than a signature check. Zero remembers none. Its
	// claims are checked again on every use, and a token whose key left
	// the issuer's key set is verified again, and so refused.
	Remember int
}

// Verifier verifies access tokens. It is safe for concurrent use.
//
// On top of the checks of [jwks.Verifier], which run first and refuse a
// token over the size limit before anything is parsed, a token must have
// "typ" "at+jwt" or "application/at+jwt" in any case ([ErrType]); a numeric,
// positive "exp" no further in the past than the leeway ([ErrExpired]);
// "nbf" and "iat", if present, no further in the future than the leeway
// ([ErrNotYetValid]); an "exp" no further ahead than [MaxLifetime] and the
// leeway ([ErrLifetime]); exactly the configured "iss" ([ErrIssuer]); the
// configured audience among its "aud" values ([ErrAudience]); and a "sub"
// ([ErrSubject]). Claims of the wrong JSON type, and duplicate claims, are
// refused ([ErrMalformed]).
type Verifier struct {
	jws      *jwks.Verifier
	keys     jwks.KeySource
	seen     *memory // nil when nothing is remembered
	issuer   string
	audience string
	leeway   time.Duration
	now      func() time.Time
}

// NewVerifier returns a Verifier, or an error if cfg lacks a required field
// or asks for something unsafe.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	switch {
	case cfg.Issuer == "":
		return nil, errors.New("creating access token verifier: no issuer")
	case cfg.Audience == "":
		return nil, errors.New("creating access token verifier: no audience")
	case cfg.Keys == nil:
		return nil, errors.New("creating access token verifier: no keys")
	case cfg.Leeway < 0 || cfg.Leeway > MaxLeeway:
		return nil, fmt.Errorf("creating access token verifier: leeway %v outside [0, %v]",
			cfg.Leeway, MaxLeeway)
	case cfg.MaxSize < 0 || cfg.MaxSize > MaxTokenSize:
		return nil, fmt.Errorf("creating access token verifier: size limit %d outside [0, %d]",
			cfg.MaxSize, MaxTokenSize)
	case cfg.Remember < 0:
		return nil, fmt.Errorf("creating access token verifier: remember %d tokens", cfg.Remember)
	}
	algs := cfg.Algorithms
	if len(algs) == 0 {
		algs = defaultAlgorithms
	}
	for _, alg := range algs {
		if !slices.Contains(allowedAlgorithms, alg) {
			return nil, fmt.Errorf("creating access token verifier: %w: %q", ErrAlgorithm, alg)
		}
	}
	leeway := cfg.Leeway
	if leeway == 0 {
		leeway = DefaultLeeway
	}
	maxSize := cfg.MaxSize
	if maxSize == 0 {
		maxSize = DefaultMaxSize
	}

	jws, err := jwks.NewVerifier(cfg.Keys, jwks.VerifyOptions{
		Algorithms: algs,
		MaxSize:    maxSize,
		Type:       isAccessTokenType,
	})
	if err != nil {
		return nil, fmt.Errorf("creating access token verifier: %w", err)
	}
	var seen *memory
	if cfg.Remember > 0 {
		if seen, err = newMemory(cfg.Remember); err != nil {
			return nil, fmt.Errorf("creating access token verifier: %w", err)
		}
	}
	return &Verifier{
		jws:      jws,
		keys:     cfg.Keys,
		seen:     seen,
		issuer:   cfg.Issuer,
		audience: cfg.Audience,
		leeway:   leeway,
		now:      time.Now,
	}, nil
}

// isAccessTokenType compares "typ" as RFC 7515 section 4.1.9 and RFC 9068
// section 4 ask: media type names are case-insensitive and the
// "application/" prefix may be left out.
func isAccessTokenType(typ string) bool {
	return strings.EqualFold(typ, Type) || strings.EqualFold(typ, "application/"+Type)
}

// Verify checks raw as described on [Verifier] and returns its claims. Every
// error wraps one of the package's sentinel errors.
func (v *Verifier) Verify(ctx context.Context, raw string) (*Claims, error) {
	var d digest
	if v.seen != nil {
		d = digestOf(raw)
		if seen, ok := v.seen.recall(ctx, v.keys, d); ok {
			claims, err := v.checkClaims(&seen.claims)
			if err != nil {
				v.seen.forget(d)
				return nil, fmt.Errorf("verifying access token: %w", err)
			}
			return claims, nil
		}
	}

	payload, key, err := v.jws.VerifyKey(ctx, raw)
	if err != nil {
		return nil, fmt.Errorf("verifying access token: %w", err)
	}
	// go-jose's decoder matches claim names exactly and refuses
	// duplicates.
	var wire wireClaims
	if err := josejson.Unmarshal(payload, &wire); err != nil {
		return nil, fmt.Errorf("verifying access token: %w: claims: %w", ErrMalformed, err)
	}
	claims, err := v.checkClaims(&wire)
	if err != nil {
		return nil, fmt.Errorf("verifying access token: %w", err)
	}
	if v.seen != nil {
		v.seen.remember(d, &seenToken{claims: wire, kid: key.KeyID, key: key.Key})
	}
	return claims, nil
}

// checkClaims applies the claim rules to decoded claims, which it does not
// change, and returns a copy of them for the caller.
func (v *Verifier) checkClaims(wire *wireClaims) (*Claims, error) {
	if wire.Expiry == nil {
		return nil, fmt.Errorf("%w: no exp", ErrExpired)
	}
	if *wire.Expiry <= 0 {
		return nil, fmt.Errorf("%w: exp %d", ErrExpired, *wire.Expiry)
	}
	expected := jwt.Expected{
		Issuer:      v.issuer,
		AnyAudience: jwt.Audience{v.audience},
		Time:        v.now(),
	}
	if err := wire.ValidateWithLeeway(expected, v.leeway); err != nil {
		return nil, validationError(err)
	}
	if exp := wire.Expiry.Time(); exp.After(expected.Time.Add(MaxLifetime + v.leeway)) {
		return nil, fmt.Errorf("%w: exp %s", ErrLifetime, exp.UTC().Format(time.RFC3339))
	}
	if wire.Subject == "" {
		return nil, ErrSubject
	}
	claims := claimsOf(wire)
	return &claims, nil
}

// validationError maps go-jose's claim errors to the package's.
func validationError(err error) error {
	switch {
	case errors.Is(err, jwt.ErrInvalidIssuer):
		return fmt.Errorf("%w: %w", ErrIssuer, err)
	case errors.Is(err, jwt.ErrInvalidAudience):
		return fmt.Errorf("%w: %w", ErrAudience, err)
	case errors.Is(err, jwt.ErrExpired):
		return fmt.Errorf("%w: %w", ErrExpired, err)
	case errors.Is(err, jwt.ErrNotValidYet), errors.Is(err, jwt.ErrIssuedInTheFuture):
		return fmt.Errorf("%w: %w", ErrNotYetValid, err)
	}
	return fmt.Errorf("%w: %w", ErrMalformed, err)
}
