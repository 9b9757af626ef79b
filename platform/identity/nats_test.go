package identity_test

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"example.com/rampart/platform/identity"
)

// startNATS runs an embedded NATS server on 127.0.0.1 whose TLS comes from
// ServerTLSConfig and which maps each client's SVID to the user named by
// its SPIFFE ID; only users lists which workloads exist.
func startNATS(t *testing.T, src identity.Source, users ...string) *server.Server {
	t.Helper()
	opts := &server.Options{
		Host:       "127.0.0.1",
		Port:       server.RANDOM_PORT,
		NoLog:      true,
		NoSigs:     true,
		TLSConfig:  identity.ServerTLSConfig(src),
		TLSTimeout: 5,
		TLSMap:     true,
	}
	for _, u := range users {
		opts.Users = append(opts.Users, &server.User{Username: u})
	}
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("starting NATS: %v", err)
	}
	go s.Start()
	t.Cleanup(s.Shutdown)
	if !s.ReadyForConnections(5 * time.Second) {
		t.Fatal("NATS server not ready")
	}
	return s
}

func connectNATS(s *server.Server, opts ...nats.Option) (*nats.Conn, error) {
	opts = append(opts, nats.NoReconnect(), nats.Timeout(5*time.Second))
	return nats.Connect(s.ClientURL(), opts...)
}

func TestNATS(t *testing.T) {
	t.Parallel()
	ca, otherCA := newCA(t), newCA(t)
	s := startNATS(t, staticSource(t, ca, "server"), clientID.String())

	cfg := identity.ClientTLSConfig(staticSource(t, ca, "client"), serverID)
	nc, err := connectNATS(s, nats.Secure(cfg))
	if err != nil {
		t.Fatalf("connecting with a valid SVID: %v", err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync("orders.created")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish("orders.created", []byte("o-1")); err != nil {
		t.Fatal(err)
	}
	msg, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("receiving over mutual TLS: %v", err)
	}
	if got := string(msg.Data); got != "o-1" {
		t.Errorf("received %q, want %q", got, "o-1")
	}

	tests := []struct {
		name    string
		opts    []nats.Option
		wantErr error // when set, the refusal must match it
	}{
		{"SVID from another CA", []nats.Option{nats.Secure(
			identity.ClientTLSConfig(staticSource(t, otherCA, "client", ca, otherCA), serverID))}, nil},
		{"workload with no NATS user", []nats.Option{nats.Secure(
			identity.ClientTLSConfig(staticSource(t, ca, "batch"), serverID))}, nats.ErrAuthorization},
		{"server with another ID", []nats.Option{nats.Secure(
			identity.ClientTLSConfig(staticSource(t, ca, "client"), clientID))}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			nc, err := connectNATS(s, tt.opts...)
			if err == nil {
				nc.Close()
				t.Fatal("connection accepted, want it refused")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("connection error = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestNATSRefusesPlaintext(t *testing.T) {
	t.Parallel()
	s := startNATS(t, staticSource(t, newCA(t), "server"), clientID.String())
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := dialer.DialContext(t.Context(), "tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}

	r := bufio.NewReader(conn)
	info, err := r.ReadString('\n')
	if err != nil || !strings.Contains(info, `"tls_required":true`) {
		t.Fatalf("server greeting %q (error %v), want TLS required", info, err)
	}
	fmt.Fprint(conn, "CONNECT {\"verbose\":false}\r\nPING\r\n")
	reply, err := r.ReadString('\n')
	if err == nil && strings.HasPrefix(reply, "PONG") {
		t.Errorf("plaintext client got %q, want the connection refused", reply)
	}
}
