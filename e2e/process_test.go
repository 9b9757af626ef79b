package e2e

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"example.com/rampart/e2e/internal/otlpsink"
	"example.com/rampart/e2e/internal/scenario"
	"example.com/rampart/platform/devstack"
)

// stack is the platform the tests of this package run against, started
// once by TestMain; nil under -short.
var stack *processStack

// TestMain starts the whole platform once for every test of the package,
// each workload as its own process, and stops it when they are done,
// whether they passed or not.
func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	os.Exit(runWithStack(m))
}

func runWithStack(m *testing.M) int {
	dir, err := os.MkdirTemp("", "rampart-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	logPath := filepath.Join(dir, "workloads.log")
	logs, err := os.Create(logPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer logs.Close()

	s, err := startStack(dir, logs)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: starting the platform:", err)
		dumpLogs(logPath)
		return 1
	}
	stack = s
	code := m.Run()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	stopErr := s.Stop(ctx)
	s.collector.stop()
	if stopErr != nil {
		fmt.Fprintln(os.Stderr, "e2e: stopping the platform:", stopErr)
		code = 1
	}
	if code != 0 {
		dumpLogs(logPath)
	}
	return code
}

// processStack is the platform run by devstack: NATS inside the test
// process, every workload a process of its own, all on 127.0.0.1.
type processStack struct {
	*devstack.Stack
	collector *collector
}

func startStack(dir string, logs io.Writer) (*processStack, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin, err := binaries(ctx, dir)
	if err != nil {
		return nil, err
	}
	ports, err := devstack.FreePorts(ctx, "127.0.0.1")
	if err != nil {
		return nil, err
	}
	col, err := startCollector(ctx)
	if err != nil {
		return nil, err
	}
	env := []string{"OTEL_EXPORTER_OTLP_ENDPOINT=http://" + col.addr}
	for k, v := range scenario.Settings {
		env = append(env, k+"="+v)
	}
	s, err := devstack.Start(ctx, devstack.Config{
		Dir:          filepath.Join(dir, "stack"),
		BinDir:       bin,
		TrustDomain:  "rampart.local",
		Host:         "127.0.0.1",
		Ports:        ports,
		Output:       logs,
		Env:          env,
		ReadyTimeout: time.Minute,
	})
	if err != nil {
		col.stop()
		return nil, err
	}
	ps := &processStack{Stack: s, collector: col}
	if err := scenario.WaitUntilServing(ctx, ps, time.Minute); err != nil {
		col.stop()
		return nil, errors.Join(err, s.Stop(context.WithoutCancel(ctx)))
	}
	return ps, nil
}

// binaries returns the directory of the workload binaries: RAMPART_BIN_DIR,
// which `make test` sets after `make build`, or else one they are built
// into now.
func binaries(ctx context.Context, dir string) (string, error) {
	if bin := os.Getenv("RAMPART_BIN_DIR"); bin != "" {
		for _, name := range devstack.Workloads {
			//nolint:gosec // G703: the developer's own setting, not a request's input
			if _, err := os.Stat(filepath.Join(bin, name)); err != nil {
				return "", fmt.Errorf("RAMPART_BIN_DIR: %w", err)
			}
		}
		return bin, nil
	}
	bin := filepath.Join(dir, "bin")
	//nolint:gosec // G204: the go command, building into a directory the test created
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", bin+string(filepath.Separator),
		"./gateway/cmd/gateway", "./services/user/cmd/user",
		"./services/order/cmd/order", "./services/payment/cmd/payment")
	cmd.Dir = ".." // the repository root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the workloads: %w\n%s", err, out)
	}
	return bin, nil
}

// dumpLogs prints the workloads' log lines, for a failed run.
func dumpLogs(path string) {
	data, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: reading the workloads' logs:", err)
		return
	}
	fmt.Fprintf(os.Stderr, "\n--- workload logs ---\n%s--- end of workload logs ---\n", data)
}

func (s *processStack) addr(port int) string {
	return net.JoinHostPort(s.Config().Host, strconv.Itoa(port))
}

func (s *processStack) GatewayURL() string { return s.Config().GatewayURL() }

func (s *processStack) TrustDomain() spiffeid.TrustDomain {
	return spiffeid.RequireTrustDomainFromString(s.Config().TrustDomain)
}

func (s *processStack) PKIDir() string         { return s.Config().PKIDir() }
func (s *processStack) AccessKeysFile() string { return s.Config().AccessKeysFile() }
func (s *processStack) TxnKeysFile() string    { return s.Config().TxnKeysFile() }

// Issuer is the user service's admin address, where devstack points the
// issuer.
func (s *processStack) Issuer() string { return "http://" + s.addr(s.Config().Ports.UserAdmin) }

func (s *processStack) GRPCAddr(name string) string {
	p := s.Config().Ports
	return s.addr(map[string]int{"user": p.User, "order": p.Order, "payment": p.Payment}[name])
}

func (s *processStack) NATSURL() string { return "tls://" + s.addr(s.Config().Ports.NATS) }

func (s *processStack) PaymentDB() string {
	return filepath.Join(s.Config().Dir, "data", "payment", "payment.db")
}

func (s *processStack) Trace(ctx context.Context, traceID string) ([]otlpsink.Span, error) {
	return s.collector.Trace(ctx, traceID)
}

// TestPlatform runs every scenario against the process stack.
//
//nolint:paralleltest // it shares the stack with TestRevocation, which restarts the gateway
func TestPlatform(t *testing.T) {
	if stack == nil {
		t.Skip("the end-to-end scenarios start the whole platform; skipped under -short")
	}
	// The scenarios run in parallel subtests, which start only once this
	// function returns: check for a dead workload after all of them.
	t.Cleanup(func() {
		select {
		case name := <-stack.Exited:
			t.Errorf("the %s workload exited during the tests", name)
		default:
		}
	})
	scenario.Run(t, stack)
}
