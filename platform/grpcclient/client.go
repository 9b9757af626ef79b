// Package grpcclient dials other workloads: mutual TLS with the caller's
// SVID, the server's SPIFFE ID checked exactly, and the transaction token
// and trace context of the caller's request carried to the next hop.
package grpcclient

import (
	"context"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"

	"example.com/rampart/platform/identity"
	"example.com/rampart/platform/telemetry"
	"example.com/rampart/platform/txntoken"
)

// Config is what a client needs to dial.
type Config struct {
	// Identity provides the client's SVID and the trust bundle the
	// server's certificate must chain to.
	Identity identity.Source
	// Telemetry provides tracing and metrics for outgoing calls.
	Telemetry *telemetry.Telemetry
}

// Dial returns a connection to target (host:port) that only talks to the
// workload server. Connections are made lazily and re-made as needed;
// the returned conn is meant to be shared for the life of the process.
func Dial(target string, server spiffeid.ID, cfg Config) (*grpc.ClientConn, error) {
	tel := cfg.Telemetry
	conn, err := grpc.NewClient(target,
		grpc.WithTransportCredentials(
			credentials.NewTLS(identity.ClientTLSConfig(cfg.Identity, server))),
		grpc.WithStatsHandler(otelgrpc.NewClientHandler(
			otelgrpc.WithTracerProvider(tel.TracerProvider),
			otelgrpc.WithMeterProvider(tel.MeterProvider),
			otelgrpc.WithPropagators(tel.Propagator),
		)),
		grpc.WithChainUnaryInterceptor(forwardTokenUnary),
		grpc.WithChainStreamInterceptor(forwardTokenStream),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time:                30 * time.Second,
			Timeout:             10 * time.Second,
			PermitWithoutStream: true,
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("dialing %s at %s: %w", server, target, err)
	}
	return conn, nil
}

// withToken forwards, unchanged, the transaction token of the request the
// caller is serving. A call made outside any transaction carries none and
// will be refused by the server, as it should.
func withToken(ctx context.Context) context.Context {
	tok, ok := txntoken.FromContext(ctx)
	if !ok {
		return ctx
	}
	md, _ := metadata.FromOutgoingContext(ctx)
	if len(md.Get(txntoken.MetadataKey)) > 0 {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, txntoken.MetadataKey, tok.Raw)
}

func forwardTokenUnary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn,
	invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	return invoker(withToken(ctx), method, req, reply, cc, opts...)
}

func forwardTokenStream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string,
	streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return streamer(withToken(ctx), desc, cc, method, opts...)
}
