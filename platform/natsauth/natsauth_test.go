package natsauth_test

import (
	"context"
	"crypto/tls"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	"example.com/rampart/platform/devpki"
	"example.com/rampart/platform/events"
	"example.com/rampart/platform/identity"
	"example.com/rampart/platform/natsauth"
	orderv1 "example.com/rampart/proto/order/v1"
	paymentv1 "example.com/rampart/proto/payment/v1"
	moneyv1 "example.com/rampart/proto/rampart/money/v1"
	userv1 "example.com/rampart/proto/user/v1"
)

func TestPermissions(t *testing.T) {
	t.Parallel()
	set := loadPolicy(t)
	allow := func(subjects ...string) *server.SubjectPermission {
		return &server.SubjectPermission{Allow: subjects}
	}
	tests := []struct {
		workload string
		want     *server.Permissions
	}{
		{"user", &server.Permissions{
			Publish: allow("users.session_revoked",
				"$JS.API.STREAM.CREATE.EVENTS_USER", "$JS.API.STREAM.UPDATE.EVENTS_USER"),
			Subscribe: allow("_INBOX_user.>"),
		}},
		{"order", &server.Permissions{
			Publish: allow("orders.cancelled", "orders.created",
				"$JS.API.STREAM.CREATE.EVENTS_ORDER", "$JS.API.STREAM.UPDATE.EVENTS_ORDER",
				"$JS.API.CONSUMER.CREATE.EVENTS_PAYMENT.order.payments.failed",
				"$JS.API.CONSUMER.CREATE.EVENTS_PAYMENT.order.payments.succeeded",
				// order consumes all that payment publishes: any filter will do.
				"$JS.API.CONSUMER.CREATE.EVENTS_PAYMENT.order",
				"$JS.API.CONSUMER.INFO.EVENTS_PAYMENT.order",
				"$JS.API.CONSUMER.MSG.NEXT.EVENTS_PAYMENT.order",
				"$JS.ACK.EVENTS_PAYMENT.order.>"),
			Subscribe: allow("_INBOX_order.>"),
		}},
		{"payment", &server.Permissions{
			Publish: allow("payments.failed", "payments.succeeded",
				"$JS.API.STREAM.CREATE.EVENTS_PAYMENT", "$JS.API.STREAM.UPDATE.EVENTS_PAYMENT",
				// Not orders.cancelled, which the order stream also holds.
				"$JS.API.CONSUMER.CREATE.EVENTS_ORDER.payment.orders.created",
				"$JS.API.CONSUMER.INFO.EVENTS_ORDER.payment",
				"$JS.API.CONSUMER.MSG.NEXT.EVENTS_ORDER.payment",
				"$JS.ACK.EVENTS_ORDER.payment.>"),
			Subscribe: allow("_INBOX_payment.>"),
		}},
		{"gateway", &server.Permissions{
			Publish: allow(
				"$JS.API.CONSUMER.CREATE.EVENTS_USER.*.users.session_revoked",
				"$JS.API.CONSUMER.MSG.NEXT.EVENTS_USER.*"),
			Subscribe: allow("_INBOX_gateway.>"),
		}},
		{"batch-job", &server.Permissions{
			Publish:   &server.SubjectPermission{Deny: []string{">"}},
			Subscribe: allow("_INBOX_batch_job.>"),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.workload, func(t *testing.T) {
			t.Parallel()
			got, err := natsauth.Permissions(set, tt.workload)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Permissions(%q) (-want +got):\n%s", tt.workload, diff)
			}
		})
	}
}

func TestUsersAreNamedBySPIFFEID(t *testing.T) {
	t.Parallel()
	set := loadPolicy(t)
	users, err := natsauth.Users(set, "order", "payment")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, u := range users {
		names = append(names, u.Username)
		if u.Password != "" || u.Permissions == nil {
			t.Errorf("user %s: password %q, permissions %v; want none and some",
				u.Username, u.Password, u.Permissions)
		}
	}
	want := []string{"spiffe://rampart.local/order", "spiffe://rampart.local/payment"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("user names (-want +got):\n%s", diff)
	}
	if _, err := natsauth.Users(set, "Not A Name"); err == nil {
		t.Error("Users accepted a name that is no SPIFFE path segment")
	}
}

func TestServerOptions(t *testing.T) {
	t.Parallel()
	set := loadPolicy(t)
	ca, err := devpki.NewCA(td)
	if err != nil {
		t.Fatal(err)
	}
	src := source(t, ca, "nats")
	tests := []struct {
		name    string
		cfg     natsauth.ServerConfig
		wantErr error
	}{
		{
			"no workloads",
			natsauth.ServerConfig{Policy: set, Identity: src}, natsauth.ErrNoWorkloads,
		},
		{"no policy", natsauth.ServerConfig{Workloads: stackWorkloads, Identity: src}, nil},
		{"no identity", natsauth.ServerConfig{Policy: set, Workloads: stackWorkloads}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := natsauth.ServerOptions(tt.cfg)
			if err == nil {
				t.Fatal("ServerOptions accepted the configuration")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error = %v, want %v", err, tt.wantErr)
			}
		})
	}

	opts, err := natsauth.ServerOptions(natsauth.ServerConfig{
		Policy: set, Workloads: stackWorkloads, Identity: src,
	})
	if err != nil {
		t.Fatal(err)
	}
	type rules struct{ TLS, Verify, Map, JetStream bool }
	got := rules{opts.TLS, opts.TLSVerify, opts.TLSMap, opts.JetStream}
	if diff := cmp.Diff(rules{true, true, true, true}, got); diff != "" {
		t.Errorf("options (-want +got):\n%s", diff)
	}
	tls13 := opts.TLSConfig.MinVersion == tls.VersionTLS13
	if !tls13 || opts.NoAuthUser != "" || len(opts.Users) != 4 {
		t.Errorf("TLS minimum %x, no-auth user %q, %d users; want TLS 1.3, none, 4",
			opts.TLSConfig.MinVersion, opts.NoAuthUser, len(opts.Users))
	}
}

func TestServerRefusesClients(t *testing.T) {
	t.Parallel()
	f := newFixture(t, stackWorkloads...)
	otherCA, err := devpki.NewCA(td)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		tls     *tls.Config // nil for plaintext
		wantErr error       // when set, the refusal must match it
	}{
		{"plaintext", nil, nil},
		{
			// The client accepts any server, so that it is the server that refuses.
			"no certificate",
			//nolint:gosec // G402: the client must not be the side that ends the handshake.
			&tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true}, nil,
		},
		{
			// The client trusts both CAs, so that it is the server that refuses.
			"certificate from another CA naming order",
			identity.ClientTLSConfig(source(t, otherCA, "order", f.ca), natsID), nil,
		},
		{
			"certificate of a workload with no NATS user",
			identity.ClientTLSConfig(source(t, f.ca, "batch"), natsID), nats.ErrAuthorization,
		},
		{
			"TLS 1.2",
			func() *tls.Config {
				cfg := identity.ClientTLSConfig(source(t, f.ca, "order"), natsID)
				cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
				return cfg
			}(), nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			nc, err := f.dial("order", tt.tls, nil)
			if err == nil {
				nc.Close()
				t.Fatal("connection accepted, want it refused")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("connection error = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// TestEachWorkloadDoesItsPart runs the events package's own code as every
// workload of the stack, each connected with its own SVID: publishers
// create and update their streams and publish, consumers run their durable
// consumers and acknowledge, and the gateway replays revocations. Nothing
// may be refused.
func TestEachWorkloadDoesItsPart(t *testing.T) {
	t.Parallel()
	f := newFixture(t, stackWorkloads...)
	clients := map[string]*client{}
	for _, name := range stackWorkloads {
		clients[name] = f.connect(t, name)
	}
	for _, name := range []string{"user", "order", "payment"} {
		ensureStream(t, clients[name], f.set)
	}

	var paymentGot, orderGot, gatewayGot received
	paymentConsumer := f.consumer(t, clients["payment"])
	must(t, events.Handle(paymentConsumer, func(_ context.Context, e *orderv1.OrderCreated) error {
		paymentGot.add(e.GetOrderId())
		return nil
	}))
	orderConsumer := f.consumer(t, clients["order"])
	must(t, events.Handle(orderConsumer,
		func(_ context.Context, e *paymentv1.PaymentSucceeded) error {
			orderGot.add(e.GetPaymentId())
			return nil
		}))
	must(t, events.Handle(orderConsumer,
		func(_ context.Context, e *paymentv1.PaymentFailed) error {
			orderGot.add(e.GetPaymentId())
			return nil
		}))
	gatewayConsumer := f.consumer(t, clients["gateway"])
	must(t, events.Handle(gatewayConsumer, func(_ context.Context, e *userv1.SessionRevoked) error {
		gatewayGot.add(e.GetSessionId())
		return nil
	}))
	run(t, "payment", paymentConsumer.Run)
	run(t, "order", orderConsumer.Run)
	run(t, "gateway", func(ctx context.Context) error {
		return gatewayConsumer.RunReplay(ctx, events.ReplayConfig{Since: time.Hour})
	})

	now := timestamppb.Now()
	eur := &moneyv1.Money{CurrencyCode: "EUR", Amount: 1200}
	orderID, userID := uuid.NewString(), uuid.NewString()
	publish(t, clients["order"], f.set, &orderv1.OrderCreated{OrderId: orderID, UserId: userID,
		Total: eur, PaymentMethod: "tok_visa", CreateTime: now})
	publish(t, clients["order"], f.set, &orderv1.OrderCancelled{OrderId: orderID, UserId: userID,
		CancelTime: now})
	publish(t, clients["payment"], f.set, &paymentv1.PaymentSucceeded{PaymentId: uuid.NewString(),
		OrderId: orderID, UserId: userID, Amount: eur, SettleTime: now})
	publish(t, clients["payment"], f.set, &paymentv1.PaymentFailed{PaymentId: uuid.NewString(),
		OrderId: orderID, UserId: userID, Reason: "declined", SettleTime: now})
	publish(t, clients["user"], f.set, &userv1.SessionRevoked{SessionId: uuid.NewString(),
		UserId: userID, ExpireTime: now, Reason: userv1.RevocationReason_REVOCATION_REASON_LOGOUT})

	eventually(t, "every consumer got its events", func() bool {
		return len(paymentGot.all()) == 1 && len(orderGot.all()) == 2 && len(gatewayGot.all()) == 1
	})
	// Acknowledgements reach JetStream: nothing stays pending.
	for _, c := range []struct{ who, stream string }{
		{"payment", "EVENTS_ORDER"}, {"order", "EVENTS_PAYMENT"},
	} {
		eventually(t, c.who+"'s acknowledgements", func() bool {
			cons, err := clients[c.who].js.Consumer(t.Context(), c.stream, c.who)
			if err != nil {
				t.Fatalf("%s reading its consumer: %v", c.who, err)
			}
			info := cons.CachedInfo()
			return info.NumAckPending == 0 && info.NumPending == 0 && info.AckFloor.Consumer > 0
		})
	}
	for _, c := range clients {
		c.noRefusals(t)
	}
	if diff := cmp.Diff([]string{orderID}, paymentGot.all()); diff != "" {
		t.Errorf("orders payment got (-want +got):\n%s", diff)
	}
}

func (f *fixture) consumer(t *testing.T, c *client) *events.Consumer {
	t.Helper()
	cons, err := events.NewConsumer(events.ConsumerConfig{
		JetStream: c.js, Policy: f.set, Workload: c.name, Tokens: acceptAll{},
	})
	if err != nil {
		t.Fatal(err)
	}
	return cons
}

// run runs fn until the test ends.
func run(t *testing.T, what string, fn func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s: %v", what, err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("%s did not stop", what)
		}
	})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestWorkloadsAreRefusedTheRightsOfOthers tries, as each workload, what
// the policy gives to another or to none, against the server of the stack
// with every stream and durable consumer in place. The server must refuse
// each attempt by name.
func TestWorkloadsAreRefusedTheRightsOfOthers(t *testing.T) {
	t.Parallel()
	f := newFixture(t, stackWorkloads...)
	setup := map[string]*client{}
	for _, name := range []string{"user", "order", "payment"} {
		setup[name] = f.connect(t, name)
		ensureStream(t, setup[name], f.set)
	}
	durable(t, setup["payment"], "EVENTS_ORDER", "orders.created")
	durable(t, setup["order"], "EVENTS_PAYMENT", "payments.succeeded", "payments.failed")

	pull := `{"batch":1,"expires":100000000}`
	const paymentsNext = "$JS.API.CONSUMER.MSG.NEXT.EVENTS_ORDER.payment"
	tests := []struct {
		name    string
		as      string
		attempt func(ctx context.Context, c *client) error
		refused string // the subject, or its start, that the server refuses
	}{
		{"payment publishes an order event", "payment",
			publishOn("orders.created"), "orders.created"},
		{"user publishes a payment event", "user",
			publishOn("payments.succeeded"), "payments.succeeded"},
		{"gateway publishes a revocation", "gateway", publishOn("users.session_revoked"),
			"users.session_revoked"},
		{"order publishes into payment's inbox", "order",
			publishOn("_INBOX_payment.x"), "_INBOX_payment.x"},
		{"order subscribes to its own event subject", "order",
			subscribe("orders.created"), "orders.created"},
		{"order listens on payment's inbox", "order",
			subscribe("_INBOX_payment.>"), "_INBOX_payment.>"},
		{"order reads payment's consumer", "order", func(ctx context.Context, c *client) error {
			_, err := c.js.Consumer(ctx, "EVENTS_ORDER", "payment")
			return err
		}, "$JS.API.CONSUMER.INFO.EVENTS_ORDER.payment"},
		{"order pulls from payment's consumer", "order", func(ctx context.Context, c *client) error {
			_, err := c.nc.RequestWithContext(ctx, paymentsNext, []byte(pull))
			return err
		}, paymentsNext},
		{"order acknowledges for payment", "order",
			publishOn("$JS.ACK.EVENTS_ORDER.payment.1.1.1.1.0"), "$JS.ACK.EVENTS_ORDER.payment."},
		{"payment filters on an event it may not consume", "payment", createConsumer("EVENTS_ORDER",
			jetstream.ConsumerConfig{Durable: "payment", FilterSubject: "orders.cancelled"}),
			"$JS.API.CONSUMER.CREATE.EVENTS_ORDER.payment.orders.cancelled"},
		{"payment consumes the order stream unfiltered", "payment", createConsumer("EVENTS_ORDER",
			jetstream.ConsumerConfig{Durable: "payment"}),
			"$JS.API.CONSUMER.CREATE.EVENTS_ORDER.payment"},
		{"payment creates a consumer named order", "payment", createConsumer("EVENTS_ORDER",
			jetstream.ConsumerConfig{Durable: "order", FilterSubject: "orders.created"}),
			"$JS.API.CONSUMER.CREATE.EVENTS_ORDER.order.orders.created"},
		{"order consumes the user stream", "order", createConsumer("EVENTS_USER",
			jetstream.ConsumerConfig{Durable: "order", FilterSubject: "users.session_revoked"}),
			"$JS.API.CONSUMER.CREATE.EVENTS_USER.order"},
		{"gateway replays order events", "gateway", replay("EVENTS_ORDER", "orders.created"),
			"$JS.API.CONSUMER.CREATE.EVENTS_ORDER."},
		{"gateway replays the user stream unfiltered", "gateway", replay("EVENTS_USER"),
			"$JS.API.CONSUMER.CREATE.EVENTS_USER."},
		{"gateway deletes a consumer on the user stream", "gateway",
			func(ctx context.Context, c *client) error {
				return c.js.DeleteConsumer(ctx, "EVENTS_USER", "gateway_x_1")
			}, "$JS.API.CONSUMER.DELETE.EVENTS_USER.gateway_x_1"},
		{"order changes payment's stream", "order", func(ctx context.Context, c *client) error {
			_, err := c.js.UpdateStream(ctx, jetstream.StreamConfig{Name: "EVENTS_PAYMENT",
				Subjects: []string{"payments.>"}})
			return err
		}, "$JS.API.STREAM.UPDATE.EVENTS_PAYMENT"},
		{"order deletes its own stream", "order", func(ctx context.Context, c *client) error {
			return c.js.DeleteStream(ctx, "EVENTS_ORDER")
		}, "$JS.API.STREAM.DELETE.EVENTS_ORDER"},
		{"order purges its own stream", "order", func(ctx context.Context, c *client) error {
			_, err := c.nc.RequestWithContext(ctx, "$JS.API.STREAM.PURGE.EVENTS_ORDER", nil)
			return err
		}, "$JS.API.STREAM.PURGE.EVENTS_ORDER"},
		{"order lists the streams", "order", func(ctx context.Context, c *client) error {
			streams := c.js.ListStreams(ctx)
			for range streams.Info() {
			}
			return streams.Err()
		}, "$JS.API.STREAM.LIST"},
		{"order reads the account", "order", func(ctx context.Context, c *client) error {
			_, err := c.js.AccountInfo(ctx)
			return err
		}, "$JS.API.INFO"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := f.connect(t, tt.as)
			// A refused request gets no answer: stop waiting for one once
			// the server has said why.
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan struct{})
			go func() {
				defer close(done)
				_ = tt.attempt(ctx, c)
			}()
			eventually(t, "the refusal of "+tt.refused, func() bool {
				return c.refused(tt.refused)
			})
			cancel()
			<-done
		})
	}
}

func publishOn(subject string) func(context.Context, *client) error {
	return func(_ context.Context, c *client) error {
		if err := c.nc.Publish(subject, []byte("{}")); err != nil {
			return err
		}
		return c.nc.Flush()
	}
}

func subscribe(subject string) func(context.Context, *client) error {
	return func(_ context.Context, c *client) error {
		if _, err := c.nc.SubscribeSync(subject); err != nil {
			return err
		}
		return c.nc.Flush()
	}
}

func createConsumer(
	stream string, cfg jetstream.ConsumerConfig,
) func(context.Context, *client) error {
	return func(ctx context.Context, c *client) error {
		_, err := c.js.CreateOrUpdateConsumer(ctx, stream, cfg)
		return err
	}
}

// replay creates an ordered consumer as events.Consumer.RunReplay does.
func replay(stream string, subjects ...string) func(context.Context, *client) error {
	return func(ctx context.Context, c *client) error {
		_, err := c.js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{
			FilterSubjects: subjects,
			NamePrefix:     c.name + "_x",
			DeliverPolicy:  jetstream.DeliverAllPolicy,
		})
		return err
	}
}

// durable creates c's durable consumer on stream, as events.Consumer does.
func durable(t *testing.T, c *client, stream string, subjects ...string) jetstream.Consumer {
	t.Helper()
	cfg := jetstream.ConsumerConfig{Durable: c.name, AckPolicy: jetstream.AckExplicitPolicy}
	if len(subjects) == 1 {
		cfg.FilterSubject = subjects[0]
	} else {
		cfg.FilterSubjects = subjects
	}
	cons, err := c.js.CreateOrUpdateConsumer(t.Context(), stream, cfg)
	if err != nil {
		t.Fatalf("%s creating its consumer on %s: %v", c.name, stream, err)
	}
	return cons
}

// TestOrderCannotReadPaymentsConsumer has order try to take the message
// waiting in payment's consumer, and checks that payment then receives it
// as a first delivery.
func TestOrderCannotReadPaymentsConsumer(t *testing.T) {
	t.Parallel()
	f := newFixture(t, stackWorkloads...)
	order, payment := f.connect(t, "order"), f.connect(t, "payment")
	ensureStream(t, order, f.set)
	cons := durable(t, payment, "EVENTS_ORDER", "orders.created")
	publish(t, order, f.set, &orderv1.OrderCreated{OrderId: uuid.NewString()})

	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	msg, err := order.nc.RequestWithContext(ctx, "$JS.API.CONSUMER.MSG.NEXT.EVENTS_ORDER.payment",
		[]byte(`{"batch":1,"no_wait":true}`))
	if err == nil {
		t.Fatalf("order pulled from payment's consumer: %q %q", msg.Subject, msg.Data)
	}
	eventually(t, "the refusal", func() bool {
		return order.refused("$JS.API.CONSUMER.MSG.NEXT.EVENTS_ORDER.payment")
	})

	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var delivered []uint64
	for m := range batch.Messages() {
		meta, err := m.Metadata()
		if err != nil {
			t.Fatal(err)
		}
		delivered = append(delivered, meta.NumDelivered)
		must(t, m.Ack())
	}
	if diff := cmp.Diff([]uint64{1}, delivered); diff != "" {
		t.Errorf("payment's deliveries (-want +got):\n%s", diff)
	}
	payment.noRefusals(t)
}

// TestWorkloadWithoutEventsPublishesNothing checks the one user whose
// allow list would be empty, which NATS would read as no restriction.
func TestWorkloadWithoutEventsPublishesNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "batch")
	c := f.connect(t, "batch")
	for _, subject := range []string{"orders.created", "$JS.API.INFO", "anything"} {
		if err := publishOn(subject)(t.Context(), c); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the refusal of "+subject, func() bool { return c.refused(subject) })
	}
}
