// Package issuer connects the gateway to the OpenID Connect issuer of end
// users' access tokens: it reads the issuer's discovery document, checks
// that it speaks for the configured issuer, and keeps its JWKS in memory,
// refreshed in the background and when a token names a key it lacks.
package issuer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	josejson "github.com/go-jose/go-jose/v4/json"

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
	// RefreshInterval is how often the keys are fetched again: a key the
	// issuer removed is refused at most this long afterwards. Zero means
	// jwks.DefaultRefreshInterval.
	RefreshInterval time.Duration
	// MinRefreshInterval spaces the fetches that tokens naming unknown
	// keys cause: one per interval at most, however many such tokens
	// arrive. Zero means jwks.DefaultMinRefreshInterval.
	MinRefreshInterval time.Duration
	// OnError receives the errors of discovery and of key refreshes.
	OnError func(error)
}

// Discover reads the issuer's discovery document, then its key set,
// retrying both until ctx ends, and returns the key set, refreshed in the
// background until ctx ends. A key set that is refused as a whole, such as
// one holding a weak key, fails Discover at once: a gateway that could
// verify no token must not start.
func Discover(ctx context.Context, cfg Config) (*jwks.Remote, error) {
	if err := checkURL(cfg.URL, cfg.AllowHTTP); err != nil {
		return nil, err
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 10 * time.Second}
	}
	var jwksURL string
	err := retry(ctx, cfg.OnError, func() (err error) {
		jwksURL, err = fetchJWKSURL(ctx, cfg)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("discovering issuer %s: %w", cfg.URL, err)
	}
	if err := checkURL(jwksURL, cfg.AllowHTTP); err != nil {
		return nil, fmt.Errorf("jwks_uri: %w", err)
	}

	keys := jwks.NewRemote(jwksURL, cfg.Client, jwks.RemoteOptions{
		RefreshInterval:    cfg.RefreshInterval,
		MinRefreshInterval: cfg.MinRefreshInterval,
		OnError:            cfg.OnError,
	})
	// The key set reports its own fetch errors to OnError.
	err = retry(ctx, nil, func() error {
		err := keys.Fetch(ctx)
		if errors.Is(err, jwks.ErrInvalidKeySet) {
			return &stop{err}
		}
		return err
	})
	if err != nil {
		keys.Close()
		return nil, fmt.Errorf("fetching the keys of issuer %s: %w", cfg.URL, err)
	}
	keys.Start(ctx)
	return keys, nil
}

// stop marks an error that retrying cannot cure.
type stop struct{ err error }

func (s *stop) Error() string { return s.err.Error() }
func (s *stop) Unwrap() error { return s.err }

// retry calls fn until it succeeds, fails with a [stop] error, or ctx
// ends, waiting longer after each failure, and returns fn's last error.
func retry(ctx context.Context, onError func(error), fn func() error) error {
	for delay := 200 * time.Millisecond; ; delay = min(2*delay, 5*time.Second) {
		err := fn()
		var s *stop
		switch {
		case err == nil:
			return nil
		case errors.As(err, &s):
			return s.err
		}
		if onError != nil {
			onError(err)
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(delay):
		}
	}
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
	return parseDiscovery(resp.Body, cfg.URL)
}

// parseDiscovery reads at most maxDocumentSize bytes of a discovery
// document and returns its jwks_uri. The document must name issuer
// exactly (OpenID Connect Discovery, 4.3), so that one issuer cannot pass
// for another, and must have a jwks_uri. Member names match exactly and
// duplicates are refused, as in the tokens themselves, so that no two
// readers of one document can see different issuers in it.
func parseDiscovery(r io.Reader, issuer string) (string, error) {
	var doc discovery
	if err := josejson.NewDecoder(io.LimitReader(r, maxDocumentSize)).Decode(&doc); err != nil {
		return "", fmt.Errorf("decoding the discovery document: %w", err)
	}
	if doc.Issuer != issuer {
		return "", fmt.Errorf("discovery document names issuer %q, want %q", clip(doc.Issuer), issuer)
	}
	if doc.JWKSURI == "" {
		return "", errors.New("discovery document has no jwks_uri")
	}
	return doc.JWKSURI, nil
}

// clip shortens text from the network before it goes into an error.
func clip(s string) string {
	const limit = 128
	if len(s) > limit {
		return s[:limit] + "..."
	}
	return s
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
