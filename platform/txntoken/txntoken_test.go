package txntoken_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/google/uuid"

	"example.com/rampart/platform/accesstoken"
	"example.com/rampart/platform/jwks"
	"example.com/rampart/platform/jwks/jwkstest"
	"example.com/rampart/platform/txntoken"
)

const (
	testTrustDomain = "rampart.test"
	testIssuer      = "spiffe://rampart.test/gateway"
	testWorkload    = "spiffe://rampart.test/gateway"
)

type omitted struct{}

var omit omitted

func encode(t testing.TB, base, overrides map[string]any) string {
	t.Helper()
	m := maps.Clone(base)
	for k, v := range overrides {
		if v == omit {
			delete(m, k)
			continue
		}
		m[k] = v
	}
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func validClaims() map[string]any {
	now := time.Now().Unix()
	return map[string]any{
		"iss":    testIssuer,
		"aud":    testTrustDomain,
		"iat":    now,
		"exp":    now + 60,
		"txn":    "97053963-771d-49cc-a4e3-20aad399c312",
		"sub":    "user-1",
		"sid":    "session-1",
		"scope":  "orders:read",
		"req_wl": testWorkload,
		"rctx":   map[string]any{"req_ip": "192.0.2.1"},
		"tctx":   map[string]any{"order_id": "o-1"},
	}
}

type env struct {
	set      *jwks.KeySet
	key      jose.JSONWebKey
	minter   *txntoken.Minter
	verifier *txntoken.Verifier
}

func newEnv(t testing.TB) *env {
	t.Helper()
	set, keys := jwkstest.KeySet(t, jose.ES256)
	minter, err := txntoken.NewMinter(txntoken.MinterConfig{
		Signer: set, TrustDomain: testTrustDomain, Workload: testWorkload, Issuer: testIssuer,
	})
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := txntoken.NewVerifier(txntoken.VerifierConfig{
		Keys: set, TrustDomain: testTrustDomain, Issuer: testIssuer,
	})
	if err != nil {
		t.Fatal(err)
	}
	return &env{set: set, key: keys[0], minter: minter, verifier: verifier}
}

func (e *env) sign(t testing.TB, header, claims map[string]any) string {
	t.Helper()
	base := map[string]any{"alg": "ES256", "kid": e.key.KeyID, "typ": "txntoken+jwt"}
	payload := encode(t, validClaims(), claims)
	return jwkstest.Sign(jose.ES256, e.key, encode(t, base, header), payload)
}

func TestVerifierRefuses(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	now := time.Now().Unix()
	pubJSON, err := json.Marshal(e.set.Public())
	if err != nil {
		t.Fatal(err)
	}
	_, otherKeys := jwkstest.KeySet(t, jose.ES256)
	other := otherKeys[0]
	valid := e.sign(t, nil, nil)
	parts := strings.Split(valid, ".")
	b64 := base64.RawURLEncoding.EncodeToString

	type m = map[string]any
	header := func(h m) string { return e.sign(t, h, nil) }
	claims := func(c m) string { return e.sign(t, nil, c) }
	// signed signs validClaims under a header holding alg and kid.
	signed := func(alg jose.SignatureAlgorithm, key any, kid string) string {
		h := encode(t, m{"alg": string(alg), "kid": kid, "typ": "txntoken+jwt"}, nil)
		return jwkstest.Sign(alg, key, h, encode(t, validClaims(), nil))
	}
	// payload signs a hand-written payload with the ES256 key.
	payload := func(p string) string {
		h := encode(t, m{"alg": "ES256", "kid": e.key.KeyID, "typ": "txntoken+jwt"}, nil)
		return jwkstest.Sign(jose.ES256, e.key, h, p)
	}
	algNone := b64([]byte(`{"alg":"none","typ":"txntoken+jwt"}`)) + "." + parts[1] + "."
	forged := b64([]byte(encode(t, validClaims(), m{"scope": "admin"})))
	tampered := parts[0] + "." + forged + "." + parts[2]
	padding := m{"tctx": map[string]string{"pad": strings.Repeat("a", txntoken.MaxSize)}}

	errAlgorithm, errNotYetValid, errSignature := txntoken.ErrAlgorithm, txntoken.ErrNotYetValid,
		txntoken.ErrSignature
	tests := []struct {
		name    string
		token   string
		wantErr error
	}{
		{"a megabyte of dots", strings.Repeat(".", 1<<20), txntoken.ErrTooLarge},
		{"over MaxSize", claims(padding), txntoken.ErrTooLarge},

		{"empty", "", txntoken.ErrMalformed},
		{"two segments", parts[0] + "." + parts[1], txntoken.ErrMalformed},
		{"four segments", valid + "." + parts[2], txntoken.ErrMalformed},
		{"padded", valid + "=", txntoken.ErrMalformed},
		{"space", parts[0] + ". " + parts[1] + "." + parts[2], txntoken.ErrMalformed},
		{"claims not an object", payload(`"x"`), txntoken.ErrMalformed},
		{"duplicate claim", payload(`{"sub":"a","sub":"b"}`), txntoken.ErrMalformed},
		{"tctx with a number", claims(m{"tctx": m{"n": 1}}), txntoken.ErrMalformed},
		{"string exp", claims(m{"exp": "soon"}), txntoken.ErrMalformed},

		{"alg none", algNone, txntoken.ErrAlgorithm},
		{"no alg", header(m{"alg": omit}), txntoken.ErrAlgorithm},
		{"RS256", header(m{"alg": "RS256"}), txntoken.ErrAlgorithm},
		{"HS256 keyed with public keys", signed(jose.HS256, pubJSON, e.key.KeyID), errAlgorithm},

		{"no kid", header(m{"kid": omit}), txntoken.ErrUnknownKey},
		{"kid path", header(m{"kid": "/etc/shadow"}), txntoken.ErrUnknownKey},
		{"kid SQL", header(m{"kid": "'; DROP TABLE keys;--"}), txntoken.ErrUnknownKey},
		{"kid of 4 KB", header(m{"kid": strings.Repeat("k", 4<<10)}), txntoken.ErrUnknownKey},

		{"jku", header(m{"jku": "https://127.0.0.1/jwks"}), txntoken.ErrHeader},
		{"x5u", header(m{"x5u": "https://127.0.0.1/x"}), txntoken.ErrHeader},
		{"jwk", header(m{"jwk": e.set.Public().Keys[0]}), txntoken.ErrHeader},
		{"x5c", header(m{"x5c": []string{"MIIB"}}), txntoken.ErrHeader},
		{"crit", header(m{"crit": []string{"b64"}, "b64": false}), txntoken.ErrHeader},
		{"other parameter", header(m{"zip": "DEF"}), txntoken.ErrHeader},

		{"no typ", header(m{"typ": omit}), txntoken.ErrType},
		{"typ at+jwt", header(m{"typ": "at+jwt"}), txntoken.ErrType},
		{"typ JWT", header(m{"typ": "JWT"}), txntoken.ErrType},
		{"typ in upper case", header(m{"typ": "TXNTOKEN+JWT"}), txntoken.ErrType},
		{"typ with application/", header(m{"typ": "application/txntoken+jwt"}), txntoken.ErrType},

		{"no exp", claims(m{"exp": omit}), txntoken.ErrExpired},
		{"zero exp", claims(m{"exp": 0}), txntoken.ErrExpired},
		{"past exp", claims(m{"exp": now - 60, "iat": now - 120}), txntoken.ErrExpired},
		{"no iat", claims(m{"iat": omit}), txntoken.ErrLifetime},
		{"lifetime over the maximum", claims(m{"exp": now + 301}), txntoken.ErrLifetime},
		{"exp before iat", claims(m{"exp": now + 10, "iat": now + 20}), txntoken.ErrLifetime},
		{"iat in the future", claims(m{"iat": now + 60, "exp": now + 120}), errNotYetValid},
		{"nbf in the future", claims(m{"nbf": now + 60}), errNotYetValid},

		{"wrong iss", claims(m{"iss": "spiffe://rampart.test/order"}), txntoken.ErrIssuer},
		{"no iss", claims(m{"iss": omit}), txntoken.ErrIssuer},
		{"other trust domain", claims(m{"aud": "evil.test"}), txntoken.ErrAudience},
		{"aud list", claims(m{"aud": []string{testTrustDomain, "x"}}), txntoken.ErrAudience},
		{"no aud", claims(m{"aud": omit}), txntoken.ErrAudience},
		{"no sub", claims(m{"sub": omit}), txntoken.ErrClaims},
		{"no txn", claims(m{"txn": omit}), txntoken.ErrClaims},
		{"no req_wl", claims(m{"req_wl": omit}), txntoken.ErrClaims},

		{"other environment's key", signed(jose.ES256, other, other.KeyID), txntoken.ErrUnknownKey},
		{"other environment's key, our kid", signed(jose.ES256, other, e.key.KeyID), errSignature},
		{"tampered scope", tampered, txntoken.ErrSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tok, err := e.verifier.Verify(t.Context(), tt.token)
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("Verify() error = %v, want %v", err, tt.wantErr)
			}
			if tok != nil {
				t.Errorf("Verify() returned a token with error %v", err)
			}
		})
	}
}

// TestTokenTypesDoNotMix checks both directions: an access token is never
// accepted as a transaction token, and a transaction token never as an
// access token, even when both are signed by the same keys and the
// verifier's issuer and audience match.
func TestTokenTypesDoNotMix(t *testing.T) {
	t.Parallel()
	e := newEnv(t)

	issuer, err := accesstoken.NewIssuer(accesstoken.IssuerConfig{
		Issuer: testIssuer, Audience: testTrustDomain, Signer: e.set,
	})
	if err != nil {
		t.Fatal(err)
	}
	access, _, err := issuer.Issue(accesstoken.Request{Subject: "user-1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.verifier.Verify(t.Context(), access); !errors.Is(err, txntoken.ErrType) {
		t.Errorf("transaction token Verify(access token) error = %v, want ErrType", err)
	}

	accessVerifier, err := accesstoken.NewVerifier(accesstoken.VerifierConfig{
		Issuer: testIssuer, Audience: testTrustDomain, Keys: e.set,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := accessVerifier.Verify(t.Context(), access); err != nil {
		t.Fatalf("access token Verify(access token) error = %v", err)
	}
	txn, err := e.minter.Mint(txntoken.Request{Subject: "user-1", Scopes: []string{"orders:read"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := accessVerifier.Verify(t.Context(), txn.Raw); !errors.Is(err, accesstoken.ErrType) {
		t.Errorf("access token Verify(transaction token) error = %v, want ErrType", err)
	}
}

func TestMint(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	before := time.Now().Truncate(time.Second)
	req := txntoken.Request{
		Subject:   "user-1",
		SessionID: "s-1",
		Scopes:    []string{"orders:read", "orders:write"},
		ClientIP:  "2001:db8:0:0::1",
		Context:   map[string]string{"order_id": "o-42"},
	}
	tok, err := e.minter.Mint(req)
	if err != nil {
		t.Fatal(err)
	}
	req.Context["order_id"] = "changed after minting"

	want := txntoken.Claims{
		Subject:   "user-1",
		SessionID: "s-1",
		Scopes:    []string{"orders:read", "orders:write"},
		Workload:  testWorkload,
		ClientIP:  "2001:db8::1",
		Context:   map[string]string{"order_id": "o-42"},
	}
	ignore := cmpopts.IgnoreFields(txntoken.Claims{}, "ID", "IssuedAt", "Expiry")
	if diff := cmp.Diff(want, tok.Claims, ignore); diff != "" {
		t.Errorf("Mint() claims mismatch (-want +got):\n%s", diff)
	}
	if _, err := uuid.Parse(tok.Claims.ID); err != nil {
		t.Errorf("txn %q is not a UUID: %v", tok.Claims.ID, err)
	}
	iat, exp := tok.Claims.IssuedAt, tok.Claims.Expiry
	if iat.Before(before) || exp.Sub(iat) != txntoken.DefaultLifetime {
		t.Errorf("IssuedAt %v, Expiry %v: want now and a minute later", iat, exp)
	}

	got, err := e.verifier.Verify(t.Context(), tok.Raw)
	if err != nil {
		t.Fatalf("Verify(minted token) error = %v", err)
	}
	if diff := cmp.Diff(tok, got); diff != "" {
		t.Errorf("Verify() differs from Mint() (-minted +verified):\n%s", diff)
	}
	c := got.Claims
	if !c.User() || !c.HasScopes("orders:read") || c.HasScopes("admin") {
		t.Errorf("User() = %v, HasScopes = %v, %v",
			c.User(), c.HasScopes("orders:read"), c.HasScopes("admin"))
	}

	header, payload := decodeParts(t, tok.Raw)
	wantHeader := map[string]any{"alg": "ES256", "kid": e.key.KeyID, "typ": "txntoken+jwt"}
	if diff := cmp.Diff(wantHeader, header); diff != "" {
		t.Errorf("header mismatch (-want +got):\n%s", diff)
	}
	unix := float64(iat.Unix())
	wantPayload := map[string]any{
		"iss": testIssuer, "aud": testTrustDomain, "iat": unix, "exp": unix + 60,
		"txn": tok.Claims.ID, "sub": "user-1", "sid": "s-1", "scope": "orders:read orders:write",
		"req_wl": testWorkload, "rctx": map[string]any{"req_ip": "2001:db8::1"},
		"tctx": map[string]any{"order_id": "o-42"},
	}
	if diff := cmp.Diff(wantPayload, payload); diff != "" {
		t.Errorf("claims mismatch (-want +got):\n%s", diff)
	}
}

func TestMintAnonymous(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok, err := e.minter.Mint(txntoken.Request{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := e.verifier.Verify(t.Context(), tok.Raw)
	if err != nil {
		t.Fatal(err)
	}
	if got.Claims.Subject != txntoken.Anonymous || got.Claims.User() {
		t.Errorf("anonymous token: Subject %q, User() %v", got.Claims.Subject, got.Claims.User())
	}
}

func TestMintRefuses(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tests := map[string]txntoken.Request{
		"session without user": {SessionID: "s"},
		"empty scope":          {Subject: "u", Scopes: []string{""}},
		"scope with space":     {Subject: "u", Scopes: []string{"a b"}},
		"bad client IP":        {Subject: "u", ClientIP: "localhost"},
		"empty context key":    {Subject: "u", Context: map[string]string{"": "v"}},
		"over MaxSize": {
			Subject: "u",
			Context: map[string]string{"k": strings.Repeat("v", txntoken.MaxSize)},
		},
	}
	for name, req := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if tok, err := e.minter.Mint(req); err == nil {
				t.Errorf("Mint() = %v, want an error", tok)
			}
		})
	}
}

func TestNewMinterRefusesConfig(t *testing.T) {
	t.Parallel()
	set, _ := jwkstest.KeySet(t)
	ok := txntoken.MinterConfig{Signer: set, TrustDomain: "td", Workload: testWorkload, Issuer: "i"}
	with := func(change func(*txntoken.MinterConfig)) txntoken.MinterConfig {
		c := ok
		change(&c)
		return c
	}
	if _, err := txntoken.NewMinter(ok); err != nil {
		t.Fatalf("NewMinter(valid config) error = %v", err)
	}
	tests := map[string]txntoken.MinterConfig{
		"no signer":           with(func(c *txntoken.MinterConfig) { c.Signer = nil }),
		"no trust domain":     with(func(c *txntoken.MinterConfig) { c.TrustDomain = "" }),
		"no issuer":           with(func(c *txntoken.MinterConfig) { c.Issuer = "" }),
		"no workload":         with(func(c *txntoken.MinterConfig) { c.Workload = "" }),
		"workload not SPIFFE": with(func(c *txntoken.MinterConfig) { c.Workload = "https://gw" }),
		"lifetime over 5m":    with(func(c *txntoken.MinterConfig) { c.Lifetime = time.Hour }),
		"negative lifetime":   with(func(c *txntoken.MinterConfig) { c.Lifetime = -time.Minute }),
	}
	for name, cfg := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if _, err := txntoken.NewMinter(cfg); err == nil {
				t.Error("NewMinter() succeeded")
			}
		})
	}
}

func TestNewVerifierRefusesConfig(t *testing.T) {
	t.Parallel()
	keys := jwks.NewStatic()
	tests := map[string]txntoken.VerifierConfig{
		"no keys":          {TrustDomain: "td", Issuer: "i"},
		"no trust domain":  {Keys: keys, Issuer: "i"},
		"no issuer":        {Keys: keys, TrustDomain: "td"},
		"leeway too large": {Keys: keys, TrustDomain: "td", Issuer: "i", Leeway: time.Minute},
		"negative leeway":  {Keys: keys, TrustDomain: "td", Issuer: "i", Leeway: -time.Second},
	}
	for name, cfg := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if _, err := txntoken.NewVerifier(cfg); err == nil {
				t.Error("NewVerifier() succeeded")
			}
		})
	}
}

func TestContext(t *testing.T) {
	t.Parallel()
	if _, ok := txntoken.FromContext(t.Context()); ok {
		t.Error("FromContext(empty context) found a token")
	}
	tok := &txntoken.Token{Raw: "r", Claims: txntoken.Claims{Subject: "u"}}
	got, ok := txntoken.FromContext(txntoken.NewContext(t.Context(), tok))
	if !ok || got != tok {
		t.Errorf("FromContext(NewContext(tok)) = %v, %v", got, ok)
	}
	if _, ok := txntoken.FromContext(txntoken.NewContext(t.Context(), nil)); ok {
		t.Error("FromContext(NewContext(nil)) found a token")
	}
}

func decodeParts(t testing.TB, raw string) (header, payload map[string]any) {
	t.Helper()
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts", len(parts))
	}
	for i, dst := range []*map[string]any{&header, &payload} {
		data, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(data, dst); err != nil {
			t.Fatal(err)
		}
	}
	return header, payload
}

func TestVerifyAt(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	minted := time.Now().Add(-time.Hour).Truncate(time.Second)
	raw := e.sign(t, nil, map[string]any{"iat": minted.Unix(), "exp": minted.Add(time.Minute).Unix()})

	if _, err := e.verifier.Verify(t.Context(), raw); !errors.Is(err, txntoken.ErrExpired) {
		t.Fatalf("Verify of an hour-old token: got %v, want ErrExpired", err)
	}
	tests := []struct {
		name    string
		at      time.Time
		wantErr error
	}{
		{"while valid", minted.Add(30 * time.Second), nil},
		{"after expiry", minted.Add(2 * time.Minute), txntoken.ErrExpired},
		{"before issue", minted.Add(-time.Minute), txntoken.ErrNotYetValid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tok, err := e.verifier.VerifyAt(t.Context(), raw, tt.at)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("VerifyAt: got %v, want %v", err, tt.wantErr)
			}
			if err == nil && tok.Claims.Subject != "user-1" {
				t.Errorf("subject %q", tok.Claims.Subject)
			}
		})
	}
}
