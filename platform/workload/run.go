package workload

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"time"

	"golang.org/x/sync/errgroup"
)

// Run serves the gRPC and admin ports and runs the background tasks until
// ctx ends or one of them fails, then shuts everything down gracefully
// within Config.ShutdownTimeout. It returns nil after a clean shutdown
// caused by ctx.
func (w *Workload) Run(ctx context.Context) error {
	group, groupCtx := errgroup.WithContext(ctx)

	if w.grpcServer != nil {
		group.Go(func() error {
			if err := w.grpcServer.Serve(w.grpcListener); err != nil {
				return fmt.Errorf("serving gRPC: %w", err)
			}
			return nil
		})
	}
	group.Go(func() error {
		if err := w.admin.Serve(w.adminLn); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serving admin HTTP: %w", err)
		}
		return nil
	})
	taskCtx, stopTasks := context.WithCancel(context.WithoutCancel(groupCtx))
	defer stopTasks()
	for _, t := range w.tasks {
		group.Go(func() error {
			if err := t.fn(taskCtx); err != nil && taskCtx.Err() == nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
			return nil
		})
	}
	w.serving.Store(true)
	w.Logger.Info("serving", "grpc_addr", w.addr(w.grpcListener), "admin_addr", w.AdminAddr())

	// Wait for a signal or a failure, then shut down with a fresh deadline:
	// ctx is already done and would cut the grace period short.
	<-groupCtx.Done()
	w.serving.Store(false)
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.Config.ShutdownTimeout)
	defer cancel()
	w.Logger.Info("shutting down", "cause", context.Cause(groupCtx).Error())

	w.stopGRPC(shutdownCtx)
	adminErr := w.admin.Shutdown(shutdownCtx)
	stopTasks()
	runErr := group.Wait()
	closeErr := w.Close(shutdownCtx)
	if runErr == nil && ctx.Err() == nil {
		runErr = errors.New("stopped without a cause")
	}
	return errors.Join(runErr, adminErr, closeErr)
}

// stopGRPC lets calls in flight finish, then cuts off whatever is left when
// the deadline comes.
func (w *Workload) stopGRPC(ctx context.Context) {
	if w.grpcServer == nil {
		return
	}
	done := make(chan struct{})
	go func() {
		w.grpcServer.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		w.grpcServer.Stop()
	}
}

// Close releases what Start set up, last first. Run calls it; call it
// yourself only when Run is never reached. Closing twice does nothing.
func (w *Workload) Close(ctx context.Context) error {
	var errs []error
	for _, fn := range slices.Backward(w.closers) {
		errs = append(errs, fn(ctx))
	}
	w.closers = nil
	for _, ln := range []interface{ Close() error }{w.grpcListener, w.adminLn} {
		if ln != nil {
			_ = ln.Close()
		}
	}
	return errors.Join(errs...)
}

func (w *Workload) serveReady(rw http.ResponseWriter, r *http.Request) {
	if !w.serving.Load() {
		http.Error(rw, "not serving", http.StatusServiceUnavailable)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if w.NATS != nil && !w.NATS.IsConnected() {
		http.Error(rw, "not connected to NATS", http.StatusServiceUnavailable)
		return
	}
	for _, check := range w.readiness {
		if err := check.fn(ctx); err != nil {
			http.Error(rw, check.name+" not ready", http.StatusServiceUnavailable)
			return
		}
	}
	// A failed write means the prober has gone; there is no one left to tell.
	_, _ = rw.Write([]byte("ready\n"))
}

func (w *Workload) addr(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return ln.Addr().String()
}
