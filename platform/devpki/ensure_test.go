package devpki_test

import (
	"bytes"
	"crypto/x509"
	"errors"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"example.com/rampart/platform/devpki"
)

type fileState struct {
	Content string
	ModTime time.Time
	Mode    fs.FileMode
}

// snapshot records the content, modification time and mode of every file
// under dir, keyed by its path. It reads through an [os.Root] so that the
// walk cannot be led outside dir.
func snapshot(t *testing.T, dir string) map[string]fileState {
	t.Helper()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()

	fsys := root.FS()
	got := map[string]fileState{}
	err = fs.WalkDir(fsys, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		data, err := fs.ReadFile(fsys, name)
		if err != nil {
			return err
		}
		path := filepath.Join(dir, filepath.FromSlash(name))
		got[path] = fileState{string(data), info.ModTime(), info.Mode()}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func ensure(t *testing.T, dir string, workloads ...string) {
	t.Helper()
	if err := devpki.Ensure(dir, td, workloads...); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
}

// verifyWorkload checks that the files of name hold an SVID for it that
// chains to dir's bundle and has at least lifeLeft before it expires.
func verifyWorkload(t *testing.T, dir, name string, lifeLeft time.Duration) {
	t.Helper()
	files := devpki.WorkloadFiles(dir, name)
	svid, err := x509svid.Load(files.Cert, files.Key)
	if err != nil {
		t.Fatalf("loading SVID of %s: %v", name, err)
	}
	bundle, err := x509bundle.Load(td, files.Bundle)
	if err != nil {
		t.Fatalf("loading bundle: %v", err)
	}
	id, _, err := x509svid.Verify(svid.Certificates, bundle)
	if err != nil {
		t.Fatalf("SVID of %s does not verify against the bundle: %v", name, err)
	}
	if want := spiffeid.RequireFromSegments(td, name); id != want {
		t.Errorf("SVID of %s names %s, want %s", name, id, want)
	}
	if left := time.Until(svid.Certificates[0].NotAfter); left < lifeLeft {
		t.Errorf("SVID of %s expires in %v, want at least %v", name, left, lifeLeft)
	}
}

func TestEnsureCreates(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "pki")
	ensure(t, dir, "order", "user")

	for _, name := range []string{"order", "user"} {
		verifyWorkload(t, dir, name, devpki.SVIDLifetime-time.Minute)
	}
	ca, err := devpki.LoadCA(dir)
	if err != nil {
		t.Fatalf("LoadCA: %v", err)
	}
	bundle, err := os.ReadFile(filepath.Join(dir, "bundle.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(bundle, ca.BundlePEM()) {
		t.Error("bundle.pem does not hold the CA certificate")
	}
}

func TestEnsurePermissions(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "pki")
	ensure(t, dir, "order")

	want := map[string]fs.FileMode{
		dir:                                  fs.ModeDir | 0o700,
		filepath.Join(dir, "ca.key"):         0o600,
		filepath.Join(dir, "ca.pem"):         0o644,
		filepath.Join(dir, "bundle.pem"):     0o644,
		filepath.Join(dir, "order"):          fs.ModeDir | 0o700,
		filepath.Join(dir, "order/svid.key"): 0o600,
		filepath.Join(dir, "order/svid.pem"): 0o644,
	}
	if diff := cmp.Diff(want, modes(t, dir)); diff != "" {
		t.Errorf("file modes (-want +got):\n%s", diff)
	}
}

func TestEnsureIsIdempotent(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ensure(t, dir, "order", "user")
	before := snapshot(t, dir)

	ensure(t, dir, "order", "user")
	if diff := cmp.Diff(before, snapshot(t, dir)); diff != "" {
		t.Errorf("second run changed files (-before +after):\n%s", diff)
	}
}

func TestEnsureAddsWorkloadsAndKeepsOthers(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ensure(t, dir, "order")
	before := snapshot(t, dir)

	ensure(t, dir, "order", "payment")
	after := snapshot(t, dir)
	for path, state := range before {
		if diff := cmp.Diff(state, after[path]); diff != "" {
			t.Errorf("%s changed (-before +after):\n%s", path, diff)
		}
	}
	verifyWorkload(t, dir, "payment", devpki.SVIDLifetime-time.Minute)
}

func TestEnsureReissues(t *testing.T) {
	t.Parallel()
	now := time.Now()
	orderURI := &url.URL{Scheme: "spiffe", Host: td.Name(), Path: "/order"}
	valid := func(notBefore, notAfter time.Time) *x509.Certificate {
		return &x509.Certificate{
			URIs:                  []*url.URL{orderURI},
			NotBefore:             notBefore,
			NotAfter:              notAfter,
			KeyUsage:              x509.KeyUsageDigitalSignature,
			BasicConstraintsValid: true,
		}
	}
	twoURIs := valid(now.Add(-time.Hour), now.Add(time.Hour))
	twoURIs.URIs = append(twoURIs.URIs, &url.URL{Scheme: "spiffe", Host: td.Name(), Path: "/user"})

	// Each case changes the files of a freshly set up "order" workload.
	type change func(t *testing.T, ca *devpki.CA, files fileSet)
	tests := []struct {
		name   string
		change change
		want   bool
	}{
		{"untouched", func(t *testing.T, _ *devpki.CA, _ fileSet) { t.Helper() }, false},
		{"a full lifetime left", issued(valid(now.Add(-time.Minute), now.Add(24*time.Hour))), false},
		{"more than a third left", issued(valid(now.Add(-15*time.Hour), now.Add(9*time.Hour))), false},
		{"less than a third left", issued(valid(now.Add(-17*time.Hour), now.Add(7*time.Hour))), true},
		{"expired", issued(valid(now.Add(-48*time.Hour), now.Add(-24*time.Hour))), true},
		{"not yet valid", issued(valid(now.Add(time.Hour), now.Add(25*time.Hour))), true},
		{"two URI SANs", issued(twoURIs), true},
		{"another workload", func(t *testing.T, ca *devpki.CA, files fileSet) {
			t.Helper()
			files.write(t, mustIssue(t, ca, "user"))
		}, true},
		{"another CA", func(t *testing.T, _ *devpki.CA, files fileSet) {
			t.Helper()
			files.write(t, mustIssue(t, newCA(t), "order"))
		}, true},
		{"key of another SVID", func(t *testing.T, ca *devpki.CA, files fileSet) {
			t.Helper()
			writeTestFile(t, files.Key, mustIssue(t, ca, "order").KeyPEM)
		}, true},
		{"certificate missing", func(t *testing.T, _ *devpki.CA, files fileSet) {
			t.Helper()
			removeFile(t, files.Cert)
		}, true},
		{"key missing", func(t *testing.T, _ *devpki.CA, files fileSet) {
			t.Helper()
			removeFile(t, files.Key)
		}, true},
		{"certificate garbled", func(t *testing.T, _ *devpki.CA, files fileSet) {
			t.Helper()
			writeTestFile(t, files.Cert, []byte("-----BEGIN CERTIFICATE-----\nAAAA"))
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			ensure(t, dir, "order")
			ca, err := devpki.LoadCA(dir)
			if err != nil {
				t.Fatal(err)
			}
			files := fileSet(devpki.WorkloadFiles(dir, "order"))
			tt.change(t, ca, files)
			before := snapshot(t, dir)

			ensure(t, dir, "order")
			after := snapshot(t, dir)
			reissued := before[files.Cert] != after[files.Cert]
			if reissued != tt.want {
				t.Errorf("reissued = %v, want %v", reissued, tt.want)
			}
			verifyWorkload(t, dir, "order", devpki.SVIDLifetime/3)
		})
	}
}

func TestEnsureRestoresBundle(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ensure(t, dir, "order")
	want := snapshot(t, dir)[filepath.Join(dir, "bundle.pem")].Content
	writeTestFile(t, filepath.Join(dir, "bundle.pem"), newCA(t).BundlePEM())

	ensure(t, dir, "order")
	if got := snapshot(t, dir)[filepath.Join(dir, "bundle.pem")].Content; got != want {
		t.Errorf("bundle.pem = %q, want the CA certificate %q", got, want)
	}
}

func TestEnsureRefusesAnotherTrustDomain(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ensure(t, dir, "order")
	before := snapshot(t, dir)

	other := spiffeid.RequireTrustDomainFromString("other.test")
	if err := devpki.Ensure(dir, other, "order"); !errors.Is(err, devpki.ErrInvalidCA) {
		t.Errorf("Ensure for another trust domain error = %v, want ErrInvalidCA", err)
	}
	if diff := cmp.Diff(before, snapshot(t, dir)); diff != "" {
		t.Errorf("refused run changed files (-before +after):\n%s", diff)
	}
}

func TestEnsureRejectsBadNameBeforeWriting(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "pki")
	if err := devpki.Ensure(dir, td, "order", "../escape"); !errors.Is(err, devpki.ErrInvalidName) {
		t.Errorf("Ensure error = %v, want ErrInvalidName", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Ensure with a bad name created %s (stat error %v)", dir, err)
	}
}

func TestWorkloadFiles(t *testing.T) {
	t.Parallel()
	got := devpki.WorkloadFiles("pki", "order")
	want := fileSet{
		Cert:   filepath.Join("pki", "order", "svid.pem"),
		Key:    filepath.Join("pki", "order", "svid.key"),
		Bundle: filepath.Join("pki", "bundle.pem"),
	}
	if diff := cmp.Diff(want, fileSet(got)); diff != "" {
		t.Errorf("WorkloadFiles (-want +got):\n%s", diff)
	}
}

// fileSet mirrors identity.Files so that tests can hang helpers on it.
type fileSet struct{ Cert, Key, Bundle string }

func (f fileSet) write(t *testing.T, creds *devpki.Credentials) {
	t.Helper()
	writeTestFile(t, f.Cert, creds.CertPEM)
	writeTestFile(t, f.Key, creds.KeyPEM)
}

func issued(tmpl *x509.Certificate) func(*testing.T, *devpki.CA, fileSet) {
	return func(t *testing.T, ca *devpki.CA, files fileSet) {
		t.Helper()
		creds, err := ca.IssueTemplate(tmpl)
		if err != nil {
			t.Fatal(err)
		}
		files.write(t, creds)
	}
}

func mustIssue(t *testing.T, ca *devpki.CA, name string) *devpki.Credentials {
	t.Helper()
	creds, err := ca.Issue(name, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return creds
}

func removeFile(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}
