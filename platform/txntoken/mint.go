package txntoken

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/uuid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"example.com/rampart/platform/jwks"
)

// DefaultLifetime is how long a minted token lives unless configured.
const DefaultLifetime = time.Minute

// wireClaims is the JSON form of a transaction token's claims.
type wireClaims struct {
	jwt.Claims
	Txn       string            `json:"txn,omitempty"`
	SessionID string            `json:"sid,omitempty"`
	Scope     string            `json:"scope,omitempty"`
	Workload  string            `json:"req_wl,omitempty"`
	Request   *requestContext   `json:"rctx,omitempty"`
	Context   map[string]string `json:"tctx,omitempty"`
}

// requestContext is the "rctx" claim: facts about the external request.
type requestContext struct {
	ClientIP string `json:"req_ip,omitempty"`
}

// MinterConfig configures [NewMinter].
type MinterConfig struct {
	// Signer supplies the signing key; a [jwks.KeySet] follows key
	// rotation. Required.
	Signer jwks.SignerSource
	// TrustDomain is the audience of every token ("aud"). Required.
	TrustDomain string
	// Workload is the SPIFFE ID of the workload that mints, the gateway
	// ("req_wl"). Required.
	Workload string
	// Issuer names the minting service ("iss"). Required.
	Issuer string
	// Lifetime is how long a token is valid. Zero means DefaultLifetime;
	// more than MaxLifetime is refused.
	Lifetime time.Duration
}

// Minter mints transaction tokens. It is safe for concurrent use.
type Minter struct {
	trustDomain string
	workload    string
	issuer      string
	lifetime    time.Duration
	signer      *jwks.TokenSigner
	now         func() time.Time
}

// Request describes the transaction a token is minted for.
type Request struct {
	// Subject is the end user's id; empty means [Anonymous].
	Subject string
	// SessionID is the end user's session. An anonymous caller has none.
	SessionID string
	// Scopes are the scopes granted for this transaction: the ones the
	// called method needs, not everything the user holds. Each must be a
	// valid OAuth scope token.
	Scopes []string
	// ClientIP is the address the external request came from, if known.
	ClientIP string
	// Context is the immutable transaction context: request fields that the
	// method's policy binds to the transaction. Keys must not be empty.
	Context map[string]string
}

// NewMinter returns a Minter, or an error if cfg lacks a required field,
// names a workload that is not a SPIFFE ID, or asks for a lifetime over
// [MaxLifetime].
func NewMinter(cfg MinterConfig) (*Minter, error) {
	switch {
	case cfg.Signer == nil:
		return nil, errors.New("creating transaction token minter: no signer")
	case cfg.TrustDomain == "":
		return nil, errors.New("creating transaction token minter: no trust domain")
	case cfg.Issuer == "":
		return nil, errors.New("creating transaction token minter: no issuer")
	case cfg.Lifetime < 0 || cfg.Lifetime > MaxLifetime:
		return nil, fmt.Errorf("creating transaction token minter: lifetime %v outside (0, %v]",
			cfg.Lifetime, MaxLifetime)
	}
	if _, err := spiffeid.FromString(cfg.Workload); err != nil {
		return nil, fmt.Errorf("creating transaction token minter: workload: %w", err)
	}
	lifetime := cfg.Lifetime
	if lifetime == 0 {
		lifetime = DefaultLifetime
	}
	return &Minter{
		trustDomain: cfg.TrustDomain,
		workload:    cfg.Workload,
		issuer:      cfg.Issuer,
		lifetime:    lifetime,
		signer:      jwks.NewTokenSigner(cfg.Signer, Type),
		now:         time.Now,
	}, nil
}

// Mint returns a signed token for req. It refuses a request that would make
// a token no [Verifier] accepts, such as one over [MaxSize].
func (m *Minter) Mint(req Request) (*Token, error) {
	wire, err := m.claims(req)
	if err != nil {
		return nil, fmt.Errorf("minting transaction token: %w", err)
	}
	payload, err := json.Marshal(wire)
	if err != nil {
		return nil, fmt.Errorf("minting transaction token: %w", err)
	}
	raw, err := m.signer.Sign(payload)
	if err != nil {
		return nil, fmt.Errorf("minting transaction token: %w", err)
	}
	if len(raw) > MaxSize {
		return nil, fmt.Errorf("minting transaction token: %w: %d bytes, limit %d",
			ErrTooLarge, len(raw), MaxSize)
	}
	return &Token{Raw: raw, Claims: claimsOf(wire)}, nil
}

func (m *Minter) claims(req Request) (*wireClaims, error) {
	subject := req.Subject
	if subject == "" {
		subject = Anonymous
	}
	if subject == Anonymous && req.SessionID != "" {
		return nil, errors.New("session for an anonymous caller")
	}
	for _, s := range req.Scopes {
		if !validScope(s) {
			return nil, fmt.Errorf("invalid scope %q", s)
		}
	}
	for k := range req.Context {
		if k == "" {
			return nil, errors.New("empty transaction context key")
		}
	}
	var rctx *requestContext
	if req.ClientIP != "" {
		ip, err := netip.ParseAddr(req.ClientIP)
		if err != nil {
			return nil, fmt.Errorf("client IP: %w", err)
		}
		rctx = &requestContext{ClientIP: ip.String()}
	}

	now := m.now().Truncate(time.Second)
	return &wireClaims{
		Issuer:    m.issuer,
		Subject:   subject,
		Audience:  jwt.Audience{m.trustDomain},
		Expiry:    jwt.NewNumericDate(now.Add(m.lifetime)),
		IssuedAt:  jwt.NewNumericDate(now),
		Txn:       uuid.NewString(),
		SessionID: req.SessionID,
		Scope:     strings.Join(req.Scopes, " "),
		Workload:  m.workload,
		Request:   rctx,
		Context:   maps.Clone(req.Context),
	}, nil
}

// validScope reports whether s is a scope token of RFC 6749, section 3.3.
func validScope(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		if c := s[i]; c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

func claimsOf(w *wireClaims) Claims {
	c := Claims{
		ID:        w.Txn,
		Subject:   w.Subject,
		SessionID: w.SessionID,
		Scopes:    strings.Fields(w.Scope),
		Workload:  w.Workload,
		Context:   maps.Clone(w.Context),
		IssuedAt:  w.IssuedAt.Time(),
		Expiry:    w.Expiry.Time(),
	}
	if w.Request != nil {
		c.ClientIP = w.Request.ClientIP
	}
	return c
}
