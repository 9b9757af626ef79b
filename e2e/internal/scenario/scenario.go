// Package scenario holds the end-to-end scenarios: the platform driven
// through its gateway as a client would, and its workloads' ports and NATS
// called as an impersonated workload would. The same scenarios run against
// every stack that implements [Platform]: workloads as processes (package
// e2e, in `make test`) and workloads in containers (package containers, in
// `make e2e`).
package scenario

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/google/uuid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"example.com/rampart/e2e/internal/otlpsink"
	orderv1 "example.com/rampart/proto/order/v1"
	paymentv1 "example.com/rampart/proto/payment/v1"
	userv1 "example.com/rampart/proto/user/v1"
)

// Platform is a running stack as the tests see it from the host. Every
// address it returns is on 127.0.0.1; a stack that moves a port, as a
// restarted container does, returns the new one.
type Platform interface {
	// GatewayURL is the base URL of the public API, "http://127.0.0.1:PORT".
	GatewayURL() string
	// TrustDomain is the trust domain of every workload.
	TrustDomain() spiffeid.TrustDomain
	// PKIDir holds the stack's CA, trust bundle and one SVID per workload,
	// laid out as devpki.Ensure writes them.
	PKIDir() string
	// AccessKeysFile holds the user service's access-token signing keys,
	// TxnKeysFile the gateway's transaction-token signing keys.
	AccessKeysFile() string
	TxnKeysFile() string
	// Issuer is the "iss" of the access tokens the user service issues.
	Issuer() string
	// GRPCAddr is where the test reaches the gRPC port of the workload
	// name ("user", "order" or "payment").
	GRPCAddr(name string) string
	// NATSURL is where the test reaches NATS, "tls://127.0.0.1:PORT".
	NATSURL() string
	// PaymentDB is the path of the payment service's SQLite database,
	// which the test opens read-only.
	PaymentDB() string
	// Trace returns the spans received so far for traceID.
	Trace(ctx context.Context, traceID string) ([]otlpsink.Span, error)
}

// The workloads by name, as their SPIFFE IDs, their SVIDs' directories and
// their spans name them.
const (
	gatewayWorkload = "gateway"
	userWorkload    = "user"
	orderWorkload   = "order"
	paymentWorkload = "payment"
	natsWorkload    = "nats"
)

// Settings are the workload settings the scenarios assume, as environment
// variables: each stack passes them to its workloads. Client addresses
// are all one in a test, so the per-address limit is set out of reach and
// the per-user limit is the one a flood meets.
var Settings = map[string]string{
	"GATEWAY_USER_RATE":  "10",
	"GATEWAY_USER_BURST": "20",
	"GATEWAY_IP_RATE":    "10000",
	"GATEWAY_IP_BURST":   "20000",
	// Anonymous calls (sign-up, login) are limited per client address at
	// the user service too.
	"USER_RATE_LIMIT": "1000",
	"USER_RATE_BURST": "2000",
	// Spans reach the collector within a fraction of a second.
	"OTEL_BSP_SCHEDULE_DELAY":     "100",
	"OTEL_EXPORTER_OTLP_INSECURE": "true",
}

// userBurst and userRate mirror GATEWAY_USER_BURST and GATEWAY_USER_RATE.
const (
	userBurst = 20
	userRate  = 10
)

// Run runs every scenario against p, each in a parallel subtest. A
// scenario is its subtest's body, not a helper, so that its failures
// report its own lines.
func Run(t *testing.T, p Platform) {
	t.Helper()
	s := &suite{p: p}
	for _, sc := range []struct {
		name string
		run  func(t *testing.T)
	}{
		{"HappyPath", s.happyPath},
		{"Unauthenticated", s.unauthenticated},
		{"InvalidArgument", s.invalidArgument},
		{"WorkloadNotAllowed", s.workloadNotAllowed},
		{"CertificateRequired", s.certificateRequired},
		{"Flood", s.flood},
		{"OtherUsersOrder", s.otherUsersOrder},
		{"InternalMethodsHidden", s.internalMethodsHidden},
		{"OneTrace", s.oneTrace},
		{"DuplicateEvent", s.duplicateEvent},
	} {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			sc.run(t)
		})
	}
}

type suite struct{ p Platform }

// Eventually calls check until it returns true or timeout passes, then
// fails the test with what describe says about the last attempt.
func Eventually(t *testing.T, timeout time.Duration, check func() bool, describe func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !check() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", timeout, describe())
		}
		select {
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// closeChecked calls closeFn, which closes what, and fails the test if it
// fails.
func closeChecked(t *testing.T, what string, closeFn func() error) {
	t.Helper()
	if err := closeFn(); err != nil {
		t.Errorf("closing %s: %v", what, err)
	}
}

// WaitUntilServing waits until a call through the gateway reaches each
// service and is accepted there: a workload is ready once it serves, but
// it verifies transaction tokens only once it has fetched the gateway's
// keys, and the gateway starts last.
func WaitUntilServing(ctx context.Context, p Platform, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	email := "e2e-warm-up-" + strings.ToLower(rand.Text()[:12]) + "@example.com"
	var last error
	for {
		if last = serving(ctx, p, email); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the platform does not serve calls: %w", last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// serving places one call on each service: the catalog (order), a sign-up
// and login (user), and a payment lookup that must end NotFound (payment).
func serving(ctx context.Context, p Platform, email string) error {
	anonymous := NewClient(p.GatewayURL(), ConnectJSON, "")
	if _, err := anonymous.Catalog.ListProducts(ctx, &orderv1.ListProductsRequest{}); err != nil {
		return fmt.Errorf("listing products: %w", err)
	}
	_, err := anonymous.Users.SignUp(ctx, &userv1.SignUpRequest{
		Email: email, Password: Password, DisplayName: "Warm Up",
	})
	if err != nil && connect.CodeOf(err) != connect.CodeAlreadyExists {
		return fmt.Errorf("signing up: %w", err)
	}
	login, err := anonymous.Users.Login(ctx, &userv1.LoginRequest{Email: email, Password: Password})
	if err != nil {
		return fmt.Errorf("logging in: %w", err)
	}
	user := NewClient(p.GatewayURL(), ConnectJSON, login.GetAccessToken())
	_, err = user.Payments.GetPayment(ctx, &paymentv1.GetPaymentRequest{OrderId: uuid.NewString()})
	switch {
	case err == nil:
		return errors.New("reading a payment: got one, want NotFound")
	case connect.CodeOf(err) != connect.CodeNotFound:
		return fmt.Errorf("reading a payment: got %w, want NotFound", err)
	}
	return nil
}
