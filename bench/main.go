// Command bench measures what the platform's defaults cost a request and
// prints one table of the figures. It runs, one after the other:
//
//   - the Go benchmarks of each check on the request path (`go test
//     -bench` in the platform and the gateway);
//   - the same unary call served in this process over 127.0.0.1, through
//     a workload's whole server and client with mutual TLS, and through a
//     bare gRPC server;
//   - the whole platform as `make run` starts it, on free ports of
//     127.0.0.1: GetOrder through the gateway and directly, the TLS
//     handshakes that costs, the time from an order to its payment, and
//     the memory of each process.
//
// Every load is bounded in calls and in time. The raw figures go to
// raw.txt in the output directory, as benchmark lines that benchstat
// compares across runs; the table goes to standard output and to
// table.md. Run it from the repository root, with `make bench`.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"example.com/rampart/bench/internal/report"
)

// options are the command's flags.
type options struct {
	out       string
	bin       string
	count     int
	benchtime string
	orders    int
}

func main() {
	var opts options
	flag.StringVar(&opts.out, "out", ".build/bench", "directory for raw.txt, table.md and logs")
	flag.StringVar(&opts.bin, "bin", "bin", "directory of the workloads' binaries")
	flag.IntVar(&opts.count, "count", 6, "runs of each Go benchmark")
	flag.StringVar(&opts.benchtime, "benchtime", "500ms", "time of each Go benchmark run")
	flag.IntVar(&opts.orders, "orders", 300, "orders placed to time the event path")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, opts)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, opts options) error {
	if err := os.MkdirAll(opts.out, 0o750); err != nil {
		return err
	}
	work, err := os.MkdirTemp(opts.out, "run-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(work) }() // leftovers are only temporary files
	raw, err := os.Create(filepath.Join(opts.out, "raw.txt"))
	if err != nil {
		return err
	}
	defer func() { _ = raw.Close() }() // closed and checked below; this is for early returns
	start := time.Now()

	// Each check on its own.
	fmt.Fprintln(os.Stderr, "bench: the checks, one by one (go test -bench)")
	steps, err := goBenchmarks(ctx, opts, raw)
	if err != nil {
		return err
	}
	tables := []report.Table{stepsTable(steps)}

	// One call, with and without the platform, in this process.
	fmt.Fprintln(os.Stderr, "bench: one call over loopback, platform and bare")
	lbTable, lbMeasures, err := measureLoopback(ctx, work)
	if err != nil {
		return err
	}
	tables = append(tables, lbTable)

	// The whole platform, process by process.
	fmt.Fprintln(os.Stderr, "bench: the whole platform (logs in "+opts.out+"/workloads.log)")
	stackTables, stackMeasures, err := measureStack(ctx, opts, work)
	if err != nil {
		return err
	}
	tables = append(tables, stackTables...)

	measures := slices.Concat(lbMeasures, stackMeasures)
	if err := report.WriteMeasures(raw, "example.com/rampart/bench", measures); err != nil {
		return fmt.Errorf("writing %s: %w", raw.Name(), err)
	}
	if err := raw.Close(); err != nil {
		return err
	}
	return writeTables(opts.out, tables, time.Since(start))
}

// benchPackages are the packages whose Go benchmarks cover the checks.
var benchPackages = []string{
	"./platform/accesstoken", "./platform/txntoken", "./platform/policy",
	"./platform/ratelimit", "./platform/grpcserver", "./gateway/internal/proxy",
}

// goBenchmarks runs the Go benchmarks of benchPackages, copying their
// output to raw, and returns their steps.
func goBenchmarks(ctx context.Context, opts options, raw io.Writer) ([]report.Step, error) {
	var out bytes.Buffer
	//nolint:gosec // G204: the arguments are this command's own flags
	cmd := exec.CommandContext(ctx, "go", append([]string{
		"test", "-run", "^$", "-bench", ".", "-benchmem",
		"-count", strconv.Itoa(opts.count), "-benchtime", opts.benchtime,
	}, benchPackages...)...)
	cmd.Stdout = io.MultiWriter(&out, raw)
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go test -bench: %w\n%s", err, out.String())
	}
	return report.ReadSteps(&out)
}

// stepLabels names, package by package and in the table's order, the
// benchmarks the table shows; the raw output keeps every one.
var stepLabels = []struct {
	pkg   string
	steps [][2]string // the benchmark's name, then its label
}{
	{"accesstoken", [][2]string{
		{"Verify/ES256", "access token verification, ES256"},
		{"Verify/EdDSA", "access token verification, EdDSA"},
		{"Verify/RS256", "access token verification, RS256"},
		{"Verify/PS256", "access token verification, PS256"},
		{"CachedVerify", "access token verification, seen before"},
	}},
	{"txntoken", [][2]string{
		{"Mint/EdDSA", "transaction token minting, EdDSA"},
		{"Mint/ES256", "transaction token minting, ES256"},
		{"Verify/EdDSA", "transaction token verification, EdDSA"},
		{"Verify/ES256", "transaction token verification, ES256"},
	}},
	{"policy", [][2]string{
		{"Method/lookup", "policy lookup"},
		{"Method/caller", "policy: calling workload"},
		{"Method/scopes", "policy: end user's scopes"},
		{"Method/context", "policy: transaction context"},
	}},
	{"ratelimit", [][2]string{{"Allow", "rate-limit check"}}},
	{"grpcserver", [][2]string{
		{"Validate", "protovalidate, CreateOrderRequest of 2 items"},
		{"UnaryChain", "a service's whole interceptor chain, GetOrder"},
	}},
	{"proxy", [][2]string{{"GetOrder", "the gateway's whole handler, GetOrder"}}},
}

func stepsTable(steps []report.Step) report.Table {
	t := report.Table{
		Title: "Each check, in process",
		Head:  []string{"step", "time/op", "B/op", "allocs/op"},
		Note:  "Medians of the runs of each Go benchmark; raw.txt has every run.",
	}
	for _, group := range stepLabels {
		for _, named := range group.steps {
			for _, s := range steps {
				if strings.HasSuffix(s.Package, "/"+group.pkg) && s.Name == named[0] {
					t.Rows = append(t.Rows, []string{named[1], nanos(s.NsPerOp),
						strconv.FormatFloat(s.BytesPerOp, 'f', 0, 64),
						strconv.FormatFloat(s.AllocsPerOp, 'f', 0, 64)})
				}
			}
		}
	}
	return t
}

// writeTables prints the tables, under a line that says where and how long
// they ran, and keeps them in table.md.
func writeTables(out string, tables []report.Table, took time.Duration) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Measured on %s, %d CPUs, %s/%s, %s, in %s.\n\n",
		cpuName(), runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version(),
		took.Round(time.Second))
	for _, t := range tables {
		b.WriteString(t.Markdown())
		b.WriteString("\n")
	}
	if _, err := os.Stdout.WriteString(b.String()); err != nil {
		return err
	}
	path := filepath.Join(out, "table.md")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "bench: table in %s, raw figures for benchstat in %s\n",
		path, filepath.Join(out, "raw.txt"))
	return nil
}

// cpuName returns the processor's model name, from /proc/cpuinfo.
func cpuName() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "an unknown CPU"
	}
	for line := range strings.Lines(string(data)) {
		if key, value, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(key) == "model name" {
			return strings.TrimSpace(value)
		}
	}
	return "an unknown CPU"
}

// nanos formats a time in nanoseconds with a unit that keeps it short.
func nanos(ns float64) string {
	return duration(time.Duration(ns))
}

// duration formats d to three significant figures or so.
func duration(d time.Duration) string {
	switch {
	case d < time.Microsecond:
		return strconv.FormatInt(d.Nanoseconds(), 10) + " ns"
	case d < time.Millisecond:
		return strconv.FormatFloat(float64(d)/float64(time.Microsecond), 'f', 1, 64) + " µs"
	case d < time.Second:
		return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 2, 64) + " ms"
	default:
		return d.Round(10 * time.Millisecond).String()
	}
}

// timeRatio formats a/b as a factor.
func timeRatio(a, b time.Duration) string { return ratio(float64(a), float64(b)) }

// ratio formats a/b as a factor, "n/a" when b is zero.
func ratio(a, b float64) string {
	if b == 0 {
		return "n/a"
	}
	return strconv.FormatFloat(a/b, 'f', 2, 64) + "×"
}
