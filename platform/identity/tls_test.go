package identity_test

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"example.com/rampart/platform/devpki"
	"example.com/rampart/platform/identity"
)

// leafTemplate returns a template that IssueTemplate turns into a valid
// SVID for uris; cases change one thing in it.
func leafTemplate(uris ...string) *x509.Certificate {
	tmpl := &x509.Certificate{
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	for _, u := range uris {
		parsed, err := url.Parse(u)
		if err != nil {
			panic(err)
		}
		tmpl.URIs = append(tmpl.URIs, parsed)
	}
	return tmpl
}

// selfSigned returns a certificate carrying id that no CA signed.
func selfSigned(t *testing.T, id string) *tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := leafTemplate(id)
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Minute), time.Now().Add(time.Hour)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// recordVerify wraps the peer verification of cfg so that the test can see
// whether it ran and what it decided.
type verifyRecord struct {
	mu   sync.Mutex
	ran  bool
	errs []error
}

func recordVerify(cfg *tls.Config) *verifyRecord {
	rec := &verifyRecord{}
	inner := cfg.VerifyPeerCertificate
	// Whether a resumed session could skip the check is what TestServerTLSConfigNeverResumes
	// tests; this wrapper only records the verdict of the config's own check.
	//nolint:gosec // G123: the wrapped config, under test, decides about resumption.
	cfg.VerifyPeerCertificate = func(raw [][]byte, chains [][]*x509.Certificate) error {
		err := inner(raw, chains)
		rec.mu.Lock()
		rec.ran = true
		rec.errs = append(rec.errs, err)
		rec.mu.Unlock()
		return err
	}
	return rec
}

// last returns how many verifications ran and what the last one returned.
func (r *verifyRecord) last() (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.errs) == 0 {
		return 0, nil
	}
	return len(r.errs), r.errs[len(r.errs)-1]
}

func (r *verifyRecord) result() (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ran, errors.Join(r.errs...)
}

func TestServerTLSConfigRefusesClients(t *testing.T) {
	t.Parallel()
	ca, otherCA := newCA(t), newCA(t)
	serverSrc := staticSource(t, ca, "server")
	clientSrc := staticSource(t, ca, "client")
	now := time.Now()

	expired := leafTemplate(clientID.String())
	expired.NotBefore, expired.NotAfter = now.Add(-2*time.Hour), now.Add(-time.Hour)
	notYetValid := leafTemplate(clientID.String())
	notYetValid.NotBefore, notYetValid.NotAfter = now.Add(time.Hour), now.Add(2*time.Hour)
	cnOnly := leafTemplate()
	cnOnly.Subject = pkix.Name{CommonName: clientID.String()}
	dnsOnly := leafTemplate()
	dnsOnly.DNSNames = []string{"client.rampart.test", "client"}
	caLeaf := leafTemplate(clientID.String())
	caLeaf.IsCA = true
	caLeaf.KeyUsage |= x509.KeyUsageCertSign
	certSignLeaf := leafTemplate(clientID.String())
	certSignLeaf.KeyUsage |= x509.KeyUsageCertSign
	serverOnly := leafTemplate(clientID.String())
	serverOnly.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}

	tests := []struct {
		name string
		cert *tls.Certificate
		// maxVersion, when set, is the highest TLS version the client
		// offers.
		maxVersion uint16
		// wantVerify says whether SVID verification must have run and
		// refused; the other cases fail earlier in the handshake.
		wantVerify bool
		wantErr    error // when set, the verification error must match it
	}{
		{name: "no certificate", cert: &tls.Certificate{}},
		{
			name:       "another CA with a plausible ID",
			cert:       tlsCert(t, issue(t, otherCA, "client")),
			wantVerify: true,
		},
		{
			name:       "self-signed with our ID",
			cert:       selfSigned(t, clientID.String()),
			wantVerify: true,
		},
		{
			name:       "our CA, another trust domain",
			cert:       tlsCert(t, issueTemplate(t, ca, leafTemplate("spiffe://evil.test/client"))),
			wantVerify: true,
			wantErr:    identity.ErrNoBundle,
		},
		{
			name:       "expired",
			cert:       tlsCert(t, issueTemplate(t, ca, expired)),
			wantVerify: true,
		},
		{
			name:       "not yet valid",
			cert:       tlsCert(t, issueTemplate(t, ca, notYetValid)),
			wantVerify: true,
		},
		{
			name:       "no URI SAN",
			cert:       tlsCert(t, issueTemplate(t, ca, leafTemplate())),
			wantVerify: true,
		},
		{
			name: "two URI SANs",
			cert: tlsCert(t, issueTemplate(t, ca,
				leafTemplate(clientID.String(), "spiffe://rampart.test/admin"))),
			wantVerify: true,
		},
		{
			name:       "non-SPIFFE URI",
			cert:       tlsCert(t, issueTemplate(t, ca, leafTemplate("https://rampart.test/client"))),
			wantVerify: true,
		},
		{
			name:       "SPIFFE ID without a path",
			cert:       tlsCert(t, issueTemplate(t, ca, leafTemplate("spiffe://rampart.test"))),
			wantVerify: true,
			wantErr:    identity.ErrNotSPIFFE,
		},
		{
			name:       "identity only in the common name",
			cert:       tlsCert(t, issueTemplate(t, ca, cnOnly)),
			wantVerify: true,
		},
		{
			name:       "identity only in DNS SANs",
			cert:       tlsCert(t, issueTemplate(t, ca, dnsOnly)),
			wantVerify: true,
		},
		{
			name:       "leaf that is a CA",
			cert:       tlsCert(t, issueTemplate(t, ca, caLeaf)),
			wantVerify: true,
		},
		{
			name:       "leaf that may sign certificates",
			cert:       tlsCert(t, issueTemplate(t, ca, certSignLeaf)),
			wantVerify: true,
		},
		{
			name:       "leaf issued only to serve",
			cert:       tlsCert(t, issueTemplate(t, ca, serverOnly)),
			wantVerify: true,
			wantErr:    identity.ErrKeyUsage,
		},
		{
			// The root itself, with its key: it chains to the bundle, being
			// in it, but a CA is no workload.
			name:       "the CA's own certificate",
			cert:       caKeyPair(t, ca),
			wantVerify: true,
		},
		{
			name:       "TLS 1.2 client",
			cert:       tlsCert(t, issue(t, ca, "client")),
			maxVersion: tls.VersionTLS12,
		},
		{
			name:       "TLS 1.1 client",
			cert:       tlsCert(t, issue(t, ca, "client")),
			maxVersion: tls.VersionTLS11,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			serverCfg := identity.ServerTLSConfig(serverSrc)
			rec := recordVerify(serverCfg)
			ts := startHTTPS(t, serverCfg)

			clientCfg := withClientCert(identity.ClientTLSConfig(clientSrc, serverID), tt.cert)
			if tt.maxVersion != 0 {
				clientCfg.MinVersion, clientCfg.MaxVersion = tls.VersionTLS10, tt.maxVersion
			}
			if body, _, err := get(t, ts.addr, clientCfg); err == nil {
				t.Fatalf("request succeeded as %q, want the handshake refused", body)
			}
			if n := ts.calls(); n != 0 {
				t.Errorf("handler ran %d times, want never", n)
			}
			ran, err := rec.result()
			if ran != tt.wantVerify {
				t.Errorf("SVID verification ran = %v, want %v", ran, tt.wantVerify)
			}
			if tt.wantVerify && err == nil {
				t.Error("SVID verification accepted the certificate")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("verification error = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// caKeyPair returns ca's own certificate and key, as a client would
// present them after stealing them.
func caKeyPair(t *testing.T, ca *devpki.CA) *tls.Certificate {
	t.Helper()
	dir := t.TempDir()
	if err := ca.Save(dir); err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	return &pair
}

func TestServerTLSConfigAcceptsAnyWorkloadOfTrustDomain(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	ts := startHTTPS(t, identity.ServerTLSConfig(staticSource(t, ca, "server")))

	for _, name := range []string{"client", "team/batch", "server"} {
		cfg := identity.ClientTLSConfig(staticSource(t, ca, name), serverID)
		body, _, err := get(t, ts.addr, cfg)
		if err != nil {
			t.Fatalf("request as %s: %v", name, err)
		}
		if want := "spiffe://rampart.test/" + name; body != want {
			t.Errorf("handler saw peer %q, want %q", body, want)
		}
	}
}

// federatedSource trusts one CA for every trust domain, as a source that
// holds bundles of federated trust domains may.
type federatedSource struct {
	identity.Source
	ca *devpki.CA
}

func (s federatedSource) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	return x509bundle.FromX509Authorities(td, []*x509.Certificate{s.ca.Certificate()}), nil
}

func TestServerTLSConfigRefusesForeignTrustDomainEvenWithItsBundle(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	src := federatedSource{Source: staticSource(t, ca, "server"), ca: ca}
	cfg := identity.ServerTLSConfig(src)
	rec := recordVerify(cfg)
	ts := startHTTPS(t, cfg)

	foreign := tlsCert(t, issueTemplate(t, ca, leafTemplate("spiffe://partner.test/client")))
	clientCfg := withClientCert(identity.ClientTLSConfig(src, serverID), foreign)
	if _, _, err := get(t, ts.addr, clientCfg); err == nil {
		t.Fatal("a workload of another trust domain was accepted")
	}
	if _, err := rec.result(); !errors.Is(err, identity.ErrForeignTrustDomain) {
		t.Errorf("verification error = %v, want ErrForeignTrustDomain", err)
	}
	if n := ts.calls(); n != 0 {
		t.Errorf("handler ran %d times, want never", n)
	}
}

func TestServerTLSConfigRefusesPlaintext(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	ts := startHTTPS(t, identity.ServerTLSConfig(staticSource(t, ca, "server")))

	dialer := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := dialer.DialContext(t.Context(), "tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(conn, "GET / HTTP/1.1\r\nHost: server\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("plaintext request got %s", resp.Status)
		}
	}
	if n := ts.calls(); n != 0 {
		t.Errorf("handler ran %d times for a plaintext request, want never", n)
	}
}

func TestServerTLSConfigNeverResumes(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	cfg := identity.ServerTLSConfig(staticSource(t, ca, "server"))
	if cfg.MinVersion != tls.VersionTLS13 || !cfg.SessionTicketsDisabled {
		t.Errorf("MinVersion = %x, SessionTicketsDisabled = %v; want TLS 1.3 and true",
			cfg.MinVersion, cfg.SessionTicketsDisabled)
	}
	ts := startHTTPS(t, cfg)

	clientCfg := identity.ClientTLSConfig(staticSource(t, ca, "client"), serverID)
	clientCfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	dialer := &tls.Dialer{Config: clientCfg}
	for i := range 3 {
		netConn, err := dialer.DialContext(t.Context(), "tcp", ts.addr)
		if err != nil {
			t.Fatalf("handshake %d: %v", i, err)
		}
		conn, ok := netConn.(*tls.Conn)
		if !ok {
			t.Fatalf("handshake %d: got a %T, want a *tls.Conn", i, netConn)
		}
		// Reading a response makes the client take in any session ticket
		// the server sent after the handshake.
		if err := conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
			t.Fatal(err)
		}
		fmt.Fprint(conn, "GET / HTTP/1.1\r\nHost: server\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		resp.Body.Close()
		resumed := conn.ConnectionState().DidResume
		conn.Close()
		if resumed {
			t.Fatalf("handshake %d resumed a session", i)
		}
	}
}

func TestClientTLSConfigRefusesServers(t *testing.T) {
	t.Parallel()
	ca, otherCA := newCA(t), newCA(t)
	clientSrc := staticSource(t, ca, "client")
	expired := leafTemplate(serverID.String())
	expired.NotBefore, expired.NotAfter = time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour)
	dnsOnly := leafTemplate()
	dnsOnly.DNSNames = []string{"server", "localhost"}

	tests := []struct {
		name string
		cert *tls.Certificate
	}{
		{"another workload", tlsCert(t, issue(t, ca, "impostor"))},
		{"another CA with the expected ID", tlsCert(t, issue(t, otherCA, "server"))},
		{"self-signed with the expected ID", selfSigned(t, serverID.String())},
		{"expired", tlsCert(t, issueTemplate(t, ca, expired))},
		{"host names only", tlsCert(t, issueTemplate(t, ca, dnsOnly))},
		{"same path, another trust domain", tlsCert(t, issueTemplate(t, ca,
			leafTemplate("spiffe://evil.test/server")))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			serverCfg := identity.ServerTLSConfig(staticSource(t, ca, "server"))
			serverCfg.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
				return tt.cert, nil
			}
			ts := startHTTPS(t, serverCfg)

			clientCfg := identity.ClientTLSConfig(clientSrc, serverID)
			rec := recordVerify(clientCfg)
			if body, _, err := get(t, ts.addr, clientCfg); err == nil {
				t.Fatalf("request succeeded with %q, want the server refused", body)
			}
			if ran, err := rec.result(); !ran || err == nil {
				t.Errorf("server verification ran = %v with error %v, want a refusal", ran, err)
			}
			if n := ts.calls(); n != 0 {
				t.Errorf("handler ran %d times, want never", n)
			}
		})
	}
}

func TestClientTLSConfigRefusesTLS12Server(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	//nolint:gosec // G402: the test proves that a TLS 1.2 server is refused.
	ts := startHTTPS(t, &tls.Config{
		MaxVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{*tlsCert(t, issue(t, ca, "server"))},
	})

	cfg := identity.ClientTLSConfig(staticSource(t, ca, "client"), serverID)
	_, _, err := get(t, ts.addr, cfg)
	if err == nil || !strings.Contains(err.Error(), "protocol version") {
		t.Errorf("request to a TLS 1.2 server: error %v, want a protocol version failure", err)
	}
	if n := ts.calls(); n != 0 {
		t.Errorf("handler ran %d times, want never", n)
	}
}

func TestTLSConfigsFollowTheSource(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	server := &swappableSource{}
	server.set(staticSource(t, ca, "server"))
	ts := startHTTPS(t, identity.ServerTLSConfig(server))
	client := &swappableSource{}
	client.set(staticSource(t, ca, "client"))
	cfg := identity.ClientTLSConfig(client, serverID)

	var seenServer, seenClient []string
	for range 2 {
		_, cert, err := get(t, ts.addr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		seenServer = append(seenServer, cert.SerialNumber.String())
		seenClient = append(seenClient, ts.lastClientCert().SerialNumber.String())
		server.set(staticSource(t, ca, "server"))
		client.set(staticSource(t, ca, "client"))
	}
	if seenServer[0] == seenServer[1] || seenClient[0] == seenClient[1] {
		t.Errorf("server certificates %v, client certificates %v: want each to change",
			seenServer, seenClient)
	}
}

// swappableSource delegates to a source that the test can replace.
type swappableSource struct {
	mu  sync.Mutex
	src identity.Source
}

func (s *swappableSource) set(src identity.Source) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.src = src
}

func (s *swappableSource) get() identity.Source {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.src
}

func (s *swappableSource) GetX509SVID() (*x509svid.SVID, error) {
	return s.get().GetX509SVID()
}

func (s *swappableSource) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	return s.get().GetX509BundleForTrustDomain(td)
}
