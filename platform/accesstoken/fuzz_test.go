package accesstoken

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

// The fuzz targets verify against a committed key set, used by nothing but
// these tests, at a fixed instant, so that the committed seeds include
// tokens that verify and the fuzzer can explore past the signature check.
const (
	fuzzKeys     = "testdata/test-keys.json"
	fuzzIssuer   = "https://issuer.test"
	fuzzAudience = "https://api.test"
)

var fuzzNow = time.Date(2026, time.January, 1, 0, 0, 0, 0, time.UTC)

// sentinels lists every error a failed verification may wrap.
var sentinels = []error{
	ErrTooLarge, ErrMalformed, ErrAlgorithm, ErrHeader, ErrType, ErrUnknownKey, ErrWeakKey,
	ErrSignature, ErrExpired, ErrNotYetValid, ErrIssuer, ErrAudience, ErrSubject,
}

func fuzzVerifier(tb testing.TB) *Verifier {
	tb.Helper()
	keys, err := jwks.LoadKeySet(tb.Context(), fuzzKeys, jwks.KeySetOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	v, err := NewVerifier(VerifierConfig{Issuer: fuzzIssuer, Audience: fuzzAudience, Keys: keys})
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
		claims, err := v.Verify(t.Context(), raw)
		if err != nil {
			if claims != nil {
				t.Fatalf("claims %+v returned with error %v", claims, err)
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

		if len(raw) > DefaultMaxSize || strings.Count(raw, ".") != 2 {
			t.Fatalf("accepted a token of %d bytes and %d dots", len(raw), strings.Count(raw, "."))
		}
		switch {
		case claims.Issuer != fuzzIssuer:
			t.Fatalf("accepted issuer %q", claims.Issuer)
		case claims.Subject == "":
			t.Fatal("accepted a token without subject")
		case claims.Expiry.Before(fuzzNow.Add(-DefaultLeeway)):
			t.Fatalf("accepted a token that expired at %v", claims.Expiry)
		case claims.IssuedAt.After(fuzzNow.Add(DefaultLeeway)):
			t.Fatalf("accepted a token issued at %v", claims.IssuedAt)
		}
	})
}

func FuzzParseAuthorization(f *testing.F) {
	f.Fuzz(func(t *testing.T, header string) {
		token, err := ParseAuthorization(header)
		if err != nil {
			if token != "" {
				t.Fatalf("token %q returned with error %v", token, err)
			}
			known := errors.Is(err, ErrNoToken) || errors.Is(err, ErrAuthorization) ||
				errors.Is(err, ErrTooLarge)
			if !known {
				t.Fatalf("error %v wraps no sentinel", err)
			}
			return
		}
		scheme, rest, _ := strings.Cut(header, " ")
		if !strings.EqualFold(scheme, "bearer") || rest != token {
			t.Fatalf("ParseAuthorization(%q) = %q", header, token)
		}
		if token == "" || len(token) > MaxTokenSize || !isToken68(token) {
			t.Fatalf("returned token %q", token)
		}
		if strings.ContainsAny(token, " \t\r\n\x00,\"") {
			t.Fatalf("returned token %q with separators", token)
		}
	})
}
