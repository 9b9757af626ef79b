// Command probe is the end-to-end suite's helper inside its containers:
// it collects the workloads' spans, and it calls a workload's port as a
// foreign container would, printing the outcome as one JSON line.
//
//	probe collect
//	    serve OTLP/gRPC on :4317, and on :4318 /healthz and the collected
//	    spans at /traces/{id}
//	probe handshake -addr HOST:PORT -server ID -bundle FILE [-cert FILE -key FILE]
//	    complete a TLS handshake and print {"error": ...}, empty when the
//	    server accepted the client
//	probe getuser -addr HOST:PORT -server ID -bundle FILE -cert FILE -key FILE -token TXN -user ID
//	    call user.v1.UserService/GetUser and print its code and message
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"

	"example.com/rampart/e2e/internal/otlpsink"
	"example.com/rampart/e2e/internal/probe"
	"example.com/rampart/platform/identity"
)

func main() {
	if err := run(context.Background(), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(args) == 0 {
		return errors.New("usage: probe collect|handshake|getuser [flags]")
	}
	flags := flag.NewFlagSet(args[0], flag.ContinueOnError)
	addr := flags.String("addr", "", "the workload's address")
	server := flags.String("server", "", "the workload's SPIFFE ID")
	bundle := flags.String("bundle", "", "trust bundle file")
	cert := flags.String("cert", "", "SVID certificate file; none for an anonymous client")
	key := flags.String("key", "", "SVID key file")
	token := flags.String("token", "", "transaction token to send")
	user := flags.String("user", "", "user id to ask for")
	if err := flags.Parse(args[1:]); err != nil {
		return err
	}

	switch args[0] {
	case "collect":
		return collect(ctx)
	case "handshake", "getuser":
	default:
		return fmt.Errorf("unknown command %q", args[0])
	}
	serverID, err := spiffeid.FromString(*server)
	if err != nil {
		return fmt.Errorf("-server: %w", err)
	}
	var cfg *tls.Config
	if *cert == "" {
		cfg, err = probe.AnonymousTLS(*bundle, serverID)
	} else {
		var closeSource func() error
		cfg, closeSource, err = probe.WorkloadTLS(ctx,
			identity.Files{Cert: *cert, Key: *key, Bundle: *bundle}, serverID)
		if err == nil {
			// The probe exits next: a failed close changes nothing it printed.
			defer func() { _ = closeSource() }()
		}
	}
	if err != nil {
		return err
	}
	if args[0] == "handshake" {
		return emit(map[string]string{"error": probe.Handshake(ctx, *addr, cfg)})
	}
	res, err := probe.GetUser(ctx, *addr, cfg, *token, *user)
	if err != nil {
		return err
	}
	return emit(res)
}

func emit(v any) error { return json.NewEncoder(os.Stdout).Encode(v) }

// collect serves the span sink until a signal, on every interface of the
// container's own network namespace: the workloads export to it by its
// network alias, the test reads it through a port published on 127.0.0.1.
func collect(ctx context.Context) error {
	sink := otlpsink.New()
	otlp := grpc.NewServer()
	sink.Register(otlp)
	otlpLn, err := (&net.ListenConfig{}).Listen(ctx, "tcp", ":4317")
	if err != nil {
		return err
	}
	queries := &http.Server{Addr: ":4318", Handler: sink.Handler(), ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 2)
	go func() { errc <- otlp.Serve(otlpLn) }()
	go func() { errc <- queries.ListenAndServe() }()
	select {
	case err = <-errc:
	case <-ctx.Done():
	}
	otlp.Stop()
	return errors.Join(err, queries.Close())
}
