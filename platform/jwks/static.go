package jwks

import (
	"context"
	"fmt"

	"github.com/go-jose/go-jose/v4"
)

// Static is a fixed set of public keys, for tests and for deployments that
// pin an issuer's keys in configuration. It is safe for concurrent use.
type Static struct {
	keys map[string]jose.JSONWebKey
}

// NewStatic returns a Static holding the public halves of keys. It panics if
// a key has no kid, two keys share a kid, or a key is symmetric, invalid or
// an RSA key under [MinRSABits]: those are mistakes in the program, not in
// its input, and a weak pinned key must stop the program at start-up rather
// than fail every token later.
func NewStatic(keys ...jose.JSONWebKey) *Static {
	s := &Static{keys: make(map[string]jose.JSONWebKey, len(keys))}
	for i, key := range keys {
		pub := key.Public()
		switch {
		case key.KeyID == "":
			panic(fmt.Sprintf("jwks: static key %d has no kid", i))
		case !pub.Valid():
			panic(fmt.Sprintf("jwks: static key %s is symmetric or invalid", clip(key.KeyID)))
		}
		if err := checkStrength(pub.Key); err != nil {
			panic(fmt.Sprintf("jwks: static key %s: %v", clip(key.KeyID), err))
		}
		if _, dup := s.keys[key.KeyID]; dup {
			panic("jwks: duplicate static kid " + clip(key.KeyID))
		}
		s.keys[key.KeyID] = jose.JSONWebKey{
			Key:       pub.Key,
			KeyID:     key.KeyID,
			Algorithm: key.Algorithm,
			Use:       key.Use,
		}
	}
	return s
}

// Key returns the key named kid, or an error wrapping [ErrUnknownKey].
func (s *Static) Key(_ context.Context, kid string) (jose.JSONWebKey, error) {
	if k, ok := s.keys[kid]; ok {
		return k, nil
	}
	return jose.JSONWebKey{}, fmt.Errorf("%w: kid %s", ErrUnknownKey, clip(kid))
}
