package containers

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go/wait"
	"google.golang.org/protobuf/testing/protocmp"

	"example.com/rampart/e2e/internal/probe"
	"example.com/rampart/e2e/internal/scenario"
	"example.com/rampart/platform/devpki"
	orderv1 "example.com/rampart/proto/order/v1"
	userv1 "example.com/rampart/proto/user/v1"
)

// requireStack skips the test when the suite is off.
func requireStack(t *testing.T) {
	t.Helper()
	if stack == nil {
		t.Skip("the container suite runs with " + suiteVariable + "=1 (make e2e), not under -short")
	}
}

// The tests run in the order they appear: the scenarios every stack runs,
// the calls from inside the network, and last the faults, which stop,
// kill and restart containers.

// TestHardening checks what the images promise and how the suite runs
// them: a non-root numeric user in every image, and in every container a
// read-only root filesystem, no capability and no privilege escalation.
//
//nolint:paralleltest // the tests share one set of containers and run in order (above)
func TestHardening(t *testing.T) {
	requireStack(t)
	for _, name := range []string{"nats", "user", "order", "payment", "gateway"} {
		t.Run(name, func(t *testing.T) {
			image, err := stack.docker.ImageInspect(t.Context(), stack.image(name))
			if err != nil {
				t.Fatal(err)
			}
			inspect, err := stack.containers[name].Inspect(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			type hardening struct {
				ImageUser          string
				ReadonlyRootfs     bool
				CapDrop            []string
				CapAdd             []string
				Privileged         bool
				SecurityOpt        []string
				ContainerIsRunning bool
			}
			got := hardening{
				ImageUser:          image.Config.User,
				ReadonlyRootfs:     inspect.HostConfig.ReadonlyRootfs,
				CapDrop:            inspect.HostConfig.CapDrop,
				CapAdd:             inspect.HostConfig.CapAdd,
				Privileged:         inspect.HostConfig.Privileged,
				SecurityOpt:        inspect.HostConfig.SecurityOpt,
				ContainerIsRunning: inspect.State.Running,
			}
			want := hardening{
				ImageUser:          "65532:65532",
				ReadonlyRootfs:     true,
				CapDrop:            []string{"ALL"},
				SecurityOpt:        []string{"no-new-privileges"},
				ContainerIsRunning: true,
			}
			if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("hardening of %s (-want +got):\n%s", name, diff)
			}
		})
	}
}

// TestScenarios runs every scenario against the containers.
//
//nolint:paralleltest // the tests share one set of containers and run in order (above)
func TestScenarios(t *testing.T) {
	requireStack(t)
	scenario.Run(t, stack)
}

// TestFromAContainer calls the user service's gRPC port from a container of
// the suite's network, as a foreign workload would: without a certificate,
// the handshake fails; with the payment workload's SVID, the call is
// refused for that identity.
//
//nolint:paralleltest // the tests share one set of containers and run in order (above)
func TestFromAContainer(t *testing.T) {
	requireStack(t)
	u := scenario.SignUp(t, stack, scenario.ConnectJSON)
	pki := stack.PKIDir()
	userID := "spiffe://" + trustDomain + "/user"
	bundle := devpki.WorkloadFiles(pki, "user").Bundle + ":/run/rampart/bundle.pem:ro"
	common := []string{"-addr", "user:" + workloadPorts["user"].grpc, "-server", userID,
		"-bundle", "/run/rampart/bundle.pem"}

	t.Run("no certificate", func(t *testing.T) {
		out := stack.probe(t, append([]string{"handshake"}, common...), []string{bundle})
		want := map[string]string{"error": scenario.CertificateRequired}
		var got map[string]string
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("probe printed %q: %v", out, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("handshake without a certificate (-want +got):\n%s", diff)
		}
	})

	req := &userv1.GetUserRequest{UserId: u.ID}
	txn := scenario.TxnToken(t, stack, u.ID, "/user.v1.UserService/GetUser", req)
	for _, tc := range []struct {
		caller string
		want   probe.Result
	}{
		{"payment", probe.Result{Code: "PermissionDenied", Message: "permission denied"}},
		{"order", probe.Result{Code: "OK", Email: u.Email}},
	} {
		t.Run("as "+tc.caller, func(t *testing.T) {
			args := append([]string{"getuser"}, common...)
			args = append(args, "-cert", "/run/rampart/svid/svid.pem", "-key", "/run/rampart/svid/svid.key",
				"-token", txn, "-user", u.ID)
			binds := []string{bundle, filepath.Join(pki, tc.caller) + ":/run/rampart/svid:ro"}
			out := stack.probe(t, args, binds)
			var got probe.Result
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatalf("probe printed %q: %v", out, err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("GetUser from a container with the %s SVID (-want +got):\n%s", tc.caller, diff)
			}
		})
	}
}

// probe runs the probe command in a one-shot container of the network
// with binds mounted, and returns what it printed.
func (s *containerStack) probe(t *testing.T, args, binds []string) string {
	t.Helper()
	c, err := s.runContainer(t.Context(), spec{
		name:  "probe-" + strings.ToLower(rand.Text()[:8]),
		image: s.probeImage,
		cmd:   args,
		binds: binds,
		wait:  wait.ForExit().WithExitTimeout(time.Minute),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := c.Terminate(context.WithoutCancel(t.Context())); err != nil {
			t.Errorf("removing the probe: %v", err)
		}
	}()
	rc, err := c.Logs(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	out, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	state, err := c.State(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if state.ExitCode != 0 {
		t.Fatalf("probe exited %d: %s", state.ExitCode, out)
	}
	return strings.TrimSpace(string(out))
}

// TestFaults breaks the stack while orders are placed, one fault at a
// time, and checks that every order ends as its card says, once.
//
//nolint:paralleltest // one fault at a time, on the containers every test shares, last
func TestFaults(t *testing.T) {
	requireStack(t)
	t.Run("payment stopped", faultPaymentStopped)
	t.Run("NATS restarted", faultNATSRestarted)
	t.Run("gateway killed", faultGatewayKilled)
}

// placed is an order and the outcome its card must give.
type placed struct {
	user  *scenario.User
	order *orderv1.Order
	want  orderv1.OrderStatus
}

// cards alternate between one that pays and one that is declined.
var cards = []struct {
	method string
	want   orderv1.OrderStatus
}{
	{"tok_visa", orderv1.OrderStatus_ORDER_STATUS_PAID},
	{"tok_declined", orderv1.OrderStatus_ORDER_STATUS_PAYMENT_FAILED},
}

// checkSettled waits until every order has settled as its card says, and
// checks that the payment service stored exactly one payment for each.
func checkSettled(t *testing.T, orders []placed) {
	t.Helper()
	for _, p := range orders {
		got := p.user.Settled(t, p.order.GetOrderId(), 90*time.Second)
		if got.GetStatus() != p.want {
			t.Errorf("order %s ended %v, want %v", got.GetOrderId(), got.GetStatus(), p.want)
		}
		status := map[orderv1.OrderStatus]string{
			orderv1.OrderStatus_ORDER_STATUS_PAID:           "SUCCEEDED",
			orderv1.OrderStatus_ORDER_STATUS_PAYMENT_FAILED: "FAILED",
		}[p.want]
		want := []scenario.PaymentRow{{Status: status, Currency: p.order.GetTotal().GetCurrencyCode(),
			Amount: p.order.GetTotal().GetAmount()}}
		if diff := cmp.Diff(want, scenario.Payments(t, stack, p.order.GetOrderId())); diff != "" {
			t.Errorf("stored payments of order %s (-want +got):\n%s", p.order.GetOrderId(), diff)
		}
	}
}

// checkPending checks that no order has been paid or declined yet.
func checkPending(t *testing.T, orders []placed) {
	t.Helper()
	for _, p := range orders {
		req := &orderv1.GetOrderRequest{OrderId: p.order.GetOrderId()}
		got, err := p.user.Orders.GetOrder(t.Context(), req)
		if err != nil || got.GetOrder().GetStatus() != orderv1.OrderStatus_ORDER_STATUS_PENDING_PAYMENT {
			t.Fatalf("order %s is %v (%v), want PENDING_PAYMENT while the fault lasts",
				p.order.GetOrderId(), got.GetOrder().GetStatus(), err)
		}
	}
}

// faultPaymentStopped places orders while the payment service is down:
// they wait, unpaid, and each is charged once when it comes back.
func faultPaymentStopped(t *testing.T) {
	u := scenario.SignUp(t, stack, scenario.ConnectJSON)
	stack.stop(t, "payment")
	restarted := false
	defer func() {
		if !restarted {
			stack.startAgain(t, "payment")
		}
	}()

	var orders []placed
	for i := range 6 {
		card := cards[i%len(cards)]
		orders = append(orders, placed{u, u.MustOrder(t, card.method), card.want})
	}
	time.Sleep(time.Second)
	checkPending(t, orders)

	stack.startAgain(t, "payment")
	restarted = true
	checkSettled(t, orders)
}

// faultNATSRestarted places orders before, during and after a restart of
// NATS: the outboxes hold the events while it is down and catch up.
func faultNATSRestarted(t *testing.T) {
	u := scenario.SignUp(t, stack, scenario.ConnectJSON)
	var orders []placed
	place := func(n int) {
		for i := range n {
			card := cards[i%len(cards)]
			orders = append(orders, placed{u, u.MustOrder(t, card.method), card.want})
		}
	}
	place(2)
	stack.stop(t, "nats")
	restarted := false
	defer func() {
		if !restarted {
			stack.startAgain(t, "nats")
		}
	}()
	place(4) // stored with their events, which wait in the outboxes
	time.Sleep(time.Second)
	checkPending(t, orders[2:])
	stack.startAgain(t, "nats")
	restarted = true
	place(2)
	checkSettled(t, orders)
}

// faultGatewayKilled kills the gateway while users place orders, then
// retries each order whose answer was lost, with its idempotency key. Every
// order must then exist exactly once, complete, and be charged once: the
// kill left no half-written order behind.
func faultGatewayKilled(t *testing.T) {
	const users, perUser = 4, 5
	type attempt struct {
		user *scenario.User
		key  string
		card int
		err  error
	}
	var (
		mu       sync.Mutex
		attempts []*attempt
		wg       sync.WaitGroup
		killed   = make(chan struct{})
	)
	signedUp := make([]*scenario.User, users)
	for i := range signedUp {
		signedUp[i] = scenario.SignUp(t, stack, scenario.ConnectJSON)
	}
	for _, u := range signedUp {
		wg.Go(func() {
			for i := range perUser {
				a := &attempt{user: u, key: scenario.NewKey(), card: i % len(cards)}
				_, a.err = u.Order(t.Context(), cards[a.card].method, a.key)
				mu.Lock()
				attempts = append(attempts, a)
				mu.Unlock()
				if i == 1 {
					<-killed // the rest go out while the gateway is gone or back
				}
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	stack.kill(t, "gateway")
	close(killed)
	wg.Wait()
	stack.startAgain(t, "gateway")
	for _, u := range signedUp {
		u.Reconnect(stack, scenario.ConnectJSON)
	}

	failed := 0
	var orders []placed
	anonymous := scenario.NewClient(stack.GatewayURL(), scenario.ConnectJSON, "")
	product := scenario.CatalogProduct(t, anonymous)
	for _, a := range attempts {
		if a.err != nil {
			failed++
		}
		order, err := a.user.Order(t.Context(), cards[a.card].method, a.key)
		if err != nil {
			t.Fatalf("retrying order %s after the gateway came back: %v", a.key, err)
		}
		want := scenario.ExpectedOrder(product, 2)
		want.OrderId = order.GetOrderId()
		if diff := cmp.Diff(want, order, ignoreProgress...); diff != "" {
			t.Errorf("order %s (-want +got):\n%s", a.key, diff)
		}
		orders = append(orders, placed{a.user, order, cards[a.card].want})
	}
	if failed == 0 {
		t.Errorf("no order call failed: the gateway was not killed while they ran")
	}
	t.Logf("%d of %d order calls failed while the gateway was killed", failed, len(attempts))

	for _, u := range signedUp {
		list, err := u.Orders.ListOrders(t.Context(), &orderv1.ListOrdersRequest{PageSize: 100})
		if err != nil {
			t.Fatal(err)
		}
		if got := len(list.GetOrders()); got != perUser {
			t.Errorf("user %s has %d orders, want %d: one per idempotency key", u.Email, got, perUser)
		}
	}
	checkSettled(t, orders)
}

// stop stops a container gracefully.
func (s *containerStack) stop(t *testing.T, name string) {
	t.Helper()
	timeout := 20 * time.Second
	if err := s.containers[name].Stop(t.Context(), &timeout); err != nil {
		t.Fatalf("stopping %s: %v", name, err)
	}
}

// kill kills a container at once and waits until it has stopped.
func (s *containerStack) kill(t *testing.T, name string) {
	t.Helper()
	c := s.containers[name]
	if _, err := s.docker.ContainerKill(t.Context(), c.GetContainerID(),
		client.ContainerKillOptions{Signal: "KILL"}); err != nil {
		t.Fatalf("killing %s: %v", name, err)
	}
	scenario.Eventually(t, 30*time.Second, func() bool {
		state, err := c.State(t.Context())
		return err == nil && !state.Running
	}, func() string { return name + " still runs" })
}

// startAgain starts a stopped container and waits until it is ready.
func (s *containerStack) startAgain(t *testing.T, name string) {
	t.Helper()
	ctx := context.WithoutCancel(t.Context())
	if err := s.containers[name].Start(ctx); err != nil {
		t.Fatalf("starting %s again: %v", name, err)
	}
	if err := scenario.WaitUntilServing(ctx, s, time.Minute); err != nil {
		t.Fatalf("after restarting %s: %v", name, err)
	}
}

// ignoreProgress compares orders as protobuf messages, leaving out what
// changes as their payment goes on: status, failure reason, timestamps.
var ignoreProgress = []cmp.Option{
	protocmp.Transform(),
	protocmp.IgnoreFields(&orderv1.Order{}, "status", "failure_reason", "create_time", "update_time"),
}
