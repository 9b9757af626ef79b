package scenario

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	orderv1 "example.com/rampart/proto/order/v1"
	paymentv1 "example.com/rampart/proto/payment/v1"
	moneyv1 "example.com/rampart/proto/rampart/money/v1"
	userv1 "example.com/rampart/proto/user/v1"
)

// DeclineReason is why the fake processor declines tok_declined.
const DeclineReason = "card declined"

// happyPath is `make demo` over each protocol: sign up, log in, read the
// catalog, order with a card that pays and one that is declined, watch
// both settle, and read each payment.
//
//nolint:thelper // a scenario, not a helper: see Run
func (s *suite) happyPath(t *testing.T) {
	for _, protocol := range []Protocol{ConnectJSON, GRPCProto} {
		t.Run(protocol.Name, func(t *testing.T) {
			t.Parallel()
			u := SignUp(t, s.p, protocol)
			ctx := t.Context()

			me, err := u.Users.GetMe(ctx, &userv1.GetMeRequest{})
			if err != nil {
				t.Fatalf("GetMe: %v", err)
			}
			wantMe := &userv1.User{UserId: u.ID, Email: u.Email, DisplayName: "End To End"}
			if diff := cmp.Diff(wantMe, me.GetUser(), protocmp.Transform(),
				protocmp.IgnoreFields(&userv1.User{}, "create_time")); diff != "" {
				t.Errorf("GetMe (-want +got):\n%s", diff)
			}

			product := CatalogProduct(t, u.Client)
			for _, tc := range []struct {
				method  string
				order   orderv1.OrderStatus
				payment paymentv1.PaymentStatus
				reason  string
			}{
				{"tok_visa", orderv1.OrderStatus_ORDER_STATUS_PAID,
					paymentv1.PaymentStatus_PAYMENT_STATUS_SUCCEEDED, ""},
				{"tok_declined", orderv1.OrderStatus_ORDER_STATUS_PAYMENT_FAILED,
					paymentv1.PaymentStatus_PAYMENT_STATUS_FAILED, DeclineReason},
			} {
				t.Run(tc.method, func(t *testing.T) {
					checkOrderSettles(t, u, product, tc.method, tc.order, tc.payment, tc.reason)
				})
			}
		})
	}
}

// checkOrderSettles orders with method and follows the order to its end.
func checkOrderSettles(t *testing.T, u *User, product *orderv1.Product, method string,
	wantOrder orderv1.OrderStatus, wantPayment paymentv1.PaymentStatus, reason string) {
	t.Helper()
	ctx := t.Context()
	created := u.MustOrder(t, method)
	want := ExpectedOrder(product, 2)
	ignoreIDs := protocmp.IgnoreFields(&orderv1.Order{}, "order_id", "create_time", "update_time")
	if diff := cmp.Diff(want, created, protocmp.Transform(), ignoreIDs); diff != "" {
		t.Errorf("CreateOrder (-want +got):\n%s", diff)
	}

	statuses := u.Watch(t, created.GetOrderId())
	last := len(statuses) - 1
	for i, st := range statuses {
		if (i < last && st != orderv1.OrderStatus_ORDER_STATUS_PENDING_PAYMENT) ||
			(i == last && st != wantOrder) {
			t.Fatalf("WatchOrder sent %v, want PENDING_PAYMENT updates ending %v", statuses, wantOrder)
		}
	}

	got, err := u.Orders.GetOrder(ctx, &orderv1.GetOrderRequest{OrderId: created.GetOrderId()})
	if err != nil {
		t.Fatalf("GetOrder: %v", err)
	}
	want.OrderId, want.Status, want.FailureReason = created.GetOrderId(), wantOrder, reason
	if diff := cmp.Diff(want, got.GetOrder(), protocmp.Transform(),
		protocmp.IgnoreFields(&orderv1.Order{}, "create_time", "update_time")); diff != "" {
		t.Errorf("GetOrder (-want +got):\n%s", diff)
	}

	payment, err := u.Payments.GetPayment(ctx,
		&paymentv1.GetPaymentRequest{OrderId: created.GetOrderId()})
	if err != nil {
		t.Fatalf("GetPayment: %v", err)
	}
	wantPay := &paymentv1.Payment{
		OrderId: created.GetOrderId(), Status: wantPayment, Amount: want.GetTotal(), FailureReason: reason,
	}
	ignorePay := protocmp.IgnoreFields(&paymentv1.Payment{}, "payment_id", "create_time", "update_time")
	if diff := cmp.Diff(wantPay, payment.GetPayment(), protocmp.Transform(), ignorePay); diff != "" {
		t.Errorf("GetPayment (-want +got):\n%s", diff)
	}
}

// CatalogProduct returns the catalog's entry for [SKU].
func CatalogProduct(t *testing.T, c *Client) *orderv1.Product {
	t.Helper()
	products, err := c.Catalog.ListProducts(t.Context(), &orderv1.ListProductsRequest{})
	if err != nil {
		t.Fatalf("ListProducts: %v", err)
	}
	for _, p := range products.GetProducts() {
		if p.GetSku() == SKU {
			return p
		}
	}
	t.Fatalf("the catalog has no %s: %v", SKU, products.GetProducts())
	return nil
}

// ExpectedOrder is a new order of quantity times product, priced by the
// catalog.
func ExpectedOrder(product *orderv1.Product, quantity int32) *orderv1.Order {
	price := product.GetPrice()
	total := &moneyv1.Money{
		CurrencyCode: price.GetCurrencyCode(), Amount: price.GetAmount() * int64(quantity),
	}
	return &orderv1.Order{
		Status: orderv1.OrderStatus_ORDER_STATUS_PENDING_PAYMENT,
		Items: []*orderv1.LineItem{{
			Sku: product.GetSku(), Name: product.GetName(), Quantity: quantity,
			UnitPrice: price, LineTotal: total,
		}},
		Total: total,
	}
}

// Watch follows an order with WatchOrder until the server ends the stream,
// and returns the statuses it was sent.
func (u *User) Watch(t *testing.T, orderID string) []orderv1.OrderStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	stream, err := u.Orders.WatchOrder(ctx, &orderv1.WatchOrderRequest{OrderId: orderID})
	if err != nil {
		t.Fatalf("WatchOrder: %v", err)
	}
	defer func() { _ = stream.Close() }() // only read: closing it loses nothing
	var statuses []orderv1.OrderStatus
	for {
		resp, err := stream.Receive()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("WatchOrder after %v: %v", statuses, err)
		}
		if id := resp.GetOrder().GetOrderId(); id != orderID {
			t.Fatalf("WatchOrder of %s sent order %s", orderID, id)
		}
		statuses = append(statuses, resp.GetOrder().GetStatus())
	}
	if len(statuses) == 0 {
		t.Fatal("WatchOrder ended without an update")
	}
	return statuses
}

// CallWithHeaders calls fn with a context that captures the response
// headers of the call fn makes.
func CallWithHeaders(ctx context.Context, fn func(ctx context.Context) error) (
	*connect.CallInfo, error) {
	ctx, info := connect.NewClientContext(ctx)
	return info, fn(ctx)
}
