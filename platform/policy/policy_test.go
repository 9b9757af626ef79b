package policy_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	"example.com/rampart/platform/policy"
	orderv1 "example.com/rampart/proto/order/v1"
	_ "example.com/rampart/proto/payment/v1"
	policyv1 "example.com/rampart/proto/rampart/policy/v1"
	_ "example.com/rampart/proto/user/v1"
)

var td = spiffeid.RequireTrustDomainFromString("rampart.local")

func workload(name string) spiffeid.ID { return spiffeid.RequireFromSegments(td, name) }

func loadGlobal(t *testing.T) *policy.Set {
	t.Helper()
	set, err := policy.Load(td, protoregistry.GlobalFiles)
	if err != nil {
		t.Fatalf("loading the policies of the sample services: %v", err)
	}
	return set
}

func TestMethodCallers(t *testing.T) {
	t.Parallel()
	set := loadGlobal(t)
	tests := []struct {
		procedure string
		caller    string
		wantErr   error
	}{
		{"/order.v1.OrderService/CreateOrder", "gateway", nil},
		{"/order.v1.OrderService/CreateOrder", "payment", policy.ErrCallerNotAllowed},
		{"/user.v1.UserService/GetUser", "order", nil},
		{"/user.v1.UserService/GetUser", "gateway", policy.ErrCallerNotAllowed},
		{"/payment.v1.PaymentService/RefundPayment", "order", nil},
		{"/payment.v1.PaymentService/RefundPayment", "gateway", policy.ErrCallerNotAllowed},
		{"/order.v1.OrderService/Missing", "gateway", policy.ErrNoPolicy},
		{"/grpc.health.v1.Health/Check", "gateway", policy.ErrNoPolicy},
		{"", "gateway", policy.ErrNoPolicy},
	}
	for _, tt := range tests {
		t.Run(tt.procedure+" by "+tt.caller, func(t *testing.T) {
			t.Parallel()
			m, err := set.Method(tt.procedure)
			if err == nil {
				err = m.CheckCaller(workload(tt.caller))
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("got %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestServer(t *testing.T) {
	t.Parallel()
	set := loadGlobal(t)
	for procedure, want := range map[string]string{
		"/order.v1.CatalogService/ListProducts":    "order",
		"/user.v1.UserService/GetUser":             "user",
		"/payment.v1.PaymentService/RefundPayment": "payment",
	} {
		m, err := set.Method(procedure)
		if err != nil {
			t.Fatal(err)
		}
		if m.ServerName != want || m.Server != workload(want) {
			t.Errorf("%s served by %q (%v), want %q", procedure, m.ServerName, m.Server, want)
		}
	}
}

func TestCallerFromAnotherTrustDomain(t *testing.T) {
	t.Parallel()
	m, err := loadGlobal(t).Method("/order.v1.OrderService/CreateOrder")
	if err != nil {
		t.Fatal(err)
	}
	other := spiffeid.RequireFromString("spiffe://elsewhere.test/gateway")
	if err := m.CheckCaller(other); !errors.Is(err, policy.ErrCallerNotAllowed) {
		t.Fatalf("gateway of another trust domain: got %v, want ErrCallerNotAllowed", err)
	}
}

func TestPublicMethods(t *testing.T) {
	t.Parallel()
	var public []string
	for m := range loadGlobal(t).Methods() {
		if m.Public {
			public = append(public, m.Procedure)
		}
	}
	want := []string{
		"/order.v1.CatalogService/ListProducts",
		"/order.v1.OrderService/CancelOrder",
		"/order.v1.OrderService/CreateOrder",
		"/order.v1.OrderService/GetOrder",
		"/order.v1.OrderService/ListOrders",
		"/order.v1.OrderService/WatchOrder",
		"/payment.v1.PaymentService/GetPayment",
		"/user.v1.UserService/GetMe",
		"/user.v1.UserService/Login",
		"/user.v1.UserService/Logout",
		"/user.v1.UserService/LogoutEverywhere",
		"/user.v1.UserService/Refresh",
		"/user.v1.UserService/SignUp",
	}
	if diff := cmp.Diff(want, public); diff != "" {
		t.Errorf("public methods (-want +got):\n%s", diff)
	}
}

const createOrder = "/order.v1.OrderService/CreateOrder"

func TestAuthorize(t *testing.T) {
	t.Parallel()
	set := loadGlobal(t)
	tests := []struct {
		name      string
		procedure string
		user      bool
		scopes    []string
		wantErr   error
	}{
		{"user with scope", createOrder, true, []string{"orders:write"}, nil},
		{"extra scopes", "/order.v1.OrderService/GetOrder", true, []string{"profile", "orders:read"}, nil},
		{"anonymous", createOrder, false, []string{"orders:write"}, policy.ErrUserRequired},
		{"missing scope", createOrder, true, []string{"orders:read"}, policy.ErrMissingScope},
		{"no scopes", "/payment.v1.PaymentService/GetPayment", true, nil, policy.ErrMissingScope},
		{"anonymous catalog", "/order.v1.CatalogService/ListProducts", false, nil, nil},
		{"internal user method", "/user.v1.UserService/GetUser", true, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, err := set.Method(tt.procedure)
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Authorize(tt.user, tt.scopes); !errors.Is(err, tt.wantErr) {
				t.Fatalf("got %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestTransactionContext(t *testing.T) {
	t.Parallel()
	m, err := loadGlobal(t).Method("/order.v1.OrderService/GetOrder")
	if err != nil {
		t.Fatal(err)
	}
	const id = "0193a7b0-54f8-7c3e-9d2a-6f1e2c3d4b5a"
	bound := m.TransactionContext(&orderv1.GetOrderRequest{OrderId: id})
	if diff := cmp.Diff(map[string]string{"order_id": id}, bound); diff != "" {
		t.Fatalf("bound context (-want +got):\n%s", diff)
	}

	tests := []struct {
		name    string
		req     *orderv1.GetOrderRequest
		bound   map[string]string
		wantErr error
	}{
		{"same order", &orderv1.GetOrderRequest{OrderId: id}, bound, nil},
		{"other order", &orderv1.GetOrderRequest{OrderId: "0193a7b0-0000-7000-8000-000000000000"},
			bound, policy.ErrContextMismatch},
		{"not bound", &orderv1.GetOrderRequest{OrderId: id}, nil, policy.ErrContextMismatch},
		{"bound elsewhere", &orderv1.GetOrderRequest{OrderId: id},
			map[string]string{"idempotency_key": id}, policy.ErrContextMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if err := m.CheckTransactionContext(tt.req, tt.bound); !errors.Is(err, tt.wantErr) {
				t.Fatalf("got %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestMethodWithoutContextBindsNothing(t *testing.T) {
	t.Parallel()
	m, err := loadGlobal(t).Method("/order.v1.OrderService/ListOrders")
	if err != nil {
		t.Fatal(err)
	}
	if got := m.TransactionContext(&orderv1.ListOrdersRequest{PageSize: 3}); got != nil {
		t.Errorf("TransactionContext = %v, want nil", got)
	}
	if err := m.CheckTransactionContext(&orderv1.ListOrdersRequest{}, nil); err != nil {
		t.Errorf("CheckTransactionContext = %v, want nil", err)
	}
}

func TestEvents(t *testing.T) {
	t.Parallel()
	set := loadGlobal(t)
	created, err := set.Event("order.v1.OrderCreated")
	if err != nil {
		t.Fatal(err)
	}
	if created.Subject != "orders.created" || created.Publisher != workload("order") {
		t.Errorf("OrderCreated: subject %q publisher %v", created.Subject, created.Publisher)
	}
	if err := created.CheckSubscriber(workload("payment")); err != nil {
		t.Errorf("payment consuming OrderCreated: %v", err)
	}
	if err := created.CheckSubscriber(workload("user")); !errors.Is(err, policy.ErrCallerNotAllowed) {
		t.Errorf("user consuming OrderCreated: got %v, want ErrCallerNotAllowed", err)
	}
	if err := created.CheckPublisher(workload("payment")); !errors.Is(err, policy.ErrCallerNotAllowed) {
		t.Errorf("payment publishing OrderCreated: got %v, want ErrCallerNotAllowed", err)
	}
	bySubject, err := set.EventBySubject("payments.failed")
	if err != nil || bySubject.Name != "payment.v1.PaymentFailed" {
		t.Errorf("EventBySubject(payments.failed) = %v, %v", bySubject, err)
	}
	if _, err := set.EventBySubject("orders.>"); !errors.Is(err, policy.ErrNoPolicy) {
		t.Errorf("EventBySubject(wildcard): got %v, want ErrNoPolicy", err)
	}
	var subjects []string
	for e := range set.Events() {
		subjects = append(subjects, e.Subject)
	}
	want := []string{"orders.cancelled", "orders.created", "payments.failed",
		"payments.succeeded", "users.session_revoked"}
	if diff := cmp.Diff(want, subjects); diff != "" {
		t.Errorf("event subjects (-want +got):\n%s", diff)
	}
}

// TestLoadRefusesContradictions builds small .proto files in memory, each
// with one mistake, and checks that Load names it.
func TestLoadRefusesContradictions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		method     *policyv1.MethodPolicy
		event      *policyv1.EventPolicy
		wantErr    string
		noWorkload bool
	}{
		{"no callers", &policyv1.MethodPolicy{Public: false}, nil, "no callers", false},
		{"public without gateway", &policyv1.MethodPolicy{Callers: []string{"order"}, Public: true},
			nil, "gateway is not among its callers", false},
		{"public without workload", &policyv1.MethodPolicy{Callers: []string{"gateway"}, Public: true},
			nil, "names no workload", true},
		{"scopes without user", &policyv1.MethodPolicy{Callers: []string{"order"}, Scopes: []string{"a"}},
			nil, "set user_required", false},
		{"bad scope", &policyv1.MethodPolicy{Callers: []string{"order"}, UserRequired: true,
			Scopes: []string{"has space"}}, nil, "invalid scope", false},
		{"bad workload", &policyv1.MethodPolicy{Callers: []string{"Order/../x"}},
			nil, "invalid workload", false},
		{"unknown context field", &policyv1.MethodPolicy{Callers: []string{"order"},
			TransactionContext: []string{"nope"}}, nil, `field "nope" is not in`, false},
		{"message context field", &policyv1.MethodPolicy{Callers: []string{"order"},
			TransactionContext: []string{"nested"}}, nil, "not a single string", false},
		{"wildcard subject", nil, &policyv1.EventPolicy{Subject: "a.>", Publisher: "order"},
			"invalid subject", false},
		{"no publisher", nil, &policyv1.EventPolicy{Subject: "a.b"}, "no publisher", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			workload := "order"
			if tt.noWorkload {
				workload = ""
			}
			files := testFiles(t, tt.method, tt.event, workload)
			_, err := policy.Load(td, files)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Load error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// testFiles returns a registry of one file, test.v1, whose method Do and
// message Happened carry the given policies, and whose service is served by
// workload.
func testFiles(t *testing.T, method *policyv1.MethodPolicy, event *policyv1.EventPolicy,
	workload string) *protoregistry.Files {
	t.Helper()
	serviceOpts := &descriptorpb.ServiceOptions{}
	if workload != "" {
		proto.SetExtension(serviceOpts, policyv1.E_Workload, workload)
	}
	methodOpts := &descriptorpb.MethodOptions{}
	if method != nil {
		proto.SetExtension(methodOpts, policyv1.E_Method, method)
	}
	eventOpts := &descriptorpb.MessageOptions{}
	if event != nil {
		proto.SetExtension(eventOpts, policyv1.E_Event, event)
	}
	file := &descriptorpb.FileDescriptorProto{
		Name:       new("test/v1/test.proto"),
		Package:    new("test.v1"),
		Syntax:     new("proto3"),
		Dependency: []string{"google/protobuf/descriptor.proto", "rampart/policy/v1/policy.proto"},
		MessageType: []*descriptorpb.DescriptorProto{
			{Name: new("Nested")},
			{Name: new("DoRequest"), Field: []*descriptorpb.FieldDescriptorProto{{
				Name: new("nested"), Number: proto.Int32(1), JsonName: new("nested"),
				Label:    descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(),
				Type:     descriptorpb.FieldDescriptorProto_TYPE_MESSAGE.Enum(),
				TypeName: new(".test.v1.Nested"),
			}}},
			{Name: new("DoResponse")},
			{Name: new("Happened"), Options: eventOpts},
		},
		Service: []*descriptorpb.ServiceDescriptorProto{{
			Name:    new("TestService"),
			Options: serviceOpts,
			Method: []*descriptorpb.MethodDescriptorProto{{
				Name:       new("Do"),
				InputType:  new(".test.v1.DoRequest"),
				OutputType: new(".test.v1.DoResponse"),
				Options:    methodOpts,
			}},
		}},
	}
	fd, err := protodesc.NewFile(file, protoregistry.GlobalFiles)
	if err != nil {
		t.Fatalf("building test descriptor: %v", err)
	}
	files := &protoregistry.Files{}
	if err := files.RegisterFile(fd); err != nil {
		t.Fatal(err)
	}
	return files
}

func TestMethodsAreSorted(t *testing.T) {
	t.Parallel()
	var names []string
	for m := range loadGlobal(t).Methods() {
		names = append(names, m.Procedure)
	}
	if !slices.IsSorted(names) || len(names) == 0 {
		t.Errorf("Methods() not sorted or empty: %v", names)
	}
}
