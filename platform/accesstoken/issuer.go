package accesstoken

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/uuid"

	"example.com/rampart/platform/jwks"
)

// wireClaims is the JSON form of an access token's claims.
type wireClaims struct {
	jwt.Claims
	Scope     string `json:"scope,omitempty"`
	SessionID string `json:"sid,omitempty"`
	ClientID  string `json:"client_id,omitempty"`
}

// IssuerConfig configures [NewIssuer].
type IssuerConfig struct {
	// Issuer is the issuer's URL, the "iss" claim. Required.
	Issuer string
	// Audience is the API the tokens are for, the "aud" claim. Required.
	Audience string
	// Signer supplies the signing key; a [jwks.KeySet] follows key
	// rotation. Required.
	Signer jwks.SignerSource
	// Lifetime is how long a token is valid. Zero means DefaultLifetime.
	Lifetime time.Duration
}

// Issuer mints access tokens. It is safe for concurrent use.
type Issuer struct {
	issuer   string
	audience string
	lifetime time.Duration
	signer   *jwks.TokenSigner
	now      func() time.Time
}

// Request says whom a token is for.
type Request struct {
	// Subject is the end user's id. Required.
	Subject string
	// SessionID is the user's session, so that logging out can end it.
	SessionID string
	// Scopes are the scopes granted. Each must be a valid OAuth scope token:
	// printable ASCII without spaces, quotes or backslashes.
	Scopes []string
	// ClientID is the OAuth client the token is issued to, if any.
	ClientID string
}

// NewIssuer returns an Issuer, or an error if cfg lacks a required field or
// asks for a lifetime over [MaxLifetime].
func NewIssuer(cfg IssuerConfig) (*Issuer, error) {
	switch {
	case cfg.Issuer == "":
		return nil, errors.New("creating access token issuer: no issuer")
	case cfg.Audience == "":
		return nil, errors.New("creating access token issuer: no audience")
	case cfg.Signer == nil:
		return nil, errors.New("creating access token issuer: no signer")
	case cfg.Lifetime < 0 || cfg.Lifetime > MaxLifetime:
		return nil, fmt.Errorf("creating access token issuer: lifetime %v outside (0, %v]",
			cfg.Lifetime, MaxLifetime)
	}
	lifetime := cfg.Lifetime
	if lifetime == 0 {
		lifetime = DefaultLifetime
	}
	return &Issuer{
		issuer:   cfg.Issuer,
		audience: cfg.Audience,
		lifetime: lifetime,
		signer:   jwks.NewTokenSigner(cfg.Signer, Type),
		now:      time.Now,
	}, nil
}

// Issue mints a token for req, signed with the signer's active key, and
// returns it with its claims.
func (i *Issuer) Issue(req Request) (string, Claims, error) {
	if req.Subject == "" {
		return "", Claims{}, errors.New("issuing access token: no subject")
	}
	for _, s := range req.Scopes {
		if !validScope(s) {
			return "", Claims{}, fmt.Errorf("issuing access token: invalid scope %q", s)
		}
	}

	now := i.now().Truncate(time.Second)
	id := uuid.NewString()
	wire := wireClaims{
		Issuer:    i.issuer,
		Subject:   req.Subject,
		Audience:  jwt.Audience{i.audience},
		Expiry:    jwt.NewNumericDate(now.Add(i.lifetime)),
		NotBefore: jwt.NewNumericDate(now),
		IssuedAt:  jwt.NewNumericDate(now),
		ID:        id,
		Scope:     strings.Join(req.Scopes, " "),
		SessionID: req.SessionID,
		ClientID:  req.ClientID,
	}
	payload, err := json.Marshal(wire)
	if err != nil {
		return "", Claims{}, fmt.Errorf("issuing access token: %w", err)
	}
	raw, err := i.signer.Sign(payload)
	if err != nil {
		return "", Claims{}, fmt.Errorf("issuing access token: %w", err)
	}
	return raw, claimsOf(&wire), nil
}

// validScope reports whether s is a scope token of RFC 6749, section 3.3.
func validScope(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

func claimsOf(w *wireClaims) Claims {
	return Claims{
		Issuer:    w.Issuer,
		Subject:   w.Subject,
		SessionID: w.SessionID,
		ID:        w.ID,
		ClientID:  w.ClientID,
		Scopes:    strings.Fields(w.Scope),
		IssuedAt:  w.IssuedAt.Time(),
		Expiry:    w.Expiry.Time(),
	}
}
