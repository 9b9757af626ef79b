// Package probe calls a workload's port the way a foreign caller would,
// with or without an SVID, and reports how the workload answered. The
// end-to-end tests run it from the test process and, through the probe
// command, from a container of the suite's network.
package probe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"example.com/rampart/platform/identity"
	"example.com/rampart/platform/txntoken"
	userv1 "example.com/rampart/proto/user/v1"
)

// AnonymousTLS returns the configuration of a client that verifies the
// server's SVID against bundleFile and expects it to be server, but
// presents no certificate of its own.
func AnonymousTLS(bundleFile string, server spiffeid.ID) (*tls.Config, error) {
	bundle, err := x509bundle.Load(server.TrustDomain(), bundleFile)
	if err != nil {
		return nil, fmt.Errorf("loading trust bundle: %w", err)
	}
	cfg := tlsconfig.TLSClientConfig(bundle, tlsconfig.AuthorizeID(server))
	cfg.MinVersion = tls.VersionTLS13
	return cfg, nil
}

// WorkloadTLS returns the configuration of a client that presents the SVID
// in files and expects the server to be server.
func WorkloadTLS(ctx context.Context, files identity.Files, server spiffeid.ID) (
	*tls.Config, func() error, error) {
	src, err := identity.NewFileSource(ctx, files, identity.FileOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("loading SVID: %w", err)
	}
	return identity.ClientTLSConfig(src, server), src.Close, nil
}

// Handshake connects to addr, completes the client's side of a TLS
// handshake with cfg, offering HTTP/2 as gRPC clients do, and reads. It
// returns "" when the server accepted the client, which a gRPC server
// shows by sending its HTTP/2 settings, and otherwise the error that ended
// the connection, such as the server's alert.
func Handshake(ctx context.Context, addr string, cfg *tls.Config) string {
	cfg = cfg.Clone()
	cfg.NextProtos = []string{"h2"}
	dialer := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: cfg}
	conn, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err.Error()
	}
	defer func() { _ = conn.Close() }() // the verdict is in; closing changes nothing
	if err := conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return err.Error()
	}
	if _, err := conn.Read(make([]byte, 1)); err != nil {
		return err.Error()
	}
	return ""
}

// Result is how a call ended: its gRPC code and message, and the email of
// the user returned on success.
type Result struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Email   string `json:"email,omitempty"`
}

// GetUser calls user.v1.UserService/GetUser on addr over cfg, with the
// transaction token txn when it is not empty.
func GetUser(ctx context.Context, addr string, cfg *tls.Config, txn, userID string) (Result, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		return Result{}, fmt.Errorf("dialing %s: %w", addr, err)
	}
	defer func() { _ = conn.Close() }() // the result is in; closing changes nothing
	if txn != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, txntoken.MetadataKey, txn)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := userv1.NewUserServiceClient(conn).GetUser(ctx, &userv1.GetUserRequest{UserId: userID})
	st, ok := status.FromError(err)
	if !ok {
		return Result{}, errors.New("GetUser failed without a gRPC status")
	}
	return Result{Code: st.Code().String(), Message: st.Message(), Email: resp.GetUser().GetEmail()}, nil
}
