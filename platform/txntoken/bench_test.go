package txntoken_test

import (
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"example.com/rampart/platform/jwks/jwkstest"
	"example.com/rampart/platform/txntoken"
)

var benchRequest = txntoken.Request{
	Subject:   "user-1",
	SessionID: "session-1",
	Scopes:    []string{"orders:read", "orders:write"},
	ClientIP:  "192.0.2.1",
	Context:   map[string]string{"order_id": "o-1"},
}

// benchAlgorithms are the algorithms a transaction token may be signed
// with, EdDSA, the one the platform's keys use, first.
var benchAlgorithms = []jose.SignatureAlgorithm{jose.EdDSA, jose.ES256}

func BenchmarkMint(b *testing.B) {
	for _, alg := range benchAlgorithms {
		b.Run(string(alg), func(b *testing.B) {
			minter, _ := benchEnv(b, alg)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := minter.Mint(benchRequest); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkVerify(b *testing.B) {
	for _, alg := range benchAlgorithms {
		b.Run(string(alg), func(b *testing.B) {
			minter, verifier := benchEnv(b, alg)
			tok, err := minter.Mint(benchRequest)
			if err != nil {
				b.Fatal(err)
			}
			ctx := b.Context()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := verifier.Verify(ctx, tok.Raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkVerifyOversized(b *testing.B) {
	e := newEnv(b)
	junk := strings.Repeat(".", 1<<20)
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.verifier.Verify(ctx, junk); err == nil {
			b.Fatal("accepted")
		}
	}
}

// benchEnv returns a minter and a verifier sharing one key of alg.
func benchEnv(b *testing.B, alg jose.SignatureAlgorithm) (*txntoken.Minter, *txntoken.Verifier) {
	b.Helper()
	set, _ := jwkstest.KeySet(b, alg)
	minter, err := txntoken.NewMinter(txntoken.MinterConfig{
		Signer: set, TrustDomain: testTrustDomain, Workload: testWorkload, Issuer: testIssuer,
	})
	if err != nil {
		b.Fatal(err)
	}
	verifier, err := txntoken.NewVerifier(txntoken.VerifierConfig{
		Keys: set, TrustDomain: testTrustDomain, Issuer: testIssuer,
	})
	if err != nil {
		b.Fatal(err)
	}
	return minter, verifier
}
