package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"example.com/rampart/platform/devstack"
)

// The commands below run one part of the stack each, so that a
// development loop such as Tilt can show, restart and probe every part as
// its own resource. Together they run what `rampart up` runs, with the
// same files, ports and environment.

// serveNATS prepares the dev PKI and keys, then runs the stack's NATS
// server alone until ctx ends.
func serveNATS(ctx context.Context, cfg devstack.Config, out io.Writer) error {
	stack, err := devstack.StartNATS(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "NATS is ready on tls://%s:%d\n", cfg.Host, cfg.Ports.NATS)
	<-ctx.Done()
	return stopWithin(ctx, stack.Stop)
}

// serveWorkload runs the workload name alone, configured as `rampart up`
// configures it, until ctx ends or the workload exits. It expects NATS
// and the PKI to be there already, from serveNATS.
func serveWorkload(ctx context.Context, cfg devstack.Config, name string) error {
	if !slices.Contains(devstack.Workloads, name) {
		return fmt.Errorf("unknown workload %q: want one of %s", name, strings.Join(devstack.Workloads, ", "))
	}
	stack := devstack.Attach(cfg)
	if err := stack.StartWorkload(ctx, name); err != nil {
		if ctx.Err() != nil {
			// Stopped while still starting: a clean stop, not a failure.
			return stopWithin(ctx, func(context.Context) error { return stack.StopWorkload(name) })
		}
		return errors.Join(err, stack.StopWorkload(name))
	}
	select {
	case <-ctx.Done():
	case <-stack.Exited:
		return errors.Join(fmt.Errorf("%s exited", name), stack.StopWorkload(name))
	}
	return stopWithin(ctx, func(context.Context) error { return stack.StopWorkload(name) })
}

// stopWithin runs stop with a fresh deadline: ctx is already done.
func stopWithin(ctx context.Context, stop func(context.Context) error) error {
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	return stop(stopCtx)
}

// workloadArg returns the workload named by `rampart workload NAME`.
func workloadArg(args []string) (string, error) {
	if len(args) != 1 {
		return "", fmt.Errorf("usage: rampart workload [flags] NAME, with NAME one of %s",
			strings.Join(devstack.Workloads, ", "))
	}
	return args[0], nil
}
