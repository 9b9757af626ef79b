package grpcserver_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoregistry"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"example.com/rampart/platform/devpki"
	"example.com/rampart/platform/grpcserver"
	"example.com/rampart/platform/identity"
	"example.com/rampart/platform/jwks"
	"example.com/rampart/platform/jwks/jwkstest"
	"example.com/rampart/platform/policy"
	"example.com/rampart/platform/ratelimit"
	"example.com/rampart/platform/telemetry"
	"example.com/rampart/platform/telemetry/telemetrytest"
	"example.com/rampart/platform/txntoken"
	orderv1 "example.com/rampart/proto/order/v1"
)

const (
	trustDomain = "rampart.local"
	orderA      = "0193a7b0-54f8-7c3e-9d2a-6f1e2c3d4b5a"
	orderB      = "0193a7b0-54f8-7c3e-9d2a-6f1e2c3d4b5b"
)

// fakeOrders serves GetOrder and WatchOrder, counting the calls that reach
// it, and panics on CancelOrder.
type fakeOrders struct {
	orderv1.UnimplementedOrderServiceServer
	calls    atomic.Int64
	deadline atomic.Pointer[time.Duration]
}

func (f *fakeOrders) GetOrder(
	ctx context.Context, req *orderv1.GetOrderRequest,
) (*orderv1.GetOrderResponse, error) {
	f.calls.Add(1)
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		f.deadline.Store(&left)
	}
	tok, _ := txntoken.FromContext(ctx)
	order := &orderv1.Order{OrderId: req.GetOrderId(), FailureReason: tok.Claims.Subject}
	return &orderv1.GetOrderResponse{Order: order}, nil
}

func (f *fakeOrders) CancelOrder(
	context.Context, *orderv1.CancelOrderRequest,
) (*orderv1.CancelOrderResponse, error) {
	f.calls.Add(1)
	panic("database on fire at /var/lib/secret.db")
}

func (f *fakeOrders) WatchOrder(
	req *orderv1.WatchOrderRequest, stream grpc.ServerStreamingServer[orderv1.WatchOrderResponse],
) error {
	f.calls.Add(1)
	order := &orderv1.Order{OrderId: req.GetOrderId()}
	return stream.Send(&orderv1.WatchOrderResponse{Order: order})
}

// fixture is an order server on 127.0.0.1 with the platform's chain, the
// identities of three callers, and a minter of transaction tokens.
type fixture struct {
	addr     string
	orders   *fakeOrders
	ca       *devpki.CA
	minter   *txntoken.Minter
	other    *txntoken.Minter // keys the server does not trust
	logs     *telemetrytest.Logs
	metrics  http.Handler
	td       spiffeid.TrustDomain
	serverID spiffeid.ID
}

func newFixture(t *testing.T, limiter *ratelimit.Limiter) *fixture {
	t.Helper()
	td := spiffeid.RequireTrustDomainFromString(trustDomain)
	ca, err := devpki.NewCA(td)
	if err != nil {
		t.Fatal(err)
	}
	set, err := policy.Load(td, protoregistry.GlobalFiles)
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := jwkstest.KeySet(t)
	otherKeys, _ := jwkstest.KeySet(t)
	gateway := "spiffe://" + trustDomain + "/gateway"
	newMinter := func(keys *jwks.KeySet) *txntoken.Minter {
		m, err := txntoken.NewMinter(txntoken.MinterConfig{
			Signer: keys, TrustDomain: trustDomain, Workload: gateway, Issuer: gateway,
		})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	verifier, err := txntoken.NewVerifier(txntoken.VerifierConfig{
		Keys: keys, TrustDomain: trustDomain, Issuer: gateway,
	})
	if err != nil {
		t.Fatal(err)
	}
	logs := &telemetrytest.Logs{}
	tel, err := telemetry.New(t.Context(), telemetry.Config{
		Service: "order", LogOutput: logs, DisableOTLP: true,
	})
	if err != nil {
		t.Fatal(err)
	}

	srv := grpcserver.New(grpcserver.Config{
		Identity:         source(t, ca, "order"),
		Policy:           set,
		Tokens:           verifier,
		Telemetry:        tel,
		Limiter:          limiter,
		MaxUnaryDeadline: 2 * time.Second,
	})
	orders := &fakeOrders{}
	orderv1.RegisterOrderServiceServer(srv, orders)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return &fixture{
		addr: ln.Addr().String(), orders: orders, ca: ca, logs: logs, td: td,
		metrics: tel.MetricsHandler,
		minter:  newMinter(keys), other: newMinter(otherKeys),
		serverID: spiffeid.RequireFromSegments(td, "order"),
	}
}

func source(t *testing.T, ca *devpki.CA, name string) identity.Source {
	t.Helper()
	src, err := ca.Source(name, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// client dials the fixture's server as the workload name.
func (f *fixture) client(t *testing.T, name string) orderv1.OrderServiceClient {
	t.Helper()
	creds := credentials.NewTLS(identity.ClientTLSConfig(source(t, f.ca, name), f.serverID))
	conn, err := grpc.NewClient(f.addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return orderv1.NewOrderServiceClient(conn)
}

func (f *fixture) token(t *testing.T, m *txntoken.Minter, req txntoken.Request) context.Context {
	t.Helper()
	tok, err := m.Mint(req)
	if err != nil {
		t.Fatal(err)
	}
	return metadata.AppendToOutgoingContext(t.Context(), txntoken.MetadataKey, tok.Raw)
}

func userToken(subject, orderID string, scopes ...string) txntoken.Request {
	return txntoken.Request{
		Subject: subject, SessionID: "s-" + subject, Scopes: scopes, ClientIP: "192.0.2.7",
		Context: map[string]string{"order_id": orderID},
	}
}

//nolint:tparallel // The subtests count the calls reaching one shared server, one call at a time.
func TestChecksBeforeTheHandler(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	valid := userToken("alice", orderA, "orders:read")
	tests := []struct {
		name     string
		caller   string
		minter   *txntoken.Minter
		token    *txntoken.Request
		orderID  string
		wantCode codes.Code
	}{
		{"allowed", "gateway", f.minter, &valid, orderA, codes.OK},
		{"workload not a caller", "payment", f.minter, &valid, orderA, codes.PermissionDenied},
		{"no transaction token", "gateway", nil, nil, orderA, codes.Unauthenticated},
		{"token from other keys", "gateway", f.other, &valid, orderA, codes.Unauthenticated},
		{"anonymous", "gateway", f.minter, &txntoken.Request{Scopes: nil, ClientIP: "192.0.2.7",
			Context: map[string]string{"order_id": orderA}}, orderA, codes.PermissionDenied},
		{"scope missing", "gateway", f.minter, new(userToken("alice", orderA, "orders:write")),
			orderA, codes.PermissionDenied},
		{"another order than the transaction's", "gateway", f.minter, &valid, orderB,
			codes.PermissionDenied},
		{"invalid request", "gateway", f.minter, new(userToken("alice", "nope", "orders:read")),
			"nope", codes.InvalidArgument},
	}
	for _, tt := range tests { //nolint:paralleltest // They count the calls on one shared server.
		t.Run(tt.name, func(t *testing.T) {
			before := f.orders.calls.Load()
			ctx := t.Context()
			if tt.token != nil {
				ctx = f.token(t, tt.minter, *tt.token)
			}
			_, err := f.client(t, tt.caller).GetOrder(ctx, &orderv1.GetOrderRequest{OrderId: tt.orderID})
			if got := status.Code(err); got != tt.wantCode {
				t.Fatalf("code %v (%v), want %v", got, err, tt.wantCode)
			}
			ran := f.orders.calls.Load() - before
			if want := int64(0); tt.wantCode != codes.OK && ran != want {
				t.Errorf("the handler ran %d times for a refused call", ran)
			}
			refused := tt.wantCode == codes.PermissionDenied || tt.wantCode == codes.Unauthenticated
			if refused {
				msg := status.Convert(err).Message()
				if strings.Contains(msg, "policy") || strings.Contains(msg, "txntoken") {
					t.Errorf("the refusal tells the caller why: %q", msg)
				}
			}
			// A gateway tells the platform's refusals from a handler's answers.
			if got := grpcserver.IsDenial(status.Convert(err)); got != refused {
				t.Errorf("IsDenial = %v, want %v", got, refused)
			}
		})
	}
}

func TestInvalidArgumentCarriesViolations(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	ctx := f.token(t, f.minter, userToken("alice", "not-a-uuid", "orders:read"))
	_, err := f.client(t, "gateway").GetOrder(ctx, &orderv1.GetOrderRequest{OrderId: "not-a-uuid"})
	st := status.Convert(err)
	if st.Code() != codes.InvalidArgument {
		t.Fatalf("code %v, want InvalidArgument", st.Code())
	}
	var fields []string
	for _, d := range st.Details() {
		if v, ok := d.(*validate.Violations); ok {
			for _, violation := range v.GetViolations() {
				fields = append(fields, violation.GetField().GetElements()[0].GetFieldName())
			}
		}
	}
	if diff := cmp.Diff([]string{"order_id"}, fields); diff != "" {
		t.Errorf("violated fields (-want +got):\n%s", diff)
	}
}

func TestMethodWithoutPolicyIsRefused(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	creds := credentials.NewTLS(identity.ClientTLSConfig(source(t, f.ca, "gateway"), f.serverID))
	conn, err := grpc.NewClient(f.addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := f.token(t, f.minter, userToken("alice", orderA, "orders:read"))
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("health check without a policy: %v, want PermissionDenied", err)
	}
}

func TestFloodFromOneUserSparesOthers(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ratelimit.New(ratelimit.Config{Rate: 1, Burst: 3}))
	client := f.client(t, "gateway")
	call := func(user string) error {
		ctx := f.token(t, f.minter, userToken(user, orderA, "orders:read"))
		var header metadata.MD
		_, err := client.GetOrder(ctx, &orderv1.GetOrderRequest{OrderId: orderA}, grpc.Header(&header))
		if status.Code(err) == codes.ResourceExhausted {
			if got := header.Get(grpcserver.RetryAfterKey); len(got) != 1 || got[0] != "1" {
				t.Errorf("retry-after = %q, want [1]", got)
			}
			var retry *errdetails.RetryInfo
			for _, d := range status.Convert(err).Details() {
				if r, ok := d.(*errdetails.RetryInfo); ok {
					retry = r
				}
			}
			if retry == nil || retry.GetRetryDelay().AsDuration() <= 0 {
				t.Errorf("no RetryInfo detail in %v", err)
			}
		}
		return err
	}
	var limited int
	for range 10 {
		if status.Code(call("mallory")) == codes.ResourceExhausted {
			limited++
		}
	}
	if limited < 6 {
		t.Errorf("%d of 10 calls limited beyond a burst of 3, want at least 6", limited)
	}
	if err := call("alice"); err != nil {
		t.Errorf("another user was refused during the flood: %v", err)
	}
}

func TestDeadlineIsCapped(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	token := f.token(t, f.minter, userToken("alice", orderA, "orders:read"))
	ctx, cancel := context.WithTimeout(token, time.Hour)
	defer cancel()
	if _, err := f.client(t, "gateway").GetOrder(ctx, &orderv1.GetOrderRequest{OrderId: orderA}); err != nil {
		t.Fatal(err)
	}
	if left := *f.orders.deadline.Load(); left > 2*time.Second {
		t.Errorf("handler had %v left of an hour's deadline, want at most the 2s cap", left)
	}
}

func TestPanicIsMaskedAndLogged(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	ctx := f.token(t, f.minter, userToken("alice", orderA, "orders:write"))
	_, err := f.client(t, "gateway").CancelOrder(ctx, &orderv1.CancelOrderRequest{OrderId: orderA})
	st := status.Convert(err)
	if st.Code() != codes.Internal || strings.Contains(st.Message(), "secret") {
		t.Fatalf("got %v %q, want Internal with nothing of the panic", st.Code(), st.Message())
	}
	line := lastCall(t, f, "/order.v1.OrderService/CancelOrder")
	if !strings.Contains(line["panic"].(string), "database on fire") {
		t.Errorf("the panic is not on the call's log line: %v", line)
	}
}

//nolint:tparallel // The subtests count the calls reaching one shared server, one call at a time.
func TestStreamsPassTheSameChecks(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	tests := []struct {
		name     string
		caller   string
		orderID  string
		wantCode codes.Code
	}{
		{"allowed", "gateway", orderA, codes.OK},
		{"workload not a caller", "user", orderA, codes.PermissionDenied},
		{"another order than the transaction's", "gateway", orderB, codes.PermissionDenied},
		{"invalid request", "gateway", "x", codes.InvalidArgument},
	}
	for _, tt := range tests { //nolint:paralleltest // They count the calls on one shared server.
		t.Run(tt.name, func(t *testing.T) {
			before := f.orders.calls.Load()
			ctx := f.token(t, f.minter, userToken("alice", orderA, "orders:read"))
			stream, err := f.client(t, tt.caller).WatchOrder(ctx, &orderv1.WatchOrderRequest{OrderId: tt.orderID})
			if err == nil {
				for err == nil {
					_, err = stream.Recv()
				}
				if errors.Is(err, io.EOF) {
					err = nil
				}
			}
			if got := status.Code(err); got != tt.wantCode {
				t.Fatalf("code %v (%v), want %v", got, err, tt.wantCode)
			}
			if tt.wantCode == codes.PermissionDenied && f.orders.calls.Load() != before {
				t.Error("the handler ran for a refused stream")
			}
		})
	}
}

func TestOneAuditedLogLinePerCall(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	ctx := f.token(t, f.minter, userToken("alice", orderA, "orders:read"))
	_, _ = f.client(t, "payment").GetOrder(ctx, &orderv1.GetOrderRequest{OrderId: orderA})
	line := lastCall(t, f, "/order.v1.OrderService/GetOrder")
	want := map[string]any{
		"code": "PermissionDenied", "audit": "denied",
		"peer_id": "spiffe://rampart.local/payment", "service": "order",
	}
	got := map[string]any{}
	for k := range want {
		got[k] = line[k]
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("log line (-want +got):\n%s", diff)
	}
	if !strings.Contains(line["reason"].(string), "may not call") {
		t.Errorf("reason %q does not say why", line["reason"])
	}
	if strings.Contains(f.logs.String(), "eyJ") {
		t.Error("a token was logged")
	}
}

// lastCall returns the last log line of a call to method.
func lastCall(t *testing.T, f *fixture, method string) map[string]any {
	t.Helper()
	var found map[string]any
	for _, line := range f.logs.Lines(t) {
		if line["msg"] == "finished call" && line["method"] == method {
			found = line
		}
	}
	if found == nil {
		t.Fatalf("no log line for %s in:\n%s", method, f.logs.String())
	}
	return found
}
