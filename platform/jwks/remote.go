package jwks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	josejson "github.com/go-jose/go-jose/v4/json"
)

const (
	// DefaultRefreshInterval is how often a started [Remote] refetches its
	// set in the background.
	DefaultRefreshInterval = 5 * time.Minute
	// DefaultMinRefreshInterval is how often, at most, lookups of unknown
	// kids make a [Remote] refetch its set.
	DefaultMinRefreshInterval = 30 * time.Second
	// DefaultMaxResponseSize caps the JWKS document a [Remote] accepts.
	DefaultMaxResponseSize = 64 << 10
	// DefaultFetchTimeout bounds one fetch.
	DefaultFetchTimeout = 10 * time.Second
)

// RemoteOptions configures [NewRemote]. The zero value works.
type RemoteOptions struct {
	// RefreshInterval is how often the set is refetched in the background
	// once started. Zero means DefaultRefreshInterval.
	RefreshInterval time.Duration
	// MinRefreshInterval spaces the fetches that lookups of unknown kids
	// cause: at most one per interval, however many such lookups arrive.
	// Zero means DefaultMinRefreshInterval.
	MinRefreshInterval time.Duration
	// MaxResponseSize caps the response body. Zero means
	// DefaultMaxResponseSize.
	MaxResponseSize int64
	// Timeout bounds one fetch. Zero means DefaultFetchTimeout.
	Timeout time.Duration
	// Algorithms lists the algorithms whose keys are kept; keys for other
	// algorithms are ignored. Empty means ES256 and EdDSA.
	Algorithms []jose.SignatureAlgorithm
	// OnError, if set, receives every fetch error. The last good set stays
	// in use whatever the error.
	OnError func(error)
}

// Remote is a JWKS fetched over HTTP(S) and cached in memory, for verifying
// tokens from an issuer this program does not run. It is safe for concurrent
// use.
//
// A fetched set is refused as a whole, and the last good one kept, if any
// key in it holds private or symmetric key material, or is an RSA key under
// [MinRSABits] bits, or if two keys share a kid. Keys that are merely not
// for this program (use other than "sig", an algorithm outside the allowed
// list, an unknown key type, no kid) are ignored.
type Remote struct {
	url    string
	client *http.Client
	opts   RemoteOptions
	now    func() time.Time

	keys atomic.Pointer[map[string]jose.JSONWebKey]

	// life bounds every fetch; Close cancels it. A fetch is shared by every
	// caller waiting for it, so no one caller's context may end it.
	life   context.Context //nolint:containedctx // the Remote's lifetime, cancelled by Close
	cancel context.CancelFunc
	start  sync.Once
	loop   sync.WaitGroup

	mu          sync.Mutex
	lastAttempt time.Time
	lastErr     error
	inflight    *fetchCall
}

// fetchCall is one fetch that any number of callers wait for.
type fetchCall struct {
	done chan struct{}
	err  error
}

// NewRemote returns a Remote for the JWKS at rawURL, fetched with client,
// which may present a client certificate. A nil client means one with no
// settings but the fetch timeout. Nothing is fetched until [Remote.Start] or
// the first [Remote.Key].
func NewRemote(rawURL string, client *http.Client, opts RemoteOptions) *Remote {
	if client == nil {
		client = &http.Client{}
	}
	if opts.RefreshInterval <= 0 {
		opts.RefreshInterval = DefaultRefreshInterval
	}
	if opts.MinRefreshInterval <= 0 {
		opts.MinRefreshInterval = DefaultMinRefreshInterval
	}
	if opts.MaxResponseSize <= 0 {
		opts.MaxResponseSize = DefaultMaxResponseSize
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultFetchTimeout
	}
	if len(opts.Algorithms) == 0 {
		opts.Algorithms = slices.Clone(signingAlgorithms)
	}
	life, cancel := context.WithCancel(context.Background())
	return &Remote{
		url:    rawURL,
		client: client,
		opts:   opts,
		now:    time.Now,
		life:   life,
		cancel: cancel,
	}
}

// Start fetches the set now and then every refresh interval, in the
// background, until ctx is done or [Remote.Close] is called. Fetch errors go
// to OnError and to the callers of [Remote.Key]. Calls after the first do
// nothing.
func (r *Remote) Start(ctx context.Context) {
	r.start.Do(func() {
		r.loop.Add(1)
		go r.refreshLoop(ctx)
	})
}

// Close stops the background refresh and any fetch in flight, and waits for
// the refresh loop to end.
func (r *Remote) Close() {
	r.cancel()
	r.loop.Wait()
}

// retryFloor is the first wait after a failed background fetch. The waits
// double up to the refresh interval, so that a Remote started before its
// server (as workloads are, at start-up) picks the keys up within moments
// of the server coming up, yet does not hammer a server that is down.
const retryFloor = 250 * time.Millisecond

// retryCeiling caps the waits between failed background fetches.
const retryCeiling = 5 * time.Second

// firstFetchInterval spaces the fetches that lookups cause before any set
// has been fetched.
const firstFetchInterval = 500 * time.Millisecond

func (r *Remote) refreshLoop(ctx context.Context) {
	defer r.loop.Done()
	retry := retryFloor
	for {
		wait := r.opts.RefreshInterval
		call := r.begin(true) //nolint:contextcheck // shared by all callers; see begin
		if call != nil {
			select {
			case <-call.done:
				if call.err != nil {
					wait, retry = retry, min(2*retry, retryCeiling, r.opts.RefreshInterval)
				} else {
					retry = retryFloor
				}
			case <-ctx.Done():
				return
			case <-r.life.Done():
				return
			}
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-r.life.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
	}
}

// Fetch fetches the set now, or waits for the fetch in flight, and returns
// its error: one wrapping [ErrInvalidKeySet] for a set refused as a whole,
// such as one holding a weak key, or the network's or the server's. A
// program calls it at start-up so that an issuer it can never verify
// fails the start rather than every token afterwards. The fetch counts
// against MinRefreshInterval like any other.
func (r *Remote) Fetch(ctx context.Context) error {
	call := r.begin(true) //nolint:contextcheck // shared by all callers; see begin
	select {
	case <-call.done:
		return call.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Loaded reports whether a set has been fetched: until then every lookup
// fails. Readiness checks use it.
func (r *Remote) Loaded() bool { return r.keys.Load() != nil }

// Key returns the key named kid. A kid missing from the cached set makes
// the Remote refetch, unless it fetched less than MinRefreshInterval ago;
// concurrent callers share that one fetch. Every failure wraps
// [ErrUnknownKey]; when the set could not be fetched, or none has been yet,
// it wraps [ErrUnavailable] and the fetch error too.
func (r *Remote) Key(ctx context.Context, kid string) (jose.JSONWebKey, error) {
	if k, ok := r.lookup(kid); ok {
		return k, nil
	}
	if kid == "" || len(kid) > maxKeyIDLen {
		return jose.JSONWebKey{}, r.unknown(kid, nil)
	}

	call := r.begin(false) //nolint:contextcheck // shared by all callers; see begin
	if call == nil {
		return jose.JSONWebKey{}, r.unknown(kid, nil)
	}
	select {
	case <-call.done:
	case <-ctx.Done():
		return jose.JSONWebKey{}, r.unknown(kid, ctx.Err())
	}
	if k, ok := r.lookup(kid); ok {
		return k, nil
	}
	return jose.JSONWebKey{}, r.unknown(kid, call.err)
}

func (r *Remote) lookup(kid string) (jose.JSONWebKey, bool) {
	keys := r.keys.Load()
	if keys == nil {
		return jose.JSONWebKey{}, false
	}
	k, ok := (*keys)[kid]
	return k, ok
}

// unknown builds the error for a kid not found. When the last fetch failed,
// or there is no set yet, it wraps [ErrUnavailable] and the reason.
func (r *Remote) unknown(kid string, cause error) error {
	if cause == nil {
		// The last fetch failed: the key may exist all the same.
		r.mu.Lock()
		cause = r.lastErr
		r.mu.Unlock()
	}
	if cause == nil && r.keys.Load() == nil {
		cause = errors.New("no key set fetched yet")
	}
	if cause != nil {
		return fmt.Errorf("%w: kid %s: %w: %w", ErrUnknownKey, clip(kid), ErrUnavailable, cause)
	}
	return fmt.Errorf("%w: kid %s", ErrUnknownKey, clip(kid))
}

// begin returns the fetch in flight, or starts one if force is set or the
// last attempt is older than MinRefreshInterval. It returns nil when no
// fetch is due. Attempts, failed or not, count against the interval, so an
// issuer that is down is not hammered either. The fetch runs under the
// Remote's lifetime rather than a caller's context, since every caller
// waiting for it shares it; each caller stops waiting when its own context
// ends.
func (r *Remote) begin(force bool) *fetchCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.inflight != nil {
		return r.inflight
	}
	// Until a first set arrives, every token fails anyway; wait only
	// briefly between attempts, so that a Remote started before its
	// server (a workload before the gateway, at start-up) answers as soon
	// as the server does.
	interval := r.opts.MinRefreshInterval
	if r.keys.Load() == nil {
		interval = min(interval, firstFetchInterval)
	}
	now := r.now()
	if !force && !r.lastAttempt.IsZero() && now.Sub(r.lastAttempt) < interval {
		return nil
	}
	r.lastAttempt = now
	call := &fetchCall{done: make(chan struct{})}
	r.inflight = call
	go r.run(call)
	return call
}

func (r *Remote) run(call *fetchCall) {
	keys, err := r.fetch()
	if err == nil {
		r.keys.Store(&keys)
	} else if r.opts.OnError != nil {
		r.opts.OnError(err)
	}

	r.mu.Lock()
	r.lastErr = err
	r.inflight = nil
	r.mu.Unlock()
	call.err = err
	close(call.done)
}

func (r *Remote) fetch() (map[string]jose.JSONWebKey, error) {
	u, err := url.Parse(r.url)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("fetching JWKS: %w: URL must be http(s)", ErrInvalidKeySet)
	}
	ctx, cancel := context.WithTimeout(r.life, r.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url, nil)
	if err != nil {
		return nil, fmt.Errorf("fetching JWKS: %w", err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")

	resp, err := r.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching JWKS from %s: status %s", r.url, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, r.opts.MaxResponseSize+1))
	if err != nil {
		return nil, fmt.Errorf("fetching JWKS from %s: %w", r.url, err)
	}
	if int64(len(body)) > r.opts.MaxResponseSize {
		return nil, fmt.Errorf("fetching JWKS from %s: %w: over %d bytes",
			r.url, ErrTooLarge, r.opts.MaxResponseSize)
	}

	keys, err := parseRemoteSet(body, r.opts.Algorithms)
	if err != nil {
		return nil, fmt.Errorf("fetching JWKS from %s: %w", r.url, err)
	}
	return keys, nil
}

// privateMembers are the JWK members that carry private or symmetric key
// material, for every key type go-jose knows.
var privateMembers = []string{"d", "p", "q", "dp", "dq", "qi", "k", "priv"}

// parseRemoteSet applies the rules in the [Remote] documentation and
// returns the usable public keys by kid.
func parseRemoteSet(data []byte, algs []jose.SignatureAlgorithm,
) (map[string]jose.JSONWebKey, error) {
	var doc struct {
		Keys []josejson.RawMessage `json:"keys"`
	}
	if err := josejson.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidKeySet, err)
	}

	keys := make(map[string]jose.JSONWebKey, len(doc.Keys))
	for i, raw := range doc.Keys {
		key, use, err := parseRemoteKey(raw, algs)
		if err != nil {
			return nil, fmt.Errorf("%w: key %d: %w", ErrInvalidKeySet, i, err)
		}
		if !use {
			continue
		}
		if _, dup := keys[key.KeyID]; dup {
			return nil, fmt.Errorf("%w: duplicate kid %s", ErrInvalidKeySet, clip(key.KeyID))
		}
		keys[key.KeyID] = key
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: no usable signing key", ErrInvalidKeySet)
	}
	return keys, nil
}

// parseRemoteKey returns a key from a remote set and whether to use it, or
// an error if its presence must make the whole set refused.
func parseRemoteKey(raw []byte, algs []jose.SignatureAlgorithm) (jose.JSONWebKey, bool, error) {
	var members map[string]josejson.RawMessage
	if err := josejson.Unmarshal(raw, &members); err != nil {
		return jose.JSONWebKey{}, false, err
	}
	for _, name := range privateMembers {
		if _, ok := members[name]; ok {
			return jose.JSONWebKey{}, false,
				fmt.Errorf("private or symmetric key material (%q)", name)
		}
	}

	var key jose.JSONWebKey
	if err := key.UnmarshalJSON(raw); err != nil {
		// A key type or parameter this program cannot use: the key is
		// ignored, and the rest of the set still counts.
		return jose.JSONWebKey{}, false, nil //nolint:nilerr // an unusable key is skipped
	}
	if err := checkStrength(key.Key); err != nil {
		return jose.JSONWebKey{}, false, err
	}
	if key.KeyID == "" || len(key.KeyID) > maxKeyIDLen || (key.Use != "" && key.Use != Use) {
		return jose.JSONWebKey{}, false, nil
	}

	usable := false
	for _, alg := range algs {
		if key.Algorithm != "" && key.Algorithm != string(alg) {
			continue
		}
		if fits(key.Key, alg) == nil {
			usable = true
			break
		}
	}
	if !usable {
		return jose.JSONWebKey{}, false, nil
	}
	key.Certificates, key.CertificatesURL = nil, nil
	key.CertificateThumbprintSHA1, key.CertificateThumbprintSHA256 = nil, nil
	return key, true, nil
}
