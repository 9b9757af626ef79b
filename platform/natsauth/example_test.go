package natsauth_test

import (
	"fmt"
	"log"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/reflect/protoregistry"

	"example.com/rampart/platform/natsauth"
	"example.com/rampart/platform/policy"
)

// The payment workload publishes its own events and consumes one event of
// the order workload; that is all its NATS user may do.
func ExamplePermissions() {
	td := spiffeid.RequireTrustDomainFromString("rampart.local")
	set, err := policy.Load(td, protoregistry.GlobalFiles)
	if err != nil {
		log.Fatal(err)
	}
	perms, err := natsauth.Permissions(set, "payment")
	if err != nil {
		log.Fatal(err)
	}
	for _, subject := range perms.Publish.Allow {
		fmt.Println("publish  ", subject)
	}
	for _, subject := range perms.Subscribe.Allow {
		fmt.Println("subscribe", subject)
	}
	// Output:
	// publish   payments.failed
	// publish   payments.succeeded
	// publish   $JS.API.STREAM.CREATE.EVENTS_PAYMENT
	// publish   $JS.API.STREAM.UPDATE.EVENTS_PAYMENT
	// publish   $JS.API.CONSUMER.CREATE.EVENTS_ORDER.payment.orders.created
	// publish   $JS.API.CONSUMER.INFO.EVENTS_ORDER.payment
	// publish   $JS.API.CONSUMER.MSG.NEXT.EVENTS_ORDER.payment
	// publish   $JS.ACK.EVENTS_ORDER.payment.>
	// subscribe _INBOX_payment.>
}
