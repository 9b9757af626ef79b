// Package orderrpc serves order.v1's CatalogService and OrderService.
//
// The platform's checks run before any handler here: the caller is an
// allowed workload, the transaction token is valid and grants the method's
// scopes, the request is valid and agrees with the token's transaction
// context. What is left is the business: prices come from the catalog
// only, and every order method acts for the token's subject only, so that
// another user's order is indistinguishable from a missing one.
package orderrpc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"example.com/rampart/platform/txntoken"
	orderv1 "example.com/rampart/proto/order/v1"
	paymentv1 "example.com/rampart/proto/payment/v1"
	userv1 "example.com/rampart/proto/user/v1"
	"example.com/rampart/services/order/internal/catalog"
	"example.com/rampart/services/order/internal/orderstore"
)

// Page sizes of ListOrders.
const (
	DefaultPageSize = 20
	MaxPageSize     = 100
)

// DefaultMaxWatchesPerUser is how many WatchOrder streams one user may
// hold open at once when [Config] does not say.
const DefaultMaxWatchesPerUser = 8

// Config is what an [OrderServer] needs. Store, Catalog, Users and
// Payments are required.
type Config struct {
	Store   *orderstore.Store
	Catalog *catalog.Catalog
	// Users confirms that the account placing an order exists.
	Users userv1.UserServiceClient
	// Payments refunds a paid order that is cancelled.
	Payments paymentv1.PaymentServiceClient
	// Logger receives the causes of internal errors, which callers never
	// see; nil discards them.
	Logger *slog.Logger
	// MaxWatchesPerUser bounds the WatchOrder streams one user holds open
	// at once, so that one account cannot tie up the server's memory;
	// zero means [DefaultMaxWatchesPerUser].
	MaxWatchesPerUser int
}

// OrderServer implements orderv1.OrderServiceServer.
type OrderServer struct {
	orderv1.UnimplementedOrderServiceServer
	store    *orderstore.Store
	catalog  *catalog.Catalog
	users    userv1.UserServiceClient
	payments paymentv1.PaymentServiceClient
	log      *slog.Logger
	watches  watchLimiter
}

// NewOrderServer returns a server, or an error if cfg lacks a required
// field.
func NewOrderServer(cfg Config) (*OrderServer, error) {
	if cfg.Store == nil || cfg.Catalog == nil || cfg.Users == nil || cfg.Payments == nil {
		return nil, errors.New("orderrpc: server needs Store, Catalog, Users and Payments")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxWatchesPerUser <= 0 {
		cfg.MaxWatchesPerUser = DefaultMaxWatchesPerUser
	}
	return &OrderServer{
		store:    cfg.Store,
		catalog:  cfg.Catalog,
		users:    cfg.Users,
		payments: cfg.Payments,
		log:      cfg.Logger,
		watches:  watchLimiter{max: cfg.MaxWatchesPerUser, open: map[string]int{}},
	}, nil
}

// CatalogServer implements orderv1.CatalogServiceServer.
type CatalogServer struct {
	orderv1.UnimplementedCatalogServiceServer
	catalog *catalog.Catalog
}

// NewCatalogServer returns a server that lists c.
func NewCatalogServer(c *catalog.Catalog) *CatalogServer {
	return &CatalogServer{catalog: c}
}

// ListProducts returns every product of the catalog, in catalog order.
func (s *CatalogServer) ListProducts(context.Context, *orderv1.ListProductsRequest) (
	*orderv1.ListProductsResponse, error) {
	products := s.catalog.Products()
	resp := &orderv1.ListProductsResponse{Products: make([]*orderv1.Product, len(products))}
	for i, p := range products {
		price := money(catalog.Currency, p.Price)
		resp.Products[i] = &orderv1.Product{Sku: p.SKU, Name: p.Name, Price: price}
	}
	return resp, nil
}

// Errors of this package, turned into statuses by [toStatus].
var (
	errNoUser           = errors.New("orderrpc: no signed-in user")
	errAccountNotFound  = errors.New("orderrpc: account not found")
	errInvalidPageToken = errors.New("orderrpc: invalid page token")
	errTooManyWatches   = errors.New("orderrpc: too many open watches")
)

// upstreamError is a failed call to another workload.
type upstreamError struct {
	call string // "user.v1.UserService/GetUser"
	err  error
}

func (e *upstreamError) Error() string { return fmt.Sprintf("calling %s: %v", e.call, e.err) }
func (e *upstreamError) Unwrap() error { return e.err }

// caller returns the id of the signed-in user the call acts for.
func caller(ctx context.Context) (string, error) {
	tok, ok := txntoken.FromContext(ctx)
	if !ok || !tok.Claims.User() {
		return "", errNoUser
	}
	return tok.Claims.Subject, nil
}

// toStatus is the one place where this service's errors become gRPC
// statuses. Messages are written for the client and never carry the
// cause; the cause of an internal error is logged instead.
func (s *OrderServer) toStatus(ctx context.Context, err error) error {
	var unknownSKU *catalog.UnknownSKUError
	var upstream *upstreamError
	switch {
	case errors.Is(err, orderstore.ErrNotFound):
		return status.Error(codes.NotFound, "order not found")
	case errors.As(err, &unknownSKU):
		return status.Errorf(codes.InvalidArgument, "unknown sku %q", unknownSKU.SKU)
	case errors.Is(err, catalog.ErrTooLarge):
		return status.Error(codes.InvalidArgument, "order total too large")
	case errors.Is(err, errInvalidPageToken):
		return status.Error(codes.InvalidArgument, "invalid page token")
	case errors.Is(err, orderstore.ErrIdempotencyConflict):
		return status.Error(codes.FailedPrecondition,
			"idempotency key reused with a different request")
	case errors.Is(err, orderstore.ErrPaymentPending):
		return status.Error(codes.FailedPrecondition,
			"payment in progress; try again when it settles")
	case errors.Is(err, errAccountNotFound):
		return status.Error(codes.FailedPrecondition, "account not found")
	case errors.Is(err, errNoUser):
		return status.Error(codes.Unauthenticated, "missing or invalid credentials")
	case errors.Is(err, errTooManyWatches):
		return status.Error(codes.ResourceExhausted, "too many open watches; close one first")
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "call cancelled")
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "deadline exceeded")
	case errors.As(err, &upstream) && transient(status.Code(upstream.err)):
		return status.Error(codes.Unavailable, "a service is unavailable; try again")
	}
	s.log.ErrorContext(ctx, "internal error", "error", err.Error())
	return status.Error(codes.Internal, "internal error")
}

// transient reports whether a call that failed with code may succeed if
// made again later.
func transient(code codes.Code) bool {
	switch code {
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted:
		return true
	default:
		return false
	}
}
