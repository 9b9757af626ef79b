// Command user runs the user service: the identity provider for local
// development. It signs users up and in, rotates their refresh tokens, ends
// their sessions, and publishes the discovery document and keys that the
// gateway verifies access tokens with.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"example.com/rampart/platform/accesstoken"
	"example.com/rampart/platform/envconfig"
	"example.com/rampart/platform/jwks"
	"example.com/rampart/platform/workload"
	userv1 "example.com/rampart/proto/user/v1"
	"example.com/rampart/services/user/internal/userissuer"
	"example.com/rampart/services/user/internal/userrpc"
	"example.com/rampart/services/user/internal/userstore"
)

func main() {
	if err := run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "user:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	// Configuration: the platform's, then the service's own.
	cfg, err := workload.Load(workload.DefaultConfig("user", "127.0.0.1:9001", "127.0.0.1:9101"))
	if err != nil {
		return err
	}
	issuerCfg := userissuer.DefaultConfig()
	if err := envconfig.Load(cfg.EnvPrefix(), &issuerCfg); err != nil {
		return err
	}
	if err := issuerCfg.Validate(); err != nil {
		return err
	}

	// Platform: telemetry, identity, policies, transaction tokens, NATS.
	w, err := workload.Start(ctx, cfg)
	if err != nil {
		return err
	}
	w.Logger.LogAttrs(ctx, slog.LevelInfo, "issuer configuration",
		envconfig.Attrs(cfg.EnvPrefix(), issuerCfg)...)

	// Issuer: signing keys, reloaded when the file changes, and the
	// documents verifiers read on the admin port.
	keys, err := jwks.LoadKeySet(ctx, issuerCfg.SigningKeys, jwks.KeySetOptions{
		OnError: func(err error) { w.Logger.Error("reloading the signing keys", "error", err) },
	})
	if err != nil {
		return err
	}
	tokens, err := accesstoken.NewIssuer(accesstoken.IssuerConfig{
		Issuer:   issuerCfg.Issuer,
		Audience: issuerCfg.Audience,
		Signer:   keys,
		Lifetime: issuerCfg.AccessTokenTTL,
	})
	if err != nil {
		return err
	}
	discovery, err := userissuer.DiscoveryHandler(issuerCfg.Issuer)
	if err != nil {
		return err
	}
	w.HandleAdmin("GET "+userissuer.DiscoveryPath, discovery)
	w.HandleAdmin("GET "+userissuer.JWKSPath, keys.Handler())

	// Store and events.
	db, err := w.OpenDB(ctx, userstore.Migrations)
	if err != nil {
		return err
	}
	box, err := w.Outbox(ctx, db)
	if err != nil {
		return err
	}

	// Handlers.
	srv, err := userrpc.New(userrpc.Config{
		Store:           userstore.New(db),
		Outbox:          box,
		Tokens:          tokens,
		RefreshTokenTTL: issuerCfg.RefreshTokenTTL,
		Logger:          w.Logger,
	})
	if err != nil {
		return err
	}
	userv1.RegisterUserServiceServer(w.GRPC(), srv)

	// Serve until a signal, then shut down gracefully.
	return w.Run(ctx)
}
