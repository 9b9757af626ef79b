package userrpc

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"strings"
)

// A refresh token is "rt_" and 32 random bytes in unpadded base64url: 43
// characters. The prefix makes a leaked token easy to recognise, by people
// and by secret scanners. Only its SHA-256 hash is stored; the token is
// long and random, so a fast hash is enough to make the stored value
// useless to whoever reads the database.
const (
	refreshTokenPrefix = "rt_"
	refreshTokenBytes  = 32
)

var refreshTokenEncoding = base64.RawURLEncoding.Strict()

// newRefreshToken returns a new refresh token and the hash to store.
func newRefreshToken() (string, [sha256.Size]byte) {
	b := make([]byte, refreshTokenBytes)
	// crypto/rand.Read never fails: the runtime aborts the program rather
	// than hand out predictable bytes.
	_, _ = rand.Read(b)
	token := refreshTokenPrefix + refreshTokenEncoding.EncodeToString(b)
	return token, sha256.Sum256([]byte(token))
}

// parseRefreshToken returns the hash of token if it has exactly the form
// newRefreshToken gives, so that nothing else reaches the database.
func parseRefreshToken(token string) ([sha256.Size]byte, bool) {
	body, ok := strings.CutPrefix(token, refreshTokenPrefix)
	if !ok || len(body) != refreshTokenEncoding.EncodedLen(refreshTokenBytes) {
		return [sha256.Size]byte{}, false
	}
	// The decoder skips line breaks, which leaves fewer bytes.
	b, err := refreshTokenEncoding.DecodeString(body)
	if err != nil || len(b) != refreshTokenBytes {
		return [sha256.Size]byte{}, false
	}
	return sha256.Sum256([]byte(token)), true
}
