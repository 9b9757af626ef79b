package server

import (
	"bufio"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"example.com/rampart/platform/accesstoken"
	"example.com/rampart/platform/jwks/jwkstest"
	"example.com/rampart/platform/policy"
	"example.com/rampart/platform/txntoken"
)

// unauthenticated is the one answer to every authentication failure,
// whatever its reason.
const unauthenticated = `{"code":"unauthenticated","message":"missing or invalid credentials"}`

// claims are an access token's claims as a map, to be broken at will.
type claims map[string]any

// validClaims are the claims of a good access token from s, issued now.
func (s *issuerServer) validClaims() claims {
	now := time.Now()
	return claims{
		"iss":   s.url,
		"sub":   uuid.NewString(),
		"aud":   audience,
		"exp":   now.Add(5 * time.Minute).Unix(),
		"iat":   now.Unix(),
		"nbf":   now.Unix(),
		"sid":   uuid.NewString(),
		"jti":   uuid.NewString(),
		"scope": strings.Join(scopes, " "),
	}
}

// with returns a copy of c with key set to value, or removed if value is
// nil.
func (c claims) with(key string, value any) claims {
	out := claims{}
	maps.Copy(out, c)
	if value == nil {
		delete(out, key)
	} else {
		out[key] = value
	}
	return out
}

// validHeader is the JOSE header of a good access token from s.
func (s *issuerServer) validHeader() claims {
	return claims{"alg": "ES256", "kid": s.key.KeyID, "typ": "at+jwt"}
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// forge signs payload under header with key by alg, whatever the header
// says.
func forge(t testing.TB, alg jose.SignatureAlgorithm, key any, header, payload claims) string {
	t.Helper()
	return jwkstest.Sign(alg, key, mustJSON(t, header), mustJSON(t, payload))
}

// unsigned is the token of header and payload with an empty signature.
func unsigned(t testing.TB, header, payload claims) string {
	t.Helper()
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(mustJSON(t, header))) + "." +
		enc.EncodeToString([]byte(mustJSON(t, payload))) + "."
}

// trap is a server that a token may name, and that must never be asked.
type trap struct {
	url  string
	hits atomic.Int64
}

func newTrap(t *testing.T) *trap {
	t.Helper()
	tr := &trap{}
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		tr.hits.Add(1)
	}))
	t.Cleanup(srv.Close)
	tr.url = srv.URL
	return tr
}

// rejection is what the client sees of a refused call, and what the
// gateway's log line says of it.
type rejection struct {
	Status int
	Body   string
	Code   any
	Audit  any
}

// TestAccessTokenRejections presents, through the gateway, every kind of
// access token it must refuse, and tokens in every place but the one it
// reads. Each call must get the same 401 and the same body, log its own
// reason as an audit event, and never reach a workload.
func TestAccessTokenRejections(t *testing.T) { //nolint:tparallel // cases share one fixture
	t.Parallel()
	f := newFixture(t, options{})
	iss := f.issuer
	key := iss.key
	good := iss.validClaims()
	header := iss.validHeader()
	valid, _ := iss.login(t)
	bearer := func(token string) http.Header { return http.Header{"Authorization": {"Bearer " + token}} }
	es256 := func(h, c claims) http.Header { return bearer(forge(t, jose.ES256, key, h, c)) }

	// Keys that are not the issuer's, and ways of using its public key.
	attacker := newKey(t, jose.ES256)
	sameKID := newKey(t, jose.ES256)
	sameKID.KeyID = key.KeyID
	pubJSON := []byte(mustJSON(t, key.Public()))
	der, err := x509.MarshalPKIXPublicKey(key.Public().Key)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	trapServer := newTrap(t)

	// A transaction token, as the gateway mints them, presented outside.
	minter, err := txntoken.NewMinter(txntoken.MinterConfig{
		Signer: f.txnKeys, TrustDomain: trustDomain, Workload: gatewayID.String(),
		Issuer: gatewayID.String(),
	})
	if err != nil {
		t.Fatal(err)
	}
	txn, err := minter.Mint(txntoken.Request{Subject: "user-1", SessionID: "s-1", Scopes: scopes})
	if err != nil {
		t.Fatal(err)
	}

	// A good token whose payload was changed after signing.
	parts := strings.Split(forge(t, jose.ES256, key, header, good), ".")
	parts[1] = base64.RawURLEncoding.EncodeToString([]byte(mustJSON(t, good.with("sub", "admin"))))
	tampered := strings.Join(parts, ".")

	// A session that logged out.
	revoked, revokedClaims := iss.login(t)
	f.revoked.Revoke(revokedClaims.SessionID, revokedClaims.Expiry)

	now := time.Now()
	tests := []struct {
		name   string
		path   string // default: GetMe, which needs a signed-in user
		header http.Header
		body   string // default: {}
		reason error  // whose text the audit reason holds
	}{
		// Where the token is.
		{name: "no token", reason: policy.ErrUserRequired},
		{name: "token in a query parameter", path: "/user.v1.UserService/GetMe?access_token=" +
			url.QueryEscape(valid), reason: policy.ErrUserRequired},
		{name: "token in a cookie", header: http.Header{"Cookie": {"access_token=" + valid}},
			reason: policy.ErrUserRequired},
		{name: "token in the body", body: `{"access_token":"` + valid + `"}`,
			reason: policy.ErrUserRequired},
		{name: "token in another header", header: http.Header{"X-Access-Token": {valid}},
			reason: policy.ErrUserRequired},
		{name: "two Authorization headers", header: http.Header{
			"Authorization": {"Bearer " + valid, "Bearer " + valid},
		}, reason: errors.New("more than one Authorization header")},
		{name: "empty Authorization header", header: http.Header{"Authorization": {""}},
			reason: accesstoken.ErrNoToken},
		{name: "Basic scheme", header: http.Header{"Authorization": {"Basic dXNlcjpwYXNzd29yZA=="}},
			reason: accesstoken.ErrAuthorization},
		{name: "Bearer without a token", header: http.Header{"Authorization": {"Bearer"}},
			reason: accesstoken.ErrAuthorization},
		{name: "token with a space", header: bearer(valid + " " + valid),
			reason: accesstoken.ErrAuthorization},

		// Size, before anything is parsed.
		{name: "14 KiB of dots", header: bearer(strings.Repeat(".", 14<<10)),
			reason: accesstoken.ErrTooLarge},
		{name: "token over the size limit", header: bearer(valid + strings.Repeat("A", 8<<10)),
			reason: accesstoken.ErrTooLarge},
		{name: "kid of 10 KiB", header: es256(header.with("kid", strings.Repeat("k", 10<<10)), good),
			reason: accesstoken.ErrTooLarge},

		// Shape.
		{name: "two segments", header: bearer("eyJhbGciOiJFUzI1NiJ9.e30"),
			reason: accesstoken.ErrMalformed},
		{name: "duplicate claim", header: bearer(jwkstest.Sign(jose.ES256, key, mustJSON(t, header),
			strings.TrimSuffix(mustJSON(t, good), "}")+`,"sub":"admin"}`)),
			reason: accesstoken.ErrMalformed},

		// Algorithms.
		{name: "alg none", header: bearer(unsigned(t, header.with("alg", "none"), good)),
			reason: accesstoken.ErrAlgorithm},
		{name: "no alg", header: es256(header.with("alg", nil), good), reason: accesstoken.ErrAlgorithm},
		{name: "HS256 with the public JWK as secret", header: bearer(forge(t, jose.HS256, pubJSON,
			header.with("alg", "HS256"), good)), reason: accesstoken.ErrAlgorithm},
		{name: "HS256 with the public PEM as secret", header: bearer(forge(t, jose.HS256, pubPEM,
			header.with("alg", "HS256"), good)), reason: accesstoken.ErrAlgorithm},
		{name: "RS256, not allowed", header: bearer(forge(t, jose.RS256, rsaKey,
			header.with("alg", "RS256"), good)), reason: accesstoken.ErrAlgorithm},
		{name: "ES384, not allowed", header: es256(header.with("alg", "ES384"), good),
			reason: accesstoken.ErrAlgorithm},

		// Keys: only the cached JWKS, by kid, in memory.
		{name: "unknown kid", header: es256(header.with("kid", "no-such-key"), good),
			reason: accesstoken.ErrUnknownKey},
		{name: "kid as a path", header: es256(header.with("kid", "../../../../etc/passwd"), good),
			reason: accesstoken.ErrUnknownKey},
		{name: "kid as a file URL", header: es256(header.with("kid", "file:///etc/passwd"), good),
			reason: accesstoken.ErrUnknownKey},
		{name: "kid as SQL", header: es256(header.with("kid", "' OR '1'='1' --"), good),
			reason: accesstoken.ErrUnknownKey},
		{name: "kid as the trap's URL", header: es256(header.with("kid", trapServer.url), good),
			reason: accesstoken.ErrUnknownKey},
		{name: "kid of 1 KiB", header: es256(header.with("kid", strings.Repeat("k", 1<<10)), good),
			reason: accesstoken.ErrUnknownKey},
		{name: "no kid", header: es256(header.with("kid", nil), good),
			reason: accesstoken.ErrUnknownKey},

		// Header parameters the verifier does not act on.
		{name: "jku", header: bearer(forge(t, jose.ES256, attacker,
			header.with("jku", trapServer.url+"/jwks.json").with("kid", attacker.KeyID), good)),
			reason: accesstoken.ErrHeader},
		{name: "x5u", header: bearer(forge(t, jose.ES256, attacker,
			header.with("x5u", trapServer.url+"/cert.pem").with("kid", attacker.KeyID), good)),
			reason: accesstoken.ErrHeader},
		{name: "embedded jwk", header: bearer(forge(t, jose.ES256, attacker,
			header.with("jwk", attacker.Public()).with("kid", attacker.KeyID), good)),
			reason: accesstoken.ErrHeader},
		{name: "x5c", header: es256(header.with("x5c", []string{"MIIB"}), good),
			reason: accesstoken.ErrHeader},
		{name: "crit", header: es256(header.with("crit", []string{"exp"}), good),
			reason: accesstoken.ErrHeader},
		{name: "unknown parameter", header: es256(header.with("zip", "DEF"), good),
			reason: accesstoken.ErrHeader},

		// Signatures.
		{name: "payload changed after signing", header: bearer(tampered),
			reason: accesstoken.ErrSignature},
		{name: "other environment, same kid", header: bearer(forge(t, jose.ES256, sameKID,
			header, good)), reason: accesstoken.ErrSignature},
		{name: "other environment, own keys", header: bearer(forge(t, jose.ES256, attacker,
			header.with("kid", attacker.KeyID), good.with("iss", "https://staging.example"))),
			reason: accesstoken.ErrUnknownKey},

		// Time, with one leeway of 30s.
		{name: "no exp", header: es256(header, good.with("exp", nil)), reason: accesstoken.ErrExpired},
		{name: "exp in the past", header: es256(header, good.with("exp", now.Add(-time.Minute).Unix())),
			reason: accesstoken.ErrExpired},
		{name: "exp zero", header: es256(header, good.with("exp", 0)), reason: accesstoken.ErrExpired},
		{name: "exp negative", header: es256(header, good.with("exp", -1)), reason: accesstoken.ErrExpired},
		{name: "exp not a number", header: es256(header, good.with("exp", "tomorrow")),
			reason: accesstoken.ErrMalformed},
		{name: "nbf in the future", header: es256(header, good.with("nbf", now.Add(time.Minute).Unix())),
			reason: accesstoken.ErrNotYetValid},
		{name: "iat in the future", header: es256(header, good.with("iat", now.Add(time.Minute).Unix())),
			reason: accesstoken.ErrNotYetValid},

		// Who the token is from, for, and what it is.
		{name: "wrong iss", header: es256(header, good.with("iss", "https://evil.example")),
			reason: accesstoken.ErrIssuer},
		{name: "no iss", header: es256(header, good.with("iss", nil)), reason: accesstoken.ErrIssuer},
		{name: "aud of another API", header: es256(header, good.with("aud", "billing")),
			reason: accesstoken.ErrAudience},
		{name: "no aud", header: es256(header, good.with("aud", nil)), reason: accesstoken.ErrAudience},
		{name: "no sub", header: es256(header, good.with("sub", nil)), reason: accesstoken.ErrSubject},
		{name: "ID token", header: es256(header.with("typ", "JWT"),
			good.with("aud", "web-client").with("nonce", "n-0S6_WzA2Mj")), reason: accesstoken.ErrType},
		{name: "no typ", header: es256(header.with("typ", nil), good), reason: accesstoken.ErrType},
		{name: "transaction token", header: bearer(txn.Raw), reason: accesstoken.ErrType},

		// A session that ended.
		{name: "revoked session", header: bearer(revoked), reason: errSessionRevokedText},
	}
	// Each case counts the calls that reach the shared fixture's workload
	// around its own, and the trap is checked once every case has run.
	for _, tt := range tests { //nolint:paralleltest // cases count calls on one shared fixture
		t.Run(tt.name, func(t *testing.T) {
			f.checkRejected(t, tt.path, tt.body, tt.header, tt.reason)
		})
	}
	if n := trapServer.hits.Load(); n != 0 {
		t.Errorf("a URL named by a token was fetched %d times", n)
	}
}

// checkRejected posts body (default {}) to path (default GetMe) with
// header, and checks that the gateway answers with the one 401, logs an
// audited denial whose reason says reason, and calls no workload.
func (f *fixture) checkRejected(t *testing.T, path, body string, header http.Header, reason error) {
	t.Helper()
	if path == "" {
		path = "/user.v1.UserService/GetMe"
	}
	if body == "" {
		body = "{}"
	}
	before := f.up.count()
	a := f.post(t, path, body, header)
	line := f.logLine(t, a)

	got := rejection{Status: a.Status, Body: a.Body, Code: line["code"], Audit: line["audit"]}
	want := rejection{http.StatusUnauthorized, unauthenticated, "unauthenticated", "denied"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("rejection (-want +got):\n%s", diff)
	}
	if said, _ := line["reason"].(string); !strings.Contains(said, reason.Error()) {
		t.Errorf("audit reason %q, want it to say %q", said, reason)
	}
	if n := f.up.count() - before; n != 0 {
		t.Errorf("the workload got %d calls, want none", n)
	}
}

// errSessionRevokedText is what the log says of a revoked session.
var errSessionRevokedText = errors.New("session revoked")

// TestAccessTokensAccepted are the tokens next to the rejected ones that
// must pass, so that the rejections above are not a gateway refusing
// everything: the edges of the leeway and the spellings the standards
// allow.
func TestAccessTokensAccepted(t *testing.T) { //nolint:tparallel // cases share one fixture
	t.Parallel()
	f := newFixture(t, options{})
	iss := f.issuer
	good := iss.validClaims()
	header := iss.validHeader()
	now := time.Now()
	sign := func(h, c claims) string { return forge(t, jose.ES256, iss.key, h, c) }
	issued, _ := iss.login(t)

	tests := []struct {
		name          string
		authorization string
	}{
		{"issued by the issuer", "Bearer " + issued},
		{"exp within the leeway", "Bearer " + sign(header, good.with("exp", now.Add(-20*time.Second).Unix()))},
		{"nbf within the leeway", "Bearer " + sign(header, good.with("nbf", now.Add(20*time.Second).Unix()))},
		{"typ with its media type prefix", "Bearer " + sign(header.with("typ", "application/at+jwt"), good)},
		{"aud among several", "Bearer " + sign(header, good.with("aud", []string{"billing", audience}))},
		{"scheme in lower case", "bearer " + sign(header, good)},
	}
	// Each case counts the calls that reach the shared fixture's workload
	// around its own.
	for _, tt := range tests { //nolint:paralleltest // cases count calls on one shared fixture
		t.Run(tt.name, func(t *testing.T) {
			before := f.up.count()
			a := f.post(t, "/user.v1.UserService/GetMe", "{}",
				http.Header{"Authorization": {tt.authorization}})
			if a.Status != http.StatusOK {
				t.Fatalf("status %d, body %s; want 200", a.Status, a.Body)
			}
			if n := f.up.count() - before; n != 1 {
				t.Errorf("the workload got %d calls, want 1", n)
			}
		})
	}
}

// TestHugeHeaderCostsNothing sends a megabyte of dots as the token. The
// HTTP server refuses the request from its header size cap, before any
// handler runs: no log line, no verification, no workload call.
func TestHugeHeaderCostsNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t, options{})
	var dialer net.Dialer
	conn, err := dialer.DialContext(t.Context(), "tcp", strings.TrimPrefix(f.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost,
		f.url+"/user.v1.UserService/GetMe", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+strings.Repeat(".", 1<<20))

	// The server answers while the request is still being written, then
	// hangs up: write and read at once.
	go func() { _ = req.Write(conn) }()
	start := time.Now()
	_ = conn.SetReadDeadline(start.Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("status %d, want 431", resp.StatusCode)
	}
	if n := f.up.count(); n != 0 {
		t.Errorf("the workload got %d calls, want none", n)
	}
	for _, line := range f.logs.Lines(t) {
		if line["msg"] == "call" {
			t.Errorf("the proxy saw the request: %v", line)
		}
	}
}
