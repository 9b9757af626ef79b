package events

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"buf.build/go/protovalidate"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoregistry"

	"example.com/rampart/platform/policy"
	"example.com/rampart/platform/txntoken"
	orderv1 "example.com/rampart/proto/order/v1"
)

const fuzzToken = "valid.transaction.token"

type fuzzVerifier struct{}

func (fuzzVerifier) VerifyAt(_ context.Context, raw string, _ time.Time) (*txntoken.Token, error) {
	if raw != fuzzToken {
		return nil, errors.New("signature does not verify")
	}
	return &txntoken.Token{Raw: raw}, nil
}

// fakeMsg is a delivered message that records how it was settled.
type fakeMsg struct {
	subject  string
	header   nats.Header
	data     []byte
	settled  []string
	delivery uint64
}

func (m *fakeMsg) Metadata() (*jetstream.MsgMetadata, error) {
	return &jetstream.MsgMetadata{NumDelivered: m.delivery, Timestamp: fuzzStored}, nil
}

// fuzzStored is when the fake messages were stored; fuzzEnqueued is when
// they were enqueued, a little before.
var (
	fuzzStored   = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	fuzzEnqueued = fuzzStored.Add(-time.Second).Format(time.RFC3339Nano)
)

func (m *fakeMsg) Data() []byte                     { return m.data }
func (m *fakeMsg) Headers() nats.Header             { return m.header }
func (m *fakeMsg) Subject() string                  { return m.subject }
func (m *fakeMsg) Reply() string                    { return "" }
func (m *fakeMsg) Ack() error                       { return m.settle("ack") }
func (m *fakeMsg) DoubleAck(context.Context) error  { return m.settle("ack") }
func (m *fakeMsg) Nak() error                       { return m.settle("nak") }
func (m *fakeMsg) NakWithDelay(time.Duration) error { return m.settle("nak") }
func (m *fakeMsg) InProgress() error                { return nil }
func (m *fakeMsg) Term() error                      { return m.settle("term") }
func (m *fakeMsg) TermWithReason(string) error      { return m.settle("term") }
func (m *fakeMsg) settle(how string) error          { m.settled = append(m.settled, how); return nil }

// fuzzConsumer is a payment consumer of OrderCreated whose handler records
// what it was given.
func fuzzConsumer(t testing.TB, logs *bytes.Buffer, handled *[]proto.Message) *Consumer {
	t.Helper()
	td := spiffeid.RequireTrustDomainFromString("rampart.local")
	set, err := policy.Load(td, protoregistry.GlobalFiles)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewConsumer(ConsumerConfig{
		JetStream: noJetStream{},
		Policy:    set,
		Workload:  "payment",
		Tokens:    fuzzVerifier{},
		Logger:    slog.New(slog.NewJSONHandler(logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	err = c.Handle(&orderv1.OrderCreated{}, func(ctx context.Context, msg proto.Message) error {
		*handled = append(*handled, msg)
		if tok, ok := txntoken.FromContext(ctx); !ok || tok.Raw != fuzzToken {
			return fmt.Errorf("handler context holds token %v, %t", tok, ok)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// noJetStream is never called while handling a message.
type noJetStream struct{ jetstream.JetStream }

// FuzzHandle feeds arbitrary messages to a consumer. Whatever arrives,
// each message is settled once and logged once, and the handler sees only
// a message that passed every check: the subject of an event this
// workload consumes, the matching event header, the protobuf content
// type, a valid token and a payload that protovalidate accepts.
func FuzzHandle(f *testing.F) {
	// The seed corpus is in testdata/fuzz/FuzzHandle: one message that
	// passes every check and one that fails each.
	var logs bytes.Buffer
	var handled []proto.Message
	c := fuzzConsumer(f, &logs, &handled)
	f.Fuzz(func(t *testing.T, subject, event, contentType, token string, payload []byte) {
		logs.Reset()
		handled = handled[:0]
		msg := &fakeMsg{
			subject:  subject,
			data:     payload,
			delivery: 1,
			header: nats.Header{
				EventHeader:        {event},
				ContentTypeHeader:  {contentType},
				txntoken.HeaderKey: {token},
				EnqueuedHeader:     {fuzzEnqueued},
			},
		}
		c.handle(context.Background(), msg)

		if len(msg.settled) != 1 {
			t.Fatalf("settled %q, want exactly once", msg.settled)
		}
		if n := strings.Count(logs.String(), `"msg":"event"`); n != 1 {
			t.Fatalf("%d log lines, want 1:\n%s", n, logs.String())
		}
		if len(handled) == 0 {
			if msg.settled[0] != "term" {
				t.Fatalf("a refused message was settled with %s, want term", msg.settled[0])
			}
			return
		}
		if subject != "orders.created" || event != "order.v1.OrderCreated" ||
			contentType != ContentType || token != fuzzToken {
			t.Fatalf("handler ran for subject %q, event %q, content type %q, token %q",
				subject, event, contentType, token)
		}
		if err := protovalidate.Validate(handled[0]); err != nil {
			t.Fatalf("handler got an invalid event: %v", err)
		}
		if msg.settled[0] != "ack" {
			t.Fatalf("a handled message was settled with %s, want ack:\n%s",
				msg.settled[0], logs.String())
		}
	})
}

// TestHandleUnsubscribedSubject covers a message that the durable
// consumer's filter keeps out, should one arrive anyway: an event that
// exists but that this workload may not consume.
func TestHandleUnsubscribedSubject(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	var handled []proto.Message
	c := fuzzConsumer(t, &logs, &handled)
	payload, err := proto.Marshal(&orderv1.OrderCancelled{})
	if err != nil {
		t.Fatal(err)
	}
	msg := &fakeMsg{
		subject:  "orders.cancelled",
		data:     payload,
		delivery: 1,
		header: nats.Header{
			EventHeader:        {"order.v1.OrderCancelled"},
			ContentTypeHeader:  {ContentType},
			txntoken.HeaderKey: {fuzzToken},
			EnqueuedHeader:     {fuzzEnqueued},
		},
	}
	c.handle(t.Context(), msg)
	if len(handled) != 0 || len(msg.settled) != 1 || msg.settled[0] != "term" {
		t.Errorf("handled %d, settled %q; want no handler and term", len(handled), msg.settled)
	}
	if !strings.Contains(logs.String(), `"reason":"policy"`) {
		t.Errorf("log does not give the policy as the reason:\n%s", logs.String())
	}
}
