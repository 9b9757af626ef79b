package devpki

import (
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

func TestEnsureReplacesExpiringCA(t *testing.T) {
	t.Parallel()
	td := spiffeid.RequireTrustDomainFromString("rampart.test")
	dir := t.TempDir()
	old, err := newCA(td, SVIDLifetime-time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Save(dir); err != nil {
		t.Fatal(err)
	}
	files := WorkloadFiles(dir, "order")
	if err := issueTo(old, "order", files); err != nil {
		t.Fatal(err)
	}

	if err := Ensure(dir, td, "order"); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	ca, err := LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if ca.Certificate().Equal(old.Certificate()) {
		t.Fatal("a CA that expires before the SVIDs it would sign was kept")
	}
	bundle, err := x509bundle.Load(td, files.Bundle)
	if err != nil {
		t.Fatal(err)
	}
	if !bundle.HasX509Authority(ca.Certificate()) || bundle.HasX509Authority(old.Certificate()) {
		t.Error("bundle.pem does not hold exactly the new CA")
	}
	svid, err := x509svid.Load(files.Cert, files.Key)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := x509svid.Verify(svid.Certificates, ca.Bundle()); err != nil {
		t.Errorf("SVID was not reissued by the new CA: %v", err)
	}
}
