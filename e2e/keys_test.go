package e2e

import (
	"testing"
	"time"

	"example.com/rampart/e2e/internal/scenario"
	orderv1 "example.com/rampart/proto/order/v1"
)

// TestEventsWaitForTheGatewaysKeys: an event that waits in JetStream while
// its consumer is down is not lost when the consumer comes back before the
// gateway, whose keys it needs to check the event's transaction token. The
// payment service is stopped, an order placed, the gateway stopped; the
// payment service starts again while the gateway is down, and is given
// time to take the event; then the gateway starts, and the order must end
// paid, charged once. It restarts workloads of the stack every test shares,
// so it does not run in parallel with the other tests.
//
//nolint:paralleltest // it restarts workloads of the stack that every test shares
func TestEventsWaitForTheGatewaysKeys(t *testing.T) {
	if stack == nil {
		t.Skip("starts the whole platform; skipped under -short")
	}
	u := scenario.SignUp(t, stack, scenario.ConnectJSON)
	if err := stack.StopWorkload("payment"); err != nil {
		t.Fatalf("stopping the payment service: %v", err)
	}
	order := u.MustOrder(t, "tok_visa")
	if order.GetStatus() != orderv1.OrderStatus_ORDER_STATUS_PENDING_PAYMENT {
		t.Fatalf("a new order is %v, want PENDING_PAYMENT", order.GetStatus())
	}
	if err := stack.StopWorkload("gateway"); err != nil {
		t.Fatalf("stopping the gateway: %v", err)
	}

	// The payment service cannot be ready without the gateway's keys, so
	// its start is waited for in the background.
	started := make(chan error, 1)
	go func() { started <- stack.StartWorkload(t.Context(), "payment") }()
	time.Sleep(3 * time.Second) // time enough to take the waiting event
	if err := stack.StartWorkload(t.Context(), "gateway"); err != nil {
		t.Fatalf("starting the gateway again: %v", err)
	}
	if err := <-started; err != nil {
		t.Fatalf("starting the payment service again: %v", err)
	}

	settled := u.Settled(t, order.GetOrderId(), 30*time.Second)
	if settled.GetStatus() != orderv1.OrderStatus_ORDER_STATUS_PAID {
		t.Errorf("the order ended %v, want PAID", settled.GetStatus())
	}
	if rows := scenario.Payments(t, stack, order.GetOrderId()); len(rows) != 1 {
		t.Errorf("%d payments for the order, want 1", len(rows))
	}
}
