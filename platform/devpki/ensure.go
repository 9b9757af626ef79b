package devpki

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"example.com/rampart/platform/identity"
)

// SVIDLifetime is the lifetime of the SVIDs that [Ensure] issues.
const SVIDLifetime = 24 * time.Hour

const bundleFile = "bundle.pem"

// WorkloadFiles returns where [Ensure] keeps the SVID of the workload name
// under dir: <dir>/<name>/svid.pem and svid.key, with the trust bundle
// shared by all workloads at <dir>/bundle.pem.
func WorkloadFiles(dir, name string) identity.Files {
	return identity.Files{
		Cert:   filepath.Join(dir, name, "svid.pem"),
		Key:    filepath.Join(dir, name, "svid.key"),
		Bundle: filepath.Join(dir, bundleFile),
	}
}

// Ensure brings dir to a working development PKI for td and the named
// workloads, touching only what needs it, so that running it again changes
// nothing. It creates the root (ca.pem, ca.key) when either file is missing
// and replaces one that expires within [SVIDLifetime]; it writes bundle.pem
// when its content differs from the root; and it issues an SVID to each
// workload, at the paths of [WorkloadFiles], when the present one is
// missing, unreadable, not for that workload, not signed by the root, not
// valid now, or within the last third of its lifetime. It refuses a root
// made for another trust domain rather than overwrite it. Directories are
// created with mode 0700 and private keys with 0600.
func Ensure(dir string, td spiffeid.TrustDomain, workloads ...string) error {
	ids := make([]spiffeid.ID, len(workloads))
	for i, name := range workloads {
		id, err := WorkloadID(td, name)
		if err != nil {
			return fmt.Errorf("preparing development PKI: %w", err)
		}
		ids[i] = id
	}

	ca, err := ensureCA(dir, td)
	if err != nil {
		return fmt.Errorf("preparing development CA: %w", err)
	}
	if err := writeIfChanged(filepath.Join(dir, bundleFile), ca.BundlePEM(), 0o644); err != nil {
		return fmt.Errorf("writing trust bundle: %w", err)
	}

	for i, name := range workloads {
		files := WorkloadFiles(dir, name)
		if current(ca, files, ids[i], time.Now()) {
			continue
		}
		if err := issueTo(ca, name, files); err != nil {
			return fmt.Errorf("preparing SVID for %s: %w", ids[i], err)
		}
	}
	return nil
}

// ensureCA loads the root in dir, or makes and saves a new one when there
// is none or the present one is about to outlive the SVIDs it signs.
func ensureCA(dir string, td spiffeid.TrustDomain) (*CA, error) {
	ca, err := LoadCA(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, err
	case ca.td != td:
		return nil, fmt.Errorf("%w: %s holds a CA for trust domain %q, not %q",
			ErrInvalidCA, dir, ca.td.Name(), td.Name())
	case time.Until(ca.cert.NotAfter) > SVIDLifetime:
		return ca, nil
	}

	ca, err = NewCA(td)
	if err != nil {
		return nil, err
	}
	if err := ca.Save(dir); err != nil {
		return nil, err
	}
	return ca, nil
}

// current reports whether files hold an SVID for id that ca signed, that is
// valid at now and that has more than a third of its lifetime left.
func current(ca *CA, files identity.Files, id spiffeid.ID, now time.Time) bool {
	svid, err := x509svid.Load(files.Cert, files.Key)
	if err != nil || svid.ID != id {
		return false
	}
	_, _, err = x509svid.Verify(svid.Certificates, ca.Bundle(), x509svid.WithTime(now))
	if err != nil {
		return false
	}
	leaf := svid.Certificates[0]
	lifetime := leaf.NotAfter.Sub(leaf.NotBefore)
	return leaf.NotAfter.Sub(now) > lifetime/3
}

// issueTo writes a new SVID for name to files, the key before the
// certificate, each replaced atomically.
func issueTo(ca *CA, name string, files identity.Files) error {
	creds, err := ca.Issue(name, SVIDLifetime)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(files.Cert), 0o700); err != nil {
		return fmt.Errorf("creating SVID directory: %w", err)
	}
	if err := writeFile(files.Key, creds.KeyPEM, 0o600); err != nil {
		return err
	}
	return writeFile(files.Cert, creds.CertPEM, 0o644)
}

// writeIfChanged writes data to path unless the file already holds exactly
// that, so that an unchanged file keeps its modification time.
func writeIfChanged(path string, data []byte, perm fs.FileMode) error {
	//nolint:gosec // G304: path lies under the operator's configured directory, not a request's.
	old, err := os.ReadFile(path)
	if err == nil && bytes.Equal(old, data) {
		return nil
	}
	return writeFile(path, data, perm)
}

// writeFile replaces path with data through a temporary file in the same
// directory and a rename, so that a concurrent reader sees either the old
// content or the new, never a mix.
func writeFile(path string, data []byte, perm fs.FileMode) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			// Best-effort cleanup of a temporary file after a failed write: err already says
			// what failed, and the file may be closed already.
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()

	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
