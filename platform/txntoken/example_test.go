package txntoken_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/go-jose/go-jose/v4"

	"example.com/rampart/platform/jwks"
	"example.com/rampart/platform/txntoken"
)

// The gateway mints a token for one call; the service it calls verifies it
// and reads who is acting and what they may do.
func ExampleMinter() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	keys := exampleKeys(ctx)

	minter, err := txntoken.NewMinter(txntoken.MinterConfig{
		Signer:      keys,
		TrustDomain: "rampart.local",
		Workload:    "spiffe://rampart.local/gateway",
		Issuer:      "spiffe://rampart.local/gateway",
	})
	if err != nil {
		panic(err)
	}
	tok, err := minter.Mint(txntoken.Request{
		Subject:  "user-42",
		Scopes:   []string{"orders:write"},
		ClientIP: "192.0.2.7",
		Context:  map[string]string{"order_id": "o-9"},
	})
	if err != nil {
		panic(err)
	}

	verifier, err := txntoken.NewVerifier(txntoken.VerifierConfig{
		Keys:        keys,
		TrustDomain: "rampart.local",
		Issuer:      "spiffe://rampart.local/gateway",
	})
	if err != nil {
		panic(err)
	}
	got, err := verifier.Verify(ctx, tok.Raw)
	if err != nil {
		panic(err)
	}
	c := got.Claims
	fmt.Println(c.Subject, c.User(), c.HasScopes("orders:write"), c.HasScopes("orders:refund"))
	fmt.Println(c.Workload, c.ClientIP, c.Context["order_id"])
	fmt.Println(c.Expiry.Sub(c.IssuedAt))
	// Output:
	// user-42 true true false
	// spiffe://rampart.local/gateway 192.0.2.7 o-9
	// 1m0s
}

// exampleKeys writes a fresh key file and loads it, as a service does at
// start-up.
func exampleKeys(ctx context.Context) *jwks.KeySet {
	dir, err := os.MkdirTemp("", "txntoken")
	if err != nil {
		panic(err)
	}
	context.AfterFunc(ctx, func() { os.RemoveAll(dir) })
	key, err := jwks.GenerateKey(jose.EdDSA)
	if err != nil {
		panic(err)
	}
	path := filepath.Join(dir, "keys.json")
	if err := jwks.WriteKeySetFile(path, key); err != nil {
		panic(err)
	}
	keys, err := jwks.LoadKeySet(ctx, path, jwks.KeySetOptions{})
	if err != nil {
		panic(err)
	}
	return keys
}
