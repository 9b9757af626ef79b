package accesstoken_test

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"maps"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/google/uuid"

	"example.com/rampart/platform/accesstoken"
	"example.com/rampart/platform/jwks"
	"example.com/rampart/platform/jwks/jwkstest"
)

const (
	testIssuer   = "https://issuer.test"
	testAudience = "https://api.test"
)

// omit marks a claim or header member to leave out.
type omitted struct{}

var omit omitted

// encode returns the JSON of base, with overrides applied and omitted
// members removed.
func encode(t testing.TB, base, overrides map[string]any) string {
	t.Helper()
	m := map[string]any{}
	maps.Copy(m, base)
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

// validClaims returns the claims of a token valid now.
func validClaims() map[string]any {
	now := time.Now().Unix()
	return map[string]any{
		"iss":       testIssuer,
		"sub":       "user-1",
		"aud":       testAudience,
		"exp":       now + 300,
		"iat":       now,
		"nbf":       now,
		"jti":       "id-1",
		"scope":     "orders:read orders:write",
		"sid":       "session-1",
		"client_id": "web",
	}
}

type env struct {
	set      *jwks.KeySet
	key      jose.JSONWebKey // active ES256 key
	edKey    jose.JSONWebKey
	verifier *accesstoken.Verifier
}

func newEnv(t testing.TB) *env {
	t.Helper()
	set, keys := jwkstest.KeySet(t, jose.ES256, jose.EdDSA)
	return &env{
		set:      set,
		key:      keys[0],
		edKey:    keys[1],
		verifier: newVerifier(t, accesstoken.VerifierConfig{Keys: set}),
	}
}

func newVerifier(t testing.TB, cfg accesstoken.VerifierConfig) *accesstoken.Verifier {
	t.Helper()
	if cfg.Issuer == "" {
		cfg.Issuer = testIssuer
	}
	if cfg.Audience == "" {
		cfg.Audience = testAudience
	}
	v, err := accesstoken.NewVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// sign signs claims with the ES256 key under a header built from
// overrides.
func (e *env) sign(t testing.TB, header, claims map[string]any) string {
	t.Helper()
	base := map[string]any{"alg": "ES256", "kid": e.key.KeyID, "typ": "at+jwt"}
	payload := encode(t, validClaims(), claims)
	return jwkstest.Sign(jose.ES256, e.key, encode(t, base, header), payload)
}

var (
	rsaOnce sync.Once
	rsaPriv *rsa.PrivateKey
)

func rsaKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	rsaOnce.Do(func() {
		var err error
		if rsaPriv, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			t.Fatal(err)
		}
	})
	return rsaPriv
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
		h := encode(t, m{"alg": string(alg), "kid": kid, "typ": "at+jwt"}, nil)
		return jwkstest.Sign(alg, key, h, encode(t, validClaims(), nil))
	}
	// payload signs a hand-written payload with the ES256 key.
	payload := func(p string) string {
		h := encode(t, m{"alg": "ES256", "kid": e.key.KeyID, "typ": "at+jwt"}, nil)
		return jwkstest.Sign(jose.ES256, e.key, h, p)
	}
	algNone := b64([]byte(`{"alg":"none","typ":"at+jwt"}`)) + "." + parts[1] + "."
	forged := b64([]byte(encode(t, validClaims(), m{"sub": "admin"})))
	tampered := parts[0] + "." + forged + "." + parts[2]

	errAlgorithm, errUnknownKey := accesstoken.ErrAlgorithm, accesstoken.ErrUnknownKey
	errTooLarge := accesstoken.ErrTooLarge
	tests := []struct {
		name    string
		token   string
		wantErr error
	}{
		{"a megabyte of dots", strings.Repeat(".", 1<<20), accesstoken.ErrTooLarge},
		{"over the size limit", claims(m{"pad": strings.Repeat("a", 8<<10)}), errTooLarge},

		{"empty", "", accesstoken.ErrMalformed},
		{"one segment", parts[0], accesstoken.ErrMalformed},
		{"two segments", parts[0] + "." + parts[1], accesstoken.ErrMalformed},
		{"four segments", valid + ".x", accesstoken.ErrMalformed},
		{"padded", valid + "==", accesstoken.ErrMalformed},
		{"not base64url", parts[0] + ".e30*." + parts[2], accesstoken.ErrMalformed},
		{"bearer prefix", "Bearer " + valid, accesstoken.ErrMalformed},
		{"claims not JSON", payload("not json"), accesstoken.ErrMalformed},
		{"claims an array", payload("[]"), accesstoken.ErrMalformed},
		{"duplicate claim", payload(`{"sub":"a","sub":"b"}`), accesstoken.ErrMalformed},

		{"alg none", algNone, accesstoken.ErrAlgorithm},
		{"alg none with kid", header(m{"alg": "none"}), accesstoken.ErrAlgorithm},
		{"no alg", header(m{"alg": omit}), accesstoken.ErrAlgorithm},
		{"ES384", header(m{"alg": "ES384"}), accesstoken.ErrAlgorithm},
		{"RS256 not allowed by default", signed(jose.RS256, rsaKey(t), e.key.KeyID), errAlgorithm},
		{"HS256 keyed with public keys", signed(jose.HS256, pubJSON, e.key.KeyID), errAlgorithm},
		{"EdDSA on the ES256 key", signed(jose.EdDSA, e.edKey, e.key.KeyID), errAlgorithm},

		{"no kid", header(m{"kid": omit}), accesstoken.ErrUnknownKey},
		{"kid path", header(m{"kid": "../../dev/null"}), accesstoken.ErrUnknownKey},
		{"kid SQL", header(m{"kid": "1' UNION SELECT key FROM keys--"}), accesstoken.ErrUnknownKey},
		{"kid URL", header(m{"kid": "https://127.0.0.1/.well-known/jwks.json"}), errUnknownKey},

		{"jku", header(m{"jku": "https://127.0.0.1/jwks.json"}), accesstoken.ErrHeader},
		{"x5u", header(m{"x5u": "https://127.0.0.1/cert.pem"}), accesstoken.ErrHeader},
		{"jwk", header(m{"jwk": e.set.Public().Keys[0]}), accesstoken.ErrHeader},
		{"x5c", header(m{"x5c": []string{"MIIBkTCB+wIJ"}}), accesstoken.ErrHeader},
		{"crit", header(m{"crit": []string{"exp"}, "exp": now}), accesstoken.ErrHeader},
		{"cty", header(m{"cty": "JWT"}), accesstoken.ErrHeader},
		{"other parameter", header(m{"x-debug": true}), accesstoken.ErrHeader},

		{"no typ", header(m{"typ": omit}), accesstoken.ErrType},
		{"typ JWT", header(m{"typ": "JWT"}), accesstoken.ErrType},
		{"typ txntoken+jwt", header(m{"typ": "txntoken+jwt"}), accesstoken.ErrType},
		{"typ with parameters", header(m{"typ": "at+jwt; charset=utf-8"}), accesstoken.ErrType},
		{"typ text/at+jwt", header(m{"typ": "text/at+jwt"}), accesstoken.ErrType},

		{"no exp", claims(m{"exp": omit}), accesstoken.ErrExpired},
		{"null exp", claims(m{"exp": nil}), accesstoken.ErrExpired},
		{"zero exp", claims(m{"exp": 0}), accesstoken.ErrExpired},
		{"negative exp", claims(m{"exp": -1}), accesstoken.ErrExpired},
		{"exp beyond the longest lifetime", claims(m{"exp": now + 3600 + 120}), accesstoken.ErrLifetime},
		{"exp ten days ahead", claims(m{"exp": now + 10*24*3600}), accesstoken.ErrLifetime},
		{"past exp", claims(m{"exp": now - 120, "iat": now - 400, "nbf": now - 400}),
			accesstoken.ErrExpired},
		{"string exp", claims(m{"exp": "9999999999"}), accesstoken.ErrMalformed},
		{"boolean exp", claims(m{"exp": true}), accesstoken.ErrMalformed},
		{"huge exp", claims(m{"exp": 1e300}), accesstoken.ErrMalformed},
		{"nbf in the future", claims(m{"nbf": now + 120}), accesstoken.ErrNotYetValid},
		{"iat in the future", claims(m{"iat": now + 120}), accesstoken.ErrNotYetValid},

		{"wrong iss", claims(m{"iss": "https://evil.test"}), accesstoken.ErrIssuer},
		{"iss with trailing slash", claims(m{"iss": testIssuer + "/"}), accesstoken.ErrIssuer},
		{"no iss", claims(m{"iss": omit}), accesstoken.ErrIssuer},
		{"wrong aud", claims(m{"aud": "https://other-api.test"}), accesstoken.ErrAudience},
		{"aud list without ours", claims(m{"aud": []string{"a", "b"}}), accesstoken.ErrAudience},
		{"no aud", claims(m{"aud": omit}), accesstoken.ErrAudience},
		{"numeric aud", claims(m{"aud": 1}), accesstoken.ErrMalformed},
		{"no sub", claims(m{"sub": omit}), accesstoken.ErrSubject},
		{"empty sub", claims(m{"sub": ""}), accesstoken.ErrSubject},
		{"numeric sub", claims(m{"sub": 42}), accesstoken.ErrMalformed},

		{"other environment's key", signed(jose.ES256, other, other.KeyID), errUnknownKey},
		{"other environment's key, our kid", signed(jose.ES256, other, e.key.KeyID),
			accesstoken.ErrSignature},
		{"tampered claims", tampered, accesstoken.ErrSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			claims, err := e.verifier.Verify(t.Context(), tt.token)
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("Verify() error = %v, want %v", err, tt.wantErr)
			}
			if claims != nil {
				t.Errorf("Verify() returned claims with error %v", err)
			}
		})
	}

	t.Run("kid of 10 KB", func(t *testing.T) {
		t.Parallel()
		v := newVerifier(t, accesstoken.VerifierConfig{
			Keys:    e.set,
			MaxSize: accesstoken.MaxTokenSize,
		})
		tok := e.sign(t, map[string]any{"kid": strings.Repeat("A", 10<<10)}, nil)
		if _, err := v.Verify(t.Context(), tok); !errors.Is(err, accesstoken.ErrUnknownKey) {
			t.Errorf("Verify() error = %v, want ErrUnknownKey", err)
		}
	})

	t.Run("HS256 refused with RSA allowed", func(t *testing.T) {
		t.Parallel()
		priv := rsaKey(t)
		pub := jose.JSONWebKey{Key: priv.Public(), KeyID: "rsa", Algorithm: "RS256", Use: "sig"}
		pubJSON, err := json.Marshal(pub)
		if err != nil {
			t.Fatal(err)
		}
		v := newVerifier(t, accesstoken.VerifierConfig{
			Keys:       jwks.NewStatic(pub),
			Algorithms: []jose.SignatureAlgorithm{jose.RS256},
		})
		claims := encode(t, validClaims(), nil)
		const rsHeader = `{"alg":"RS256","kid":"rsa","typ":"at+jwt"}`
		good := jwkstest.Sign(jose.RS256, priv, rsHeader, claims)
		if _, err := v.Verify(t.Context(), good); err != nil {
			t.Fatalf("Verify(RS256 token) error = %v", err)
		}
		const hsHeader = `{"alg":"HS256","kid":"rsa","typ":"at+jwt"}`
		forged := jwkstest.Sign(jose.HS256, pubJSON, hsHeader, claims)
		if _, err := v.Verify(t.Context(), forged); !errors.Is(err, accesstoken.ErrAlgorithm) {
			t.Errorf("Verify(HS256 forged with the public key) error = %v, want ErrAlgorithm", err)
		}
	})
}

func TestVerifierAccepts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	now := time.Now().Unix()
	type m = map[string]any
	// full is what validClaims says; each case says how it differs.
	full := accesstoken.Claims{
		Issuer: testIssuer, Subject: "user-1", SessionID: "session-1", ID: "id-1", ClientID: "web",
		Scopes: []string{"orders:read", "orders:write"},
	}
	with := func(change func(c *accesstoken.Claims)) accesstoken.Claims {
		c := full
		change(&c)
		return c
	}
	tests := []struct {
		name   string
		header m
		claims m
		want   accesstoken.Claims
	}{
		{name: "full", want: full},
		{
			name: "minimal",
			claims: m{
				"iat": omit, "nbf": omit, "jti": omit,
				"scope": omit, "sid": omit, "client_id": omit,
			},
			want: accesstoken.Claims{Issuer: testIssuer, Subject: "user-1"},
		},
		{name: "typ application/at+jwt", header: m{"typ": "application/at+jwt"}, want: full},
		{name: "typ in upper case", header: m{"typ": "AT+JWT"}, want: full},
		{name: "aud list with ours", claims: m{"aud": []string{"x", testAudience}}, want: full},
		{
			name:   "exp within leeway",
			claims: m{"exp": now - 10, "iat": omit, "nbf": omit, "scope": "a"},
			want:   with(func(c *accesstoken.Claims) { c.Scopes = []string{"a"} }),
		},
		{name: "nbf within leeway", claims: m{"nbf": now + 20, "iat": now + 20}, want: full},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := e.verifier.Verify(t.Context(), e.sign(t, tt.header, tt.claims))
			if err != nil {
				t.Fatalf("Verify() error = %v", err)
			}
			ignoreTimes := cmpopts.IgnoreFields(accesstoken.Claims{}, "IssuedAt", "Expiry")
			if diff := cmp.Diff(tt.want, *got, ignoreTimes, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Verify() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNewVerifierRefusesConfig(t *testing.T) {
	t.Parallel()
	keys := jwks.NewStatic()
	algs := func(a ...jose.SignatureAlgorithm) accesstoken.VerifierConfig {
		return accesstoken.VerifierConfig{Issuer: "i", Audience: "a", Keys: keys, Algorithms: a}
	}
	tests := map[string]accesstoken.VerifierConfig{
		"no issuer":       {Audience: "a", Keys: keys},
		"no audience":     {Issuer: "i", Keys: keys},
		"no keys":         {Issuer: "i", Audience: "a"},
		"leeway over 60s": {Issuer: "i", Audience: "a", Keys: keys, Leeway: 61 * time.Second},
		"negative leeway": {Issuer: "i", Audience: "a", Keys: keys, Leeway: -time.Second},
		"size over limit": {
			Issuer: "i", Audience: "a", Keys: keys, MaxSize: accesstoken.MaxTokenSize + 1,
		},
		"negative max size": {Issuer: "i", Audience: "a", Keys: keys, MaxSize: -1},
		"HS256":             algs(jose.HS256),
		"none":              algs("none"),
		"ES384":             algs(jose.ES384),
		"RS512":             algs(jose.RS512),
		"ES256 and HS256":   algs(jose.ES256, jose.HS256),
	}
	for name, cfg := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if _, err := accesstoken.NewVerifier(cfg); err == nil {
				t.Error("NewVerifier() succeeded")
			}
		})
	}
}

func TestIssuer(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	issuer, err := accesstoken.NewIssuer(accesstoken.IssuerConfig{
		Issuer: testIssuer, Audience: testAudience, Signer: e.set,
	})
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now().Truncate(time.Second)
	raw, claims, err := issuer.Issue(accesstoken.Request{
		Subject:   "user-7",
		SessionID: "s-7",
		Scopes:    []string{"orders:read", "profile"},
		ClientID:  "cli",
	})
	if err != nil {
		t.Fatal(err)
	}

	got, err := e.verifier.Verify(t.Context(), raw)
	if err != nil {
		t.Fatalf("Verify(issued token) error = %v", err)
	}
	if diff := cmp.Diff(claims, *got); diff != "" {
		t.Errorf("verified claims differ from issued claims (-issued +verified):\n%s", diff)
	}
	lifetime := claims.Expiry.Sub(claims.IssuedAt)
	if claims.IssuedAt.Before(before) || lifetime != accesstoken.DefaultLifetime {
		t.Errorf("IssuedAt %v, Expiry %v: want now and now + %v", claims.IssuedAt, claims.Expiry,
			accesstoken.DefaultLifetime)
	}
	if _, err := uuid.Parse(claims.ID); err != nil {
		t.Errorf("jti %q is not a UUID: %v", claims.ID, err)
	}

	header, payload := decodeParts(t, raw)
	wantHeader := map[string]any{"alg": "ES256", "kid": e.key.KeyID, "typ": "at+jwt"}
	if diff := cmp.Diff(wantHeader, header); diff != "" {
		t.Errorf("header mismatch (-want +got):\n%s", diff)
	}
	iat := float64(claims.IssuedAt.Unix())
	wantPayload := map[string]any{
		"iss": testIssuer, "sub": "user-7", "aud": testAudience,
		"iat": iat, "nbf": iat, "exp": iat + accesstoken.DefaultLifetime.Seconds(),
		"jti": claims.ID, "scope": "orders:read profile", "sid": "s-7", "client_id": "cli",
	}
	if diff := cmp.Diff(wantPayload, payload); diff != "" {
		t.Errorf("claims mismatch (-want +got):\n%s", diff)
	}

	if _, _, err := issuer.Issue(accesstoken.Request{}); err == nil {
		t.Error("Issue() without a subject succeeded")
	}
	for _, scope := range []string{"", "two words", `quote"`, "back\\slash", "tab\t", "é"} {
		req := accesstoken.Request{Subject: "u", Scopes: []string{scope}}
		if _, _, err := issuer.Issue(req); err == nil {
			t.Errorf("Issue() with scope %q succeeded", scope)
		}
	}
}

func TestIssuerFollowsRotation(t *testing.T) {
	t.Parallel()
	first, err := jwks.GenerateKey(jose.ES256)
	if err != nil {
		t.Fatal(err)
	}
	second, err := jwks.GenerateKey(jose.EdDSA)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "keys.json")
	if err := jwks.WriteKeySetFile(path, first, second); err != nil {
		t.Fatal(err)
	}
	opts := jwks.KeySetOptions{PollInterval: 5 * time.Millisecond}
	set, err := jwks.LoadKeySet(t.Context(), path, opts)
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := accesstoken.NewIssuer(accesstoken.IssuerConfig{
		Issuer: testIssuer, Audience: testAudience, Signer: set,
	})
	if err != nil {
		t.Fatal(err)
	}
	verifier := newVerifier(t, accesstoken.VerifierConfig{Keys: set})
	kidOf := func() string {
		raw, _, err := issuer.Issue(accesstoken.Request{Subject: "u"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := verifier.Verify(t.Context(), raw); err != nil {
			t.Fatalf("Verify() error = %v", err)
		}
		header, _ := decodeParts(t, raw)
		return header["kid"].(string)
	}

	if got := kidOf(); got != first.KeyID {
		t.Fatalf("kid = %q, want %q", got, first.KeyID)
	}
	if err := jwks.WriteKeySetFile(path, second, first); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for kidOf() != second.KeyID {
		if time.Now().After(deadline) {
			t.Fatal("the issuer kept signing with the previous key")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestNewIssuerRefusesConfig(t *testing.T) {
	t.Parallel()
	set, _ := jwkstest.KeySet(t)
	tests := map[string]accesstoken.IssuerConfig{
		"no issuer":         {Audience: "a", Signer: set},
		"no audience":       {Issuer: "i", Signer: set},
		"no signer":         {Issuer: "i", Audience: "a"},
		"negative lifetime": {Issuer: "i", Audience: "a", Signer: set, Lifetime: -time.Second},
		"lifetime too long": {
			Issuer: "i", Audience: "a", Signer: set,
			Lifetime: accesstoken.MaxLifetime + time.Second,
		},
	}
	for name, cfg := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if _, err := accesstoken.NewIssuer(cfg); err == nil {
				t.Error("NewIssuer() succeeded")
			}
		})
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
