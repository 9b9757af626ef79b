package txntoken

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"example.com/rampart/platform/jwks"
)

// The fuzz target verifies against a committed key set, used by nothing but
// these tests, at a fixed instant, so that the committed seeds include
// tokens that verify and the fuzzer can explore past the signature check.
const (
	fuzzKeys        = "testdata/test-keys.json"
	fuzzTrustDomain = "rampart.test"
	fuzzIssuer      = "spiffe://rampart.test/gateway"
)

var fuzzNow = time.Date(2026, time.January, 1, 0, 0, 0, 0, time.UTC)

// sentinels lists every error a failed verification may wrap.
var sentinels = []error{
	ErrTooLarge, ErrMalformed, ErrAlgorithm, ErrHeader, ErrType, ErrUnknownKey, ErrWeakKey,
	ErrSignature, ErrExpired, ErrNotYetValid, ErrLifetime, ErrIssuer, ErrAudience, ErrClaims,
}

func fuzzVerifier(tb testing.TB) *Verifier {
	tb.Helper()
	keys, err := jwks.LoadKeySet(tb.Context(), fuzzKeys, jwks.KeySetOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	cfg := VerifierConfig{Keys: keys, TrustDomain: fuzzTrustDomain, Issuer: fuzzIssuer}
	v, err := NewVerifier(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	v.now = func() time.Time { return fuzzNow }
	return v
}

// TestFuzzSeeds keeps the committed seeds useful: those named valid_* must
// verify, so that the fuzzer starts from tokens that reach the claim checks,
// and the others must not.
func TestFuzzSeeds(t *testing.T) {
	t.Parallel()
	v := fuzzVerifier(t)
	paths, err := filepath.Glob("testdata/fuzz/FuzzVerify/*")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no seeds: %v", err)
	}
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		_, quoted, _ := strings.Cut(strings.TrimSpace(string(data)), "\nstring(")
		raw, err := strconv.Unquote(strings.TrimSuffix(quoted, ")"))
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		_, err = v.Verify(t.Context(), raw)
		if valid := strings.HasPrefix(filepath.Base(path), "valid_"); valid != (err == nil) {
			t.Errorf("%s: Verify() error = %v", filepath.Base(path), err)
		}
	}
}

func FuzzVerify(f *testing.F) {
	v := fuzzVerifier(f)
	f.Fuzz(func(t *testing.T, raw string) {
		tok, err := v.Verify(t.Context(), raw)
		if err != nil {
			if tok != nil {
				t.Fatalf("token %+v returned with error %v", tok, err)
			}
			matched := 0
			for _, s := range sentinels {
				if errors.Is(err, s) {
					matched++
				}
			}
			if matched != 1 {
				t.Fatalf("error %v wraps %d sentinels, want exactly 1", err, matched)
			}
			return
		}

		c := tok.Claims
		switch {
		case tok.Raw != raw || len(raw) > MaxSize:
			t.Fatalf("accepted %d bytes, returned %d", len(raw), len(tok.Raw))
		case c.Subject == "" || c.ID == "" || c.Workload == "":
			t.Fatalf("accepted a token without sub, txn or req_wl: %+v", c)
		case c.Expiry.Sub(c.IssuedAt) > MaxLifetime || !c.Expiry.After(c.IssuedAt):
			t.Fatalf("accepted a lifetime of %v", c.Expiry.Sub(c.IssuedAt))
		case c.Expiry.Before(fuzzNow.Add(-DefaultLeeway)):
			t.Fatalf("accepted a token that expired at %v", c.Expiry)
		case c.IssuedAt.After(fuzzNow.Add(DefaultLeeway)):
			t.Fatalf("accepted a token issued at %v", c.IssuedAt)
		}
	})
}
