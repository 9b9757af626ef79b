// Package issuer connects the gateway to the OpenID Connect issuer of end
// users' access tokens: it reads the issuer's discovery document, checks
// that it speaks for the configured issuer, and keeps its JWKS in memory.
package issuer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"example.com/rampart/platform/jwks"
)

// maxDocumentSize caps the discovery document.
const maxDocumentSize = 64 << 10

// ErrInsecure is returned for an issuer reached over plain HTTP on a host
// other than the loopback interface, unless insecure issuers are allowed.
var ErrInsecure = errors.New("issuer: plain HTTP is only accepted on loopback")

// Config names the issuer.
type Config struct {
	// URL is the issuer identifier: the "iss" of its tokens and the base of
	// its discovery document.
	URL string
	// AllowHTTP accepts a plain-HTTP issuer on a host other than loopback,
	// for containers on a private network. Never in production.
	AllowHTTP bool
	// Client fetches the documents; nil means one with a 10s timeout.
	Client *http.Client
	// OnError receives key-refresh errors.
	OnError func(error)
}

// Discover reads the issuer's discovery document, retrying until ctx ends,
// and returns its key set, refreshed in the background until ctx ends.
func Discover(ctx context.Context, cfg Config) (*jwks.Remote, error) {
	if err := checkURL(cfg.URL, cfg.AllowHTTP); err != nil {
		return nil, err
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 10 * time.Second}
	}
	var jwksURL string
	for delay := 200 * time.Millisecond; ; delay = min(2*delay, 5*time.Second) {
		var err error
		if jwksURL, err = fetchJWKSURL(ctx, cfg); err == nil {
			break
		}
		if cfg.OnError != nil {
			cfg.OnError(err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("discovering issuer %s: %w", cfg.URL, err)
		case <-time.After(delay):
		}
	}
	if err := checkURL(jwksURL, cfg.AllowHTTP); err != nil {
		return nil, fmt.Errorf("jwks_uri: %w", err)
	}
	keys := jwks.NewRemote(jwksURL, cfg.Client, jwks.RemoteOptions{OnError: cfg.OnError})
	keys.Start(ctx)
	return keys, nil
}

type discovery struct {
	Issuer  string `json:"issuer"`
	JWKSURI string `json:"jwks_uri"`
}

func fetchJWKSURL(ctx context.Context, cfg Config) (string, error) {
	docURL := strings.TrimSuffix(cfg.URL, "/") + "/.well-known/openid-configuration"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, docURL, nil)
	if err != nil {
		return "", err
	}
	resp, err := cfg.Client.Do(req)
	if err != nil {
		return "", fmt.Errorf("fetching the discovery document: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("fetching the discovery document: status %d", resp.StatusCode)
	}
	var doc discovery
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxDocumentSize)).Decode(&doc); err != nil {
		return "", fmt.Errorf("decoding the discovery document: %w", err)
	}
	// An issuer must name itself exactly (OpenID Connect Discovery, 4.3),
	// so that one issuer cannot pass for another.
	if doc.Issuer != cfg.URL {
		return "", fmt.Errorf("discovery document names issuer %q, want %q", doc.Issuer, cfg.URL)
	}
	if doc.JWKSURI == "" {
		return "", errors.New("discovery document has no jwks_uri")
	}
	return doc.JWKSURI, nil
}

// checkURL accepts https, and http on loopback or when allowed.
func checkURL(raw string, allowHTTP bool) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("issuer: invalid URL %q", raw)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if allowHTTP {
			return nil
		}
		if ip := net.ParseIP(u.Hostname()); (ip != nil && ip.IsLoopback()) || u.Hostname() == "localhost" {
			return nil
		}
		return fmt.Errorf("%w: %s", ErrInsecure, raw)
	}
	return fmt.Errorf("issuer: unsupported scheme in %q", raw)
}
