package devpki_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"example.com/rampart/platform/devpki"
)

var td = spiffeid.RequireTrustDomainFromString("rampart.test")

func newCA(t *testing.T) *devpki.CA {
	t.Helper()
	ca, err := devpki.NewCA(td)
	if err != nil {
		t.Fatalf("NewCA: %v", err)
	}
	return ca
}

func parseCert(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	block, rest := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" || len(rest) != 0 {
		t.Fatalf("want exactly one PEM certificate, got %q", certPEM)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("parsing certificate: %v", err)
	}
	return cert
}

func uris(cert *x509.Certificate) []string {
	var out []string
	for _, u := range cert.URIs {
		out = append(out, u.String())
	}
	return out
}

func TestNewCA(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	cert := ca.Certificate()

	if err := cert.CheckSignatureFrom(cert); err != nil {
		t.Errorf("CA is not self-signed: %v", err)
	}
	if !cert.IsCA || !cert.BasicConstraintsValid || !cert.MaxPathLenZero {
		t.Errorf("IsCA=%v BasicConstraintsValid=%v MaxPathLenZero=%v, want all true",
			cert.IsCA, cert.BasicConstraintsValid, cert.MaxPathLenZero)
	}
	if want := x509.KeyUsageCertSign | x509.KeyUsageCRLSign; cert.KeyUsage != want {
		t.Errorf("KeyUsage = %v, want %v", cert.KeyUsage, want)
	}
	if diff := cmp.Diff([]string{"spiffe://rampart.test"}, uris(cert)); diff != "" {
		t.Errorf("URI SANs (-want +got):\n%s", diff)
	}
	key, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || key.Curve != elliptic.P256() {
		t.Errorf("public key = %T, want ECDSA P-256", cert.PublicKey)
	}
	if got := cert.NotAfter.Sub(cert.NotBefore); got != devpki.CALifetime+devpki.ClockSkew {
		t.Errorf("lifetime = %v, want %v", got, devpki.CALifetime+devpki.ClockSkew)
	}
	if ca.TrustDomain() != td {
		t.Errorf("TrustDomain() = %v, want %v", ca.TrustDomain(), td)
	}
	if got := ca.Bundle().X509Authorities(); len(got) != 1 || !got[0].Equal(cert) {
		t.Errorf("Bundle() holds %d authorities, want the CA alone", len(got))
	}
	if got := parseCert(t, ca.BundlePEM()); !got.Equal(cert) {
		t.Error("BundlePEM() does not hold the CA certificate")
	}
}

func TestNewCARejectsEmptyTrustDomain(t *testing.T) {
	t.Parallel()
	if _, err := devpki.NewCA(spiffeid.TrustDomain{}); !errors.Is(err, devpki.ErrInvalidCA) {
		t.Errorf("NewCA(zero) error = %v, want ErrInvalidCA", err)
	}
}

func TestIssue(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	before := time.Now()
	creds, err := ca.Issue("team/order", time.Hour)
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	leaf := parseCert(t, creds.CertPEM)

	if diff := cmp.Diff([]string{"spiffe://rampart.test/team/order"}, uris(leaf)); diff != "" {
		t.Errorf("URI SANs (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(pkix.Name{}.String(), leaf.Subject.String()); diff != "" {
		t.Errorf("subject must be empty (-want +got):\n%s", diff)
	}
	if n := len(leaf.DNSNames) + len(leaf.EmailAddresses) + len(leaf.IPAddresses); n != 0 {
		t.Errorf("leaf has %d DNS, email or IP SANs, want none", n)
	}
	if leaf.IsCA || !leaf.BasicConstraintsValid {
		t.Errorf("IsCA=%v BasicConstraintsValid=%v, want a non-CA leaf", leaf.IsCA,
			leaf.BasicConstraintsValid)
	}
	if leaf.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("KeyUsage = %v, want digitalSignature only", leaf.KeyUsage)
	}
	wantEKU := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	if diff := cmp.Diff(wantEKU, leaf.ExtKeyUsage); diff != "" {
		t.Errorf("ExtKeyUsage (-want +got):\n%s", diff)
	}
	if key, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || key.Curve != elliptic.P256() {
		t.Errorf("public key = %T, want ECDSA P-256", leaf.PublicKey)
	}
	if skew := before.Sub(leaf.NotBefore); skew < time.Minute || skew > devpki.ClockSkew+time.Minute {
		t.Errorf("NotBefore is %v before issuance, want about %v", skew, devpki.ClockSkew)
	}
	if got := leaf.NotAfter.Sub(before); got < 59*time.Minute || got > 61*time.Minute {
		t.Errorf("NotAfter is %v after issuance, want about an hour", got)
	}

	svid, err := creds.SVID()
	if err != nil {
		t.Fatalf("SVID: %v", err)
	}
	id, _, err := x509svid.Verify(svid.Certificates, ca.Bundle())
	if err != nil {
		t.Fatalf("issued SVID does not verify against the CA bundle: %v", err)
	}
	if got, want := id.String(), "spiffe://rampart.test/team/order"; got != want {
		t.Errorf("verified ID = %s, want %s", got, want)
	}
	if _, err := creds.TLSCertificate(); err != nil {
		t.Errorf("TLSCertificate: %v", err)
	}
}

func TestIssueNeverOutlivesCA(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	creds, err := ca.Issue("order", 2*devpki.CALifetime)
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	if got, want := parseCert(t, creds.CertPEM).NotAfter, ca.Certificate().NotAfter; !got.Equal(want) {
		t.Errorf("NotAfter = %v, want the CA's %v", got, want)
	}
}

func TestIssueRejects(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	tests := []struct {
		name     string
		workload string
		ttl      time.Duration
		want     error
	}{
		{"empty name", "", time.Hour, devpki.ErrInvalidName},
		{"leading slash", "/order", time.Hour, devpki.ErrInvalidName},
		{"trailing slash", "order/", time.Hour, devpki.ErrInvalidName},
		{"dot-dot segment", "team/../order", time.Hour, devpki.ErrInvalidName},
		{"dot-dot alone", "..", time.Hour, devpki.ErrInvalidName},
		{"character outside the spec", "order?x=1", time.Hour, devpki.ErrInvalidName},
		{"zero lifetime", "order", 0, nil},
		{"negative lifetime", "order", -time.Hour, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			creds, err := ca.Issue(tt.workload, tt.ttl)
			if err == nil {
				t.Fatalf("Issue(%q, %v) = %s, want an error", tt.workload, tt.ttl, creds.CertPEM)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("Issue(%q, %v) error = %v, want %v", tt.workload, tt.ttl, err, tt.want)
			}
		})
	}
}

func TestIssueTemplate(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "spiffe://rampart.test/order"},
		DNSNames:              []string{"order"},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	orig := *tmpl
	before := time.Now()
	creds, err := ca.IssueTemplate(tmpl)
	if err != nil {
		t.Fatalf("IssueTemplate: %v", err)
	}

	if diff := cmp.Diff(orig, *tmpl); diff != "" {
		t.Errorf("template was modified (-before +after):\n%s", diff)
	}
	cert := parseCert(t, creds.CertPEM)
	if err := cert.CheckSignatureFrom(ca.Certificate()); err != nil {
		t.Errorf("not signed by the CA: %v", err)
	}
	if !cert.IsCA || cert.Subject.CommonName != orig.Subject.CommonName {
		t.Error("the template's content was not kept as given")
	}
	if cert.SerialNumber == nil || cert.SerialNumber.Sign() <= 0 {
		t.Errorf("serial number = %v, want a positive random one", cert.SerialNumber)
	}
	if !cert.NotBefore.Before(before) || cert.NotAfter.Sub(before) > time.Hour {
		t.Errorf("validity %v to %v, want the default hour", cert.NotBefore, cert.NotAfter)
	}
}

func TestSaveAndLoadCA(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	dir := filepath.Join(t.TempDir(), "pki")
	if err := ca.Save(dir); err != nil {
		t.Fatalf("Save: %v", err)
	}

	loaded, err := devpki.LoadCA(dir)
	if err != nil {
		t.Fatalf("LoadCA: %v", err)
	}
	if !loaded.Certificate().Equal(ca.Certificate()) || loaded.TrustDomain() != td {
		t.Error("loaded CA differs from the saved one")
	}
	creds, err := loaded.Issue("order", time.Hour)
	if err != nil {
		t.Fatalf("Issue from loaded CA: %v", err)
	}
	if err := parseCert(t, creds.CertPEM).CheckSignatureFrom(ca.Certificate()); err != nil {
		t.Errorf("loaded CA signs with another key: %v", err)
	}

	wantModes := map[string]fs.FileMode{
		dir:                          fs.ModeDir | 0o700,
		filepath.Join(dir, "ca.key"): 0o600,
		filepath.Join(dir, "ca.pem"): 0o644,
	}
	if diff := cmp.Diff(wantModes, modes(t, dir)); diff != "" {
		t.Errorf("file modes (-want +got):\n%s", diff)
	}
}

func TestLoadCARejects(t *testing.T) {
	t.Parallel()
	ca, other := newCA(t), newCA(t)
	leaf, err := ca.Issue("order", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	caKey := readSaved(t, ca, "ca.key")
	otherKey := readSaved(t, other, "ca.key")
	noURI, err := ca.IssueTemplate(&x509.Certificate{IsCA: true, BasicConstraintsValid: true})
	if err != nil {
		t.Fatal(err)
	}
	intermediate, err := ca.IssueTemplate(&x509.Certificate{
		IsCA:                  true,
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{td.ID().URL()},
	})
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		cert    []byte
		key     []byte
		wantErr error
	}{
		{"missing files", nil, nil, fs.ErrNotExist},
		{"key of another CA", ca.BundlePEM(), otherKey, devpki.ErrInvalidCA},
		{"leaf as CA", leaf.CertPEM, leaf.KeyPEM, devpki.ErrInvalidCA},
		{"CA without trust domain", noURI.CertPEM, noURI.KeyPEM, devpki.ErrInvalidCA},
		{"not self-signed", intermediate.CertPEM, intermediate.KeyPEM, devpki.ErrInvalidCA},
		{"garbage certificate", []byte("not PEM"), caKey, devpki.ErrInvalidCA},
		{"garbage key", ca.BundlePEM(), []byte("not PEM"), devpki.ErrInvalidCA},
		{"certificate as key", ca.BundlePEM(), ca.BundlePEM(), devpki.ErrInvalidCA},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			if tt.cert != nil {
				writeTestFile(t, filepath.Join(dir, "ca.pem"), tt.cert)
				writeTestFile(t, filepath.Join(dir, "ca.key"), tt.key)
			}
			if _, err := devpki.LoadCA(dir); !errors.Is(err, tt.wantErr) {
				t.Errorf("LoadCA error = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func readSaved(t *testing.T, ca *devpki.CA, name string) []byte {
	t.Helper()
	dir := t.TempDir()
	if err := ca.Save(dir); err != nil {
		t.Fatalf("Save: %v", err)
	}
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func writeTestFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// modes returns the permission bits of dir and everything under it.
func modes(t *testing.T, dir string) map[string]fs.FileMode {
	t.Helper()
	got := map[string]fs.FileMode{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		got[path] = info.Mode() & (fs.ModeDir | fs.ModePerm)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}
