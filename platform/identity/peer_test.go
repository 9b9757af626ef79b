package identity_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"

	"example.com/rampart/platform/identity"
)

func TestPeerIDFromTLS(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	leaf := func(uris ...string) *x509.Certificate {
		t.Helper()
		return tlsCert(t, issueTemplate(t, ca, leafTemplate(uris...))).Leaf
	}
	complete := func(certs ...*x509.Certificate) *tls.ConnectionState {
		return &tls.ConnectionState{HandshakeComplete: true, PeerCertificates: certs}
	}

	tests := []struct {
		name    string
		state   *tls.ConnectionState
		want    string
		wantErr error
	}{
		{"workload", complete(leaf(clientID.String())), clientID.String(), nil},
		{"nil state", nil, "", identity.ErrNoPeer},
		{
			"handshake not complete",
			&tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf(clientID.String())}},
			"", identity.ErrNoPeer,
		},
		{"no client certificate", complete(), "", identity.ErrNoPeer},
		{"no URI SAN", complete(leaf()), "", identity.ErrNotSPIFFE},
		{
			"two URI SANs",
			complete(leaf(clientID.String(), serverID.String())),
			"", identity.ErrNotSPIFFE,
		},
		{"non-SPIFFE URI", complete(leaf("https://rampart.test/client")), "", identity.ErrNotSPIFFE},
		{"no path", complete(leaf("spiffe://rampart.test")), "", identity.ErrNotSPIFFE},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			id, err := identity.PeerIDFromTLS(tt.state)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("PeerIDFromTLS error = %v, want %v", err, tt.wantErr)
			}
			if got := id.String(); got != tt.want {
				t.Errorf("PeerIDFromTLS = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestPeerID(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	cert := tlsCert(t, issue(t, ca, "client")).Leaf
	tlsPeer := func(state tls.ConnectionState) *peer.Peer {
		return &peer.Peer{AuthInfo: credentials.TLSInfo{State: state}}
	}

	tests := []struct {
		name    string
		peer    *peer.Peer // put in the call's context unless nil
		want    spiffeid.ID
		wantErr error
	}{
		{"no peer", nil, spiffeid.ID{}, identity.ErrNoPeer},
		{"peer without TLS", &peer.Peer{}, spiffeid.ID{}, identity.ErrNoPeer},
		{
			"TLS peer without certificate",
			tlsPeer(tls.ConnectionState{HandshakeComplete: true}),
			spiffeid.ID{}, identity.ErrNoPeer,
		},
		{
			"workload",
			tlsPeer(tls.ConnectionState{
				HandshakeComplete: true,
				PeerCertificates:  []*x509.Certificate{cert},
			}),
			clientID, nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			if tt.peer != nil {
				ctx = peer.NewContext(ctx, tt.peer)
			}
			id, err := identity.PeerID(ctx)
			if !errors.Is(err, tt.wantErr) || id != tt.want {
				t.Errorf("PeerID = %v, %v; want %v, %v", id, err, tt.want, tt.wantErr)
			}
		})
	}
}

// grpcServer serves the health service over mutual TLS on 127.0.0.1 and
// records the peer of every call that reaches it.
type grpcServer struct {
	addr  string
	mu    sync.Mutex
	peers []string
}

func startGRPC(t *testing.T, src identity.Source) *grpcServer {
	t.Helper()
	gs := &grpcServer{}
	record := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo,
		handler grpc.UnaryHandler) (any, error) {
		id, err := identity.PeerID(ctx)
		gs.mu.Lock()
		if err != nil {
			gs.peers = append(gs.peers, "error: "+err.Error())
		} else {
			gs.peers = append(gs.peers, id.String())
		}
		gs.mu.Unlock()
		return handler(ctx, req)
	}
	srv := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(identity.ServerTLSConfig(src))),
		grpc.UnaryInterceptor(record),
	)
	healthpb.RegisterHealthServer(srv, health.NewServer())

	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs.addr = ln.Addr().String()
	// Serve returns when the cleanup stops the server; a failure to serve shows as failed calls.
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return gs
}

func (gs *grpcServer) seen() []string {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	return append([]string(nil), gs.peers...)
}

func checkHealth(t *testing.T, addr string, creds credentials.TransportCredentials) error {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

func TestGRPC(t *testing.T) {
	t.Parallel()
	ca, otherCA := newCA(t), newCA(t)
	gs := startGRPC(t, staticSource(t, ca, "server"))

	good := identity.ClientTLSConfig(staticSource(t, ca, "client"), serverID)
	if err := checkHealth(t, gs.addr, credentials.NewTLS(good)); err != nil {
		t.Fatalf("call with a valid SVID: %v", err)
	}
	if got := gs.seen(); len(got) != 1 || got[0] != clientID.String() {
		t.Fatalf("handler saw peers %q, want [%s]", got, clientID)
	}

	bad := identity.ClientTLSConfig(staticSource(t, otherCA, "client", ca, otherCA), serverID)
	if err := checkHealth(t, gs.addr, credentials.NewTLS(bad)); err == nil {
		t.Error("call with an SVID from another CA succeeded")
	}
	if err := checkHealth(t, gs.addr, insecure.NewCredentials()); err == nil {
		t.Error("plaintext call succeeded")
	}
	if got := gs.seen(); len(got) != 1 {
		t.Errorf("handler ran %d times, want once, for the valid call only", len(got))
	}
}
