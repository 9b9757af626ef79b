package identity

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"slices"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
)

// ServerTLSConfig returns the TLS configuration of a server whose clients
// are workloads: TLS 1.3 only, presenting our SVID and requiring one from
// the client. A client is accepted when its chain verifies against the
// current trust bundle and its leaf is a valid SVID (one spiffe:// URI SAN
// with a path, not a CA) in the trust domain of our own SVID; which
// workload may call what is decided later, by the policy layer. Both the
// certificate presented and the bundle are read from src on every
// handshake, so rotation needs no restart.
//
// Session tickets are off: every connection runs a full handshake, so a
// client whose CA has left the bundle cannot resume its way back in.
//
// The result serves gRPC (credentials.NewTLS), net/http (http.Server's
// TLSConfig) and an embedded NATS server (server.Options.TLSConfig) alike.
// Callers may set NextProtos but must not add Certificates, which the
// standard library would prefer over our SVID for clients that send no
// server name.
func ServerTLSConfig(src Source) *tls.Config {
	cfg := tlsconfig.MTLSServerConfig(src, src,
		requireUsage(x509.ExtKeyUsageClientAuth, authorizeOwnTrustDomain(src)))
	cfg.MinVersion = tls.VersionTLS13
	cfg.SessionTicketsDisabled = true
	return cfg
}

// ClientTLSConfig returns the TLS configuration of a client that calls the
// workload server: TLS 1.3 only, presenting our SVID and accepting the
// server only when its chain verifies against the current trust bundle and
// its SPIFFE ID is exactly server. Host names play no part: the check of
// the SPIFFE ID replaces the standard library's host name verification,
// which is why InsecureSkipVerify is set. Credentials are read from src on
// every handshake. The result serves gRPC, net/http clients and nats.go
// (nats.Secure).
func ClientTLSConfig(src Source, server spiffeid.ID) *tls.Config {
	cfg := tlsconfig.MTLSClientConfig(src, src,
		requireUsage(x509.ExtKeyUsageServerAuth, tlsconfig.AuthorizeID(server)))
	cfg.MinVersion = tls.VersionTLS13
	return cfg
}

// requireUsage refuses a peer whose leaf lists extended key usages that do
// not include usage, the role the peer plays, then asks next. A leaf
// without the extension may play either role, as the standard library's
// verification has it; go-spiffe's does not look at the extension.
func requireUsage(usage x509.ExtKeyUsage, next tlsconfig.Authorizer) tlsconfig.Authorizer {
	return func(id spiffeid.ID, chains [][]*x509.Certificate) error {
		if len(chains) == 0 || len(chains[0]) == 0 {
			return fmt.Errorf("%w: no verified chain", ErrNotSPIFFE)
		}
		leaf := chains[0][0]
		restricted := len(leaf.ExtKeyUsage) > 0 || len(leaf.UnknownExtKeyUsage) > 0
		if restricted && !slices.Contains(leaf.ExtKeyUsage, usage) &&
			!slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageAny) {
			return fmt.Errorf("%w: %s", ErrKeyUsage, id)
		}
		return next(id, chains)
	}
}

// authorizeOwnTrustDomain accepts a verified peer whose SPIFFE ID has a
// path and lies in the trust domain of the SVID that src holds at the time
// of the handshake. Verification by go-spiffe alone would accept an ID
// from any trust domain src has a bundle for, and an ID without a path.
func authorizeOwnTrustDomain(src Source) tlsconfig.Authorizer {
	return func(id spiffeid.ID, _ [][]*x509.Certificate) error {
		own, err := src.GetX509SVID()
		if err != nil {
			return fmt.Errorf("reading own SVID: %w", err)
		}
		td := own.ID.TrustDomain()
		switch {
		case !id.MemberOf(td):
			return fmt.Errorf("%w: %s is not in %q", ErrForeignTrustDomain, id, td.Name())
		case id.Path() == "":
			return fmt.Errorf("%w: %s names a trust domain, not a workload", ErrNotSPIFFE, id)
		}
		return nil
	}
}
