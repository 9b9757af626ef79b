// Package txntoken mints and verifies transaction tokens: short-lived JWTs,
// shaped after the IETF OAuth Transaction Tokens draft, that the gateway
// issues for each external request and that every downstream hop verifies
// and forwards unchanged, over gRPC metadata and NATS headers alike.
//
// A transaction token replaces the end user's access token inside the
// system, so that no service ever holds a bearer token valid at the edge. It
// names the user (or says the caller is anonymous), carries only the scopes
// the called method needs, and binds the request context and, where the
// method declares one, immutable transaction context.
package txntoken

import (
	"context"
	"slices"
	"time"
)

const (
	// MetadataKey is the gRPC metadata key that carries the token.
	MetadataKey = "txn-token"
	// HeaderKey is the NATS message header that carries the token.
	HeaderKey = "Txn-Token"
	// Type is the JWT "typ" header of a transaction token.
	Type = "txntoken+jwt"
	// Anonymous is the subject of a token minted for a caller that has not
	// signed in.
	Anonymous = "anonymous"
	// MaxLifetime is the longest lifetime a token may have.
	MaxLifetime = 5 * time.Minute
)

// Claims are the verified contents of a transaction token.
type Claims struct {
	// ID is the unique transaction id ("txn").
	ID string
	// Subject is the end user's id, or [Anonymous] ("sub").
	Subject string
	// SessionID is the end user's session, empty when anonymous ("sid").
	SessionID string
	// Scopes are the scopes granted for this transaction ("scope").
	Scopes []string
	// Workload is the SPIFFE ID of the workload that requested the token,
	// the gateway ("req_wl").
	Workload string
	// ClientIP is the address the external request came from ("rctx").
	ClientIP string
	// Context is the immutable transaction context ("tctx"): request fields
	// that the method's policy binds to the transaction.
	Context map[string]string
	// IssuedAt and Expiry bound the token's validity ("iat", "exp").
	IssuedAt, Expiry time.Time
}

// User reports whether the token acts for a signed-in end user.
func (c *Claims) User() bool { return c.Subject != "" && c.Subject != Anonymous }

// HasScopes reports whether every one of scopes was granted.
func (c *Claims) HasScopes(scopes ...string) bool {
	for _, s := range scopes {
		if !slices.Contains(c.Scopes, s) {
			return false
		}
	}
	return true
}

// Token is a verified transaction token: its claims and the compact
// serialization to forward, unchanged, to the next hop.
type Token struct {
	Raw    string
	Claims Claims
}

type contextKey struct{}

// NewContext returns a context that carries tok, for handlers to read and
// for clients to forward.
func NewContext(ctx context.Context, tok *Token) context.Context {
	return context.WithValue(ctx, contextKey{}, tok)
}

// FromContext returns the token a context carries, if any.
func FromContext(ctx context.Context) (*Token, bool) {
	tok, ok := ctx.Value(contextKey{}).(*Token)
	return tok, ok && tok != nil
}
