package grpcserver

import (
	"context"
	"fmt"
	"log/slog"
	"net"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc/credentials"
)

// HandshakesMetric is the counter of TLS handshakes a server has run, with
// an "outcome" attribute of "ok" or "failed". Connections are meant to be
// reused: a count that grows with the calls, rather than with the
// connections, means some client dials for every call.
const HandshakesMetric = "rampart.grpc.server.handshakes"

// meterName is the instrumentation scope of the server's own metrics.
const meterName = "example.com/rampart/platform/grpcserver"

// countedCreds counts every server handshake of the credentials it wraps,
// and logs each refused one as an audit event.
type countedCreds struct {
	credentials.TransportCredentials
	handshakes metric.Int64Counter
	log        *slog.Logger
}

// Attribute sets of the two outcomes, built once rather than per
// handshake.
var (
	handshakeOK = metric.WithAttributeSet(
		attribute.NewSet(attribute.String("outcome", "ok")))
	handshakeFailed = metric.WithAttributeSet(
		attribute.NewSet(attribute.String("outcome", "failed")))
)

func countHandshakes(
	creds credentials.TransportCredentials, mp metric.MeterProvider, log *slog.Logger,
) (credentials.TransportCredentials, error) {
	counter, err := mp.Meter(meterName).Int64Counter(HandshakesMetric,
		metric.WithDescription("TLS handshakes run by the gRPC server, by outcome."),
		metric.WithUnit("{handshake}"))
	if err != nil {
		return nil, fmt.Errorf("creating the %s counter: %w", HandshakesMetric, err)
	}
	return countedCreds{TransportCredentials: creds, handshakes: counter, log: log}, nil
}

func (c countedCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	secured, info, err := c.TransportCredentials.ServerHandshake(conn)
	outcome := handshakeOK
	if err != nil {
		outcome = handshakeFailed
		c.log.Warn("TLS handshake refused", "audit", "denied",
			"peer_addr", conn.RemoteAddr().String(), "error", err.Error())
	}
	c.handshakes.Add(context.Background(), 1, outcome)
	return secured, info, err
}

func (c countedCreds) Clone() credentials.TransportCredentials {
	return countedCreds{
		TransportCredentials: c.TransportCredentials.Clone(), handshakes: c.handshakes, log: c.log,
	}
}
