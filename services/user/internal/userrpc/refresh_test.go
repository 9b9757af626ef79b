package userrpc

import (
	"crypto/sha256"
	"testing"
)

func TestNewRefreshToken(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 100 {
		token, hash := newRefreshToken()
		if seen[token] {
			t.Fatalf("token %q issued twice", token)
		}
		seen[token] = true
		parsed, ok := parseRefreshToken(token)
		if !ok {
			t.Fatalf("parseRefreshToken(%q) refused a new token", token)
		}
		if parsed != hash || hash != sha256.Sum256([]byte(token)) {
			t.Fatalf("hash of %q differs between issue and parse", token)
		}
	}
}

// FuzzParseRefreshToken checks that a refresh token is accepted only in
// the exact form newRefreshToken gives: the prefix and the canonical
// base64url of 32 bytes.
func FuzzParseRefreshToken(f *testing.F) {
	token, _ := newRefreshToken()
	f.Add(token)
	f.Add("rt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	f.Add("rt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB")
	f.Add("rt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
	f.Fuzz(func(t *testing.T, token string) {
		hash, ok := parseRefreshToken(token)
		if !ok {
			return
		}
		body := token[len(refreshTokenPrefix):]
		b, err := refreshTokenEncoding.DecodeString(body)
		prefix := token[:len(refreshTokenPrefix)]
		if prefix != refreshTokenPrefix || err != nil || len(b) != refreshTokenBytes {
			t.Fatalf("accepted %q, which is not a prefix and 32 bytes", token)
		}
		if again := refreshTokenPrefix + refreshTokenEncoding.EncodeToString(b); again != token {
			t.Fatalf("accepted %q, which encodes as %q", token, again)
		}
		if hash != sha256.Sum256([]byte(token)) {
			t.Fatalf("hash of %q is not its SHA-256", token)
		}
	})
}
