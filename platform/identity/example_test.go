package identity_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"example.com/rampart/platform/devpki"
	"example.com/rampart/platform/identity"
)

// staticFrom issues an SVID for name and wraps it with ca's bundle.
func staticFrom(ca *devpki.CA, name string) identity.Source {
	src, err := ca.Source(name, time.Hour)
	if err != nil {
		panic(err)
	}
	return src
}

// An HTTP server that only workloads of its trust domain can reach, and a
// client that only talks to the workload it expects.
func ExampleServerTLSConfig() {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	ca, err := devpki.NewCA(td)
	if err != nil {
		panic(err)
	}

	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	srv := &http.Server{
		TLSConfig:         identity.ServerTLSConfig(staticFrom(ca, "user")),
		ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			caller, err := identity.PeerIDFromTLS(r.TLS)
			if err != nil {
				http.Error(w, "unknown caller", http.StatusForbidden)
				return
			}
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			// The caller's ID comes from a verified certificate and is sent as plain text.
			fmt.Fprintf(w, "hello, %s", caller) //nolint:gosec // G705: plain text, not HTML.
		}),
	}
	go func() {
		if err := srv.ServeTLS(ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
			log.Print(err)
		}
	}()
	defer srv.Close()

	userID := spiffeid.RequireFromPath(td, "/user")
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig: identity.ClientTLSConfig(staticFrom(ca, "order"), userID),
	}}
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet,
		"https://"+ln.Addr().String()+"/", nil)
	if err != nil {
		panic(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		panic(err)
	}
	fmt.Println(string(body))
	fmt.Println(resp.TLS.PeerCertificates[0].URIs[0])
	// Output:
	// hello, spiffe://example.org/order
	// spiffe://example.org/user
}

// Credentials kept on disk, here by the development PKI, are loaded once
// and then followed as they rotate.
func ExampleNewFileSource() {
	dir, err := os.MkdirTemp("", "pki")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	td := spiffeid.RequireTrustDomainFromString("example.org")
	if err := devpki.Ensure(dir, td, "order"); err != nil {
		panic(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src, err := identity.NewFileSource(ctx, devpki.WorkloadFiles(dir, "order"), identity.FileOptions{
		OnError: func(err error) { log.Print(err) },
	})
	if err != nil {
		panic(err)
	}
	defer src.Close()

	svid, err := src.GetX509SVID()
	if err != nil {
		panic(err)
	}
	fmt.Println(svid.ID)
	// Output: spiffe://example.org/order
}
