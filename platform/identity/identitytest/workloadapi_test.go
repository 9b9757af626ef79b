package identitytest_test

import (
	"context"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"example.com/rampart/platform/identity/identitytest"
)

func TestWorkloadAPIRequiresTheSecurityHeader(t *testing.T) {
	t.Parallel()
	api := identitytest.StartWorkloadAPI(t)
	creds := grpc.WithTransportCredentials(insecure.NewCredentials())
	conn, err := grpc.NewClient(api.Addr(), creds)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	client := workload.NewSpiffeWorkloadAPIClient(conn)

	tests := []struct {
		name     string
		md       metadata.MD
		wantCode codes.Code
	}{
		{"no header", nil, codes.InvalidArgument},
		{"header false", metadata.Pairs("workload.spiffe.io", "false"), codes.InvalidArgument},
		// Nothing was issued: the stream waits, so the deadline ends it.
		{"header set", metadata.Pairs("workload.spiffe.io", "true"), codes.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
			defer cancel()
			ctx = metadata.NewOutgoingContext(ctx, tt.md)
			stream, err := client.FetchX509SVID(ctx, &workload.X509SVIDRequest{})
			if err == nil {
				_, err = stream.Recv()
			}
			if got := status.Code(err); got != tt.wantCode {
				t.Errorf("code %v (%v), want %v", got, err, tt.wantCode)
			}
		})
	}
}
