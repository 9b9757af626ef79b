package main

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"example.com/rampart/bench/internal/latency"
	"example.com/rampart/bench/internal/loopback"
	"example.com/rampart/bench/internal/report"
	"example.com/rampart/bench/internal/stack"
)

// measureLoopback times one unary call through the platform and bare, at a
// few concurrencies.
func measureLoopback(ctx context.Context, work string) (report.Table, []report.Measure, error) {
	results, err := loopback.Run(ctx, loopback.Config{Dir: work})
	if err != nil {
		return report.Table{}, nil, fmt.Errorf("loopback: %w", err)
	}
	t := report.Table{
		Title: "One unary call over loopback: platform against bare gRPC",
		Head: []string{"callers",
			"p50 bare", "p50 platform", "×", "p99 bare", "p99 platform", "×",
			"calls/s bare", "calls/s platform", "×"},
		Note: "Platform: mutual TLS 1.3 with SPIFFE SVIDs, tracing, the log line and every " +
			"check, a transaction token verified on each call. Bare: no TLS, no interceptor. " +
			"Same handler, same process; the two take turns.",
	}
	byPath := map[string]map[int]latency.Summary{loopback.Bare: {}, loopback.Platform: {}}
	var measures []report.Measure
	for _, r := range results {
		byPath[r.Path][r.Concurrency] = r.Summary
		name := fmt.Sprintf("Loopback/path=%s/callers=%d", r.Path, r.Concurrency)
		measures = append(measures, roundMeasures(name, r.Rounds)...)
	}
	for _, c := range slices.Sorted(maps.Keys(byPath[loopback.Bare])) {
		bare, platform := byPath[loopback.Bare][c], byPath[loopback.Platform][c]
		t.Rows = append(t.Rows, []string{strconv.Itoa(c),
			duration(bare.P50), duration(platform.P50), timeRatio(platform.P50, bare.P50),
			duration(bare.P99), duration(platform.P99), timeRatio(platform.P99, bare.P99),
			perSecond(bare.PerSecond), perSecond(platform.PerSecond),
			ratio(platform.PerSecond, bare.PerSecond)})
	}
	return t, measures, nil
}

// measureStack starts the whole platform and measures it from outside.
func measureStack(ctx context.Context, opts options, work string) (
	[]report.Table, []report.Measure, error,
) {
	s, err := stack.Start(ctx, opts.bin, work, filepath.Join(opts.out, "workloads.log"))
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := s.Stop(stopCtx); err != nil {
			fmt.Fprintln(os.Stderr, "bench: stopping the platform:", err)
		}
	}()
	mem, err := s.Memory()
	if err != nil {
		return nil, nil, err
	}

	// A user with a paid order to read, then a pause for the start-up's
	// garbage to go before the idle sample.
	setupCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	u, err := s.SignUp(setupCtx)
	if err != nil {
		return nil, nil, err
	}
	orderID, err := u.Order(setupCtx)
	if err != nil {
		return nil, nil, err
	}
	if err := u.WaitPaid(setupCtx, orderID); err != nil {
		return nil, nil, err
	}
	time.Sleep(2 * time.Second)
	idle, err := mem.Sample()
	if err != nil {
		return nil, nil, err
	}

	// GetOrder through the gateway and directly, then the event path,
	// with the memory's peak sampled throughout.
	peak := mem.Peak(ctx, 100*time.Millisecond)
	load, err := s.GetOrderLoad(ctx, u, orderID, stack.LoadConfig{})
	if err != nil {
		_, _ = peak()
		return nil, nil, err
	}
	events, eventParts, err := s.EventPath(ctx, u, opts.orders, 8, 3*time.Minute)
	busy, peakErr := peak()
	if err != nil {
		return nil, nil, fmt.Errorf("event path: %w", err)
	}
	if peakErr != nil {
		return nil, nil, peakErr
	}

	var measures []report.Measure
	loadTable := report.Table{
		Title: "GetOrder through the gateway, against the order service called directly",
		Head:  []string{"path", "calls", "p50", "p99", "calls/s", "TLS handshakes per 1000 calls"},
		Note: "ghz, 16 calls in flight on one HTTP/2 connection, four rounds per path taking " +
			"turns. Gateway: gRPC over h2c, access token verified, transaction token " +
			"minted, call forwarded over mutual TLS. Direct: mutual TLS with the gateway's " +
			"SVID and a transaction token minted once per round. Handshakes are the order " +
			"service's, from its metrics; the direct path dials once per round.",
	}
	for _, r := range load {
		perThousand := 1000 * float64(r.Handshakes) / float64(max(r.Requests, 1))
		loadTable.Rows = append(loadTable.Rows, []string{r.Path, strconv.Itoa(r.Count),
			duration(r.P50), duration(r.P99), perSecond(r.PerSecond),
			strconv.FormatFloat(perThousand, 'f', 2, 64)})
		measures = append(measures, roundMeasures("GetOrder/path="+r.Path, r.Rounds)...)
		measures = append(measures, report.Measure{
			Name: "Handshakes/path=" + r.Path, Count: r.Requests,
			Values: []report.Value{{Value: perThousand, Unit: "handshakes/1000calls"}},
		})
	}
	if len(load) == 2 {
		gw, direct := load[0], load[1]
		loadTable.Rows = append(loadTable.Rows, []string{"gateway ÷ direct", "",
			timeRatio(gw.P50, direct.P50), timeRatio(gw.P99, direct.P99),
			ratio(gw.PerSecond, direct.PerSecond), ""})
	}

	eventTable := report.Table{
		Title: "From CreateOrder returning to the order being PAID",
		Head:  []string{"orders", "p50", "p99"},
		Rows:  [][]string{{strconv.Itoa(events.Count), duration(events.P50), duration(events.P99)}},
		Note: "8 clients at once, each placing an order through the gateway and watching it " +
			"until payment: outbox, JetStream, the payment service, JetStream, the order service.",
	}
	measures = append(measures, roundMeasures("EventPath", eventParts)...)

	memTable := report.Table{
		Title: "Resident memory of each process",
		Head:  []string{"process", "idle", "peak under the loads above"},
		Note:  "NATS runs inside the bench process, as it runs inside `rampart up`.",
	}
	for _, name := range slices.Sorted(maps.Keys(idle)) {
		memTable.Rows = append(memTable.Rows,
			[]string{name, mebibytes(idle[name]), mebibytes(busy[name])})
		measures = append(measures, report.Measure{
			Name: "RSS/process=" + name, Count: 1,
			Values: []report.Value{
				{Value: float64(idle[name]), Unit: "idle-B"},
				{Value: float64(busy[name]), Unit: "peak-B"},
			},
		})
	}
	return []report.Table{loadTable, eventTable, memTable}, measures, nil
}

// roundMeasures writes each round, or part, of a measure as a benchmark
// line of the same name, so that benchstat reads them as samples.
func roundMeasures(name string, rounds []latency.Summary) []report.Measure {
	measures := make([]report.Measure, 0, len(rounds))
	for _, s := range rounds {
		m := report.Measure{Name: name, Count: s.Count, Values: []report.Value{
			{Value: float64(s.P50.Nanoseconds()), Unit: "p50-ns"},
			{Value: float64(s.P99.Nanoseconds()), Unit: "p99-ns"},
		}}
		if s.PerSecond > 0 {
			m.Values = append(m.Values, report.Value{Value: s.PerSecond, Unit: "calls/s"})
		}
		measures = append(measures, m)
	}
	return measures
}

func perSecond(x float64) string { return strconv.FormatFloat(x, 'f', 0, 64) }

func mebibytes(b uint64) string {
	return strconv.FormatFloat(float64(b)/(1<<20), 'f', 1, 64) + " MiB"
}
