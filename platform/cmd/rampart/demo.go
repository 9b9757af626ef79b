package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"

	orderv1 "example.com/rampart/proto/order/v1"
	"example.com/rampart/proto/order/v1/orderv1connect"
	paymentv1 "example.com/rampart/proto/payment/v1"
	"example.com/rampart/proto/payment/v1/paymentv1connect"
	userv1 "example.com/rampart/proto/user/v1"
	"example.com/rampart/proto/user/v1/userv1connect"
)

// demoSKU is a product of the order service's built-in catalog.
const demoSKU = "TEA-GREEN-100G"

// client calls the gateway as an outside client would, with the Connect
// protocol and JSON, and reports the trace id of every call.
type client struct {
	out      io.Writer
	token    string
	users    userv1connect.UserServiceClient
	catalog  orderv1connect.CatalogServiceClient
	orders   orderv1connect.OrderServiceClient
	payments paymentv1connect.PaymentServiceClient
}

func newClient(gateway string, out io.Writer) *client {
	transport := connecthttp.NewTransport(&http.Client{Timeout: 30 * time.Second}, gateway,
		connecthttp.WithProtoJSON())
	c := &client{out: out}
	rpc := connect.NewClient(transport, c.authorize)
	c.users = userv1connect.NewUserServiceClient(rpc)
	c.catalog = orderv1connect.NewCatalogServiceClient(rpc)
	c.orders = orderv1connect.NewOrderServiceClient(rpc)
	c.payments = paymentv1connect.NewPaymentServiceClient(rpc)
	return c
}

// authorize sends the access token, once there is one, and prints each
// call with its trace id when it has been answered.
func (c *client) authorize(next connect.ClientFunc) connect.ClientFunc {
	return func(ctx context.Context, spec connect.Spec) (connect.ClientStream, error) {
		ctx, info := connect.NewClientContext(ctx)
		if c.token != "" {
			info.RequestHeader().Set("Authorization", "Bearer "+c.token)
		}
		stream, err := next(ctx, spec)
		if err != nil {
			return nil, err
		}
		return &tracedStream{ClientStream: stream, info: info, spec: spec, out: c.out}, nil
	}
}

type tracedStream struct {
	connect.ClientStream
	info    *connect.CallInfo
	spec    connect.Spec
	out     io.Writer
	printed bool
}

func (s *tracedStream) Receive(msg any) error {
	err := s.ClientStream.Receive(msg)
	if !s.printed {
		s.printed = true
		fmt.Fprintf(s.out, "  %-45s trace %s\n", s.spec.Procedure, s.info.ResponseHeader().Get("Trace-Id"))
	}
	return err
}

// demo signs a new user up, orders twice, once with a card that pays and
// once with one that is declined, and checks that each order ends as it
// should.
func demo(ctx context.Context, gateway string, out io.Writer) error {
	c := newClient(gateway, out)
	email := fmt.Sprintf("demo-%s@example.com", rand.Text()[:10])
	const password = "correct horse battery staple"

	fmt.Fprintf(out, "Signing up %s\n", email)
	if _, err := c.users.SignUp(ctx, &userv1.SignUpRequest{
		Email: email, Password: password, DisplayName: "Demo User",
	}); err != nil {
		return fmt.Errorf("signing up: %w", err)
	}
	login, err := c.users.Login(ctx, &userv1.LoginRequest{Email: email, Password: password})
	if err != nil {
		return fmt.Errorf("logging in: %w", err)
	}
	c.token = login.GetAccessToken()

	products, err := c.catalog.ListProducts(ctx, &orderv1.ListProductsRequest{})
	if err != nil {
		return fmt.Errorf("listing products: %w", err)
	}
	fmt.Fprintf(out, "The catalog has %d products\n", len(products.GetProducts()))

	for _, tc := range []struct {
		method string
		want   orderv1.OrderStatus
	}{
		{"tok_visa", orderv1.OrderStatus_ORDER_STATUS_PAID},
		{"tok_declined", orderv1.OrderStatus_ORDER_STATUS_PAYMENT_FAILED},
	} {
		if err := c.order(ctx, tc.method, tc.want); err != nil {
			return err
		}
	}
	fmt.Fprintln(out, "Demo complete: every order ended as expected.")
	return nil
}

// order places an order paid with method and watches it until its payment
// settles, expecting want.
func (c *client) order(ctx context.Context, method string, want orderv1.OrderStatus) error {
	fmt.Fprintf(c.out, "Ordering 2 x %s, paying with %s\n", demoSKU, method)
	created, err := c.orders.CreateOrder(ctx, &orderv1.CreateOrderRequest{
		Items:          []*orderv1.ItemRequest{{Sku: demoSKU, Quantity: 2}},
		PaymentMethod:  method,
		IdempotencyKey: "demo-" + rand.Text()[:16],
	})
	if err != nil {
		return fmt.Errorf("creating an order: %w", err)
	}
	id := created.GetOrder().GetOrderId()

	watchCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	stream, err := c.orders.WatchOrder(watchCtx, &orderv1.WatchOrderRequest{OrderId: id})
	if err != nil {
		return fmt.Errorf("watching order %s: %w", id, err)
	}
	// The stream is only read, and ends with the order: closing it loses nothing.
	defer func() { _ = stream.Close() }()
	status := created.GetOrder().GetStatus()
	for {
		update, err := stream.Receive()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("watching order %s: %w", id, err)
		}
		status = update.GetOrder().GetStatus()
		fmt.Fprintf(c.out, "  order %s is %s\n", id, status)
	}
	if status != want {
		return fmt.Errorf("order %s ended %s, want %s", id, status, want)
	}
	payment, err := c.payments.GetPayment(ctx, &paymentv1.GetPaymentRequest{OrderId: id})
	if err != nil {
		return fmt.Errorf("reading the payment of order %s: %w", id, err)
	}
	fmt.Fprintf(c.out, "  payment %s\n", payment.GetPayment().GetStatus())
	return nil
}
