package policy

import (
	"errors"
	"fmt"
	"regexp"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/reflect/protoreflect"

	policyv1 "example.com/rampart/proto/rampart/policy/v1"
)

// Event is the policy of one event message type.
type Event struct {
	// Name is the full name of the event message, "order.v1.OrderCreated".
	Name protoreflect.FullName
	// Desc describes the event message.
	Desc protoreflect.MessageDescriptor
	// Subject is the NATS subject the event is published on.
	Subject string
	// Publisher is the one workload allowed to publish the event.
	Publisher spiffeid.ID
	// PublisherName is Publisher's workload name, "order".
	PublisherName string
	// Subscribers are the workloads allowed to consume the event.
	Subscribers []spiffeid.ID
}

// subjectShape allows plain dot-separated tokens: no wildcards, no spaces.
var subjectShape = regexp.MustCompile(`^[a-z0-9_-]+(\.[a-z0-9_-]+)*$`)

func newEvent(td spiffeid.TrustDomain, desc protoreflect.MessageDescriptor,
	rule *policyv1.EventPolicy) (*Event, error) {
	if !subjectShape.MatchString(rule.GetSubject()) {
		return nil, fmt.Errorf("invalid subject %q", rule.GetSubject())
	}
	if rule.GetPublisher() == "" {
		return nil, errors.New("no publisher")
	}
	publisher, err := workloadIDs(td, []string{rule.GetPublisher()})
	if err != nil {
		return nil, err
	}
	subscribers, err := workloadIDs(td, rule.GetSubscribers())
	if err != nil {
		return nil, err
	}
	return &Event{
		Name:          desc.FullName(),
		Desc:          desc,
		Subject:       rule.GetSubject(),
		Publisher:     publisher[0],
		PublisherName: rule.GetPublisher(),
		Subscribers:   subscribers,
	}, nil
}

// CheckSubscriber returns an error wrapping [ErrCallerNotAllowed] unless
// the workload id may consume the event.
func (e *Event) CheckSubscriber(id spiffeid.ID) error {
	if !containsID(e.Subscribers, id) {
		return fmt.Errorf("%w: %s may not consume %s", ErrCallerNotAllowed, id, e.Name)
	}
	return nil
}

// CheckPublisher returns an error wrapping [ErrCallerNotAllowed] unless the
// workload id may publish the event.
func (e *Event) CheckPublisher(id spiffeid.ID) error {
	if e.Publisher != id {
		return fmt.Errorf("%w: %s may not publish %s", ErrCallerNotAllowed, id, e.Name)
	}
	return nil
}
