package scenario

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoregistry"

	"example.com/rampart/platform/accesstoken"
	"example.com/rampart/platform/jwks"
	"example.com/rampart/platform/policy"
	"example.com/rampart/platform/txntoken"
)

// Policies returns the method and event policies of p's trust domain.
func Policies(t *testing.T, p Platform) *policy.Set {
	t.Helper()
	set, err := policy.Load(p.TrustDomain(), protoregistry.GlobalFiles)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// TxnToken mints, with the gateway's signing keys, the transaction token
// the gateway would mint for subject calling procedure with req: the
// method's scopes and the request fields its policy binds.
func TxnToken(t *testing.T, p Platform, subject, procedure string, req proto.Message) string {
	t.Helper()
	method, err := Policies(t, p).Method(procedure)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := jwks.LoadKeySet(t.Context(), p.TxnKeysFile(), jwks.KeySetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	gateway := workloadID(t, p, gatewayWorkload).String()
	minter, err := txntoken.NewMinter(txntoken.MinterConfig{
		Signer: keys, TrustDomain: p.TrustDomain().Name(), Workload: gateway, Issuer: gateway,
	})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := minter.Mint(txntoken.Request{
		Subject:  subject,
		Scopes:   method.Scopes,
		ClientIP: "127.0.0.1",
		Context:  method.TransactionContext(req),
	})
	if err != nil {
		t.Fatal(err)
	}
	return tok.Raw
}

func workloadID(t *testing.T, p Platform, name string) spiffeid.ID {
	t.Helper()
	id, err := spiffeid.FromSegments(p.TrustDomain(), name)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// Resigned returns the access token raw with its claims changed by edit,
// signed again by signer as an access token.
func Resigned(t *testing.T, raw string, signer jwks.SignerSource,
	edit func(claims map[string]any)) string {
	t.Helper()
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		t.Fatalf("access token has %d parts, want 3", len(parts))
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	claims := map[string]any{}
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	edit(claims)
	if payload, err = json.Marshal(claims); err != nil {
		t.Fatal(err)
	}
	signed, err := jwks.NewTokenSigner(signer, accesstoken.Type).Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

// IssuerKeys returns the user service's access-token signing keys.
func IssuerKeys(t *testing.T, p Platform) jwks.SignerSource {
	t.Helper()
	keys, err := jwks.LoadKeySet(t.Context(), p.AccessKeysFile(), jwks.KeySetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// foreignKey is a signing key no issuer of the platform knows.
type foreignKey struct{ key jose.JSONWebKey }

func (k foreignKey) Signer() jose.SigningKey {
	return jose.SigningKey{Algorithm: jose.SignatureAlgorithm(k.key.Algorithm), Key: k.key}
}

// ForeignKey returns a new ES256 key that no party of the platform trusts.
func ForeignKey(t *testing.T) jwks.SignerSource {
	t.Helper()
	key, err := jwks.GenerateKey(jose.ES256)
	if err != nil {
		t.Fatal(err)
	}
	return foreignKey{key: key}
}

// Expire moves a token's validity to an hour in the past.
func Expire(claims map[string]any) {
	past := time.Now().Add(-time.Hour).Unix()
	claims["iat"], claims["nbf"], claims["exp"] = past-300, past-300, past
}
