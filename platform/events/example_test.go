package events_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/reflect/protoregistry"

	"example.com/rampart/platform/events"
	"example.com/rampart/platform/policy"
	"example.com/rampart/platform/txntoken"
	orderv1 "example.com/rampart/proto/order/v1"
)

func ExampleStreamConfig() {
	set, err := policy.Load(spiffeid.RequireTrustDomainFromString("rampart.local"),
		protoregistry.GlobalFiles)
	if err != nil {
		log.Fatal(err)
	}

	// What EnsureStream(ctx, js, set, "order") creates.
	cfg, err := events.StreamConfig(set, "order")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(cfg.Name, cfg.Subjects, cfg.Duplicates)

	// The gateway consumes events but publishes none.
	_, err = events.StreamConfig(set, "gateway")
	fmt.Println(errors.Is(err, events.ErrNoEvents))
	// Output:
	// EVENTS_ORDER [orders.cancelled orders.created] 2m0s
	// true
}

// verifier stands in for the service's transaction token verifier.
type verifier struct{}

func (verifier) VerifyAt(context.Context, string, time.Time) (*txntoken.Token, error) {
	return nil, errors.New("not in this example")
}

// charge is the payment workload's handler of OrderCreated. Its context
// carries the verified transaction token (txntoken.FromContext) and the
// message's span. It would charge the order's total, unless it held a
// payment for that order already: the same event may arrive twice.
func charge(context.Context, *orderv1.OrderCreated) error { return nil }

func ExampleHandle() {
	set, err := policy.Load(spiffeid.RequireTrustDomainFromString("rampart.local"),
		protoregistry.GlobalFiles)
	if err != nil {
		log.Fatal(err)
	}
	consumer, err := events.NewConsumer(events.ConsumerConfig{
		JetStream: js, // from jetstream.New(nc)
		Policy:    set,
		Workload:  "payment",
		Tokens:    verifier{},
	})
	if err != nil {
		log.Fatal(err)
	}

	err = events.Handle(consumer, charge)
	fmt.Println(err)

	// The policy lists no subscriber of OrderCancelled.
	err = events.Handle(consumer, func(context.Context, *orderv1.OrderCancelled) error {
		return nil
	})
	fmt.Println(errors.Is(err, policy.ErrCallerNotAllowed))

	// The service then calls consumer.Run(ctx) and the handler is live.

	// Output:
	// <nil>
	// true
}

// js stands for the service's JetStream connection; the example does not
// reach the point of using it.
var js = fakeJetStream{}
