package orderrpc_test

import (
	"context"
	"sync"
	"testing"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"example.com/rampart/platform/txntoken"
	orderv1 "example.com/rampart/proto/order/v1"
	paymentv1 "example.com/rampart/proto/payment/v1"
	userv1 "example.com/rampart/proto/user/v1"
	"example.com/rampart/services/order/internal/catalog"
	"example.com/rampart/services/order/internal/orderrpc"
	"example.com/rampart/services/order/internal/orderstore/orderstoretest"
)

// The handlers are tested against in-process fakes of the user and
// payment clients: the generated client interfaces, answering as the
// services' contracts say. The transport and its checks are the
// platform's, tested there.

// fakeUsers answers GetUser like the user service: for the token's
// subject only, NotFound for an account it does not hold.
type fakeUsers struct {
	userv1.UserServiceClient // other methods are never called

	mu    sync.Mutex
	known map[string]bool
	err   error // returned instead, when set
	calls int
}

func (f *fakeUsers) add(user string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.known[user] = true
}

func (f *fakeUsers) GetUser(ctx context.Context, req *userv1.GetUserRequest,
	_ ...grpc.CallOption) (*userv1.GetUserResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	tok, ok := txntoken.FromContext(ctx)
	if !ok || tok.Claims.Subject != req.GetUserId() {
		return nil, status.Error(codes.PermissionDenied, "permission denied")
	}
	if f.err != nil {
		return nil, f.err
	}
	if !f.known[req.GetUserId()] {
		return nil, status.Error(codes.NotFound, "user not found")
	}
	return &userv1.GetUserResponse{User: &userv1.User{UserId: req.GetUserId()}}, nil
}

// fakePayments answers RefundPayment with a refunded payment, or with err.
type fakePayments struct {
	paymentv1.PaymentServiceClient // other methods are never called

	mu       sync.Mutex
	err      error
	status   paymentv1.PaymentStatus // of the answer; zero means REFUNDED
	onRefund func()                  // called during each refund, when set
	refunds  []refundCall
}

type refundCall struct {
	OrderID string
	Subject string // of the forwarded transaction token
}

func (f *fakePayments) RefundPayment(ctx context.Context, req *paymentv1.RefundPaymentRequest,
	_ ...grpc.CallOption) (*paymentv1.RefundPaymentResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	call := refundCall{OrderID: req.GetOrderId()}
	if tok, ok := txntoken.FromContext(ctx); ok {
		call.Subject = tok.Claims.Subject
	}
	f.refunds = append(f.refunds, call)
	if f.onRefund != nil {
		f.onRefund()
	}
	if f.err != nil {
		return nil, f.err
	}
	st := f.status
	if st == paymentv1.PaymentStatus_PAYMENT_STATUS_UNSPECIFIED {
		st = paymentv1.PaymentStatus_PAYMENT_STATUS_REFUNDED
	}
	payment := &paymentv1.Payment{OrderId: req.GetOrderId(), Status: st}
	return &paymentv1.RefundPaymentResponse{Payment: payment}, nil
}

func (f *fakePayments) calls() []refundCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]refundCall(nil), f.refunds...)
}

// fakeStream is the server side of a WatchOrder stream: it hands every
// message sent to the test.
type fakeStream struct {
	grpc.ServerStream // only Context and Send are called
	//nolint:containedctx // a stream carries its call's context, as a real one does
	ctx  context.Context
	sent chan *orderv1.WatchOrderResponse
}

func (s *fakeStream) Context() context.Context { return s.ctx }

func (s *fakeStream) Send(m *orderv1.WatchOrderResponse) error {
	select {
	case s.sent <- m:
		return nil
	case <-s.ctx.Done():
		return status.FromContextError(s.ctx.Err()).Err()
	}
}

// env is an order server on its own database, with fakes around it.
type env struct {
	*orderstoretest.Fixture
	server   *orderrpc.OrderServer
	users    *fakeUsers
	payments *fakePayments
}

func newEnv(t *testing.T, cfg orderrpc.Config) *env {
	t.Helper()
	e := &env{
		Fixture:  orderstoretest.New(t),
		users:    &fakeUsers{known: map[string]bool{}},
		payments: &fakePayments{},
	}
	cfg.Store, cfg.Catalog, cfg.Users, cfg.Payments = e.Store, catalog.Default(), e.users, e.payments
	var err error
	if e.server, err = orderrpc.NewOrderServer(cfg); err != nil {
		t.Fatal(err)
	}
	return e
}

// user returns a new account and the context of a call made for it.
func (e *env) user(t *testing.T) (string, context.Context) {
	t.Helper()
	id := uuid.NewString()
	e.users.add(id)
	return id, orderstoretest.UserContext(t.Context(), id)
}

// order places an order for a new account and returns it.
func (e *env) order(t *testing.T) (*orderv1.Order, context.Context) {
	t.Helper()
	_, ctx := e.user(t)
	resp, err := e.server.CreateOrder(ctx, createRequest("order-"+uuid.NewString()))
	if err != nil {
		t.Fatalf("CreateOrder: %v", err)
	}
	return resp.GetOrder(), ctx
}

func createRequest(key string) *orderv1.CreateOrderRequest {
	return &orderv1.CreateOrderRequest{
		Items: []*orderv1.ItemRequest{
			{Sku: "TEA-GREEN-100G", Quantity: 3},
			{Sku: "MUG-STONEWARE", Quantity: 1},
		},
		PaymentMethod:  "tok_visa",
		IdempotencyKey: key,
	}
}
