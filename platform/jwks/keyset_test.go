package jwks_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"

	"example.com/rampart/platform/jwks"
)

func generate(t testing.TB, alg jose.SignatureAlgorithm) jose.JSONWebKey {
	t.Helper()
	key, err := jwks.GenerateKey(alg)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// rsaKey returns an RSA signing key of the given size, generated once per
// size for the whole test binary because RSA generation is slow.
func rsaKey(t testing.TB, bits int) *rsa.PrivateKey {
	t.Helper()
	rsaKeysMu.Lock()
	defer rsaKeysMu.Unlock()
	if k, ok := rsaKeys[bits]; ok {
		return k
	}
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	rsaKeys[bits] = k
	return k
}

var (
	rsaKeysMu sync.Mutex
	rsaKeys   = map[int]*rsa.PrivateKey{}
)

// members returns the JSON members of key, for tests to edit.
func members(t testing.TB, key jose.JSONWebKey) map[string]any {
	t.Helper()
	data, err := json.Marshal(key)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func writeFile(t testing.TB, path string, v any) {
	t.Helper()
	data, ok := v.([]byte)
	if !ok {
		var err error
		if data, err = json.Marshal(v); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestGenerateKey(t *testing.T) {
	t.Parallel()
	for _, alg := range []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA} {
		key := generate(t, alg)
		if key.KeyID == "" || key.Algorithm != string(alg) || key.Use != "sig" || key.IsPublic() {
			t.Errorf("GenerateKey(%s) = kid %q alg %q use %q public %v",
				alg, key.KeyID, key.Algorithm, key.Use, key.IsPublic())
		}
		if other := generate(t, alg); other.KeyID == key.KeyID {
			t.Errorf("GenerateKey(%s) twice gave kid %q twice", alg, key.KeyID)
		}
	}
	for _, alg := range []jose.SignatureAlgorithm{jose.HS256, jose.RS256, "none", ""} {
		if _, err := jwks.GenerateKey(alg); !errors.Is(err, jwks.ErrAlgorithm) {
			t.Errorf("GenerateKey(%q) error = %v, want ErrAlgorithm", alg, err)
		}
	}
}

func TestLoadKeySet(t *testing.T) {
	t.Parallel()
	es, ed := generate(t, jose.ES256), generate(t, jose.EdDSA)
	path := filepath.Join(t.TempDir(), "keys.json")
	if err := jwks.WriteKeySetFile(path, ed, es); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("key file mode = %v, want 0600", info.Mode().Perm())
	}

	set, err := jwks.LoadKeySet(t.Context(), path, jwks.KeySetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	signer := set.Signer()
	if signer.Algorithm != jose.EdDSA || signer.Key.(jose.JSONWebKey).KeyID != ed.KeyID {
		t.Errorf("Signer() = %s %q, want the first key written", signer.Algorithm,
			signer.Key.(jose.JSONWebKey).KeyID)
	}

	var kids []string
	for _, k := range set.Public().Keys {
		if !k.IsPublic() {
			t.Errorf("Public() holds private key %q", k.KeyID)
		}
		kids = append(kids, k.KeyID)
	}
	if diff := cmp.Diff([]string{ed.KeyID, es.KeyID}, kids); diff != "" {
		t.Errorf("Public() kids mismatch (-want +got):\n%s", diff)
	}

	got, err := set.Key(t.Context(), es.KeyID)
	if err != nil {
		t.Fatal(err)
	}
	if !got.IsPublic() || got.KeyID != es.KeyID || got.Algorithm != "ES256" {
		t.Errorf("Key(%q) = %+v, want the public ES256 key", es.KeyID, got)
	}
	if _, err := set.Key(t.Context(), "nope"); !errors.Is(err, jwks.ErrUnknownKey) {
		t.Errorf("Key(unknown) error = %v, want ErrUnknownKey", err)
	}
}

func TestLoadKeySetRefuses(t *testing.T) {
	t.Parallel()
	es := generate(t, jose.ES256)
	ed := generate(t, jose.EdDSA)
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}

	type m = map[string]any
	// with returns the members of key after edit.
	with := func(key jose.JSONWebKey, edit func(m)) m {
		members := members(t, key)
		if edit != nil {
			edit(members)
		}
		return members
	}
	file := func(active string, keys ...m) m { return m{"active": active, "keys": keys} }
	// only returns a file holding key alone, active, with edit applied.
	only := func(key jose.JSONWebKey, edit func(m)) m { return file(key.KeyID, with(key, edit)) }
	// other returns a file holding a key of any type, active.
	other := func(key any, alg string) m {
		jwk := jose.JSONWebKey{Key: key, KeyID: "k", Algorithm: alg, Use: "sig"}
		return file("k", with(jwk, nil))
	}
	invalid := jwks.ErrInvalidKeySet

	tests := []struct {
		name    string
		content any
		wantErr error
	}{
		{"not json", []byte("{"), invalid},
		{"no keys", file(es.KeyID), invalid},
		{"duplicate member", []byte(`{"active":"a","active":"b","keys":[]}`), invalid},
		{"no kid", file("", with(es, func(k m) { delete(k, "kid") })), invalid},
		{"duplicate kid", file(es.KeyID, with(es, nil), with(es, nil)), invalid},
		{"no active member", m{"keys": []any{with(es, nil)}}, invalid},
		{"active names no key", file("other", with(es, nil)), invalid},
		{"public key only", only(es, func(k m) { delete(k, "d") }), invalid},
		{"encryption key", only(es, func(k m) { k["use"] = "enc" }), invalid},
		{"no use", only(es, func(k m) { delete(k, "use") }), invalid},

		{"no alg", only(es, func(k m) { delete(k, "alg") }), jwks.ErrAlgorithm},
		{"none", only(es, func(k m) { k["alg"] = "none" }), jwks.ErrAlgorithm},
		{"ES384 not allowed", other(p384, "ES384"), jwks.ErrAlgorithm},
		{"P-384 key claiming ES256", other(p384, "ES256"), jwks.ErrAlgorithm},
		{"Ed25519 claiming ES256", only(ed, func(k m) { k["alg"] = "ES256" }), jwks.ErrAlgorithm},
		{"RSA 2048 not allowed", other(rsaKey(t, 2048), "RS256"), jwks.ErrAlgorithm},
		{"HMAC 256 bits not allowed", other(make([]byte, 32), "HS256"), jwks.ErrAlgorithm},

		{"RSA 1024 weak", other(rsaKey(t, 1024), "RS256"), jwks.ErrWeakKey},
		{"HMAC 128 bits weak", other(make([]byte, 16), "HS256"), jwks.ErrWeakKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "keys.json")
			writeFile(t, path, tt.content)
			_, err := jwks.LoadKeySet(t.Context(), path, jwks.KeySetOptions{})
			if !errors.Is(err, tt.wantErr) || !errors.Is(err, jwks.ErrInvalidKeySet) {
				t.Errorf("LoadKeySet() error = %v, want %v in ErrInvalidKeySet", err, tt.wantErr)
			}
		})
	}

	t.Run("missing file", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "none.json")
		_, err := jwks.LoadKeySet(t.Context(), path, jwks.KeySetOptions{})
		if !errors.Is(err, os.ErrNotExist) {
			t.Errorf("LoadKeySet() error = %v, want os.ErrNotExist", err)
		}
	})
}

func TestWriteKeySetFileRefusesInvalidKeys(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "keys.json")
	priv := generate(t, jose.ES256)
	pub := priv.Public()
	for name, keys := range map[string][]jose.JSONWebKey{
		"none":        nil,
		"public only": {pub},
	} {
		if err := jwks.WriteKeySetFile(path, keys...); !errors.Is(err, jwks.ErrInvalidKeySet) {
			t.Errorf("WriteKeySetFile(%s) error = %v, want ErrInvalidKeySet", name, err)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Errorf("refused writes left files behind: %v", entries)
	}
}

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func activeKID(set *jwks.KeySet) string {
	return set.Signer().Key.(jose.JSONWebKey).KeyID
}

func TestKeySetRotation(t *testing.T) {
	t.Parallel()
	current, next := generate(t, jose.ES256), generate(t, jose.EdDSA)
	path := filepath.Join(t.TempDir(), "keys.json")
	if err := jwks.WriteKeySetFile(path, current); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 10)
	const poll = 10 * time.Millisecond
	set, err := jwks.LoadKeySet(t.Context(), path, jwks.KeySetOptions{
		PollInterval: poll,
		OnError:      func(err error) { errs <- err },
	})
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := jwks.NewVerifier(set, jwks.VerifyOptions{
		Algorithms: []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA},
		MaxSize:    4096,
		Type:       func(typ string) bool { return typ == "test+jwt" },
	})
	if err != nil {
		t.Fatal(err)
	}
	signer := jwks.NewTokenSigner(set, "test+jwt")
	oldToken, err := signer.Sign([]byte(`{"n":1}`))
	if err != nil {
		t.Fatal(err)
	}

	// Publish the next key; the current one keeps signing.
	if err := jwks.WriteKeySetFile(path, current, next); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the next key to be published", func() bool {
		_, err := set.Key(t.Context(), next.KeyID)
		return err == nil
	})
	if got := activeKID(set); got != current.KeyID {
		t.Errorf("after publishing the next key, active kid = %q, want %q", got, current.KeyID)
	}

	// Activate it: signing switches within a poll interval or so.
	start := time.Now()
	if err := jwks.WriteKeySetFile(path, next, current); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the next key to sign", func() bool { return activeKID(set) == next.KeyID })
	if elapsed := time.Since(start); elapsed > 50*poll {
		t.Errorf("signing switched after %v, poll interval %v", elapsed, poll)
	}
	newToken, err := signer.Sign([]byte(`{"n":2}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{oldToken, newToken} {
		if _, err := verifier.Verify(t.Context(), tok); err != nil {
			t.Errorf("Verify() while both keys are published: %v", err)
		}
	}

	// Remove the previous key: its tokens no longer find their key.
	if err := jwks.WriteKeySetFile(path, next); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the previous key to be removed", func() bool {
		_, err := set.Key(t.Context(), current.KeyID)
		return errors.Is(err, jwks.ErrUnknownKey)
	})
	if _, err := verifier.Verify(t.Context(), oldToken); !errors.Is(err, jwks.ErrUnknownKey) {
		t.Errorf("Verify(token of removed key) error = %v, want ErrUnknownKey", err)
	}
	if _, err := verifier.Verify(t.Context(), newToken); err != nil {
		t.Errorf("Verify(token of active key) error = %v", err)
	}

	select {
	case err := <-errs:
		t.Errorf("OnError(%v) during a clean rotation", err)
	default:
	}
}

func TestKeySetKeepsLastGoodKeys(t *testing.T) {
	t.Parallel()
	key := generate(t, jose.ES256)
	path := filepath.Join(t.TempDir(), "keys.json")
	if err := jwks.WriteKeySetFile(path, key); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 10)
	set, err := jwks.LoadKeySet(t.Context(), path, jwks.KeySetOptions{
		PollInterval: 5 * time.Millisecond,
		OnError:      func(err error) { errs <- err },
	})
	if err != nil {
		t.Fatal(err)
	}

	// A kid given to different key material is refused like a broken file.
	impostor := generate(t, jose.ES256)
	impostor.KeyID = key.KeyID
	for name, write := range map[string]func() error{
		"truncated file": func() error { return os.WriteFile(path, []byte(`{"keys":[`), 0o600) },
		"reused kid":     func() error { return jwks.WriteKeySetFile(path, impostor) },
	} {
		if err := write(); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-errs:
			if !errors.Is(err, jwks.ErrInvalidKeySet) {
				t.Errorf("%s: OnError(%v), want ErrInvalidKeySet", name, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: OnError not called", name)
		}
		if got := activeKID(set); got != key.KeyID {
			t.Errorf("%s: active kid = %q, want the last good %q", name, got, key.KeyID)
		}
		pub, err := set.Key(t.Context(), key.KeyID)
		want := key.Public()
		if err != nil || !pub.Key.(*ecdsa.PublicKey).Equal(want.Key) {
			t.Errorf("%s: Key() = %v, %v, want the last good key", name, pub, err)
		}
	}
}

func TestKeySetHandler(t *testing.T) {
	t.Parallel()
	es, ed := generate(t, jose.ES256), generate(t, jose.EdDSA)
	path := filepath.Join(t.TempDir(), "keys.json")
	if err := jwks.WriteKeySetFile(path, es, ed); err != nil {
		t.Fatal(err)
	}
	set, err := jwks.LoadKeySet(t.Context(), path, jwks.KeySetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(set.Handler())
	t.Cleanup(srv.Close)

	get, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Do(get)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET status = %d", resp.StatusCode)
	}
	if got := resp.Header.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", got)
	}
	if got := resp.Header.Get("Cache-Control"); got != "public, max-age=60" {
		t.Errorf("Cache-Control = %q, want a short public max-age", got)
	}

	var raw struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Fatal(err)
	}
	var kids []string
	for _, k := range raw.Keys {
		for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "k"} {
			if _, ok := k[private]; ok {
				t.Errorf("published key %v holds private member %q", k["kid"], private)
			}
		}
		kids = append(kids, k["kid"].(string))
	}
	slices.Sort(kids)
	want := []string{es.KeyID, ed.KeyID}
	slices.Sort(want)
	if diff := cmp.Diff(want, kids); diff != "" {
		t.Errorf("published kids mismatch (-want +got):\n%s", diff)
	}

	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL,
		strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp, err = srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST status = %d, want 405", resp.StatusCode)
	}
}
