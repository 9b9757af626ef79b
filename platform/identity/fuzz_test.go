package identity_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"testing"

	"example.com/rampart/platform/devpki"
	"example.com/rampart/platform/identity"
)

func leafDER(t testing.TB, creds *devpki.Credentials) []byte {
	t.Helper()
	return tlsCert(t, creds).Certificate[0]
}

// FuzzPeerIDFromTLS feeds arbitrary DER as a peer's certificate. Whatever
// is accepted must be a certificate with exactly one URI SAN, a spiffe://
// ID with a path, returned unchanged; anything else must fail with
// ErrNotSPIFFE.
func FuzzPeerIDFromTLS(f *testing.F) {
	ca := newCA(f)
	for _, uris := range [][]string{
		{clientID.String()},
		{},
		{clientID.String(), serverID.String()},
		{"https://rampart.test/client"},
		{"spiffe://rampart.test"},
		{"spiffe://rampart.test/a/../b"},
	} {
		f.Add(leafDER(f, issueTemplate(f, ca, leafTemplate(uris...))))
	}

	f.Fuzz(func(t *testing.T, der []byte) {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return
		}
		state := &tls.ConnectionState{
			HandshakeComplete: true,
			PeerCertificates:  []*x509.Certificate{cert},
		}
		id, err := identity.PeerIDFromTLS(state)
		if err != nil {
			if !errors.Is(err, identity.ErrNotSPIFFE) {
				t.Fatalf("error %v is not ErrNotSPIFFE", err)
			}
			return
		}
		if len(cert.URIs) != 1 {
			t.Fatalf("accepted %s from a certificate with %d URI SANs", id, len(cert.URIs))
		}
		if cert.URIs[0].Scheme != "spiffe" || id.Path() == "" || id.String() != cert.URIs[0].String() {
			t.Fatalf("accepted %s from URI SAN %s", id, cert.URIs[0])
		}
	})
}

// FuzzServerVerifyPeer feeds arbitrary certificate chains to the peer
// verification of ServerTLSConfig. Since only our CA's key can make a
// chain verify, anything accepted must be one of the valid SVIDs this
// test issued, byte for byte in its signed part.
func FuzzServerVerifyPeer(f *testing.F) {
	ca, otherCA := newCA(f), newCA(f)
	server, client := issue(f, ca, "server"), issue(f, ca, "client")
	valid := [][]byte{leafDER(f, server), leafDER(f, client)}
	caLeaf := leafTemplate(clientID.String())
	caLeaf.IsCA = true

	f.Add(valid[1], []byte(nil))
	f.Add(valid[1], ca.Certificate().Raw)
	f.Add(leafDER(f, issue(f, otherCA, "client")), []byte(nil))
	f.Add(leafDER(f, issue(f, otherCA, "client")), otherCA.Certificate().Raw)
	f.Add(leafDER(f, issueTemplate(f, ca, caLeaf)), []byte(nil))
	f.Add(leafDER(f, issueTemplate(f, ca, leafTemplate("spiffe://evil.test/client"))), []byte(nil))
	f.Add(leafDER(f, issueTemplate(f, ca, leafTemplate("spiffe://rampart.test"))), []byte(nil))
	f.Add(ca.Certificate().Raw, []byte(nil))

	cfg := identity.ServerTLSConfig(identity.NewStaticSource(svidOf(f, server), ca.Bundle()))
	if err := cfg.VerifyPeerCertificate([][]byte{valid[1]}, nil); err != nil {
		f.Fatalf("a valid SVID is refused, so the property below would never be checked: %v", err)
	}
	f.Fuzz(func(t *testing.T, leaf, intermediate []byte) {
		raw := [][]byte{leaf}
		if len(intermediate) > 0 {
			raw = append(raw, intermediate)
		}
		if err := cfg.VerifyPeerCertificate(raw, nil); err != nil {
			return
		}
		cert, err := x509.ParseCertificate(leaf)
		if err != nil {
			t.Fatalf("accepted a leaf that does not parse: %v", err)
		}
		for _, v := range valid {
			issued, err := x509.ParseCertificate(v)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(cert.RawTBSCertificate, issued.RawTBSCertificate) {
				return
			}
		}
		t.Fatalf("accepted a certificate this test never issued: %x", leaf)
	})
}
