// Command gateway is the platform's only public entry: it serves the public
// methods over Connect, gRPC and gRPC-Web, verifies end users' access
// tokens, and forwards each call over mutual TLS with a transaction token.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"

	"example.com/rampart/gateway/internal/server"
	"example.com/rampart/platform/envconfig"
	"example.com/rampart/platform/workload"
)

func main() {
	if err := run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	// Configuration: the platform's, then the gateway's own.
	cfg, err := workload.Load(workload.DefaultConfig("gateway", "", "127.0.0.1:9104"))
	if err != nil {
		return err
	}
	gcfg := server.DefaultConfig()
	if err := envconfig.Load(cfg.EnvPrefix(), &gcfg); err != nil {
		return err
	}

	// The gateway verifies the transaction tokens on its own events with
	// the keys it signs them with. The file is reloaded when it changes;
	// a broken one is logged and the last good keys stay in use.
	var logger atomic.Pointer[slog.Logger]
	keys, err := server.LoadSigningKeys(ctx, gcfg, func(err error) {
		if l := logger.Load(); l != nil {
			l.Error("reloading the transaction-token keys", "error", err)
		}
	})
	if err != nil {
		return err
	}
	cfg.TxnKeys = keys

	// Platform: telemetry, identity, policies, NATS.
	w, err := workload.Start(ctx, cfg)
	if err != nil {
		return err
	}
	logger.Store(w.Logger)

	// The public and internal servers, and what feeds them.
	if err := server.Setup(ctx, w, gcfg, keys); err != nil {
		return err
	}
	return w.Run(ctx)
}
