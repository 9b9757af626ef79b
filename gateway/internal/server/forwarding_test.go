package server

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/google/uuid"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"example.com/rampart/gateway/internal/revocation"
	"example.com/rampart/platform/grpcserver"
	"example.com/rampart/platform/txntoken"
)

const createOrder = `{"items":[{"sku":"TEA-GREEN-100G","quantity":2}],` +
	`"paymentMethod":"tok_visa","idempotencyKey":"first-order-1"}`

// upstreamMetadata are the only metadata keys a workload may receive from
// the gateway: the transport's, the trace context, and the transaction
// token. Nothing the client sent is among them.
var upstreamMetadata = []string{
	":authority", "content-type", "user-agent", "grpc-accept-encoding", "grpc-timeout",
	"traceparent", "tracestate", "baggage", txntoken.MetadataKey,
}

// txnOf verifies the transaction token of a call the workload received,
// against the keys the gateway publishes, and returns it with its JOSE
// header.
func (f *fixture) txnOf(t *testing.T, call upstreamCall) (*txntoken.Token, map[string]any) {
	t.Helper()
	raw := call.MD.Get(txntoken.MetadataKey)
	if len(raw) != 1 {
		t.Fatalf("%s got %d transaction tokens, want 1", call.Method, len(raw))
	}
	v, err := txntoken.NewVerifier(txntoken.VerifierConfig{
		Keys: f.txnKeys, TrustDomain: trustDomain, Issuer: gatewayID.String(),
	})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := v.Verify(t.Context(), raw[0])
	if err != nil {
		t.Fatalf("the workload's transaction token does not verify: %v", err)
	}
	segment, _, _ := strings.Cut(raw[0], ".")
	data, err := base64.RawURLEncoding.DecodeString(segment)
	if err != nil {
		t.Fatal(err)
	}
	var header map[string]any
	if err := json.Unmarshal(data, &header); err != nil {
		t.Fatal(err)
	}
	return tok, header
}

// TestWorkloadGetsOnlyATransactionToken follows a signed-in call to the
// workload: it carries a transaction token that the gateway's published
// keys verify, typed txntoken+jwt, naming the user and session, narrowed
// to the method's scope, bound to the request's transaction context and
// the client's address; and it carries nothing the client sent, the
// access token least of all.
func TestWorkloadGetsOnlyATransactionToken(t *testing.T) {
	t.Parallel()
	f := newFixture(t, options{})
	access, user := f.issuer.login(t)
	spoofed := http.Header{
		"Cookie":          {"session=abc"},
		"X-Forwarded-For": {"203.0.113.9"},
		"X-Custom":        {"hello"},
		"Traceparent":     {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
	}

	var tokens []*txntoken.Token
	for range 2 {
		a := f.call(t, "order.v1.OrderService/CreateOrder", access, createOrder, spoofed)
		if a.Status != http.StatusOK {
			t.Fatalf("CreateOrder: status %d, body %s", a.Status, a.Body)
		}
		call := f.up.last()
		tok, header := f.txnOf(t, call)
		tokens = append(tokens, tok)

		if diff := cmp.Diff(map[string]any{"alg": "ES256", "kid": f.txnKeys.Signer().Key.(jose.JSONWebKey).KeyID,
			"typ": txntoken.Type}, header); diff != "" {
			t.Errorf("JOSE header (-want +got):\n%s", diff)
		}
		for key := range call.MD {
			if !slices.Contains(upstreamMetadata, key) {
				t.Errorf("the workload got metadata %q=%q", key, call.MD.Get(key))
			}
		}
		if got := call.MD.Get("traceparent"); slices.Contains(got, spoofed.Get("Traceparent")) {
			t.Error("the client's trace context reached the workload")
		}
	}

	want := txntoken.Claims{
		Subject:   user.Subject,
		SessionID: user.SessionID,
		Scopes:    []string{"orders:write"},
		Workload:  gatewayID.String(),
		ClientIP:  "127.0.0.1",
		Context:   map[string]string{"idempotency_key": "first-order-1"},
	}
	ignore := cmpopts.IgnoreFields(txntoken.Claims{}, "ID", "IssuedAt", "Expiry")
	for _, tok := range tokens {
		if diff := cmp.Diff(want, tok.Claims, ignore); diff != "" {
			t.Errorf("transaction token claims (-want +got):\n%s", diff)
		}
		if life := tok.Claims.Expiry.Sub(tok.Claims.IssuedAt); life != f.cfg.TxnTokenTTL ||
			life > txntoken.MaxLifetime {
			t.Errorf("transaction token lives %v, want %v", life, f.cfg.TxnTokenTTL)
		}
	}
	if tokens[0].Claims.ID == "" || tokens[0].Claims.ID == tokens[1].Claims.ID {
		t.Errorf("transaction ids %q and %q, want two different ones",
			tokens[0].Claims.ID, tokens[1].Claims.ID)
	}
}

// TestAnonymousTransactionToken is a call without a user: its token says
// so and grants nothing.
func TestAnonymousTransactionToken(t *testing.T) {
	t.Parallel()
	f := newFixture(t, options{})
	a := f.call(t, "order.v1.CatalogService/ListProducts", "", "{}", nil)
	if a.Status != http.StatusOK {
		t.Fatalf("ListProducts: status %d, body %s", a.Status, a.Body)
	}
	tok, _ := f.txnOf(t, f.up.last())
	want := txntoken.Claims{Subject: txntoken.Anonymous, Workload: gatewayID.String(), ClientIP: "127.0.0.1"}
	ignore := cmpopts.IgnoreFields(txntoken.Claims{}, "ID", "IssuedAt", "Expiry")
	if diff := cmp.Diff(want, tok.Claims, ignore, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("transaction token claims (-want +got):\n%s", diff)
	}
}

// TestClientAddressBehindTrustedProxy shows that X-Forwarded-For is
// believed from a trusted proxy only, and then only its right-most
// address that is not itself a trusted proxy.
func TestClientAddressBehindTrustedProxy(t *testing.T) {
	t.Parallel()
	f := newFixture(t, options{cfg: func(c *Config) { c.TrustedProxies = "127.0.0.0/8, 10.0.0.0/8" }})
	a := f.call(t, "order.v1.CatalogService/ListProducts", "", "{}", http.Header{
		"X-Forwarded-For": {"198.51.100.1, 203.0.113.9", "10.1.2.3"},
	})
	if a.Status != http.StatusOK {
		t.Fatalf("status %d, body %s", a.Status, a.Body)
	}
	tok, _ := f.txnOf(t, f.up.last())
	if tok.Claims.ClientIP != "203.0.113.9" {
		t.Errorf("client address %q, want 203.0.113.9", tok.Claims.ClientIP)
	}
}

// TestScopeNeverWiderThanTheAccessToken calls a method whose scope the
// access token lacks: refused before the workload, and never minted.
func TestScopeNeverWiderThanTheAccessToken(t *testing.T) {
	t.Parallel()
	f := newFixture(t, options{})
	iss := f.issuer
	readOnly := forge(t, jose.ES256, iss.key, iss.validHeader(),
		iss.validClaims().with("scope", "profile orders:read"))

	a := f.call(t, "order.v1.OrderService/CreateOrder", readOnly, createOrder, nil)
	got := rejection{Status: a.Status, Body: a.Body}
	want := rejection{Status: http.StatusForbidden,
		Body: `{"code":"permission_denied","message":"permission denied"}`}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("answer (-want +got):\n%s", diff)
	}
	if line := f.logLine(t, a); line["audit"] != "denied" ||
		!strings.Contains(line["reason"].(string), "orders:write") {
		t.Errorf("log line %v, want an audited denial naming the missing scope", line)
	}

	a = f.call(t, "order.v1.OrderService/ListOrders", readOnly, "{}", nil)
	if a.Status != http.StatusOK {
		t.Fatalf("ListOrders: status %d, body %s", a.Status, a.Body)
	}
	tok, _ := f.txnOf(t, f.up.last())
	if diff := cmp.Diff([]string{"orders:read"}, tok.Claims.Scopes); diff != "" {
		t.Errorf("scopes (-want +got):\n%s", diff)
	}
	if n := f.up.count(); n != 1 {
		t.Errorf("the workload got %d calls, want 1", n)
	}
}

// TestRateLimits exhausts one user's bucket, then one address's: the
// caller gets 429 with Retry-After and the workload nothing, while another
// user goes on.
func TestRateLimits(t *testing.T) {
	t.Parallel()
	f := newFixture(t, options{cfg: func(c *Config) {
		c.UserRate, c.UserBurst = 0.01, 2
		c.IPRate, c.IPBurst = 0.01, 6
	}})
	flooder, _ := f.issuer.login(t)
	other, _ := f.issuer.login(t)

	var statuses []int
	for range 3 {
		a := f.call(t, "user.v1.UserService/GetMe", flooder, "{}", nil)
		statuses = append(statuses, a.Status)
		if a.Status == http.StatusTooManyRequests {
			checkRateLimited(t, f, a)
		}
	}
	if diff := cmp.Diff([]int{200, 200, 429}, statuses); diff != "" {
		t.Errorf("one user's statuses (-want +got):\n%s", diff)
	}
	if a := f.call(t, "user.v1.UserService/GetMe", other, "{}", nil); a.Status != http.StatusOK {
		t.Errorf("another user got status %d, want 200", a.Status)
	}

	// The address has spent 3 of its 6: the rest go to anonymous calls.
	statuses = nil
	for range 4 {
		a := f.call(t, "order.v1.CatalogService/ListProducts", "", "{}", nil)
		statuses = append(statuses, a.Status)
		if a.Status == http.StatusTooManyRequests {
			checkRateLimited(t, f, a)
		}
	}
	if diff := cmp.Diff([]int{200, 200, 200, 429}, statuses); diff != "" {
		t.Errorf("one address's statuses (-want +got):\n%s", diff)
	}
	if n := f.up.count(); n != 6 {
		t.Errorf("the workload got %d calls, want 6", n)
	}
}

func checkRateLimited(t *testing.T, f *fixture, a answer) {
	t.Helper()
	if s, err := strconv.Atoi(a.Header.Get("Retry-After")); err != nil || s < 1 {
		t.Errorf("Retry-After %q, want a whole number of seconds", a.Header.Get("Retry-After"))
	}
	var body struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal([]byte(a.Body), &body); err != nil {
		t.Fatal(err)
	}
	if body.Code != "resource_exhausted" || body.Message != "rate limit exceeded" {
		t.Errorf("body %s, want resource_exhausted, rate limit exceeded", a.Body)
	}
	if line := f.logLine(t, a); line["audit"] != "denied" {
		t.Errorf("log line %v, want an audited denial", line)
	}
}

// TestCORS answers browsers from allowlisted origins only.
func TestCORS(t *testing.T) {
	t.Parallel()
	const shop = "https://shop.example"
	allowing := newFixture(t, options{cfg: func(c *Config) { c.CORSOrigins = shop }})
	closed := newFixture(t, options{})

	preflight := func(f *fixture, origin string) http.Header {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodOptions,
			f.url+"/user.v1.UserService/GetMe", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", http.MethodPost)
		req.Header.Set("Access-Control-Request-Headers", "authorization,content-type")
		return send(t, req).Header
	}
	call := func(f *fixture, origin string) http.Header {
		return f.call(t, "order.v1.CatalogService/ListProducts", "", "{}",
			http.Header{"Origin": {origin}}).Header
	}
	tests := []struct {
		name       string
		header     http.Header
		wantOrigin string
	}{
		{"preflight from the allowed origin", preflight(allowing, shop), shop},
		{"preflight from another origin", preflight(allowing, "https://evil.example"), ""},
		{"preflight with no origin allowed", preflight(closed, shop), ""},
		{"call from the allowed origin", call(allowing, shop), shop},
		{"call from another origin", call(allowing, "https://evil.example"), ""},
		{"call with no origin allowed", call(closed, shop), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.header.Get("Access-Control-Allow-Origin"); got != tt.wantOrigin {
				t.Errorf("Access-Control-Allow-Origin %q, want %q", got, tt.wantOrigin)
			}
			if tt.wantOrigin == "" && tt.header.Get("Access-Control-Allow-Headers") != "" {
				t.Errorf("Access-Control-Allow-Headers sent to a refused origin")
			}
		})
	}
	if got := call(allowing, shop).Get("Access-Control-Expose-Headers"); !strings.Contains(got, "Trace-Id") {
		t.Errorf("Access-Control-Expose-Headers %q, want Trace-Id among them", got)
	}
}

// TestUpstreamErrorsAreMasked makes the workload fail in every way: what
// is the platform's fault reaches the client as a bare message, whatever
// the workload wrote, and only the details meant for clients go through.
func TestUpstreamErrorsAreMasked(t *testing.T) { //nolint:tparallel // cases share one workload
	t.Parallel()
	f := newFixture(t, options{})
	const leak = `open /var/lib/order/order.db: pq: relation "orders" at 10.0.3.7:5432`
	badRequest := &errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
		{Field: "items", Description: "at least one item"},
	}}
	debug := &errdetails.DebugInfo{Detail: leak, StackEntries: []string{"orderrpc.go:42"}}

	tests := []struct {
		name        string
		code        codes.Code
		message     string
		wantStatus  int
		wantBody    string
		wantDetails []string
	}{
		{"internal", codes.Internal, leak, 500, `{"code":"internal","message":"internal error"}`, nil},
		{"unknown", codes.Unknown, leak, 500, `{"code":"internal","message":"internal error"}`, nil},
		{"data loss", codes.DataLoss, leak, 500, `{"code":"internal","message":"internal error"}`, nil},
		{"handler refuses the user's credentials", codes.Unauthenticated, "invalid email or password",
			401, "", []string{"google.rpc.BadRequest"}},
		{"method unknown upstream", codes.Unimplemented, leak, 500,
			`{"code":"internal","message":"internal error"}`, nil},
		{"unavailable", codes.Unavailable, leak, 503,
			`{"code":"unavailable","message":"service unavailable"}`, nil},
		{"peer refused", codes.PermissionDenied, leak, 403,
			`{"code":"permission_denied","message":"permission denied"}`, nil},
		{"not found", codes.NotFound, "order not found", 404, "", []string{"google.rpc.BadRequest"}},
		{"invalid argument", codes.InvalidArgument, "invalid order", 400, "",
			[]string{"google.rpc.BadRequest"}},
	}
	access, _ := f.issuer.login(t)
	// Each case sets the reply of the workload the fixture shares.
	for _, tt := range tests { //nolint:paralleltest // cases set the reply of one shared workload
		t.Run(tt.name, func(t *testing.T) {
			f.up.setReply(func(string, proto.Message) (proto.Message, error) {
				st, err := status.New(tt.code, tt.message).WithDetails(badRequest, debug)
				if err != nil {
					return nil, err
				}
				return nil, st.Err()
			})
			a := f.call(t, "order.v1.OrderService/GetOrder", access,
				`{"orderId":"`+uuid.NewString()+`"}`, nil)
			if a.Status != tt.wantStatus {
				t.Errorf("status %d, want %d", a.Status, tt.wantStatus)
			}
			if tt.wantBody != "" && a.Body != tt.wantBody {
				t.Errorf("body %s, want %s", a.Body, tt.wantBody)
			}
			checkUpstreamMessage(t, a, tt.message, tt.wantBody == "", tt.wantDetails)
		})
	}
	// The platform's own refusal of the gateway's transaction token is the
	// gateway's failure, masked, whatever its message.
	f.up.setReply(func(string, proto.Message) (proto.Message, error) {
		st, err := status.New(codes.Unauthenticated, leak).WithDetails(&errdetails.ErrorInfo{
			Domain: grpcserver.DenialDomain, Reason: "UNAUTHENTICATED",
		})
		if err != nil {
			return nil, err
		}
		return nil, st.Err()
	})
	if a := f.call(t, "order.v1.OrderService/GetOrder", access,
		`{"orderId":"`+uuid.NewString()+`"}`, nil); a.Status != 500 ||
		a.Body != `{"code":"internal","message":"internal error"}` {
		t.Errorf("token refused upstream: %d %s, want 500 and a bare internal error", a.Status, a.Body)
	}

	// The cause of a masked error is for the log only.
	f.up.setReply(func(string, proto.Message) (proto.Message, error) {
		return nil, status.Error(codes.Internal, leak)
	})
	a := f.call(t, "order.v1.OrderService/ListOrders", access, "{}", nil)
	if line := f.logLine(t, a); !strings.Contains(line["error"].(string), leak) || line["level"] != "ERROR" {
		t.Errorf("log line %v, want the cause at level ERROR", line)
	}
}

// checkUpstreamMessage checks that the body of a carries only wantDetails
// among the error details and no internals of the workload, and, if
// forwarded, that its message is the workload's message.
func checkUpstreamMessage(t *testing.T, a answer, message string, forwarded bool,
	wantDetails []string,
) {
	t.Helper()
	var body struct {
		Message string `json:"message"`
		Details []struct {
			Type string `json:"type"`
		} `json:"details"`
	}
	if err := json.Unmarshal([]byte(a.Body), &body); err != nil {
		t.Fatal(err)
	}
	var details []string
	for _, d := range body.Details {
		details = append(details, d.Type)
	}
	if diff := cmp.Diff(wantDetails, details); diff != "" {
		t.Errorf("details (-want +got):\n%s", diff)
	}
	if strings.Contains(a.Body, "pq:") || strings.Contains(a.Body, "orderrpc.go") {
		t.Errorf("body leaks the workload's internals: %s", a.Body)
	}
	if forwarded && body.Message != message {
		t.Errorf("message %q, want the workload's %q", body.Message, message)
	}
}

// TestRevocationsNotLoaded is a gateway just started, still replaying the
// revocations: a token naming a session is refused as unavailable, since
// its session may be among those not loaded yet, and one is accepted
// again once loading is done.
func TestRevocationsNotLoaded(t *testing.T) {
	t.Parallel()
	list := revocation.New()
	f := newFixture(t, options{revocations: list})
	access, _ := f.issuer.login(t)

	a := f.call(t, "user.v1.UserService/GetMe", access, "{}", nil)
	want := rejection{Status: http.StatusServiceUnavailable,
		Body: `{"code":"unavailable","message":"service unavailable"}`, Code: "unavailable", Audit: "denied"}
	line := f.logLine(t, a)
	got := rejection{Status: a.Status, Body: a.Body, Code: line["code"], Audit: line["audit"]}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("while loading (-want +got):\n%s", diff)
	}
	if got := a.Header.Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After %q, want 1", got)
	}
	if a := f.call(t, "order.v1.CatalogService/ListProducts", "", "{}", nil); a.Status != http.StatusOK {
		t.Errorf("an anonymous call while loading got status %d, want 200", a.Status)
	}

	list.MarkLoaded()
	if a := f.call(t, "user.v1.UserService/GetMe", access, "{}", nil); a.Status != http.StatusOK {
		t.Errorf("after loading, status %d, want 200", a.Status)
	}
	if n := f.up.count(); n != 2 {
		t.Errorf("the workload got %d calls, want 2", n)
	}
}
