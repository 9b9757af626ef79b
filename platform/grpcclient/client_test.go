package grpcclient_test

import (
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"example.com/rampart/platform/devpki"
	"example.com/rampart/platform/grpcclient"
	"example.com/rampart/platform/identity"
	"example.com/rampart/platform/telemetry"
	"example.com/rampart/platform/txntoken"
	userv1 "example.com/rampart/proto/user/v1"
)

// recordingUsers answers GetMe and remembers the metadata of each call and
// the peer that made it.
type recordingUsers struct {
	userv1.UnimplementedUserServiceServer
	mu    sync.Mutex
	md    []metadata.MD
	peers []spiffeid.ID
}

func (r *recordingUsers) GetMe(
	ctx context.Context, _ *userv1.GetMeRequest,
) (*userv1.GetMeResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	id, err := identity.PeerID(ctx)
	if err != nil {
		return nil, status.Error(codes.Unauthenticated, err.Error())
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.md = append(r.md, md)
	r.peers = append(r.peers, id)
	return &userv1.GetMeResponse{}, nil
}

func source(t *testing.T, ca *devpki.CA, name string) identity.Source {
	t.Helper()
	src, err := ca.Source(name, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// serve starts a user server with the SVID of name on 127.0.0.1.
func serve(t *testing.T, ca *devpki.CA, name string) (string, *recordingUsers) {
	t.Helper()
	users := &recordingUsers{}
	tlsConfig := identity.ServerTLSConfig(source(t, ca, name))
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(tlsConfig)))
	userv1.RegisterUserServiceServer(srv, users)
	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return ln.Addr().String(), users
}

func newCA(t *testing.T) (*devpki.CA, spiffeid.TrustDomain) {
	t.Helper()
	td := spiffeid.RequireTrustDomainFromString("rampart.local")
	ca, err := devpki.NewCA(td)
	if err != nil {
		t.Fatal(err)
	}
	return ca, td
}

func dial(
	t *testing.T, ca *devpki.CA, as, addr string, server spiffeid.ID,
) (userv1.UserServiceClient, trace.Tracer) {
	t.Helper()
	tel, err := telemetry.New(t.Context(), telemetry.Config{
		Service: as, LogOutput: io.Discard, DisableOTLP: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpcclient.Dial(addr, server, grpcclient.Config{Identity: source(t, ca, as), Telemetry: tel})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return userv1.NewUserServiceClient(conn), tel.TracerProvider.Tracer("test")
}

func TestForwardsTheTransactionTokenUnchanged(t *testing.T) {
	t.Parallel()
	ca, td := newCA(t)
	addr, users := serve(t, ca, "user")
	client, tracer := dial(t, ca, "order", addr, spiffeid.RequireFromSegments(td, "user"))

	ctx, span := tracer.Start(t.Context(), "serving a request")
	defer span.End()
	ctx = txntoken.NewContext(ctx, &txntoken.Token{Raw: "header.claims.signature"})
	if _, err := client.GetMe(ctx, &userv1.GetMeRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.GetMe(t.Context(), &userv1.GetMeRequest{}); err != nil {
		t.Fatal(err)
	}

	users.mu.Lock()
	defer users.mu.Unlock()
	got := [][]string{users.md[0].Get(txntoken.MetadataKey), users.md[1].Get(txntoken.MetadataKey)}
	want := [][]string{{"header.claims.signature"}, nil}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("forwarded tokens (-want +got):\n%s", diff)
	}
	if users.peers[0] != spiffeid.RequireFromSegments(td, "order") {
		t.Errorf("server saw peer %v, want the order workload", users.peers[0])
	}
	parent := users.md[0].Get("traceparent")
	if len(parent) != 1 || !strings.Contains(parent[0], span.SpanContext().TraceID().String()) {
		t.Errorf("traceparent %q does not continue the caller's trace %s", parent, span.SpanContext().TraceID())
	}
}

func TestRefusesAServerWithAnotherIdentity(t *testing.T) {
	t.Parallel()
	ca, td := newCA(t)
	addr, users := serve(t, ca, "payment")
	client, _ := dial(t, ca, "order", addr, spiffeid.RequireFromSegments(td, "user"))

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	_, err := client.GetMe(ctx, &userv1.GetMeRequest{})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("call to a server that is not the user workload: %v, want Unavailable", err)
	}
	if len(users.md) != 0 {
		t.Error("the impostor server received the call")
	}
}
