package jwks

import (
	"bytes"
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	josejson "github.com/go-jose/go-jose/v4/json"
)

const (
	// DefaultPollInterval is how often a [KeySet] checks its file.
	DefaultPollInterval = time.Second

	// CacheMaxAge is how long clients may cache the JWKS that
	// [KeySet.Handler] serves.
	CacheMaxAge = time.Minute

	// maxKeyFileSize bounds what a key file may hold.
	maxKeyFileSize = 1 << 20
)

// signingAlgorithms are the algorithms a key file may sign with.
var signingAlgorithms = []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA}

// KeySetOptions configures [LoadKeySet]. The zero value works.
type KeySetOptions struct {
	// PollInterval is how often the file is checked for changes.
	// Zero means DefaultPollInterval.
	PollInterval time.Duration
	// OnError, if set, receives every error met while reloading. The key
	// set keeps its last good keys whatever the error.
	OnError func(error)
}

// KeySet is a signing key set read from a key file (see the package
// documentation for its format) and reloaded when the file changes. It is
// safe for concurrent use.
type KeySet struct {
	path  string
	state atomic.Pointer[keyState]
}

// keyState is one loaded version of the file. It is never modified.
type keyState struct {
	signer   jose.SigningKey
	public   jose.JSONWebKeySet
	byID     map[string]jose.JSONWebKey
	thumbs   map[string]string
	document []byte
}

// keyFile is the on-disk form of a key set.
type keyFile struct {
	Active string            `json:"active"`
	Keys   []jose.JSONWebKey `json:"keys"`
}

// LoadKeySet reads the key file at path and, until ctx is done, checks it
// every poll interval and swaps in the new keys when it changes. It fails if
// the file cannot be read or breaks a rule of the key file format; after
// that, a broken file is reported to OnError and the last good keys stay in
// use.
func LoadKeySet(ctx context.Context, path string, opts KeySetOptions) (*KeySet, error) {
	data, err := readKeyFile(path)
	if err != nil {
		return nil, fmt.Errorf("loading key set: %w", err)
	}
	st, err := parseKeyFile(data)
	if err != nil {
		return nil, fmt.Errorf("loading key set %s: %w", path, err)
	}

	s := &KeySet{path: path}
	s.state.Store(st)

	interval := opts.PollInterval
	if interval <= 0 {
		interval = DefaultPollInterval
	}
	go s.watch(ctx, data, interval, opts.OnError)
	return s, nil
}

// watch reloads the file whenever its content differs from the last content
// seen. Each distinct failure is reported once.
func (s *KeySet) watch(ctx context.Context, seen []byte, interval time.Duration,
	onError func(error),
) {
	report := func(err error) {
		if onError != nil {
			onError(err)
		}
	}
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	lastErr := ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}

		data, err := readKeyFile(s.path)
		if err != nil {
			if err.Error() != lastErr {
				lastErr = err.Error()
				report(fmt.Errorf("reloading key set: %w", err))
			}
			continue
		}
		if bytes.Equal(data, seen) {
			continue
		}
		seen, lastErr = data, ""
		if err := s.reload(data); err != nil {
			report(fmt.Errorf("reloading key set %s: %w", s.path, err))
		}
	}
}

func (s *KeySet) reload(data []byte) error {
	next, err := parseKeyFile(data)
	if err != nil {
		return err
	}
	prev := s.state.Load()
	for kid, thumb := range next.thumbs {
		if old, ok := prev.thumbs[kid]; ok && old != thumb {
			return fmt.Errorf("%w: kid %q now names a different key", ErrInvalidKeySet, kid)
		}
	}
	s.state.Store(next)
	return nil
}

// Signer returns the active key, as go-jose signs with it: its algorithm and
// the private key with its kid.
func (s *KeySet) Signer() jose.SigningKey { return s.state.Load().signer }

// Public returns the public halves of every key in the file, the active one
// and those that only verify.
func (s *KeySet) Public() jose.JSONWebKeySet {
	pub := s.state.Load().public
	return jose.JSONWebKeySet{Keys: slices.Clone(pub.Keys)}
}

// Key returns the public half of the key named kid, or an error wrapping
// [ErrUnknownKey]. It implements [KeySource].
func (s *KeySet) Key(_ context.Context, kid string) (jose.JSONWebKey, error) {
	if k, ok := s.state.Load().byID[kid]; ok {
		return k, nil
	}
	return jose.JSONWebKey{}, fmt.Errorf("%w: kid %s", ErrUnknownKey, clip(kid))
}

// Handler serves the public JWKS as application/json, cacheable for
// [CacheMaxAge]. It answers GET and HEAD only.
func (s *KeySet) Handler() http.Handler {
	cacheControl := fmt.Sprintf("public, max-age=%d", int(CacheMaxAge.Seconds()))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
			return
		}
		doc := s.state.Load().document
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", cacheControl)
		h.Set("X-Content-Type-Options", "nosniff")
		_, _ = w.Write(doc)
	})
}

// WriteKeySetFile writes keys to path as a key file whose first key is
// active. It refuses keys that [LoadKeySet] would refuse, and replaces the
// file atomically (a temporary file renamed over it), with mode 0600, so that
// a reader never sees half a file.
func WriteKeySetFile(path string, keys ...jose.JSONWebKey) error {
	if len(keys) == 0 {
		return fmt.Errorf("writing key set: %w: no keys", ErrInvalidKeySet)
	}
	data, err := json.MarshalIndent(keyFile{Active: keys[0].KeyID, Keys: keys}, "", "  ")
	if err != nil {
		return fmt.Errorf("writing key set: %w", err)
	}
	data = append(data, '\n')
	if _, err := parseKeyFile(data); err != nil {
		return fmt.Errorf("writing key set: %w", err)
	}

	tmp, err := os.CreateTemp(filepath.Dir(path), ".jwks-*.tmp")
	if err != nil {
		return fmt.Errorf("writing key set: %w", err)
	}
	// Removing the temporary file fails harmlessly once it is renamed.
	defer func() { _ = os.Remove(tmp.Name()) }()
	if err := tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("writing key set: %w", errors.Join(err, tmp.Close()))
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("writing key set: %w", errors.Join(err, tmp.Close()))
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("writing key set: %w", errors.Join(err, tmp.Close()))
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing key set: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing key set: %w", err)
	}
	return nil
}

func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path) //nolint:gosec // G304: the operator's configuration names the path
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }() // only read: closing loses nothing
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if len(data) > maxKeyFileSize {
		return nil, fmt.Errorf("reading %s: %w: over %d bytes", path, ErrTooLarge, maxKeyFileSize)
	}
	return data, nil
}

// parseKeyFile applies every rule of the key file format. It uses go-jose's
// JSON decoder, which matches member names exactly and refuses duplicates.
func parseKeyFile(data []byte) (*keyState, error) {
	var file struct {
		Active string                `json:"active"`
		Keys   []josejson.RawMessage `json:"keys"`
	}
	if err := josejson.Unmarshal(data, &file); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidKeySet, err)
	}
	if len(file.Keys) == 0 {
		return nil, fmt.Errorf("%w: no keys", ErrInvalidKeySet)
	}

	st := &keyState{
		byID:   make(map[string]jose.JSONWebKey, len(file.Keys)),
		thumbs: make(map[string]string, len(file.Keys)),
	}
	var active *jose.JSONWebKey
	for i, raw := range file.Keys {
		var key jose.JSONWebKey
		if err := key.UnmarshalJSON(raw); err != nil {
			return nil, fmt.Errorf("%w: key %d: %w", ErrInvalidKeySet, i, err)
		}
		pub, err := checkSigningKey(key)
		if err != nil {
			return nil, fmt.Errorf("%w: key %d (kid %s): %w",
				ErrInvalidKeySet, i, clip(key.KeyID), err)
		}
		if _, dup := st.byID[key.KeyID]; dup {
			return nil, fmt.Errorf("%w: duplicate kid %s", ErrInvalidKeySet, clip(key.KeyID))
		}
		thumb, err := pub.Thumbprint(crypto.SHA256)
		if err != nil {
			return nil, fmt.Errorf("%w: key %d: %w", ErrInvalidKeySet, i, err)
		}

		st.byID[key.KeyID] = pub
		st.thumbs[key.KeyID] = string(thumb)
		st.public.Keys = append(st.public.Keys, pub)
		if key.KeyID == file.Active {
			active = &key
		}
	}
	if active == nil {
		return nil, fmt.Errorf("%w: \"active\" names no key in the set", ErrInvalidKeySet)
	}

	st.signer = jose.SigningKey{
		Algorithm: jose.SignatureAlgorithm(active.Algorithm),
		Key: jose.JSONWebKey{
			Key:       active.Key,
			KeyID:     active.KeyID,
			Algorithm: active.Algorithm,
			Use:       Use,
		},
	}
	doc, err := json.Marshal(st.public)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidKeySet, err)
	}
	st.document = doc
	return st, nil
}

// checkSigningKey applies the per-key rules of the key file and returns the
// public half to publish, stripped of everything but key, kid, alg and use.
func checkSigningKey(key jose.JSONWebKey) (jose.JSONWebKey, error) {
	if key.KeyID == "" {
		return jose.JSONWebKey{}, errors.New("no kid")
	}
	if len(key.KeyID) > maxKeyIDLen {
		return jose.JSONWebKey{}, fmt.Errorf("kid longer than %d bytes", maxKeyIDLen)
	}
	if err := checkStrength(key.Key); err != nil {
		return jose.JSONWebKey{}, err
	}
	alg := jose.SignatureAlgorithm(key.Algorithm)
	if !slices.Contains(signingAlgorithms, alg) {
		return jose.JSONWebKey{}, fmt.Errorf("%w: %q, want one of %q",
			ErrAlgorithm, alg, signingAlgorithms)
	}
	if key.IsPublic() {
		return jose.JSONWebKey{}, errors.New("public key only: signing needs the private half")
	}
	if !key.Valid() {
		return jose.JSONWebKey{}, errors.New("invalid key")
	}
	if key.Use != Use {
		return jose.JSONWebKey{}, fmt.Errorf("use %q, want %q", key.Use, Use)
	}
	pub := key.Public()
	if err := fits(pub.Key, alg); err != nil {
		return jose.JSONWebKey{}, err
	}
	return jose.JSONWebKey{Key: pub.Key, KeyID: key.KeyID, Algorithm: key.Algorithm, Use: Use}, nil
}
