// Package identitytest serves the SPIFFE Workload API inside a test
// process, on a Unix socket in a temporary directory, as a SPIRE agent
// would: it hands out the SVIDs and bundle the test chooses and pushes
// every change to the clients that watch it.
package identitytest

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// WorkloadAPI is a Workload API server for tests. Only the X.509 part is
// served; the JWT and WIT methods answer Unimplemented.
type WorkloadAPI struct {
	workload.UnimplementedSpiffeWorkloadAPIServer
	addr string
	srv  *grpc.Server

	mu      sync.Mutex
	current *workload.X509SVIDResponse // nil until the first Set
	changed chan struct{}              // closed and replaced by Set
}

// StartWorkloadAPI starts a server that serves nothing until
// [WorkloadAPI.Set] is called, and stops it when the test ends. Like a
// SPIRE agent, it refuses calls without the header that marks them as
// coming from a Workload API client.
func StartWorkloadAPI(t testing.TB) *WorkloadAPI {
	t.Helper()
	// A socket path must stay short (about 100 bytes), which a directory
	// named after the test may not.
	dir, err := os.MkdirTemp("", "spiffe-") //nolint:usetesting // t.TempDir's path can be too long.
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("removing the Workload API's directory: %v", err)
		}
	})
	path := filepath.Join(dir, "agent.sock")
	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "unix", path)
	if err != nil {
		t.Fatalf("listening on %s: %v", path, err)
	}

	w := &WorkloadAPI{addr: "unix://" + path, srv: grpc.NewServer(), changed: make(chan struct{})}
	workload.RegisterSpiffeWorkloadAPIServer(w.srv, w)
	go func() { _ = w.srv.Serve(ln) }()
	t.Cleanup(w.Stop)
	return w
}

// Stop stops the server at once, as a SPIRE agent that goes away.
func (w *WorkloadAPI) Stop() { w.srv.Stop() }

// Addr is the server's endpoint in the form SPIFFE_ENDPOINT_SOCKET takes:
// "unix:///tmp/spiffe-…/agent.sock".
func (w *WorkloadAPI) Addr() string { return w.addr }

// Set makes the server serve svids, each with bundle as the bundle of its
// trust domain, and pushes them to every client watching. It fails if an
// SVID's key cannot be encoded.
func (w *WorkloadAPI) Set(bundle *x509bundle.Bundle, svids ...*x509svid.SVID) error {
	var raw []byte
	for _, ca := range bundle.X509Authorities() {
		raw = append(raw, ca.Raw...)
	}
	resp := &workload.X509SVIDResponse{}
	for _, svid := range svids {
		key, err := x509.MarshalPKCS8PrivateKey(svid.PrivateKey)
		if err != nil {
			return fmt.Errorf("encoding the key of %s: %w", svid.ID, err)
		}
		var chain []byte
		for _, cert := range svid.Certificates {
			chain = append(chain, cert.Raw...)
		}
		resp.Svids = append(resp.Svids, &workload.X509SVID{
			SpiffeId:    svid.ID.String(),
			X509Svid:    chain,
			X509SvidKey: key,
			Bundle:      raw,
		})
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	w.current = resp
	close(w.changed)
	w.changed = make(chan struct{})
	return nil
}

func (w *WorkloadAPI) state() (*workload.X509SVIDResponse, <-chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.current, w.changed
}

// FetchX509SVID streams the current SVIDs and then every change, until the
// client goes away.
func (w *WorkloadAPI) FetchX509SVID(_ *workload.X509SVIDRequest,
	stream grpc.ServerStreamingServer[workload.X509SVIDResponse],
) error {
	ctx := stream.Context()
	if err := checkHeader(ctx); err != nil {
		return err
	}
	var sent *workload.X509SVIDResponse
	for {
		resp, changed := w.state()
		if resp != nil && resp != sent {
			if err := stream.Send(resp); err != nil {
				return err
			}
			sent = resp
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil
		}
	}
}

// checkHeader refuses a call without the "workload.spiffe.io: true"
// metadata, which the Workload API requires so that a browser or a proxy
// cannot be made to call it.
func checkHeader(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("workload.spiffe.io"); len(v) != 1 || v[0] != "true" {
		return status.Error(codes.InvalidArgument, "security header missing from request")
	}
	return nil
}
