package jwks_test

import (
	"errors"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"example.com/rampart/platform/jwks"
)

func TestStatic(t *testing.T) {
	t.Parallel()
	key := generate(t, jose.EdDSA)
	s := jwks.NewStatic(key)
	got, err := s.Key(t.Context(), key.KeyID)
	if err != nil {
		t.Fatal(err)
	}
	if !got.IsPublic() || got.KeyID != key.KeyID || got.Algorithm != "EdDSA" {
		t.Errorf("Key() = %+v, want the public half", got)
	}
	if _, err := s.Key(t.Context(), "other"); !errors.Is(err, jwks.ErrUnknownKey) {
		t.Errorf("Key(unknown) error = %v, want ErrUnknownKey", err)
	}
}

func TestNewStaticAcceptsRSA2048(t *testing.T) {
	t.Parallel()
	s := jwks.NewStatic(jose.JSONWebKey{Key: rsaKey(t, 2048).Public(), KeyID: "rsa"})
	if _, err := s.Key(t.Context(), "rsa"); err != nil {
		t.Errorf("Key() error = %v", err)
	}
}

func TestNewStaticPanics(t *testing.T) {
	t.Parallel()
	key := generate(t, jose.ES256)
	noKID := key
	noKID.KeyID = ""
	tests := map[string][]jose.JSONWebKey{
		"no kid":        {noKID},
		"duplicate kid": {key, key},
		"symmetric":     {{Key: make([]byte, 32), KeyID: "hmac"}},
		"RSA 1024":      {{Key: rsaKey(t, 1024).Public(), KeyID: "weak"}},
		"no key":        {{KeyID: "empty"}},
	}
	for name, keys := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			defer func() {
				if recover() == nil {
					t.Error("NewStatic() did not panic")
				}
			}()
			jwks.NewStatic(keys...)
		})
	}
}
