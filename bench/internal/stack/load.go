package stack

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/bojand/ghz/runner"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	"example.com/rampart/bench/internal/latency"
	"example.com/rampart/platform/accesstoken"
	"example.com/rampart/platform/devpki"
	"example.com/rampart/platform/jwks"
	"example.com/rampart/platform/policy"
	"example.com/rampart/platform/txntoken"
	orderv1 "example.com/rampart/proto/order/v1"
)

// The two ways GetOrder is called.
const (
	// Gateway is the public path: gRPC over HTTP/2 without TLS to the
	// gateway, which verifies the access token, applies its checks, mints
	// a transaction token and forwards the call over mutual TLS.
	Gateway = "gateway"
	// Direct is the order service called as the gateway calls it: mutual
	// TLS with the gateway's SVID and a transaction token minted with the
	// gateway's key, once per round rather than once per call.
	Direct = "direct"
)

// getOrder is the procedure the load calls, as ghz names it.
const getOrder = "order.v1.OrderService.GetOrder"

// LoadConfig bounds the load. The zero value of a field means its default.
type LoadConfig struct {
	// Concurrency is the number of calls in flight at once (16).
	Concurrency int
	// Requests bounds the calls of a round (2500), RoundTime its time
	// (10s), whichever comes first.
	Requests  int
	RoundTime time.Duration
	// Warmup is how many calls start each round unmeasured (200).
	Warmup int
	// Rounds is how many rounds each path gets, taking turns (4): each
	// round is one sample of a comparison with benchstat, which needs four.
	Rounds int
}

func (c LoadConfig) withDefaults() LoadConfig {
	if c.Concurrency <= 0 {
		c.Concurrency = 16
	}
	if c.Requests <= 0 {
		c.Requests = 2500
	}
	if c.RoundTime <= 0 {
		c.RoundTime = 10 * time.Second
	}
	if c.Warmup < 0 || c.Warmup == 0 {
		c.Warmup = 200
	}
	if c.Rounds <= 0 {
		c.Rounds = 4
	}
	return c
}

// LoadResult is the measure of one path.
type LoadResult struct {
	Path        string
	Concurrency int
	latency.Summary
	// Requests counts every call of the path's rounds, warm-up included,
	// and Handshakes the TLS handshakes the order service ran meanwhile.
	Requests, Handshakes int
	// Rounds are the path's rounds, one by one.
	Rounds []latency.Summary
}

// GetOrderLoad calls GetOrder for orderID, which u owns, at a fixed
// concurrency through the gateway and directly, in rounds that take turns,
// with ghz. Every call must succeed. It returns the gateway's result, then
// the direct one.
func (s *Stack) GetOrderLoad(ctx context.Context, u *User, orderID string, cfg LoadConfig) (
	[]LoadResult, error,
) {
	cfg = cfg.withDefaults()
	protoset, err := protosetOf(orderv1.File_order_v1_order_proto)
	if err != nil {
		return nil, err
	}
	req, err := proto.Marshal(&orderv1.GetOrderRequest{OrderId: orderID})
	if err != nil {
		return nil, err
	}
	mint, err := s.directTokens(ctx, u, orderID)
	if err != nil {
		return nil, err
	}
	svid := devpki.WorkloadFiles(s.Config().PKIDir(), policy.Gateway)
	common := []runner.Option{
		runner.WithProtosetBinary(protoset),
		runner.WithBinaryData(req),
		runner.WithConcurrency(uint(cfg.Concurrency)),
		runner.WithConnections(1),
		runner.WithTimeout(10 * time.Second),
		runner.WithDialTimeout(5 * time.Second),
		runner.WithSkipFirst(uint(cfg.Warmup)),
		runner.WithPacer(&bounded{
			ctx: ctx,
			max: uint64(cfg.Warmup + cfg.Requests), //nolint:gosec // G115: positive, set above
			d:   cfg.RoundTime,
		}),
	}
	paths := map[string]func() (string, []runner.Option, error){
		Gateway: func() (string, []runner.Option, error) {
			return s.Addr(s.Config().Ports.Gateway), []runner.Option{
				runner.WithInsecure(true),
				runner.WithMetadata(map[string]string{"authorization": "Bearer " + u.Token}),
			}, nil
		},
		Direct: func() (string, []runner.Option, error) {
			tok, err := mint()
			if err != nil {
				return "", nil, err
			}
			// The server checks the client's SVID as in production; the
			// client skips checking the server's, which names no host.
			return s.Addr(s.Config().Ports.Order), []runner.Option{
				runner.WithCertificate(svid.Cert, svid.Key),
				runner.WithSkipTLSVerify(true),
				runner.WithMetadata(map[string]string{txntoken.MetadataKey: tok}),
			}, nil
		},
	}

	recorders := map[string]*latency.Recorder{Gateway: {}, Direct: {}}
	requests := map[string]int{}
	rounds := map[string][]latency.Summary{}
	handshakes := map[string]int{}
	for round := range cfg.Rounds {
		order := []string{Direct, Gateway}
		if round%2 == 1 {
			order = []string{Gateway, Direct}
		}
		for _, path := range order {
			host, opts, err := paths[path]()
			if err != nil {
				return nil, err
			}
			before, err := s.Handshakes(ctx)
			if err != nil {
				return nil, err
			}
			report, err := run(ctx, host, append(slices.Clone(common), opts...))
			if err != nil {
				return nil, fmt.Errorf("loading the %s path: %w", path, err)
			}
			after, err := s.Handshakes(ctx)
			if err != nil {
				return nil, err
			}
			samples, elapsed, err := measured(report)
			if err != nil {
				return nil, fmt.Errorf("loading the %s path: %w", path, err)
			}
			recorders[path].Add(elapsed, samples...)
			rounds[path] = append(rounds[path], latency.Summarize(samples, elapsed))
			requests[path] += int(report.Count) + cfg.Warmup //nolint:gosec // G115: bounded by Requests
			handshakes[path] += after - before
		}
	}
	var results []LoadResult
	for _, path := range []string{Gateway, Direct} {
		results = append(results, LoadResult{
			Path: path, Concurrency: cfg.Concurrency, Summary: recorders[path].Summary(),
			Requests: requests[path], Handshakes: handshakes[path], Rounds: rounds[path],
		})
	}
	return results, nil
}

// measured returns the durations of a ghz run's measured calls and the
// wall time from the start of the first to the end of the last. It fails
// if any call failed.
func measured(report *runner.Report) ([]time.Duration, time.Duration, error) {
	if len(report.ErrorDist) > 0 {
		errs := slices.Sorted(maps.Keys(report.ErrorDist))
		return nil, 0, fmt.Errorf("%d kinds of error, first: %s", len(errs), errs[0])
	}
	if len(report.Details) == 0 {
		return nil, 0, errors.New("no call measured")
	}
	samples := make([]time.Duration, 0, len(report.Details))
	first, last := report.Details[0].Timestamp, report.Details[0].Timestamp
	for _, d := range report.Details {
		// A detail's timestamp is when the call ended.
		samples = append(samples, d.Latency)
		if start := d.Timestamp.Add(-d.Latency); start.Before(first) {
			first = start
		}
		if d.Timestamp.After(last) {
			last = d.Timestamp
		}
	}
	return samples, last.Sub(first), nil
}

// run runs one round of GetOrder calls with ghz. It drives ghz's
// requester itself, rather than through runner.Run, which would take over
// the process's interrupt signal for good.
func run(ctx context.Context, host string, opts []runner.Option) (*runner.Report, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cfg, err := runner.NewConfig(getOrder, host, opts...)
	if err != nil {
		return nil, err
	}
	requester, err := runner.NewRequester(cfg)
	if err != nil {
		return nil, err
	}
	return requester.Run()
}

// bounded paces a ghz run as fast as the calls come back, and stops it
// after max calls, once d has passed or when ctx ends, whichever comes
// first. Stopping through the pacer, rather than by stopping the
// requester, lets the calls in flight finish.
type bounded struct {
	ctx context.Context //nolint:containedctx // ghz asks the pacer, not the caller, when to stop
	max uint64
	d   time.Duration
}

func (b *bounded) Pace(elapsed time.Duration, hits uint64) (time.Duration, bool) {
	return 0, hits >= b.max || elapsed >= b.d || b.ctx.Err() != nil
}

func (b *bounded) Rate(time.Duration) float64 { return 0 }

// directTokens returns a function that mints, with the gateway's key, the
// transaction token the gateway would mint for u's GetOrder of orderID:
// the user and session of u's access token, verified with the user
// service's keys, the method's scopes and the order id bound.
func (s *Stack) directTokens(ctx context.Context, u *User, orderID string) (
	func() (string, error), error,
) {
	cfg := s.Config()
	accessKeys, err := jwks.LoadKeySet(ctx, cfg.AccessKeysFile(), jwks.KeySetOptions{})
	if err != nil {
		return nil, err
	}
	verifier, err := accesstoken.NewVerifier(accesstoken.VerifierConfig{
		Issuer: "http://" + s.Addr(cfg.Ports.UserAdmin), Audience: "rampart", Keys: accessKeys,
	})
	if err != nil {
		return nil, err
	}
	claims, err := verifier.Verify(ctx, u.Token)
	if err != nil {
		return nil, fmt.Errorf("reading the user's access token: %w", err)
	}
	txnKeys, err := jwks.LoadKeySet(ctx, cfg.TxnKeysFile(), jwks.KeySetOptions{})
	if err != nil {
		return nil, err
	}
	gateway := "spiffe://" + cfg.TrustDomain + "/" + policy.Gateway
	minter, err := txntoken.NewMinter(txntoken.MinterConfig{
		Signer: txnKeys, TrustDomain: cfg.TrustDomain, Workload: gateway, Issuer: gateway,
		Lifetime: txntoken.MaxLifetime,
	})
	if err != nil {
		return nil, err
	}
	return func() (string, error) {
		tok, err := minter.Mint(txntoken.Request{
			Subject: claims.Subject, SessionID: claims.SessionID, Scopes: []string{"orders:read"},
			ClientIP: "127.0.0.1", Context: map[string]string{"order_id": orderID},
		})
		if err != nil {
			return "", err
		}
		return tok.Raw, nil
	}, nil
}

// protosetOf returns the serialized FileDescriptorSet of file and every
// file it imports, dependencies first, as ghz reads a protoset.
func protosetOf(file protoreflect.FileDescriptor) ([]byte, error) {
	var set descriptorpb.FileDescriptorSet
	seen := map[string]bool{}
	var add func(protoreflect.FileDescriptor)
	add = func(f protoreflect.FileDescriptor) {
		if seen[f.Path()] {
			return
		}
		seen[f.Path()] = true
		imports := f.Imports()
		for i := range imports.Len() {
			add(imports.Get(i).FileDescriptor)
		}
		set.File = append(set.File, protodesc.ToFileDescriptorProto(f))
	}
	add(file)
	return proto.Marshal(&set)
}
