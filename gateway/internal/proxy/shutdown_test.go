package proxy

import (
	"context"
	"errors"
	"testing"

	"connectrpc.com/connect/v2"
)

// TestShutdownError: a call that the gateway's shutdown ended fails as
// Unavailable, so that a client calls again; one that its client or its
// deadline ended keeps its own code.
func TestShutdownError(t *testing.T) {
	t.Parallel()
	upstream := connect.NewError(connect.CodeCanceled, "call canceled")

	shutdown, end := context.WithCancelCause(t.Context())
	end(ErrShuttingDown)
	if got := connect.CodeOf(shutdownError(shutdown, upstream)); got != connect.CodeUnavailable {
		t.Errorf("a call ended by the shutdown: %v, want unavailable", got)
	}
	child, cancel := context.WithCancel(shutdown)
	defer cancel()
	if got := connect.CodeOf(shutdownError(child, upstream)); got != connect.CodeUnavailable {
		t.Errorf("a call under one ended by the shutdown: %v, want unavailable", got)
	}

	gone, leave := context.WithCancel(t.Context())
	leave()
	if got := shutdownError(gone, upstream); !errors.Is(got, upstream) {
		t.Errorf("a call its client left: %v, want the call's own error", got)
	}
	if got := shutdownError(shutdown, nil); got != nil {
		t.Errorf("a call that succeeded: %v, want nil", got)
	}
}
