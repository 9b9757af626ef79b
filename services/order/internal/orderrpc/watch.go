package orderrpc

import (
	"sync"

	"google.golang.org/grpc"

	orderv1 "example.com/rampart/proto/order/v1"
	"example.com/rampart/services/order/internal/orderstore"
)

// WatchOrder streams one of the caller's orders: at once as it is, then
// after every change of its status, until it is PAID, PAYMENT_FAILED or
// CANCELLED, when the stream ends with OK. An order already there is sent
// once. The stream ends early with the context's status when the client
// goes away or the deadline passes, with NotFound for an order the caller
// does not own, and with ResourceExhausted when the caller holds too many
// watches open.
//
// Changes come from the store as they are committed; nothing polls.
func (s *OrderServer) WatchOrder(req *orderv1.WatchOrderRequest,
	stream grpc.ServerStreamingServer[orderv1.WatchOrderResponse]) error {
	ctx := stream.Context()
	user, err := caller(ctx)
	if err != nil {
		return s.toStatus(ctx, err)
	}
	if !s.watches.acquire(user) {
		return s.toStatus(ctx, errTooManyWatches)
	}
	defer s.watches.release(user)

	// Subscribe before reading, so that a change between the read and the
	// subscription cannot be missed.
	changes, stop := s.store.Watch(req.GetOrderId())
	defer stop()
	o, err := s.store.Get(ctx, req.GetOrderId(), user)
	if err != nil {
		return s.toStatus(ctx, err)
	}
	if err := stream.Send(&orderv1.WatchOrderResponse{Order: orderProto(o)}); err != nil {
		return err
	}
	for !watchEnds(o.Status) {
		select {
		case <-ctx.Done():
			return s.toStatus(ctx, ctx.Err())
		case <-changes:
		}
		next, err := s.store.Get(ctx, o.ID, user)
		if err != nil {
			return s.toStatus(ctx, err)
		}
		if next.Status == o.Status {
			continue
		}
		o = next
		if err := stream.Send(&orderv1.WatchOrderResponse{Order: orderProto(o)}); err != nil {
			return err
		}
	}
	return nil
}

// watchEnds reports whether a watch has nothing more to wait for: the
// payment has settled, or the order is cancelled.
func watchEnds(s orderstore.Status) bool {
	switch s {
	case orderstore.StatusPaid, orderstore.StatusPaymentFailed, orderstore.StatusCancelled:
		return true
	default:
		return false
	}
}

// watchLimiter counts the watches each user holds open.
type watchLimiter struct {
	max  int
	mu   sync.Mutex
	open map[string]int
}

func (l *watchLimiter) acquire(user string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[user] >= l.max {
		return false
	}
	l.open[user]++
	return true
}

func (l *watchLimiter) release(user string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[user]--; l.open[user] <= 0 {
		delete(l.open, user)
	}
}
