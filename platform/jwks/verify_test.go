package jwks_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"

	"example.com/rampart/platform/jwks"
	"example.com/rampart/platform/jwks/jwkstest"
)

const testType = "test+jwt"

// recordingSource wraps a KeySource and counts lookups and the longest kid
// asked for.
type recordingSource struct {
	jwks.KeySource
	lookups    atomic.Int64
	longestKID atomic.Int64
}

func (r *recordingSource) Key(ctx context.Context, kid string) (jose.JSONWebKey, error) {
	r.lookups.Add(1)
	if n := int64(len(kid)); n > r.longestKID.Load() {
		r.longestKID.Store(n)
	}
	return r.KeySource.Key(ctx, kid)
}

func newVerifier(t testing.TB, keys jwks.KeySource, algs ...jose.SignatureAlgorithm,
) *jwks.Verifier {
	t.Helper()
	if len(algs) == 0 {
		algs = []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA}
	}
	v, err := jwks.NewVerifier(keys, jwks.VerifyOptions{
		Algorithms: algs,
		MaxSize:    16 << 10,
		Type:       func(typ string) bool { return typ == testType },
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func header(t testing.TB, members map[string]any) string {
	t.Helper()
	data, err := json.Marshal(members)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestNewVerifierRefusesConfig(t *testing.T) {
	t.Parallel()
	keys := jwks.NewStatic()
	typ := func(string) bool { return true }
	algs := []jose.SignatureAlgorithm{jose.ES256}
	tests := []struct {
		name string
		keys jwks.KeySource
		opts jwks.VerifyOptions
	}{
		{name: "no keys", opts: jwks.VerifyOptions{Algorithms: algs, MaxSize: 1, Type: typ}},
		{name: "no algorithms", keys: keys, opts: jwks.VerifyOptions{MaxSize: 1, Type: typ}},
		{name: "no size", keys: keys, opts: jwks.VerifyOptions{Algorithms: algs, Type: typ}},
		{name: "no type", keys: keys, opts: jwks.VerifyOptions{Algorithms: algs, MaxSize: 1}},
	}
	refused := []jose.SignatureAlgorithm{jose.HS256, jose.HS384, jose.HS512, "none", "", "ES256K"}
	for _, alg := range refused {
		tests = append(tests, struct {
			name string
			keys jwks.KeySource
			opts jwks.VerifyOptions
		}{
			name: "algorithm " + string(alg),
			keys: keys,
			opts: jwks.VerifyOptions{
				Algorithms: []jose.SignatureAlgorithm{jose.ES256, alg}, MaxSize: 1, Type: typ,
			},
		})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := jwks.NewVerifier(tt.keys, tt.opts); err == nil {
				t.Error("NewVerifier() succeeded")
			}
		})
	}
}

func TestVerifierRefuses(t *testing.T) {
	t.Parallel()
	set, keys := jwkstest.KeySet(t, jose.ES256, jose.EdDSA)
	es, ed := keys[0], keys[1]
	source := &recordingSource{KeySource: set}
	v := newVerifier(t, source)
	other, _ := jwkstest.KeySet(t, jose.ES256)
	otherKey := other.Signer().Key.(jose.JSONWebKey)
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pubJSON, err := json.Marshal(set.Public())
	if err != nil {
		t.Fatal(err)
	}
	const payload = `{"sub":"alice"}`
	// hdr returns a header naming alg and kid.
	hdr := func(alg, kid string) string {
		return header(t, map[string]any{"alg": alg, "kid": kid, "typ": testType})
	}
	// with returns a valid ES256 header plus one member.
	with := func(name string, value any) string {
		members := map[string]any{"alg": "ES256", "kid": es.KeyID, "typ": testType, name: value}
		return header(t, members)
	}
	// es256 signs payload with the ES256 key under header h.
	es256 := func(h string) string { return jwkstest.Sign(jose.ES256, es, h, payload) }
	valid := es256(hdr("ES256", es.KeyID))
	parts := strings.Split(valid, ".")
	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	// swap replaces one segment of the valid token.
	swap := func(i int, seg string) string {
		p := slices.Clone(parts)
		p[i] = seg
		return strings.Join(p, ".")
	}
	otherPub := otherKey.Public()
	otherSet := jwkstest.Sign(jose.ES256, otherKey, hdr("ES256", otherKey.KeyID), payload)
	otherSameKID := jwkstest.Sign(jose.ES256, otherKey, hdr("ES256", es.KeyID), payload)
	hmacForged := jwkstest.Sign(jose.HS256, pubJSON, hdr("HS256", es.KeyID), payload)

	tests := []struct {
		name    string
		token   string
		wantErr error
	}{
		{"too large", strings.Repeat(".", 16<<10+1), jwks.ErrTooLarge},

		{"empty", "", jwks.ErrMalformed},
		{"two segments", parts[0] + "." + parts[1], jwks.ErrMalformed},
		{"four segments", valid + "." + parts[2], jwks.ErrMalformed},
		{"empty header", swap(0, ""), jwks.ErrMalformed},
		{"empty payload", swap(1, ""), jwks.ErrMalformed},
		{"padding", valid + "=", jwks.ErrMalformed},
		{"standard base64", swap(1, parts[1]+"+/"), jwks.ErrMalformed},
		{"whitespace", swap(1, "\n"+parts[1]), jwks.ErrMalformed},
		{"non-canonical", swap(2, noncanonical(parts[2])), jwks.ErrMalformed},
		{"JWS JSON serialization", `{"payload":"` + parts[1] + `"}`, jwks.ErrMalformed},
		{"header not JSON", swap(0, enc("alg")), jwks.ErrMalformed},
		{"header an array", swap(0, enc(`["alg"]`)), jwks.ErrMalformed},
		{"header null", swap(0, enc("null")), jwks.ErrMalformed},
		{"duplicate header member", es256(`{"alg":"ES256","alg":"ES256","kid":"` + es.KeyID +
			`","typ":"test+jwt"}`), jwks.ErrMalformed},

		{"alg none, no signature", enc(`{"alg":"none","typ":"test+jwt"}`) + "." + parts[1] + ".",
			jwks.ErrAlgorithm},
		{"alg none with kid and signature", swap(0, enc(hdr("none", es.KeyID))), jwks.ErrAlgorithm},
		{"alg NONE", enc(hdr("NONE", es.KeyID)) + "." + parts[1] + ".", jwks.ErrAlgorithm},
		{"no alg", es256(`{"kid":"` + es.KeyID + `","typ":"test+jwt"}`), jwks.ErrAlgorithm},
		{"alg not a string", es256(with("alg", 256)), jwks.ErrAlgorithm},
		{"alg in other case", es256(hdr("es256", es.KeyID)), jwks.ErrAlgorithm},
		{"ES384 not allowed", jwkstest.Sign(jose.ES384, p384, hdr("ES384", es.KeyID), payload),
			jwks.ErrAlgorithm},
		{"HMAC keyed with the public keys", hmacForged, jwks.ErrAlgorithm},
		{"alg of another key type", jwkstest.Sign(jose.EdDSA, ed, hdr("EdDSA", es.KeyID), payload),
			jwks.ErrAlgorithm},

		{"jku", es256(with("jku", "https://127.0.0.1/keys")), jwks.ErrHeader},
		{"x5u", es256(with("x5u", "https://127.0.0.1/cert")), jwks.ErrHeader},
		{"jwk", es256(with("jwk", members(t, otherPub))), jwks.ErrHeader},
		{"x5c", es256(with("x5c", []string{"MIIB"})), jwks.ErrHeader},
		{"crit", es256(with("crit", []string{"b64"})), jwks.ErrHeader},
		{"b64", es256(with("b64", false)), jwks.ErrHeader},
		{"cty", es256(with("cty", "JWT")), jwks.ErrHeader},
		{"nonce", es256(with("nonce", "n")), jwks.ErrHeader},
		{"unknown", es256(with("zzz", 1)), jwks.ErrHeader},
		{"KID", es256(with("KID", "x")), jwks.ErrHeader},

		{"no typ", es256(`{"alg":"ES256","kid":"` + es.KeyID + `"}`), jwks.ErrType},
		{"wrong typ", es256(with("typ", "JWT")), jwks.ErrType},
		{"typ not a string", es256(with("typ", true)), jwks.ErrType},

		{"no kid", es256(`{"alg":"ES256","typ":"test+jwt"}`), jwks.ErrUnknownKey},
		{"empty kid", es256(hdr("ES256", "")), jwks.ErrUnknownKey},
		{"kid not a string", es256(with("kid", 1)), jwks.ErrUnknownKey},
		{"kid path", es256(hdr("ES256", "../../../../etc/passwd")), jwks.ErrUnknownKey},
		{"kid SQL", es256(hdr("ES256", "x' OR '1'='1")), jwks.ErrUnknownKey},
		{"kid URL", es256(hdr("ES256", "https://127.0.0.1/k.json")), jwks.ErrUnknownKey},
		{"kid 10 KB", es256(hdr("ES256", strings.Repeat("k", 10<<10))), jwks.ErrUnknownKey},
		{"key of another set", otherSet, jwks.ErrUnknownKey},

		{"same kid, another key", otherSameKID, jwks.ErrSignature},
		{"tampered payload", swap(1, enc(`{"sub":"admin"}`)), jwks.ErrSignature},
		{"empty signature", swap(2, ""), jwks.ErrSignature},
		{"short signature", swap(2, parts[2][:40]), jwks.ErrSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			payload, err := v.Verify(t.Context(), tt.token)
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("Verify() error = %v, want %v", err, tt.wantErr)
			}
			if payload != nil {
				t.Errorf("Verify() returned a payload with error %v", err)
			}
		})
	}

	t.Run("valid", func(t *testing.T) {
		t.Parallel()
		eddsa := jwkstest.Sign(jose.EdDSA, ed, hdr("EdDSA", ed.KeyID), payload)
		for _, tok := range []string{valid, eddsa} {
			got, err := v.Verify(t.Context(), tok)
			if err != nil {
				t.Fatalf("Verify() error = %v", err)
			}
			if diff := cmp.Diff(payload, string(got)); diff != "" {
				t.Errorf("Verify() payload mismatch (-want +got):\n%s", diff)
			}
		}
	})

	t.Cleanup(func() {
		if n := source.longestKID.Load(); n > 256 {
			t.Errorf("the key source was asked for a kid of %d bytes", n)
		}
	})
}

// noncanonical returns seg with unused low bits set in its last character,
// which decodes to the same bytes.
func noncanonical(seg string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, seg[len(seg)-1])
	switch len(seg) % 4 {
	case 2:
		last |= 0x01
	case 3:
		last |= 0x01
	}
	return seg[:len(seg)-1] + string(alphabet[last])
}

func TestVerifierRSA(t *testing.T) {
	t.Parallel()
	weak, strong := rsaKey(t, 1024), rsaKey(t, 2048)
	// NewStatic refuses weak keys; a source that does not must not get
	// one past the verifier either.
	keys := mapSource{
		"strong": {Key: strong.Public(), KeyID: "strong"},
		"weak":   {Key: weak.Public(), KeyID: "weak"},
		"rs256":  {Key: strong.Public(), KeyID: "rs256", Algorithm: "RS256"},
	}
	v := newVerifier(t, keys, jose.RS256, jose.PS256)
	// sign signs an empty payload by alg with key, under a header that
	// claims claimed and names kid.
	sign := func(alg jose.SignatureAlgorithm, key any, claimed, kid string) string {
		h := header(t, map[string]any{"alg": claimed, "kid": kid, "typ": testType})
		return jwkstest.Sign(alg, key, h, "{}")
	}
	tests := []struct {
		name    string
		token   string
		wantErr error
	}{
		{"RS256", sign(jose.RS256, strong, "RS256", "strong"), nil},
		{"PS256", sign(jose.PS256, strong, "PS256", "strong"), nil},
		{"weak key", sign(jose.RS256, weak, "RS256", "weak"), jwks.ErrWeakKey},
		{"RS512 not allowed", sign(jose.RS512, strong, "RS512", "strong"), jwks.ErrAlgorithm},
		{"PS256 on RS256 key", sign(jose.PS256, strong, "PS256", "rs256"), jwks.ErrAlgorithm},
		{"PKCS1 claiming PS256", sign(jose.RS256, strong, "PS256", "strong"), jwks.ErrSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := v.Verify(t.Context(), tt.token); !errors.Is(err, tt.wantErr) {
				t.Errorf("Verify() error = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestTokenSigner(t *testing.T) {
	t.Parallel()
	set, keys := jwkstest.KeySet(t, jose.EdDSA)
	signer := jwks.NewTokenSigner(set, testType)
	tok, err := signer.Sign([]byte(`{"a":1}`))
	if err != nil {
		t.Fatal(err)
	}
	data, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"alg": "EdDSA", "kid": keys[0].KeyID, "typ": testType}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("header mismatch (-want +got):\n%s", diff)
	}
	if _, err := newVerifier(t, set).Verify(t.Context(), tok); err != nil {
		t.Errorf("Verify(signed token) error = %v", err)
	}
}

// mapSource is a key source that checks nothing.
type mapSource map[string]jose.JSONWebKey

func (m mapSource) Key(_ context.Context, kid string) (jose.JSONWebKey, error) {
	if k, ok := m[kid]; ok {
		return k, nil
	}
	return jose.JSONWebKey{}, jwks.ErrUnknownKey
}

// failingSource fails every lookup with an error of its own.
type failingSource struct{ err error }

func (f failingSource) Key(context.Context, string) (jose.JSONWebKey, error) {
	return jose.JSONWebKey{}, f.err
}

func TestVerifierKeyProblems(t *testing.T) {
	t.Parallel()
	key := generate(t, jose.ES256)
	encKey := key.Public()
	encKey.Use = "enc"
	token := jwkstest.Sign(jose.ES256, key,
		header(t, map[string]any{"alg": "ES256", "kid": key.KeyID, "typ": testType}), "{}")

	tests := []struct {
		name    string
		keys    jwks.KeySource
		wantErr []error
	}{
		{"encryption key", jwks.NewStatic(encKey), []error{jwks.ErrUnknownKey}},
		{
			name:    "source failure",
			keys:    failingSource{context.DeadlineExceeded},
			wantErr: []error{jwks.ErrUnknownKey, context.DeadlineExceeded},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := newVerifier(t, tt.keys).Verify(t.Context(), token)
			for _, want := range tt.wantErr {
				if !errors.Is(err, want) {
					t.Errorf("Verify() error = %v, want %v", err, want)
				}
			}
		})
	}
}
