package server

import (
	"encoding/json"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/google/uuid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"example.com/rampart/gateway/internal/proxy"
	"example.com/rampart/gateway/internal/revocation"
	"example.com/rampart/platform/accesstoken"
	"example.com/rampart/platform/devpki"
	"example.com/rampart/platform/grpcclient"
	"example.com/rampart/platform/identity"
	"example.com/rampart/platform/jwks"
	"example.com/rampart/platform/policy"
	"example.com/rampart/platform/ratelimit"
	"example.com/rampart/platform/telemetry"
	"example.com/rampart/platform/telemetry/telemetrytest"
	"example.com/rampart/platform/txntoken"
)

const (
	trustDomain = "rampart.local"
	audience    = "rampart"
	// keyPoll is how often the key files of a fixture are read again.
	keyPoll = 20 * time.Millisecond
)

var gatewayID = spiffeid.RequireFromSegments(spiffeid.RequireTrustDomainFromString(trustDomain),
	"gateway")

// fixture is the gateway's public server, assembled by the same code as in
// production, served on 127.0.0.1 in front of fake workloads that record
// every call they get, with an issuer of access tokens whose keys come
// from a key file, and transaction-token keys from another.
type fixture struct {
	url     string
	handler http.Handler // the public server's handler, for calls without a network
	cfg     Config
	logs    *telemetrytest.Logs
	up      *upstream
	issuer  *issuerServer
	// txnKeysPath is the gateway's transaction-token key file; txnKeys
	// is what the gateway loaded from it.
	txnKeysPath string
	txnKeys     *jwks.KeySet
	revoked     *revocation.List
	// internalURL serves the gateway's internal handler, the JWKS of its
	// transaction tokens, without the mutual TLS of production.
	internalURL string
}

// options change a fixture's configuration before it starts.
type options struct {
	cfg func(*Config)
	// revocations replaces the fixture's own list, loaded at once.
	revocations proxy.Revocations
	// issuer replaces the fixture's own issuer, to share one between
	// gateways.
	issuer *issuerServer
	// keyPoll is how often the key files of the gateway and of its own
	// issuer are read again; zero means the fixtures' quick default.
	keyPoll time.Duration
}

func newFixture(t testing.TB, opts options) *fixture {
	t.Helper()
	f := &fixture{logs: &telemetrytest.Logs{}, cfg: DefaultConfig()}
	f.cfg.UserBurst, f.cfg.IPBurst = 1000, 1000
	tel, err := telemetry.New(t.Context(), telemetry.Config{
		Service: "gateway", LogOutput: f.logs, DisableOTLP: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	td := gatewayID.TrustDomain()
	set, err := policy.Load(td, protoregistry.GlobalFiles)
	if err != nil {
		t.Fatal(err)
	}

	// The issuer of access tokens, and the gateway's verifier of them.
	if opts.keyPoll == 0 {
		opts.keyPoll = keyPoll
	}
	f.issuer = opts.issuer
	if f.issuer == nil {
		f.issuer = newIssuerServer(t, opts.keyPoll)
	}
	f.cfg.Issuer = f.issuer.url
	f.cfg.Audience = audience
	if opts.cfg != nil {
		opts.cfg(&f.cfg)
	}
	verifier, err := accessVerifier(t.Context(), f.cfg, tel.Logger)
	if err != nil {
		t.Fatal(err)
	}

	// Transaction tokens.
	f.txnKeysPath = filepath.Join(t.TempDir(), "gateway-txn.jwks")
	writeKeys(t, f.txnKeysPath, newKey(t, jose.ES256))
	f.txnKeys = loadKeys(t, f.txnKeysPath, opts.keyPoll)
	minter, err := txntoken.NewMinter(txntoken.MinterConfig{
		Signer: f.txnKeys, TrustDomain: trustDomain, Workload: gatewayID.String(),
		Issuer: gatewayID.String(), Lifetime: f.cfg.TxnTokenTTL,
	})
	if err != nil {
		t.Fatal(err)
	}
	internal := httptest.NewServer(internalHandler(f.txnKeys))
	t.Cleanup(internal.Close)
	f.internalURL = internal.URL

	// The workloads behind the gateway, over mutual TLS.
	ca, err := devpki.NewCA(td)
	if err != nil {
		t.Fatal(err)
	}
	f.up = &upstream{}
	upstreams := map[string]grpc.ClientConnInterface{}
	for _, name := range []string{"user", "order", "payment"} {
		addr := f.up.serve(t, svidSource(t, ca, name))
		id := spiffeid.RequireFromSegments(td, name)
		conn, err := grpcclient.Dial(addr, id, grpcclient.Config{
			Identity: svidSource(t, ca, "gateway"), Telemetry: tel,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		upstreams[name] = conn
	}

	f.revoked = revocation.New()
	f.revoked.MarkLoaded()
	var revocations proxy.Revocations = f.revoked
	if opts.revocations != nil {
		revocations = opts.revocations
	}
	srv, err := publicServer(f.cfg, proxy.Config{
		Policy:         set,
		Upstreams:      upstreams,
		AccessTokens:   verifier,
		Revocations:    revocations,
		Minter:         minter,
		UserLimits:     ratelimit.New(ratelimit.Config{Rate: f.cfg.UserRate, Burst: f.cfg.UserBurst}),
		IPLimits:       ratelimit.New(ratelimit.Config{Rate: f.cfg.IPRate, Burst: f.cfg.IPBurst}),
		Logger:         tel.Logger,
		TracerProvider: tel.TracerProvider,
		MeterProvider:  tel.MeterProvider,
		Propagator:     tel.Propagator,
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(nil)
	ts.Config = srv
	ts.Start()
	t.Cleanup(ts.Close)
	f.url, f.handler = ts.URL, srv.Handler
	return f
}

func svidSource(t testing.TB, ca *devpki.CA, name string) identity.Source {
	t.Helper()
	src, err := ca.Source(name, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func newKey(t testing.TB, alg jose.SignatureAlgorithm) jose.JSONWebKey {
	t.Helper()
	key, err := jwks.GenerateKey(alg)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// writeKeys replaces the key file at path with keys, the first active.
func writeKeys(t testing.TB, path string, keys ...jose.JSONWebKey) {
	t.Helper()
	if err := jwks.WriteKeySetFile(path, keys...); err != nil {
		t.Fatal(err)
	}
}

func loadKeys(t testing.TB, path string, poll time.Duration) *jwks.KeySet {
	t.Helper()
	keys, err := jwks.LoadKeySet(t.Context(), path, jwks.KeySetOptions{
		PollInterval: poll,
		OnError: func(err error) {
			// Once the test ends, its files go while the key set may
			// still be reading them.
			if t.Context().Err() == nil {
				t.Errorf("reloading %s: %v", path, err)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// issuerServer plays the user service's part as an issuer: a key file,
// reloaded when it changes, from which it signs access tokens and serves
// its JWKS, and a discovery document. It counts the fetches of its JWKS.
type issuerServer struct {
	url      string
	keysPath string
	keys     *jwks.KeySet
	// key is the private key the file first held, for hand-made tokens.
	key    jose.JSONWebKey
	tokens *accesstoken.Issuer
	hits   atomic.Int64
}

// newIssuerServer starts an issuer whose key file is read again every
// poll.
func newIssuerServer(t testing.TB, poll time.Duration) *issuerServer {
	t.Helper()
	s := &issuerServer{key: newKey(t, jose.ES256)}
	s.keysPath = filepath.Join(t.TempDir(), "user-access.jwks")
	writeKeys(t, s.keysPath, s.key)
	s.keys = loadKeys(t, s.keysPath, poll)

	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	s.url = srv.URL
	jwksHandler := s.keys.Handler()
	mux.HandleFunc("GET /jwks.json", func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		jwksHandler.ServeHTTP(w, r)
	})
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{
			"issuer": s.url, "jwks_uri": s.url + "/jwks.json",
		})
	})

	var err error
	s.tokens, err = accesstoken.NewIssuer(accesstoken.IssuerConfig{
		Issuer: s.url, Audience: audience, Signer: s.keys,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// scopes are those the user service grants.
var scopes = []string{"profile", "orders:read", "orders:write", "payments:read"}

// login issues an access token for a new user in a new session, as the
// user service does at login.
func (s *issuerServer) login(t testing.TB) (string, accesstoken.Claims) {
	t.Helper()
	raw, claims, err := s.tokens.Issue(accesstoken.Request{
		Subject: uuid.NewString(), SessionID: uuid.NewString(), Scopes: scopes,
	})
	if err != nil {
		t.Fatal(err)
	}
	return raw, claims
}

// upstream is a fake of every workload behind the gateway: it answers any
// method with what reply returns, an empty response when reply is nil or
// returns nil, and records each call with its metadata.
type upstream struct {
	mu    sync.Mutex
	calls []upstreamCall
	reply func(method string, req proto.Message) (proto.Message, error)
}

type upstreamCall struct {
	Method  string
	MD      metadata.MD
	Request proto.Message
}

// serve serves the fake as the workload of src, on 127.0.0.1.
func (u *upstream) serve(t testing.TB, src identity.Source) string {
	t.Helper()
	srv := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(identity.ServerTLSConfig(src))),
		grpc.UnknownServiceHandler(u.handle))
	var lc net.ListenConfig
	ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return ln.Addr().String()
}

func (u *upstream) handle(_ any, stream grpc.ServerStream) error {
	method, _ := grpc.MethodFromServerStream(stream)
	name := protoreflect.FullName(strings.ReplaceAll(strings.TrimPrefix(method, "/"), "/", "."))
	desc, err := protoregistry.GlobalFiles.FindDescriptorByName(name)
	if err != nil {
		return err
	}
	md := desc.(protoreflect.MethodDescriptor)
	reqType, err := protoregistry.GlobalTypes.FindMessageByName(md.Input().FullName())
	if err != nil {
		return err
	}
	req := reqType.New().Interface()
	if err := stream.RecvMsg(req); err != nil {
		return err
	}
	incoming, _ := metadata.FromIncomingContext(stream.Context())

	u.mu.Lock()
	u.calls = append(u.calls, upstreamCall{Method: method, MD: incoming.Copy(), Request: req})
	reply := u.reply
	u.mu.Unlock()

	var resp proto.Message
	if reply != nil {
		if resp, err = reply(method, req); err != nil {
			return err
		}
	}
	if resp == nil {
		respType, err := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
		if err != nil {
			return err
		}
		resp = respType.New().Interface()
	}
	return stream.SendMsg(resp)
}

func (u *upstream) setReply(reply func(method string, req proto.Message) (proto.Message, error)) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.reply = reply
}

func (u *upstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.calls)
}

func (u *upstream) last() upstreamCall {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.calls[len(u.calls)-1]
}

// answer is what the gateway answered to a call.
type answer struct {
	Status int
	Body   string
	Header http.Header
}

// call makes a Connect unary call of procedure with a JSON body; header
// is added to the request, and bearer, if not empty, is sent as its
// Authorization header.
func (f *fixture) call(t testing.TB, procedure, bearer, body string, header http.Header) answer {
	t.Helper()
	header = header.Clone()
	if header == nil {
		header = http.Header{}
	}
	if bearer != "" {
		header.Set("Authorization", "Bearer "+bearer)
	}
	return f.post(t, "/"+procedure, body, header)
}

// post posts body as JSON to path, which may hold a query, with header.
func (f *fixture) post(t testing.TB, path, body string, header http.Header) answer {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, f.url+path,
		strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	maps.Copy(req.Header, header)
	return send(t, req)
}

// send sends req and reads the whole answer.
func send(t testing.TB, req *http.Request) answer {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{Status: resp.StatusCode, Body: string(body), Header: resp.Header}
}

// logLine returns the gateway's log line of the call that a answered.
func (f *fixture) logLine(t testing.TB, a answer) map[string]any {
	t.Helper()
	traceID := a.Header.Get(proxy.TraceHeader)
	if traceID == "" {
		t.Fatal("no Trace-Id in the answer")
	}
	for _, line := range f.logs.Lines(t) {
		if line["msg"] == "call" && line["trace_id"] == traceID {
			return line
		}
	}
	t.Fatalf("no log line for trace %s", traceID)
	return nil
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
