// Package devstack runs the whole platform on one machine with nothing but
// Go: it creates a development PKI and signing keys, starts an embedded
// NATS server with JetStream that requires mutual TLS, starts every
// workload as its own process with its own SVID, and waits until each one
// is ready. `make run` and the process-level integration tests use it.
package devstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"example.com/rampart/platform/devpki"
	"example.com/rampart/platform/jwks"
)

// The workloads' names, which also name their binaries, their SVIDs and
// their data directories.
const (
	userWorkload    = "user"
	orderWorkload   = "order"
	paymentWorkload = "payment"
	gatewayWorkload = "gateway"
)

// Workloads lists the processes of the stack in the order they start.
var Workloads = []string{userWorkload, paymentWorkload, orderWorkload, gatewayWorkload}

// Ports are the TCP ports of the stack, all on Config.Host.
type Ports struct {
	Gateway         int // public HTTP: Connect, gRPC and gRPC-Web
	GatewayInternal int // the gateway's mutual-TLS port for its signing keys
	User            int // gRPC with mutual TLS
	Order           int
	Payment         int
	NATS            int
	// Admin ports serve /healthz, /readyz and /metrics.
	UserAdmin, OrderAdmin, PaymentAdmin, GatewayAdmin int
}

// DefaultPorts are the ports of `make run`.
var DefaultPorts = Ports{
	Gateway: 8080, GatewayInternal: 9004,
	User: 9001, Order: 9002, Payment: 9003, NATS: 4222,
	UserAdmin: 9101, OrderAdmin: 9102, PaymentAdmin: 9103, GatewayAdmin: 9104,
}

// Config says where the stack keeps its files, where the binaries are and
// which ports it uses.
type Config struct {
	// Dir holds everything the stack writes: pki/, keys/, data/, nats/.
	Dir string
	// BinDir holds the binaries, one per workload, named after it.
	BinDir string
	// TrustDomain of every workload's SPIFFE ID.
	TrustDomain string
	// Host is the address every port binds to.
	Host  string
	Ports Ports
	// Output receives every process's log lines; nil means os.Stderr.
	Output io.Writer
	// Env is added to every process's environment, after the stack's own.
	Env []string
	// ReadyTimeout bounds the wait for every workload to be ready.
	ReadyTimeout time.Duration
}

// DefaultConfig is the configuration of `make run`, from the repository
// root.
func DefaultConfig() Config {
	return Config{
		Dir:          ".dev",
		BinDir:       "bin",
		TrustDomain:  "rampart.local",
		Host:         "127.0.0.1",
		Ports:        DefaultPorts,
		ReadyTimeout: 60 * time.Second,
	}
}

func (c Config) addr(port int) string { return c.Host + ":" + strconv.Itoa(port) }

// GatewayURL is the base URL of the public API.
func (c Config) GatewayURL() string { return "http://" + c.addr(c.Ports.Gateway) }

// PKIDir holds the CA, the trust bundle and one SVID per workload.
func (c Config) PKIDir() string { return filepath.Join(c.Dir, "pki") }

// KeysDir holds the token signing keys.
func (c Config) KeysDir() string { return filepath.Join(c.Dir, "keys") }

// AccessKeysFile holds the user service's access-token signing keys.
func (c Config) AccessKeysFile() string { return filepath.Join(c.KeysDir(), "user-access.jwks") }

// TxnKeysFile holds the gateway's transaction-token signing keys.
func (c Config) TxnKeysFile() string { return filepath.Join(c.KeysDir(), "gateway-txn.jwks") }

// Prepare creates, or completes, the development PKI and signing keys. It
// changes nothing that is present and still valid, so it runs at every
// start.
func Prepare(cfg Config) error {
	td, err := spiffeid.TrustDomainFromString(cfg.TrustDomain)
	if err != nil {
		return fmt.Errorf("trust domain %q: %w", cfg.TrustDomain, err)
	}
	if err := devpki.Ensure(cfg.PKIDir(), td, append([]string{"nats"}, Workloads...)...); err != nil {
		return fmt.Errorf("preparing the development PKI: %w", err)
	}
	if err := os.MkdirAll(cfg.KeysDir(), 0o700); err != nil {
		return err
	}
	// Access tokens are ES256, as most OIDC issuers sign them; the gateway
	// verifies each one once and remembers it. Transaction tokens are
	// EdDSA, whose signatures cost less to make and to check, because every
	// call mints one and every hop verifies it.
	keyFiles := []struct {
		path string
		alg  jose.SignatureAlgorithm
	}{
		{cfg.AccessKeysFile(), jose.ES256},
		{cfg.TxnKeysFile(), jose.EdDSA},
	}
	for _, f := range keyFiles {
		if err := ensureKeyFile(f.path, f.alg); err != nil {
			return err
		}
	}
	return nil
}

// ensureKeyFile writes a file with one new signing key for alg unless the
// file exists.
func ensureKeyFile(path string, alg jose.SignatureAlgorithm) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	key, err := jwks.GenerateKey(alg)
	if err != nil {
		return fmt.Errorf("generating a signing key for %s: %w", path, err)
	}
	return jwks.WriteKeySetFile(path, key)
}

// env returns the environment of a workload's process.
func (c Config) env(name string) []string {
	p := c.Ports
	prefix := map[string]string{
		userWorkload: "USER", orderWorkload: "ORDER",
		paymentWorkload: "PAYMENT", gatewayWorkload: "GATEWAY",
	}[name]
	files := devpki.WorkloadFiles(c.PKIDir(), name)
	env := []string{
		prefix + "_TRUST_DOMAIN=" + c.TrustDomain,
		prefix + "_SVID_CERT=" + files.Cert,
		prefix + "_SVID_KEY=" + files.Key,
		prefix + "_TRUST_BUNDLE=" + files.Bundle,
		prefix + "_NATS_URL=tls://" + c.addr(p.NATS),
		prefix + "_TXN_KEYS_URL=https://" + c.addr(p.GatewayInternal) + "/.well-known/jwks.json",
		prefix + "_DATA_DIR=" + filepath.Join(c.Dir, "data", name),
		prefix + "_USER_ADDR=" + c.addr(p.User),
		prefix + "_ORDER_ADDR=" + c.addr(p.Order),
		prefix + "_PAYMENT_ADDR=" + c.addr(p.Payment),
	}
	issuer := "http://" + c.addr(p.UserAdmin)
	switch name {
	case userWorkload:
		env = append(env,
			"USER_GRPC_ADDR="+c.addr(p.User),
			"USER_ADMIN_ADDR="+c.addr(p.UserAdmin),
			"USER_ISSUER="+issuer,
			"USER_SIGNING_KEYS="+c.AccessKeysFile())
	case orderWorkload:
		env = append(env,
			"ORDER_GRPC_ADDR="+c.addr(p.Order),
			"ORDER_ADMIN_ADDR="+c.addr(p.OrderAdmin))
	case paymentWorkload:
		env = append(env,
			"PAYMENT_GRPC_ADDR="+c.addr(p.Payment),
			"PAYMENT_ADMIN_ADDR="+c.addr(p.PaymentAdmin))
	case gatewayWorkload:
		env = append(env,
			"GATEWAY_HTTP_ADDR="+c.addr(p.Gateway),
			"GATEWAY_INTERNAL_ADDR="+c.addr(p.GatewayInternal),
			"GATEWAY_ADMIN_ADDR="+c.addr(p.GatewayAdmin),
			"GATEWAY_ISSUER="+issuer,
			"GATEWAY_TXN_SIGNING_KEYS="+c.TxnKeysFile())
	}
	return append(env, c.Env...)
}

// adminAddr is where a workload answers /readyz.
func (c Config) adminAddr(name string) string {
	p := c.Ports
	port := map[string]int{
		userWorkload: p.UserAdmin, orderWorkload: p.OrderAdmin, paymentWorkload: p.PaymentAdmin,
		gatewayWorkload: p.GatewayAdmin,
	}[name]
	return c.addr(port)
}

// waitReady polls a workload's /readyz until it answers 200, the process
// exits, or ctx ends.
func waitReady(ctx context.Context, url string, exited <-chan struct{}) error {
	client := &http.Client{Timeout: time.Second}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", url, context.Cause(ctx))
		case <-exited:
			return errors.New("the process exited before it was ready")
		case <-tick.C:
		}
	}
}

// FreePorts picks every port of a stack among those free on host now, for
// a stack that must not collide with another on the same machine, as
// tests and benchmarks run. A port may be taken between this call and the
// stack's start; the start then fails rather than share it.
func FreePorts(ctx context.Context, host string) (Ports, error) {
	var p Ports
	targets := []*int{&p.Gateway, &p.GatewayInternal, &p.User, &p.Order, &p.Payment, &p.NATS,
		&p.UserAdmin, &p.OrderAdmin, &p.PaymentAdmin, &p.GatewayAdmin}
	var listeners []net.Listener
	defer func() {
		for _, ln := range listeners {
			_ = ln.Close() // only held so that no two targets get one port
		}
	}()
	for _, target := range targets {
		ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return Ports{}, fmt.Errorf("finding a free port: %w", err)
		}
		listeners = append(listeners, ln)
		addr, ok := ln.Addr().(*net.TCPAddr)
		if !ok {
			return Ports{}, fmt.Errorf("listener address %v is not TCP", ln.Addr())
		}
		*target = addr.Port
	}
	return p, nil
}
