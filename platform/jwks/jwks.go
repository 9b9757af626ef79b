// Package jwks holds the keys that sign and verify the platform's JWTs: a
// signing key set read from a file and reloaded when it changes ([KeySet]),
// a JSON Web Key Set fetched from an issuer ([Remote]), a fixed set
// ([Static]), and a [Verifier] that checks a compact JWS against any of
// them, strictly enough that the token packages only have claims left to
// check.
//
// # Key file
//
// A key file is a JWK Set of private keys plus one member, "active", that
// names the key that signs:
//
//	{"active": "k2", "keys": [{"kid": "k2", ...}, {"kid": "k1", ...}]}
//
// Every key has a unique "kid", "use": "sig" and "alg" ES256 or EdDSA, and
// holds its private half. [LoadKeySet] refuses a file that breaks any of
// these rules, or that holds a weak key, and keeps the last good keys when
// a reload finds a broken file.
//
// Every key in the file is published, whether it signs or not. Keys rotate
// with three edits of the file and no restart:
//
//  1. Add the next key and leave "active" alone. Verifiers learn the new key
//     at their next refresh.
//  2. Once every verifier has it (wait longer than their refresh interval
//     plus [CacheMaxAge]), make it "active". Tokens are now signed with it.
//  3. Once the tokens signed by the previous key have expired, remove that
//     key. Its tokens stop verifying.
//
// A kid names one key for good: a reload that maps a known kid to different
// key material is refused, so that caches keyed by kid, here and in every
// verifier, never mix two keys under one name. [GenerateKey] derives kids
// from the key's thumbprint for that reason.
//
// # Lookups
//
// Keys are found only by kid, only in memory, and only in the set the
// program configured: never from a URL, certificate or key that a token
// names. [Verifier] refuses tokens that carry such header parameters.
package jwks

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/go-jose/go-jose/v4"
)

// Errors returned when a token or a key set is refused. The token packages
// re-export the token errors, so that callers can log why a token failed
// while answering every failure the same way.
var (
	ErrTooLarge      = errors.New("jwks: too large")
	ErrMalformed     = errors.New("jwks: malformed token")
	ErrAlgorithm     = errors.New("jwks: algorithm not allowed")
	ErrHeader        = errors.New("jwks: header parameter not allowed")
	ErrType          = errors.New("jwks: wrong token type")
	ErrUnknownKey    = errors.New("jwks: unknown key")
	ErrSignature     = errors.New("jwks: invalid signature")
	ErrWeakKey       = errors.New("jwks: weak key")
	ErrInvalidKeySet = errors.New("jwks: invalid key set")
	// ErrUnavailable comes with ErrUnknownKey when the key set could not
	// be fetched, so that nobody knows whether the key exists: the token
	// may be good, and is worth checking again later.
	ErrUnavailable = errors.New("jwks: key set unavailable")
)

const (
	// Use is the only key use a signing key may declare.
	Use = "sig"

	// MinRSABits is the smallest RSA modulus accepted anywhere.
	MinRSABits = 2048

	// minHMACBytes is the smallest HMAC key that counts as strong. HMAC is
	// never accepted for tokens; this only sharpens the error message.
	minHMACBytes = 32

	// maxKeyIDLen bounds the kids that are looked up at all. Longer ones
	// cannot name a key and are refused without touching the key source.
	maxKeyIDLen = 256
)

// KeySource finds the public key that a token's "kid" header names.
// Implementations look only in memory and return an error wrapping
// [ErrUnknownKey] when the kid names no key they hold.
type KeySource interface {
	Key(ctx context.Context, kid string) (jose.JSONWebKey, error)
}

// SignerSource supplies the key to sign with now. [KeySet] implements it and
// follows its file's active key.
type SignerSource interface {
	Signer() jose.SigningKey
}

// GenerateKey returns a new private signing key for alg, ES256 or EdDSA,
// ready for [WriteKeySetFile]. Its kid is its RFC 7638 thumbprint, so a kid
// can never be reused for another key.
func GenerateKey(alg jose.SignatureAlgorithm) (jose.JSONWebKey, error) {
	var key crypto.Signer
	var err error
	switch alg {
	case jose.ES256:
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jose.EdDSA:
		_, key, err = ed25519.GenerateKey(rand.Reader)
	default:
		return jose.JSONWebKey{}, fmt.Errorf("generating key: %w: %q", ErrAlgorithm, alg)
	}
	if err != nil {
		return jose.JSONWebKey{}, fmt.Errorf("generating key: %w", err)
	}

	jwk := jose.JSONWebKey{Key: key, Algorithm: string(alg), Use: Use}
	thumb, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return jose.JSONWebKey{}, fmt.Errorf("generating key: %w", err)
	}
	jwk.KeyID = base64.RawURLEncoding.EncodeToString(thumb)
	return jwk, nil
}

// checkStrength refuses key material too weak to trust with any algorithm.
func checkStrength(key any) error {
	switch k := key.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < MinRSABits {
			return fmt.Errorf("%w: RSA key of %d bits, want at least %d",
				ErrWeakKey, k.N.BitLen(), MinRSABits)
		}
	case *rsa.PrivateKey:
		return checkStrength(&k.PublicKey)
	case []byte:
		if len(k) < minHMACBytes {
			return fmt.Errorf("%w: symmetric key of %d bits", ErrWeakKey, 8*len(k))
		}
	}
	return nil
}

// fits reports whether the public key pub can verify signatures made with
// alg. It is what stops algorithm confusion: a key is only ever used with
// the one family and curve it belongs to, and never as an HMAC secret.
func fits(pub any, alg jose.SignatureAlgorithm) error {
	ok := false
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch alg {
		case jose.ES256:
			ok = k.Curve == elliptic.P256()
		case jose.ES384:
			ok = k.Curve == elliptic.P384()
		case jose.ES512:
			ok = k.Curve == elliptic.P521()
		default:
			// No other algorithm verifies with an EC key.
		}
	case ed25519.PublicKey:
		ok = alg == jose.EdDSA && len(k) == ed25519.PublicKeySize
	case *rsa.PublicKey:
		switch alg {
		case jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512:
			if err := checkStrength(k); err != nil {
				return err
			}
			ok = true
		default:
			// No other algorithm verifies with an RSA key.
		}
	}
	if !ok {
		return fmt.Errorf("%w: key of type %T cannot verify %s", ErrAlgorithm, pub, alg)
	}
	return nil
}

// verifiable lists the algorithms a [Verifier] can be configured with: the
// asymmetric ones. HMAC and "none" are absent on purpose.
var verifiable = []jose.SignatureAlgorithm{
	jose.ES256, jose.ES384, jose.ES512, jose.EdDSA,
	jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
}

// clip shortens attacker-controlled text before it goes into an error.
func clip(s string) string {
	const limit = 64
	if len(s) > limit {
		return fmt.Sprintf("%q... (%d bytes)", s[:limit], len(s))
	}
	return fmt.Sprintf("%q", s)
}
