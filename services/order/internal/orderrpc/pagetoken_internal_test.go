package orderrpc

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"example.com/rampart/services/order/internal/orderstore"
)

const fuzzUser = "0190a5c4-7b1e-7c3a-9f2e-3d4c5b6a7980"

func TestPageTokenRoundTrip(t *testing.T) {
	t.Parallel()
	want := orderstore.Cursor{
		CreateTime: time.Date(2026, 12, 1, 9, 30, 0, 123456789, time.UTC),
		OrderID:    "0190a5c4-7b1e-7c3a-9f2e-3d4c5b6a7981",
	}
	token, err := encodePageToken(fuzzUser, want)
	if err != nil {
		t.Fatal(err)
	}
	if len(token) > 128 {
		t.Errorf("token of %d characters is longer than ListOrdersRequest allows", len(token))
	}
	got, err := decodePageToken(token, fuzzUser)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&want, got); diff != "" {
		t.Errorf("decoded cursor (-want +got):\n%s", diff)
	}
	if _, err := decodePageToken(token, "0190a5c4-7b1e-7c3a-9f2e-3d4c5b6a7982"); !errors.Is(err, errInvalidPageToken) {
		t.Errorf("another user's decode = %v, want %v", err, errInvalidPageToken)
	}
}

// FuzzDecodePageToken feeds page tokens, which clients control, to the
// decoder: it must never panic, must accept only what it can re-encode,
// and must refuse every token for any user but the one it names.
func FuzzDecodePageToken(f *testing.F) {
	valid, err := encodePageToken(fuzzUser, orderstore.Cursor{
		CreateTime: time.Unix(1_800_000_000, 5).UTC(), OrderID: "0190a5c4-7b1e-7c3a-9f2e-3d4c5b6a7981",
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add("")
	f.Fuzz(func(t *testing.T, token string) {
		c, err := decodePageToken(token, fuzzUser)
		if err != nil {
			if !errors.Is(err, errInvalidPageToken) {
				t.Fatalf("decode error %v is not %v", err, errInvalidPageToken)
			}
			return
		}
		again, err := encodePageToken(fuzzUser, *c)
		if err != nil {
			t.Fatalf("re-encoding a decoded cursor: %v", err)
		}
		back, err := decodePageToken(again, fuzzUser)
		if err != nil {
			t.Fatalf("decoding a re-encoded cursor: %v", err)
		}
		if diff := cmp.Diff(c, back); diff != "" {
			t.Fatalf("cursor changed in a round trip (-first +second):\n%s", diff)
		}
		if _, err := decodePageToken(token, "someone-else"); err == nil {
			t.Fatal("a token was accepted for another user")
		}
	})
}
