package grpcserver

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/reflect/protoregistry"

	"example.com/rampart/platform/devpki"
	"example.com/rampart/platform/jwks/jwkstest"
	"example.com/rampart/platform/policy"
	"example.com/rampart/platform/ratelimit"
	"example.com/rampart/platform/telemetry"
	"example.com/rampart/platform/txntoken"
	orderv1 "example.com/rampart/proto/order/v1"
)

// BenchmarkUnaryChain runs one GetOrder call through every interceptor of
// a workload's server, in process, to a handler that does nothing: the
// log line (formatted, then discarded), the deadline cap, peer
// authorization, transaction-token verification, the rate limit,
// protovalidate and the transaction-context check. The transport, TLS and
// the tracing stats handler are not part of it.
func BenchmarkUnaryChain(b *testing.B) {
	ctx, handler, req := benchChain(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := handler(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

// benchChain returns the composed chain in front of a no-op handler, the
// context of a call from the gateway that carries a valid transaction
// token, and its request.
func benchChain(b *testing.B) (context.Context, grpc.UnaryHandler, *orderv1.GetOrderRequest) {
	b.Helper()
	const orderID = "0193a7b0-54f8-7c3e-9d2a-6f1e2c3d4b5a"
	td := spiffeid.RequireTrustDomainFromString("rampart.local")
	gateway := spiffeid.RequireFromSegments(td, policy.Gateway)
	set, err := policy.Load(td, protoregistry.GlobalFiles)
	if err != nil {
		b.Fatal(err)
	}
	keys, _ := jwkstest.KeySet(b, jose.EdDSA)
	minter, err := txntoken.NewMinter(txntoken.MinterConfig{
		Signer: keys, TrustDomain: td.Name(), Workload: gateway.String(), Issuer: gateway.String(),
		Lifetime: txntoken.MaxLifetime,
	})
	if err != nil {
		b.Fatal(err)
	}
	verifier, err := txntoken.NewVerifier(txntoken.VerifierConfig{
		Keys: keys, TrustDomain: td.Name(), Issuer: gateway.String(),
	})
	if err != nil {
		b.Fatal(err)
	}
	tel, err := telemetry.New(b.Context(), telemetry.Config{
		Service: "order", LogOutput: io.Discard, DisableOTLP: true,
	})
	if err != nil {
		b.Fatal(err)
	}
	cfg := Config{
		Policy: set, Tokens: verifier, Telemetry: tel,
		Limiter: ratelimit.New(ratelimit.Config{Rate: 1e9, Burst: 1e9}),
	}.withDefaults()
	unary, _ := chain(cfg)

	info := &grpc.UnaryServerInfo{FullMethod: "/order.v1.OrderService/GetOrder"}
	handler := composeUnary(unary, info, func(context.Context, any) (any, error) {
		return &orderv1.GetOrderResponse{}, nil
	})

	ca, err := devpki.NewCA(td)
	if err != nil {
		b.Fatal(err)
	}
	svid, err := ca.IssueSVID(policy.Gateway, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	tok, err := minter.Mint(txntoken.Request{
		Subject: "user-1", SessionID: "session-1", Scopes: []string{"orders:read"},
		ClientIP: "192.0.2.1", Context: map[string]string{"order_id": orderID},
	})
	if err != nil {
		b.Fatal(err)
	}
	state := tls.ConnectionState{HandshakeComplete: true, PeerCertificates: svid.Certificates}
	ctx := peer.NewContext(b.Context(), &peer.Peer{
		Addr:     &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000},
		AuthInfo: credentials.TLSInfo{State: state},
	})
	ctx = metadata.NewIncomingContext(ctx, metadata.Pairs(txntoken.MetadataKey, tok.Raw))
	return ctx, handler, &orderv1.GetOrderRequest{OrderId: orderID}
}

// composeUnary nests interceptors around handler as gRPC's chain does: the
// first one listed runs first.
func composeUnary(interceptors []grpc.UnaryServerInterceptor, info *grpc.UnaryServerInfo,
	handler grpc.UnaryHandler,
) grpc.UnaryHandler {
	for _, interceptor := range slices.Backward(interceptors) {
		next := handler
		handler = func(ctx context.Context, req any) (any, error) {
			return interceptor(ctx, req, info, next)
		}
	}
	return handler
}

// BenchmarkValidate checks a CreateOrder request of two items with the
// protovalidate validator a workload's server uses by default.
func BenchmarkValidate(b *testing.B) {
	req := &orderv1.CreateOrderRequest{
		Items: []*orderv1.ItemRequest{
			{Sku: "TEA-GREEN-100G", Quantity: 2},
			{Sku: "MUG-STONEWARE", Quantity: 1},
		},
		PaymentMethod:  "tok_visa",
		IdempotencyKey: "0193a7b0-54f8-7c3e-9d2a-6f1e2c3d4b5a",
	}
	validator := Config{}.withDefaults().Validator
	if err := validator.Validate(req); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := validator.Validate(req); err != nil {
			b.Fatal(err)
		}
	}
}
