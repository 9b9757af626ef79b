package e2e

import (
	"context"
	"net"

	"google.golang.org/grpc"

	"example.com/rampart/e2e/internal/otlpsink"
)

// collector is the OTLP receiver the workloads of the process stack
// export their spans to, served by the test process on 127.0.0.1.
type collector struct {
	sink *otlpsink.Sink
	addr string
	stop func()
}

// startCollector serves OTLP/gRPC on a free port of 127.0.0.1 until stop
// is called.
func startCollector(ctx context.Context) (*collector, error) {
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	c := &collector{sink: otlpsink.New(), addr: ln.Addr().String()}
	srv := grpc.NewServer()
	c.sink.Register(srv)
	go func() { _ = srv.Serve(ln) }()
	c.stop = srv.Stop
	return c, nil
}

// Trace returns the spans received so far for traceID.
func (c *collector) Trace(_ context.Context, traceID string) ([]otlpsink.Span, error) {
	return c.sink.Trace(traceID), nil
}
