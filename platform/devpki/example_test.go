package devpki_test

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"example.com/rampart/platform/devpki"
)

func ExampleCA_Issue() {
	ca, err := devpki.NewCA(spiffeid.RequireTrustDomainFromString("example.org"))
	if err != nil {
		panic(err)
	}
	creds, err := ca.Issue("order", time.Hour)
	if err != nil {
		panic(err)
	}
	svid, err := creds.SVID()
	if err != nil {
		panic(err)
	}
	fmt.Println(svid.ID)
	// Output: spiffe://example.org/order
}

func ExampleEnsure() {
	dir, err := os.MkdirTemp("", "pki")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)

	td := spiffeid.RequireTrustDomainFromString("example.org")
	if err := devpki.Ensure(dir, td, "order", "user"); err != nil {
		panic(err)
	}
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, path)
			fmt.Println(filepath.ToSlash(rel))
		}
		return err
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(devpki.WorkloadFiles("pki", "order").Cert)
	// Output:
	// bundle.pem
	// ca.key
	// ca.pem
	// order/svid.key
	// order/svid.pem
	// user/svid.key
	// user/svid.pem
	// pki/order/svid.pem
}
