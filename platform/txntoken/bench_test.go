package txntoken_test

import (
	"strings"
	"testing"

	"example.com/rampart/platform/txntoken"
)

var benchRequest = txntoken.Request{
	Subject:   "user-1",
	SessionID: "session-1",
	Scopes:    []string{"orders:read", "orders:write"},
	ClientIP:  "192.0.2.1",
	Context:   map[string]string{"order_id": "o-1"},
}

func BenchmarkMint(b *testing.B) {
	e := newEnv(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.minter.Mint(benchRequest); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	e := newEnv(b)
	tok, err := e.minter.Mint(benchRequest)
	if err != nil {
		b.Fatal(err)
	}
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.verifier.Verify(ctx, tok.Raw); err != nil {
			b.Fatal(err)
		}
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
