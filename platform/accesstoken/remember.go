package accesstoken

import (
	"context"
	"crypto"
	"crypto/sha256"

	lru "github.com/hashicorp/golang-lru/v2"

	"example.com/rampart/platform/jwks"
)

// seenToken is what a [Verifier] remembers of a token whose signature it
// verified: the claims as decoded, and the key that verified them.
type seenToken struct {
	claims wireClaims
	kid    string
	key    crypto.PublicKey
}

// memory remembers verified tokens by the SHA-256 of their exact text,
// so that a token presented again, as a client presents its access token
// on every call, skips the signature check and the decoding. The claims
// are checked again on every use, against the clock of that use.
type memory struct {
	tokens *lru.Cache[digest, *seenToken]
}

func newMemory(size int) (*memory, error) {
	tokens, err := lru.New[digest, *seenToken](size)
	if err != nil {
		return nil, err
	}
	return &memory{tokens: tokens}, nil
}

// digest is the key a token is remembered by.
type digest = [sha256.Size]byte

func digestOf(raw string) digest { return sha256.Sum256([]byte(raw)) }

// recall returns what was remembered of the token of digest d, if
// anything, and if the key that verified it is still the issuer's key
// under the same ID. A token whose key was withdrawn or replaced is
// forgotten, so that it is verified again, and refused, like any other.
func (m *memory) recall(ctx context.Context, keys jwks.KeySource, d digest) (*seenToken, bool) {
	seen, ok := m.tokens.Get(d)
	if !ok {
		return nil, false
	}
	current, err := keys.Key(ctx, seen.kid)
	if err != nil || !samePublicKey(current.Key, seen.key) {
		m.tokens.Remove(d)
		return nil, false
	}
	return seen, true
}

func (m *memory) remember(d digest, seen *seenToken) { m.tokens.Add(d, seen) }

func (m *memory) forget(d digest) { m.tokens.Remove(d) }

// samePublicKey reports whether a and b are the same public key. Every key
// type the platform verifies with can compare itself; any other is never
// the same, so that a token it verified is verified again.
func samePublicKey(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(x crypto.PublicKey) bool })
	return ok && b != nil && k.Equal(b)
}
