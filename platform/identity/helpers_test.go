package identity_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"example.com/rampart/platform/devpki"
	"example.com/rampart/platform/identity"
)

var (
	td       = spiffeid.RequireTrustDomainFromString("rampart.test")
	serverID = spiffeid.RequireFromPath(td, "/server")
	clientID = spiffeid.RequireFromPath(td, "/client")
)

func newCA(t testing.TB) *devpki.CA {
	t.Helper()
	ca, err := devpki.NewCA(td)
	if err != nil {
		t.Fatalf("NewCA: %v", err)
	}
	return ca
}

func issue(t testing.TB, ca *devpki.CA, name string) *devpki.Credentials {
	t.Helper()
	creds, err := ca.Issue(name, time.Hour)
	if err != nil {
		t.Fatalf("Issue(%q): %v", name, err)
	}
	return creds
}

func issueTemplate(t testing.TB, ca *devpki.CA, tmpl *x509.Certificate) *devpki.Credentials {
	t.Helper()
	creds, err := ca.IssueTemplate(tmpl)
	if err != nil {
		t.Fatalf("IssueTemplate: %v", err)
	}
	return creds
}

func svidOf(t testing.TB, creds *devpki.Credentials) *x509svid.SVID {
	t.Helper()
	svid, err := creds.SVID()
	if err != nil {
		t.Fatal(err)
	}
	return svid
}

// staticSource returns a source holding a fresh SVID for name from ca and
// a bundle of the given CAs (ca alone when none are given).
func staticSource(t testing.TB, ca *devpki.CA, name string, trusted ...*devpki.CA) identity.Source {
	t.Helper()
	if len(trusted) == 0 {
		trusted = []*devpki.CA{ca}
	}
	return identity.NewStaticSource(svidOf(t, issue(t, ca, name)), bundleOf(trusted...))
}

func bundleOf(cas ...*devpki.CA) *x509bundle.Bundle {
	bundle := x509bundle.New(td)
	for _, ca := range cas {
		bundle.AddX509Authority(ca.Certificate())
	}
	return bundle
}

func bundlePEM(cas ...*devpki.CA) []byte {
	var out []byte
	for _, ca := range cas {
		out = append(out, ca.BundlePEM()...)
	}
	return out
}

func tlsCert(t testing.TB, creds *devpki.Credentials) *tls.Certificate {
	t.Helper()
	cert, err := creds.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	return &cert
}

// testServer is an HTTPS server on 127.0.0.1 whose handler records the
// peer of every request it runs.
type testServer struct {
	addr string

	mu    sync.Mutex
	peers []string // SPIFFE IDs, or the PeerIDFromTLS error
	certs []*x509.Certificate
}

func startHTTPS(t testing.TB, cfg *tls.Config) *testServer {
	t.Helper()
	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{addr: ln.Addr().String()}
	srv := &http.Server{
		Handler:           http.HandlerFunc(ts.serve),
		TLSConfig:         cfg,
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	// ServeTLS returns http.ErrServerClosed once the cleanup closes the server; any other
	// failure shows in the test as requests that fail.
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { srv.Close() })
	return ts
}

func (ts *testServer) serve(w http.ResponseWriter, r *http.Request) {
	id, err := identity.PeerIDFromTLS(r.TLS)
	peer := id.String()
	if err != nil {
		peer = "error: " + err.Error()
	}
	ts.mu.Lock()
	ts.peers = append(ts.peers, peer)
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		ts.certs = append(ts.certs, r.TLS.PeerCertificates[0])
	}
	ts.mu.Unlock()
	fmt.Fprint(w, peer) //nolint:gosec // G705: plain text read by the test, never rendered.
}

// calls returns how many requests the handler has run.
func (ts *testServer) calls() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return len(ts.peers)
}

func (ts *testServer) lastClientCert() *x509.Certificate {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if len(ts.certs) == 0 {
		return nil
	}
	return ts.certs[len(ts.certs)-1]
}

// get makes one request on a new connection and returns the body and the
// server's leaf certificate.
func get(t testing.TB, addr string, cfg *tls.Config) (string, *x509.Certificate, error) {
	t.Helper()
	transport := &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: 5 * time.Second}

	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "https://"+addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return "", nil, fmt.Errorf("status %s: %s", resp.Status, body)
	}
	return string(body), resp.TLS.PeerCertificates[0], nil
}

// withClientCert returns cfg changed to present cert instead of the
// source's SVID.
func withClientCert(cfg *tls.Config, cert *tls.Certificate) *tls.Config {
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return cert, nil
	}
	return cfg
}

// eventually fails the test unless cond becomes true within five seconds.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// writeAtomic replaces path with data the way a careful writer does, so
// that a reader never sees a partial file.
func writeAtomic(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// writeCreds writes an SVID's key and certificate to files.
func writeCreds(t testing.TB, files identity.Files, creds *devpki.Credentials) {
	t.Helper()
	writeAtomic(t, files.Key, creds.KeyPEM)
	writeAtomic(t, files.Cert, creds.CertPEM)
}

func serial(t testing.TB, src identity.Source) string {
	t.Helper()
	svid, err := src.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	return svid.Certificates[0].SerialNumber.String()
}
