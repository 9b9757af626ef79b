package grpcserver_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"example.com/rampart/platform/identity"
	"example.com/rampart/platform/txntoken"
	userv1 "example.com/rampart/proto/user/v1"
)

// TestTransportRefusesAllButMutualTLS13 speaks to the server's port
// without TLS, as plaintext HTTP or as h2c, and with TLS 1.2: every attempt
// must end before any request is read, with the handler never running.
func TestTransportRefusesAllButMutualTLS13(t *testing.T) {
	t.Parallel()
	r := newRotation(t)

	// settings is an empty HTTP/2 SETTINGS frame, which follows the
	// client preface.
	settings := []byte{0, 0, 0, 4, 0, 0, 0, 0, 0}
	tests := []struct {
		name    string
		attempt func(t *testing.T) error
	}{
		{"gRPC without TLS (h2c)", func(t *testing.T) error {
			t.Helper()
			creds := grpc.WithTransportCredentials(insecure.NewCredentials())
			conn, err := grpc.NewClient(r.addr, creds)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			defer cancel()
			ctx = metadata.AppendToOutgoingContext(ctx, txntoken.MetadataKey, r.token.Raw)
			_, err = userv1.NewUserServiceClient(conn).GetUser(ctx,
				&userv1.GetUserRequest{UserId: uuid.NewString()})
			// Any other code would come from a server that read the call.
			if status.Code(err) != codes.Unavailable {
				return nil
			}
			return err
		}},
		{"h2c with prior knowledge", func(t *testing.T) error {
			t.Helper()
			preface := append([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), settings...)
			return plaintext(t, r.addr, preface)
		}},
		{"HTTP/1.1 upgrade to h2c", func(t *testing.T) error {
			t.Helper()
			return plaintext(t, r.addr, []byte("POST /user.v1.UserService/GetUser HTTP/1.1\r\n"+
				"Host: user\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"+
				"HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\nContent-Length: 0\r\n\r\n"))
		}},
		{"TLS 1.2 with a valid SVID", func(t *testing.T) error {
			t.Helper()
			cfg := identity.ClientTLSConfig(r.orderSrc, spiffeid.RequireFromSegments(r.td, "user"))
			cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
			cfg.NextProtos = []string{"h2"}
			dialer := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 2 * time.Second}, Config: cfg}
			conn, err := dialer.DialContext(t.Context(), "tcp", r.addr)
			if err != nil {
				return err
			}
			conn.Close()
			return nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if err := tt.attempt(t); err == nil {
				t.Error("the server answered, want the connection refused")
			}
			if n := r.users.count(); n != 0 {
				t.Fatalf("the handler ran %d times", n)
			}
		})
	}
}

// plaintext sends data on a new TCP connection and reads what comes back
// until the server closes the connection or a deadline passes. It returns
// an error unless the answer is HTTP, either HTTP/1.1 or an HTTP/2 frame:
// a TLS alert, or nothing, is a refusal.
func plaintext(t *testing.T, addr string, data []byte) error {
	t.Helper()
	dialer := &net.Dialer{Timeout: 2 * time.Second}
	conn, err := dialer.DialContext(t.Context(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(data); err != nil {
		return err
	}
	// A server that took the bytes for its protocol may keep the
	// connection open, so the read error says nothing either way.
	reply, _ := io.ReadAll(conn)
	switch {
	case bytes.HasPrefix(reply, []byte("HTTP/")):
		return nil
	case len(reply) >= 9 && reply[3] == 4: // an HTTP/2 SETTINGS frame
		return nil
	}
	return fmt.Errorf("refused with %d bytes: %x", len(reply), reply)
}
