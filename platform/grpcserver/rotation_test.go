package grpcserver_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoregistry"

	"example.com/rampart/platform/devpki"
	"example.com/rampart/platform/grpcclient"
	"example.com/rampart/platform/grpcserver"
	"example.com/rampart/platform/identity"
	"example.com/rampart/platform/jwks/jwkstest"
	"example.com/rampart/platform/policy"
	"example.com/rampart/platform/ratelimit"
	"example.com/rampart/platform/telemetry"
	"example.com/rampart/platform/txntoken"
	userv1 "example.com/rampart/proto/user/v1"
)

// rotationMaxAge is the servers' maximum connection age in the rotation
// test: short, so that the client's one long-lived HTTP/2 connection is
// replaced, and handshakes again, several times a second.
const rotationMaxAge = 150 * time.Millisecond

// TestRotationUnderLoad keeps order calling user, both reading their
// credentials from files reloaded on change, while the credentials rotate
// in four steps: both leaves renewed; a second CA added to the bundle;
// both leaves issued by the second CA; the first CA removed. Every call
// must succeed, and each step must reach the wire: new handshakes, made
// when a connection reaches its maximum age, present the new leaves.
// Afterwards a client still holding a leaf of the first CA is refused,
// also when it offers to resume the TLS session it had before, and a
// connection it opened before the removal does not outlive its maximum
// age.
func TestRotationUnderLoad(t *testing.T) {
	t.Parallel()
	r := newRotation(t)

	// An old client connects while the first CA is still trusted: it has
	// the session, if any, that it will later try to resume.
	sessions := &recordingCache{inner: tls.NewLRUClientSessionCache(8)}
	oldClient := r.clientWithLeafFrom(t, r.ca1, sessions)
	if err := r.callAs(t, oldClient); err != nil {
		t.Fatalf("call with a leaf of the first CA, while it is trusted: %v", err)
	}

	load := r.startLoad(t, 4)

	// 1. Both leaves are renewed by the first CA.
	r.issue(t, r.ca1)
	// 2. The second CA joins the bundle, before anything it issued is used.
	r.writeBundle(t, r.ca1, r.ca2)
	// 3. Both leaves are issued by the second CA.
	r.issue(t, r.ca2)
	// A client of the first CA keeps a connection open across its removal.
	lingering := r.clientWithLeafFrom(t, r.ca1, nil)
	if err := r.call(t, lingering); err != nil {
		t.Fatalf("call with a leaf of the first CA, while it is trusted: %v", err)
	}
	// 4. The first CA leaves the bundle. Calls go on over new handshakes.
	r.writeBundle(t, r.ca2)
	r.waitHandshakes(t, 3)

	calls, failures := load.stop()
	t.Logf("rotation under load: %d calls, %d failed, %d connections, %v",
		calls, len(failures), r.accepted.Load(), time.Since(r.started).Round(time.Millisecond))
	if len(failures) > 0 {
		t.Errorf("%d of %d calls failed during rotation; first: %v",
			len(failures), calls, failures[0])
	}
	if calls < 100 {
		t.Errorf("only %d calls during rotation, too few to call it load", calls)
	}

	// A client holding a leaf of the removed CA is refused, also with the
	// session cache it filled while that CA was trusted.
	before := r.users.count()
	err := r.callAs(t, r.clientWithLeafFrom(t, r.ca1, sessions))
	if status.Code(err) != codes.Unavailable {
		t.Errorf("call with a leaf of the removed CA: %v, want Unavailable", err)
	}
	if n := r.users.count() - before; n != 0 {
		t.Errorf("the handler ran %d times for a refused client", n)
	}
	if got := sessions.resumable(); got != 0 {
		t.Errorf("the server gave the client %d sessions to resume, want none", got)
	}
	// The connection opened before the removal reaches its maximum age,
	// and the handshake that would replace it is refused.
	waitFor(t, "the lingering connection to be refused", func() bool {
		return status.Code(r.call(t, lingering)) == codes.Unavailable
	})
}

// rotation is a user server and an order client on a development PKI in
// a temporary directory, with a second CA ready to take over.
type rotation struct {
	dir      string
	td       spiffeid.TrustDomain
	ca1, ca2 *devpki.CA
	userSrc  *identity.FileSource
	orderSrc *identity.FileSource
	addr     string
	users    *recordingUsers
	tel      *telemetry.Telemetry
	token    *txntoken.Token
	accepted atomic.Int64 // connections the server accepted
	started  time.Time

	mu       sync.Mutex
	seenByUs map[string]bool // serials of leaves the client saw the server present
}

func newRotation(t *testing.T) *rotation {
	t.Helper()
	r := &rotation{
		dir: t.TempDir(), td: spiffeid.RequireTrustDomainFromString(trustDomain),
		users: &recordingUsers{}, seenByUs: map[string]bool{}, started: time.Now(),
	}
	if err := devpki.Ensure(r.dir, r.td, "user", "order"); err != nil {
		t.Fatal(err)
	}
	var err error
	if r.ca1, err = devpki.LoadCA(r.dir); err != nil {
		t.Fatal(err)
	}
	if r.ca2, err = devpki.NewCA(r.td); err != nil {
		t.Fatal(err)
	}
	r.userSrc = r.fileSource(t, "user")
	r.orderSrc = r.fileSource(t, "order")
	if r.tel, err = telemetry.New(t.Context(), telemetry.Config{
		Service: "user", LogOutput: io.Discard, DisableOTLP: true,
	}); err != nil {
		t.Fatal(err)
	}

	keys, _ := jwkstest.KeySet(t)
	gateway := "spiffe://" + trustDomain + "/gateway"
	minter, err := txntoken.NewMinter(txntoken.MinterConfig{
		Signer: keys, TrustDomain: trustDomain, Workload: gateway, Issuer: gateway,
	})
	if err != nil {
		t.Fatal(err)
	}
	r.token, err = minter.Mint(txntoken.Request{Subject: uuid.NewString(), SessionID: "s-1"})
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := txntoken.NewVerifier(txntoken.VerifierConfig{
		Keys: keys, TrustDomain: trustDomain, Issuer: gateway,
	})
	if err != nil {
		t.Fatal(err)
	}
	set, err := policy.Load(r.td, protoregistry.GlobalFiles)
	if err != nil {
		t.Fatal(err)
	}

	srv := grpcserver.New(grpcserver.Config{
		Identity:         r.userSrc,
		Policy:           set,
		Tokens:           verifier,
		Telemetry:        r.tel,
		Limiter:          ratelimit.New(ratelimit.Config{Rate: 1e6, Burst: 1e6}),
		MaxConnectionAge: rotationMaxAge,
	})
	userv1.RegisterUserServiceServer(srv, r.users)
	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	go func() { _ = srv.Serve(countingListener{ln, &r.accepted}) }()
	t.Cleanup(srv.Stop)
	return r
}

// fileSource loads name's credentials from the files and polls them
// often. A poll that falls between writing a key and its certificate
// keeps the last good pair and reports a mismatch; the test requires only
// that no call fails, so reports are not checked.
func (r *rotation) fileSource(t *testing.T, name string) *identity.FileSource {
	t.Helper()
	src, err := identity.NewFileSource(t.Context(), devpki.WorkloadFiles(r.dir, name),
		identity.FileOptions{Interval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	return src
}

// issue writes new leaves from ca for both workloads and waits until the
// load has gone through handshakes that present both on the wire.
func (r *rotation) issue(t *testing.T, ca *devpki.CA) {
	t.Helper()
	var serials [2]string
	for i, name := range []string{"user", "order"} {
		creds, err := ca.Issue(name, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		svid, err := creds.SVID()
		if err != nil {
			t.Fatal(err)
		}
		serials[i] = svid.Certificates[0].SerialNumber.String()
		files := devpki.WorkloadFiles(r.dir, name)
		writeAtomic(t, files.Key, creds.KeyPEM)
		writeAtomic(t, files.Cert, creds.CertPEM)
	}
	waitFor(t, "the renewed leaves on the wire", func() bool {
		return r.sawServer(serials[0]) && r.users.saw(serials[1])
	})
}

// writeBundle replaces the shared bundle file and waits until both
// workloads trust exactly cas.
func (r *rotation) writeBundle(t *testing.T, cas ...*devpki.CA) {
	t.Helper()
	var pem []byte
	for _, ca := range cas {
		pem = append(pem, ca.BundlePEM()...)
	}
	writeAtomic(t, devpki.WorkloadFiles(r.dir, "user").Bundle, pem)
	waitFor(t, "the new bundle", func() bool {
		for _, src := range []identity.Source{r.userSrc, r.orderSrc} {
			b, err := src.GetX509BundleForTrustDomain(r.td)
			if err != nil || len(b.X509Authorities()) != len(cas) {
				return false
			}
			for _, ca := range cas {
				if !b.HasX509Authority(ca.Certificate()) {
					return false
				}
			}
		}
		return true
	})
}

// waitHandshakes waits until the server has accepted n more connections.
func (r *rotation) waitHandshakes(t *testing.T, n int64) {
	t.Helper()
	want := r.accepted.Load() + n
	waitFor(t, "new connections", func() bool { return r.accepted.Load() >= want })
}

func (r *rotation) sawServer(serial string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seenByUs[serial]
}

// load is order's steady traffic to user.
type load struct {
	stopped chan struct{}
	wg      sync.WaitGroup
	calls   atomic.Int64

	mu       sync.Mutex
	failures []error
}

// startLoad starts workers that call GetUser back to back through one
// client connection, as order does, until stop.
func (r *rotation) startLoad(t *testing.T, workers int) *load {
	t.Helper()
	userID := spiffeid.RequireFromSegments(r.td, "user")
	conn, err := grpcclient.Dial(r.addr, userID,
		grpcclient.Config{Identity: r.orderSrc, Telemetry: r.tel})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	client := userv1.NewUserServiceClient(conn)
	ctx := txntoken.NewContext(context.Background(), r.token)

	l := &load{stopped: make(chan struct{})}
	for range workers {
		l.wg.Go(func() {
			for {
				select {
				case <-l.stopped:
					return
				default:
				}
				var p peer.Peer
				callCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
				_, err := client.GetUser(callCtx, &userv1.GetUserRequest{UserId: uuid.NewString()},
					grpc.Peer(&p))
				cancel()
				l.calls.Add(1)
				if err != nil {
					l.mu.Lock()
					l.failures = append(l.failures, err)
					l.mu.Unlock()
					continue
				}
				if info, ok := p.AuthInfo.(credentials.TLSInfo); ok {
					r.mu.Lock()
					r.seenByUs[info.State.PeerCertificates[0].SerialNumber.String()] = true
					r.mu.Unlock()
				}
			}
		})
	}
	t.Cleanup(func() { l.stop() })
	return l
}

// stop stops the workers and returns how many calls they made and which
// failed.
func (l *load) stop() (int64, []error) {
	select {
	case <-l.stopped:
	default:
		close(l.stopped)
	}
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.calls.Load(), append([]error(nil), l.failures...)
}

// clientWithLeafFrom returns a connection as order holding a leaf from ca
// and trusting both CAs, so that only the server can refuse it. Its TLS
// sessions go to sessions, if not nil.
func (r *rotation) clientWithLeafFrom(
	t *testing.T, ca *devpki.CA, sessions tls.ClientSessionCache,
) *grpc.ClientConn {
	t.Helper()
	svid, err := ca.IssueSVID("order", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	bundle := r.ca1.Bundle()
	bundle.AddX509Authority(r.ca2.Certificate())
	cfg := identity.ClientTLSConfig(identity.NewStaticSource(svid, bundle),
		spiffeid.RequireFromSegments(r.td, "user"))
	cfg.ClientSessionCache = sessions
	conn, err := grpc.NewClient(r.addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// callAs makes one call on conn, then closes it, so that the next call of
// the same client needs a new handshake.
func (r *rotation) callAs(t *testing.T, conn *grpc.ClientConn) error {
	t.Helper()
	defer conn.Close()
	return r.call(t, conn)
}

// call makes one call on conn.
func (r *rotation) call(t *testing.T, conn *grpc.ClientConn) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, txntoken.MetadataKey, r.token.Raw)
	_, err := userv1.NewUserServiceClient(conn).GetUser(ctx,
		&userv1.GetUserRequest{UserId: uuid.NewString()})
	return err
}

// recordingUsers answers GetUser and records the serial number of the
// client certificate of every call.
type recordingUsers struct {
	userv1.UnimplementedUserServiceServer
	mu      sync.Mutex
	serials map[string]int
	calls   int
}

func (u *recordingUsers) GetUser(
	ctx context.Context, req *userv1.GetUserRequest,
) (*userv1.GetUserResponse, error) {
	p, _ := peer.FromContext(ctx)
	info, _ := p.AuthInfo.(credentials.TLSInfo)
	serial := info.State.PeerCertificates[0].SerialNumber.String()
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.serials == nil {
		u.serials = map[string]int{}
	}
	u.serials[serial]++
	u.calls++
	return &userv1.GetUserResponse{User: &userv1.User{UserId: req.GetUserId()}}, nil
}

func (u *recordingUsers) saw(serial string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.serials[serial] > 0
}

func (u *recordingUsers) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.calls
}

// recordingCache is a TLS client session cache that counts the sessions
// a server let it keep.
type recordingCache struct {
	inner tls.ClientSessionCache
	puts  atomic.Int64
}

func (c *recordingCache) Get(key string) (*tls.ClientSessionState, bool) { return c.inner.Get(key) }

func (c *recordingCache) Put(key string, cs *tls.ClientSessionState) {
	if cs != nil {
		c.puts.Add(1)
	}
	c.inner.Put(key, cs)
}

func (c *recordingCache) resumable() int64 { return c.puts.Load() }

// countingListener counts the connections it accepts.
type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return conn, err
}

// writeAtomic replaces path with data so that a reader never sees a
// partial file.
func writeAtomic(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// waitFor fails the test unless cond holds within five seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
