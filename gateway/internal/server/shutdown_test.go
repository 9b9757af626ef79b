package server

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"example.com/rampart/gateway/internal/proxy"
)

// TestShutdownEndsStreams: at shutdown, a call that would run on, as a
// WatchOrder stream does, sees its context end after the grace period
// and answers, so that the client reads a proper end rather than a cut
// connection, and the server stops well before the shutdown gives up.
func TestShutdownEndsStreams(t *testing.T) {
	t.Parallel()
	started := make(chan struct{})
	srv := &http.Server{
		ReadHeaderTimeout: time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, "update\n")
			w.(http.Flusher).Flush()
			close(started)
			<-r.Context().Done() // a stream waits for changes until its call ends
			// The cause tells the proxy to answer Unavailable, not Canceled.
			_, _ = io.WriteString(w, "end: "+context.Cause(r.Context()).Error()+"\n")
		}),
	}
	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- serveUntil(ctx, srv, ln, false) }()

	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+ln.Addr().String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	<-started
	stop()
	begun := time.Now()

	var lines []string
	scanner := bufio.NewScanner(resp.Body)
	for scanner.Scan() {
		lines = append(lines, scanner.Text())
	}
	if err := scanner.Err(); err != nil {
		t.Fatalf("reading the stream: %v (lines %q)", err, lines)
	}
	if want := "end: " + proxy.ErrShuttingDown.Error(); len(lines) != 2 || lines[1] != want {
		t.Errorf("stream read %q, want it to end with the handler's last line", lines)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("serveUntil: %v", err)
		}
	case <-time.After(streamGrace + 5*time.Second):
		t.Fatal("serveUntil did not return")
	}
	if took := time.Since(begun); took > streamGrace+2*time.Second {
		t.Errorf("shutdown took %v with a stream open, want about %v", took, streamGrace)
	}
}
