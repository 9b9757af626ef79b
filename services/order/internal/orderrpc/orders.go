package orderrpc

import (
	"context"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	orderv1 "example.com/rampart/proto/order/v1"
	paymentv1 "example.com/rampart/proto/payment/v1"
	moneyv1 "example.com/rampart/proto/rampart/money/v1"
	userv1 "example.com/rampart/proto/user/v1"
	"example.com/rampart/services/order/internal/catalog"
	"example.com/rampart/services/order/internal/orderstore"
)

// CreateOrder places an order for the caller, priced from the catalog,
// and returns it PENDING_PAYMENT; its payment follows through events. A
// retry under the same idempotency key returns the first order as it is
// now. It fails with InvalidArgument for a SKU the catalog does not hold,
// FailedPrecondition when the caller's account does not exist or the key
// was used for a different request, and Unavailable when the user service
// cannot be reached.
func (s *OrderServer) CreateOrder(ctx context.Context, req *orderv1.CreateOrderRequest) (
	*orderv1.CreateOrderResponse, error) {
	user, err := caller(ctx)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	requests := make([]catalog.Request, len(req.GetItems()))
	for i, it := range req.GetItems() {
		requests[i] = catalog.Request{SKU: it.GetSku(), Quantity: it.GetQuantity()}
	}
	lines, total, err := s.catalog.Price(requests)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	if err := s.checkAccount(ctx, user); err != nil {
		return nil, s.toStatus(ctx, err)
	}

	items := make([]orderstore.Item, len(lines))
	for i, l := range lines {
		items[i] = orderstore.Item{SKU: l.Product.SKU, Name: l.Product.Name, Quantity: l.Quantity,
			UnitPrice: l.Product.Price, LineTotal: l.Total}
	}
	o, _, err := s.store.Create(ctx, orderstore.NewOrder{
		UserID:         user,
		IdempotencyKey: req.GetIdempotencyKey(),
		PaymentMethod:  req.GetPaymentMethod(),
		Currency:       catalog.Currency,
		Items:          items,
		Total:          total,
	})
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	return &orderv1.CreateOrderResponse{Order: orderProto(o)}, nil
}

// checkAccount asks the user service whether the account exists. The call
// carries the caller's transaction token, so the user service answers for
// that user only.
func (s *OrderServer) checkAccount(ctx context.Context, user string) error {
	_, err := s.users.GetUser(ctx, &userv1.GetUserRequest{UserId: user})
	switch {
	case err == nil:
		return nil
	case status.Code(err) == codes.NotFound:
		return errAccountNotFound
	default:
		return &upstreamError{call: "user.v1.UserService/GetUser", err: err}
	}
}

// GetOrder returns one of the caller's orders, or NotFound.
func (s *OrderServer) GetOrder(ctx context.Context, req *orderv1.GetOrderRequest) (
	*orderv1.GetOrderResponse, error) {
	user, err := caller(ctx)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	o, err := s.store.Get(ctx, req.GetOrderId(), user)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	return &orderv1.GetOrderResponse{Order: orderProto(o)}, nil
}

// ListOrders returns a page of the caller's orders, newest first, and the
// token of the next page. It fails with InvalidArgument for a page token
// that this server did not issue to the caller.
func (s *OrderServer) ListOrders(ctx context.Context, req *orderv1.ListOrdersRequest) (
	*orderv1.ListOrdersResponse, error) {
	user, err := caller(ctx)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	size := int(req.GetPageSize())
	if size <= 0 {
		size = DefaultPageSize
	}
	size = min(size, MaxPageSize)
	var after *orderstore.Cursor
	if req.GetPageToken() != "" {
		if after, err = decodePageToken(req.GetPageToken(), user); err != nil {
			return nil, s.toStatus(ctx, err)
		}
	}

	// One more than the page, to learn whether another page follows.
	orders, err := s.store.List(ctx, user, size+1, after)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	resp := &orderv1.ListOrdersResponse{}
	if len(orders) > size {
		orders = orders[:size]
		last := orders[size-1]
		cursor := orderstore.Cursor{CreateTime: last.CreateTime, OrderID: last.ID}
		if resp.NextPageToken, err = encodePageToken(user, cursor); err != nil {
			return nil, s.toStatus(ctx, err)
		}
	}
	for _, o := range orders {
		resp.Orders = append(resp.Orders, orderProto(o))
	}
	return resp, nil
}

// CancelOrder cancels one of the caller's orders once its payment has
// settled: a PAID order is refunded first, a PAYMENT_FAILED one is
// cancelled as it is, and a CANCELLED one is returned unchanged. An order
// still PENDING_PAYMENT fails with FailedPrecondition.
//
// If the refund succeeds but the cancellation cannot be stored, the order
// stays PAID with its payment refunded; calling again completes it, since
// refunding a refunded payment changes nothing.
func (s *OrderServer) CancelOrder(ctx context.Context, req *orderv1.CancelOrderRequest) (
	*orderv1.CancelOrderResponse, error) {
	user, err := caller(ctx)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	o, err := s.store.Get(ctx, req.GetOrderId(), user)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	refund := o.Status == orderstore.StatusPaid
	if refund {
		if err := s.refund(ctx, o.ID); err != nil {
			return nil, s.toStatus(ctx, err)
		}
	}
	o, err = s.store.Cancel(ctx, o.ID, user, refund)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	return &orderv1.CancelOrderResponse{Order: orderProto(o)}, nil
}

// refund asks the payment service to refund the order's payment. The call
// carries the caller's transaction token, whose context binds the order.
func (s *OrderServer) refund(ctx context.Context, orderID string) error {
	const call = "payment.v1.PaymentService/RefundPayment"
	resp, err := s.payments.RefundPayment(ctx, &paymentv1.RefundPaymentRequest{OrderId: orderID})
	if err != nil {
		return &upstreamError{call: call, err: err}
	}
	if got := resp.GetPayment().GetStatus(); got != paymentv1.PaymentStatus_PAYMENT_STATUS_REFUNDED {
		err := fmt.Errorf("payment of order %s is %s after refund", orderID, got)
		return &upstreamError{call: call, err: err}
	}
	return nil
}

var statusProto = map[orderstore.Status]orderv1.OrderStatus{
	orderstore.StatusPendingPayment: orderv1.OrderStatus_ORDER_STATUS_PENDING_PAYMENT,
	orderstore.StatusPaid:           orderv1.OrderStatus_ORDER_STATUS_PAID,
	orderstore.StatusPaymentFailed:  orderv1.OrderStatus_ORDER_STATUS_PAYMENT_FAILED,
	orderstore.StatusCancelled:      orderv1.OrderStatus_ORDER_STATUS_CANCELLED,
}

func orderProto(o orderstore.Order) *orderv1.Order {
	out := &orderv1.Order{
		OrderId:       o.ID,
		Status:        statusProto[o.Status],
		Items:         make([]*orderv1.LineItem, len(o.Items)),
		Total:         money(o.Currency, o.Total),
		CreateTime:    timestamppb.New(o.CreateTime),
		UpdateTime:    timestamppb.New(o.UpdateTime),
		FailureReason: o.FailureReason,
	}
	for i, it := range o.Items {
		out.Items[i] = &orderv1.LineItem{
			Sku:       it.SKU,
			Name:      it.Name,
			Quantity:  it.Quantity,
			UnitPrice: money(o.Currency, it.UnitPrice),
			LineTotal: money(o.Currency, it.LineTotal),
		}
	}
	return out
}

func money(currency string, amount int64) *moneyv1.Money {
	return &moneyv1.Money{CurrencyCode: currency, Amount: amount}
}
