// Package eventstest runs a NATS server with JetStream inside a test
// process, listening on 127.0.0.1 only, for tests of code that publishes
// or consumes events.
package eventstest

import (
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Server is an embedded NATS server that keeps its port and its JetStream
// store across [Server.Restart].
type Server struct {
	*server.Server
	opts server.Options
}

// NewServer starts a server on a free port of 127.0.0.1 with JetStream
// stored in a temporary directory, and shuts it down when the test ends.
func NewServer(t testing.TB) *Server {
	t.Helper()
	s := &Server{opts: server.Options{
		Host:      "127.0.0.1",
		Port:      server.RANDOM_PORT,
		JetStream: true,
		StoreDir:  t.TempDir(),
		NoLog:     true,
		NoSigs:    true,
	}}
	s.start(t)
	addr, ok := s.Addr().(*net.TCPAddr)
	if !ok {
		t.Fatalf("NATS server listens on %v, not TCP", s.Addr())
	}
	// A restart comes back on the same port, where clients reconnect.
	s.opts.Port = addr.Port
	t.Cleanup(s.Stop)
	return s
}

// Stop shuts the server down and waits until it has.
func (s *Server) Stop() {
	s.Shutdown()
	s.WaitForShutdown()
}

// Start starts the server again after [Server.Stop], on the same port
// with the same store, as after an outage.
func (s *Server) Start(t testing.TB) {
	t.Helper()
	s.start(t)
}

func (s *Server) start(t testing.TB) {
	t.Helper()
	opts := s.opts
	srv, err := server.NewServer(&opts)
	if err != nil {
		t.Fatalf("creating NATS server: %v", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		t.Fatal("NATS server not ready")
	}
	s.Server = srv
}

// Connect returns a client of the server that reconnects quickly and
// forever, closed when the test ends.
func (s *Server) Connect(t testing.TB) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL(),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(50*time.Millisecond),
		nats.RetryOnFailedConnect(true))
	if err != nil {
		t.Fatalf("connecting to NATS: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("opening JetStream: %v", err)
	}
	return nc, js
}
