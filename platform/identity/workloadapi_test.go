package identity_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"example.com/rampart/platform/identity"
	"example.com/rampart/platform/identity/identitytest"
)

// startAPI starts a Workload API server that serves svids with a bundle of
// the given CAs.
func startAPI(
	t *testing.T, bundle *x509bundle.Bundle, svids ...*x509svid.SVID,
) *identitytest.WorkloadAPI {
	t.Helper()
	api := identitytest.StartWorkloadAPI(t)
	set(t, api, bundle, svids...)
	return api
}

func set(
	t *testing.T, api *identitytest.WorkloadAPI, bundle *x509bundle.Bundle, svids ...*x509svid.SVID,
) {
	t.Helper()
	if err := api.Set(bundle, svids...); err != nil {
		t.Fatal(err)
	}
}

func newAPISource(t *testing.T, opts identity.WorkloadAPIOptions) *identity.WorkloadAPISource {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	src, err := identity.NewWorkloadAPISource(ctx, opts)
	if err != nil {
		t.Fatalf("NewWorkloadAPISource: %v", err)
	}
	t.Cleanup(func() { src.Close() })
	return src
}

func serialOf(svid *x509svid.SVID) string { return svid.Certificates[0].SerialNumber.String() }

// TestWorkloadAPISourceFollowsRotation serves TLS from credentials that
// the Workload API pushes while it rotates them: a renewed SVID, a second
// CA joining the bundle, an SVID from that CA, and the first CA leaving.
func TestWorkloadAPISourceFollowsRotation(t *testing.T) {
	t.Parallel()
	ca, ca2 := newCA(t), newCA(t)
	first := svidOf(t, issue(t, ca, "server"))
	api := startAPI(t, bundleOf(ca), first)
	src := newAPISource(t, identity.WorkloadAPIOptions{Addr: api.Addr(), ID: serverID})
	serverCfg := identity.ServerTLSConfig(src)
	verifications := recordVerify(serverCfg)
	ts := startHTTPS(t, serverCfg)

	fromCA := &identityConfig{name: clientID.String(),
		tls: identity.ClientTLSConfig(staticSource(t, ca, "client", ca, ca2), serverID)}
	fromCA2 := &identityConfig{name: "spiffe://rampart.test/batch",
		tls: identity.ClientTLSConfig(staticSource(t, ca2, "batch", ca, ca2), serverID)}
	// request makes one call and returns the serial number of the
	// certificate the server presented.
	request := func(cfg *identityConfig) string {
		t.Helper()
		body, cert, err := get(t, ts.addr, cfg.tls)
		if err != nil {
			t.Fatalf("request as %s: %v", cfg.name, err)
		}
		if body != cfg.name {
			t.Fatalf("handler saw peer %q, want %q", body, cfg.name)
		}
		return cert.SerialNumber.String()
	}
	// serves waits until the source holds svid and bundle.
	serves := func(svid *x509svid.SVID, bundle *x509bundle.Bundle) {
		t.Helper()
		eventually(t, "the pushed credentials", func() bool {
			got, err := src.GetX509SVID()
			if err != nil || serialOf(got) != serialOf(svid) {
				return false
			}
			b, err := src.GetX509BundleForTrustDomain(td)
			return err == nil && b.Equal(bundle)
		})
	}

	if got := request(fromCA); got != serialOf(first) {
		t.Errorf("server presented %s, want %s", got, serialOf(first))
	}
	refused(t, ts, verifications, fromCA2)

	renewed := svidOf(t, issue(t, ca, "server"))
	set(t, api, bundleOf(ca), renewed)
	serves(renewed, bundleOf(ca))
	if got := request(fromCA); got != serialOf(renewed) {
		t.Errorf("server presented %s after renewal, want %s", got, serialOf(renewed))
	}

	set(t, api, bundleOf(ca, ca2), renewed)
	serves(renewed, bundleOf(ca, ca2))
	request(fromCA2)

	fromSecond := svidOf(t, issue(t, ca2, "server"))
	set(t, api, bundleOf(ca, ca2), fromSecond)
	serves(fromSecond, bundleOf(ca, ca2))
	request(fromCA)

	set(t, api, bundleOf(ca2), fromSecond)
	serves(fromSecond, bundleOf(ca2))
	refused(t, ts, verifications, fromCA)
	if got := request(fromCA2); got != serialOf(fromSecond) {
		t.Errorf("server presented %s, want %s", got, serialOf(fromSecond))
	}
}

func TestWorkloadAPISourcePicksItsOwnID(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	client, server := svidOf(t, issue(t, ca, "client")), svidOf(t, issue(t, ca, "server"))
	api := startAPI(t, bundleOf(ca), client, server)
	src := newAPISource(t, identity.WorkloadAPIOptions{Addr: api.Addr(), ID: serverID})

	got, err := src.GetX509SVID()
	if err != nil || got.ID != serverID {
		t.Fatalf("GetX509SVID = %v, %v; want the SVID of %s", got, err, serverID)
	}
	other := spiffeid.RequireTrustDomainFromString("partner.test")
	if _, err := src.GetX509BundleForTrustDomain(other); !errors.Is(err, identity.ErrNoBundle) {
		t.Errorf("bundle of another trust domain: error %v, want ErrNoBundle", err)
	}

	// The API stops offering our ID: nothing is served rather than another
	// workload's SVID, and handshakes fail.
	set(t, api, bundleOf(ca), client)
	eventually(t, "the SVID withdrawn", func() bool {
		_, err := src.GetX509SVID()
		return errors.Is(err, identity.ErrNoSVID)
	})
	ts := startHTTPS(t, identity.ServerTLSConfig(src))
	cfg := identity.ClientTLSConfig(staticSource(t, ca, "client"), serverID)
	if _, _, err := get(t, ts.addr, cfg); err == nil {
		t.Error("a server without its SVID completed a handshake")
	}
}

func TestNewWorkloadAPISourceRefuses(t *testing.T) {
	t.Parallel()
	ca, otherCA := newCA(t), newCA(t)
	client, server := svidOf(t, issue(t, ca, "client")), svidOf(t, issue(t, ca, "server"))
	silent := filepath.Join(t.TempDir(), "nobody.sock")

	tests := []struct {
		name    string
		addr    func(t *testing.T) string
		wantErr error
	}{
		{
			name: "no SVID with our ID",
			addr: func(t *testing.T) string {
				t.Helper()
				return startAPI(t, bundleOf(ca), client).Addr()
			},
			wantErr: identity.ErrNoSVID,
		},
		{
			name: "SVID that does not chain to the bundle",
			addr: func(t *testing.T) string {
				t.Helper()
				return startAPI(t, bundleOf(otherCA), server).Addr()
			},
		},
		{
			name:    "no Workload API listening",
			addr:    func(*testing.T) string { return "unix://" + silent },
			wantErr: context.DeadlineExceeded,
		},
		{
			name: "API that never issues anything",
			addr: func(t *testing.T) string {
				t.Helper()
				return identitytest.StartWorkloadAPI(t).Addr()
			},
			wantErr: context.DeadlineExceeded,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
			defer cancel()
			src, err := identity.NewWorkloadAPISource(ctx, identity.WorkloadAPIOptions{
				Addr: tt.addr(t), ID: serverID,
			})
			if err == nil {
				src.Close()
				t.Fatal("NewWorkloadAPISource succeeded, want an error")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// TestWorkloadAPISourceOutlivesTheAgent checks that the source reports a
// lost Workload API and keeps serving what it last received, and that it
// serves nothing once closed.
func TestWorkloadAPISourceOutlivesTheAgent(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	server := svidOf(t, issue(t, ca, "server"))
	api := startAPI(t, bundleOf(ca), server)
	var mu sync.Mutex
	var reported []error
	src := newAPISource(t, identity.WorkloadAPIOptions{Addr: api.Addr(), ID: serverID,
		OnError: func(err error) {
			mu.Lock()
			defer mu.Unlock()
			reported = append(reported, err)
		}})

	api.Stop()
	eventually(t, "the lost Workload API reported", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(reported) > 0
	})
	if got, err := src.GetX509SVID(); err != nil || serialOf(got) != serialOf(server) {
		t.Errorf("GetX509SVID without the agent = %v, %v; want the last SVID", got, err)
	}

	src.Close()
	if _, err := src.GetX509SVID(); !errors.Is(err, identity.ErrNoSVID) {
		t.Errorf("GetX509SVID after Close: error %v, want ErrNoSVID", err)
	}
	if _, err := src.GetX509BundleForTrustDomain(td); err == nil {
		t.Error("a closed source still serves its bundle")
	}
}

// TestWorkloadAPISourceReadsTheEndpointVariable cannot run in parallel:
// it sets an environment variable of the process.
func TestWorkloadAPISourceReadsTheEndpointVariable(t *testing.T) {
	ca := newCA(t)
	api := startAPI(t, bundleOf(ca), svidOf(t, issue(t, ca, "server")))
	t.Setenv(identity.EndpointSocketEnv, api.Addr())

	src := newAPISource(t, identity.WorkloadAPIOptions{})
	if got, err := src.GetX509SVID(); err != nil || got.ID != serverID {
		t.Errorf("GetX509SVID = %v, %v; want the SVID of %s", got, err, serverID)
	}
}
