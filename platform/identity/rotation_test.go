package identity_test

import (
	"crypto/tls"
	"testing"

	"example.com/rampart/platform/devpki"
	"example.com/rampart/platform/identity"
)

// TestRotationWithoutRestart rewrites the files of a running server and
// client, and checks that new handshakes use what is on disk now: new
// SVIDs on both ends, a second CA joining the bundle, then the first CA
// leaving it.
func TestRotationWithoutRestart(t *testing.T) {
	t.Parallel()
	p := newPKI(t, "server", "client")
	var serverEvents, clientEvents events
	serverSrc := newFileSource(t, p.files("server"), serverEvents.options())
	clientSrc := newFileSource(t, p.files("client"), clientEvents.options())
	serverCfg := identity.ServerTLSConfig(serverSrc)
	verifications := recordVerify(serverCfg)
	ts := startHTTPS(t, serverCfg)
	cfg := identity.ClientTLSConfig(clientSrc, serverID)

	// request makes one call and returns the serial numbers of the
	// certificates the client saw and the server saw.
	request := func(cfg *identityConfig) (server, client string) {
		t.Helper()
		body, cert, err := get(t, ts.addr, cfg.tls)
		if err != nil {
			t.Fatalf("request as %s: %v", cfg.name, err)
		}
		if body != cfg.name {
			t.Fatalf("handler saw peer %q, want %q", body, cfg.name)
		}
		return cert.SerialNumber.String(), ts.lastClientCert().SerialNumber.String()
	}
	a := &identityConfig{name: clientID.String(), tls: cfg}
	serverBefore, clientBefore := request(a)

	// New SVIDs on both ends, from the same CA.
	serverNext, clientNext := issue(t, p.ca, "server"), issue(t, p.ca, "client")
	writeCreds(t, p.files("server"), serverNext)
	writeCreds(t, p.files("client"), clientNext)
	waitForSVID(t, serverSrc, serverNext)
	waitForSVID(t, clientSrc, clientNext)
	serverAfter, clientAfter := request(a)
	if serverAfter == serverBefore || clientAfter == clientBefore {
		t.Fatal("new handshakes still present the old certificates")
	}
	if want := serial(t, serverSrc); serverAfter != want {
		t.Errorf("server presented %s, want the rotated %s", serverAfter, want)
	}
	if want := serial(t, clientSrc); clientAfter != want {
		t.Errorf("client presented %s, want the rotated %s", clientAfter, want)
	}

	// A client of a second CA is refused until that CA joins the bundle.
	ca2 := newCA(t)
	b := &identityConfig{
		name: "spiffe://rampart.test/batch",
		tls:  identity.ClientTLSConfig(staticSource(t, ca2, "batch", p.ca, ca2), serverID),
	}
	refused(t, ts, verifications, b)
	writeAtomic(t, p.files("server").Bundle, bundlePEM(p.ca, ca2))
	waitForBundle(t, serverSrc, p.ca, ca2)
	waitForBundle(t, clientSrc, p.ca, ca2)
	request(b)
	request(a)

	// The server moves to the second CA, then the first leaves the bundle:
	// a client still holding a certificate from it is refused.
	serverFromCA2 := issue(t, ca2, "server")
	writeCreds(t, p.files("server"), serverFromCA2)
	waitForSVID(t, serverSrc, serverFromCA2)
	writeAtomic(t, p.files("server").Bundle, ca2.BundlePEM())
	waitForBundle(t, serverSrc, ca2)
	waitForBundle(t, clientSrc, ca2)
	refused(t, ts, verifications, a)
	request(b)
}

// identityConfig is a client configuration and the SPIFFE ID it presents.
type identityConfig struct {
	name string
	tls  *tls.Config
}

// refused checks that the server's verification refuses a request with
// cfg and that the handler does not run.
func refused(t *testing.T, ts *testServer, rec *verifyRecord, cfg *identityConfig) {
	t.Helper()
	calls := ts.calls()
	verified, _ := rec.last()
	if _, _, err := get(t, ts.addr, cfg.tls); err == nil {
		t.Fatalf("request as %s succeeded, want it refused", cfg.name)
	}
	if n, err := rec.last(); n != verified+1 || err == nil {
		t.Errorf("server verification of %s: ran %d times, last error %v; want one refusal",
			cfg.name, n-verified, err)
	}
	if n := ts.calls(); n != calls {
		t.Errorf("handler ran for a refused request as %s", cfg.name)
	}
}

func waitForSVID(t *testing.T, src identity.Source, creds *devpki.Credentials) {
	t.Helper()
	want := svidOf(t, creds).Certificates[0].SerialNumber.String()
	eventually(t, "the rotated SVID", func() bool { return serial(t, src) == want })
}

func waitForBundle(t *testing.T, src identity.Source, cas ...*devpki.CA) {
	t.Helper()
	want := bundleOf(cas...)
	eventually(t, "the rotated bundle", func() bool {
		got, err := src.GetX509BundleForTrustDomain(td)
		return err == nil && got.Equal(want)
	})
}
