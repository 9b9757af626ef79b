// Package stack runs the whole platform as `make run` does, NATS embedded
// and each workload a process of its own from the binaries of bin/, on
// free ports of 127.0.0.1 in a directory of its own, and measures it from
// outside, as a client and an operator see it: requests through the
// gateway against the same calls made to the order service directly, the
// TLS handshakes those requests cost, the time from an order to its
// payment, and the memory each process holds.
package stack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"example.com/rampart/platform/devstack"
)

// Settings are the workloads' settings that differ from `make run`: every
// rate limit far above what the load asks, so that each check runs on
// every call but none refuses one. Everything else, logging and tracing
// included, is as `make run` has it.
var Settings = []string{
	"GATEWAY_USER_RATE=1000000", "GATEWAY_USER_BURST=1000000",
	"GATEWAY_IP_RATE=1000000", "GATEWAY_IP_BURST=1000000",
	"USER_RATE_LIMIT=1000000", "USER_RATE_BURST=1000000",
	"ORDER_RATE_LIMIT=1000000", "ORDER_RATE_BURST=1000000",
	"PAYMENT_RATE_LIMIT=1000000", "PAYMENT_RATE_BURST=1000000",
}

// Stack is the running platform.
type Stack struct {
	*devstack.Stack
	// logs receives every line the workloads and NATS write.
	logs *os.File
	// binDir is where the workloads' binaries are, as an absolute path.
	binDir string
}

// Start starts the platform with the binaries of binDir, keeping its files
// in dir and the lines every process writes in logPath, and returns once
// every workload is ready.
func Start(ctx context.Context, binDir, dir, logPath string) (*Stack, error) {
	binDir, err := filepath.Abs(binDir)
	if err != nil {
		return nil, err
	}
	for _, name := range devstack.Workloads {
		if _, err := os.Stat(filepath.Join(binDir, name)); err != nil {
			return nil, fmt.Errorf("the %s binary: %w (run make build)", name, err)
		}
	}
	ports, err := devstack.FreePorts(ctx, "127.0.0.1")
	if err != nil {
		return nil, err
	}
	logs, err := os.Create(logPath) //nolint:gosec // G304: the operator's own output path
	if err != nil {
		return nil, err
	}
	ds, err := devstack.Start(ctx, devstack.Config{
		Dir:          filepath.Join(dir, "stack"),
		BinDir:       binDir,
		TrustDomain:  "rampart.local",
		Host:         "127.0.0.1",
		Ports:        ports,
		Output:       logs,
		Env:          Settings,
		ReadyTimeout: time.Minute,
	})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("starting the platform (log: %s): %w", logPath, err),
			logs.Close())
	}
	return &Stack{Stack: ds, logs: logs, binDir: binDir}, nil
}

// Stop stops every process, then closes the log.
func (s *Stack) Stop(ctx context.Context) error {
	return errors.Join(s.Stack.Stop(ctx), s.logs.Close())
}

// Addr is the address of a port of the stack.
func (s *Stack) Addr(port int) string {
	return net.JoinHostPort(s.Config().Host, strconv.Itoa(port))
}
