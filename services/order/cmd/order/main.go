// Command order serves the sample shop: the catalog, and the orders placed
// against it, whose payments it follows through the payment service's
// events.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"example.com/rampart/platform/envconfig"
	"example.com/rampart/platform/workload"
	orderv1 "example.com/rampart/proto/order/v1"
	paymentv1 "example.com/rampart/proto/payment/v1"
	userv1 "example.com/rampart/proto/user/v1"
	"example.com/rampart/services/order/internal/catalog"
	"example.com/rampart/services/order/internal/orderevents"
	"example.com/rampart/services/order/internal/orderrpc"
	"example.com/rampart/services/order/internal/orderstore"
)

// settings are the order service's own, read from ORDER_* variables like
// the platform's.
type settings struct {
	// MaxWatchesPerUser bounds the WatchOrder streams one user holds open.
	MaxWatchesPerUser int `env:"MAX_WATCHES_PER_USER"`
}

func main() {
	if err := run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "order:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	// Configuration: the platform's, then the service's own.
	cfg, err := workload.Load(workload.DefaultConfig("order", "127.0.0.1:9002", "127.0.0.1:9102"))
	if err != nil {
		return err
	}
	own := settings{MaxWatchesPerUser: orderrpc.DefaultMaxWatchesPerUser}
	if err := envconfig.Load(cfg.EnvPrefix(), &own); err != nil {
		return err
	}

	// Platform: telemetry, identity, policies, tokens, NATS.
	w, err := workload.Start(ctx, cfg)
	if err != nil {
		return err
	}
	w.Logger.LogAttrs(ctx, slog.LevelInfo, "service settings",
		envconfig.Attrs(cfg.EnvPrefix(), own)...)

	// Store and events: orders and their outbox, payment outcomes in.
	db, err := w.OpenDB(ctx, orderstore.Migrations)
	if err != nil {
		return err
	}
	box, err := w.Outbox(ctx, db)
	if err != nil {
		return err
	}
	store := orderstore.New(db, box)
	consumer, err := w.Consumer()
	if err != nil {
		return err
	}
	if err := orderevents.New(store).Register(consumer); err != nil {
		return err
	}

	// Clients: the user and payment workloads, over mutual TLS.
	users, err := w.Dial("user", "127.0.0.1:9001")
	if err != nil {
		return err
	}
	payments, err := w.Dial("payment", "127.0.0.1:9003")
	if err != nil {
		return err
	}

	// Server.
	orders, err := orderrpc.NewOrderServer(orderrpc.Config{
		Store:             store,
		Catalog:           catalog.Default(),
		Users:             userv1.NewUserServiceClient(users),
		Payments:          paymentv1.NewPaymentServiceClient(payments),
		Logger:            w.Logger,
		MaxWatchesPerUser: own.MaxWatchesPerUser,
	})
	if err != nil {
		return err
	}
	orderv1.RegisterCatalogServiceServer(w.GRPC(), orderrpc.NewCatalogServer(catalog.Default()))
	orderv1.RegisterOrderServiceServer(w.GRPC(), orders)

	// Serve until a signal, then shut down gracefully.
	return w.Run(ctx)
}
