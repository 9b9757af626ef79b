package accesstoken_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"example.com/rampart/platform/accesstoken"
	"example.com/rampart/platform/jwks"
	"example.com/rampart/platform/jwks/jwkstest"
)

// mutableKeys is an issuer's key set that a test rotates under the
// verifier's feet.
type mutableKeys struct {
	mu   sync.Mutex
	keys map[string]jose.JSONWebKey
}

func (m *mutableKeys) Key(_ context.Context, kid string) (jose.JSONWebKey, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k, ok := m.keys[kid]
	if !ok {
		return jose.JSONWebKey{}, jwks.ErrUnknownKey
	}
	return k, nil
}

func (m *mutableKeys) set(kid string, key *jose.JSONWebKey) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if key == nil {
		delete(m.keys, kid)
		return
	}
	pub := key.Public()
	pub.KeyID = kid
	m.keys[kid] = pub
}

// rememberEnv is a verifier that remembers tokens, a key it trusts, and a
// way to sign tokens with it.
type rememberEnv struct {
	keys     *mutableKeys
	key      jose.JSONWebKey
	verifier *accesstoken.Verifier
}

func newRememberEnv(t *testing.T, remember int) *rememberEnv {
	t.Helper()
	key, err := jwks.GenerateKey(jose.ES256)
	if err != nil {
		t.Fatal(err)
	}
	keys := &mutableKeys{keys: map[string]jose.JSONWebKey{}}
	keys.set(key.KeyID, &key)
	v := newVerifier(t, accesstoken.VerifierConfig{Keys: keys, Remember: remember})
	return &rememberEnv{keys: keys, key: key, verifier: v}
}

func (e *rememberEnv) token(t *testing.T, claims map[string]any) string {
	t.Helper()
	header := map[string]any{"alg": "ES256", "kid": e.key.KeyID, "typ": "at+jwt"}
	return jwkstest.Sign(jose.ES256, e.key, encode(t, header, nil), encode(t, validClaims(), claims))
}

// verifyTwice verifies raw, which must pass and be remembered, then runs
// change and verifies raw again, returning that second result's error.
func (e *rememberEnv) verifyTwice(t *testing.T, raw string, change func()) error {
	t.Helper()
	if _, err := e.verifier.Verify(t.Context(), raw); err != nil {
		t.Fatalf("first verification: %v", err)
	}
	if got := accesstoken.Remembered(e.verifier); got != 1 {
		t.Fatalf("%d tokens remembered after one, want 1", got)
	}
	change()
	_, err := e.verifier.Verify(t.Context(), raw)
	return err
}

// TestRememberedTokenIsCheckedAgain: remembering a token saves its
// signature check, never its other checks. Each case changes the world
// after a token was verified and remembered, and the same token must then
// be refused.
func TestRememberedTokenIsCheckedAgain(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		change func(*rememberEnv)
		want   error
	}{
		{"expired since", func(e *rememberEnv) {
			later := time.Now().Add(10 * time.Minute)
			accesstoken.SetClock(e.verifier, func() time.Time { return later })
		}, accesstoken.ErrExpired},
		{"key withdrawn", func(e *rememberEnv) {
			e.keys.set(e.key.KeyID, nil)
		}, jwks.ErrUnknownKey},
		{"another key under the same kid", func(e *rememberEnv) {
			other, err := jwks.GenerateKey(jose.ES256)
			if err != nil {
				panic(err)
			}
			e.keys.set(e.key.KeyID, &other)
		}, jwks.ErrSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newRememberEnv(t, 10)
			raw := e.token(t, nil)
			err := e.verifyTwice(t, raw, func() { tt.change(e) })
			if !errors.Is(err, tt.want) {
				t.Fatalf("second verification: got %v, want %v", err, tt.want)
			}
			if got := accesstoken.Remembered(e.verifier); got != 0 {
				t.Errorf("%d tokens remembered after the refusal, want 0", got)
			}
		})
	}
}

// TestRememberedTokenLendsNothing: a token that differs from a remembered
// one only in its signature, or in its claims, is verified on its own.
func TestRememberedTokenLendsNothing(t *testing.T) {
	t.Parallel()
	e := newRememberEnv(t, 10)
	raw := e.token(t, nil)
	if _, err := e.verifier.Verify(t.Context(), raw); err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(raw, ".")

	other, err := jwks.GenerateKey(jose.ES256)
	if err != nil {
		t.Fatal(err)
	}
	resigned := strings.Split(jwkstest.Sign(jose.ES256, other, encode(t, map[string]any{
		"alg": "ES256", "kid": e.key.KeyID, "typ": "at+jwt",
	}, nil), encode(t, validClaims(), nil)), ".")
	admin := strings.Split(e.token(t, map[string]any{"sub": "admin"}), ".")

	forged := map[string]string{
		"signature of another key": parts[0] + "." + parts[1] + "." + resigned[2],
		"claims of another token":  parts[0] + "." + admin[1] + "." + parts[2],
		"signature cut":            parts[0] + "." + parts[1] + "." + parts[2][:len(parts[2])-4],
	}
	for name, token := range forged {
		if _, err := e.verifier.Verify(t.Context(), token); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := e.verifier.Verify(t.Context(), raw); err != nil {
		t.Errorf("the remembered token, after the forgeries: %v", err)
	}
}

// TestRememberIsBounded: the verifier remembers at most the number of
// tokens asked, and none when asked for none.
func TestRememberIsBounded(t *testing.T) {
	t.Parallel()
	for _, limit := range []int{0, 3} {
		e := newRememberEnv(t, limit)
		for i := range 5 {
			raw := e.token(t, map[string]any{"jti": "id-" + string(rune('a'+i))})
			if _, err := e.verifier.Verify(t.Context(), raw); err != nil {
				t.Fatal(err)
			}
		}
		if got := accesstoken.Remembered(e.verifier); got != limit {
			t.Errorf("remember %d: %d tokens remembered after 5, want %d", limit, got, limit)
		}
	}
}
