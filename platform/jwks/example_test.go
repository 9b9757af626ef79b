package jwks_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/go-jose/go-jose/v4"

	"example.com/rampart/platform/jwks"
)

// A service writes its first key file, signs with the active key, and
// verifies against the published keys.
func ExampleLoadKeySet() {
	dir, err := os.MkdirTemp("", "jwks")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "keys.json")

	key, err := jwks.GenerateKey(jose.EdDSA)
	if err != nil {
		panic(err)
	}
	if err := jwks.WriteKeySetFile(path, key); err != nil {
		panic(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel() // stops watching the file
	keys, err := jwks.LoadKeySet(ctx, path, jwks.KeySetOptions{})
	if err != nil {
		panic(err)
	}

	token, err := jwks.NewTokenSigner(keys, "example+jwt").Sign([]byte(`{"hello":"world"}`))
	if err != nil {
		panic(err)
	}
	verifier, err := jwks.NewVerifier(keys, jwks.VerifyOptions{
		Algorithms: []jose.SignatureAlgorithm{jose.EdDSA},
		MaxSize:    4096,
		Type:       func(typ string) bool { return typ == "example+jwt" },
	})
	if err != nil {
		panic(err)
	}
	payload, err := verifier.Verify(ctx, token)
	if err != nil {
		panic(err)
	}
	fmt.Println(string(payload))
	fmt.Println(len(keys.Public().Keys), "published key")
	// Output:
	// {"hello":"world"}
	// 1 published key
}
