package issuer

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	josejson "github.com/go-jose/go-jose/v4/json"

	"example.com/rampart/platform/jwks"
)

// fakeIssuer serves a discovery document and a JWKS on 127.0.0.1; it
// answers 503 to the first failures requests for either.
type fakeIssuer struct {
	url      string
	issuer   string // the issuer the document names; url by default
	jwksURI  string // the document's jwks_uri; url + "/jwks" by default
	keys     any
	failures atomic.Int64
}

func newFakeIssuer(t *testing.T, keys any, change func(*fakeIssuer)) *fakeIssuer {
	t.Helper()
	fi := &fakeIssuer{keys: keys}
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	fi.url, fi.issuer, fi.jwksURI = srv.URL, srv.URL, srv.URL+"/jwks"
	if change != nil {
		change(fi)
	}
	serve := func(doc func() any) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			if fi.failures.Add(-1) >= 0 {
				http.Error(w, "starting", http.StatusServiceUnavailable)
				return
			}
			_ = json.NewEncoder(w).Encode(doc())
		}
	}
	mux.Handle("GET /.well-known/openid-configuration", serve(func() any {
		return map[string]string{"issuer": fi.issuer, "jwks_uri": fi.jwksURI}
	}))
	mux.Handle("GET /jwks", serve(func() any { return fi.keys }))
	return fi
}

func publicSet(t *testing.T) (jose.JSONWebKey, any) {
	t.Helper()
	key, err := jwks.GenerateKey(jose.ES256)
	if err != nil {
		t.Fatal(err)
	}
	return key, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{key.Public()}}
}

// TestDiscoverWaitsForTheIssuer starts the gateway before its issuer
// answers: Discover retries, reports each failure, and returns the keys.
func TestDiscoverWaitsForTheIssuer(t *testing.T) {
	t.Parallel()
	key, set := publicSet(t)
	fi := newFakeIssuer(t, set, nil)
	fi.failures.Store(2)
	var reported atomic.Int64
	keys, err := Discover(t.Context(), Config{
		URL: fi.url, OnError: func(error) { reported.Add(1) },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(keys.Close)
	if _, err := keys.Key(t.Context(), key.KeyID); err != nil {
		t.Errorf("Key() error = %v", err)
	}
	if reported.Load() < 2 {
		t.Errorf("%d failures reported, want at least 2", reported.Load())
	}
}

// TestDiscoverRefuses gives Discover issuers it must not trust. The
// mistakes retrying cannot cure fail at once; a document that speaks for
// another issuer is retried, as a deployment in progress might serve one,
// and fails when the context ends.
func TestDiscoverRefuses(t *testing.T) {
	t.Parallel()
	_, set := publicSet(t)
	tests := []struct {
		name    string
		change  func(*fakeIssuer)
		url     func(*fakeIssuer) string
		keys    any
		wantErr error  // matched with errors.Is, if set
		wantMsg string // held by the error, if set
		retried bool
	}{
		{name: "plain HTTP beyond loopback", url: func(*fakeIssuer) string { return "http://issuer.example" },
			wantErr: ErrInsecure},
		{name: "not HTTP", url: func(*fakeIssuer) string { return "ftp://127.0.0.1/" },
			wantMsg: "unsupported scheme"},
		{name: "jwks_uri over plain HTTP beyond loopback",
			change: func(fi *fakeIssuer) { fi.jwksURI = "http://keys.example/jwks" }, wantErr: ErrInsecure},
		{name: "another issuer's document", change: func(fi *fakeIssuer) { fi.issuer = "https://evil.example" },
			wantMsg: "names issuer", retried: true},
		{name: "no jwks_uri", change: func(fi *fakeIssuer) { fi.jwksURI = "" },
			wantMsg: "no jwks_uri", retried: true},
		{name: "weak key in the set", keys: weakSet(t), wantErr: jwks.ErrWeakKey},
		{name: "secret key in the set",
			keys:    map[string]any{"keys": []any{map[string]string{"kty": "oct", "kid": "s", "k": "c2VjcmV0"}}},
			wantErr: jwks.ErrInvalidKeySet},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			keys := tt.keys
			if keys == nil {
				keys = set
			}
			fi := newFakeIssuer(t, keys, tt.change)
			url := fi.url
			if tt.url != nil {
				url = tt.url(fi)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 700*time.Millisecond)
			defer cancel()
			start := time.Now()
			_, err := Discover(ctx, Config{URL: url})
			switch {
			case err == nil:
				t.Fatal("Discover() succeeded")
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
				t.Errorf("Discover() error = %v, want %v", err, tt.wantErr)
			case tt.wantMsg != "" && !strings.Contains(err.Error(), tt.wantMsg):
				t.Errorf("Discover() error = %v, want one saying %q", err, tt.wantMsg)
			}
			if retried := time.Since(start) >= 600*time.Millisecond; retried != tt.retried {
				t.Errorf("Discover() retried until the context ended: %t, want %t", retried, tt.retried)
			}
		})
	}
}

// weakSet is a key set holding a 1024-bit RSA key, which Discover must refuse.
func weakSet(t *testing.T) any {
	t.Helper()
	//nolint:gosec // G403: the weak key proves that weak keys are refused
	key, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	return jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "weak", Use: "sig"}}}
}

// FuzzParseDiscovery reads any document an issuer, or whoever answers in
// its place, could serve: it is refused, or it names the issuer and a
// jwks_uri.
func FuzzParseDiscovery(f *testing.F) {
	const issuer = "https://issuer.example"
	f.Add([]byte(`{"issuer":"https://issuer.example","jwks_uri":"https://issuer.example/jwks"}`))
	f.Add([]byte(`{"issuer":"https://evil.example","jwks_uri":"https://evil.example/jwks"}`))
	f.Add([]byte(`{"issuer":"https://issuer.example","jwks_uri":""}`))
	f.Add([]byte(`{"issuer":"https://issuer.example","issuer":"https://evil.example"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		uri, err := parseDiscovery(strings.NewReader(string(doc)), issuer)
		if err != nil {
			if uri != "" {
				t.Errorf("parseDiscovery() = %q with error %v", uri, err)
			}
			return
		}
		if uri == "" {
			t.Error("parseDiscovery() accepted a document without jwks_uri")
		}
		var members map[string]any
		if err := josejson.NewDecoder(strings.NewReader(string(doc))).Decode(&members); err != nil {
			t.Fatalf("parseDiscovery() accepted a document that is not an object: %v", err)
		}
		if members["issuer"] != issuer {
			t.Errorf("parseDiscovery() accepted a document naming %v", members["issuer"])
		}
	})
}
