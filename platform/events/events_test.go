package events_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"example.com/rampart/platform/events"
	"example.com/rampart/platform/events/eventstest"
	_ "example.com/rampart/proto/payment/v1" // links the payment events into the policy
)

func TestStreamName(t *testing.T) {
	t.Parallel()
	tests := []struct{ workload, want string }{
		{"order", "EVENTS_ORDER"},
		{"user", "EVENTS_USER"},
		{"fraud-check", "EVENTS_FRAUD_CHECK"},
	}
	for _, tt := range tests {
		if got := events.StreamName(tt.workload); got != tt.want {
			t.Errorf("StreamName(%q) = %q, want %q", tt.workload, got, tt.want)
		}
	}
}

func TestEnsureStream(t *testing.T) {
	t.Parallel()
	set := loadPolicy(t)
	srv := eventstest.NewServer(t)
	_, js := srv.Connect(t)

	// A stream left by an older release that published fewer events.
	_, err := js.CreateStream(t.Context(), jetstream.StreamConfig{
		Name:     events.StreamName("payment"),
		Subjects: []string{"payments.succeeded"},
		Storage:  jetstream.FileStorage,
	})
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		workload string
		want     []string
	}{
		{"order", []string{"orders.cancelled", "orders.created"}},
		{"payment", []string{"payments.failed", "payments.succeeded"}},
		{"user", []string{"users.session_revoked"}},
	}
	for _, tt := range tests {
		t.Run(tt.workload, func(t *testing.T) {
			t.Parallel()
			// Twice: the second call must change nothing and not fail.
			for range 2 {
				if err := events.EnsureStream(t.Context(), js, set, tt.workload); err != nil {
					t.Fatalf("EnsureStream: %v", err)
				}
			}
			stream, err := js.Stream(t.Context(), events.StreamName(tt.workload))
			if err != nil {
				t.Fatal(err)
			}
			cfg := stream.CachedInfo().Config
			got := slices.Sorted(slices.Values(cfg.Subjects))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("subjects (-want +got):\n%s", diff)
			}
			if cfg.Storage != jetstream.FileStorage || cfg.Duplicates != events.DuplicateWindow ||
				cfg.MaxAge != events.MaxAge || cfg.MaxBytes != events.MaxBytes ||
				cfg.Discard != jetstream.DiscardNew {
				t.Errorf("stream config %+v lacks the platform's settings", cfg)
			}
		})
	}

	err = events.EnsureStream(t.Context(), js, set, "gateway")
	if !errors.Is(err, events.ErrNoEvents) {
		t.Errorf("EnsureStream(gateway) = %v, want %v", err, events.ErrNoEvents)
	}
}
