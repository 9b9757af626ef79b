// Command payment charges orders: it answers each order event with one
// charge at the payment processor, reports the outcome as an event, and
// serves the payments to their owners and refunds to the order service.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"example.com/rampart/platform/envconfig"
	"example.com/rampart/platform/workload"
	paymentv1 "example.com/rampart/proto/payment/v1"
	"example.com/rampart/services/payment/internal/paymentevents"
	"example.com/rampart/services/payment/internal/paymentrpc"
	"example.com/rampart/services/payment/internal/paymentstore"
	"example.com/rampart/services/payment/internal/processor/fakeprocessor"
)

// settings are the payment service's own, read from PAYMENT_* variables
// like the platform's.
type settings struct {
	// ChargeTimeout bounds each call to the payment processor.
	ChargeTimeout time.Duration `env:"CHARGE_TIMEOUT"`
}

func main() {
	if err := run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "payment:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	// Configuration: the platform's, then the service's own.
	cfg, err := workload.Load(workload.DefaultConfig("payment", "127.0.0.1:9003", "127.0.0.1:9103"))
	if err != nil {
		return err
	}
	own := settings{ChargeTimeout: paymentevents.DefaultChargeTimeout}
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

	// Store and processor. The fake processor is the only one: replace it
	// here with a real processor's client.
	db, err := w.OpenDB(ctx, paymentstore.Migrations)
	if err != nil {
		return err
	}
	box, err := w.Outbox(ctx, db)
	if err != nil {
		return err
	}
	store := paymentstore.New(db, box)
	proc := fakeprocessor.New()

	// Events: each order created is charged once.
	consumer, err := w.Consumer()
	if err != nil {
		return err
	}
	charger, err := paymentevents.New(paymentevents.Config{
		Store: store, Processor: proc, ChargeTimeout: own.ChargeTimeout,
	})
	if err != nil {
		return err
	}
	if err := charger.Register(consumer); err != nil {
		return err
	}

	// Server.
	paymentv1.RegisterPaymentServiceServer(w.GRPC(), paymentrpc.New(store, proc, w.Logger))

	// Serve until a signal, then shut down gracefully.
	return w.Run(ctx)
}
