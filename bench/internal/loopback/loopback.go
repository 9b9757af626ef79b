// Package loopback measures what the platform adds to one gRPC call: the
// same unary call, served in this process over 127.0.0.1 by the same
// handler, once through a workload's whole server and client (mutual TLS
// 1.3 with SPIFFE SVIDs, tracing, the log line, every check, and a real
// transaction token verified on every call) and once through a bare gRPC
// server with neither TLS nor interceptors. The two paths take turns, in
// rounds, so that whatever else the machine does weighs on both alike.
package loopback

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/timestamppb"

	"example.com/rampart/bench/internal/latency"
	"example.com/rampart/platform/devpki"
	"example.com/rampart/platform/grpcclient"
	"example.com/rampart/platform/grpcserver"
	"example.com/rampart/platform/jwks"
	"example.com/rampart/platform/policy"
	"example.com/rampart/platform/ratelimit"
	"example.com/rampart/platform/telemetry"
	"example.com/rampart/platform/txntoken"
	orderv1 "example.com/rampart/proto/order/v1"
	moneyv1 "example.com/rampart/proto/rampart/money/v1"
)

// The two paths a call takes.
const (
	Bare     = "bare"
	Platform = "platform"
)

// Config bounds a run. The zero value of a field means its default.
type Config struct {
	// Dir receives the run's signing keys and the platform server's log
	// lines. Required.
	Dir string
	// Concurrencies are the numbers of callers at once (1, 8 and 64).
	Concurrencies []int
	// Rounds is how many times each path is measured at each concurrency,
	// taking turns with the other path (4): each round is one sample of a
	// comparison with benchstat, which needs four.
	Rounds int
	// RoundTime bounds each round (500ms), and MaxCalls the calls in it
	// (100 000).
	RoundTime time.Duration
	MaxCalls  int
	// Warmup is how long calls run, unmeasured, before each round
	// (200ms).
	Warmup time.Duration
}

func (c Config) withDefaults() Config {
	if len(c.Concurrencies) == 0 {
		c.Concurrencies = []int{1, 8, 64}
	}
	if c.Rounds <= 0 {
		c.Rounds = 4
	}
	if c.RoundTime <= 0 {
		c.RoundTime = 500 * time.Millisecond
	}
	if c.MaxCalls <= 0 {
		c.MaxCalls = 100_000
	}
	if c.Warmup <= 0 {
		c.Warmup = 200 * time.Millisecond
	}
	return c
}

// Result is the measure of one path at one concurrency: over every round,
// and round by round.
type Result struct {
	Path        string
	Concurrency int
	latency.Summary
	Rounds []latency.Summary
}

// orderID is the order every call asks for.
const orderID = "0193a7b0-54f8-7c3e-9d2a-6f1e2c3d4b5a"

// Run measures both paths at every concurrency and returns the results in
// that order: for each concurrency, the bare path then the platform one.
func Run(ctx context.Context, cfg Config) ([]Result, error) {
	cfg = cfg.withDefaults()
	if cfg.Dir == "" {
		return nil, errors.New("loopback: no directory")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	paths, err := serve(ctx, cfg.Dir)
	if err != nil {
		return nil, err
	}
	defer paths.close()

	var results []Result
	for _, c := range cfg.Concurrencies {
		recorders := map[string]*latency.Recorder{Bare: {}, Platform: {}}
		rounds := map[string][]latency.Summary{}
		for round := range cfg.Rounds {
			order := []string{Bare, Platform}
			if round%2 == 1 {
				order = []string{Platform, Bare}
			}
			for _, path := range order {
				call := paths.calls[path]
				if _, _, err := measure(ctx, call, c, cfg.Warmup, cfg.MaxCalls); err != nil {
					return nil, fmt.Errorf("warming up the %s path: %w", path, err)
				}
				samples, elapsed, err := measure(ctx, call, c, cfg.RoundTime, cfg.MaxCalls)
				if err != nil {
					return nil, fmt.Errorf("measuring the %s path at %d callers: %w", path, c, err)
				}
				recorders[path].Add(elapsed, samples...)
				rounds[path] = append(rounds[path], latency.Summarize(samples, elapsed))
			}
		}
		for _, path := range []string{Bare, Platform} {
			results = append(results, Result{
				Path: path, Concurrency: c, Summary: recorders[path].Summary(), Rounds: rounds[path],
			})
		}
	}
	return results, nil
}

// measure runs call from concurrency goroutines until d has passed or
// maxCalls calls were made, and returns the duration of each call and the
// wall time of the whole. The first error stops it.
func measure(ctx context.Context, call func(context.Context) error, concurrency int,
	d time.Duration, maxCalls int,
) ([]time.Duration, time.Duration, error) {
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		all     []time.Duration
		errs    []error
		started atomic.Int64
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	deadline := start.Add(d)
	for range concurrency {
		wg.Go(func() {
			samples := make([]time.Duration, 0, 1024)
			for started.Add(1) <= int64(maxCalls) && time.Now().Before(deadline) {
				t0 := time.Now()
				if err := call(ctx); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					cancel()
					break
				}
				samples = append(samples, time.Since(t0))
			}
			mu.Lock()
			all = append(all, samples...)
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if len(errs) > 0 {
		return nil, 0, errs[0]
	}
	return all, elapsed, nil
}

// paths holds the two servers and the call that reaches each.
type paths struct {
	calls   map[string]func(context.Context) error
	closers []func()
}

func (p *paths) close() {
	for _, closeFn := range slices.Backward(p.closers) {
		closeFn()
	}
}

// serve starts both servers on 127.0.0.1 and dials them: the bare one
// without TLS, the platform one as the gateway workload, with a
// transaction token for the call.
func serve(ctx context.Context, dir string) (_ *paths, err error) {
	p := &paths{calls: map[string]func(context.Context) error{}}
	defer func() {
		if err != nil {
			p.close()
		}
	}()
	bareCall, err := serveBare(ctx, p)
	if err != nil {
		return nil, err
	}
	p.calls[Bare] = bareCall
	platformCall, err := servePlatform(ctx, dir, p)
	if err != nil {
		return nil, err
	}
	p.calls[Platform] = platformCall
	return p, nil
}

func serveBare(ctx context.Context, p *paths) (func(context.Context) error, error) {
	srv := grpc.NewServer()
	orderv1.RegisterOrderServiceServer(srv, orders{})
	addr, err := listen(ctx, srv, p)
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("dialing the bare server: %w", err)
	}
	p.closers = append(p.closers, func() { _ = conn.Close() })
	return getOrder(orderv1.NewOrderServiceClient(conn), nil), nil
}

// servePlatform starts the order workload's server as a workload builds
// it, with its rate limit out of reach so that the check runs but never
// refuses, and dials it as the gateway.
func servePlatform(ctx context.Context, dir string, p *paths) (func(context.Context) error, error) {
	td := spiffeid.RequireTrustDomainFromString("rampart.local")
	gateway := spiffeid.RequireFromSegments(td, policy.Gateway)
	ca, err := devpki.NewCA(td)
	if err != nil {
		return nil, err
	}
	set, err := policy.Load(td, protoregistry.GlobalFiles)
	if err != nil {
		return nil, err
	}
	minter, verifier, err := tokens(ctx, dir, td, gateway)
	if err != nil {
		return nil, err
	}
	//nolint:gosec // G304: dir is the run's own directory, given by the operator.
	logs, err := os.Create(filepath.Join(dir, "loopback-order.log"))
	if err != nil {
		return nil, err
	}
	p.closers = append(p.closers, func() { _ = logs.Close() })
	serverTel, err := telemetry.New(ctx, telemetry.Config{
		Service: "order", LogOutput: logs, DisableOTLP: true,
	})
	if err != nil {
		return nil, err
	}
	orderSrc, err := ca.Source("order", time.Hour)
	if err != nil {
		return nil, err
	}
	srv := grpcserver.New(grpcserver.Config{
		Identity: orderSrc, Policy: set, Tokens: verifier, Telemetry: serverTel,
		Limiter: ratelimit.New(ratelimit.Config{Rate: 1e9, Burst: 1e9}),
	})
	orderv1.RegisterOrderServiceServer(srv, orders{})
	addr, err := listen(ctx, srv, p)
	if err != nil {
		return nil, err
	}

	gatewaySrc, err := ca.Source(policy.Gateway, time.Hour)
	if err != nil {
		return nil, err
	}
	clientTel, err := telemetry.New(ctx, telemetry.Config{
		Service: "gateway", LogOutput: logs, DisableOTLP: true,
	})
	if err != nil {
		return nil, err
	}
	conn, err := grpcclient.Dial(addr, spiffeid.RequireFromSegments(td, "order"),
		grpcclient.Config{Identity: gatewaySrc, Telemetry: clientTel})
	if err != nil {
		return nil, err
	}
	p.closers = append(p.closers, func() { _ = conn.Close() })
	tok, err := minter.Mint(txntoken.Request{
		Subject: "user-1", SessionID: "session-1", Scopes: []string{"orders:read"},
		ClientIP: "127.0.0.1", Context: map[string]string{"order_id": orderID},
	})
	if err != nil {
		return nil, err
	}
	return getOrder(orderv1.NewOrderServiceClient(conn), tok), nil
}

// tokens returns a minter of transaction tokens that live as long as
// allowed, the longest a run takes, and a verifier of them, with a new
// signing key written to dir.
func tokens(ctx context.Context, dir string, td spiffeid.TrustDomain, gateway spiffeid.ID) (
	*txntoken.Minter, *txntoken.Verifier, error,
) {
	key, err := jwks.GenerateKey(jose.EdDSA)
	if err != nil {
		return nil, nil, err
	}
	path := filepath.Join(dir, "loopback-txn.jwks")
	if err := jwks.WriteKeySetFile(path, key); err != nil {
		return nil, nil, err
	}
	keys, err := jwks.LoadKeySet(ctx, path, jwks.KeySetOptions{})
	if err != nil {
		return nil, nil, err
	}
	minter, err := txntoken.NewMinter(txntoken.MinterConfig{
		Signer: keys, TrustDomain: td.Name(), Workload: gateway.String(), Issuer: gateway.String(),
		Lifetime: txntoken.MaxLifetime,
	})
	if err != nil {
		return nil, nil, err
	}
	verifier, err := txntoken.NewVerifier(txntoken.VerifierConfig{
		Keys: keys, TrustDomain: td.Name(), Issuer: gateway.String(),
	})
	if err != nil {
		return nil, nil, err
	}
	return minter, verifier, nil
}

// listen serves srv on a free port of 127.0.0.1 until the run ends.
func listen(ctx context.Context, srv *grpc.Server, p *paths) (string, error) {
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	go func() { _ = srv.Serve(ln) }()
	p.closers = append(p.closers, srv.Stop)
	return ln.Addr().String(), nil
}

// getOrder returns the call both paths make: GetOrder, carrying tok when
// there is one, as a workload forwards the token of the request it serves.
func getOrder(client orderv1.OrderServiceClient, tok *txntoken.Token) func(context.Context) error {
	req := &orderv1.GetOrderRequest{OrderId: orderID}
	return func(ctx context.Context) error {
		if tok != nil {
			ctx = txntoken.NewContext(ctx, tok)
		}
		_, err := client.GetOrder(ctx, req)
		return err
	}
}

// orders answers GetOrder with an order of two items, the same for every
// call, without touching a store.
type orders struct {
	orderv1.UnimplementedOrderServiceServer
}

func (orders) GetOrder(context.Context, *orderv1.GetOrderRequest) (*orderv1.GetOrderResponse, error) {
	return &orderv1.GetOrderResponse{Order: sampleOrder}, nil
}

// sampleOrder is a paid order of two items, the size of a typical answer.
var sampleOrder = &orderv1.Order{
	OrderId: orderID,
	Status:  orderv1.OrderStatus_ORDER_STATUS_PAID,
	Items: []*orderv1.LineItem{
		{Sku: "TEA-GREEN-100G", Name: "Green tea, 100 g", Quantity: 2,
			UnitPrice: eur(650), LineTotal: eur(1300)},
		{Sku: "MUG-STONEWARE", Name: "Stoneware mug", Quantity: 1,
			UnitPrice: eur(1200), LineTotal: eur(1200)},
	},
	Total:      eur(2500),
	CreateTime: timestamppb.New(time.Date(2026, 12, 1, 9, 30, 0, 0, time.UTC)),
	UpdateTime: timestamppb.New(time.Date(2026, 12, 1, 9, 30, 1, 0, time.UTC)),
}

func eur(cents int64) *moneyv1.Money { return &moneyv1.Money{CurrencyCode: "EUR", Amount: cents} }
