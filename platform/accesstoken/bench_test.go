package accesstoken_test

import (
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"example.com/rampart/platform/accesstoken"
	"example.com/rampart/platform/jwks"
	"example.com/rampart/platform/jwks/jwkstest"
)

func BenchmarkVerify(b *testing.B) {
	set, keys := jwkstest.KeySet(b, jose.ES256, jose.EdDSA)
	rsaPub := jose.JSONWebKey{Key: rsaKey(b).Public(), KeyID: "rsa", Use: "sig"}
	claims := encode(b, validClaims(), nil)
	sign := func(alg jose.SignatureAlgorithm, key any, kid string) string {
		header := `{"alg":"` + string(alg) + `","kid":"` + kid + `","typ":"at+jwt"}`
		return jwkstest.Sign(alg, key, header, claims)
	}
	rsaKeys := jwks.NewStatic(rsaPub)
	cases := []struct {
		alg   jose.SignatureAlgorithm
		keys  jwks.KeySource
		token string
	}{
		{jose.ES256, set, sign(jose.ES256, keys[0], keys[0].KeyID)},
		{jose.EdDSA, set, sign(jose.EdDSA, keys[1], keys[1].KeyID)},
		{jose.RS256, rsaKeys, sign(jose.RS256, rsaKey(b), "rsa")},
		{jose.PS256, rsaKeys, sign(jose.PS256, rsaKey(b), "rsa")},
	}
	for _, c := range cases {
		b.Run(string(c.alg), func(b *testing.B) {
			v := newVerifier(b, accesstoken.VerifierConfig{
				Keys:       c.keys,
				Algorithms: []jose.SignatureAlgorithm{c.alg},
			})
			ctx := b.Context()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(ctx, c.token); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkVerifyRefused measures what junk costs: it must be refused
// before any decoding.
func BenchmarkVerifyRefused(b *testing.B) {
	set, _ := jwkstest.KeySet(b)
	v := newVerifier(b, accesstoken.VerifierConfig{Keys: set})
	ctx := b.Context()
	for name, token := range map[string]string{
		"megabyte of dots":  strings.Repeat(".", 1<<20),
		"8 KiB of junk":     strings.Repeat("*", accesstoken.DefaultMaxSize),
		"8 KiB of segments": strings.Repeat("a", accesstoken.DefaultMaxSize-3) + "...",
	} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(ctx, token); err == nil {
					b.Fatal("accepted")
				}
			}
		})
	}
}

func BenchmarkIssue(b *testing.B) {
	set, _ := jwkstest.KeySet(b, jose.ES256)
	issuer, err := accesstoken.NewIssuer(accesstoken.IssuerConfig{
		Issuer: testIssuer, Audience: testAudience, Signer: set,
	})
	if err != nil {
		b.Fatal(err)
	}
	req := accesstoken.Request{Subject: "user-1", SessionID: "s1", Scopes: []string{"orders:read"}}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := issuer.Issue(req); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseAuthorization(b *testing.B) {
	header := "Bearer " + strings.Repeat("a", 800) + "." + strings.Repeat("b", 400) + "." +
		strings.Repeat("c", 86)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := accesstoken.ParseAuthorization(header); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCachedVerify verifies an ES256 token that the verifier has
// verified before and remembers, as the gateway does for the second and
// later calls of a client.
func BenchmarkCachedVerify(b *testing.B) {
	set, keys := jwkstest.KeySet(b, jose.ES256)
	header := `{"alg":"ES256","kid":"` + keys[0].KeyID + `","typ":"at+jwt"}`
	token := jwkstest.Sign(jose.ES256, keys[0], header, encode(b, validClaims(), nil))
	v := newVerifier(b, accesstoken.VerifierConfig{Keys: set, Remember: 1000})
	ctx := b.Context()
	if _, err := v.Verify(ctx, token); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, token); err != nil {
			b.Fatal(err)
		}
	}
}
