// Package jwkstest provides keys and hand-made tokens for tests of code that
// signs or verifies JWTs.
package jwkstest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"fmt"
	"math/big"
	"path/filepath"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"example.com/rampart/platform/jwks"
)

// KeySet writes a key file with a new key per algorithm in algs (ES256 when
// empty), the first one active, and loads it for the duration of the test.
// It returns the set and its private keys, in order.
func KeySet(tb testing.TB, algs ...jose.SignatureAlgorithm) (*jwks.KeySet, []jose.JSONWebKey) {
	tb.Helper()
	if len(algs) == 0 {
		algs = []jose.SignatureAlgorithm{jose.ES256}
	}
	keys := make([]jose.JSONWebKey, len(algs))
	for i, alg := range algs {
		key, err := jwks.GenerateKey(alg)
		if err != nil {
			tb.Fatal(err)
		}
		keys[i] = key
	}
	path := filepath.Join(tb.TempDir(), "keys.json")
	if err := jwks.WriteKeySetFile(path, keys...); err != nil {
		tb.Fatal(err)
	}
	set, err := jwks.LoadKeySet(tb.Context(), path, jwks.KeySetOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	return set, keys
}

// Sign returns the compact JWS of header and payload, both taken verbatim,
// signed with key by alg whatever the header says. key is a private key, a
// [jose.JSONWebKey] holding one, or a []byte HMAC secret. Sign lets tests
// build the tokens that no well-behaved signer would: unknown header
// parameters, lying algorithms, duplicate members. It panics on a key that
// does not fit alg.
func Sign(alg jose.SignatureAlgorithm, key any, header, payload string) string {
	if jwk, ok := key.(jose.JSONWebKey); ok {
		key = jwk.Key
	}
	enc := base64.RawURLEncoding
	input := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload))
	return input + "." + enc.EncodeToString(signature(alg, key, []byte(input)))
}

func signature(alg jose.SignatureAlgorithm, key any, input []byte) []byte {
	if alg == jose.EdDSA {
		return ed25519.Sign(keyFor[ed25519.PrivateKey](alg, key), input)
	}
	hash := map[string]crypto.Hash{
		"256": crypto.SHA256, "384": crypto.SHA384, "512": crypto.SHA512,
	}[string(alg[2:])]
	if hash == 0 {
		panic(fmt.Sprintf("jwkstest: unsupported algorithm %q", alg))
	}
	h := hash.New()
	h.Write(input)
	digest := h.Sum(nil)

	var sig []byte
	var err error
	switch alg[:2] {
	case "HS":
		mac := hmac.New(hash.New, keyFor[[]byte](alg, key))
		mac.Write(input)
		return mac.Sum(nil)
	case "RS":
		sig, err = rsa.SignPKCS1v15(rand.Reader, keyFor[*rsa.PrivateKey](alg, key), hash, digest)
	case "PS":
		sig, err = rsa.SignPSS(rand.Reader, keyFor[*rsa.PrivateKey](alg, key), hash, digest, nil)
	case "ES":
		k := keyFor[*ecdsa.PrivateKey](alg, key)
		var r, s *big.Int
		r, s, err = ecdsa.Sign(rand.Reader, k, digest)
		if err == nil {
			size := (k.Curve.Params().BitSize + 7) / 8
			sig = make([]byte, 2*size)
			r.FillBytes(sig[:size])
			s.FillBytes(sig[size:])
		}
	default:
		panic(fmt.Sprintf("jwkstest: unsupported algorithm %q", alg))
	}
	if err != nil {
		panic(fmt.Sprintf("jwkstest: signing: %v", err))
	}
	return sig
}

// keyFor returns key as the type K that alg signs with, and panics if it is
// another type.
func keyFor[K any](alg jose.SignatureAlgorithm, key any) K {
	k, ok := key.(K)
	if !ok {
		panic(fmt.Sprintf("jwkstest: %s needs a %T key, not %T", alg, k, key))
	}
	return k
}
