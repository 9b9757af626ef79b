package workload_test

import (
	"context"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/protobuf/reflect/protoregistry"

	"example.com/rampart/platform/devpki"
	"example.com/rampart/platform/events"
	"example.com/rampart/platform/identity"
	"example.com/rampart/platform/identity/identitytest"
	"example.com/rampart/platform/natsauth"
	"example.com/rampart/platform/policy"
	"example.com/rampart/platform/workload"

	// The event policies the NATS permissions come from.
	_ "example.com/rampart/proto/order/v1"
	_ "example.com/rampart/proto/payment/v1"
	_ "example.com/rampart/proto/user/v1"
)

// pkiOf returns the CA of the development PKI that config made for cfg.
func pkiOf(t *testing.T, cfg workload.Config) *devpki.CA {
	t.Helper()
	ca, err := devpki.LoadCA(filepath.Dir(cfg.BundleFile))
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func svidFrom(t *testing.T, ca *devpki.CA, name string) *x509svid.SVID {
	t.Helper()
	svid, err := ca.IssueSVID(name, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return svid
}

func serialOf(t *testing.T, src identity.Source) string {
	t.Helper()
	svid, err := src.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	return svid.Certificates[0].SerialNumber.String()
}

func TestStartTakesItsIdentityFromTheWorkloadAPI(t *testing.T) {
	t.Parallel()
	cfg := config(t, "order")
	ca := pkiOf(t, cfg)
	api := identitytest.StartWorkloadAPI(t)
	// The agent also offers another identity, which must not be taken.
	first := svidFrom(t, ca, "order")
	if err := api.Set(ca.Bundle(), svidFrom(t, ca, "user"), first); err != nil {
		t.Fatal(err)
	}
	cfg.WorkloadAPIAddr = api.Addr()
	// The files are not read when the Workload API is configured.
	cfg.CertFile, cfg.KeyFile, cfg.BundleFile = "/nonexistent", "/nonexistent", "/nonexistent"

	w, err := workload.Start(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { w.Close(context.Background()) })
	want := first.Certificates[0].SerialNumber.String()
	if got := serialOf(t, w.Identity); got != want {
		t.Errorf("serving SVID %s, want %s from the Workload API", got, want)
	}

	renewed := svidFrom(t, ca, "order")
	if err := api.Set(ca.Bundle(), renewed); err != nil {
		t.Fatal(err)
	}
	want = renewed.Certificates[0].SerialNumber.String()
	deadline := time.Now().Add(5 * time.Second)
	for serialOf(t, w.Identity) != want {
		if time.Now().After(deadline) {
			t.Fatal("the renewed SVID pushed by the Workload API was not taken")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestStartRefusesAWorkloadAPIWithoutItsSVID(t *testing.T) {
	t.Parallel()
	cfg := config(t, "order")
	ca := pkiOf(t, cfg)
	api := identitytest.StartWorkloadAPI(t)
	if err := api.Set(ca.Bundle(), svidFrom(t, ca, "user")); err != nil {
		t.Fatal(err)
	}
	cfg.WorkloadAPIAddr = api.Addr()

	w, err := workload.Start(t.Context(), cfg)
	if err == nil {
		w.Close(context.Background())
		t.Fatal("Start succeeded with only another workload's SVID on offer")
	}
	if !strings.Contains(err.Error(), "workload identity") {
		t.Errorf("Start: %v, want an error about the workload identity", err)
	}
}

// TestLoadReadsTheEndpointSocket cannot run in parallel: it sets
// environment variables of the process.
func TestLoadReadsTheEndpointSocket(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"neither set", nil, ""},
		{
			"the SPIFFE variable",
			map[string]string{identity.EndpointSocketEnv: "unix:///run/spire/agent.sock"},
			"unix:///run/spire/agent.sock",
		},
		{
			"the prefixed variable wins",
			map[string]string{
				identity.EndpointSocketEnv:     "unix:///run/spire/agent.sock",
				"ORDER_SPIFFE_ENDPOINT_SOCKET": "unix:///run/csi/spiffe.sock",
			},
			"unix:///run/csi/spiffe.sock",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(identity.EndpointSocketEnv, "")
			t.Setenv("ORDER_SPIFFE_ENDPOINT_SOCKET", "")
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			cfg, err := workload.Load(workload.DefaultConfig("order", "127.0.0.1:0", "127.0.0.1:0"))
			if err != nil {
				t.Fatal(err)
			}
			if cfg.WorkloadAPIAddr != tt.want {
				t.Errorf("WorkloadAPIAddr = %q, want %q", cfg.WorkloadAPIAddr, tt.want)
			}
		})
	}
}

// TestWorkloadConnectsToNATSAsItself starts the order workload against a
// NATS server configured as the local stack's, and checks that the server
// knows the connection as order's user, whose rights are order's.
func TestWorkloadConnectsToNATSAsItself(t *testing.T) {
	t.Parallel()
	cfg := config(t, "order")
	ca := pkiOf(t, cfg)
	srv := startNATS(t, ca)
	cfg.NATSURL = "tls://127.0.0.1:" + strconv.Itoa(srv.Addr().(*net.TCPAddr).Port)

	w, err := workload.Start(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { w.Close(context.Background()) })
	deadline := time.Now().Add(5 * time.Second)
	for !w.NATS.IsConnected() {
		if time.Now().After(deadline) {
			t.Fatal("the workload did not connect to NATS")
		}
		time.Sleep(5 * time.Millisecond)
	}

	connz, err := srv.Connz(&server.ConnzOptions{Username: true})
	if err != nil {
		t.Fatal(err)
	}
	var users []string
	for _, c := range connz.Conns {
		users = append(users, c.AuthorizedUser)
	}
	if want := "spiffe://rampart.local/order"; len(users) != 1 || users[0] != want {
		t.Errorf("NATS users connected: %q, want [%s]", users, want)
	}
	// Order's user may create order's stream, and nobody else's.
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := events.EnsureStream(ctx, w.JetStream, w.Policy, "order"); err != nil {
		t.Errorf("creating order's stream as order: %v", err)
	}
	ctx, cancel = context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if err := events.EnsureStream(ctx, w.JetStream, w.Policy, "payment"); err == nil {
		t.Error("order created payment's stream")
	}
}

// startNATS starts NATS as the local stack does, with an SVID from ca.
func startNATS(t *testing.T, ca *devpki.CA) *server.Server {
	t.Helper()
	td := ca.TrustDomain()
	set, err := policy.Load(td, protoregistry.GlobalFiles)
	if err != nil {
		t.Fatal(err)
	}
	natsSVID := svidFrom(t, ca, "nats")
	opts, err := natsauth.ServerOptions(natsauth.ServerConfig{
		Policy:    set,
		Workloads: []string{"user", "payment", "order", "gateway"},
		Identity:  identity.NewStaticSource(natsSVID, ca.Bundle()),
		Host:      "127.0.0.1",
		Port:      server.RANDOM_PORT,
		StoreDir:  t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS server not ready")
	}
	return srv
}
