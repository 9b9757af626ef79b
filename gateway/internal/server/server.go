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
	"log/slog"
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
	"example.com/rampart/platform/envconfig"
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
	// IssuerKeysRefresh is how often the issuer's keys are fetched again:
	// a key the issuer removed is refused at most this long afterwards.
	IssuerKeysRefresh time.Duration `env:"ISSUER_KEYS_REFRESH"`
	// IssuerKeysMinRefresh spaces the fetches that tokens naming an
	// unknown key cause: at most one per interval, however many arrive.
	IssuerKeysMinRefresh time.Duration `env:"ISSUER_KEYS_MIN_REFRESH"`
	// RevocationWindow is how far back the revoked sessions are replayed
	// at start. It must be at least the longest lifetime the issuer gives
	// an access token, plus the verifier's leeway.
	RevocationWindow time.Duration `env:"REVOCATION_WINDOW"`
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

// MaxHeaderBytes caps the request line and headers of a public request:
// the HTTP server answers 431 to anything larger before a handler runs, so
// that a megabyte of header costs a read of this much. An Authorization
// header with a token of the verifier's size limit, 8 KiB, fits.
const MaxHeaderBytes = 16 << 10

// DefaultConfig is the configuration of local development.
func DefaultConfig() Config {
	return Config{
		HTTPAddr:             "127.0.0.1:8080",
		InternalAddr:         "127.0.0.1:9004",
		Issuer:               "http://127.0.0.1:9101",
		Audience:             "rampart",
		IssuerKeysRefresh:    time.Minute,
		IssuerKeysMinRefresh: jwks.DefaultMinRefreshInterval,
		RevocationWindow:     accesstoken.MaxLifetime + accesstoken.MaxLeeway,
		TxnSigningKeys:       ".dev/keys/gateway-txn.jwks",
		TxnTokenTTL:          time.Minute,
		UserRate:             10,
		UserBurst:            20,
		IPRate:               20,
		IPBurst:              40,
		MaxBodyBytes:         1 << 20,
	}
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	switch {
	case c.Issuer == "" || c.Audience == "":
		return errors.New("gateway: the issuer and the audience are required")
	case c.IssuerKeysRefresh <= 0 || c.IssuerKeysMinRefresh <= 0:
		return fmt.Errorf("gateway: issuer keys refresh intervals %v and %v must be positive",
			c.IssuerKeysRefresh, c.IssuerKeysMinRefresh)
	case c.RevocationWindow <= 0 || c.RevocationWindow > events.MaxAge:
		return fmt.Errorf("gateway: revocation window %v outside (0, %v]",
			c.RevocationWindow, events.MaxAge)
	case c.MaxBodyBytes <= 0:
		return fmt.Errorf("gateway: body limit %d is not positive", c.MaxBodyBytes)
	}
	return nil
}

// upstreamDefaults are the local addresses of the workloads behind the
// gateway; GATEWAY_<WORKLOAD>_ADDR overrides each.
var upstreamDefaults = map[string]string{
	"user":    "127.0.0.1:9001",
	"order":   "127.0.0.1:9002",
	"payment": "127.0.0.1:9003",
}

// LoadSigningKeys loads the transaction-token signing keys, reloaded when
// their file changes. It refuses a file that holds a weak key, or any key
// but ES256 and EdDSA ones.
func LoadSigningKeys(ctx context.Context, cfg Config, onError func(error)) (*jwks.KeySet, error) {
	keys, err := jwks.LoadKeySet(ctx, cfg.TxnSigningKeys, jwks.KeySetOptions{OnError: onError})
	if err != nil {
		return nil, fmt.Errorf("loading transaction-token signing keys: %w", err)
	}
	return keys, nil
}

// Setup adds the gateway's servers and tasks to w.
func Setup(ctx context.Context, w *workload.Workload, cfg Config, keys *jwks.KeySet) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	w.Logger.LogAttrs(ctx, slog.LevelInfo, "gateway configuration",
		envconfig.Attrs(w.Config.EnvPrefix(), cfg)...)

	// Access tokens: the issuer's keys, and the sessions revoked since.
	verifier, err := accessVerifier(ctx, cfg, w.Logger)
	if err != nil {
		return err
	}
	revoked, err := replayRevocations(w, cfg)
	if err != nil {
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

	public, err := publicServer(cfg, proxy.Config{
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
	internal := &http.Server{
		Handler:           internalHandler(keys),
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
		var lc net.ListenConfig
		ln, err := lc.Listen(ctx, "tcp", s.addr)
		if err != nil {
			return fmt.Errorf("listening for %s: %w", s.name, err)
		}
		// The server's own errors, refused TLS handshakes among them, go
		// to the JSON log like every other line.
		s.srv.ErrorLog = slog.NewLogLogger(w.Logger.With("server", s.name).Handler(), slog.LevelWarn)
		w.Go(s.name, func(ctx context.Context) error { return serveUntil(ctx, s.srv, ln, s.tls) })
	}
	return nil
}

// accessVerifier discovers the issuer and returns a verifier of its access
// tokens, with keys refreshed until ctx ends.
func accessVerifier(ctx context.Context, cfg Config, log *slog.Logger) (
	*accesstoken.Verifier, error,
) {
	keys, err := issuer.Discover(ctx, issuer.Config{
		URL:                cfg.Issuer,
		AllowHTTP:          cfg.AllowHTTPIssuer,
		RefreshInterval:    cfg.IssuerKeysRefresh,
		MinRefreshInterval: cfg.IssuerKeysMinRefresh,
		OnError: func(err error) {
			log.Warn("fetching the issuer's keys", "error", err)
		},
	})
	if err != nil {
		return nil, err
	}
	return accesstoken.NewVerifier(accesstoken.VerifierConfig{
		Issuer:   cfg.Issuer,
		Audience: cfg.Audience,
		Keys:     keys,
		Remember: rememberedTokens,
	})
}

// rememberedTokens is how many access tokens the gateway remembers having
// verified: a client sends the same token on every call for the minutes it
// lives, and checking its signature once is enough. At under a kilobyte
// each, they take a few megabytes at most. Revocation is checked on every
// call all the same.
const rememberedTokens = 10_000

// replayRevocations returns the list of revoked sessions, filled by a task
// of w, and makes w ready only once the list is loaded.
func replayRevocations(w *workload.Workload, cfg Config) (*revocation.List, error) {
	consumer, err := w.ConsumerConfig()
	if err != nil {
		return nil, fmt.Errorf("gateway: revocations: %w", err)
	}
	revoked, run, err := revocations(cfg, consumer)
	if err != nil {
		return nil, err
	}
	w.Go("revocation events", run)
	w.AddReadiness("revocations", func(context.Context) error {
		if !revoked.Loaded() {
			return errors.New("revoked sessions not loaded yet")
		}
		return nil
	})
	return revoked, nil
}

// revocations returns the list of revoked sessions and the task that fills
// it: it replays the SessionRevoked events of the revocation window, marks
// the list loaded once caught up, then follows new events. Every gateway
// process reads every event, since each holds the whole list in memory.
//
// TODO: a replayed event is verified with the transaction-token key that
// signed its token, so a revocation whose key was removed from
// GATEWAY_TXN_SIGNING_KEYS is refused, and forgotten at the next start,
// while its session's tokens may still be valid. Until revocations carry
// a proof that outlives key rotation, retired keys must stay in the file
// for the revocation window.
func revocations(cfg Config, consumerCfg events.ConsumerConfig) (
	*revocation.List, func(context.Context) error, error,
) {
	consumer, err := events.NewConsumer(consumerCfg)
	if err != nil {
		return nil, nil, err
	}
	revoked := revocation.New()
	if err := events.Handle(consumer, revoked.HandleSessionRevoked); err != nil {
		return nil, nil, err
	}
	log := consumerCfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	run := func(ctx context.Context) error {
		return consumer.RunReplay(ctx, events.ReplayConfig{
			Since: cfg.RevocationWindow,
			CaughtUp: func() {
				revoked.MarkLoaded()
				log.InfoContext(ctx, "revoked sessions loaded", "sessions", revoked.Len())
			},
		})
	}
	return revoked, run, nil
}

// publicServer returns the public HTTP server: the proxy's methods behind
// the edge's checks, with the limits that protect the server itself.
func publicServer(cfg Config, pc proxy.Config) (*http.Server, error) {
	edgeCfg := edge.Config{
		MaxBodyBytes:   int64(cfg.MaxBodyBytes),
		AllowedOrigins: splitList(cfg.CORSOrigins),
	}
	for _, s := range splitList(cfg.TrustedProxies) {
		prefix, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("GATEWAY_TRUSTED_PROXIES: %w", err)
		}
		edgeCfg.TrustedProxies = append(edgeCfg.TrustedProxies, prefix)
	}
	api, err := proxy.NewServer(pc)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	connecthttp.Mount(mux, api, connecthttp.WithReadMaxBytes(cfg.MaxBodyBytes))

	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	return &http.Server{
		Handler:           edge.Wrap(mux, edgeCfg),
		Protocols:         protocols,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    MaxHeaderBytes,
	}, nil
}

// internalHandler serves the public halves of the transaction-token keys,
// every key of the file, so that a key is published before it signs and
// after it stops.
func internalHandler(keys *jwks.KeySet) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /.well-known/jwks.json", keys.Handler())
	return mux
}

// streamGrace is how long calls in flight at shutdown run on before their
// context ends: enough for a unary call to finish, while a stream, such as
// a WatchOrder that would run for minutes, then ends with a status instead
// of being cut when the shutdown gives up.
const streamGrace = time.Second

// serveUntil serves srv on ln until ctx ends, then shuts it down: calls in
// flight get streamGrace to finish, then their context ends, and the
// shutdown waits a few seconds more for them to answer.
func serveUntil(ctx context.Context, srv *http.Server, ln net.Listener, tls bool) error {
	base, endCalls := context.WithCancelCause(context.WithoutCancel(ctx))
	defer endCalls(nil)
	srv.BaseContext = func(net.Listener) context.Context { return base }
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
	grace := time.AfterFunc(streamGrace, func() { endCalls(proxy.ErrShuttingDown) })
	defer grace.Stop()
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), streamGrace+5*time.Second)
	defer cancel()
	err := srv.Shutdown(shutdownCtx)
	if serveErr := <-errc; !errors.Is(serveErr, http.ErrServerClosed) {
		err = errors.Join(err, serveErr)
	}
	return err
}

func splitList(s string) []string {
	var out []string
	for part := range strings.SplitSeq(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}
