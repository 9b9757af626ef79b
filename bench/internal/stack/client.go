package stack

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"

	orderv1 "example.com/rampart/proto/order/v1"
	"example.com/rampart/proto/order/v1/orderv1connect"
	userv1 "example.com/rampart/proto/user/v1"
	"example.com/rampart/proto/user/v1/userv1connect"
)

// password is the password of every user the benchmark signs up.
const password = "correct horse battery staple"

// User is a signed-in end user with clients of the gateway that send its
// access token.
type User struct {
	// Token is the access token of the user's login.
	Token string
	// Orders calls the order service through the gateway, with the gRPC
	// protocol over HTTP/2 without TLS, one connection for every call.
	Orders orderv1connect.OrderServiceClient
}

// SignUp signs a new user up and in through the gateway, retrying until
// the platform serves it or ctx ends: a workload is ready before it has
// every key it needs to accept a call from another.
func (s *Stack) SignUp(ctx context.Context) (*User, error) {
	email := "bench-" + strings.ToLower(rand.Text()[:12]) + "@example.com"
	anonymous := gatewayClient(s.Config().GatewayURL(), "")
	users := userv1connect.NewUserServiceClient(anonymous)
	var last error
	for {
		u, err := signUp(ctx, users, email)
		if err == nil {
			u.Orders = orderv1connect.NewOrderServiceClient(gatewayClient(s.Config().GatewayURL(), u.Token))
			return u, nil
		}
		last = err
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("signing up through the gateway: %w", last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func signUp(ctx context.Context, users userv1connect.UserServiceClient, email string) (*User, error) {
	_, err := users.SignUp(ctx, &userv1.SignUpRequest{
		Email: email, Password: password, DisplayName: "Bench",
	})
	if err != nil && connect.CodeOf(err) != connect.CodeAlreadyExists {
		return nil, err
	}
	login, err := users.Login(ctx, &userv1.LoginRequest{Email: email, Password: password})
	if err != nil {
		return nil, err
	}
	return &User{Token: login.GetAccessToken()}, nil
}

// Order places an order of two packs of green tea, paid by a card that
// pays, and returns its id.
func (u *User) Order(ctx context.Context) (string, error) {
	resp, err := u.Orders.CreateOrder(ctx, &orderv1.CreateOrderRequest{
		Items:          []*orderv1.ItemRequest{{Sku: "TEA-GREEN-100G", Quantity: 2}},
		PaymentMethod:  "tok_visa",
		IdempotencyKey: "bench-" + rand.Text()[:20],
	})
	if err != nil {
		return "", fmt.Errorf("placing an order: %w", err)
	}
	return resp.GetOrder().GetOrderId(), nil
}

// WaitPaid watches the order until it is paid, and fails if it ends in
// any other state.
func (u *User) WaitPaid(ctx context.Context, orderID string) error {
	stream, err := u.Orders.WatchOrder(ctx, &orderv1.WatchOrderRequest{OrderId: orderID})
	if err != nil {
		return fmt.Errorf("watching order %s: %w", orderID, err)
	}
	defer func() { _ = stream.Close() }() // the watch is over either way
	for {
		resp, err := stream.Receive()
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("watch of order %s ended unpaid", orderID)
		}
		if err != nil {
			return fmt.Errorf("watching order %s: %w", orderID, err)
		}
		switch resp.GetOrder().GetStatus() {
		case orderv1.OrderStatus_ORDER_STATUS_PAID:
			return nil
		case orderv1.OrderStatus_ORDER_STATUS_PENDING_PAYMENT:
		default:
			return fmt.Errorf("order %s ended %v", orderID, resp.GetOrder().GetStatus())
		}
	}
}

// h2c is the HTTP client of every gateway client: HTTP/2 without TLS, so
// that calls share one connection, as gRPC clients do.
var h2c = func() *http.Client {
	protocols := new(http.Protocols)
	protocols.SetUnencryptedHTTP2(true)
	return &http.Client{
		Transport: &http.Transport{Protocols: protocols},
		Timeout:   time.Minute,
	}
}()

// gatewayClient returns a client of the gateway at baseURL that speaks
// gRPC and sends token, when there is one, as its bearer token.
func gatewayClient(baseURL, token string) *connect.Client {
	transport := connecthttp.NewTransport(h2c, baseURL, connecthttp.WithGRPC())
	return connect.NewClient(transport, bearer(token))
}

func bearer(token string) connect.ClientInterceptor {
	return func(next connect.ClientFunc) connect.ClientFunc {
		return func(ctx context.Context, spec connect.Spec) (connect.ClientStream, error) {
			if token != "" {
				info, _ := connect.CallInfoForClientContext(ctx)
				info.RequestHeader().Set("Authorization", "Bearer "+token)
			}
			return next(ctx, spec)
		}
	}
}
