package server

import (
	"encoding/binary"
	"net/http"
	"strings"
	"testing"
)

// TestUnreadableBodies: a body over the limit, or an envelope cut short,
// is the caller's mistake: 400 invalid_argument, never the rate limit's
// 429 nor an internal error, and no workload is called.
func TestUnreadableBodies(t *testing.T) {
	t.Parallel()
	f := newFixture(t, options{})
	access, _ := f.issuer.login(t)
	huge := `{"items":[{"sku":"` + strings.Repeat("A", f.cfg.MaxBodyBytes) + `","quantity":1}]}`

	// A Connect streaming request whose envelope promises more bytes than
	// it holds.
	const message = `{"orderId":"01a24282-96ec-7e4e-9a08-5394c212e307"}`
	envelope := binary.BigEndian.AppendUint32([]byte{0}, uint32(len(message)+5))
	envelope = append(envelope, message...)

	tests := []struct {
		name, path, body, contentType, wantBody string
	}{
		{"body over the limit", "/order.v1.CatalogService/ListProducts", huge, "application/json",
			`{"code":"invalid_argument","message":"request too large"}`},
		{"envelope cut short", "/order.v1.OrderService/WatchOrder", string(envelope),
			"application/connect+json",
			`{"error":{"code":"invalid_argument","message":"malformed request"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := f.post(t, tt.path, tt.body, http.Header{
				"Content-Type": {tt.contentType}, "Authorization": {"Bearer " + access},
			})
			if a.Status == http.StatusTooManyRequests || a.Header.Get("Retry-After") != "" {
				t.Errorf("answered like the rate limit: %d, Retry-After %q",
					a.Status, a.Header.Get("Retry-After"))
			}
			if !strings.Contains(a.Body, tt.wantBody) {
				t.Errorf("status %d, body %q, want it to hold %s", a.Status, a.Body, tt.wantBody)
			}
		})
	}
	if calls := f.up.count(); calls != 0 {
		t.Errorf("%d calls reached a workload", calls)
	}
}
