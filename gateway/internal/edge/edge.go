// Package edge guards the gateway's HTTP entry before any RPC machinery
// runs: it bounds request bodies, answers CORS for allowlisted origins only,
// works out the client's address, and drops every request header that is
// not on an allowlist, so that nothing a client sends reaches a service
// unless the gateway knows what it means.
package edge

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"

	"github.com/rs/cors"
)

// Config sets the edge's limits. The zero value allows 1 MiB bodies, no
// cross-origin callers and no trusted proxies.
type Config struct {
	// MaxBodyBytes caps a request body; a larger one fails to read.
	MaxBodyBytes int64
	// AllowedOrigins are the browser origins allowed to call the API
	// ("https://shop.example"). Empty means no cross-origin calls.
	AllowedOrigins []string
	// TrustedProxies are the addresses of proxies in front of the gateway
	// whose X-Forwarded-For header is believed. Empty means the connection's
	// address is the client's.
	TrustedProxies []netip.Prefix
}

// allowedHeaders are the request headers the Connect, gRPC and gRPC-Web
// protocols use, plus Authorization and what CORS needs. Everything else,
// cookies included, is dropped.
var allowedHeaders = []string{
	"Accept", "Accept-Encoding", "Authorization", "Content-Encoding", "Content-Length",
	"Content-Type", "Connect-Protocol-Version", "Connect-Timeout-Ms",
	"Connect-Content-Encoding", "Connect-Accept-Encoding", "Grpc-Timeout",
	"Grpc-Encoding", "Grpc-Accept-Encoding", "Te", "User-Agent", "X-Grpc-Web",
	"X-User-Agent", "Origin", "Access-Control-Request-Method",
	"Access-Control-Request-Headers",
}

// exposedHeaders are the response headers a browser client may read.
var exposedHeaders = []string{
	"Grpc-Status", "Grpc-Message", "Grpc-Status-Details-Bin", "Retry-After", "Trace-Id",
}

// Wrap returns next behind the edge's checks.
func Wrap(next http.Handler, cfg Config) http.Handler {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	allowed := make(map[string]bool, len(allowedHeaders))
	for _, h := range allowedHeaders {
		allowed[http.CanonicalHeaderKey(h)] = true
	}
	var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ip := clientIP(r, cfg.TrustedProxies)
		for name := range r.Header {
			if !allowed[name] {
				delete(r.Header, name)
			}
		}
		r.Body = http.MaxBytesReader(w, r.Body, cfg.MaxBodyBytes)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), clientIPKey{}, ip)))
	})
	if len(cfg.AllowedOrigins) > 0 {
		h = cors.New(cors.Options{
			AllowedOrigins: cfg.AllowedOrigins,
			AllowedMethods: []string{http.MethodGet, http.MethodPost},
			AllowedHeaders: allowedHeaders,
			ExposedHeaders: exposedHeaders,
			MaxAge:         2 * 60 * 60,
		}).Handler(h)
	}
	return h
}

type clientIPKey struct{}

// ClientIP returns the client address that Wrap found for the request
// that ctx belongs to.
func ClientIP(ctx context.Context) (string, bool) {
	ip, ok := ctx.Value(clientIPKey{}).(string)
	return ip, ok && ip != ""
}

// clientIP is the connection's address, unless it is a trusted proxy: then
// the right-most address of X-Forwarded-For that is not itself a trusted
// proxy, since every hop before it could have been written by the client.
func clientIP(r *http.Request, trusted []netip.Prefix) string {
	peer := remoteAddr(r.RemoteAddr)
	if !isTrusted(peer, trusted) {
		return peer.String()
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for _, hop := range slices.Backward(hops) {
		addr, err := netip.ParseAddr(strings.TrimSpace(hop))
		if err != nil {
			break
		}
		if !isTrusted(addr.Unmap(), trusted) {
			return addr.Unmap().String()
		}
	}
	return peer.String()
}

func remoteAddr(hostport string) netip.Addr {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return netip.IPv4Unspecified()
	}
	return addr.Unmap()
}

func isTrusted(addr netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}
