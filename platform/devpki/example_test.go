package devpki_test

import (
	"fmt"
	"io/fs"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"example.com/rampart/platform/devpki"
)

func ExampleCA_Issue() {
	ca, err := devpki.NewCA(spiffeid.RequireTrustDomainFromString("example.org"))
	if err != nil {
		log.Fatal(err)
	}
	creds, err := ca.Issue("order", time.Hour)
	if err != nil {
		log.Fatal(err)
	}
	svid, err := creds.SVID()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(svid.ID)
	// Output: spiffe://example.org/order
}

func ExampleEnsure() {
	dir, err := os.MkdirTemp("", "pki")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	td := spiffeid.RequireTrustDomainFromString("example.org")
	if err := devpki.Ensure(dir, td, "order", "user"); err != nil {
		log.Fatal(err)
	}
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, path)
			fmt.Println(filepath.ToSlash(rel))
		}
		return err
	})
	if err != nil {
		log.Fatal(err)
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
