package identity_test

import (
	"context"
	"crypto/x509"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"example.com/rampart/platform/devpki"
	"example.com/rampart/platform/identity"
)

const pollInterval = 5 * time.Millisecond

// pki is a development PKI in a temporary directory.
type pki struct {
	dir string
	ca  *devpki.CA
}

func newPKI(t *testing.T, workloads ...string) *pki {
	t.Helper()
	dir := t.TempDir()
	if err := devpki.Ensure(dir, td, workloads...); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	ca, err := devpki.LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	return &pki{dir: dir, ca: ca}
}

func (p *pki) files(name string) identity.Files { return devpki.WorkloadFiles(p.dir, name) }

// events records what a FileSource reported.
type events struct {
	mu      sync.Mutex
	errs    []error
	reloads int
}

func (e *events) options() identity.FileOptions {
	return identity.FileOptions{
		Interval: pollInterval,
		OnError: func(err error) {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.errs = append(e.errs, err)
		},
		OnReload: func(*x509svid.SVID) {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.reloads++
		},
	}
}

func (e *events) counts() (errs, reloads int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.errs), e.reloads
}

func (e *events) lastErr() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.errs) == 0 {
		return nil
	}
	return e.errs[len(e.errs)-1]
}

func newFileSource(t *testing.T, files identity.Files, opts identity.FileOptions) *identity.FileSource {
	t.Helper()
	src, err := identity.NewFileSource(t.Context(), files, opts)
	if err != nil {
		t.Fatalf("NewFileSource: %v", err)
	}
	t.Cleanup(func() { src.Close() })
	return src
}

func TestNewFileSource(t *testing.T) {
	t.Parallel()
	p := newPKI(t, "server")
	src := newFileSource(t, p.files("server"), identity.FileOptions{})

	svid, err := src.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	if svid.ID != serverID {
		t.Errorf("SVID ID = %s, want %s", svid.ID, serverID)
	}
	bundle, err := src.GetX509BundleForTrustDomain(td)
	if err != nil {
		t.Fatal(err)
	}
	if got := bundle.X509Authorities(); len(got) != 1 || !got[0].Equal(p.ca.Certificate()) {
		t.Errorf("bundle holds %d authorities, want the CA alone", len(got))
	}
	other := spiffeid.RequireTrustDomainFromString("other.test")
	if _, err := src.GetX509BundleForTrustDomain(other); !errors.Is(err, identity.ErrNoBundle) {
		t.Errorf("bundle for another trust domain: error %v, want ErrNoBundle", err)
	}
}

func TestNewFileSourceRejects(t *testing.T) {
	t.Parallel()
	ca, otherCA := newCA(t), newCA(t)
	good := issue(t, ca, "server")
	now := time.Now()
	expired := leafTemplate(serverID.String())
	expired.NotBefore, expired.NotAfter = now.Add(-2*time.Hour), now.Add(-time.Hour)
	caLeaf := leafTemplate(serverID.String())
	caLeaf.IsCA, caLeaf.KeyUsage = true, x509.KeyUsageDigitalSignature|x509.KeyUsageCertSign
	twoURIs := issueTemplate(t, ca, leafTemplate(serverID.String(), clientID.String()))
	noPath := issueTemplate(t, ca, leafTemplate("spiffe://rampart.test"))
	leafInBundle := append(ca.BundlePEM(), issue(t, ca, "client").CertPEM...)

	tests := []struct {
		name                string
		cert, key, bundle   []byte
		missing             string // file to leave out
		wantErr             error
		wantErrTextContains string
	}{
		{name: "certificate missing", missing: "cert", wantErr: fs.ErrNotExist},
		{name: "key missing", missing: "key", wantErr: fs.ErrNotExist},
		{name: "bundle missing", missing: "bundle", wantErr: fs.ErrNotExist},
		{name: "key of another SVID", key: issue(t, ca, "server").KeyPEM},
		{name: "bundle of another CA", bundle: otherCA.BundlePEM()},
		{name: "two URI SANs", cert: twoURIs.CertPEM, key: twoURIs.KeyPEM},
		{name: "SPIFFE ID without a path", cert: noPath.CertPEM, key: noPath.KeyPEM},
		{name: "leaf that is a CA", cert: issueTemplate(t, ca, caLeaf).CertPEM},
		{name: "expired", cert: issueTemplate(t, ca, expired).CertPEM},
		{
			name:    "certificate cut short",
			cert:    good.CertPEM[:len(good.CertPEM)/2],
			wantErr: identity.ErrMalformedPEM,
		},
		{
			name:    "garbage before the certificate",
			cert:    append([]byte("garbage\n"), good.CertPEM...),
			wantErr: identity.ErrMalformedPEM,
		},
		{
			name:    "second bundle certificate cut short",
			bundle:  append(ca.BundlePEM(), otherCA.BundlePEM()[:100]...),
			wantErr: identity.ErrMalformedPEM,
		},
		{name: "empty bundle", bundle: []byte{}, wantErr: identity.ErrMalformedPEM},
		{name: "leaf in the bundle", bundle: leafInBundle, wantErr: identity.ErrInvalidBundle},
		{
			name:    "two keys",
			key:     append(good.KeyPEM, issue(t, ca, "server").KeyPEM...),
			wantErr: identity.ErrMalformedPEM,
		},
		{name: "key in the certificate file", cert: good.KeyPEM, wantErr: identity.ErrMalformedPEM},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			files := identity.Files{
				Cert:   filepath.Join(dir, "svid.pem"),
				Key:    filepath.Join(dir, "svid.key"),
				Bundle: filepath.Join(dir, "bundle.pem"),
			}
			contents := map[string]struct {
				path string
				data []byte
			}{
				"cert":   {files.Cert, orDefault(tt.cert, good.CertPEM)},
				"key":    {files.Key, orDefault(tt.key, good.KeyPEM)},
				"bundle": {files.Bundle, orDefault(tt.bundle, ca.BundlePEM())},
			}
			for name, c := range contents {
				if name != tt.missing {
					writeAtomic(t, c.path, c.data)
				}
			}

			src, err := identity.NewFileSource(t.Context(), files, identity.FileOptions{})
			if err == nil {
				src.Close()
				t.Fatal("NewFileSource succeeded, want an error")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("NewFileSource error = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// orDefault returns data, or def when data is nil; an empty non-nil slice
// stands for an empty file.
func orDefault(data, def []byte) []byte {
	if data == nil {
		return def
	}
	return data
}

func TestFileSourceReloads(t *testing.T) {
	t.Parallel()
	p := newPKI(t, "server")
	var ev events
	src := newFileSource(t, p.files("server"), ev.options())
	before := serial(t, src)

	next := issue(t, p.ca, "server")
	writeCreds(t, p.files("server"), next)
	want := svidOf(t, next).Certificates[0].SerialNumber.String()
	eventually(t, "the new SVID", func() bool { return serial(t, src) == want })
	if before == want {
		t.Fatal("test issued the same serial twice")
	}
	if _, reloads := ev.counts(); reloads == 0 {
		t.Error("OnReload was not called")
	}

	otherCA := newCA(t)
	writeAtomic(t, p.files("server").Bundle, bundlePEM(p.ca, otherCA))
	eventually(t, "the new bundle", func() bool {
		bundle, err := src.GetX509BundleForTrustDomain(td)
		return err == nil && bundle.HasX509Authority(otherCA.Certificate())
	})
}

func TestFileSourceKeepsLastGood(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	otherCA := newCA(t)
	now := time.Now()
	expired := leafTemplate(serverID.String())
	expired.NotBefore, expired.NotAfter = now.Add(-2*time.Hour), now.Add(-time.Hour)

	type change func(t *testing.T, files identity.Files)
	writeCert := func(creds *devpki.Credentials) change {
		return func(t *testing.T, files identity.Files) {
			t.Helper()
			writeCreds(t, files, creds)
		}
	}
	tests := []struct {
		name    string
		change  change
		wantErr error
	}{
		{
			name: "certificate cut short",
			change: func(t *testing.T, files identity.Files) {
				t.Helper()
				cert := issue(t, ca, "server").CertPEM
				writeAtomic(t, files.Cert, cert[:len(cert)-40])
			},
			wantErr: identity.ErrMalformedPEM,
		},
		{
			name: "key that does not match",
			change: func(t *testing.T, files identity.Files) {
				t.Helper()
				writeAtomic(t, files.Key, issue(t, ca, "server").KeyPEM)
			},
		},
		{
			name:    "another workload",
			change:  writeCert(issue(t, ca, "client")),
			wantErr: identity.ErrIDChanged,
		},
		{name: "SVID from a CA outside the bundle", change: writeCert(issue(t, otherCA, "server"))},
		{name: "expired SVID", change: writeCert(issueTemplate(t, ca, expired))},
		{
			name: "certificate removed",
			change: func(t *testing.T, files identity.Files) {
				t.Helper()
				if err := os.Remove(files.Cert); err != nil {
					t.Fatal(err)
				}
			},
			wantErr: fs.ErrNotExist,
		},
		{
			name: "bundle garbled",
			change: func(t *testing.T, files identity.Files) {
				t.Helper()
				writeAtomic(t, files.Bundle, []byte("-----BEGIN CERTIFICATE-----\nAAAA\n"))
			},
			wantErr: identity.ErrMalformedPEM,
		},
		{
			name: "bundle emptied",
			change: func(t *testing.T, files identity.Files) {
				t.Helper()
				writeAtomic(t, files.Bundle, nil)
			},
			wantErr: identity.ErrMalformedPEM,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			files := devpki.WorkloadFiles(t.TempDir(), "server")
			writeAtomic(t, files.Bundle, ca.BundlePEM())
			if err := os.MkdirAll(filepath.Dir(files.Cert), 0o700); err != nil {
				t.Fatal(err)
			}
			writeCreds(t, files, issue(t, ca, "server"))
			var ev events
			src := newFileSource(t, files, ev.options())
			wantSerial := serial(t, src)

			tt.change(t, files)
			// Key and certificate are written one after the other, so an
			// error about a mismatch may come first.
			eventually(t, "the reload error", func() bool {
				err := ev.lastErr()
				return err != nil && (tt.wantErr == nil || errors.Is(err, tt.wantErr))
			})
			if got := serial(t, src); got != wantSerial {
				t.Errorf("serving serial %s after a bad change, want the last good %s", got, wantSerial)
			}
			bundle, err := src.GetX509BundleForTrustDomain(td)
			if err != nil || !bundle.Equal(ca.Bundle()) {
				t.Errorf("bundle changed after a bad change (error %v)", err)
			}
			if _, reloads := ev.counts(); reloads != 0 {
				t.Errorf("OnReload called %d times for a bad change", reloads)
			}

			// A good set written afterwards is picked up.
			next := issue(t, ca, "server")
			writeAtomic(t, files.Bundle, ca.BundlePEM())
			writeCreds(t, files, next)
			want := svidOf(t, next).Certificates[0].SerialNumber.String()
			eventually(t, "recovery", func() bool { return serial(t, src) == want })
		})
	}
}

func TestFileSourceReportsEachFailureOnce(t *testing.T) {
	t.Parallel()
	p := newPKI(t, "server")
	var ev events
	src := newFileSource(t, p.files("server"), ev.options())

	// An expired certificate's error names the current time, so it
	// differs on every poll. Writing key and certificate is not atomic, so
	// a mismatch may be reported first; only the final set counts.
	expired := leafTemplate(serverID.String())
	expired.NotBefore, expired.NotAfter = time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour)
	writeCreds(t, p.files("server"), issueTemplate(t, p.ca, expired))
	eventually(t, "the expiry error", func() bool {
		var invalid x509.CertificateInvalidError
		return errors.As(ev.lastErr(), &invalid) && invalid.Reason == x509.Expired
	})
	settled, _ := ev.counts()
	time.Sleep(30 * pollInterval)
	if n, _ := ev.counts(); n != settled {
		t.Errorf("OnError called %d more times for the same broken set, want none", n-settled)
	}

	if err := os.Remove(p.files("server").Key); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the read error", func() bool { return errors.Is(ev.lastErr(), fs.ErrNotExist) })
	time.Sleep(30 * pollInterval)
	if n, _ := ev.counts(); n != settled+1 {
		t.Errorf("OnError called %d times after a file went missing, want once", n-settled)
	}
	if _, err := src.GetX509SVID(); err != nil {
		t.Errorf("GetX509SVID: %v", err)
	}
}

func TestFileSourceAppliesNarrowerBundleAtOnce(t *testing.T) {
	t.Parallel()
	p := newPKI(t, "server")
	var ev events
	src := newFileSource(t, p.files("server"), ev.options())

	// The CA that signed our own SVID leaves the bundle. Its certificates
	// must stop being trusted even though our SVID now fails to chain.
	newRoot := newCA(t)
	writeAtomic(t, p.files("server").Bundle, newRoot.BundlePEM())
	eventually(t, "the narrower bundle", func() bool {
		bundle, err := src.GetX509BundleForTrustDomain(td)
		return err == nil && !bundle.HasX509Authority(p.ca.Certificate())
	})
	eventually(t, "the warning", func() bool { n, _ := ev.counts(); return n > 0 })
}

func TestFileSourceStops(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		stop func(src *identity.FileSource, cancel context.CancelFunc)
	}{
		{"Close", func(src *identity.FileSource, _ context.CancelFunc) {
			src.Close()
			src.Close()
		}},
		{"context ends", func(_ *identity.FileSource, cancel context.CancelFunc) {
			cancel()
			// Unlike Close, cancel does not wait; give the poller a few
			// intervals to notice.
			time.Sleep(20 * pollInterval)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := newPKI(t, "server")
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			var ev events
			src, err := identity.NewFileSource(ctx, p.files("server"), ev.options())
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			before := serial(t, src)

			tt.stop(src, cancel)
			writeCreds(t, p.files("server"), issue(t, p.ca, "server"))
			time.Sleep(30 * pollInterval)
			if got := serial(t, src); got != before {
				t.Errorf("a stopped source reloaded its SVID")
			}
			if errs, reloads := ev.counts(); errs+reloads != 0 {
				t.Errorf("a stopped source reported %d errors and %d reloads", errs, reloads)
			}
		})
	}
}

func TestFileSourceConcurrentUse(t *testing.T) {
	t.Parallel()
	p := newPKI(t, "server")
	src := newFileSource(t, p.files("server"), identity.FileOptions{Interval: time.Millisecond})

	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if svid, err := src.GetX509SVID(); err != nil || svid.ID != serverID {
					t.Errorf("GetX509SVID = %v, %v", svid, err)
					return
				}
				if _, err := src.GetX509BundleForTrustDomain(td); err != nil {
					t.Errorf("GetX509BundleForTrustDomain: %v", err)
					return
				}
			}
		})
	}
	for range 10 {
		next := issue(t, p.ca, "server")
		writeCreds(t, p.files("server"), next)
		want := svidOf(t, next).Certificates[0].SerialNumber.String()
		eventually(t, "the new SVID", func() bool { return serial(t, src) == want })
	}
	close(stop)
	wg.Wait()
}
