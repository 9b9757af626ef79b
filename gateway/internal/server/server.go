// Package server assembles the gateway from the platform's workload: the
// access-token verifier fed by the issuer's keys, the revocation list fed
// by events, the connections to the workloads behind it, the public HTTP
// server and the internal mutual-TLS server that publishes the keys of its
// transaction tokens.
package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"connectrpc.com/connect/v2/connecthttp"
	"google.golang.org/grpc"

	"example.com/rampart/gateway/internal/edge"
	"example.com/rampart/gateway/internal/issuer"
	"example.com/rampart/gateway/internal/proxy"
	"example.com/rampart/gateway/internal/revocation"
	"example.com/rampart/platform/accesstoken"
	"example.com/rampart/platform/events"
	"example.com/rampart/platform/identity"
	"example.com/rampart/platform/jwks"
	"example.com/rampart/platform/ratelimit"
	"example.com/rampart/platform/txntoken"
	"example.com/rampart/platform/workload"

	// The services whose public methods the gateway serves.
	_ "example.com/rampart/proto/order/v1"
	_ "example.com/rampart/proto/payment/v1"
	_ "example.com/rampart/proto/user/v1"
)

// Config is the gateway's own configuration, read from GATEWAY_ variables.
type Config struct {
	// HTTPAddr serves the public API: HTTP/1.1 and HTTP/2 without TLS,
	// for a TLS-terminating load balancer or local use.
	HTTPAddr string `env:"HTTP_ADDR"`
	// InternalAddr serves the transaction-token keys to the workloads,
	// over mutual TLS.
	InternalAddr string `env:"INTERNAL_ADDR"`
	// Issuer is the OpenID Connect issuer of access tokens.
	Issuer string `env:"ISSUER"`
	// AllowHTTPIssuer accepts a plain-HTTP issuer beyond loopback.
	AllowHTTPIssuer bool `env:"ALLOW_HTTP_ISSUER"`
	// Audience is the "aud" access tokens must carry.
	Audience string `env:"AUDIENCE"`
	// TxnSigningKeys is the JWK Set file of transaction-token keys.
	TxnSigningKeys string `env:"TXN_SIGNING_KEYS"`
	// TxnTokenTTL is the lifetime of a transaction token.
	TxnTokenTTL time.Duration `env:"TXN_TOKEN_TTL"`
	// CORSOrigins lists, comma-separated, the browser origins allowed.
	CORSOrigins string `env:"CORS_ORIGINS"`
	// TrustedProxies lists, comma-separated, the CIDRs of proxies whose
	// X-Forwarded-For is believed.
	TrustedProxies string `env:"TRUSTED_PROXIES"`
	// UserRate and UserBurst limit each signed-in user; IPRate and IPBurst
	// each client address.
	UserRate  float64 `env:"USER_RATE"`
	UserBurst int     `env:"USER_BURST"`
	IPRate    float64 `env:"IP_RATE"`
	IPBurst   int     `env:"IP_BURST"`
	// MaxBodyBytes caps a request body.
	MaxBodyBytes int `env:"MAX_BODY_BYTES"`
}

// DefaultConfig is the configuration of local development.
func DefaultConfig() Config {
	return Config{
		HTTPAddr:       "127.0.0.1:8080",
		InternalAddr:   "127.0.0.1:9004",
		Issuer:         "http://127.0.0.1:9101",
		Audience:       "rampart",
		TxnSigningKeys: ".dev/keys/gateway-txn.jwks",
		TxnTokenTTL:    time.Minute,
		UserRate:       10,
		UserBurst:      20,
		IPRate:         20,
		IPBurst:        40,
		MaxBodyBytes:   1 << 20,
	}
}

// upstreamDefaults are the local addresses of the workloads behind the
// gateway; GATEWAY_<WORKLOAD>_ADDR overrides each.
var upstreamDefaults = map[string]string{
	"user":    "127.0.0.1:9001",
	"order":   "127.0.0.1:9002",
	"payment": "127.0.0.1:9003",
}

// LoadSigningKeys loads the transaction-token signing keys, reloaded when
// their file changes.
func LoadSigningKeys(ctx context.Context, cfg Config) (*jwks.KeySet, error) {
	keys, err := jwks.LoadKeySet(ctx, cfg.TxnSigningKeys, jwks.KeySetOptions{})
	if err != nil {
		return nil, fmt.Errorf("loading transaction-token signing keys: %w", err)
	}
	return keys, nil
}

// Setup adds the gateway's servers and tasks to w.
func Setup(ctx context.Context, w *workload.Workload, cfg Config, keys *jwks.KeySet) error {
	// Access tokens: the issuer's keys, and the sessions revoked since.
	issuerKeys, err := issuer.Discover(ctx, issuer.Config{
		URL:       cfg.Issuer,
		AllowHTTP: cfg.AllowHTTPIssuer,
		OnError: func(err error) {
			w.Logger.Warn("fetching the issuer's keys", "error", err)
		},
	})
	if err != nil {
		return err
	}
	verifier, err := accesstoken.NewVerifier(accesstoken.VerifierConfig{
		Issuer:   cfg.Issuer,
		Audience: cfg.Audience,
		Keys:     issuerKeys,
	})
	if err != nil {
		return err
	}
	revoked := revocation.New()
	consumer, err := w.Consumer()
	if err != nil {
		return err
	}
	if err := events.Handle(consumer, revoked.HandleSessionRevoked); err != nil {
		return err
	}

	// Transaction tokens, minted for every forwarded call.
	minter, err := txntoken.NewMinter(txntoken.MinterConfig{
		Signer:      keys,
		TrustDomain: w.ID.TrustDomain().Name(),
		Workload:    w.ID.String(),
		Issuer:      w.ID.String(),
		Lifetime:    cfg.TxnTokenTTL,
	})
	if err != nil {
		return err
	}

	// The workloads behind the gateway.
	upstreams := map[string]grpc.ClientConnInterface{}
	for m := range w.Policy.Methods() {
		if !m.Public || upstreams[m.ServerName] != nil {
			continue
		}
		conn, err := w.Dial(m.ServerName, upstreamDefaults[m.ServerName])
		if err != nil {
			return err
		}
		upstreams[m.ServerName] = conn
	}

	api, err := proxy.NewServer(proxy.Config{
		Policy:         w.Policy,
		Upstreams:      upstreams,
		AccessTokens:   verifier,
		Revocations:    revoked,
		Minter:         minter,
		UserLimits:     ratelimit.New(ratelimit.Config{Rate: cfg.UserRate, Burst: cfg.UserBurst}),
		IPLimits:       ratelimit.New(ratelimit.Config{Rate: cfg.IPRate, Burst: cfg.IPBurst}),
		Logger:         w.Logger,
		TracerProvider: w.Telemetry.TracerProvider,
		MeterProvider:  w.Telemetry.MeterProvider,
		Propagator:     w.Telemetry.Propagator,
	})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	connecthttp.Mount(mux, api, connecthttp.WithReadMaxBytes(cfg.MaxBodyBytes))
	return serve(w, cfg, mux, keys)
}

func serve(w *workload.Workload, cfg Config, api http.Handler, keys *jwks.KeySet) error {
	edgeCfg := edge.Config{MaxBodyBytes: int64(cfg.MaxBodyBytes), AllowedOrigins: splitList(cfg.CORSOrigins)}
	for _, s := range splitList(cfg.TrustedProxies) {
		prefix, err := netip.ParsePrefix(s)
		if err != nil {
			return fmt.Errorf("GATEWAY_TRUSTED_PROXIES: %w", err)
		}
		edgeCfg.TrustedProxies = append(edgeCfg.TrustedProxies, prefix)
	}
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	public := &http.Server{
		Handler:           edge.Wrap(api, edgeCfg),
		Protocols:         protocols,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
	}
	internalMux := http.NewServeMux()
	internalMux.Handle("GET /.well-known/jwks.json", keys.Handler())
	internal := &http.Server{
		Handler:           internalMux,
		TLSConfig:         identity.ServerTLSConfig(w.Identity),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
	}
	for _, s := range []struct {
		name, addr string
		srv        *http.Server
		tls        bool
	}{
		{"public HTTP", cfg.HTTPAddr, public, false},
		{"internal HTTPS", cfg.InternalAddr, internal, true},
	} {
		ln, err := net.Listen("tcp", s.addr)
		if err != nil {
			return fmt.Errorf("listening for %s: %w", s.name, err)
		}
		w.Go(s.name, func(ctx context.Context) error { return serveUntil(ctx, s.srv, ln, s.tls) })
	}
	return nil
}

// serveUntil serves srv on ln until ctx ends, then shuts it down, letting
// calls in flight finish for a few seconds.
func serveUntil(ctx context.Context, srv *http.Server, ln net.Listener, tls bool) error {
	errc := make(chan error, 1)
	go func() {
		if tls {
			errc <- srv.ServeTLS(ln, "", "")
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(shutdownCtx)
	if serveErr := <-errc; !errors.Is(serveErr, http.ErrServerClosed) {
		err = errors.Join(err, serveErr)
	}
	return err
}

func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}
