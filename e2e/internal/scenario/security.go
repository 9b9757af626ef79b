package scenario

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"testing"
	"time"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"buf.build/go/protovalidate"
	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connectproto"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"example.com/rampart/e2e/internal/probe"
	"example.com/rampart/platform/devpki"
	orderv1 "example.com/rampart/proto/order/v1"
	paymentv1 "example.com/rampart/proto/payment/v1"
	userv1 "example.com/rampart/proto/user/v1"
)

// Answers of the gateway and the services that the scenarios expect word
// for word.
const (
	msgUnauthenticated = "missing or invalid credentials"
	msgPermission      = "permission denied"
	msgRateLimited     = "rate limit exceeded"
	msgOrderNotFound   = "order not found"
)

// unauthenticated sends GetMe with no token and with tokens the gateway
// must refuse, over both protocols; each gets the same answer, whatever
// the reason. A copy of a valid token re-signed with the issuer's key
// shows that the refusals come from what each case changes.
//
//nolint:thelper // a scenario, not a helper: see Run
func (s *suite) unauthenticated(t *testing.T) {
	u := SignUp(t, s.p, ConnectJSON)
	issuer := IssuerKeys(t, s.p)
	for _, tc := range []struct {
		name     string
		token    string
		accepted bool
	}{
		{"no token", "", false},
		{"not a JWT", "not-a-token", false},
		{"signed by an unknown key", Resigned(t, u.Token, ForeignKey(t), func(map[string]any) {}), false},
		{"expired", Resigned(t, u.Token, issuer, Expire), false},
		{"for another audience", Resigned(t, u.Token, issuer, func(c map[string]any) {
			c["aud"] = "another-api"
		}), false},
		{"from another issuer", Resigned(t, u.Token, issuer, func(c map[string]any) {
			c["iss"] = "https://issuer.invalid"
		}), false},
		{"re-signed unchanged", Resigned(t, u.Token, issuer, func(map[string]any) {}), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			raw := PostJSON(t, s.p, "/user.v1.UserService/GetMe", tc.token, "{}")
			_, err := NewClient(s.p.GatewayURL(), GRPCProto, tc.token).Users.GetMe(
				t.Context(), &userv1.GetMeRequest{})
			if tc.accepted {
				if raw.Status != http.StatusOK || err != nil {
					t.Fatalf("valid token refused: HTTP %d %s; gRPC %v", raw.Status, raw.Body, err)
				}
				return
			}
			if raw.Status != http.StatusUnauthorized {
				t.Errorf("HTTP status %d, want %d", raw.Status, http.StatusUnauthorized)
			}
			want := ErrorBody{Code: "unauthenticated", Message: msgUnauthenticated}
			if diff := cmp.Diff(want, ParseError(t, raw.Body)); diff != "" {
				t.Errorf("Connect answer (-want +got):\n%s", diff)
			}
			wantGRPC := Failure{Code: connect.CodeUnauthenticated, Message: msgUnauthenticated}
			if diff := cmp.Diff(wantGRPC, FailureOf(t, err)); diff != "" {
				t.Errorf("gRPC answer (-want +got):\n%s", diff)
			}
		})
	}
}

// violation is one broken rule, as the client reads it.
type violation struct{ Field, Rule, Message string }

// invalidArgument sends a CreateOrder that breaks three rules and expects
// each violation named, over both protocols, and no order stored.
//
//nolint:thelper // a scenario, not a helper: see Run
func (s *suite) invalidArgument(t *testing.T) {
	for _, protocol := range []Protocol{ConnectJSON, GRPCProto} {
		t.Run(protocol.Name, func(t *testing.T) {
			t.Parallel()
			u := SignUp(t, s.p, protocol)
			_, err := u.Orders.CreateOrder(t.Context(), &orderv1.CreateOrderRequest{
				Items:          []*orderv1.ItemRequest{{Sku: SKU, Quantity: 0}},
				PaymentMethod:  "visa",
				IdempotencyKey: "short",
			})
			failure := FailureOf(t, err)
			want := Failure{
				Code: connect.CodeInvalidArgument,
				Message: "validation errors:\n" +
					" - items[0].quantity: must be greater than or equal to 1 and less than or equal to 100\n" +
					" - payment_method: does not match regex pattern `^tok_[a-z0-9_]{1,32}$`\n" +
					" - idempotency_key: must be at least 8 characters",
				DetailTypes: []string{"buf.validate.Violations"},
			}
			if diff := cmp.Diff(want, failure); diff != "" {
				t.Errorf("CreateOrder (-want +got):\n%s", diff)
			}
			wantViolations := []violation{
				{"items[0].quantity", "int32.gte_lte",
					"must be greater than or equal to 1 and less than or equal to 100"},
				{"payment_method", "string.pattern", "does not match regex pattern `^tok_[a-z0-9_]{1,32}$`"},
				{"idempotency_key", "string.min_len", "must be at least 8 characters"},
			}
			if diff := cmp.Diff(wantViolations, violationsOf(t, err)); diff != "" {
				t.Errorf("violations (-want +got):\n%s", diff)
			}

			orders, err := u.Orders.ListOrders(t.Context(), &orderv1.ListOrdersRequest{})
			if err != nil || len(orders.GetOrders()) != 0 {
				t.Errorf("after the invalid request ListOrders = %v, %v; want no order", orders.GetOrders(), err)
			}
		})
	}
}

func violationsOf(t *testing.T, err error) []violation {
	t.Helper()
	var ce *connect.Error
	if !errors.As(err, &ce) {
		t.Fatalf("%v is not a Connect error", err)
	}
	var out []violation
	for _, d := range ce.Details() {
		msg, err := connectproto.UnmarshalErrorDetail(d)
		if err != nil {
			t.Fatalf("decoding detail %s: %v", d.Type, err)
		}
		vs, ok := msg.(*validate.Violations)
		if !ok {
			continue
		}
		for _, v := range vs.GetViolations() {
			field := protovalidate.FieldPathString(v.GetField())
			out = append(out, violation{field, v.GetRuleId(), v.GetMessage()})
		}
	}
	return out
}

// workloadNotAllowed calls the user service's GetUser, which only the
// order workload may call, with the SVID of each workload and a valid
// transaction token: the token being valid, only the caller's identity
// decides.
//
//nolint:thelper // a scenario, not a helper: see Run
func (s *suite) workloadNotAllowed(t *testing.T) {
	u := SignUp(t, s.p, ConnectJSON)
	req := &userv1.GetUserRequest{UserId: u.ID}
	txn := TxnToken(t, s.p, u.ID, "/user.v1.UserService/GetUser", req)
	for _, tc := range []struct {
		caller string
		want   probe.Result
	}{
		{orderWorkload, probe.Result{Code: "OK", Email: u.Email}},
		{paymentWorkload, probe.Result{Code: "PermissionDenied", Message: msgPermission}},
		{gatewayWorkload, probe.Result{Code: "PermissionDenied", Message: msgPermission}},
	} {
		t.Run(tc.caller, func(t *testing.T) {
			t.Parallel()
			files := devpki.WorkloadFiles(s.p.PKIDir(), tc.caller)
			cfg, closeSource, err := probe.WorkloadTLS(t.Context(), files, workloadID(t, s.p, userWorkload))
			if err != nil {
				t.Fatal(err)
			}
			defer closeChecked(t, "the SVID source", closeSource)
			got, err := probe.GetUser(t.Context(), s.p.GRPCAddr(userWorkload), cfg, txn, u.ID)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("GetUser as %s (-want +got):\n%s", tc.caller, diff)
			}
		})
	}
}

// CertificateRequired is how a workload's server ends a TLS 1.3
// handshake with a client that sent no certificate.
const CertificateRequired = "remote error: tls: certificate required"

// certificateRequired connects to each service's gRPC port without a
// client certificate, and, to show the port is otherwise open, with one.
//
//nolint:thelper // a scenario, not a helper: see Run
func (s *suite) certificateRequired(t *testing.T) {
	for _, name := range []string{userWorkload, orderWorkload, paymentWorkload} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			server := workloadID(t, s.p, name)
			anonymous, err := probe.AnonymousTLS(devpki.WorkloadFiles(s.p.PKIDir(), name).Bundle, server)
			if err != nil {
				t.Fatal(err)
			}
			if got := probe.Handshake(t.Context(), s.p.GRPCAddr(name), anonymous); got != CertificateRequired {
				t.Errorf("without a certificate the handshake ended %q, want %q", got, CertificateRequired)
			}
			files := devpki.WorkloadFiles(s.p.PKIDir(), gatewayWorkload)
			withSVID, closeSource, err := probe.WorkloadTLS(t.Context(), files, server)
			if err != nil {
				t.Fatal(err)
			}
			defer closeChecked(t, "the SVID source", closeSource)
			if got := probe.Handshake(t.Context(), s.p.GRPCAddr(name), withSVID); got != "" {
				t.Errorf("with the gateway's SVID the handshake ended %q, want it accepted", got)
			}
		})
	}
}

// flood calls ListOrders as one user until the gateway limits it, then
// checks that another user still gets through at once.
//
//nolint:thelper // a scenario, not a helper: see Run
func (s *suite) flood(t *testing.T) {
	flooder, other := SignUp(t, s.p, ConnectJSON), SignUp(t, s.p, ConnectJSON)
	start := time.Now()
	passed := 0
	var limited Response
	for range 10 * userBurst {
		r := PostJSON(t, s.p, "/order.v1.OrderService/ListOrders", flooder.Token, "{}")
		if r.Status != http.StatusOK {
			limited = r
			break
		}
		passed++
	}
	elapsed := time.Since(start)
	if limited.Status != http.StatusTooManyRequests {
		t.Fatalf("after %d calls in %v: HTTP %d %s, want %d", passed, elapsed,
			limited.Status, limited.Body, http.StatusTooManyRequests)
	}
	if refill := int(elapsed.Seconds()*userRate) + 1; passed < userBurst || passed > userBurst+refill {
		t.Errorf("%d calls passed in %v before the limit, want %d to %d", passed, elapsed,
			userBurst, userBurst+refill)
	}
	if got := limited.Header.Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After = %q, want %q", got, "1")
	}
	want := ErrorBody{Code: "resource_exhausted", Message: msgRateLimited,
		DetailTypes: []string{"google.rpc.RetryInfo"}}
	if diff := cmp.Diff(want, ParseError(t, limited.Body)); diff != "" {
		t.Errorf("limited answer (-want +got):\n%s", diff)
	}

	if _, err := other.Orders.ListOrders(t.Context(), &orderv1.ListOrdersRequest{}); err != nil {
		t.Errorf("another user was refused during the flood: %v", err)
	}
}

// otherUsersOrder reads, cancels and watches one user's order as another
// user, and expects the very answer an order that does not exist gets.
//
//nolint:thelper // a scenario, not a helper: see Run
func (s *suite) otherUsersOrder(t *testing.T) {
	owner, other := SignUp(t, s.p, ConnectJSON), SignUp(t, s.p, ConnectJSON)
	order := owner.MustOrder(t, "tok_visa")
	missing := uuid.NewString()
	ctx := t.Context()

	calls := map[string]func(c *Client, id string) error{
		"GetOrder": func(c *Client, id string) error {
			_, err := c.Orders.GetOrder(ctx, &orderv1.GetOrderRequest{OrderId: id})
			return err
		},
		"CancelOrder": func(c *Client, id string) error {
			_, err := c.Orders.CancelOrder(ctx, &orderv1.CancelOrderRequest{OrderId: id})
			return err
		},
		"WatchOrder": func(c *Client, id string) error {
			stream, err := c.Orders.WatchOrder(ctx, &orderv1.WatchOrderRequest{OrderId: id})
			if err != nil {
				return err
			}
			defer func() { _ = stream.Close() }() // only read: closing it loses nothing
			_, err = stream.Receive()
			return err
		},
		"GetPayment": func(c *Client, id string) error {
			_, err := c.Payments.GetPayment(ctx, &paymentv1.GetPaymentRequest{OrderId: id})
			return err
		},
	}
	wantMessage := map[string]string{
		"GetOrder": msgOrderNotFound, "CancelOrder": msgOrderNotFound, "WatchOrder": msgOrderNotFound,
		"GetPayment": "payment not found",
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			want := Failure{Code: connect.CodeNotFound, Message: wantMessage[name]}
			if diff := cmp.Diff(want, FailureOf(t, call(other.Client, order.GetOrderId()))); diff != "" {
				t.Errorf("another user's order (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(want, FailureOf(t, call(other.Client, missing))); diff != "" {
				t.Errorf("a missing order (-want +got):\n%s", diff)
			}
		})
	}

	// Byte for byte over the wire, too.
	body := func(id string) string { return `{"orderId":"` + id + `"}` }
	theirs := PostJSON(t, s.p, "/order.v1.OrderService/GetOrder", other.Token, body(order.GetOrderId()))
	none := PostJSON(t, s.p, "/order.v1.OrderService/GetOrder", other.Token, body(missing))
	if theirs.Status != http.StatusNotFound || theirs.Status != none.Status ||
		string(theirs.Body) != string(none.Body) {
		t.Errorf("another user's order: HTTP %d %s; a missing order: HTTP %d %s; want both 404 and equal",
			theirs.Status, theirs.Body, none.Status, none.Body)
	}

	// The owner still sees the order, unchanged by the other's attempts.
	got, err := owner.Orders.GetOrder(ctx, &orderv1.GetOrderRequest{OrderId: order.GetOrderId()})
	if err != nil || got.GetOrder().GetStatus() == orderv1.OrderStatus_ORDER_STATUS_CANCELLED {
		t.Errorf("the owner's GetOrder = %v, %v; want the order, not cancelled", got.GetOrder(), err)
	}
}

// internalMethodsHidden calls, through the gateway, the two methods only
// workloads may call, with a signed-in user's token, over both protocols.
//
//nolint:thelper // a scenario, not a helper: see Run
func (s *suite) internalMethodsHidden(t *testing.T) {
	u := SignUp(t, s.p, ConnectJSON)
	order := u.MustOrder(t, "tok_visa")
	if got := u.Settled(t, order.GetOrderId(), 30*time.Second); !paid(got) {
		t.Fatalf("order ended %v, want PAID", got.GetStatus())
	}
	notServed := func(procedure string) string {
		return "procedure \"" + procedure + "\" not registered"
	}
	for _, tc := range []struct{ procedure, body string }{
		{"/user.v1.UserService/GetUser", `{"userId":"` + u.ID + `"}`},
		{"/payment.v1.PaymentService/RefundPayment", `{"orderId":"` + order.GetOrderId() + `"}`},
	} {
		t.Run(tc.procedure, func(t *testing.T) {
			raw := PostJSON(t, s.p, tc.procedure, u.Token, tc.body)
			if raw.Status != http.StatusNotImplemented {
				t.Errorf("HTTP status %d, want %d", raw.Status, http.StatusNotImplemented)
			}
			want := ErrorBody{Code: "unimplemented", Message: notServed(tc.procedure)}
			if diff := cmp.Diff(want, ParseError(t, raw.Body)); diff != "" {
				t.Errorf("Connect answer (-want +got):\n%s", diff)
			}
		})
	}

	c := NewClient(s.p.GatewayURL(), GRPCProto, u.Token)
	_, err := c.Users.GetUser(t.Context(), &userv1.GetUserRequest{UserId: u.ID})
	want := Failure{Code: connect.CodeUnimplemented, Message: notServed("/user.v1.UserService/GetUser")}
	if diff := cmp.Diff(want, FailureOf(t, err)); diff != "" {
		t.Errorf("GetUser over gRPC (-want +got):\n%s", diff)
	}
	refund := &paymentv1.RefundPaymentRequest{OrderId: order.GetOrderId()}
	_, err = c.Payments.RefundPayment(t.Context(), refund)
	want.Message = notServed("/payment.v1.PaymentService/RefundPayment")
	if diff := cmp.Diff(want, FailureOf(t, err)); diff != "" {
		t.Errorf("RefundPayment over gRPC (-want +got):\n%s", diff)
	}

	payment, err := u.Payments.GetPayment(t.Context(),
		&paymentv1.GetPaymentRequest{OrderId: order.GetOrderId()})
	if err != nil || payment.GetPayment().GetStatus() != paymentv1.PaymentStatus_PAYMENT_STATUS_SUCCEEDED {
		t.Errorf("after the refund attempts GetPayment = %v, %v; want SUCCEEDED", payment.GetPayment(), err)
	}
}

// randomHex returns n random bytes, hex encoded.
func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
