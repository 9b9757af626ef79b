package tilt

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/reflect/protoregistry"

	"example.com/rampart/platform/devpki"
	"example.com/rampart/platform/devstack"
	"example.com/rampart/platform/identity"
	"example.com/rampart/platform/natsauth"
	"example.com/rampart/platform/policy"
)

var update = flag.Bool("update", false, "rewrite base/nats/auth.conf from the event policies")

const authConfPath = "base/nats/auth.conf"

// natsUsers are the NATS users of the workloads, from the event policies.
func natsUsers(t *testing.T) []*server.User {
	t.Helper()
	td := spiffeid.RequireTrustDomainFromString(devstack.DefaultConfig().TrustDomain)
	set, err := policy.Load(td, protoregistry.GlobalFiles)
	if err != nil {
		t.Fatal(err)
	}
	users, err := natsauth.Users(set, devstack.Workloads...)
	if err != nil {
		t.Fatal(err)
	}
	return users
}

// authConf renders the authorization block of the NATS configuration
// with natsauth, the definition the embedded server of `make run` uses
// too, so that both enforce the same permissions.
func authConf(t *testing.T) []byte {
	t.Helper()
	rendered, err := natsauth.ConfigFile{
		Name: "rampart", Listen: "0.0.0.0:4222", StoreDir: "/data/jetstream",
		CertFile: "/run/rampart/svid/svid.pem", KeyFile: "/run/rampart/svid/svid.key",
		CAFile: "/run/rampart/svid/bundle.pem", Users: natsUsers(t),
	}.Render()
	if err != nil {
		t.Fatal(err)
	}
	var file map[string]json.RawMessage
	if err := json.Unmarshal(rendered, &file); err != nil {
		t.Fatal(err)
	}
	var auth bytes.Buffer
	if err := json.Indent(&auth, file["authorization"], "", "  "); err != nil {
		t.Fatal(err)
	}
	return fmt.Appendf(nil, `# The NATS users of the workloads, generated from the event policies in
# proto/ by platform/natsauth: do not edit. Regenerate with
#   go test ./tilt -run TestNATSAuthConfIsGenerated -update
authorization: %s
`, auth.Bytes())
}

// TestNATSAuthConfIsGenerated checks that the committed auth.conf is
// natsauth's, and rewrites it under -update.
//
//nolint:paralleltest // under -update it writes auth.conf, which tests that run after it read
func TestNATSAuthConfIsGenerated(t *testing.T) {
	want := authConf(t)
	if *update {
		//nolint:gosec // G306: a committed source file, readable like the others
		if err := os.WriteFile(authConfPath, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(authConfPath)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Fatalf("%s is stale; regenerate it with -update (-want +got):\n%s", authConfPath, diff)
	}
}

// preparePKI writes a dev PKI, with the nats SVID among it, to a
// temporary directory.
func preparePKI(t *testing.T) devstack.Config {
	t.Helper()
	cfg := devstack.DefaultConfig()
	cfg.Dir = t.TempDir()
	if err := devstack.Prepare(cfg); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// natsConfig writes base/nats/nats.conf and auth.conf to a temporary
// directory, with the container's paths replaced by those of the PKI of
// cfg, and processes them with the NATS server's own parser.
func natsConfig(t *testing.T, cfg devstack.Config) *server.Options {
	t.Helper()
	dir := t.TempDir()
	files := devpki.WorkloadFiles(cfg.PKIDir(), "nats")
	paths := strings.NewReplacer(
		"/run/rampart/svid/svid.pem", files.Cert,
		"/run/rampart/svid/svid.key", files.Key,
		"/run/rampart/svid/bundle.pem", files.Bundle,
		"/data/jetstream", filepath.Join(dir, "jetstream"),
	)
	for _, name := range []string{"nats.conf", "auth.conf"} {
		text, err := os.ReadFile(filepath.Join("base", "nats", name))
		if err != nil {
			t.Fatal(err)
		}
		text = []byte(paths.Replace(string(text)))
		//nolint:gosec // G703: the path is the test's own; only the content was read from a file
		if err := os.WriteFile(filepath.Join(dir, name), text, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	opts, err := server.ProcessConfigFile(filepath.Join(dir, "nats.conf"))
	if err != nil {
		t.Fatalf("nats-server refuses nats.conf: %v", err)
	}
	return opts
}

func TestNATSConfigSaysWhatTheManifestsNeed(t *testing.T) {
	t.Setenv("POD_NAME", "nats-1")
	opts := natsConfig(t, preparePKI(t))

	type summary struct {
		ServerName, Host, ClusterName, ClusterUser string
		Port, ClusterPort, HTTPPort                int
		TLSVerifyAndMap, ClusterVerifyAndMap       bool
		TLSMinVersion, ClusterTLSMinVersion        uint16
		JetStream                                  bool
		Routes                                     []string
	}
	got := summary{
		ServerName: opts.ServerName, Host: opts.Host, ClusterName: opts.Cluster.Name,
		ClusterUser: opts.Cluster.Username, Port: opts.Port, ClusterPort: opts.Cluster.Port,
		HTTPPort: opts.HTTPPort, JetStream: opts.JetStream,
	}
	if c := opts.TLSConfig; c != nil {
		got.TLSVerifyAndMap = opts.TLSMap && c.ClientAuth == tls.RequireAndVerifyClientCert
		got.TLSMinVersion = c.MinVersion
	}
	if c := opts.Cluster.TLSConfig; c != nil {
		got.ClusterVerifyAndMap = opts.Cluster.TLSMap && c.ClientAuth == tls.RequireAndVerifyClientCert
		got.ClusterTLSMinVersion = c.MinVersion
	}
	for _, r := range opts.Routes {
		got.Routes = append(got.Routes, r.Host)
	}
	want := summary{
		ServerName: "nats-1", Host: "0.0.0.0", ClusterName: "rampart",
		ClusterUser: "spiffe://rampart.local/nats", Port: 4222, ClusterPort: 6222, HTTPPort: 8222,
		TLSVerifyAndMap: true, ClusterVerifyAndMap: true,
		TLSMinVersion: tls.VersionTLS13, ClusterTLSMinVersion: tls.VersionTLS13, JetStream: true,
		Routes: []string{
			"nats-0.nats-headless:6222", "nats-1.nats-headless:6222", "nats-2.nats-headless:6222",
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("nats.conf (-want +got):\n%s", diff)
	}

	// The users the server will map certificates to are natsauth's.
	gotUsers := map[string]*server.Permissions{}
	for _, u := range opts.Users {
		gotUsers[u.Username] = u.Permissions
	}
	wantUsers := map[string]*server.Permissions{}
	for _, u := range natsUsers(t) {
		wantUsers[u.Username] = u.Permissions
	}
	if diff := cmp.Diff(wantUsers, gotUsers); diff != "" {
		t.Errorf("users (-natsauth +nats.conf):\n%s", diff)
	}
}

// TestNATSConfigFormsAClusterOverTLS runs three servers from nats.conf, on
// loopback ports instead of the pods' addresses, and checks that their
// routes form a JetStream cluster with the nats SVID, that a workload
// stores an event on three replicas through it, and that a workload's
// certificate cannot join as a route.
func TestNATSConfigFormsAClusterOverTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("forms a three-node JetStream cluster")
	}
	t.Setenv("POD_NAME", "nats-0")
	clusterPorts := []int{freePort(t), freePort(t), freePort(t)}
	cfg := preparePKI(t)
	var nodes []*server.Server
	for i := range 3 {
		nodes = append(nodes, startNode(t, cfg, clusterPorts, i, identity.Files{}))
	}
	eventually(t, "every node to know the JetStream meta leader", func() bool {
		return everyNode(nodes, func(info *server.JSInfo) bool {
			return info.Meta != nil && info.Meta.Leader != ""
		})
	})

	// The order workload stores its event on three replicas.
	orderFiles := devpki.WorkloadFiles(cfg.PKIDir(), "order")
	src, err := identity.NewFileSource(t.Context(), orderFiles, identity.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	natsID := spiffeid.RequireFromString("spiffe://rampart.local/nats")
	nc, err := nats.Connect(nodes[1].ClientURL(), nats.Secure(identity.ClientTLSConfig(src, natsID)),
		nats.CustomInboxPrefix(natsauth.InboxPrefix("order")))
	if err != nil {
		t.Fatalf("the order workload cannot connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	eventually(t, "a stream of three replicas", func() bool {
		attempt, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err = js.CreateStream(attempt, jetstream.StreamConfig{
			Name: "EVENTS_ORDER", Subjects: []string{"orders.>"}, Replicas: 3,
		})
		return err == nil
	})
	if _, err := js.Publish(ctx, "orders.created", []byte("{}")); err != nil {
		t.Fatalf("storing an event: %v", err)
	}
	eventually(t, "every node to hold the event", func() bool {
		return everyNode(nodes, func(info *server.JSInfo) bool { return info.Messages == 1 })
	})

	// A node holding the user workload's certificate is refused as a route:
	// the nodes keep routing only to each other.
	intruder := startNode(t, cfg, clusterPorts, 3, devpki.WorkloadFiles(cfg.PKIDir(), "user"))
	time.Sleep(2 * time.Second)
	if n := intruder.NumRoutes(); n != 0 {
		t.Errorf("a node with a workload's certificate holds %d routes, want 0", n)
	}
	checkNoRouteFrom(t, nodes, intruder)
}

// startNode starts node i of the cluster from nats.conf, its cluster
// port the i-th of clusterPorts and its routes to the others; a node past
// the third takes a free cluster port. With cert set, the node presents
// that certificate on its routes instead of the nats SVID.
func startNode(t *testing.T, cfg devstack.Config, clusterPorts []int, i int,
	cert identity.Files) *server.Server {
	t.Helper()
	opts := natsConfig(t, cfg)
	opts.ServerName = fmt.Sprintf("nats-%d", i)
	opts.Host, opts.Port = "127.0.0.1", server.RANDOM_PORT
	opts.HTTPHost, opts.HTTPPort = "127.0.0.1", server.RANDOM_PORT
	opts.Cluster.Host, opts.Cluster.Port = "127.0.0.1", clusterPorts[i%3]
	if i >= 3 {
		opts.Cluster.Port = server.RANDOM_PORT
	}
	opts.Routes = nil
	for j, port := range clusterPorts {
		if j != i {
			opts.Routes = append(opts.Routes,
				&url.URL{Scheme: "nats-route", Host: fmt.Sprintf("127.0.0.1:%d", port)})
		}
	}
	opts.StoreDir = filepath.Join(t.TempDir(), "jetstream")
	opts.NoLog, opts.NoSigs = true, true
	if cert.Cert != "" {
		c, err := tls.LoadX509KeyPair(cert.Cert, cert.Key)
		if err != nil {
			t.Fatal(err)
		}
		opts.Cluster.TLSConfig.Certificates = []tls.Certificate{c}
	}
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("node %d: %v", i, err)
	}
	s.Start()
	t.Cleanup(s.Shutdown)
	if !s.ReadyForConnections(30 * time.Second) {
		t.Fatalf("node %d is not ready", i)
	}
	return s
}

// everyNode reports whether cond holds for the JetStream state of every
// node.
func everyNode(nodes []*server.Server, cond func(*server.JSInfo) bool) bool {
	for _, node := range nodes {
		info, err := node.Jsz(nil)
		if err != nil || !cond(info) {
			return false
		}
	}
	return true
}

// checkNoRouteFrom fails the test if a node holds a route from intruder.
func checkNoRouteFrom(t *testing.T, nodes []*server.Server, intruder *server.Server) {
	t.Helper()
	for i, node := range nodes {
		routes, err := node.Routez(nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range routes.Routes {
			if r.RemoteName == intruder.Name() {
				t.Errorf("node %d accepted a route from a workload's certificate", i)
			}
		}
	}
}

// eventually polls cond for up to 30 seconds and fails the test if it
// never holds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 30s for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
