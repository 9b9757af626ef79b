// Package identity gives each workload its SPIFFE identity on the wire:
// mutual TLS 1.3 in which both ends present an X.509 SVID, verify the other
// against the trust bundle and name the peer by its SPIFFE ID.
//
// A peer is the single spiffe:// URI SAN of its leaf certificate, in our
// trust domain and with a path. Its common name and DNS names are never
// read. Credentials come from a [Source]: [FileSource] reloads them from
// disk, [WorkloadAPISource] receives them from the SPIFFE Workload API, and
// the TLS configurations built here read the source on every handshake, so
// rotated certificates and bundles take effect without a restart.
package identity

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// Errors returned when a peer or a credential cannot be accepted. Callers
// match them with errors.Is.
var (
	// ErrNoPeer means there is no peer that completed a TLS handshake with
	// a certificate: a plaintext connection, or no connection at all.
	ErrNoPeer = errors.New("identity: no authenticated peer")
	// ErrNotSPIFFE means the peer's certificate does not carry exactly one
	// URI SAN holding a SPIFFE ID with a path.
	ErrNotSPIFFE = errors.New("identity: peer has no workload SPIFFE ID")
	// ErrForeignTrustDomain means the peer's SPIFFE ID is outside the trust
	// domain of our own SVID.
	ErrForeignTrustDomain = errors.New("identity: peer outside our trust domain")
	// ErrNoBundle means a source holds no trust bundle for the trust domain
	// asked for.
	ErrNoBundle = errors.New("identity: no trust bundle for trust domain")
	// ErrKeyUsage means the peer's certificate limits its extended key
	// usage to purposes that exclude the role it plays: a certificate
	// issued only to serve, presented by a client, or the reverse.
	ErrKeyUsage = errors.New("identity: certificate not issued for this role")
	// ErrNoSVID means a source holds no SVID.
	ErrNoSVID = errors.New("identity: no SVID")
)

// Source provides our X.509 SVID and the trust bundle that peers' SVIDs
// must chain to. Implementations must be safe for concurrent use, and
// should return the current credentials on every call rather than a copy
// taken once, so that TLS configurations built on them follow rotation.
type Source interface {
	x509svid.Source
	x509bundle.Source
}

// Files names the PEM files that hold a workload's credentials.
type Files struct {
	// Cert holds the SVID: the leaf certificate first, then any
	// intermediates, without the root.
	Cert string
	// Key holds the SVID's private key, PKCS#8 encoded.
	Key string
	// Bundle holds the CA certificates of our trust domain.
	Bundle string
}

// NewStaticSource returns a [Source] that always provides svid and, for
// the bundle's trust domain only, bundle. It suits tests and programs that
// manage rotation themselves.
func NewStaticSource(svid *x509svid.SVID, bundle *x509bundle.Bundle) Source {
	return staticSource{svid: svid, bundle: bundle}
}

type staticSource struct {
	svid   *x509svid.SVID
	bundle *x509bundle.Bundle
}

func (s staticSource) GetX509SVID() (*x509svid.SVID, error) {
	if s.svid == nil {
		return nil, ErrNoSVID
	}
	return s.svid, nil
}

func (s staticSource) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	if s.bundle == nil || s.bundle.TrustDomain() != td {
		return nil, fmt.Errorf("%w %q", ErrNoBundle, td.Name())
	}
	return s.bundle, nil
}

// PeerID returns the SPIFFE ID of the peer of a gRPC call, taken from the
// verified TLS connection it arrived on. It fails with [ErrNoPeer] when the
// call came without TLS or without a client certificate, and with
// [ErrNotSPIFFE] when the certificate names no workload.
func PeerID(ctx context.Context) (spiffeid.ID, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return spiffeid.ID{}, ErrNoPeer
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return spiffeid.ID{}, ErrNoPeer
	}
	return PeerIDFromTLS(&info.State)
}

// PeerIDFromTLS returns the SPIFFE ID of the peer of a TLS connection, such
// as an http.Request's TLS field. It reads the ID from the leaf certificate
// alone and does not verify it again: use it on connections whose
// configuration came from [ServerTLSConfig] or [ClientTLSConfig]. It fails
// with [ErrNoPeer] for a nil state, an unfinished handshake or a peer
// without a certificate, and with [ErrNotSPIFFE] unless the leaf carries
// exactly one URI SAN that is a SPIFFE ID with a path.
func PeerIDFromTLS(state *tls.ConnectionState) (spiffeid.ID, error) {
	if state == nil || !state.HandshakeComplete || len(state.PeerCertificates) == 0 {
		return spiffeid.ID{}, ErrNoPeer
	}
	id, err := x509svid.IDFromCert(state.PeerCertificates[0])
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("%w: %w", ErrNotSPIFFE, err)
	}
	if id.Path() == "" {
		return spiffeid.ID{}, fmt.Errorf("%w: %s names a trust domain, not a workload",
			ErrNotSPIFFE, id)
	}
	return id, nil
}
