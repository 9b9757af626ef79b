package devstack_test

import (
	"context"
	"crypto/tls"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"example.com/rampart/platform/devpki"
	"example.com/rampart/platform/devstack"
	"example.com/rampart/platform/identity"
)

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func TestStartNATSRunsNATSAloneWithTheStackRules(t *testing.T) {
	t.Parallel()
	cfg := devstack.DefaultConfig()
	cfg.Dir = t.TempDir()
	cfg.Ports.NATS = freePort(t)

	stack, err := devstack.StartNATS(t.Context(), cfg)
	if err != nil {
		t.Fatalf("StartNATS: %v", err)
	}
	t.Cleanup(func() {
		// t.Context is done by now.
		if err := stack.Stop(context.Background()); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	url := "tls://" + net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Ports.NATS))

	natsID := spiffeid.RequireFromString("spiffe://" + cfg.TrustDomain + "/nats")
	paymentFiles := devpki.WorkloadFiles(cfg.PKIDir(), "payment")
	src, err := identity.NewFileSource(t.Context(), paymentFiles, identity.FileOptions{})
	if err != nil {
		t.Fatalf("the PKI was not prepared: %v", err)
	}
	t.Cleanup(func() { src.Close() })

	tests := []struct {
		name    string
		tls     *tls.Config
		publish string
		wantErr bool
	}{
		{
			name:    "a workload with its SVID publishes its own events",
			tls:     identity.ClientTLSConfig(src, natsID),
			publish: "payments.succeeded",
		},
		{
			name:    "a workload may not publish another's events",
			tls:     identity.ClientTLSConfig(src, natsID),
			publish: "orders.created",
			wantErr: true,
		},
		{
			name: "a client without a certificate is refused",
			// The client trusts any server, so that the only refusal
			// possible is the server's.
			tls: &tls.Config{
				InsecureSkipVerify: true, //nolint:gosec // G402: the test is about the server refusing
				MinVersion:         tls.VersionTLS13,
			},
			publish: "payments.succeeded",
			wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			errs := make(chan error, 1)
			nc, err := nats.Connect(url, nats.Secure(tt.tls), nats.Timeout(5*time.Second),
				nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
					select {
					case errs <- err:
					default:
					}
				}))
			if err == nil {
				defer nc.Close()
				err = nc.Publish(tt.publish, []byte("{}"))
			}
			if err == nil {
				err = nc.Flush()
			}
			if err == nil {
				select {
				case err = <-errs:
				case <-time.After(300 * time.Millisecond):
				}
			}
			if (err != nil) != tt.wantErr {
				t.Fatalf("got error %v, want error: %t", err, tt.wantErr)
			}
		})
	}
}
