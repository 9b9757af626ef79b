package jwks

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/go-jose/go-jose/v4"
	josejson "github.com/go-jose/go-jose/v4/json"
)

// VerifyOptions configures [NewVerifier]. Every field is required: a check
// that is not configured would be a check that is not made.
type VerifyOptions struct {
	// Algorithms lists the accepted "alg" values. Only asymmetric
	// algorithms may be listed; HMAC and "none" are refused.
	Algorithms []jose.SignatureAlgorithm
	// MaxSize is the longest token, in bytes, that is looked at.
	MaxSize int
	// Type reports whether a "typ" header value is acceptable.
	Type func(typ string) bool
}

// Verifier checks compact JWS tokens against a [KeySource]. It is safe for
// concurrent use.
//
// Before anything is decoded, a token longer than MaxSize is refused
// ([ErrTooLarge]), and so is anything but three segments of canonical
// base64url, the first two non-empty ([ErrMalformed]). The header may hold
// only "alg", "kid" and "typ": any other parameter, including "jku", "x5u",
// "jwk", "x5c", "crit" and "b64", is refused ([ErrHeader]), so no key is
// ever taken from the token itself. "alg" must be listed ([ErrAlgorithm]), "typ" must
// pass the Type check ([ErrType]), and "kid" must name a key of the key
// source ([ErrUnknownKey]) whose type and curve fit "alg" ([ErrAlgorithm])
// and that is not weak ([ErrWeakKey]). Only then does go-jose, restricted to
// that one algorithm, check the signature ([ErrSignature]).
type Verifier struct {
	keys    KeySource
	maxSize int
	typeOK  func(string) bool
	// allowed maps each accepted algorithm to a one-element list, the form
	// go-jose takes, built once rather than per token.
	allowed map[string][]jose.SignatureAlgorithm
}

// NewVerifier returns a Verifier that finds keys in keys.
func NewVerifier(keys KeySource, opts VerifyOptions) (*Verifier, error) {
	switch {
	case keys == nil:
		return nil, errors.New("creating verifier: no key source")
	case len(opts.Algorithms) == 0:
		return nil, errors.New("creating verifier: no algorithms")
	case opts.MaxSize <= 0:
		return nil, errors.New("creating verifier: no size limit")
	case opts.Type == nil:
		return nil, errors.New("creating verifier: no type check")
	}
	allowed := make(map[string][]jose.SignatureAlgorithm, len(opts.Algorithms))
	for _, alg := range opts.Algorithms {
		if !slices.Contains(verifiable, alg) {
			return nil, fmt.Errorf("creating verifier: %w: %q", ErrAlgorithm, alg)
		}
		allowed[string(alg)] = []jose.SignatureAlgorithm{alg}
	}
	return &Verifier{keys: keys, maxSize: opts.MaxSize, typeOK: opts.Type, allowed: allowed}, nil
}

// Verify checks raw as described on [Verifier] and returns its payload. The
// payload is authentic but its claims are unchecked: that is the caller's
// job.
func (v *Verifier) Verify(ctx context.Context, raw string) ([]byte, error) {
	payload, _, err := v.VerifyKey(ctx, raw)
	return payload, err
}

// VerifyKey is [Verifier.Verify] that also returns the key that verified
// the signature, for a caller that remembers tokens and must notice when
// their key is withdrawn.
func (v *Verifier) VerifyKey(ctx context.Context, raw string) ([]byte, jose.JSONWebKey, error) {
	var none jose.JSONWebKey
	if len(raw) > v.maxSize {
		return nil, none, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(raw), v.maxSize)
	}
	header, ok := splitCompact(raw)
	if !ok {
		return nil, none, fmt.Errorf("%w: not three base64url segments", ErrMalformed)
	}
	alg, kid, err := v.checkHeader(header)
	if err != nil {
		return nil, none, err
	}

	key, err := v.keys.Key(ctx, kid)
	if err != nil {
		if !errors.Is(err, ErrUnknownKey) {
			err = fmt.Errorf("%w: %w", ErrUnknownKey, err)
		}
		return nil, none, err
	}
	if key.Algorithm != "" && key.Algorithm != alg {
		return nil, none, fmt.Errorf("%w: token uses %s, key %s is for %s",
			ErrAlgorithm, clip(alg), clip(kid), key.Algorithm)
	}
	if key.Use != "" && key.Use != Use {
		return nil, none, fmt.Errorf("%w: key %s is not a signing key", ErrUnknownKey, clip(kid))
	}
	if err := fits(key.Key, jose.SignatureAlgorithm(alg)); err != nil {
		return nil, none, err
	}

	jws, err := jose.ParseSignedCompact(raw, v.allowed[alg])
	if err != nil {
		return nil, none, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	payload, err := jws.Verify(key.Key)
	if err != nil {
		return nil, none, fmt.Errorf("%w: %w", ErrSignature, err)
	}
	return payload, key, nil
}

// checkHeader decodes the protected header and applies the header rules. It
// uses go-jose's JSON decoder, as go-jose itself does afterwards, so that
// both read the header the same way: member names match exactly and
// duplicates are refused.
func (v *Verifier) checkHeader(encoded string) (alg, kid string, err error) {
	data, err := base64.RawURLEncoding.DecodeString(encoded)
	if err != nil {
		return "", "", fmt.Errorf("%w: header: %w", ErrMalformed, err)
	}
	var header map[string]any
	if err := josejson.Unmarshal(data, &header); err != nil || header == nil {
		return "", "", fmt.Errorf("%w: header is not a JSON object", ErrMalformed)
	}

	alg, ok := header["alg"].(string)
	if !ok {
		return "", "", fmt.Errorf("%w: no alg", ErrAlgorithm)
	}
	if _, ok := v.allowed[alg]; !ok {
		return "", "", fmt.Errorf("%w: %s", ErrAlgorithm, clip(alg))
	}
	for name := range header {
		if name != "alg" && name != "kid" && name != "typ" {
			return "", "", fmt.Errorf("%w: %s", ErrHeader, clip(name))
		}
	}
	typ, ok := header["typ"].(string)
	if !ok || !v.typeOK(typ) {
		return "", "", fmt.Errorf("%w: typ %s", ErrType, clip(fmt.Sprint(header["typ"])))
	}
	kid, ok = header["kid"].(string)
	if !ok || kid == "" || len(kid) > maxKeyIDLen {
		return "", "", fmt.Errorf("%w: kid %s", ErrUnknownKey, clip(fmt.Sprint(header["kid"])))
	}
	return alg, kid, nil
}

// splitCompact reports whether raw is three segments of canonical unpadded
// base64url, and returns the first. Header and payload must not be empty; an
// empty signature passes here so that an "alg": "none" token is refused for
// its algorithm, which says more in an audit log than "malformed".
// splitCompact allocates nothing and reads each byte once, so that refusing
// junk costs little. Canonical means the unused low bits of the last
// character are zero: otherwise one token would have many spellings.
func splitCompact(raw string) (header string, ok bool) {
	start, segment := 0, 0
	for i := 0; i <= len(raw); i++ {
		if i < len(raw) && raw[i] != '.' {
			if base64URL[raw[i]] < 0 {
				return "", false
			}
			continue
		}
		if !canonical(raw[start:i]) || (segment < 2 && i == start) {
			return "", false
		}
		if segment == 0 {
			header = raw[:i]
		}
		segment++
		if segment > 3 {
			return "", false
		}
		start = i + 1
	}
	return header, segment == 3
}

// canonical reports whether seg, already known to hold only base64url
// characters, is a canonical encoding.
func canonical(seg string) bool {
	if len(seg) == 0 {
		return true
	}
	last := base64URL[seg[len(seg)-1]]
	switch len(seg) % 4 {
	case 1:
		return false
	case 2:
		return last&0x0f == 0
	case 3:
		return last&0x03 == 0
	}
	return true
}

// base64URL maps each byte to its base64url value, or -1.
var base64URL = func() (t [256]int8) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for i := range t {
		t[i] = -1
	}
	for i := range len(alphabet) {
		t[alphabet[i]] = int8(i)
	}
	return t
}()

// TokenSigner signs payloads as compact JWS with the current key of a
// [SignerSource] and a fixed "typ" header. The header holds exactly "alg",
// "kid" and "typ". It builds one go-jose signer per key and keeps it while
// the key stays active, which relies on a kid always naming the same key,
// as [KeySet] guarantees. It is safe for concurrent use.
type TokenSigner struct {
	src   SignerSource
	typ   string
	cache atomic.Pointer[cachedSigner]
}

type cachedSigner struct {
	kid    string
	alg    jose.SignatureAlgorithm
	signer jose.Signer
}

// NewTokenSigner returns a TokenSigner for keys from src, with typ as the
// "typ" header.
func NewTokenSigner(src SignerSource, typ string) *TokenSigner {
	return &TokenSigner{src: src, typ: typ}
}

// Sign signs payload and returns the compact serialization.
func (s *TokenSigner) Sign(payload []byte) (string, error) {
	signer, err := s.signer()
	if err != nil {
		return "", fmt.Errorf("signing token: %w", err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("signing token: %w", err)
	}
	return jws.CompactSerialize()
}

func (s *TokenSigner) signer() (jose.Signer, error) {
	key := s.src.Signer()
	jwk, ok := key.Key.(jose.JSONWebKey)
	if !ok || jwk.KeyID == "" {
		return nil, fmt.Errorf("%w: signing key has no kid", ErrUnknownKey)
	}
	if c := s.cache.Load(); c != nil && c.kid == jwk.KeyID && c.alg == key.Algorithm {
		return c.signer, nil
	}
	if !slices.Contains(verifiable, key.Algorithm) {
		return nil, fmt.Errorf("%w: %q", ErrAlgorithm, key.Algorithm)
	}
	signer, err := jose.NewSigner(key, (&jose.SignerOptions{}).WithType(jose.ContentType(s.typ)))
	if err != nil {
		return nil, err
	}
	s.cache.Store(&cachedSigner{kid: jwk.KeyID, alg: key.Algorithm, signer: signer})
	return signer, nil
}
