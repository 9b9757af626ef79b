package server

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"

	"example.com/rampart/platform/accesstoken"
	"example.com/rampart/platform/jwks"
	"example.com/rampart/platform/txntoken"
)

// kidOf returns the "kid" of a compact JWS.
func kidOf(t testing.TB, raw string) string {
	t.Helper()
	jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA})
	if err != nil {
		t.Fatal(err)
	}
	return jws.Signatures[0].Header.KeyID
}

// within polls cond until it holds and fails the test unless it did within
// limit; it returns how long it took.
func within(t *testing.T, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// TestAccessTokenKeyRotation rotates the issuer's signing keys in three
// edits of its key file, with the poll interval of production, while the
// gateway runs: new tokens are signed with the new key within seconds of
// it becoming active, and the gateway accepts them at once; a token signed
// with a removed key is refused within one refresh of the gateway's keys.
func TestAccessTokenKeyRotation(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("waits for key files to be read again")
	}
	iss := newIssuerServer(t, jwks.DefaultPollInterval)
	const refresh = 300 * time.Millisecond
	f := newFixture(t, options{issuer: iss, cfg: func(c *Config) { c.IssuerKeysRefresh = refresh }})
	current, next := iss.key, newKey(t, jose.EdDSA)
	status := func(token string) int {
		return f.call(t, "user.v1.UserService/GetMe", token, "{}", nil).Status
	}
	old, _ := iss.login(t)
	if status(old) != http.StatusOK {
		t.Fatal("a token of the current key is refused")
	}

	// 1. Publish the next key; the current one still signs.
	writeKeys(t, iss.keysPath, current, next)
	within(t, 3*time.Second, "the issuer publishes the next key", func() bool {
		_, err := iss.keys.Key(t.Context(), next.KeyID)
		return err == nil
	})

	// 2. Make it active.
	writeKeys(t, iss.keysPath, next, current)
	var fresh string
	took := within(t, 3*time.Second, "new tokens are signed with the next key", func() bool {
		fresh, _ = iss.login(t)
		return kidOf(t, fresh) == next.KeyID
	})
	t.Logf("new tokens used the new key %v after the key file changed", took.Round(time.Millisecond))
	if got := []int{status(fresh), status(old)}; !cmp.Equal(got, []int{200, 200}) {
		t.Errorf("statuses of the new and the old token %v, want both accepted", got)
	}

	// 3. Remove the previous key.
	writeKeys(t, iss.keysPath, next)
	took = within(t, jwks.DefaultPollInterval+2*refresh+time.Second,
		"a token of the removed key is refused", func() bool {
			return status(old) == http.StatusUnauthorized
		})
	t.Logf("a token of the removed key was refused %v after the key file changed", took.Round(time.Millisecond))
	a := f.call(t, "user.v1.UserService/GetMe", old, "{}", nil)
	if reason, _ := f.logLine(t, a)["reason"].(string); !strings.Contains(reason, jwks.ErrUnknownKey.Error()) {
		t.Errorf("reason %q, want an unknown key", reason)
	}
	if status(fresh) != http.StatusOK {
		t.Error("a token of the new key is refused")
	}
}

// TestUnknownKeyIsFetchedOnce makes the issuer sign with a key that it
// published without waiting, as a careless rotation does: the first token
// naming it makes the gateway fetch the issuer's keys, once, and a flood
// of tokens naming keys that do not exist makes it fetch at most once per
// interval.
func TestUnknownKeyIsFetchedOnce(t *testing.T) {
	t.Parallel()
	iss := newIssuerServer(t, keyPoll)
	const interval = 500 * time.Millisecond
	f := newFixture(t, options{issuer: iss, cfg: func(c *Config) {
		c.IssuerKeysRefresh = time.Hour
		c.IssuerKeysMinRefresh = interval
	}})
	time.Sleep(interval) // the fetch at start-up counts against the interval

	next := newKey(t, jose.ES256)
	writeKeys(t, iss.keysPath, next, iss.key)
	var token string
	within(t, 3*time.Second, "new tokens are signed with the new key", func() bool {
		token, _ = iss.login(t)
		return kidOf(t, token) == next.KeyID
	})
	before := iss.hits.Load()
	if a := f.call(t, "user.v1.UserService/GetMe", token, "{}", nil); a.Status != http.StatusOK {
		t.Fatalf("a token of a key the gateway has not seen yet: status %d, want 200", a.Status)
	}
	if got := iss.hits.Load() - before; got != 1 {
		t.Errorf("the issuer's keys were fetched %d times, want 1", got)
	}

	// Unknown kids, all at once, right after that fetch.
	before = iss.hits.Load()
	header, good := iss.validHeader(), iss.validClaims()
	var wg sync.WaitGroup
	statuses := make([]int, 200)
	for i := range statuses {
		forged := forge(t, jose.ES256, iss.key, header.with("kid", rand.Text()), good)
		wg.Go(func() {
			statuses[i] = f.call(t, "user.v1.UserService/GetMe", forged, "{}", nil).Status
		})
	}
	wg.Wait()
	for i, s := range statuses {
		if s != http.StatusUnauthorized {
			t.Fatalf("token %d with an unknown kid: status %d, want 401", i, s)
		}
	}
	if got := iss.hits.Load() - before; got > 1 {
		t.Errorf("200 unknown kids caused %d fetches, want at most 1", got)
	}
}

// TestTxnKeyRotation rotates the gateway's transaction-token keys in three
// edits of GATEWAY_TXN_SIGNING_KEYS, with the poll interval of production:
// within seconds the workloads get tokens signed with the new key and
// verify them against the keys the gateway publishes, as they do in
// production; once the old key is removed, the gateway stops publishing it
// and a token it signed is refused.
func TestTxnKeyRotation(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("waits for key files to be read again")
	}
	f := newFixture(t, options{keyPoll: jwks.DefaultPollInterval})
	const refresh = 300 * time.Millisecond
	published := jwks.NewRemote(f.internalURL+"/.well-known/jwks.json", nil, jwks.RemoteOptions{
		RefreshInterval: refresh, MinRefreshInterval: refresh,
	})
	published.Start(t.Context())
	t.Cleanup(published.Close)
	workload, err := txntoken.NewVerifier(txntoken.VerifierConfig{
		Keys: published, TrustDomain: trustDomain, Issuer: gatewayID.String(),
	})
	if err != nil {
		t.Fatal(err)
	}
	// forward calls the gateway and returns the transaction token the
	// workload got.
	forward := func() string {
		t.Helper()
		if a := f.call(t, "order.v1.CatalogService/ListProducts", "", "{}", nil); a.Status != 200 {
			t.Fatalf("status %d, body %s", a.Status, a.Body)
		}
		return f.up.last().MD.Get(txntoken.MetadataKey)[0]
	}
	current := f.txnKeys.Signer().Key.(jose.JSONWebKey)
	next := newKey(t, jose.EdDSA)
	old := forward()

	writeKeys(t, f.txnKeysPath, current, next)
	within(t, 3*time.Second, "the gateway publishes the next key", func() bool {
		_, err := f.txnKeys.Key(t.Context(), next.KeyID)
		return err == nil
	})
	writeKeys(t, f.txnKeysPath, next, current)
	var fresh string
	took := within(t, 3*time.Second, "the workloads get tokens of the next key", func() bool {
		fresh = forward()
		return kidOf(t, fresh) == next.KeyID
	})
	t.Logf("workloads got tokens of the new key %v after the key file changed", took.Round(time.Millisecond))
	for name, raw := range map[string]string{"new": fresh, "old": old} {
		if _, err := workload.Verify(t.Context(), raw); err != nil {
			t.Errorf("the workload refuses the %s token: %v", name, err)
		}
	}

	writeKeys(t, f.txnKeysPath, next)
	within(t, 3*time.Second, "the gateway stops publishing the removed key", func() bool {
		return !strings.Contains(fetchBody(t, f.internalURL+"/.well-known/jwks.json"), current.KeyID)
	})
	within(t, 3*refresh, "the workload refuses a token of the removed key", func() bool {
		_, err := workload.Verify(t.Context(), old)
		return errors.Is(err, txntoken.ErrUnknownKey)
	})
	if _, err := workload.Verify(t.Context(), forward()); err != nil {
		t.Errorf("the workload refuses a token of the new key: %v", err)
	}
}

func fetchBody(t *testing.T, url string) string {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return send(t, req).Body
}

// rawKeyFile writes a key file as is, bypassing the checks of
// jwks.WriteKeySetFile, so that LoadKeySet meets what a mistaken operator
// could write.
func rawKeyFile(t *testing.T, key jose.JSONWebKey) string {
	t.Helper()
	data, err := json.Marshal(map[string]any{"active": key.KeyID, "keys": []jose.JSONWebKey{key}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "keys.jwks")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestWeakKeysRefusedAtStartup gives the gateway weak keys in every place
// it takes keys from: its own key file and the issuer's JWKS. The gateway
// does not start.
func TestWeakKeysRefusedAtStartup(t *testing.T) {
	t.Parallel()
	//nolint:gosec // G403: the weak key proves that weak keys are refused
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	rsa2048, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	sig := func(key any, kid, alg string) jose.JSONWebKey {
		return jose.JSONWebKey{Key: key, KeyID: kid, Algorithm: alg, Use: "sig"}
	}

	files := []struct {
		name    string
		key     jose.JSONWebKey
		wantErr error
	}{
		{"HMAC of 128 bits", sig(make([]byte, 16), "hs-16", "HS256"), jwks.ErrWeakKey},
		{"HMAC of 256 bits, never for tokens", sig(make([]byte, 32), "hs-32", "HS256"), jwks.ErrAlgorithm},
		{"RSA of 1024 bits", sig(rsa1024, "rsa-1024", "RS256"), jwks.ErrWeakKey},
		{"RSA of 2048 bits, not a signing algorithm here", sig(rsa2048, "rsa-2048", "RS256"),
			jwks.ErrAlgorithm},
	}
	for _, tt := range files {
		t.Run("key file/"+tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := DefaultConfig()
			cfg.TxnSigningKeys = rawKeyFile(t, tt.key)
			_, err := LoadSigningKeys(t.Context(), cfg, nil)
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("LoadSigningKeys() error = %v, want %v", err, tt.wantErr)
			}
		})
	}

	sets := []struct {
		name    string
		keys    []any
		wantErr error
	}{
		{"RSA of 1024 bits", []any{jose.JSONWebKey{Key: rsa1024.Public(), KeyID: "weak", Use: "sig"}},
			jwks.ErrWeakKey},
		{"HMAC secret", []any{map[string]string{"kty": "oct", "kid": "hs", "k": "c2VjcmV0"}},
			jwks.ErrInvalidKeySet},
		{"private key", []any{newKey(t, jose.ES256)}, jwks.ErrInvalidKeySet},
	}
	for _, tt := range sets {
		t.Run("issuer keys/"+tt.name, func(t *testing.T) {
			t.Parallel()
			issuerURL := serveIssuer(t, map[string]any{"keys": tt.keys})
			cfg := DefaultConfig()
			cfg.Issuer = issuerURL
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			start := time.Now()
			_, err := accessVerifier(ctx, cfg, discardLogger())
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("accessVerifier() error = %v, want %v", err, tt.wantErr)
			}
			if took := time.Since(start); took > time.Second {
				t.Errorf("refused after %v of retries, want at once", took)
			}
		})
	}
}

// serveIssuer serves a discovery document and the JWKS doc, as they are,
// on 127.0.0.1.
func serveIssuer(t *testing.T, doc any) string {
	t.Helper()
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": srv.URL, "jwks_uri": srv.URL + "/jwks"})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(doc)
	})
	return srv.URL
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := map[string]func(*Config){
		"no issuer":                 func(c *Config) { c.Issuer = "" },
		"no audience":               func(c *Config) { c.Audience = "" },
		"no refresh":                func(c *Config) { c.IssuerKeysRefresh = 0 },
		"no minimum refresh":        func(c *Config) { c.IssuerKeysMinRefresh = -time.Second },
		"no revocation window":      func(c *Config) { c.RevocationWindow = 0 },
		"window beyond the streams": func(c *Config) { c.RevocationWindow = 8 * 24 * time.Hour },
		"no body limit":             func(c *Config) { c.MaxBodyBytes = 0 },
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("DefaultConfig().Validate() error = %v", err)
	}
	if got := DefaultConfig().RevocationWindow; got < accesstoken.MaxLifetime+accesstoken.MaxLeeway {
		t.Errorf("default revocation window %v is shorter than the longest token's life", got)
	}
	for name, change := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cfg := DefaultConfig()
			change(&cfg)
			if err := cfg.Validate(); err == nil {
				t.Error("Validate() accepted it")
			}
		})
	}
}
