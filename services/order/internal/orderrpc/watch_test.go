package orderrpc_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"

	orderv1 "example.com/rampart/proto/order/v1"
	"example.com/rampart/services/order/internal/orderrpc"
)

// watch runs WatchOrder in the background and returns its stream and a
// channel that receives what it returned.
func (e *env) watch(ctx context.Context, orderID string) (*fakeStream, <-chan error) {
	stream := &fakeStream{ctx: ctx, sent: make(chan *orderv1.WatchOrderResponse, 8)}
	done := make(chan error, 1)
	//nolint:contextcheck // ctx reaches WatchOrder inside the stream, as in a real call
	go func() { done <- e.server.WatchOrder(&orderv1.WatchOrderRequest{OrderId: orderID}, stream) }()
	return stream, done
}

func receive(t *testing.T, stream *fakeStream) *orderv1.Order {
	t.Helper()
	select {
	case m := <-stream.sent:
		return m.GetOrder()
	case <-time.After(5 * time.Second):
		t.Fatal("no message on the stream")
		return nil
	}
}

func ended(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("WatchOrder did not return")
		return nil
	}
}

func TestWatchOrderFollowsPayment(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		paid bool
		want orderv1.OrderStatus
	}{
		{"paid", true, orderv1.OrderStatus_ORDER_STATUS_PAID},
		{"payment failed", false, orderv1.OrderStatus_ORDER_STATUS_PAYMENT_FAILED},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, orderrpc.Config{})
			o, ctx := e.order(t)
			stream, done := e.watch(ctx, o.GetOrderId())

			if got := receive(t, stream).GetStatus(); got != orderv1.OrderStatus_ORDER_STATUS_PENDING_PAYMENT {
				t.Fatalf("first message: status %s, want PENDING_PAYMENT", got)
			}
			e.settle(t, ctx, o, tt.paid)
			if got := receive(t, stream).GetStatus(); got != tt.want {
				t.Errorf("second message: status %s, want %s", got, tt.want)
			}
			if err := ended(t, done); err != nil {
				t.Errorf("WatchOrder = %v, want nil at a final state", err)
			}
			if n := len(stream.sent); n != 0 {
				t.Errorf("%d more messages after the final state", n)
			}
			if n := e.Store.Watches(); n != 0 {
				t.Errorf("%d watches left open", n)
			}
		})
	}
}

func TestWatchOrderAtFinalStateEndsAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, orderrpc.Config{})
	o, ctx := e.order(t)
	e.settle(t, ctx, o, false)

	stream, done := e.watch(ctx, o.GetOrderId())
	got := receive(t, stream)
	if got.GetStatus() != orderv1.OrderStatus_ORDER_STATUS_PAYMENT_FAILED || got.GetFailureReason() != "card declined" {
		t.Errorf("message: status %s %q, want PAYMENT_FAILED \"card declined\"", got.GetStatus(), got.GetFailureReason())
	}
	if err := ended(t, done); err != nil {
		t.Errorf("WatchOrder = %v, want nil", err)
	}
}

func TestWatchOrderOfAnotherUser(t *testing.T) {
	t.Parallel()
	e := newEnv(t, orderrpc.Config{})
	o, _ := e.order(t)
	_, strangerCtx := e.user(t)

	for _, id := range []string{o.GetOrderId(), uuid.NewString()} {
		stream, done := e.watch(strangerCtx, id)
		wantStatus(t, ended(t, done), codes.NotFound, "order not found")
		if len(stream.sent) != 0 {
			t.Error("a message was sent about an order the caller does not own")
		}
	}
	if n := e.Store.Watches(); n != 0 {
		t.Errorf("%d watches left open", n)
	}
}

func TestWatchOrderEndsWhenTheClientGoesAway(t *testing.T) {
	t.Parallel()
	e := newEnv(t, orderrpc.Config{})
	o, ctx := e.order(t)
	callCtx, cancel := context.WithCancel(ctx)
	stream, done := e.watch(callCtx, o.GetOrderId())
	receive(t, stream)

	cancel()
	wantStatus(t, ended(t, done), codes.Canceled, "")
	if n := e.Store.Watches(); n != 0 {
		t.Errorf("%d watches left open after the client left", n)
	}
}

func TestWatchOrderLimitsWatchesPerUser(t *testing.T) {
	t.Parallel()
	e := newEnv(t, orderrpc.Config{MaxWatchesPerUser: 1})
	o, ctx := e.order(t)
	callCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, _ := e.watch(callCtx, o.GetOrderId())
	receive(t, stream)

	_, second := e.watch(ctx, o.GetOrderId())
	wantStatus(t, ended(t, second), codes.ResourceExhausted, "")

	// Another user is not held back by the first one's watches.
	other, otherCtx := e.order(t)
	otherStream, _ := e.watch(otherCtx, other.GetOrderId())
	receive(t, otherStream)

	// A closed watch frees its place.
	cancel()
	e.settle(t, otherCtx, other, true)
	deadline := time.Now().Add(5 * time.Second)
	for e.Store.Watches() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	third, done := e.watch(ctx, o.GetOrderId())
	receive(t, third)
	e.settle(t, ctx, o, true)
	receive(t, third)
	if err := ended(t, done); err != nil {
		t.Errorf("WatchOrder after a watch closed = %v", err)
	}
}
