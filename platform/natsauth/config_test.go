package natsauth_test

import (
	"crypto/tls"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/reflect/protoregistry"

	"example.com/rampart/platform/devpki"
	"example.com/rampart/platform/identity"
	"example.com/rampart/platform/natsauth"
	"example.com/rampart/platform/policy"

	// The event policies the users are derived from.
	_ "example.com/rampart/proto/order/v1"
	_ "example.com/rampart/proto/payment/v1"
	_ "example.com/rampart/proto/user/v1"
)

var configTD = spiffeid.RequireTrustDomainFromString("rampart.test")

// workloadUsers returns the users natsauth derives for the sample
// workloads.
func workloadUsers(t *testing.T) []*server.User {
	t.Helper()
	set, err := policy.Load(configTD, protoregistry.GlobalFiles)
	if err != nil {
		t.Fatal(err)
	}
	users, err := natsauth.Users(set, "gateway", "user", "order", "payment")
	if err != nil {
		t.Fatal(err)
	}
	return users
}

// writeConfig renders cfg with a development PKI for the nats workload
// and the names given, and returns the configuration file's path and the
// PKI's directory.
func writeConfig(t *testing.T, cfg natsauth.ConfigFile, names ...string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	pki := filepath.Join(dir, "pki")
	if err := devpki.Ensure(pki, configTD, append([]string{"nats"}, names...)...); err != nil {
		t.Fatal(err)
	}
	files := devpki.WorkloadFiles(pki, "nats")
	cfg.CertFile, cfg.KeyFile, cfg.CAFile = files.Cert, files.Key, files.Bundle
	cfg.StoreDir = filepath.Join(dir, "jetstream")
	data, err := cfg.Render()
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	path := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, pki
}

func TestConfigFileReadsBack(t *testing.T) {
	t.Parallel()
	users := workloadUsers(t)
	path, _ := writeConfig(t, natsauth.ConfigFile{
		Name: "rampart", Listen: "127.0.0.1:4999", Monitor: "127.0.0.1:8999", Users: users,
	})

	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("nats-server refuses the rendered file: %v", err)
	}
	type settings struct {
		Name, Host                  string
		Port, HTTPPort              int
		JetStream, Map, StoreDirSet bool
		ClientAuth                  tls.ClientAuthType
		MinTLS                      uint16
	}
	got := settings{
		Name: opts.ServerName, Host: opts.Host, Port: opts.Port, HTTPPort: opts.HTTPPort,
		JetStream: opts.JetStream, Map: opts.TLSMap, StoreDirSet: opts.StoreDir != "",
		ClientAuth: opts.TLSConfig.ClientAuth, MinTLS: opts.TLSConfig.MinVersion,
	}
	want := settings{
		Name: "rampart", Host: "127.0.0.1", Port: 4999, HTTPPort: 8999,
		JetStream: true, Map: true, StoreDirSet: true,
		ClientAuth: tls.RequireAndVerifyClientCert, MinTLS: tls.VersionTLS13,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("server settings (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(users, opts.Users); diff != "" {
		t.Errorf("users read back (-rendered +read):\n%s", diff)
	}
}

// TestConfigFileAdmitsMappedWorkloads starts nats-server from a
// rendered file and checks who gets in and what each may publish.
func TestConfigFileAdmitsMappedWorkloads(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a NATS server")
	}
	t.Parallel()
	path, pki := writeConfig(t, natsauth.ConfigFile{
		Name: "rampart", Listen: "127.0.0.1:-1", Users: workloadUsers(t),
	}, "order", "batch")
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatal(err)
	}
	opts.NoLog, opts.NoSigs = true, true
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS did not become ready")
	}

	if _, err := connectAs(t, ns, pki, "batch"); !errors.Is(err, nats.ErrAuthorization) {
		t.Errorf("a workload without a user connected with error %v, want %v", err, nats.ErrAuthorization)
	}

	violations := make(chan error, 4)
	nc, err := connectAs(t, ns, pki, "order", nats.ErrorHandler(
		func(_ *nats.Conn, _ *nats.Subscription, err error) { violations <- err }))
	if err != nil {
		t.Fatalf("the order workload cannot connect: %v", err)
	}
	for _, tt := range []struct {
		subject string
		allowed bool
	}{
		{"orders.created", true},
		{"payments.succeeded", false},
	} {
		if err := nc.Publish(tt.subject, []byte("{}")); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		var got error
		select {
		case got = <-violations:
		case <-time.After(500 * time.Millisecond):
		}
		if allowed := got == nil; allowed != tt.allowed {
			t.Errorf("order publishing on %s: error %v, want allowed=%v", tt.subject, got, tt.allowed)
		}
	}
}

func connectAs(t *testing.T, ns *server.Server, pki, name string, opts ...nats.Option) (
	*nats.Conn, error) {
	t.Helper()
	files := devpki.WorkloadFiles(pki, name)
	src, err := identity.NewFileSource(t.Context(), files, identity.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	natsID := spiffeid.RequireFromPath(configTD, "/nats")
	opts = append(opts, nats.Secure(identity.ClientTLSConfig(src, natsID)),
		nats.NoReconnect(), nats.Timeout(5*time.Second))
	nc, err := nats.Connect(ns.ClientURL(), opts...)
	if err == nil {
		t.Cleanup(nc.Close)
	}
	return nc, err
}

func TestConfigFileRenderRefuses(t *testing.T) {
	t.Parallel()
	valid := natsauth.ConfigFile{
		Name: "rampart", Listen: "0.0.0.0:4222", StoreDir: "/data",
		CertFile: "/svid.pem", KeyFile: "/svid.key", CAFile: "/bundle.pem",
		Users: []*server.User{{Username: "spiffe://rampart.test/order", Permissions: &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: []string{"orders.created"}},
			Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX_order.>"}},
		}}},
	}
	if _, err := valid.Render(); err != nil {
		t.Fatalf("Render of a valid configuration: %v", err)
	}
	tests := []struct {
		name   string
		change func(c *natsauth.ConfigFile)
	}{
		{"no name", func(c *natsauth.ConfigFile) { c.Name = "" }},
		{"no listen address", func(c *natsauth.ConfigFile) { c.Listen = "" }},
		{"no store directory", func(c *natsauth.ConfigFile) { c.StoreDir = "" }},
		{"no key file", func(c *natsauth.ConfigFile) { c.KeyFile = "" }},
		{"no CA file", func(c *natsauth.ConfigFile) { c.CAFile = "" }},
		{"no users", func(c *natsauth.ConfigFile) { c.Users = nil }},
		{"a user without permissions", func(c *natsauth.ConfigFile) {
			c.Users = []*server.User{{Username: "spiffe://rampart.test/order"}}
		}},
		{"a user without publish permissions", func(c *natsauth.ConfigFile) {
			c.Users = []*server.User{{Username: "spiffe://rampart.test/order",
				Permissions: &server.Permissions{
					Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX_order.>"}},
				}}}
		}},
		{"a user with a password", func(c *natsauth.ConfigFile) {
			u := *valid.Users[0]
			u.Password = "secret"
			c.Users = []*server.User{&u}
		}},
		{"a user with response permissions", func(c *natsauth.ConfigFile) {
			perms := *valid.Users[0].Permissions
			perms.Response = &server.ResponsePermission{MaxMsgs: 1}
			c.Users = []*server.User{{Username: "spiffe://rampart.test/order", Permissions: &perms}}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := valid
			tt.change(&cfg)
			if out, err := cfg.Render(); err == nil {
				t.Errorf("Render succeeded, want an error; rendered:\n%s", out)
			}
		})
	}
}

// TestConfigFileEmptyAllowDeniesEverything guards against the reading
// nats-server gives an absent allow list: everything allowed.
func TestConfigFileEmptyAllowDeniesEverything(t *testing.T) {
	t.Parallel()
	path, _ := writeConfig(t, natsauth.ConfigFile{
		Name: "rampart", Listen: "127.0.0.1:4999",
		Users: []*server.User{{Username: "spiffe://rampart.test/quiet", Permissions: &server.Permissions{
			Publish:   &server.SubjectPermission{},
			Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX_quiet.>"}},
		}}},
	})
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := &server.SubjectPermission{Deny: []string{">"}}
	if diff := cmp.Diff(want, opts.Users[0].Permissions.Publish); diff != "" {
		t.Errorf("publish permission of a user that publishes nothing (-want +got):\n%s", diff)
	}
}
