package edge_test

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"example.com/rampart/gateway/internal/edge"
)

// seen is what the handler behind the edge was given.
type seen struct {
	ClientIP string
	Headers  []string
	Body     string
	BodyErr  bool
}

// behind returns an edge-wrapped handler that records what reaches it.
func behind(cfg edge.Config, got *seen) http.Handler {
	return edge.Wrap(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		got.ClientIP, _ = edge.ClientIP(r.Context())
		got.Headers = slices.Sorted(func(yield func(string) bool) {
			for name := range r.Header {
				if !yield(name) {
					return
				}
			}
		})
		body, err := io.ReadAll(r.Body)
		got.Body, got.BodyErr = string(body), err != nil
	}), cfg)
}

var proxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}

func TestClientIP(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		remoteAddr string
		forwarded  []string
		want       string
	}{
		{"direct client", "198.51.100.7:4242", nil, "198.51.100.7"},
		{"direct client lying", "198.51.100.7:4242", []string{"203.0.113.9"}, "198.51.100.7"},
		{"behind a trusted proxy", "10.1.1.1:80", []string{"203.0.113.9"}, "203.0.113.9"},
		{"client-written hops are skipped", "10.1.1.1:80", []string{"1.2.3.4, 203.0.113.9"},
			"203.0.113.9"},
		{"chain of trusted proxies", "10.1.1.1:80", []string{"203.0.113.9, 10.2.2.2", "10.3.3.3"},
			"203.0.113.9"},
		{"garbage after the client", "10.1.1.1:80", []string{"203.0.113.9, not-an-ip"}, "10.1.1.1"},
		{"only proxies", "10.1.1.1:80", []string{"10.2.2.2"}, "10.1.1.1"},
		{"IPv4 mapped in IPv6", "[::ffff:198.51.100.7]:1", nil, "198.51.100.7"},
		{"trusted IPv6 proxy", "[::1]:80", []string{"2001:db8::1"}, "2001:db8::1"},
		{"unparsable peer", "pipe", nil, "0.0.0.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var got seen
			req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/", nil)
			req.RemoteAddr = tt.remoteAddr
			for _, v := range tt.forwarded {
				req.Header.Add("X-Forwarded-For", v)
			}
			behind(edge.Config{TrustedProxies: proxies}, &got).ServeHTTP(httptest.NewRecorder(), req)
			if got.ClientIP != tt.want {
				t.Errorf("client IP %q, want %q", got.ClientIP, tt.want)
			}
		})
	}
}

// TestOnlyAllowedHeadersPass sends the headers a client might use to
// smuggle identity, state or routing: none gets through.
func TestOnlyAllowedHeadersPass(t *testing.T) {
	t.Parallel()
	var got seen
	req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/",
		strings.NewReader("{}"))
	for name, value := range map[string]string{
		"Authorization": "Bearer x", "Content-Type": "application/json",
		"Connect-Protocol-Version": "1", "Cookie": "session=1", "X-Forwarded-For": "1.2.3.4",
		"X-Forwarded-Host": "admin", "Forwarded": "for=1.2.3.4", "X-Real-Ip": "1.2.3.4",
		"Txn-Token": "forged", "Traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		"X-User-Id": "admin", "Grpc-Metadata-Txn-Token": "forged",
	} {
		req.Header.Set(name, value)
	}
	behind(edge.Config{}, &got).ServeHTTP(httptest.NewRecorder(), req)
	want := []string{"Authorization", "Connect-Protocol-Version", "Content-Type"}
	if diff := cmp.Diff(want, got.Headers); diff != "" {
		t.Errorf("headers that passed (-want +got):\n%s", diff)
	}
}

func TestBodyLimit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		size    int
		wantErr bool
	}{{64, false}, {65, true}}
	for _, tt := range tests {
		var got seen
		body := strings.NewReader(strings.Repeat("a", tt.size))
		req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/", body)
		behind(edge.Config{MaxBodyBytes: 64}, &got).ServeHTTP(httptest.NewRecorder(), req)
		if got.BodyErr != tt.wantErr {
			t.Errorf("body of %d bytes with a 64-byte limit: read error %t, want %t",
				tt.size, got.BodyErr, tt.wantErr)
		}
	}
}

// peerAddr is the address of a RemoteAddr, 0.0.0.0 if it has none.
func peerAddr(remoteAddr string) netip.Addr {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return netip.IPv4Unspecified()
	}
	return addr.Unmap()
}

// hops are the addresses an X-Forwarded-For value names.
func hops(forwarded string) []netip.Addr {
	var out []netip.Addr
	for hop := range strings.SplitSeq(forwarded, ",") {
		if addr, err := netip.ParseAddr(strings.TrimSpace(hop)); err == nil {
			out = append(out, addr.Unmap())
		}
	}
	return out
}

// FuzzEdge sends whatever peer address, forwarding header and extra header
// a client can: the handler behind sees a parsable client address that is
// the peer's or one the header named, and no header off the allowlist.
func FuzzEdge(f *testing.F) {
	f.Add("10.1.1.1:80", "203.0.113.9, 10.2.2.2", "Cookie", "a=b")
	f.Add("198.51.100.7:1", "203.0.113.9", "Authorization", "Bearer x")
	f.Add("[::1]:80", "2001:db8::1,,", "X-Forwarded-For", "::ffff:1.2.3.4")
	f.Add("pipe", "", "", "")
	allowed := map[string]bool{}
	for _, h := range []string{
		"Accept", "Accept-Encoding", "Authorization", "Content-Encoding", "Content-Length",
		"Content-Type", "Connect-Protocol-Version", "Connect-Timeout-Ms",
		"Connect-Content-Encoding", "Connect-Accept-Encoding", "Grpc-Timeout",
		"Grpc-Encoding", "Grpc-Accept-Encoding", "Te", "User-Agent", "X-Grpc-Web",
		"X-User-Agent", "Origin", "Access-Control-Request-Method",
		"Access-Control-Request-Headers",
	} {
		allowed[h] = true
	}
	f.Fuzz(func(t *testing.T, remoteAddr, forwarded, name, value string) {
		var got seen
		req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/",
			strings.NewReader("{}"))
		req.RemoteAddr = remoteAddr
		req.Header["X-Forwarded-For"] = []string{forwarded}
		req.Header[name] = []string{value}
		forwarded = strings.Join(req.Header.Values("X-Forwarded-For"), ",")
		behind(edge.Config{TrustedProxies: proxies}, &got).ServeHTTP(httptest.NewRecorder(), req)

		ip, err := netip.ParseAddr(got.ClientIP)
		if err != nil {
			t.Fatalf("client IP %q does not parse: %v", got.ClientIP, err)
		}
		peer := peerAddr(remoteAddr)
		trusted := slices.ContainsFunc(proxies, func(p netip.Prefix) bool { return p.Contains(peer) })
		switch {
		case !trusted && ip != peer:
			t.Errorf("client IP %s, want the untrusted peer's %s", ip, peer)
		case ip != peer && !slices.Contains(hops(forwarded), ip):
			t.Errorf("client IP %s comes from neither the peer %q nor X-Forwarded-For %q",
				ip, remoteAddr, forwarded)
		}
		for _, h := range got.Headers {
			if !allowed[h] {
				t.Errorf("header %q passed the edge", h)
			}
		}
	})
}
