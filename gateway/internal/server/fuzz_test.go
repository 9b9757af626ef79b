package server

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// FuzzAuthorization sends whatever Authorization header a client can to
// the gateway's public handler, the edge and every check of the proxy: the
// answer is the one 401 and its body, and the workload gets nothing, unless
// the header holds a token the issuer signed, and then the call goes
// through once. The token parsers themselves are fuzzed in package
// accesstoken; this finds what their assembly in the gateway lets through.
func FuzzAuthorization(f *testing.F) {
	// Nothing runs in the background between inputs, so that coverage
	// is the input's alone.
	fx := newFixture(f, options{keyPoll: time.Hour, cfg: func(c *Config) {
		c.IssuerKeysRefresh, c.IssuerKeysMinRefresh = time.Hour, time.Hour
	}})
	iss := fx.issuer
	valid, _ := iss.login(f)
	f.Add("Bearer " + valid)
	f.Add("bearer " + valid)
	f.Add("Bearer " + forge(f, jose.ES256, iss.key, iss.validHeader().with("alg", "HS256"), iss.validClaims()))
	f.Add("Bearer " + unsigned(f, iss.validHeader().with("alg", "none"), iss.validClaims()))
	f.Add("Bearer " + strings.Repeat(".", 9000))

	f.Fuzz(func(t *testing.T, authorization string) {
		req := httptest.NewRequestWithContext(t.Context(), http.MethodPost,
			"/user.v1.UserService/GetMe", strings.NewReader("{}"))
		req.Header.Set("Content-Type", "application/json")
		req.Header["Authorization"] = []string{authorization}
		before := fx.up.count()
		rec := httptest.NewRecorder()
		fx.handler.ServeHTTP(rec, req)

		calls := fx.up.count() - before
		switch {
		case rec.Code == http.StatusOK && calls == 1:
		case rec.Code == http.StatusUnauthorized && calls == 0:
			if body := strings.TrimSpace(rec.Body.String()); body != unauthenticated {
				t.Errorf("401 with body %s, want %s", body, unauthenticated)
			}
		default:
			t.Errorf("status %d after %d workload calls, want 401 and none, or 200 and one",
				rec.Code, calls)
		}
	})
}
