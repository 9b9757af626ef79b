package policy_test

import (
	"errors"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"example.com/rampart/platform/policy"
)

// FuzzLookup looks names taken from requests up in the policies of the
// sample services: a procedure from a request path, a subject from a NATS
// message, an event name from its header. A lookup finds the policy declared
// for exactly that name or fails with ErrNoPolicy; no variant of a declared
// name (case, slashes, wildcards, encodings) may reach a policy.
func FuzzLookup(f *testing.F) {
	set, err := policy.Load(td, protoregistry.GlobalFiles)
	if err != nil {
		f.Fatalf("loading the policies of the sample services: %v", err)
	}
	procedures := map[string]bool{}
	for m := range set.Methods() {
		procedures[m.Procedure] = true
		f.Add(m.Procedure)
	}
	subjects := map[string]bool{}
	names := map[protoreflect.FullName]bool{}
	for e := range set.Events() {
		subjects[e.Subject] = true
		names[e.Name] = true
		f.Add(e.Subject)
		f.Add(string(e.Name))
	}

	f.Fuzz(func(t *testing.T, name string) {
		m, err := set.Method(name)
		switch {
		case procedures[name] && (err != nil || m.Procedure != name):
			t.Fatalf("Method(%q) = %v, %v; want its own policy", name, m, err)
		case !procedures[name] && (m != nil || !errors.Is(err, policy.ErrNoPolicy)):
			t.Fatalf("Method(%q) = %v, %v; want ErrNoPolicy", name, m, err)
		}

		e, err := set.EventBySubject(name)
		switch {
		case subjects[name] && (err != nil || e.Subject != name):
			t.Fatalf("EventBySubject(%q) = %v, %v; want its own policy", name, e, err)
		case !subjects[name] && (e != nil || !errors.Is(err, policy.ErrNoPolicy)):
			t.Fatalf("EventBySubject(%q) = %v, %v; want ErrNoPolicy", name, e, err)
		}

		full := protoreflect.FullName(name)
		e, err = set.Event(full)
		switch {
		case names[full] && (err != nil || e.Name != full):
			t.Fatalf("Event(%q) = %v, %v; want its own policy", name, e, err)
		case !names[full] && (e != nil || !errors.Is(err, policy.ErrNoPolicy)):
			t.Fatalf("Event(%q) = %v, %v; want ErrNoPolicy", name, e, err)
		}
	})
}
