// Package workload assembles what every service of the platform runs on,
// so that a service's main only adds its own store and handlers: telemetry,
// its SPIFFE identity, the method policies, transaction-token verification,
// the gRPC server with its checks, clients to other workloads, NATS
// JetStream, and an admin port with health and metrics.
//
// A service's main calls [Load] and [Start], registers its handlers on
// [Workload.GRPC], starts its background work with [Workload.Go], and
// blocks in [Workload.Run] until its context ends.
package workload

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/reflect/protoregistry"

	"example.com/rampart/platform/envconfig"
	"example.com/rampart/platform/grpcclient"
	"example.com/rampart/platform/grpcserver"
	"example.com/rampart/platform/identity"
	"example.com/rampart/platform/jwks"
	"example.com/rampart/platform/natsauth"
	"example.com/rampart/platform/policy"
	"example.com/rampart/platform/ratelimit"
	"example.com/rampart/platform/telemetry"
	"example.com/rampart/platform/txntoken"
)

// Load returns cfg overridden by the workload's environment variables,
// and by SPIFFE_ENDPOINT_SOCKET when its prefixed form is unset.
func Load(cfg Config) (Config, error) {
	if err := envconfig.Load(cfg.EnvPrefix(), &cfg); err != nil {
		return cfg, fmt.Errorf("loading %s configuration: %w", cfg.Name, err)
	}
	if cfg.WorkloadAPIAddr == "" {
		cfg.WorkloadAPIAddr = os.Getenv(identity.EndpointSocketEnv)
	}
	return cfg, nil
}

// workloadAPIWait bounds the wait at start for the first SVID from the
// Workload API. An agent that has not issued one by then is reported, and
// the orchestrator restarts the workload.
const workloadAPIWait = 30 * time.Second

// Workload is a running service's share of the platform.
type Workload struct {
	Config    Config
	ID        spiffeid.ID
	Telemetry *telemetry.Telemetry
	Logger    *slog.Logger
	Identity  identity.Source
	Policy    *policy.Set
	// TxnTokens verifies transaction tokens against the gateway's keys.
	TxnTokens *txntoken.Verifier
	// NATS and JetStream are nil when Config.NATSURL is empty.
	NATS      *nats.Conn
	JetStream jetstream.JetStream

	grpcListener net.Listener
	grpcServer   *grpc.Server
	admin        *http.Server
	adminMux     *http.ServeMux
	adminLn      net.Listener

	tasks     []task
	readiness []task
	// txnKeysLoaded reports whether the gateway's keys have arrived; nil
	// when they were given in Config.
	txnKeysLoaded func() bool
	serving       atomic.Bool
	closers       []func(context.Context) error
}

type task struct {
	name string
	fn   func(ctx context.Context) error
}

// Start sets up the workload and binds its ports, but serves nothing until
// [Workload.Run]. On error it releases whatever it had set up.
func Start(ctx context.Context, cfg Config) (_ *Workload, err error) {
	w := &Workload{Config: cfg, adminMux: http.NewServeMux()}
	defer func() {
		if err != nil {
			err = errors.Join(err, w.Close(context.WithoutCancel(ctx)))
		}
	}()

	// Telemetry first, so that every later step can log.
	w.Telemetry, err = telemetry.New(ctx, telemetry.Config{Service: cfg.Name, LogLevel: cfg.LogLevel})
	if err != nil {
		return nil, err
	}
	w.OnClose(w.Telemetry.Shutdown)
	w.Logger = w.Telemetry.Logger
	w.Logger.LogAttrs(ctx, slog.LevelInfo, "starting", envconfig.Attrs(cfg.EnvPrefix(), cfg)...)

	// Identity and policy.
	td, err := spiffeid.TrustDomainFromString(cfg.TrustDomain)
	if err != nil {
		return nil, fmt.Errorf("trust domain %q: %w", cfg.TrustDomain, err)
	}
	if w.ID, err = spiffeid.FromSegments(td, cfg.Name); err != nil {
		return nil, fmt.Errorf("workload name %q: %w", cfg.Name, err)
	}
	if err := w.startIdentity(ctx); err != nil {
		return nil, err
	}
	if w.Policy, err = policy.Load(td, protoregistry.GlobalFiles); err != nil {
		return nil, fmt.Errorf("loading method policies: %w", err)
	}

	// Transaction tokens, verified against the gateway's published keys.
	if err := w.startTxnVerifier(ctx, td); err != nil {
		return nil, err
	}

	// NATS, when the workload uses events.
	if cfg.NATSURL != "" {
		if err := w.connectNATS(td); err != nil {
			return nil, err
		}
	}

	// Ports: bind now so that a port conflict fails start-up.
	if err := w.listen(ctx); err != nil {
		return nil, err
	}
	return w, nil
}

// startIdentity opens the workload's identity source and checks that it
// holds the workload's own SVID.
func (w *Workload) startIdentity(ctx context.Context) error {
	src, from, err := w.openIdentity(ctx)
	if err != nil {
		return fmt.Errorf("loading the workload identity: %w", err)
	}
	svid, err := src.GetX509SVID()
	if err != nil {
		return fmt.Errorf("loading the workload identity: %w", err)
	}
	if svid.ID != w.ID {
		return fmt.Errorf("the SVID from %s is %s, not %s", from, svid.ID, w.ID)
	}
	w.Logger.Info("workload identity", "spiffe_id", svid.ID.String(), "source", from,
		"expires", svid.Certificates[0].NotAfter)
	w.Identity = src
	return nil
}

// openIdentity opens the source that the configuration names: the SPIFFE
// Workload API when its address is set, the files otherwise. It returns
// where the credentials come from, for messages.
func (w *Workload) openIdentity(ctx context.Context) (identity.Source, string, error) {
	onError := func(err error) { w.Logger.Error("reloading the workload identity", "error", err) }
	if addr := w.Config.WorkloadAPIAddr; addr != "" {
		ctx, cancel := context.WithTimeout(ctx, workloadAPIWait)
		defer cancel()
		src, err := identity.NewWorkloadAPISource(ctx, identity.WorkloadAPIOptions{
			Addr: addr, ID: w.ID, OnError: onError,
		})
		if err != nil {
			return nil, "", err
		}
		w.OnClose(func(context.Context) error { return src.Close() })
		return src, addr, nil
	}
	src, err := identity.NewFileSource(ctx, identity.Files{
		Cert: w.Config.CertFile, Key: w.Config.KeyFile, Bundle: w.Config.BundleFile,
	}, identity.FileOptions{OnError: onError})
	if err != nil {
		return nil, "", err
	}
	w.OnClose(func(context.Context) error { return src.Close() })
	return src, w.Config.CertFile, nil
}

var errNoTxnKeys = errors.New("workload: no transaction-token keys fetched yet")

func (w *Workload) startTxnVerifier(ctx context.Context, td spiffeid.TrustDomain) error {
	gateway, err := spiffeid.FromSegments(td, policy.Gateway)
	if err != nil {
		return err
	}
	keys := w.Config.TxnKeys
	if keys == nil {
		client := &http.Client{
			Timeout:   10 * time.Second,
			Transport: &http.Transport{TLSClientConfig: identity.ClientTLSConfig(w.Identity, gateway)},
		}
		remote := jwks.NewRemote(w.Config.TxnKeysURL, client, jwks.RemoteOptions{
			OnError: func(err error) { w.Logger.Warn("fetching transaction-token keys", "error", err) },
		})
		remote.Start(ctx)
		w.OnClose(func(context.Context) error { remote.Close(); return nil })
		// A workload that cannot verify transaction tokens yet would refuse
		// every call: it is not ready until the gateway's keys arrived.
		w.AddReadiness("transaction-token keys", func(context.Context) error {
			if !remote.Loaded() {
				return errNoTxnKeys
			}
			return nil
		})
		keys = remote
		w.txnKeysLoaded = remote.Loaded
	}
	w.TxnTokens, err = txntoken.NewVerifier(txntoken.VerifierConfig{
		Keys:        keys,
		TrustDomain: td.Name(),
		Issuer:      gateway.String(),
	})
	return err
}

func (w *Workload) connectNATS(td spiffeid.TrustDomain) error {
	server, err := spiffeid.FromSegments(td, "nats")
	if err != nil {
		return err
	}
	nc, err := nats.Connect(w.Config.NATSURL,
		nats.Name(w.Config.Name),
		nats.CustomInboxPrefix(natsauth.InboxPrefix(w.Config.Name)),
		nats.Secure(identity.ClientTLSConfig(w.Identity, server)),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500*time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				w.Logger.Warn("disconnected from NATS", "error", err)
			}
		}),
		nats.ReconnectHandler(func(*nats.Conn) { w.Logger.Info("reconnected to NATS") }),
		// The server refuses a subject outside the workload's permissions
		// without closing the connection; only this handler hears of it.
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			w.Logger.Error("NATS reported an error", "error", err)
		}),
	)
	if err != nil {
		return fmt.Errorf("connecting to NATS at %s: %w", w.Config.NATSURL, err)
	}
	w.OnClose(func(context.Context) error {
		if !nc.IsConnected() {
			nc.Close() // nothing to drain, and Drain would fail
			return nil
		}
		return nc.Drain()
	})
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("opening JetStream: %w", err)
	}
	w.NATS, w.JetStream = nc, js
	return nil
}

func (w *Workload) listen(ctx context.Context) error {
	var (
		lc  net.ListenConfig
		err error
	)
	if w.Config.GRPCAddr != "" {
		if w.grpcListener, err = lc.Listen(ctx, "tcp", w.Config.GRPCAddr); err != nil {
			return fmt.Errorf("listening for gRPC: %w", err)
		}
	}
	if w.adminLn, err = lc.Listen(ctx, "tcp", w.Config.AdminAddr); err != nil {
		return fmt.Errorf("listening for admin HTTP: %w", err)
	}
	w.adminMux.HandleFunc("GET /healthz", func(rw http.ResponseWriter, _ *http.Request) {
		// A failed write means the prober has gone; there is no one left to tell.
		_, _ = rw.Write([]byte("ok\n"))
	})
	w.adminMux.HandleFunc("GET /readyz", w.serveReady)
	w.adminMux.Handle("GET /metrics", w.Telemetry.MetricsHandler)
	w.admin = &http.Server{
		Handler:           w.adminMux,
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(w.Logger.Handler(), slog.LevelWarn),
	}
	return nil
}

// GRPCAddr returns the address the gRPC server listens on.
func (w *Workload) GRPCAddr() string { return w.grpcListener.Addr().String() }

// AdminAddr returns the address the admin server listens on.
func (w *Workload) AdminAddr() string { return w.adminLn.Addr().String() }

// GRPC returns the workload's gRPC server, with the platform's checks, for
// the service to register its handlers on before Run.
func (w *Workload) GRPC() *grpc.Server {
	if w.grpcServer == nil {
		w.grpcServer = grpcserver.New(grpcserver.Config{
			Identity:  w.Identity,
			Policy:    w.Policy,
			Tokens:    w.TxnTokens,
			Telemetry: w.Telemetry,
			Limiter: ratelimit.New(ratelimit.Config{
				Rate: w.Config.RateLimit, Burst: w.Config.RateBurst,
			}),
		})
	}
	return w.grpcServer
}

// HandleAdmin adds a route to the admin server.
func (w *Workload) HandleAdmin(pattern string, handler http.Handler) {
	w.adminMux.Handle(pattern, handler)
}

// Dial connects to the workload peer, at the address in the environment
// variable <NAME>_<PEER>_ADDR, else at addr.
func (w *Workload) Dial(peer, addr string) (*grpc.ClientConn, error) {
	key := w.Config.EnvPrefix() + "_" + strings.ToUpper(peer) + "_ADDR"
	if v, ok := os.LookupEnv(key); ok {
		addr = v
	}
	id, err := spiffeid.FromSegments(w.ID.TrustDomain(), peer)
	if err != nil {
		return nil, err
	}
	conn, err := grpcclient.Dial(addr, id, grpcclient.Config{Identity: w.Identity, Telemetry: w.Telemetry})
	if err != nil {
		return nil, err
	}
	w.OnClose(func(context.Context) error { return conn.Close() })
	return conn, nil
}

// Go registers fn to run in the background from Run until the workload
// stops; its context ends at shutdown. If fn returns an error before then,
// the workload stops with that error. Call Go before Run.
func (w *Workload) Go(name string, fn func(ctx context.Context) error) {
	w.tasks = append(w.tasks, task{name: name, fn: fn})
}

// AddReadiness adds a check that /readyz runs; the workload is ready when
// it serves and every check passes.
func (w *Workload) AddReadiness(name string, check func(ctx context.Context) error) {
	w.readiness = append(w.readiness, task{name: name, fn: check})
}

// OnClose registers fn to run at shutdown, after the servers and the
// background tasks have stopped, in reverse order of registration.
func (w *Workload) OnClose(fn func(ctx context.Context) error) {
	w.closers = append(w.closers, fn)
}
