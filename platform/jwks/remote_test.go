package jwks

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// jwksServer serves whatever document it is given over TLS on 127.0.0.1
// and counts requests.
type jwksServer struct {
	*httptest.Server
	hits   atomic.Int64
	mu     sync.Mutex
	body   []byte
	status int
}

func newJWKSServer(t *testing.T, body []byte) *jwksServer {
	t.Helper()
	s := &jwksServer{body: body, status: http.StatusOK}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s.hits.Add(1)
		s.mu.Lock()
		body, status := s.body, s.status
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) serve(status int, body []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status, s.body = status, body
}

// fakeClock is a settable clock for the refresh rate limit.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newTestRemote(t *testing.T, srv *jwksServer, opts RemoteOptions) (*Remote, *fakeClock) {
	t.Helper()
	r := NewRemote(srv.URL, srv.Client(), opts)
	clock := &fakeClock{now: time.Unix(1_800_000_000, 0)}
	r.now = clock.Now
	t.Cleanup(r.Close)
	return r, clock
}

// asIs is a key that publicDoc serializes whole, private parts included.
type asIs struct{ jose.JSONWebKey }

func publicDoc(t testing.TB, keys ...any) []byte {
	t.Helper()
	var doc struct {
		Keys []any `json:"keys"`
	}
	for _, k := range keys {
		if jwk, ok := k.(jose.JSONWebKey); ok {
			k = jwk.Public()
		}
		doc.Keys = append(doc.Keys, k)
	}
	data, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func newKey(t testing.TB, alg jose.SignatureAlgorithm) jose.JSONWebKey {
	t.Helper()
	k, err := GenerateKey(alg)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestRemoteRefreshRateLimit(t *testing.T) {
	t.Parallel()
	key := newKey(t, jose.ES256)
	srv := newJWKSServer(t, publicDoc(t, key))
	r, clock := newTestRemote(t, srv, RemoteOptions{})

	burst := func() {
		t.Helper()
		var wg sync.WaitGroup
		for range 1000 {
			wg.Go(func() {
				kid := rand.Text()
				_, err := r.Key(t.Context(), kid)
				if !errors.Is(err, ErrUnknownKey) {
					t.Errorf("Key(random kid) error = %v, want ErrUnknownKey", err)
				}
			})
		}
		wg.Wait()
	}

	burst()
	if got := srv.hits.Load(); got != 1 {
		t.Fatalf("1000 unknown kids caused %d fetches, want 1", got)
	}
	if _, err := r.Key(t.Context(), key.KeyID); err != nil {
		t.Errorf("Key(known kid) error = %v", err)
	}

	clock.Advance(DefaultMinRefreshInterval - time.Second)
	burst()
	if got := srv.hits.Load(); got != 1 {
		t.Fatalf("a burst within the interval caused %d fetches in all, want 1", got)
	}

	clock.Advance(time.Second)
	burst()
	if got := srv.hits.Load(); got != 2 {
		t.Fatalf("a burst after the interval brought fetches to %d, want 2", got)
	}
}

func TestRemoteFindsNewKeyAfterInterval(t *testing.T) {
	t.Parallel()
	old, next := newKey(t, jose.ES256), newKey(t, jose.EdDSA)
	srv := newJWKSServer(t, publicDoc(t, old))
	r, clock := newTestRemote(t, srv, RemoteOptions{})
	if _, err := r.Key(t.Context(), old.KeyID); err != nil {
		t.Fatal(err)
	}

	srv.serve(http.StatusOK, publicDoc(t, old, next))
	if _, err := r.Key(t.Context(), next.KeyID); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("Key(new kid) within the interval error = %v, want ErrUnknownKey", err)
	}
	clock.Advance(DefaultMinRefreshInterval)
	got, err := r.Key(t.Context(), next.KeyID)
	if err != nil {
		t.Fatalf("Key(new kid) after the interval error = %v", err)
	}
	if !got.IsPublic() || got.KeyID != next.KeyID {
		t.Errorf("Key() = %+v, want the public half of the new key", got)
	}
	if got := srv.hits.Load(); got != 2 {
		t.Errorf("fetches = %d, want 2", got)
	}
}

func TestRemoteFirstFetchFails(t *testing.T) {
	t.Parallel()
	srv := newJWKSServer(t, []byte("down"))
	srv.serve(http.StatusInternalServerError, []byte("down"))
	var reported atomic.Int64
	r, _ := newTestRemote(t, srv, RemoteOptions{OnError: func(error) { reported.Add(1) }})

	_, err := r.Key(t.Context(), "kid")
	if !errors.Is(err, ErrUnknownKey) || !strings.Contains(err.Error(), "500") {
		t.Errorf("Key() error = %v, want ErrUnknownKey naming the failed fetch", err)
	}
	// Within the interval, the error still says why there are no keys.
	_, err = r.Key(t.Context(), "kid")
	if !errors.Is(err, ErrUnknownKey) || !strings.Contains(err.Error(), "500") {
		t.Errorf("second Key() error = %v, want ErrUnknownKey naming the failed fetch", err)
	}
	if got := reported.Load(); got != 1 {
		t.Errorf("OnError called %d times, want 1", got)
	}

	unreachable := NewRemote("ftp://127.0.0.1/keys", nil, RemoteOptions{})
	t.Cleanup(unreachable.Close)
	if _, err := unreachable.Key(t.Context(), "kid"); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("Key() with a non-HTTP URL error = %v, want ErrUnknownKey", err)
	}
}

// TestRemoteBeforeItsFirstSet is a workload asked to verify a token before
// the server of its keys is up: once the server answers, the next lookup
// after a short pause finds the key, without waiting for the refresh
// interval meant for sets already known.
func TestRemoteBeforeItsFirstSet(t *testing.T) {
	t.Parallel()
	key := newKey(t, jose.ES256)
	srv := newJWKSServer(t, nil)
	srv.serve(http.StatusServiceUnavailable, nil)
	r, clock := newTestRemote(t, srv, RemoteOptions{MinRefreshInterval: time.Hour})

	if _, err := r.Key(t.Context(), key.KeyID); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("Key() while the server is down: %v, want ErrUnknownKey", err)
	}
	srv.serve(http.StatusOK, publicDoc(t, key))
	if _, err := r.Key(t.Context(), key.KeyID); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("Key() at once again: %v, want ErrUnknownKey without a fetch", err)
	}
	clock.Advance(time.Second)
	if _, err := r.Key(t.Context(), key.KeyID); err != nil {
		t.Fatalf("Key() a second after the server came up: %v", err)
	}
	if hits := srv.hits.Load(); hits != 2 {
		t.Errorf("%d fetches, want 2", hits)
	}
}

func TestRemoteFetch(t *testing.T) {
	t.Parallel()
	key := newKey(t, jose.ES256)
	//nolint:gosec // G403: the weak key proves that weak keys are refused
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	srv := newJWKSServer(t, publicDoc(t, key))
	r, clock := newTestRemote(t, srv, RemoteOptions{})
	if err := r.Fetch(t.Context()); err != nil {
		t.Fatalf("Fetch() error = %v", err)
	}
	if _, ok := r.lookup(key.KeyID); !ok {
		t.Error("Fetch() did not store the set")
	}

	// A fetch made at start-up counts against the interval: the unknown
	// kids that follow cause no second one.
	if _, err := r.Key(t.Context(), "unknown"); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("Key(unknown) error = %v, want ErrUnknownKey", err)
	}
	if got := srv.hits.Load(); got != 1 {
		t.Errorf("fetches = %d, want 1", got)
	}

	srv.serve(http.StatusOK, publicDoc(t, key, jose.JSONWebKey{Key: weak.Public(), KeyID: "weak"}))
	clock.Advance(time.Second)
	err = r.Fetch(t.Context())
	if !errors.Is(err, ErrInvalidKeySet) || !errors.Is(err, ErrWeakKey) {
		t.Errorf("Fetch() of a set with a weak key error = %v, want ErrInvalidKeySet, ErrWeakKey", err)
	}

	srv.serve(http.StatusServiceUnavailable, nil)
	if err := r.Fetch(t.Context()); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("Fetch() from a failing server error = %v, want the status", err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := r.Fetch(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Fetch(canceled) error = %v, want context.Canceled", err)
	}
}

func TestRemoteSizeCap(t *testing.T) {
	t.Parallel()
	key := newKey(t, jose.ES256)
	doc := publicDoc(t, key)
	pad := func(n int) []byte {
		spaces := bytes.Repeat([]byte(" "), n-len(doc))
		return slices.Concat(doc[:len(doc)-1], spaces, []byte("}"))
	}

	atLimit := newJWKSServer(t, pad(DefaultMaxResponseSize))
	r, _ := newTestRemote(t, atLimit, RemoteOptions{})
	if _, err := r.Key(t.Context(), key.KeyID); err != nil {
		t.Errorf("Key() with a %d-byte document error = %v", DefaultMaxResponseSize, err)
	}

	over := newJWKSServer(t, pad(DefaultMaxResponseSize+1))
	r, _ = newTestRemote(t, over, RemoteOptions{})
	_, err := r.Key(t.Context(), key.KeyID)
	if !errors.Is(err, ErrTooLarge) || !errors.Is(err, ErrUnknownKey) {
		t.Errorf("Key() of an oversized set error = %v, want ErrUnknownKey, ErrTooLarge", err)
	}
}

func TestRemoteKeepsLastGoodSet(t *testing.T) {
	t.Parallel()
	key := newKey(t, jose.ES256)
	srv := newJWKSServer(t, publicDoc(t, key))
	errs := make(chan error, 1)
	r, clock := newTestRemote(t, srv, RemoteOptions{OnError: func(err error) { errs <- err }})
	if _, err := r.Key(t.Context(), key.KeyID); err != nil {
		t.Fatal(err)
	}

	srv.serve(http.StatusOK, publicDoc(t, asIs{key})) // private key material
	clock.Advance(DefaultMinRefreshInterval)
	if _, err := r.Key(t.Context(), "unknown"); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("Key(unknown) error = %v, want ErrUnknownKey", err)
	}
	if err := <-errs; !errors.Is(err, ErrInvalidKeySet) {
		t.Errorf("OnError(%v), want ErrInvalidKeySet", err)
	}
	if _, err := r.Key(t.Context(), key.KeyID); err != nil {
		t.Errorf("Key(known) after a refused refresh error = %v", err)
	}
}

func TestRemoteStartRefreshesInBackground(t *testing.T) {
	t.Parallel()
	old, next := newKey(t, jose.ES256), newKey(t, jose.ES256)
	srv := newJWKSServer(t, publicDoc(t, old))
	r, _ := newTestRemote(t, srv, RemoteOptions{RefreshInterval: 10 * time.Millisecond})
	r.Start(t.Context())

	deadline := time.Now().Add(5 * time.Second)
	for _, ok := r.lookup(old.KeyID); !ok; _, ok = r.lookup(old.KeyID) {
		if time.Now().After(deadline) {
			t.Fatal("Start did not fetch the set")
		}
		time.Sleep(time.Millisecond)
	}
	srv.serve(http.StatusOK, publicDoc(t, next))
	for _, ok := r.lookup(next.KeyID); !ok; _, ok = r.lookup(next.KeyID) {
		if time.Now().After(deadline) {
			t.Fatal("the background refresh did not pick up the new key")
		}
		time.Sleep(time.Millisecond)
	}

	r.Close()
	stopped := srv.hits.Load()
	time.Sleep(50 * time.Millisecond)
	if got := srv.hits.Load(); got != stopped {
		t.Errorf("fetches went on after Close: %d, then %d", stopped, got)
	}
}

// TestRemoteStartedBeforeItsServer is what happens at start-up, when a
// workload asks for keys that a server not yet up will publish: the keys
// must arrive within moments of the server answering, not after a refresh
// interval, and the failed attempts must be spaced out.
func TestRemoteStartedBeforeItsServer(t *testing.T) {
	t.Parallel()
	key := newKey(t, jose.ES256)
	srv := newJWKSServer(t, nil)
	srv.serve(http.StatusServiceUnavailable, nil)
	r, _ := newTestRemote(t, srv, RemoteOptions{RefreshInterval: time.Hour})
	r.Start(t.Context())

	time.Sleep(600 * time.Millisecond)
	if hits := srv.hits.Load(); hits < 2 || hits > 4 {
		t.Errorf("%d fetches in 600ms while the server was down, want 2 to 4 (backing off)", hits)
	}
	srv.serve(http.StatusOK, publicDoc(t, key))
	deadline := time.Now().Add(3 * time.Second)
	for _, ok := r.lookup(key.KeyID); !ok; _, ok = r.lookup(key.KeyID) {
		if time.Now().After(deadline) {
			t.Fatal("keys not fetched within 3s of the server coming up")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestParseRemoteSet(t *testing.T) {
	t.Parallel()
	es, ed := newKey(t, jose.ES256), newKey(t, jose.EdDSA)
	//nolint:gosec // G403: the weak key proves that weak keys are refused
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edit := func(key jose.JSONWebKey, change func(map[string]any)) map[string]any {
		data, err := json.Marshal(key.Public())
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatal(err)
		}
		change(m)
		return m
	}
	defaultAlgs := []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA}
	hmac := jose.JSONWebKey{Key: bytes.Repeat([]byte{1}, 64), KeyID: "hmac", Algorithm: "HS256"}

	tests := []struct {
		name     string
		doc      []byte
		algs     []jose.SignatureAlgorithm
		wantKIDs []string
		wantErr  error
	}{
		{name: "public keys", doc: publicDoc(t, es, ed), wantKIDs: []string{es.KeyID, ed.KeyID}},
		{name: "private EC key", doc: publicDoc(t, asIs{es}), wantErr: ErrInvalidKeySet},
		{name: "private Ed25519 key", doc: publicDoc(t, asIs{ed}), wantErr: ErrInvalidKeySet},
		{name: "symmetric key", doc: publicDoc(t, es, asIs{hmac}), wantErr: ErrInvalidKeySet},
		{
			name:    "weak RSA key",
			doc:     publicDoc(t, es, jose.JSONWebKey{Key: weak.Public(), KeyID: "w"}),
			algs:    []jose.SignatureAlgorithm{jose.ES256, jose.RS256},
			wantErr: ErrWeakKey,
		},
		{
			name:    "duplicate kid",
			doc:     publicDoc(t, es, edit(ed, func(m map[string]any) { m["kid"] = es.KeyID })),
			wantErr: ErrInvalidKeySet,
		},
		{name: "not JSON", doc: []byte("<html>"), wantErr: ErrInvalidKeySet},
		{name: "no keys", doc: []byte(`{"keys":[]}`), wantErr: ErrInvalidKeySet},
		{name: "duplicate member", doc: []byte(`{"keys":[],"keys":[]}`), wantErr: ErrInvalidKeySet},
		{
			name:     "encryption key ignored",
			doc:      publicDoc(t, es, edit(ed, func(m map[string]any) { m["use"] = "enc" })),
			wantKIDs: []string{es.KeyID},
		},
		{
			name:     "key without use kept",
			doc:      publicDoc(t, edit(es, func(m map[string]any) { delete(m, "use") })),
			wantKIDs: []string{es.KeyID},
		},
		{
			name:     "key without alg kept when its type fits",
			doc:      publicDoc(t, edit(ed, func(m map[string]any) { delete(m, "alg") })),
			wantKIDs: []string{ed.KeyID},
		},
		{
			name:     "algorithm not allowed ignored",
			doc:      publicDoc(t, es, ed),
			algs:     []jose.SignatureAlgorithm{jose.EdDSA},
			wantKIDs: []string{ed.KeyID},
		},
		{
			name:     "curve not fitting ignored",
			doc:      publicDoc(t, es, jose.JSONWebKey{Key: p384.Public(), KeyID: "p384"}),
			wantKIDs: []string{es.KeyID},
		},
		{
			name:     "unknown key type ignored",
			doc:      publicDoc(t, es, map[string]any{"kty": "XYZ", "kid": "future"}),
			wantKIDs: []string{es.KeyID},
		},
		{
			name:     "no kid ignored",
			doc:      publicDoc(t, es, edit(ed, func(m map[string]any) { delete(m, "kid") })),
			wantKIDs: []string{es.KeyID},
		},
		{
			name:    "only unusable keys",
			doc:     publicDoc(t, edit(ed, func(m map[string]any) { m["use"] = "enc" })),
			wantErr: ErrInvalidKeySet,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			algs := tt.algs
			if algs == nil {
				algs = defaultAlgs
			}
			keys, err := parseRemoteSet(tt.doc, algs)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("parseRemoteSet() error = %v, want %v", err, tt.wantErr)
			}
			if len(keys) != len(tt.wantKIDs) {
				t.Errorf("parseRemoteSet() kept %d keys, want %v", len(keys), tt.wantKIDs)
			}
			for _, kid := range tt.wantKIDs {
				k, ok := keys[kid]
				if !ok || !k.IsPublic() {
					t.Errorf("parseRemoteSet() lacks public key %q", kid)
				}
			}
		})
	}
}

func FuzzParseRemoteSet(f *testing.F) {
	es, err := GenerateKey(jose.ES256)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(publicDoc(f, es))
	f.Add([]byte(`{"keys":[{"kty":"oct","k":"AAAA"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB","kid":"r"}]}`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		algs := []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA, jose.RS256}
		keys, err := parseRemoteSet(doc, algs)
		if err != nil {
			if !errors.Is(err, ErrInvalidKeySet) {
				t.Fatalf("error %v does not wrap ErrInvalidKeySet", err)
			}
			return
		}
		if len(keys) == 0 {
			t.Fatal("no error and no keys")
		}
		for kid, k := range keys {
			if kid == "" || kid != k.KeyID || !k.IsPublic() || !k.Valid() {
				t.Fatalf("kept key %q: %+v", kid, k)
			}
			if err := checkStrength(k.Key); err != nil {
				t.Fatalf("kept a weak key: %v", err)
			}
			if k.Use != "" && k.Use != Use {
				t.Fatalf("kept a key for use %q", k.Use)
			}
		}
	})
}

// TestRemoteSaysWhenItCannotKnow: a kid is reported unavailable, rather
// than simply unknown, while the set cannot be fetched, whether none was
// ever fetched or a refetch failed, so that a caller can check a token
// again later instead of refusing it for good. A kid missing from a set
// that was fetched is plainly unknown.
func TestRemoteSaysWhenItCannotKnow(t *testing.T) {
	t.Parallel()
	key := newKey(t, jose.ES256)
	srv := newJWKSServer(t, nil)
	srv.serve(http.StatusServiceUnavailable, nil)
	r, clock := newTestRemote(t, srv, RemoteOptions{})

	check := func(when, kid string, wantUnavailable bool) {
		t.Helper()
		_, err := r.Key(t.Context(), kid)
		if !errors.Is(err, ErrUnknownKey) || errors.Is(err, ErrUnavailable) != wantUnavailable {
			t.Errorf("%s: Key(%q) error = %v, want ErrUnknownKey, unavailable %v",
				when, kid, err, wantUnavailable)
		}
	}
	check("before any set", key.KeyID, true)
	check("before any set, within the interval", key.KeyID, true)

	srv.serve(http.StatusOK, publicDoc(t, key))
	clock.Advance(DefaultMinRefreshInterval)
	if _, err := r.Key(t.Context(), key.KeyID); err != nil {
		t.Fatalf("Key() once the server answers: %v", err)
	}
	check("after a good fetch", "next-key", false)

	srv.serve(http.StatusBadGateway, nil)
	clock.Advance(DefaultMinRefreshInterval)
	check("when a refetch fails", "next-key", true)
	check("when a refetch failed, within the interval", "next-key", true)
	if _, err := r.Key(t.Context(), key.KeyID); err != nil {
		t.Errorf("Key() of a cached key while the server is down: %v", err)
	}
}
