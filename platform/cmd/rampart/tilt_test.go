package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"example.com/rampart/platform/devstack"
)

func TestWorkloadArg(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args    []string
		want    string
		wantErr bool
	}{
		{args: []string{"order"}, want: "order"},
		{args: nil, wantErr: true},
		{args: []string{"order", "user"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, ","), func(t *testing.T) {
			t.Parallel()
			got, err := workloadArg(tt.args)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("workloadArg(%q) = %q, %v; want %q, error: %t", tt.args, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestServeWorkloadRefusesUnknownNames(t *testing.T) {
	t.Parallel()
	cfg := devstack.DefaultConfig()
	cfg.Dir, cfg.BinDir = t.TempDir(), t.TempDir()
	err := serveWorkload(t.Context(), cfg, "../user")
	if err == nil || !strings.Contains(err.Error(), "unknown workload") {
		t.Fatalf("serveWorkload(../user) = %v, want an unknown-workload error", err)
	}
}

// TestTheStackRunsPartByPart runs the stack the way the Tiltfile does:
// NATS, then every workload by its own command, and checks that the gateway answers and that everything stops
// cleanly.
func TestTheStackRunsPartByPart(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts every workload's process")
	}
	binDir := os.Getenv("RAMPART_BIN_DIR")
	if binDir == "" {
		t.Skip("RAMPART_BIN_DIR is not set; `make test` sets it after building the binaries")
	}
	cfg := devstack.DefaultConfig()
	cfg.Dir, cfg.BinDir = t.TempDir(), binDir
	cfg.Output = io.Discard
	cfg.ReadyTimeout = 30 * time.Second
	p := &cfg.Ports
	for _, port := range []*int{&p.Gateway, &p.GatewayInternal, &p.User, &p.Order, &p.Payment, &p.NATS,
		&p.UserAdmin, &p.OrderAdmin, &p.PaymentAdmin, &p.GatewayAdmin} {
		*port = freePort(t)
	}
	admin := map[string]int{"user": p.UserAdmin, "order": p.OrderAdmin, "payment": p.PaymentAdmin,
		"gateway": p.GatewayAdmin}

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	// Each goroutine holds its own channel: the map is written on this one.
	natsDone := make(chan error, 1)
	done := map[string]chan error{"nats": natsDone}
	go func() { natsDone <- serveNATS(ctx, cfg, io.Discard) }()
	waitListening(t, net.JoinHostPort(cfg.Host, strconv.Itoa(p.NATS)))
	if _, err := os.Stat(filepath.Join(cfg.PKIDir(), "user", "svid.pem")); err != nil {
		t.Fatalf("the nats command did not prepare the PKI: %v", err)
	}
	// Tilt starts the workloads together once NATS is up; each becomes
	// ready when its peers are (a service needs the gateway's keys).
	for _, name := range devstack.Workloads {
		workloadDone := make(chan error, 1)
		done[name] = workloadDone
		go func() { workloadDone <- serveWorkload(ctx, cfg, name) }()
	}
	for _, name := range devstack.Workloads {
		waitReady(t, "http://"+net.JoinHostPort(cfg.Host, strconv.Itoa(admin[name]))+"/readyz", done[name])
	}

	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost,
		cfg.GatewayURL()+"/order.v1.CatalogService/ListProducts", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("calling the gateway: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "sku") {
		t.Fatalf("ListProducts through the gateway: %d %s", resp.StatusCode, body)
	}

	cancel()
	for name, d := range done {
		if err := <-d; err != nil {
			t.Errorf("%s stopped with %v, want a clean stop", name, err)
		}
	}
	if resp, err := get(t.Context(), cfg.GatewayURL()); err == nil {
		resp.Body.Close()
		t.Errorf("the gateway still answers after its command stopped")
	}
}

// get sends a GET request to url.
func get(ctx context.Context, url string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	return http.DefaultClient.Do(req)
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

func waitListening(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	dialer := &net.Dialer{Timeout: time.Second}
	for {
		conn, err := dialer.DialContext(t.Context(), "tcp", addr)
		if err == nil {
			conn.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitReady polls url until it answers 200; it fails the test if done
// receives first, which means the command gave up.
func waitReady(t *testing.T, url string, done <-chan error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if resp, err := get(t.Context(), url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case err := <-done:
			t.Fatalf("the workload command returned before it was ready: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never answered 200", url)
		}
	}
}
