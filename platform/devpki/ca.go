// Package devpki is a certificate authority for local development: it makes
// a self-signed root for one SPIFFE trust domain and issues X.509 SVIDs to
// the workloads that run on a developer's machine, so that mutual TLS is on
// from the first `make run` without SPIRE or any other infrastructure.
//
// Keys live unencrypted on disk. Nothing here belongs in production, where
// the SPIFFE Workload API (SPIRE, cert-manager's csi-driver-spiffe) issues
// the SVIDs that [example.com/rampart/platform/identity] reads.
package devpki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"example.com/rampart/platform/identity"
)

const (
	// CALifetime is how long a root made by [NewCA] stays valid.
	CALifetime = 365 * 24 * time.Hour
	// ClockSkew is how far in the past certificates start, so that a peer
	// whose clock runs a little behind still accepts a fresh certificate.
	ClockSkew = 5 * time.Minute

	caCertFile = "ca.pem"
	caKeyFile  = "ca.key"

	pemCertificate = "CERTIFICATE"
)

// Errors returned when a CA or a request to it is unusable.
var (
	ErrInvalidCA   = errors.New("devpki: invalid CA")
	ErrInvalidName = errors.New("devpki: invalid workload name")
)

// CA is a development root for one trust domain. It is safe for concurrent
// use: issuing only reads it.
type CA struct {
	td   spiffeid.TrustDomain
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// Credentials are an issued certificate and its private key, PEM encoded:
// the certificate alone (the root is not appended) and the key as PKCS#8.
type Credentials struct {
	CertPEM []byte
	KeyPEM  []byte
}

// NewCA makes a self-signed ECDSA P-256 root for td, valid for [CALifetime],
// that carries the trust domain's SPIFFE ID as its URI SAN and may sign only
// leaf certificates.
func NewCA(td spiffeid.TrustDomain) (*CA, error) {
	return newCA(td, CALifetime)
}

func newCA(td spiffeid.TrustDomain, lifetime time.Duration) (*CA, error) {
	if td.IsZero() {
		return nil, fmt.Errorf("%w: empty trust domain", ErrInvalidCA)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating CA key: %w", err)
	}

	now := time.Now()
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "Rampart development CA " + td.Name()},
		NotBefore:             now.Add(-ClockSkew),
		NotAfter:              now.Add(lifetime),
		URIs:                  []*url.URL{td.ID().URL()},
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("signing CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing CA certificate: %w", err)
	}
	return &CA{td: td, cert: cert, key: key}, nil
}

// LoadCA reads the root that [CA.Save] wrote to dir. It rejects a pair
// whose key does not match the certificate, and a certificate that is not a
// self-signed CA naming a trust domain in its only URI SAN.
func LoadCA(dir string) (*CA, error) {
	//nolint:gosec // G304: dir comes from the operator's configuration, not from a request.
	certPEM, err := os.ReadFile(filepath.Join(dir, caCertFile))
	if err != nil {
		return nil, fmt.Errorf("reading CA certificate: %w", err)
	}
	//nolint:gosec // G304: dir comes from the operator's configuration, not from a request.
	keyPEM, err := os.ReadFile(filepath.Join(dir, caKeyFile))
	if err != nil {
		return nil, fmt.Errorf("reading CA key: %w", err)
	}
	ca, err := parseCA(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("loading CA from %s: %w", dir, err)
	}
	return ca, nil
}

func parseCA(certPEM, keyPEM []byte) (*CA, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != pemCertificate {
		return nil, fmt.Errorf("%w: no PEM certificate", ErrInvalidCA)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidCA, err)
	}
	if !cert.IsCA || len(cert.URIs) != 1 {
		return nil, fmt.Errorf("%w: not a CA with one URI SAN", ErrInvalidCA)
	}
	if err := cert.CheckSignatureFrom(cert); err != nil {
		return nil, fmt.Errorf("%w: not self-signed: %w", ErrInvalidCA, err)
	}
	td, err := spiffeid.TrustDomainFromURI(cert.URIs[0])
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidCA, err)
	}

	block, _ = pem.Decode(keyPEM)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%w: no PEM PKCS#8 key", ErrInvalidCA)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidCA, err)
	}
	key, ok := parsed.(*ecdsa.PrivateKey)
	if !ok || !key.PublicKey.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("%w: key does not match certificate", ErrInvalidCA)
	}
	return &CA{td: td, cert: cert, key: key}, nil
}

// Save writes the root to dir as ca.pem and ca.key, creating dir with mode
// 0700 when it is missing. The key file is readable by its owner only. Each
// file is replaced atomically, so a reader never sees half of one.
func (ca *CA) Save(dir string) error {
	keyPEM, err := encodeKey(ca.key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating CA directory: %w", err)
	}
	if err := writeFile(filepath.Join(dir, caKeyFile), keyPEM, 0o600); err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, caCertFile), ca.BundlePEM(), 0o644)
}

// TrustDomain returns the trust domain the root signs for.
func (ca *CA) TrustDomain() spiffeid.TrustDomain { return ca.td }

// Certificate returns the root certificate. Callers must not modify it.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// BundlePEM returns the root certificate PEM encoded: the trust bundle that
// peers of this CA's workloads need.
func (ca *CA) BundlePEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: pemCertificate, Bytes: ca.cert.Raw})
}

// Bundle returns a new trust bundle for the CA's trust domain that holds
// this root only.
func (ca *CA) Bundle() *x509bundle.Bundle {
	return x509bundle.FromX509Authorities(ca.td, []*x509.Certificate{ca.cert})
}

// Issue signs an X.509 SVID for the workload name, valid for ttl from now
// (and [ClockSkew] before), but never past the root's own expiry. The leaf
// carries exactly one URI SAN, spiffe://<trust domain>/<name>, and no
// subject or DNS name, so that nothing but the SPIFFE ID can identify it.
// It is an ECDSA P-256 key good for signatures in TLS servers and clients,
// and it cannot sign certificates. A name must be a valid SPIFFE ID path
// without its leading slash, such as "order" or "team/order".
func (ca *CA) Issue(name string, ttl time.Duration) (*Credentials, error) {
	id, err := WorkloadID(ca.td, name)
	if err != nil {
		return nil, err
	}
	if ttl <= 0 {
		return nil, fmt.Errorf("issuing SVID for %s: lifetime %v is not positive", id, ttl)
	}

	now := time.Now()
	tmpl := &x509.Certificate{
		NotBefore:             now.Add(-ClockSkew),
		NotAfter:              now.Add(ttl),
		URIs:                  []*url.URL{id.URL()},
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{
			x509.ExtKeyUsageServerAuth,
			x509.ExtKeyUsageClientAuth,
		},
	}
	if tmpl.NotAfter.After(ca.cert.NotAfter) {
		tmpl.NotAfter = ca.cert.NotAfter
	}
	creds, err := ca.IssueTemplate(tmpl)
	if err != nil {
		return nil, fmt.Errorf("issuing SVID for %s: %w", id, err)
	}
	return creds, nil
}

// IssueTemplate signs tmpl with the root and a fresh ECDSA P-256 key,
// whatever the template says: it exists so that tests can make the
// certificates a verifier must refuse. A nil serial number gets a random
// one, and a template with neither NotBefore nor NotAfter is valid for an
// hour from [ClockSkew] ago. tmpl itself is not modified.
func (ca *CA) IssueTemplate(tmpl *x509.Certificate) (*Credentials, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating key: %w", err)
	}

	t := *tmpl
	if t.NotBefore.IsZero() && t.NotAfter.IsZero() {
		now := time.Now()
		t.NotBefore, t.NotAfter = now.Add(-ClockSkew), now.Add(time.Hour)
	}
	der, err := x509.CreateCertificate(rand.Reader, &t, ca.cert, key.Public(), ca.key)
	if err != nil {
		return nil, fmt.Errorf("signing certificate: %w", err)
	}

	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	return &Credentials{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: pemCertificate, Bytes: der}),
		KeyPEM:  keyPEM,
	}, nil
}

// WorkloadID returns the SPIFFE ID of the workload name in td, rejecting a
// name that is not a valid SPIFFE ID path (empty, with a leading or trailing
// slash, with "." or ".." segments, or with characters outside the spec).
func WorkloadID(td spiffeid.TrustDomain, name string) (spiffeid.ID, error) {
	id, err := spiffeid.FromPath(td, "/"+name)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("%w %q: %w", ErrInvalidName, name, err)
	}
	return id, nil
}

// SVID parses the credentials as an X.509 SVID, which fails unless the
// certificate meets the SPIFFE rules for a leaf and the key matches it.
func (c *Credentials) SVID() (*x509svid.SVID, error) {
	svid, err := x509svid.Parse(c.CertPEM, c.KeyPEM)
	if err != nil {
		return nil, fmt.Errorf("parsing credentials as SVID: %w", err)
	}
	return svid, nil
}

// IssueSVID issues credentials for the workload name, valid for ttl, and
// returns them as an X.509 SVID.
func (ca *CA) IssueSVID(name string, ttl time.Duration) (*x509svid.SVID, error) {
	creds, err := ca.Issue(name, ttl)
	if err != nil {
		return nil, err
	}
	return creds.SVID()
}

// Source returns an identity source holding a new SVID for the workload
// name, valid for ttl, that trusts this CA: a workload's identity without
// files, for tests and benchmarks.
func (ca *CA) Source(name string, ttl time.Duration) (identity.Source, error) {
	svid, err := ca.IssueSVID(name, ttl)
	if err != nil {
		return nil, err
	}
	return identity.NewStaticSource(svid, ca.Bundle()), nil
}

// TLSCertificate returns the credentials as a TLS certificate, whether or
// not they make a valid SVID.
func (c *Credentials) TLSCertificate() (tls.Certificate, error) {
	cert, err := tls.X509KeyPair(c.CertPEM, c.KeyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("parsing credentials as TLS certificate: %w", err)
	}
	return cert, nil
}

func encodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}
