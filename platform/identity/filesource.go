package identity

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// DefaultInterval is how often a [FileSource] looks for changed files when
// [FileOptions] does not say.
const DefaultInterval = time.Second

// Errors returned when files on disk cannot become credentials.
var (
	// ErrMalformedPEM means a file is not a sequence of PEM blocks of the
	// expected type with nothing else around them: typically a file caught
	// half-written.
	ErrMalformedPEM = errors.New("identity: malformed PEM")
	// ErrInvalidBundle means a trust bundle is empty or holds a certificate
	// that is not a CA.
	ErrInvalidBundle = errors.New("identity: invalid trust bundle")
	// ErrIDChanged means reloaded files hold an SVID for another SPIFFE ID
	// than the one the source started with.
	ErrIDChanged = errors.New("identity: SVID names another workload")
)

// FileOptions tunes a [FileSource]. The zero value works.
type FileOptions struct {
	// Interval is how often the files are read to look for changes;
	// [DefaultInterval] when zero or negative.
	Interval time.Duration
	// OnError, when set, is called from the polling goroutine with each
	// reload failure. A failure is reported once, not on every poll, until
	// the files change again. It must not block for long.
	OnError func(error)
	// OnReload, when set, is called from the polling goroutine after new
	// credentials took effect, with the SVID now served.
	OnReload func(*x509svid.SVID)
}

// FileSource is a [Source] that reads a workload's SVID, key and trust
// bundle from PEM files and follows changes to them. It is safe for
// concurrent use.
//
// It polls the files and compares their content, so it works with any
// writer, including Kubernetes' symlink swaps and editors that rewrite in
// place. The SVID and the bundle are each replaced only by a valid
// successor: an SVID must meet go-spiffe's rules, match its key, keep the
// source's SPIFFE ID and chain to the bundle; a bundle must hold only CA
// certificates. Anything else, such as a file caught half-written, leaves
// the last good value in place, is reported through [FileOptions.OnError]
// and is tried again on the next poll.
//
// A valid new bundle takes effect even when our own SVID does not chain to
// it (that is reported too): when a CA leaves the bundle, its certificates
// must stop being accepted at once, whatever state our own SVID is in.
type FileSource struct {
	files    Files
	opts     FileOptions
	current  atomic.Pointer[fileCredentials]
	stop     context.CancelFunc
	stopOnce sync.Once
	done     chan struct{}

	// Owned by the polling goroutine.
	reportedFiles   *fileContents
	reportedReadErr string
}

// fileCredentials are parsed credentials and the file content they came
// from.
type fileCredentials struct {
	svid   *x509svid.SVID
	bundle *x509bundle.Bundle
	raw    fileContents
}

type fileContents struct {
	cert, key, bundle []byte
}

func (c fileContents) equal(other fileContents) bool {
	return bytes.Equal(c.cert, other.cert) && bytes.Equal(c.key, other.key) &&
		bytes.Equal(c.bundle, other.bundle)
}

// NewFileSource loads the credentials in files and watches them until ctx
// ends or [FileSource.Close] is called; after that it keeps serving the
// last credentials it loaded. It fails unless every file can be read, the
// certificate file holds a valid X.509 SVID with a path, the key matches
// it, and the SVID chains to the bundle, taken as the bundle of the SVID's
// trust domain.
func NewFileSource(ctx context.Context, files Files, opts FileOptions) (*FileSource, error) {
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	raw, err := readFiles(files)
	if err != nil {
		return nil, fmt.Errorf("loading workload credentials: %w", err)
	}
	creds, err := parseFiles(raw)
	if err != nil {
		return nil, fmt.Errorf("loading workload credentials: %w", err)
	}

	ctx, stop := context.WithCancel(ctx) //nolint:gosec // G118: stop is kept and called by Close.
	s := &FileSource{files: files, opts: opts, stop: stop, done: make(chan struct{})}
	s.current.Store(creds)
	go s.watch(ctx)
	return s, nil
}

// GetX509SVID returns the SVID currently loaded. Callers must not modify it.
func (s *FileSource) GetX509SVID() (*x509svid.SVID, error) {
	return s.current.Load().svid, nil
}

// GetX509BundleForTrustDomain returns a copy of the bundle currently
// loaded when td is the trust domain of our SVID, and fails with
// [ErrNoBundle] for any other.
func (s *FileSource) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	bundle := s.current.Load().bundle
	if bundle.TrustDomain() != td {
		return nil, fmt.Errorf("%w %q", ErrNoBundle, td.Name())
	}
	return bundle.Clone(), nil
}

// Close stops watching the files and waits until the polling goroutine has
// returned, so that no callback runs after it. It is safe to call more than
// once and always returns nil.
func (s *FileSource) Close() error {
	s.stopOnce.Do(s.stop)
	<-s.done
	return nil
}

func (s *FileSource) watch(ctx context.Context) {
	defer close(s.done)
	ticker := time.NewTicker(s.opts.Interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			// select picks at random when both are ready; stopping wins.
			if ctx.Err() != nil {
				return
			}
			s.reload()
		}
	}
}

// reload reads the files and applies whatever changed and is valid. It
// reports each failure once per file content, since some errors, such as
// an expired certificate's, embed the current time and would otherwise be
// reported on every poll.
//
// TODO: nothing reports an SVID that nears expiry while the files stop
// changing, so a stalled rotation shows only as refused handshakes once the
// SVID has expired.
func (s *FileSource) reload() {
	raw, err := readFiles(s.files)
	if err != nil {
		if msg := err.Error(); msg != s.reportedReadErr {
			s.reportedReadErr = msg
			s.report(err)
		}
		return
	}
	s.reportedReadErr = ""

	cur := s.current.Load()
	if raw.equal(cur.raw) {
		s.reportedFiles = nil
		return
	}
	next, err := update(cur, raw)
	if next != cur {
		s.current.Store(next)
		if s.opts.OnReload != nil {
			s.opts.OnReload(next.svid)
		}
	}
	switch {
	case err == nil:
		s.reportedFiles = nil
	case s.reportedFiles == nil || !s.reportedFiles.equal(raw):
		s.reportedFiles = &raw
		s.report(err)
	}
}

func (s *FileSource) report(err error) {
	if s.opts.OnError != nil {
		s.opts.OnError(fmt.Errorf("reloading workload credentials: %w", err))
	}
}

// parseFiles turns file content into credentials, requiring all of it to
// be valid and consistent.
func parseFiles(raw fileContents) (*fileCredentials, error) {
	svid, err := parseSVID(raw.cert, raw.key)
	if err != nil {
		return nil, err
	}
	bundle, err := parseBundle(svid.ID.TrustDomain(), raw.bundle)
	if err != nil {
		return nil, err
	}
	if err := verifyOwn(svid, bundle); err != nil {
		return nil, err
	}
	return &fileCredentials{svid: svid, bundle: bundle, raw: raw}, nil
}

// update returns the credentials that follow cur once raw is applied: a
// valid changed bundle replaces the old one, then a valid changed SVID
// that chains to the resulting bundle replaces the old SVID. It returns cur
// itself when nothing could be applied.
func update(cur *fileCredentials, raw fileContents) (*fileCredentials, error) {
	next := *cur
	var errs []error

	if !bytes.Equal(raw.bundle, cur.raw.bundle) {
		bundle, err := parseBundle(cur.svid.ID.TrustDomain(), raw.bundle)
		if err != nil {
			errs = append(errs, err)
		} else {
			next.bundle, next.raw.bundle = bundle, raw.bundle
		}
	}

	if !bytes.Equal(raw.cert, cur.raw.cert) || !bytes.Equal(raw.key, cur.raw.key) {
		svid, err := parseSVID(raw.cert, raw.key)
		switch {
		case err != nil:
		case svid.ID != cur.svid.ID:
			err = fmt.Errorf("%w: %s, not %s", ErrIDChanged, svid.ID, cur.svid.ID)
		default:
			err = verifyOwn(svid, next.bundle)
		}
		if err != nil {
			errs = append(errs, err)
		} else {
			next.svid, next.raw.cert, next.raw.key = svid, raw.cert, raw.key
		}
	}

	if next.bundle != cur.bundle && next.svid == cur.svid {
		if err := verifyOwn(next.svid, next.bundle); err != nil {
			errs = append(errs, fmt.Errorf("keeping SVID that no longer chains to the bundle: %w", err))
		}
	}
	if next.raw.equal(cur.raw) {
		return cur, errors.Join(errs...)
	}
	return &next, errors.Join(errs...)
}

func readFiles(files Files) (fileContents, error) {
	var raw fileContents
	var err error
	if raw.cert, err = os.ReadFile(files.Cert); err != nil {
		return raw, fmt.Errorf("reading SVID certificate: %w", err)
	}
	if raw.key, err = os.ReadFile(files.Key); err != nil {
		return raw, fmt.Errorf("reading SVID key: %w", err)
	}
	if raw.bundle, err = os.ReadFile(files.Bundle); err != nil {
		return raw, fmt.Errorf("reading trust bundle: %w", err)
	}
	return raw, nil
}

// parseSVID parses a PEM certificate chain and PKCS#8 key as an X.509 SVID
// under go-spiffe's rules, which include a SPIFFE ID with a path, a leaf
// that is not a CA, and a key that matches the leaf.
func parseSVID(certPEM, keyPEM []byte) (*x509svid.SVID, error) {
	certs, err := decodePEM(certPEM, "CERTIFICATE")
	if err != nil {
		return nil, fmt.Errorf("parsing SVID certificate: %w", err)
	}
	keys, err := decodePEM(keyPEM, "PRIVATE KEY")
	if err != nil {
		return nil, fmt.Errorf("parsing SVID key: %w", err)
	}
	if len(keys) != 1 {
		return nil, fmt.Errorf("parsing SVID key: %w: %d keys", ErrMalformedPEM, len(keys))
	}
	svid, err := x509svid.ParseRaw(bytes.Join(certs, nil), keys[0])
	if err != nil {
		return nil, fmt.Errorf("parsing SVID: %w", err)
	}
	return svid, nil
}

// parseBundle parses PEM CA certificates as the trust bundle of td.
func parseBundle(td spiffeid.TrustDomain, bundlePEM []byte) (*x509bundle.Bundle, error) {
	certs, err := decodePEM(bundlePEM, "CERTIFICATE")
	if err != nil {
		return nil, fmt.Errorf("parsing trust bundle: %w", err)
	}
	bundle, err := x509bundle.ParseRaw(td, bytes.Join(certs, nil))
	if err != nil {
		return nil, fmt.Errorf("parsing trust bundle: %w", err)
	}
	for _, ca := range bundle.X509Authorities() {
		if !ca.IsCA {
			return nil, fmt.Errorf("%w: %q is not a CA", ErrInvalidBundle, ca.Subject)
		}
	}
	return bundle, nil
}

// verifyOwn checks that our SVID chains to bundle and is valid now, as a
// peer sharing the bundle would check it.
func verifyOwn(svid *x509svid.SVID, bundle *x509bundle.Bundle) error {
	if _, _, err := x509svid.Verify(svid.Certificates, bundle); err != nil {
		return fmt.Errorf("verifying SVID against the trust bundle: %w", err)
	}
	return nil
}

// trimPEMSpace trims the white space that may surround PEM blocks: spaces,
// tabs and line ends, as pem.Decode reads them. Other Unicode white space,
// a vertical tab after an END line for one, is data, and refused.
func trimPEMSpace(b []byte) []byte { return bytes.Trim(b, " \t\r\n") }

// decodePEM returns the contents of the PEM blocks in data, which must be
// at least one block, all of type blockType and without headers, separated
// by nothing but white space. It is stricter than pem.Decode on purpose:
// a file cut short mid-block must fail rather than yield fewer blocks.
func decodePEM(data []byte, blockType string) ([][]byte, error) {
	var blocks [][]byte
	rest := data
	for rest = trimPEMSpace(rest); len(rest) > 0; rest = trimPEMSpace(rest) {
		// pem.Decode skips anything before a block; a file must not have it.
		if !bytes.HasPrefix(rest, []byte("-----BEGIN ")) {
			return nil, fmt.Errorf("%w: data after block %d", ErrMalformedPEM, len(blocks))
		}
		var block *pem.Block
		block, rest = pem.Decode(rest)
		switch {
		case block == nil:
			return nil, fmt.Errorf("%w: block %d cut short", ErrMalformedPEM, len(blocks))
		case block.Type != blockType:
			return nil, fmt.Errorf("%w: block %d is %q, not %q",
				ErrMalformedPEM, len(blocks), block.Type, blockType)
		case len(block.Headers) > 0:
			return nil, fmt.Errorf("%w: block %d has headers", ErrMalformedPEM, len(blocks))
		}
		blocks = append(blocks, block.Bytes)
	}
	if len(blocks) == 0 {
		return nil, fmt.Errorf("%w: no %q block", ErrMalformedPEM, blockType)
	}
	return blocks, nil
}
