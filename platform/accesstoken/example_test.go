package accesstoken_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/go-jose/go-jose/v4"

	"example.com/rampart/platform/accesstoken"
	"example.com/rampart/platform/jwks"
)

func ExampleParseAuthorization() {
	headers := []string{"Bearer abc.def.ghi", "bearer abc.def.ghi", "Basic dXNlcg==", ""}
	for _, header := range headers {
		token, err := accesstoken.ParseAuthorization(header)
		fmt.Printf("%q %v\n", token, err)
	}
	// Output:
	// "abc.def.ghi" <nil>
	// "abc.def.ghi" <nil>
	// "" accesstoken: malformed authorization header: not a bearer token
	// "" accesstoken: no authorization header
}

// The user service issues a token; the gateway verifies it and logs why a
// token was refused, while answering every refusal the same way.
func ExampleVerifier() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir, err := os.MkdirTemp("", "accesstoken")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	key, err := jwks.GenerateKey(jose.ES256)
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

	issuer, err := accesstoken.NewIssuer(accesstoken.IssuerConfig{
		Issuer: "http://127.0.0.1:9001", Audience: "rampart", Signer: keys,
	})
	if err != nil {
		panic(err)
	}
	raw, _, err := issuer.Issue(accesstoken.Request{
		Subject: "user-42",
		Scopes:  []string{"orders:read"},
	})
	if err != nil {
		panic(err)
	}

	verifier, err := accesstoken.NewVerifier(accesstoken.VerifierConfig{
		Issuer: "http://127.0.0.1:9001", Audience: "rampart", Keys: keys,
	})
	if err != nil {
		panic(err)
	}
	claims, err := verifier.Verify(ctx, raw)
	if err != nil {
		panic(err)
	}
	fmt.Println(claims.Subject, claims.Scopes)

	_, err = verifier.Verify(ctx, raw[:len(raw)-4]+"AAAA")
	fmt.Println(errors.Is(err, accesstoken.ErrSignature))
	// Output:
	// user-42 [orders:read]
	// true
}
