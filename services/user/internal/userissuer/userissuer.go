// Package userissuer holds what makes the user service an issuer of access
// tokens: its settings, the scopes it grants, and the discovery document
// from which verifiers, the gateway first, learn where its keys are.
package userissuer

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"example.com/rampart/platform/accesstoken"
)

// Paths of the issuer's documents on the admin port. The issuer URL must
// lead to that port's root.
const (
	DiscoveryPath = "/.well-known/openid-configuration"
	JWKSPath      = "/.well-known/jwks.json"
)

// Scopes are the scopes that every access token of the service grants:
// enough for the sample API, nothing more.
var Scopes = []string{"profile", "orders:read", "orders:write", "payments:read"}

// Config is the issuer's part of the user service's configuration, read
// from USER_ variables.
type Config struct {
	// Issuer is the "iss" of the access tokens and the base URL of the
	// discovery document.
	Issuer string `env:"ISSUER"`
	// Audience is the "aud" of the access tokens.
	Audience string `env:"AUDIENCE"`
	// SigningKeys is the path of the JWK Set file of private signing keys,
	// reloaded when it changes.
	SigningKeys string `env:"SIGNING_KEYS"`
	// AccessTokenTTL is how long an access token lives.
	AccessTokenTTL time.Duration `env:"ACCESS_TOKEN_TTL"`
	// RefreshTokenTTL is how long a refresh token lives, and so how long a
	// session may sit idle.
	RefreshTokenTTL time.Duration `env:"REFRESH_TOKEN_TTL"`
}

// DefaultConfig returns the configuration for local development, from the
// repository root.
func DefaultConfig() Config {
	return Config{
		Issuer:          "http://127.0.0.1:9101",
		Audience:        "rampart",
		SigningKeys:     ".dev/keys/user-access.jwks",
		AccessTokenTTL:  accesstoken.DefaultLifetime,
		RefreshTokenTTL: 7 * 24 * time.Hour,
	}
}

// Validate reports the first setting that cannot work: an issuer that is
// not an absolute http or https URL without query, fragment or user
// information; an empty audience or key file path; an access-token lifetime
// outside (0, accesstoken.MaxLifetime]; or a refresh-token lifetime that
// is not positive.
func (c Config) Validate() error {
	if err := checkIssuer(c.Issuer); err != nil {
		return err
	}
	switch {
	case c.Audience == "":
		return errors.New("userissuer: no audience")
	case c.SigningKeys == "":
		return errors.New("userissuer: no signing key file")
	case c.AccessTokenTTL <= 0 || c.AccessTokenTTL > accesstoken.MaxLifetime:
		return fmt.Errorf("userissuer: access token lifetime %v outside (0, %v]",
			c.AccessTokenTTL, accesstoken.MaxLifetime)
	case c.RefreshTokenTTL <= 0:
		return fmt.Errorf("userissuer: refresh token lifetime %v is not positive", c.RefreshTokenTTL)
	}
	return nil
}

func checkIssuer(issuer string) error {
	u, err := url.Parse(issuer)
	if err != nil {
		return fmt.Errorf("userissuer: issuer: %w", err)
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil ||
		u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return fmt.Errorf("userissuer: issuer %q is not an http or https URL "+
			"without query or fragment", issuer)
	}
	return nil
}

// discovery is the document served at [DiscoveryPath].
//
// It holds what a verifier of access tokens needs: the issuer, which must
// equal the tokens' "iss", and jwks_uri (RFC 9068, section 4). Three
// members that OpenID Connect Discovery calls required are left out on
// purpose: response_types_supported and token_endpoint_auth_methods_supported
// describe authorization and token endpoints, and
// id_token_signing_alg_values_supported describes ID tokens, and this
// issuer has none of those (sign-in is an RPC of the user service). Any
// value would advertise a flow that does not exist. The algorithm of each
// key is in the key set itself.
type discovery struct {
	Issuer                string   `json:"issuer"`
	JWKSURI               string   `json:"jwks_uri"`
	ScopesSupported       []string `json:"scopes_supported"`
	SubjectTypesSupported []string `json:"subject_types_supported"`
}

// discoveryMaxAge is how long clients may cache the discovery document: it
// changes only with the configuration.
const discoveryMaxAge = time.Hour

// DiscoveryHandler serves the discovery document of issuer as
// application/json, to GET and HEAD only. It refuses an issuer that
// [Config.Validate] would refuse.
func DiscoveryHandler(issuer string) (http.Handler, error) {
	if err := checkIssuer(issuer); err != nil {
		return nil, err
	}
	doc, err := json.Marshal(discovery{
		Issuer:                issuer,
		JWKSURI:               strings.TrimSuffix(issuer, "/") + JWKSPath,
		ScopesSupported:       Scopes,
		SubjectTypesSupported: []string{"public"},
	})
	if err != nil {
		return nil, fmt.Errorf("encoding the discovery document: %w", err)
	}
	cacheControl := fmt.Sprintf("public, max-age=%d", int(discoveryMaxAge.Seconds()))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", cacheControl)
		h.Set("X-Content-Type-Options", "nosniff")
		_, _ = w.Write(doc)
	}), nil
}
