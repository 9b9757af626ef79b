package orderrpc_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"example.com/rampart/platform/txntoken"
	orderv1 "example.com/rampart/proto/order/v1"
	paymentv1 "example.com/rampart/proto/payment/v1"
	moneyv1 "example.com/rampart/proto/rampart/money/v1"
	"example.com/rampart/services/order/internal/catalog"
	"example.com/rampart/services/order/internal/orderrpc"
	"example.com/rampart/services/order/internal/orderstore"
)

func eur(amount int64) *moneyv1.Money { return &moneyv1.Money{CurrencyCode: "EUR", Amount: amount} }

// subject returns the user a call's context acts for.
func subject(t *testing.T, ctx context.Context) string {
	t.Helper()
	tok, ok := txntoken.FromContext(ctx)
	if !ok {
		t.Fatal("no transaction token in context")
	}
	return tok.Claims.Subject
}

// settle records the outcome of the order's payment, as the payment
// events do.
func (e *env) settle(t *testing.T, ctx context.Context, o *orderv1.Order, paid bool) {
	t.Helper()
	p := orderstore.Payment{OrderID: o.GetOrderId(), UserID: subject(t, ctx), Paid: paid,
		Currency: o.GetTotal().GetCurrencyCode(), Amount: o.GetTotal().GetAmount()}
	if !paid {
		p.FailureReason = "card declined"
	}
	if _, _, err := e.Store.SettlePayment(ctx, p); err != nil {
		t.Fatalf("settling payment: %v", err)
	}
}

// wantStatus fails the test unless err has code and message.
func wantStatus(t *testing.T, err error, code codes.Code, message string) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != code || (message != "" && st.Message() != message) {
		t.Errorf("error = %v, want %s %q", err, code, message)
	}
}

func TestListProducts(t *testing.T) {
	t.Parallel()
	c, err := catalog.New([]catalog.Product{
		{SKU: "TEA-GREEN-100G", Name: "Green tea", Price: 650},
		{SKU: "MUG-STONEWARE", Name: "Mug", Price: 1400},
	})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := orderrpc.NewCatalogServer(c).ListProducts(t.Context(), &orderv1.ListProductsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	want := &orderv1.ListProductsResponse{Products: []*orderv1.Product{
		{Sku: "TEA-GREEN-100G", Name: "Green tea", Price: eur(650)},
		{Sku: "MUG-STONEWARE", Name: "Mug", Price: eur(1400)},
	}}
	if diff := cmp.Diff(want, resp, protocmp.Transform()); diff != "" {
		t.Errorf("ListProducts (-want +got):\n%s", diff)
	}
}

func TestCreateOrder(t *testing.T) {
	t.Parallel()
	e := newEnv(t, orderrpc.Config{})
	user, ctx := e.user(t)

	resp, err := e.server.CreateOrder(ctx, createRequest("create-order-1"))
	if err != nil {
		t.Fatal(err)
	}
	// Prices come from the catalog: green tea 6.50, the mug 14.00.
	want := &orderv1.Order{
		OrderId: resp.GetOrder().GetOrderId(),
		Status:  orderv1.OrderStatus_ORDER_STATUS_PENDING_PAYMENT,
		Items: []*orderv1.LineItem{
			{Sku: "TEA-GREEN-100G", Name: "Green tea, 100 g", Quantity: 3, UnitPrice: eur(650), LineTotal: eur(1950)},
			{Sku: "MUG-STONEWARE", Name: "Stoneware mug", Quantity: 1, UnitPrice: eur(1400), LineTotal: eur(1400)},
		},
		Total: eur(3350),
	}
	if diff := cmp.Diff(want, resp.GetOrder(), protocmp.Transform(),
		protocmp.IgnoreFields(&orderv1.Order{}, "create_time", "update_time")); diff != "" {
		t.Errorf("CreateOrder (-want +got):\n%s", diff)
	}
	if _, err := uuid.Parse(resp.GetOrder().GetOrderId()); err != nil {
		t.Errorf("order id %q is not a UUID", resp.GetOrder().GetOrderId())
	}

	wantEvents := []proto.Message{&orderv1.OrderCreated{
		OrderId:       resp.GetOrder().GetOrderId(),
		UserId:        user,
		Total:         eur(3350),
		PaymentMethod: "tok_visa",
		CreateTime:    resp.GetOrder().GetCreateTime(),
	}}
	if diff := cmp.Diff(wantEvents, e.Events(t), protocmp.Transform()); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

func TestCreateOrderErrors(t *testing.T) {
	t.Parallel()
	unknownSKU := createRequest("unknown-sku")
	unknownSKU.Items = append(unknownSKU.Items, &orderv1.ItemRequest{Sku: "COFFEE-1KG", Quantity: 1})

	tests := []struct {
		name        string
		req         *orderv1.CreateOrderRequest
		ctx         func(t *testing.T, e *env) context.Context
		usersErr    error
		wantCode    codes.Code
		wantMessage string
	}{
		{
			name: "unknown sku", req: unknownSKU,
			wantCode: codes.InvalidArgument, wantMessage: `unknown sku "COFFEE-1KG"`,
		},
		{
			name: "account does not exist", req: createRequest("no-account"),
			ctx: func(t *testing.T, _ *env) context.Context {
				t.Helper()
				return contextFor(t, uuid.NewString())
			},
			wantCode: codes.FailedPrecondition, wantMessage: "account not found",
		},
		{
			name: "user service unavailable", req: createRequest("users-down"),
			usersErr: status.Error(codes.Unavailable, "connection refused"),
			wantCode: codes.Unavailable, wantMessage: "a service is unavailable; try again",
		},
		{
			name: "user service refuses", req: createRequest("users-refuse"),
			usersErr: status.Error(codes.PermissionDenied, "peer spiffe://x/y not allowed"),
			wantCode: codes.Internal, wantMessage: "internal error",
		},
		{
			name: "no signed-in user", req: createRequest("anonymous"),
			ctx: func(t *testing.T, _ *env) context.Context {
				t.Helper()
				return txntoken.NewContext(t.Context(), &txntoken.Token{Raw: "t",
					Claims: txntoken.Claims{Subject: txntoken.Anonymous}})
			},
			wantCode: codes.Unauthenticated,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, orderrpc.Config{})
			e.users.err = tt.usersErr
			_, ctx := e.user(t)
			if tt.ctx != nil {
				ctx = tt.ctx(t, e)
			}
			_, err := e.server.CreateOrder(ctx, tt.req)
			wantStatus(t, err, tt.wantCode, tt.wantMessage)
			if n := len(e.Events(t)); n != 0 {
				t.Errorf("a refused order enqueued %d events", n)
			}
		})
	}
}

func contextFor(t *testing.T, user string) context.Context {
	t.Helper()
	return txntoken.NewContext(t.Context(), &txntoken.Token{Raw: "t", Claims: txntoken.Claims{Subject: user}})
}

func TestCreateOrderIdempotency(t *testing.T) {
	t.Parallel()
	e := newEnv(t, orderrpc.Config{})
	_, ctx := e.user(t)
	first, err := e.server.CreateOrder(ctx, createRequest("idempotent-1"))
	if err != nil {
		t.Fatal(err)
	}

	again, err := e.server.CreateOrder(ctx, createRequest("idempotent-1"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(first, again, protocmp.Transform()); diff != "" {
		t.Errorf("retry returned another order (-first +retry):\n%s", diff)
	}

	changed := createRequest("idempotent-1")
	changed.Items[0].Quantity++
	_, err = e.server.CreateOrder(ctx, changed)
	wantStatus(t, err, codes.FailedPrecondition, "idempotency key reused with a different request")

	if n := len(e.Events(t)); n != 1 {
		t.Errorf("%d OrderCreated events, want 1", n)
	}
}

func TestGetOrder(t *testing.T) {
	t.Parallel()
	e := newEnv(t, orderrpc.Config{})
	o, ctx := e.order(t)
	_, strangerCtx := e.user(t)

	got, err := e.server.GetOrder(ctx, &orderv1.GetOrderRequest{OrderId: o.GetOrderId()})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(o, got.GetOrder(), protocmp.Transform()); diff != "" {
		t.Errorf("GetOrder (-created +got):\n%s", diff)
	}

	// Another user's order and a missing one fail alike, so that order ids
	// cannot be probed.
	_, errStranger := e.server.GetOrder(strangerCtx, &orderv1.GetOrderRequest{OrderId: o.GetOrderId()})
	_, errMissing := e.server.GetOrder(ctx, &orderv1.GetOrderRequest{OrderId: uuid.NewString()})
	wantStatus(t, errStranger, codes.NotFound, "order not found")
	if diff := cmp.Diff(status.Convert(errMissing).Proto(), status.Convert(errStranger).Proto(),
		protocmp.Transform()); diff != "" {
		t.Errorf("another user's order differs from a missing one (-missing +another's):\n%s", diff)
	}
}

func TestListOrders(t *testing.T) {
	t.Parallel()
	e := newEnv(t, orderrpc.Config{})
	_, ctx := e.user(t)
	var want []string
	for i := range 5 {
		resp, err := e.server.CreateOrder(ctx, createRequest(fmt.Sprintf("list-orders-%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		want = append([]string{resp.GetOrder().GetOrderId()}, want...) // newest first
	}
	e.order(t) // another user's

	var got []string
	var pages int
	req := &orderv1.ListOrdersRequest{PageSize: 2}
	for {
		resp, err := e.server.ListOrders(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, o := range resp.GetOrders() {
			got = append(got, o.GetOrderId())
		}
		if resp.GetNextPageToken() == "" {
			break
		}
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		req.PageToken = resp.GetNextPageToken()
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("listed ids (-want +got):\n%s", diff)
	}
	if pages != 3 {
		t.Errorf("%d pages of 2 for 5 orders, want 3", pages)
	}
}

func TestListOrdersDefaultPageSize(t *testing.T) {
	t.Parallel()
	e := newEnv(t, orderrpc.Config{})
	_, ctx := e.user(t)
	for i := range orderrpc.DefaultPageSize + 1 {
		if _, err := e.server.CreateOrder(ctx, createRequest(fmt.Sprintf("default-page-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := e.server.ListOrders(ctx, &orderv1.ListOrdersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(resp.GetOrders()); n != orderrpc.DefaultPageSize || resp.GetNextPageToken() == "" {
		t.Errorf("first page: %d orders, next token %q; want %d and a token",
			n, resp.GetNextPageToken(), orderrpc.DefaultPageSize)
	}
}

func TestListOrdersRefusesPageTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t, orderrpc.Config{})
	_, ctx := e.user(t)
	for i := range 2 {
		if _, err := e.server.CreateOrder(ctx, createRequest(fmt.Sprintf("token-owner-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	first, err := e.server.ListOrders(ctx, &orderv1.ListOrdersRequest{PageSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	token := first.GetNextPageToken()
	_, strangerCtx := e.user(t)
	if _, err := e.server.CreateOrder(strangerCtx, createRequest("stranger-order")); err != nil {
		t.Fatal(err)
	}

	// The token is not signed: changing its cursor only moves it within
	// the caller's own orders. What binds it to its user must hold.
	alter := func(at int) string {
		raw, err := base64.RawURLEncoding.DecodeString(token)
		if err != nil {
			t.Fatal(err)
		}
		raw[at] ^= 1
		return base64.RawURLEncoding.EncodeToString(raw)
	}
	tests := []struct {
		name     string
		stranger bool
		token    string
	}{
		{"another user's token", true, token},
		{"not base64", false, "not a token!"},
		{"truncated", false, token[:len(token)-4]},
		{"altered version", false, alter(0)},
		{"altered user binding", false, alter(3)},
		{"longer", false, token + "AAAA"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			callCtx := ctx
			if tt.stranger {
				callCtx = strangerCtx
			}
			req := &orderv1.ListOrdersRequest{PageToken: tt.token}
			resp, err := e.server.ListOrders(callCtx, req)
			wantStatus(t, err, codes.InvalidArgument, "invalid page token")
			if len(resp.GetOrders()) != 0 {
				t.Errorf("listed %d orders with a bad token", len(resp.GetOrders()))
			}
		})
	}
}

// orderState is where a test brings an order before the call it tests.
type orderState int

const (
	statePending orderState = iota
	statePaid
	stateFailed
	stateCancelled
)

// bring moves o, just placed by the user of ctx, to state.
func (e *env) bring(t *testing.T, ctx context.Context, o *orderv1.Order, state orderState) {
	t.Helper()
	switch state {
	case statePending:
		// as placed
	case statePaid:
		e.settle(t, ctx, o, true)
	case stateFailed:
		e.settle(t, ctx, o, false)
	case stateCancelled:
		e.settle(t, ctx, o, false)
		req := &orderv1.CancelOrderRequest{OrderId: o.GetOrderId()}
		if _, err := e.server.CancelOrder(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCancelOrder(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		setup       orderState
		stranger    bool
		refundErr   error
		refundState paymentv1.PaymentStatus
		wantCode    codes.Code
		wantMessage string
		wantStatus  orderv1.OrderStatus // stored afterwards
		wantRefunds int
		wantEvent   *orderv1.OrderCancelled
	}{
		{
			name: "pending payment", setup: statePending,
			wantCode: codes.FailedPrecondition, wantMessage: "payment in progress; try again when it settles",
			wantStatus: orderv1.OrderStatus_ORDER_STATUS_PENDING_PAYMENT,
		},
		{
			name: "payment failed", setup: stateFailed,
			wantStatus: orderv1.OrderStatus_ORDER_STATUS_CANCELLED,
			wantEvent:  &orderv1.OrderCancelled{Refunded: false},
		},
		{
			name: "paid", setup: statePaid,
			wantStatus: orderv1.OrderStatus_ORDER_STATUS_CANCELLED, wantRefunds: 1,
			wantEvent: &orderv1.OrderCancelled{Refunded: true},
		},
		{
			name: "cancelled already", setup: stateCancelled,
			wantStatus: orderv1.OrderStatus_ORDER_STATUS_CANCELLED,
		},
		{
			name: "another user's order", setup: statePaid, stranger: true,
			wantCode: codes.NotFound, wantMessage: "order not found",
			wantStatus: orderv1.OrderStatus_ORDER_STATUS_PAID,
		},
		{
			name: "payment service unavailable", setup: statePaid,
			refundErr: status.Error(codes.Unavailable, "no route"),
			wantCode:  codes.Unavailable, wantStatus: orderv1.OrderStatus_ORDER_STATUS_PAID, wantRefunds: 1,
		},
		{
			name: "payment service refuses", setup: statePaid,
			refundErr: status.Error(codes.FailedPrecondition, "payment not refundable"),
			wantCode:  codes.Internal, wantMessage: "internal error",
			wantStatus: orderv1.OrderStatus_ORDER_STATUS_PAID, wantRefunds: 1,
		},
		{
			name: "refund answered but not refunded", setup: statePaid,
			refundState: paymentv1.PaymentStatus_PAYMENT_STATUS_SUCCEEDED,
			wantCode:    codes.Internal, wantStatus: orderv1.OrderStatus_ORDER_STATUS_PAID, wantRefunds: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, orderrpc.Config{})
			o, ctx := e.order(t)
			owner := subject(t, ctx)
			e.bring(t, ctx, o, tt.setup)
			eventsBefore := len(e.Events(t))
			callCtx := ctx
			if tt.stranger {
				_, callCtx = e.user(t)
			}
			e.payments.err, e.payments.status = tt.refundErr, tt.refundState

			resp, err := e.server.CancelOrder(callCtx, &orderv1.CancelOrderRequest{OrderId: o.GetOrderId()})
			wantStatus(t, err, tt.wantCode, tt.wantMessage)
			if err == nil && resp.GetOrder().GetStatus() != tt.wantStatus {
				t.Errorf("returned status %s, want %s", resp.GetOrder().GetStatus(), tt.wantStatus)
			}
			stored, err := e.server.GetOrder(ctx, &orderv1.GetOrderRequest{OrderId: o.GetOrderId()})
			if err != nil {
				t.Fatal(err)
			}
			if got := stored.GetOrder().GetStatus(); got != tt.wantStatus {
				t.Errorf("stored status %s, want %s", got, tt.wantStatus)
			}

			var wantCalls []refundCall
			for range tt.wantRefunds {
				wantCalls = append(wantCalls, refundCall{OrderID: o.GetOrderId(), Subject: owner})
			}
			if diff := cmp.Diff(wantCalls, e.payments.calls(), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("refund calls (-want +got):\n%s", diff)
			}

			var wantEvents []proto.Message
			if tt.wantEvent != nil {
				want := proto.CloneOf(tt.wantEvent)
				want.OrderId, want.UserId = o.GetOrderId(), owner
				want.CancelTime = stored.GetOrder().GetUpdateTime()
				wantEvents = append(wantEvents, want)
			}
			if diff := cmp.Diff(wantEvents, e.Events(t)[eventsBefore:], protocmp.Transform(),
				cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("new events (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCancelOrderCompletesAfterAnInterruptedCancel(t *testing.T) {
	t.Parallel()
	e := newEnv(t, orderrpc.Config{})
	o, ctx := e.order(t)
	e.settle(t, ctx, o, true)

	// The refund goes through, then the client goes away before the
	// cancellation is stored.
	callCtx, cancel := context.WithCancel(ctx)
	e.payments.onRefund = cancel
	_, err := e.server.CancelOrder(callCtx, &orderv1.CancelOrderRequest{OrderId: o.GetOrderId()})
	wantStatus(t, err, codes.Canceled, "")
	stored, err := e.server.GetOrder(ctx, &orderv1.GetOrderRequest{OrderId: o.GetOrderId()})
	if err != nil {
		t.Fatal(err)
	}
	if got := stored.GetOrder().GetStatus(); got != orderv1.OrderStatus_ORDER_STATUS_PAID {
		t.Fatalf("status %s after the interrupted cancel, want PAID", got)
	}

	e.payments.onRefund = nil
	resp, err := e.server.CancelOrder(ctx, &orderv1.CancelOrderRequest{OrderId: o.GetOrderId()})
	if err != nil {
		t.Fatalf("CancelOrder again: %v", err)
	}
	if got := resp.GetOrder().GetStatus(); got != orderv1.OrderStatus_ORDER_STATUS_CANCELLED {
		t.Errorf("status %s, want CANCELLED", got)
	}
	// The payment service makes the second refund a no-op.
	if n := len(e.payments.calls()); n != 2 {
		t.Errorf("%d refund calls, want 2", n)
	}
}
