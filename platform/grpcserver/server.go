// Package grpcserver builds the gRPC server every workload serves its API
// on: mutual TLS with SPIFFE identities, and the checks of the platform
// applied to every call before a handler sees it.
//
// A call reaches its handler only if the method has a policy, the calling
// workload is one of its callers, the call carries a valid transaction token
// that grants what the policy asks, the caller is within its rate limit, the
// request passes protovalidate, and the request agrees with the
// transaction context bound into the token. Streaming calls go through the
// same checks, message by message where a message is involved.
package grpcserver

import (
	"context"
	"log/slog"
	"math"
	"strconv"
	"time"

	"buf.build/go/protovalidate"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	grpcvalidate "github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/protovalidate"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"example.com/rampart/platform/identity"
	"example.com/rampart/platform/policy"
	"example.com/rampart/platform/ratelimit"
	"example.com/rampart/platform/telemetry"
	"example.com/rampart/platform/txntoken"
)

// TokenVerifier verifies the transaction token a call carries.
type TokenVerifier interface {
	Verify(ctx context.Context, raw string) (*txntoken.Token, error)
}

// Config is what a server needs. Identity, Policy, Tokens and Telemetry are
// required; the rest have working defaults.
type Config struct {
	// Identity provides the server's SVID and the trust bundle that
	// callers' certificates must chain to.
	Identity identity.Source
	// Policy says who may call which method; methods without one are
	// refused.
	Policy *policy.Set
	// Tokens verifies transaction tokens.
	Tokens TokenVerifier
	// Telemetry provides the logger, tracing and metrics.
	Telemetry *telemetry.Telemetry
	// Limiter limits each principal; nil means ratelimit's defaults.
	Limiter *ratelimit.Limiter
	// Validator checks requests; nil means protovalidate's global one.
	Validator protovalidate.Validator
	// MaxUnaryDeadline caps the deadline of a unary call (default 10s): a
	// caller asking for more, or for none, gets this much.
	MaxUnaryDeadline time.Duration
	// MaxStreamDeadline caps the deadline of a streaming call (default
	// 10m).
	MaxStreamDeadline time.Duration
	// MaxConnectionAge closes connections after this long (default 10m,
	// give or take a tenth), so that long-lived HTTP/2 connections
	// handshake again: both ends then present their rotated certificates,
	// and a client whose CA has left the bundle is refused. Calls in
	// flight get 30 seconds more to finish.
	MaxConnectionAge time.Duration
	// MaxRecvMsgSize caps the size of one request message (default 1 MiB).
	MaxRecvMsgSize int
}

func (c Config) withDefaults() Config {
	if c.Limiter == nil {
		c.Limiter = ratelimit.New(ratelimit.Config{})
	}
	if c.Validator == nil {
		c.Validator = protovalidate.GlobalValidator
	}
	if c.MaxUnaryDeadline <= 0 {
		c.MaxUnaryDeadline = 10 * time.Second
	}
	if c.MaxStreamDeadline <= 0 {
		c.MaxStreamDeadline = 10 * time.Minute
	}
	if c.MaxConnectionAge <= 0 {
		c.MaxConnectionAge = 10 * time.Minute
	}
	if c.MaxRecvMsgSize <= 0 {
		c.MaxRecvMsgSize = 1 << 20
	}
	return c
}

// New returns a gRPC server with the platform's credentials and checks.
// Register services on it, then Serve.
func New(cfg Config) *grpc.Server {
	cfg = cfg.withDefaults()
	tel := cfg.Telemetry
	unary, stream := chain(cfg)
	creds, err := countHandshakes(credentials.NewTLS(identity.ServerTLSConfig(cfg.Identity)),
		tel.MeterProvider, tel.Logger)
	if err != nil {
		// Only a meter provider that refuses a valid instrument gets here:
		// serve, uncounted, rather than not at all.
		tel.Logger.Warn("counting TLS handshakes", "error", err)
		creds = credentials.NewTLS(identity.ServerTLSConfig(cfg.Identity))
	}
	return grpc.NewServer(
		grpc.Creds(creds),
		grpc.StatsHandler(otelgrpc.NewServerHandler(
			otelgrpc.WithTracerProvider(tel.TracerProvider),
			otelgrpc.WithMeterProvider(tel.MeterProvider),
			otelgrpc.WithPropagators(tel.Propagator),
		)),
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
		grpc.MaxRecvMsgSize(cfg.MaxRecvMsgSize),
		grpc.MaxConcurrentStreams(256),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionAge:      cfg.MaxConnectionAge,
			MaxConnectionAgeGrace: 30 * time.Second,
		}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             10 * time.Second,
			PermitWithoutStream: true,
		}),
	)
}

// chain returns the interceptors that apply the platform's checks, in the
// order they run.
func chain(cfg Config) ([]grpc.UnaryServerInterceptor, []grpc.StreamServerInterceptor) {
	g := &guard{cfg: cfg}
	logger := slogAdapter(cfg.Telemetry.Logger)
	logOpts := []logging.Option{
		logging.WithLogOnEvents(logging.FinishCall),
		logging.WithDisableLoggingFields(logging.SystemTag[0], logging.ComponentFieldKey,
			logging.ServiceFieldKey, logging.MethodFieldKey, logging.MethodTypeFieldKey),
		logging.WithDurationField(func(d time.Duration) logging.Fields {
			return logging.Fields{"duration_ms", float64(d.Microseconds()) / 1000}
		}),
		logging.WithFieldsFromContextAndCallMeta(func(_ context.Context, c interceptors.CallMeta) logging.Fields {
			return logging.Fields{"method", c.FullMethod()}
		}),
	}
	recoverOpts := []recovery.Option{recovery.WithRecoveryHandlerContext(recovered)}

	// The order matters. Logging comes first so that every call, refused
	// or not, is logged once with its outcome; recovery next, so that a
	// panic anywhere below becomes an Internal error that is logged. The
	// deadline is capped before any work. Authorization runs before the
	// limiter because the limiter keys on the principal that authorization
	// establishes, and both run before validation, the costliest check.
	// The transaction context is compared last, on a validated request.
	unary := []grpc.UnaryServerInterceptor{
		logging.UnaryServerInterceptor(logger, logOpts...),
		recovery.UnaryServerInterceptor(recoverOpts...),
		g.capDeadlineUnary,
		g.authorizeUnary,
		g.limitUnary,
		grpcvalidate.UnaryServerInterceptor(cfg.Validator),
		g.bindContextUnary,
	}
	stream := []grpc.StreamServerInterceptor{
		logging.StreamServerInterceptor(logger, logOpts...),
		recovery.StreamServerInterceptor(recoverOpts...),
		g.capDeadlineStream,
		g.authorizeStream,
		g.limitStream,
		grpcvalidate.StreamServerInterceptor(cfg.Validator),
		g.bindContextStream,
	}
	return unary, stream
}

// recovered turns a panic into an Internal error for the caller and puts
// the panic on the call's log line, not in the response.
func recovered(ctx context.Context, p any) error {
	logging.AddFields(ctx, logging.Fields{"panic", p})
	return status.Error(codes.Internal, "internal error")
}

// slogAdapter writes the logging interceptor's lines through logger with
// the platform's fixed keys.
func slogAdapter(logger *slog.Logger) logging.Logger {
	rename := map[string]string{
		"grpc.code":  "code",
		"grpc.error": "error",
	}
	drop := map[string]bool{
		"protocol": true, "grpc.start_time": true, "grpc.request.deadline": true,
		"grpc.time_ms": true, "peer.address": true,
	}
	return logging.LoggerFunc(func(ctx context.Context, level logging.Level, msg string, fields ...any) {
		attrs := make([]slog.Attr, 0, len(fields)/2)
		for i := 0; i+1 < len(fields); i += 2 {
			key, _ := fields[i].(string)
			if drop[key] {
				continue
			}
			if to, ok := rename[key]; ok {
				key = to
			}
			attrs = append(attrs, slog.Any(key, fields[i+1]))
		}
		logger.LogAttrs(ctx, slog.Level(level), msg, attrs...)
	})
}

// retryAfterSeconds rounds a wait up to whole seconds, at least one, the
// unit of the HTTP Retry-After header.
func retryAfterSeconds(d time.Duration) string {
	return strconv.Itoa(max(1, int(math.Ceil(d.Seconds()))))
}
