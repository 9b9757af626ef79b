package proxy_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"connectrpc.com/connect/v2/connecthttp"
	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoregistry"

	"example.com/rampart/gateway/internal/edge"
	"example.com/rampart/gateway/internal/proxy"
	"example.com/rampart/platform/accesstoken"
	"example.com/rampart/platform/jwks/jwkstest"
	"example.com/rampart/platform/policy"
	"example.com/rampart/platform/ratelimit"
	"example.com/rampart/platform/telemetry"
	"example.com/rampart/platform/txntoken"
	orderv1 "example.com/rampart/proto/order/v1"
	_ "example.com/rampart/proto/payment/v1"
	_ "example.com/rampart/proto/user/v1"
)

const (
	benchIssuer   = "https://issuer.example"
	benchAudience = "rampart"
	benchOrderID  = "0193a7b0-54f8-7c3e-9d2a-6f1e2c3d4b5a"
)

// BenchmarkGetOrder serves one GetOrder call, Connect with JSON, through
// the edge and every check of the proxy, in process: header allowlist,
// access-token verification, policy, both rate limits, protovalidate and
// the minting of a transaction token, up to an upstream that answers at
// once without a network. The log line is formatted, then discarded.
func BenchmarkGetOrder(b *testing.B) {
	handler, token := benchGateway(b)
	body := `{"orderId":"` + benchOrderID + `"}`
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequestWithContext(b.Context(), http.MethodPost,
			"/order.v1.OrderService/GetOrder", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
}

// benchGateway returns the gateway's public handler in front of upstreams
// that answer every call with an empty order, and an access token it
// accepts.
func benchGateway(b *testing.B) (http.Handler, string) {
	b.Helper()
	set, err := policy.Load(spiffeid.RequireTrustDomainFromString("rampart.local"),
		protoregistry.GlobalFiles)
	if err != nil {
		b.Fatal(err)
	}
	accessKeys, _ := jwkstest.KeySet(b, jose.ES256)
	issuer, err := accesstoken.NewIssuer(accesstoken.IssuerConfig{
		Issuer: benchIssuer, Audience: benchAudience, Signer: accessKeys,
	})
	if err != nil {
		b.Fatal(err)
	}
	token, _, err := issuer.Issue(accesstoken.Request{
		Subject: "user-1", SessionID: "session-1", Scopes: []string{"orders:read"},
	})
	if err != nil {
		b.Fatal(err)
	}
	// The gateway remembers the tokens it verified; a client's second
	// call, and every later one, skips the signature check.
	verifier, err := accesstoken.NewVerifier(accesstoken.VerifierConfig{
		Issuer: benchIssuer, Audience: benchAudience, Keys: accessKeys, Remember: 10_000,
	})
	if err != nil {
		b.Fatal(err)
	}
	txnKeys, _ := jwkstest.KeySet(b, jose.EdDSA)
	minter, err := txntoken.NewMinter(txntoken.MinterConfig{
		Signer: txnKeys, TrustDomain: "rampart.local", Workload: "spiffe://rampart.local/gateway",
		Issuer: "spiffe://rampart.local/gateway",
	})
	if err != nil {
		b.Fatal(err)
	}
	tel, err := telemetry.New(b.Context(), telemetry.Config{
		Service: "gateway", LogOutput: io.Discard, DisableOTLP: true,
	})
	if err != nil {
		b.Fatal(err)
	}
	unlimited := ratelimit.Config{Rate: 1e9, Burst: 1e9}
	upstream := answering{&orderv1.GetOrderResponse{Order: &orderv1.Order{OrderId: benchOrderID}}}
	api, err := proxy.NewServer(proxy.Config{
		Policy: set,
		Upstreams: map[string]grpc.ClientConnInterface{
			"user": upstream, "order": upstream, "payment": upstream,
		},
		AccessTokens:   verifier,
		Revocations:    neverRevoked{},
		Minter:         minter,
		UserLimits:     ratelimit.New(unlimited),
		IPLimits:       ratelimit.New(unlimited),
		Logger:         tel.Logger,
		TracerProvider: tel.TracerProvider,
		MeterProvider:  tel.MeterProvider,
		Propagator:     tel.Propagator,
	})
	if err != nil {
		b.Fatal(err)
	}
	mux := http.NewServeMux()
	connecthttp.Mount(mux, api)
	return edge.Wrap(mux, edge.Config{}), token
}

// answering is an upstream that answers every unary call with a copy of
// its response.
type answering struct{ response proto.Message }

func (a answering) Invoke(_ context.Context, _ string, _, reply any, _ ...grpc.CallOption) error {
	msg, ok := reply.(proto.Message)
	if !ok {
		return errors.New("reply is not a proto message")
	}
	proto.Merge(msg, a.response)
	return nil
}

func (a answering) NewStream(context.Context, *grpc.StreamDesc, string, ...grpc.CallOption,
) (grpc.ClientStream, error) {
	return nil, errors.New("streams are not served")
}

type neverRevoked struct{}

func (neverRevoked) Revoked(string) (revoked, ok bool) { return false, true }
