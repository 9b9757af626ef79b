package workload_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"example.com/rampart/platform/devpki"
	"example.com/rampart/platform/jwks/jwkstest"
	"example.com/rampart/platform/workload"
)

// config returns a configuration for the workload name with a fresh dev
// PKI, no NATS, and ports picked by the system.
func config(t *testing.T, name string) workload.Config {
	t.Helper()
	dir := t.TempDir()
	td := spiffeid.RequireTrustDomainFromString(workload.DefaultTrustDomain)
	if err := devpki.Ensure(dir, td, "order", "user"); err != nil {
		t.Fatal(err)
	}
	files := devpki.WorkloadFiles(dir, name)
	keys, _ := jwkstest.KeySet(t)
	cfg := workload.DefaultConfig(name, "127.0.0.1:0", "127.0.0.1:0")
	cfg.CertFile, cfg.KeyFile, cfg.BundleFile = files.Cert, files.Key, files.Bundle
	cfg.NATSURL = ""
	cfg.DataDir = t.TempDir()
	cfg.TxnKeys = keys
	cfg.ShutdownTimeout = 2 * time.Second
	return cfg
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestRunServesAdminAndStopsCleanly(t *testing.T) {
	t.Parallel()
	cfg := config(t, "order")
	w, err := workload.Start(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	w.GRPC() // a service registers its handlers here
	ready := make(chan struct{})
	w.AddReadiness("test", func(context.Context) error {
		select {
		case <-ready:
			return nil
		default:
			return context.DeadlineExceeded
		}
	})

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	base := "http://" + w.AdminAddr()

	deadline := time.Now().Add(5 * time.Second)
	for code, _ := get(t, base+"/healthz"); code != http.StatusOK; code, _ = get(t, base+"/healthz") {
		if time.Now().After(deadline) {
			t.Fatal("/healthz never answered 200")
		}
		time.Sleep(10 * time.Millisecond)
	}
	code, body := get(t, base+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "test") {
		t.Errorf("/readyz with a failing check: %d %q, want 503 naming the check", code, body)
	}
	close(ready)
	if code, _ := get(t, base+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz once every check passes: %d, want 200", code)
	}
	code, body = get(t, base+"/metrics")
	if code != http.StatusOK || !strings.Contains(body, "# TYPE") {
		t.Errorf("/metrics: %d, want Prometheus text", code)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run after cancel: %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if err := w.Close(context.Background()); err != nil {
		t.Errorf("a second Close: %v", err)
	}
}

func TestStartRefusesAnotherWorkloadsSVID(t *testing.T) {
	t.Parallel()
	cfg := config(t, "order")
	user := config(t, "user")
	cfg.CertFile, cfg.KeyFile, cfg.BundleFile = user.CertFile, user.KeyFile, user.BundleFile
	_, err := workload.Start(t.Context(), cfg)
	if err == nil || !strings.Contains(err.Error(), "spiffe://rampart.local/user") {
		t.Fatalf("Start with the user's SVID as order: %v, want a refusal naming the SVID", err)
	}
}

func TestTaskFailureStopsTheWorkload(t *testing.T) {
	t.Parallel()
	w, err := workload.Start(t.Context(), config(t, "order"))
	if err != nil {
		t.Fatal(err)
	}
	w.Go("doomed", func(context.Context) error { return io.ErrUnexpectedEOF })
	err = w.Run(t.Context())
	if err == nil || !strings.Contains(err.Error(), "doomed") {
		t.Fatalf("Run = %v, want the failed task's error", err)
	}
}
