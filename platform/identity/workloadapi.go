package identity

import (
	"context"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// EndpointSocketEnv is the environment variable that tells workloads
// where the SPIFFE Workload API listens, such as
// "unix:///run/spire/agent.sock".
const EndpointSocketEnv = "SPIFFE_ENDPOINT_SOCKET"

// WorkloadAPIOptions tunes a [WorkloadAPISource]. The zero value works
// when [EndpointSocketEnv] is set.
type WorkloadAPIOptions struct {
	// Addr is the Workload API endpoint, "unix:///path/to/socket"; empty
	// means the value of [EndpointSocketEnv].
	Addr string
	// ID, when set, is the workload's own SPIFFE ID. Of the SVIDs the
	// Workload API offers, the source serves the one with this ID, and
	// none at all while it offers no such SVID. When zero, the source
	// serves the first SVID offered.
	ID spiffeid.ID
	// OnError, when set, is called with each failure to reach or read the
	// Workload API. The source keeps trying by itself and meanwhile serves
	// the last credentials it received. It must not block for long.
	OnError func(error)
}

// WorkloadAPISource is a [Source] fed by the SPIFFE Workload API, which a
// SPIRE agent serves on a Unix socket (in Kubernetes, mounted into the pod
// by the SPIFFE CSI driver).
// The API pushes renewed SVIDs and bundles before the old ones expire, and
// TLS configurations built on the source use them from the next handshake
// on. It serves only the bundle of its own SVID's trust domain, as
// [FileSource] does. It is safe for concurrent use.
type WorkloadAPISource struct {
	x509 *workloadapi.X509Source
}

// NewWorkloadAPISource connects to the Workload API and waits, for as long
// as ctx allows, for the first SVID and bundle; ctx plays no part after
// that, and the source follows updates until [WorkloadAPISource.Close].
// It fails if no SVID arrives in time, if none has opts.ID, or if the SVID
// does not chain to the bundle of its trust domain.
func NewWorkloadAPISource(
	ctx context.Context, opts WorkloadAPIOptions,
) (*WorkloadAPISource, error) {
	var clientOpts []workloadapi.ClientOption
	if opts.Addr != "" {
		clientOpts = append(clientOpts, workloadapi.WithAddr(opts.Addr))
	}
	if opts.OnError != nil {
		clientOpts = append(clientOpts, workloadapi.WithLogger(errorLogger(opts.OnError)))
	}
	sourceOpts := []workloadapi.X509SourceOption{workloadapi.WithClientOptions(clientOpts...)}
	if !opts.ID.IsZero() {
		sourceOpts = append(sourceOpts, workloadapi.WithDefaultX509SVIDPicker(pickID(opts.ID)))
	}
	x509, err := workloadapi.NewX509Source(ctx, sourceOpts...)
	if err != nil {
		return nil, fmt.Errorf("connecting to the SPIFFE Workload API: %w", err)
	}

	s := &WorkloadAPISource{x509: x509}
	if err := s.check(); err != nil {
		_ = x509.Close()
		return nil, fmt.Errorf("loading workload credentials from the SPIFFE Workload API: %w", err)
	}
	return s, nil
}

// check verifies the credentials first received, as peers will.
func (s *WorkloadAPISource) check() error {
	svid, err := s.GetX509SVID()
	if err != nil {
		return err
	}
	bundle, err := s.GetX509BundleForTrustDomain(svid.ID.TrustDomain())
	if err != nil {
		return err
	}
	return verifyOwn(svid, bundle)
}

// GetX509SVID returns the SVID the Workload API provides now. It fails
// with [ErrNoSVID] while there is none with the source's ID, and after
// Close. Callers must not modify it.
func (s *WorkloadAPISource) GetX509SVID() (*x509svid.SVID, error) {
	svid, err := s.x509.GetX509SVID()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoSVID, err)
	}
	return svid, nil
}

// GetX509BundleForTrustDomain returns the bundle the Workload API provides
// now for td, which must be the trust domain of the current SVID; for any
// other it fails with [ErrNoBundle], federated bundles included.
func (s *WorkloadAPISource) GetX509BundleForTrustDomain(
	td spiffeid.TrustDomain,
) (*x509bundle.Bundle, error) {
	svid, err := s.GetX509SVID()
	if err != nil {
		return nil, err
	}
	if own := svid.ID.TrustDomain(); td != own {
		return nil, fmt.Errorf("%w %q", ErrNoBundle, td.Name())
	}
	bundle, err := s.x509.GetX509BundleForTrustDomain(td)
	if err != nil {
		return nil, fmt.Errorf("%w %q: %w", ErrNoBundle, td.Name(), err)
	}
	return bundle, nil
}

// Close drops the connection to the Workload API. Afterwards every call
// fails, so that nothing keeps using credentials that no longer renew.
func (s *WorkloadAPISource) Close() error {
	return s.x509.Close()
}

// pickID selects the SVID with id, or none.
func pickID(id spiffeid.ID) func([]*x509svid.SVID) *x509svid.SVID {
	return func(svids []*x509svid.SVID) *x509svid.SVID {
		for _, svid := range svids {
			if svid.ID == id {
				return svid
			}
		}
		return nil
	}
}

// errorLogger passes the Workload API client's warnings and errors to a
// callback and drops the rest.
type errorLogger func(error)

func (l errorLogger) Debugf(string, ...any) {}
func (l errorLogger) Infof(string, ...any)  {}
func (l errorLogger) Warnf(format string, args ...any) {
	l(fmt.Errorf("SPIFFE Workload API: "+format, args...))
}
func (l errorLogger) Errorf(format string, args ...any) {
	l(fmt.Errorf("SPIFFE Workload API: "+format, args...))
}
