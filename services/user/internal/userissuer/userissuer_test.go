package userissuer_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"example.com/rampart/platform/accesstoken"
	"example.com/rampart/platform/jwks"
	"example.com/rampart/platform/jwks/jwkstest"
	"example.com/rampart/services/user/internal/userissuer"
)

func TestValidate(t *testing.T) {
	t.Parallel()
	issuer := func(url string) func(*userissuer.Config) {
		return func(c *userissuer.Config) { c.Issuer = url }
	}
	tests := []struct {
		name    string
		change  func(*userissuer.Config)
		wantErr bool
	}{
		{"defaults", func(*userissuer.Config) {}, false},
		{"https issuer with path", issuer("https://id.example.com/rampart"), false},
		{"no issuer", issuer(""), true},
		{"relative issuer", issuer("/issuer"), true},
		{"other scheme", issuer("ftp://127.0.0.1"), true},
		{"issuer with query", issuer("https://id.example.com/?x=1"), true},
		{"issuer with empty query", issuer("https://id.example.com/?"), true},
		{"issuer with fragment", issuer("https://id.example.com/#x"), true},
		{"issuer with user", issuer("https://me@id.example.com"), true},
		{"no audience", func(c *userissuer.Config) { c.Audience = "" }, true},
		{"no key file", func(c *userissuer.Config) { c.SigningKeys = "" }, true},
		{"no access lifetime", func(c *userissuer.Config) { c.AccessTokenTTL = 0 }, true},
		{"access lifetime too long", func(c *userissuer.Config) { c.AccessTokenTTL = 2 * time.Hour }, true},
		{"negative refresh lifetime", func(c *userissuer.Config) { c.RefreshTokenTTL = -time.Hour }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := userissuer.DefaultConfig()
			tt.change(&cfg)
			if err := cfg.Validate(); (err != nil) != tt.wantErr {
				t.Errorf("Validate = %v, want error: %v", err, tt.wantErr)
			}
		})
	}
}

func TestDefaultConfig(t *testing.T) {
	t.Parallel()
	want := userissuer.Config{
		Issuer:          "http://127.0.0.1:9101",
		Audience:        "rampart",
		SigningKeys:     ".dev/keys/user-access.jwks",
		AccessTokenTTL:  5 * time.Minute,
		RefreshTokenTTL: 168 * time.Hour,
	}
	if diff := cmp.Diff(want, userissuer.DefaultConfig()); diff != "" {
		t.Errorf("DefaultConfig (-want +got):\n%s", diff)
	}
}

func TestDiscoveryDocument(t *testing.T) {
	t.Parallel()
	h, err := userissuer.DiscoveryHandler("https://id.example.com/")
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet,
		userissuer.DiscoveryPath, nil))

	if rec.Code != http.StatusOK {
		t.Fatalf("status %d, want 200", rec.Code)
	}
	wantHeaders := map[string]string{
		"Content-Type":           "application/json",
		"Cache-Control":          "public, max-age=3600",
		"X-Content-Type-Options": "nosniff",
	}
	gotHeaders := map[string]string{}
	for name := range wantHeaders {
		gotHeaders[name] = rec.Header().Get(name)
	}
	if diff := cmp.Diff(wantHeaders, gotHeaders); diff != "" {
		t.Errorf("headers (-want +got):\n%s", diff)
	}
	var got map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"issuer":                  "https://id.example.com/",
		"jwks_uri":                "https://id.example.com/.well-known/jwks.json",
		"scopes_supported":        []any{"profile", "orders:read", "orders:write", "payments:read"},
		"subject_types_supported": []any{"public"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("document (-want +got):\n%s", diff)
	}
}

func TestDiscoveryRefuses(t *testing.T) {
	t.Parallel()
	if _, err := userissuer.DiscoveryHandler("http://127.0.0.1:9101/?q"); err == nil {
		t.Error("DiscoveryHandler accepted an issuer with a query")
	}
	h, err := userissuer.DiscoveryHandler("http://127.0.0.1:9101")
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, userissuer.DiscoveryPath,
		strings.NewReader("{}"))
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: status %d, want 405", rec.Code)
	}
}

// TestVerifierDiscoversKeys plays the gateway: it reads the discovery
// document over HTTP, fetches the key set it names, and verifies with
// accesstoken's Verifier a token the issuer signed, and refuses one signed
// with a key the set does not publish.
func TestVerifierDiscoversKeys(t *testing.T) {
	t.Parallel()
	keys, _ := jwkstest.KeySet(t)
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	issuerURL := srv.URL

	discovery, err := userissuer.DiscoveryHandler(issuerURL)
	if err != nil {
		t.Fatal(err)
	}
	mux.Handle("GET "+userissuer.DiscoveryPath, discovery)
	mux.Handle("GET "+userissuer.JWKSPath, keys.Handler())

	doc := fetchDiscovery(t, srv.Client(), issuerURL+userissuer.DiscoveryPath)
	if doc.Issuer != issuerURL {
		t.Fatalf("issuer %q, want %q", doc.Issuer, issuerURL)
	}
	remote := jwks.NewRemote(doc.JWKSURI, srv.Client(), jwks.RemoteOptions{})
	t.Cleanup(func() { remote.Close() })
	verifier, err := accesstoken.NewVerifier(accesstoken.VerifierConfig{
		Issuer: doc.Issuer, Audience: "rampart", Keys: remote,
	})
	if err != nil {
		t.Fatal(err)
	}

	raw := issue(t, keys, issuerURL)
	claims, err := verifier.Verify(t.Context(), raw)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	want := []string{"user-1", "session-1", strings.Join(userissuer.Scopes, " ")}
	got := []string{claims.Subject, claims.SessionID, strings.Join(claims.Scopes, " ")}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("claims (-want +got):\n%s", diff)
	}

	unpublished, _ := jwkstest.KeySet(t)
	_, err = verifier.Verify(t.Context(), issue(t, unpublished, issuerURL))
	if !errors.Is(err, accesstoken.ErrUnknownKey) {
		t.Errorf("Verify(token of an unpublished key) = %v, want ErrUnknownKey", err)
	}
}

type document struct {
	Issuer  string `json:"issuer"`
	JWKSURI string `json:"jwks_uri"`
}

func fetchDiscovery(t *testing.T, client *http.Client, url string) document {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d: %s", url, resp.StatusCode, body)
	}
	var doc document
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

func issue(t *testing.T, keys *jwks.KeySet, issuerURL string) string {
	t.Helper()
	issuer, err := accesstoken.NewIssuer(accesstoken.IssuerConfig{
		Issuer: issuerURL, Audience: "rampart", Signer: keys,
	})
	if err != nil {
		t.Fatal(err)
	}
	raw, _, err := issuer.Issue(accesstoken.Request{
		Subject: "user-1", SessionID: "session-1", Scopes: userissuer.Scopes,
	})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}
