package fakeprocessor_test

import (
	"context"
	"errors"
	"testing"

	"example.com/rampart/services/payment/internal/processor"
	"example.com/rampart/services/payment/internal/processor/fakeprocessor"
)

func charge(key, method string) processor.Charge {
	return processor.Charge{IdempotencyKey: key, PaymentMethod: method, Amount: 2700, Currency: "EUR"}
}

// outcome names what a call returned, to compare in tables.
func outcome(err error) string {
	var declined *processor.DeclinedError
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &declined):
		return "declined: " + declined.Reason
	case errors.Is(err, processor.ErrUnavailable):
		return "unavailable"
	default:
		return "error"
	}
}

func TestCharge(t *testing.T) {
	t.Parallel()
	otherAmount := charge("k1", "tok_visa")
	otherAmount.Amount++

	tests := []struct {
		name        string
		charges     []processor.Charge
		want        []string
		wantCharges int
	}{
		{"visa", []processor.Charge{charge("k1", "tok_visa")}, []string{"ok"}, 1},
		{"any other test card", []processor.Charge{charge("k1", "tok_mastercard")}, []string{"ok"}, 1},
		{"declined", []processor.Charge{charge("k1", "tok_declined")}, []string{"declined: card declined"}, 0},
		{
			name:        "replayed key charges once",
			charges:     []processor.Charge{charge("k1", "tok_visa"), charge("k1", "tok_visa")},
			want:        []string{"ok", "ok"},
			wantCharges: 1,
		},
		{
			name:    "replayed decline stays declined",
			charges: []processor.Charge{charge("k1", "tok_declined"), charge("k1", "tok_declined")},
			want:    []string{"declined: card declined", "declined: card declined"},
		},
		{
			name: "unavailable, then charged on retry",
			charges: []processor.Charge{
				charge("k1", "tok_unavailable"),
				charge("k1", "tok_unavailable"),
				charge("k1", "tok_unavailable"),
			},
			want:        []string{"unavailable", "ok", "ok"},
			wantCharges: 1,
		},
		{
			name:        "two keys, two charges",
			charges:     []processor.Charge{charge("k1", "tok_visa"), charge("k2", "tok_visa")},
			want:        []string{"ok", "ok"},
			wantCharges: 2,
		},
		{
			name:        "key reused for another amount",
			charges:     []processor.Charge{charge("k1", "tok_visa"), otherAmount},
			want:        []string{"ok", "error"},
			wantCharges: 1,
		},
		{"not a token", []processor.Charge{charge("k1", "4242424242424242")},
			[]string{"declined: unknown payment method"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := fakeprocessor.New()
			for i, c := range tt.charges {
				if got := outcome(p.Charge(t.Context(), c)); got != tt.want[i] {
					t.Errorf("charge %d: %s, want %s", i+1, got, tt.want[i])
				}
			}
			if n := p.Charges(); n != tt.wantCharges {
				t.Errorf("Charges = %d, want %d", n, tt.wantCharges)
			}
		})
	}
}

func TestChargeWithDoneContext(t *testing.T) {
	t.Parallel()
	p := fakeprocessor.New()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if got := outcome(p.Charge(ctx, charge("k1", "tok_visa"))); got != "unavailable" {
		t.Errorf("charge: %s, want unavailable", got)
	}
	if n := p.Charges(); n != 0 {
		t.Errorf("Charges = %d, want 0", n)
	}
}

func TestRefund(t *testing.T) {
	t.Parallel()
	p := fakeprocessor.New()
	for _, c := range []processor.Charge{charge("paid", "tok_visa"), charge("declined", "tok_declined")} {
		_ = p.Charge(t.Context(), c)
	}

	tests := []struct {
		key  string
		want string
	}{
		{"paid", "ok"},
		{"paid", "ok"}, // a replay
		{"declined", "error"},
		{"never-charged", "error"},
	}
	for _, tt := range tests {
		if got := outcome(p.Refund(t.Context(), tt.key)); got != tt.want {
			t.Errorf("Refund(%s): %s, want %s", tt.key, got, tt.want)
		}
	}
	if n := p.Refunds(); n != 1 {
		t.Errorf("Refunds = %d, want 1", n)
	}
}
