package scenario

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"

	orderv1 "example.com/rampart/proto/order/v1"
	"example.com/rampart/proto/order/v1/orderv1connect"
	"example.com/rampart/proto/payment/v1/paymentv1connect"
	userv1 "example.com/rampart/proto/user/v1"
	"example.com/rampart/proto/user/v1/userv1connect"
)

// Protocol is how a client speaks to the gateway.
type Protocol struct {
	Name    string
	options []connecthttp.Option
	// h2c speaks HTTP/2 without TLS, which gRPC needs.
	h2c bool
}

// The protocols a client may use. The gateway serves both on one port.
var (
	ConnectJSON = Protocol{
		Name: "connect+json", options: []connecthttp.Option{connecthttp.WithProtoJSON()},
	}
	GRPCProto = Protocol{
		Name: "grpc+proto", options: []connecthttp.Option{connecthttp.WithGRPC()}, h2c: true,
	}
)

// httpClient returns the HTTP client of the protocol, shared by every
// client that uses it, so that connections are reused.
func (p Protocol) httpClient() *http.Client {
	if p.h2c {
		return h2cClient()
	}
	return http1Client()
}

var (
	http1Client = sync.OnceValue(func() *http.Client { return newHTTPClient(false) })
	h2cClient   = sync.OnceValue(func() *http.Client { return newHTTPClient(true) })
)

func newHTTPClient(h2c bool) *http.Client {
	base, ok := http.DefaultTransport.(*http.Transport)
	if !ok {
		panic(fmt.Sprintf("scenario: http.DefaultTransport is a %T, not an *http.Transport",
			http.DefaultTransport))
	}
	transport := base.Clone()
	if h2c {
		transport.Protocols = new(http.Protocols)
		transport.Protocols.SetUnencryptedHTTP2(true)
	}
	return &http.Client{Transport: transport, Timeout: 2 * time.Minute}
}

// Client calls the gateway's public API with the generated Connect
// clients, sending an access token when it has one.
type Client struct {
	Users    userv1connect.UserServiceClient
	Catalog  orderv1connect.CatalogServiceClient
	Orders   orderv1connect.OrderServiceClient
	Payments paymentv1connect.PaymentServiceClient
}

// NewClient returns a client of the gateway at baseURL that sends token,
// when it is not empty, as its bearer access token.
func NewClient(baseURL string, protocol Protocol, token string) *Client {
	transport := connecthttp.NewTransport(protocol.httpClient(), baseURL, protocol.options...)
	rpc := connect.NewClient(transport, bearer(token))
	return &Client{
		Users:    userv1connect.NewUserServiceClient(rpc),
		Catalog:  orderv1connect.NewCatalogServiceClient(rpc),
		Orders:   orderv1connect.NewOrderServiceClient(rpc),
		Payments: paymentv1connect.NewPaymentServiceClient(rpc),
	}
}

// bearer sets the Authorization header of every call, unless token is
// empty.
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

// User is a signed-up, signed-in end user.
type User struct {
	ID, Email, Password string
	// Token is the access token of the login.
	Token string
	*Client
}

// Password is the password of every user the scenarios sign up.
const Password = "correct horse battery staple"

// SignUp signs a new user up and in through p's gateway, and returns it
// with a client that uses protocol.
func SignUp(t *testing.T, p Platform, protocol Protocol) *User {
	t.Helper()
	ctx := t.Context()
	anonymous := NewClient(p.GatewayURL(), protocol, "")
	email := "e2e-" + strings.ToLower(rand.Text()[:12]) + "@example.com"
	signUp, err := anonymous.Users.SignUp(ctx, &userv1.SignUpRequest{
		Email: email, Password: Password, DisplayName: "End To End",
	})
	if err != nil {
		t.Fatalf("signing up %s: %v", email, err)
	}
	login, err := anonymous.Users.Login(ctx, &userv1.LoginRequest{Email: email, Password: Password})
	if err != nil {
		t.Fatalf("logging in %s: %v", email, err)
	}
	return &User{
		ID:       signUp.GetUser().GetUserId(),
		Email:    email,
		Password: Password,
		Token:    login.GetAccessToken(),
		Client:   NewClient(p.GatewayURL(), protocol, login.GetAccessToken()),
	}
}

// Reconnect points u's client at the gateway's current address.
func (u *User) Reconnect(p Platform, protocol Protocol) {
	u.Client = NewClient(p.GatewayURL(), protocol, u.Token)
}

// SKU is the product the scenarios order, from the built-in catalog.
const SKU = "TEA-GREEN-100G"

// NewKey returns a fresh idempotency key.
func NewKey() string { return "e2e-" + rand.Text()[:20] }

// Order places an order of two of [SKU] paid with method, under key.
func (u *User) Order(ctx context.Context, method, key string) (*orderv1.Order, error) {
	resp, err := u.Orders.CreateOrder(ctx, &orderv1.CreateOrderRequest{
		Items:          []*orderv1.ItemRequest{{Sku: SKU, Quantity: 2}},
		PaymentMethod:  method,
		IdempotencyKey: key,
	})
	return resp.GetOrder(), err
}

// MustOrder is [User.Order] with a fresh key, failing the test on error.
func (u *User) MustOrder(t *testing.T, method string) *orderv1.Order {
	t.Helper()
	order, err := u.Order(t.Context(), method, NewKey())
	if err != nil {
		t.Fatalf("ordering with %s: %v", method, err)
	}
	return order
}

// Final reports whether status is one an order never leaves by payment.
func Final(status orderv1.OrderStatus) bool {
	return status == orderv1.OrderStatus_ORDER_STATUS_PAID ||
		status == orderv1.OrderStatus_ORDER_STATUS_PAYMENT_FAILED
}

// Settled polls GetOrder until the order's payment has settled, and
// returns the order.
func (u *User) Settled(t *testing.T, orderID string, timeout time.Duration) *orderv1.Order {
	t.Helper()
	var order *orderv1.Order
	var err error
	Eventually(t, timeout, func() bool {
		var resp *orderv1.GetOrderResponse
		resp, err = u.Orders.GetOrder(t.Context(), &orderv1.GetOrderRequest{OrderId: orderID})
		order = resp.GetOrder()
		return err == nil && Final(order.GetStatus())
	}, func() string {
		return "order " + orderID + " is " + order.GetStatus().String() + errorText(err)
	})
	return order
}

func errorText(err error) string {
	if err == nil {
		return ""
	}
	return " (last error: " + err.Error() + ")"
}

// Response is an answer of the gateway read as raw HTTP.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// PostJSON calls procedure on p's gateway with the Connect protocol and a
// JSON body, sending token as the bearer token when it is not empty.
func PostJSON(t *testing.T, p Platform, procedure, token, body string) Response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost,
		p.GatewayURL()+procedure, bytes.NewBufferString(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := ConnectJSON.httpClient().Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", procedure, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the answer of %s: %v", procedure, err)
	}
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: data}
}

// ErrorBody is the JSON body of a Connect error: its code, its message and
// the types of its details.
type ErrorBody struct {
	Code        string
	Message     string
	DetailTypes []string
}

// ParseError reads a Connect error body, failing the test unless it is
// one.
func ParseError(t *testing.T, body []byte) ErrorBody {
	t.Helper()
	var wire struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Details []struct {
			Type string `json:"type"`
		} `json:"details"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&wire); err != nil || dec.More() {
		t.Fatalf("answer %q is not a Connect error body", body)
	}
	out := ErrorBody{Code: wire.Code, Message: wire.Message}
	for _, d := range wire.Details {
		out.DetailTypes = append(out.DetailTypes, d.Type)
	}
	return out
}

// Failure is how a call failed, as a client sees it: its code and message,
// and the type names of its details.
type Failure struct {
	Code        connect.Code
	Message     string
	DetailTypes []string
}

// FailureOf returns how err failed, failing the test unless it is a
// Connect error.
func FailureOf(t *testing.T, err error) Failure {
	t.Helper()
	var ce *connect.Error
	if !errors.As(err, &ce) {
		t.Fatalf("error %v is not a Connect error", err)
	}
	out := Failure{Code: ce.Code(), Message: ce.Message()}
	for _, d := range ce.Details() {
		out.DetailTypes = append(out.DetailTypes, d.Type)
	}
	return out
}
