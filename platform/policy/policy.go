// Package policy reads the rampart.policy.v1 options declared next to each
// method and event in the .proto files and answers, for every call and every
// message, whether it may go ahead.
//
// Policy is deny by default: a method or event that declares no policy is
// absent from the [Set], and every lookup of it fails with [ErrNoPolicy].
package policy

import (
	"errors"
	"fmt"
	"iter"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	policyv1 "example.com/rampart/proto/rampart/policy/v1"
)

// Gateway is the workload name of the gateway, the only caller of public
// methods.
const Gateway = "gateway"

// Errors returned by lookups and checks. Callers match them with errors.Is;
// they name the rule that failed so that audit logs can say why.
var (
	ErrNoPolicy         = errors.New("policy: no policy declared")
	ErrCallerNotAllowed = errors.New("policy: caller not allowed")
	ErrUserRequired     = errors.New("policy: end user required")
	ErrMissingScope     = errors.New("policy: scope not granted")
	ErrContextMismatch  = errors.New("policy: request differs from transaction context")
)

// Set holds the policy of every method and event compiled into a binary.
// It is immutable and safe for concurrent use.
type Set struct {
	trustDomain spiffeid.TrustDomain
	methods     map[string]*Method
	events      map[protoreflect.FullName]*Event
	subjects    map[string]*Event
}

// Load reads the policies declared in files, which is usually
// protoregistry.GlobalFiles: every .proto linked into the binary. Workload
// names in the policies become SPIFFE IDs in trustDomain. Load refuses a
// policy that contradicts itself (a public method the gateway may not call,
// scopes on a method without a user, a transaction context naming a field
// that cannot hold one) so that a mistake fails at start-up, not per call.
func Load(trustDomain spiffeid.TrustDomain, files *protoregistry.Files) (*Set, error) {
	s := &Set{
		trustDomain: trustDomain,
		methods:     map[string]*Method{},
		events:      map[protoreflect.FullName]*Event{},
		subjects:    map[string]*Event{},
	}
	var errs []error
	files.RangeFiles(func(file protoreflect.FileDescriptor) bool {
		errs = append(errs, s.addFile(file))
		return true
	})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}

// TrustDomain is the trust domain that workload names resolve in.
func (s *Set) TrustDomain() spiffeid.TrustDomain { return s.trustDomain }

// Method returns the policy of a procedure such as
// "/order.v1.OrderService/CreateOrder", the form gRPC and Connect use.
func (s *Set) Method(procedure string) (*Method, error) {
	m, ok := s.methods[procedure]
	if !ok {
		return nil, fmt.Errorf("%w for method %q", ErrNoPolicy, procedure)
	}
	return m, nil
}

// Methods yields every method that has a policy, sorted by procedure.
func (s *Set) Methods() iter.Seq[*Method] {
	return func(yield func(*Method) bool) {
		for _, name := range slices.Sorted(maps.Keys(s.methods)) {
			if !yield(s.methods[name]) {
				return
			}
		}
	}
}

// Event returns the policy of an event message type.
func (s *Set) Event(name protoreflect.FullName) (*Event, error) {
	e, ok := s.events[name]
	if !ok {
		return nil, fmt.Errorf("%w for event %q", ErrNoPolicy, name)
	}
	return e, nil
}

// EventBySubject returns the policy of the event published on subject.
func (s *Set) EventBySubject(subject string) (*Event, error) {
	e, ok := s.subjects[subject]
	if !ok {
		return nil, fmt.Errorf("%w for subject %q", ErrNoPolicy, subject)
	}
	return e, nil
}

// Events yields every event that has a policy, sorted by subject.
func (s *Set) Events() iter.Seq[*Event] {
	return func(yield func(*Event) bool) {
		for _, subject := range slices.Sorted(maps.Keys(s.subjects)) {
			if !yield(s.subjects[subject]) {
				return
			}
		}
	}
}

// Workload returns the SPIFFE ID of a workload name in the set's trust
// domain.
func (s *Set) Workload(name string) (spiffeid.ID, error) {
	return spiffeid.FromSegments(s.trustDomain, name)
}

func (s *Set) addFile(file protoreflect.FileDescriptor) error {
	var errs []error
	services := file.Services()
	for i := range services.Len() {
		methods := services.Get(i).Methods()
		for j := range methods.Len() {
			errs = append(errs, s.addMethod(methods.Get(j)))
		}
	}
	errs = append(errs, s.addMessages(file.Messages()))
	return errors.Join(errs...)
}

func (s *Set) addMethod(desc protoreflect.MethodDescriptor) error {
	opts := desc.Options()
	if opts == nil || !proto.HasExtension(opts, policyv1.E_Method) {
		return nil
	}
	rule, ok := proto.GetExtension(opts, policyv1.E_Method).(*policyv1.MethodPolicy)
	if !ok {
		return fmt.Errorf("policy of %s: the method option is not a MethodPolicy", desc.FullName())
	}
	m, err := newMethod(s.trustDomain, desc, rule)
	if err != nil {
		return fmt.Errorf("policy of %s: %w", desc.FullName(), err)
	}
	s.methods[m.Procedure] = m
	return nil
}

func (s *Set) addMessages(messages protoreflect.MessageDescriptors) error {
	var errs []error
	for i := range messages.Len() {
		desc := messages.Get(i)
		errs = append(errs, s.addMessages(desc.Messages()))
		opts := desc.Options()
		if opts == nil || !proto.HasExtension(opts, policyv1.E_Event) {
			continue
		}
		rule, ok := proto.GetExtension(opts, policyv1.E_Event).(*policyv1.EventPolicy)
		if !ok {
			errs = append(errs, fmt.Errorf("policy of %s: the event option is not an EventPolicy",
				desc.FullName()))
			continue
		}
		e, err := newEvent(s.trustDomain, desc, rule)
		if err != nil {
			errs = append(errs, fmt.Errorf("policy of %s: %w", desc.FullName(), err))
			continue
		}
		if other, dup := s.subjects[e.Subject]; dup {
			errs = append(errs, fmt.Errorf("policy of %s: subject %q is taken by %s",
				desc.FullName(), e.Subject, other.Name))
			continue
		}
		s.events[e.Name] = e
		s.subjects[e.Subject] = e
	}
	return errors.Join(errs...)
}

// workloadName is the shape of a workload name: one SPIFFE path segment.
var workloadName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

func workloadIDs(td spiffeid.TrustDomain, names []string) ([]spiffeid.ID, error) {
	ids := make([]spiffeid.ID, 0, len(names))
	for _, name := range names {
		if !workloadName.MatchString(name) {
			return nil, fmt.Errorf("invalid workload name %q", name)
		}
		id, err := spiffeid.FromSegments(td, name)
		if err != nil {
			return nil, fmt.Errorf("workload %q: %w", name, err)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// procedure turns a method's full name into the "/pkg.Service/Method" form.
func procedure(desc protoreflect.MethodDescriptor) string {
	return "/" + string(desc.Parent().FullName()) + "/" + string(desc.Name())
}

// hasAll reports whether granted holds every element of wanted.
func hasAll(granted, wanted []string) bool {
	for _, w := range wanted {
		if !slices.Contains(granted, w) {
			return false
		}
	}
	return true
}

func containsID(ids []spiffeid.ID, id spiffeid.ID) bool {
	return slices.ContainsFunc(ids, func(x spiffeid.ID) bool { return x == id })
}

// validScope reports whether scope is one OAuth scope token (RFC 6749,
// section 3.3).
func validScope(scope string) bool {
	return scope != "" && !strings.ContainsFunc(scope, func(r rune) bool {
		return r <= ' ' || r == '"' || r == '\\' || r > '~'
	})
}
