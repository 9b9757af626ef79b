// Command rampart runs the platform on one machine for development.
//
//	rampart up      prepare the dev PKI and keys, start NATS and every
//	                workload, print how to call the gateway, stop on Ctrl-C
//	rampart pki     prepare the dev PKI and keys only
//	rampart demo    act as a client: sign up, log in, order, watch payments
//	rampart nats    prepare the dev PKI and keys, run only NATS (for Tilt)
//	rampart workload NAME
//	                run only the workload NAME, configured as by up (for Tilt)
//
// Run it from the repository root after `make build`; `make run` and
// `make demo` do both.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"example.com/rampart/platform/devstack"
)

func main() {
	if err := run(context.Background(), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "rampart:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	if len(args) == 0 {
		return errors.New("usage: rampart up|pki|demo|nats|workload [flags]")
	}
	flags := flag.NewFlagSet("rampart "+args[0], flag.ContinueOnError)
	cfg := devstack.DefaultConfig()
	flags.StringVar(&cfg.Dir, "dir", cfg.Dir, "directory for the dev PKI, keys and data")
	flags.StringVar(&cfg.BinDir, "bin", cfg.BinDir, "directory holding the workload binaries")
	gateway := flags.String("gateway", cfg.GatewayURL(), "gateway base URL (demo)")
	if err := flags.Parse(args[1:]); err != nil {
		return err
	}

	switch args[0] {
	case "pki":
		return devstack.Prepare(cfg)
	case "up":
		return up(ctx, cfg)
	case "demo":
		return demo(ctx, *gateway, os.Stdout)
	case "nats":
		return serveNATS(ctx, cfg, os.Stderr)
	case "workload":
		name, err := workloadArg(flags.Args())
		if err != nil {
			return err
		}
		return serveWorkload(ctx, cfg, name)
	}
	return fmt.Errorf("unknown command %q: want up, pki, demo, nats or workload", args[0])
}

// up runs the stack until Ctrl-C or until a workload dies.
func up(ctx context.Context, cfg devstack.Config) error {
	fmt.Fprintln(os.Stderr, "starting NATS and the workloads...")
	stack, err := devstack.Start(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Print(welcome(cfg.GatewayURL()))

	var cause error
	select {
	case <-ctx.Done():
		fmt.Fprintln(os.Stderr, "\nstopping...")
	case name := <-stack.Exited:
		cause = fmt.Errorf("%s exited; stopping the others", name)
	}
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	return errors.Join(cause, stack.Stop(stopCtx))
}

func welcome(url string) string {
	return fmt.Sprintf(`
Rampart is running. Gateway: %[1]s

Try it from another terminal (or run: make demo):

  # the catalog, anonymous
  curl -s %[1]s/order.v1.CatalogService/ListProducts -H 'Content-Type: application/json' -d '{}'

  # sign up and log in
  curl -s %[1]s/user.v1.UserService/SignUp -H 'Content-Type: application/json' \
    -d '{"email":"ada@example.com","password":"correct horse battery","displayName":"Ada"}'
  TOKEN=$(curl -s %[1]s/user.v1.UserService/Login -H 'Content-Type: application/json' \
    -d '{"email":"ada@example.com","password":"correct horse battery"}' \
    | sed -n 's/.*"accessToken":"\([^"]*\)".*/\1/p')

  # order, then list your orders: it is PAID within moments
  curl -s %[1]s/order.v1.OrderService/CreateOrder -H 'Content-Type: application/json' \
    -H "Authorization: Bearer $TOKEN" \
    -d '{"items":[{"sku":"%[2]s","quantity":2}],"paymentMethod":"tok_visa","idempotencyKey":"first-order-1"}'
  curl -s %[1]s/order.v1.OrderService/ListOrders -H 'Content-Type: application/json' \
    -H "Authorization: Bearer $TOKEN" -d '{}'

Press Ctrl-C to stop.
`, url, demoSKU)
}
