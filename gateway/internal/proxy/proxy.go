// Package proxy serves the platform's public methods to the outside world
// over Connect, gRPC and gRPC-Web, and forwards each call over mutual TLS
// gRPC to the workload that serves it.
//
// The methods come from the descriptors: every method whose policy marks
// it public is served, with its request and response types looked up by
// name, so a new public method needs a .proto change and nothing here. A
// method that is not public is not served at all.
//
// Each call passes, in this order: tracing, one log line, panic recovery,
// access-token verification, the method's policy, the per-user and
// per-client-address rate limits, protovalidate, and only then is a
// transaction token minted and the call forwarded. The external access
// token never leaves the gateway.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"buf.build/go/protovalidate"
	"connectrpc.com/connect/v2"
	"connectrpc.com/otelconnect"
	"connectrpc.com/validate"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"example.com/rampart/platform/accesstoken"
	"example.com/rampart/platform/policy"
	"example.com/rampart/platform/ratelimit"
	"example.com/rampart/platform/txntoken"
)

// AccessVerifier verifies end users' access tokens.
type AccessVerifier interface {
	Verify(ctx context.Context, raw string) (*accesstoken.Claims, error)
}

// Revocations tells whether a session has been revoked.
type Revocations interface {
	// Revoked reports whether the session was revoked, and, in ok,
	// whether the answer can be trusted: it cannot while the revocations
	// are still being loaded, and the call is then refused as unavailable.
	Revoked(sessionID string) (revoked, ok bool)
}

// Minter mints transaction tokens.
type Minter interface {
	Mint(req txntoken.Request) (*txntoken.Token, error)
}

// Config is what the proxy needs. Every field but the timeouts is required.
type Config struct {
	Policy *policy.Set
	// Upstreams holds a connection to each workload that serves public
	// methods, keyed by workload name.
	Upstreams map[string]grpc.ClientConnInterface
	// AccessTokens verifies the Authorization header's bearer token.
	AccessTokens AccessVerifier
	// Revocations lists the sessions whose tokens must be refused.
	Revocations Revocations
	// Minter mints the transaction token of each forwarded call.
	Minter Minter
	// UserLimits limits each signed-in user, IPLimits each client address.
	UserLimits, IPLimits *ratelimit.Limiter
	Validator            protovalidate.Validator
	Logger               *slog.Logger
	TracerProvider       trace.TracerProvider
	MeterProvider        metric.MeterProvider
	Propagator           propagation.TextMapPropagator
	// MaxUnaryTimeout and MaxStreamTimeout cap the time a call may take,
	// whatever the client asked for: 10s and 10m by default.
	MaxUnaryTimeout, MaxStreamTimeout time.Duration
}

// NewServer returns a Connect server with every public method registered,
// ready to be mounted with connecthttp.
func NewServer(cfg Config) (*connect.Server, error) {
	if cfg.MaxUnaryTimeout <= 0 {
		cfg.MaxUnaryTimeout = 10 * time.Second
	}
	if cfg.MaxStreamTimeout <= 0 {
		cfg.MaxStreamTimeout = 10 * time.Minute
	}
	tracing, err := otelconnect.NewServerInterceptor(
		otelconnect.WithTracerProvider(cfg.TracerProvider),
		otelconnect.WithMeterProvider(cfg.MeterProvider),
		otelconnect.WithPropagator(cfg.Propagator),
	)
	if err != nil {
		return nil, fmt.Errorf("setting up tracing: %w", err)
	}
	c := &checks{cfg: cfg}

	// The order matters. Tracing comes first so that the log line and
	// every check below happen inside the call's span. Recovery wraps
	// everything that runs our code. Authentication reads only headers,
	// so a caller without valid credentials costs no decoding; the policy
	// check needs the verified user, and the limiter keys on that user, so
	// they follow in that order. Validation runs last, on the decoded
	// request, because it is the costliest check.
	server := connect.NewServer(
		tracing,
		c.observe,
		c.recover,
		c.authenticate,
		c.authorize,
		c.limit,
		validate.NewServerInterceptor(validate.WithValidator(cfg.Validator)),
	)
	methods, err := publicMethods(cfg)
	if err != nil {
		return nil, err
	}
	server.Register(methods...)
	return server, nil
}

// publicMethods builds a forwarding method for every public method.
func publicMethods(cfg Config) ([]connect.Method, error) {
	var methods []connect.Method
	var errs []error
	for m := range cfg.Policy.Methods() {
		if !m.Public {
			continue
		}
		upstream, ok := cfg.Upstreams[m.ServerName]
		if !ok {
			errs = append(errs, fmt.Errorf("no upstream for workload %q, which serves %s", m.ServerName, m.Procedure))
			continue
		}
		route, err := newRoute(cfg, m, upstream)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		methods = append(methods, connect.Method{Spec: route.spec(), Handler: route.serve})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return methods, nil
}

// messageType finds the Go type registered for a message descriptor.
func messageType(desc protoreflect.MessageDescriptor) (protoreflect.MessageType, error) {
	mt, err := protoregistry.GlobalTypes.FindMessageByName(desc.FullName())
	if err != nil {
		return nil, fmt.Errorf("finding message type %s: %w", desc.FullName(), err)
	}
	return mt, nil
}
