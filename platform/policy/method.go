package policy

import (
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	policyv1 "example.com/rampart/proto/rampart/policy/v1"
)

// Method is the policy of one RPC.
type Method struct {
	// Procedure is the method's path, "/order.v1.OrderService/CreateOrder".
	Procedure string
	// Desc describes the method and its request and response messages.
	Desc protoreflect.MethodDescriptor
	// Server is the workload that serves the method, from the service's
	// rampart.policy.v1.workload option; ServerName is its name.
	Server     spiffeid.ID
	ServerName string
	// Callers are the workloads that may call the method directly.
	Callers []spiffeid.ID
	// Public says the gateway exposes the method.
	Public bool
	// UserRequired says the call must act for a signed-in end user.
	UserRequired bool
	// Scopes must all be granted to the end user.
	Scopes []string
	// Cost is what one call takes from a rate-limit bucket, at least one.
	Cost int
	// ContextFields are the request fields bound into the transaction token.
	ContextFields []protoreflect.FieldDescriptor
}

func newMethod(td spiffeid.TrustDomain, desc protoreflect.MethodDescriptor,
	rule *policyv1.MethodPolicy) (*Method, error) {
	callers, err := workloadIDs(td, rule.GetCallers())
	if err != nil {
		return nil, err
	}
	m := &Method{
		Procedure:    procedure(desc),
		Desc:         desc,
		ServerName:   serverName(desc),
		Callers:      callers,
		Public:       rule.GetPublic(),
		UserRequired: rule.GetUserRequired(),
		Scopes:       slices.Clone(rule.GetScopes()),
		Cost:         max(1, int(rule.GetCost())),
	}
	if m.ServerName != "" {
		server, err := workloadIDs(td, []string{m.ServerName})
		if err != nil {
			return nil, fmt.Errorf("service workload: %w", err)
		}
		m.Server = server[0]
	}
	switch {
	case m.Public && m.ServerName == "":
		return nil, errors.New("public, but its service names no workload to forward to")
	case len(callers) == 0:
		return nil, errors.New("no callers: nobody could call the method")
	case m.Public && !slices.Contains(rule.GetCallers(), Gateway):
		return nil, errors.New("public, but the gateway is not among its callers")
	case len(m.Scopes) > 0 && !m.UserRequired:
		return nil, errors.New("scopes are only granted to end users: set user_required")
	case slices.ContainsFunc(m.Scopes, func(s string) bool { return !validScope(s) }):
		return nil, fmt.Errorf("invalid scope in %q", m.Scopes)
	}
	for _, name := range rule.GetTransactionContext() {
		field := desc.Input().Fields().ByName(protoreflect.Name(name))
		if field == nil {
			return nil, fmt.Errorf("transaction context field %q is not in %s", name, desc.Input().FullName())
		}
		if field.IsList() || field.IsMap() || !contextKind(field.Kind()) {
			return nil, fmt.Errorf("transaction context field %q is not a single string, number or bool", name)
		}
		m.ContextFields = append(m.ContextFields, field)
	}
	return m, nil
}

func serverName(desc protoreflect.MethodDescriptor) string {
	opts := desc.Parent().Options()
	if opts == nil || !proto.HasExtension(opts, policyv1.E_Workload) {
		return ""
	}
	// The option is declared as a string: anything else reads as no workload.
	name, _ := proto.GetExtension(opts, policyv1.E_Workload).(string)
	return name
}

// AllowsCaller reports whether the workload id may call the method.
func (m *Method) AllowsCaller(id spiffeid.ID) bool {
	return containsID(m.Callers, id)
}

// CheckCaller returns an error wrapping [ErrCallerNotAllowed] unless the
// workload id may call the method.
func (m *Method) CheckCaller(id spiffeid.ID) error {
	if !m.AllowsCaller(id) {
		return fmt.Errorf("%w: %s may not call %s", ErrCallerNotAllowed, id, m.Procedure)
	}
	return nil
}

// Authorize checks the end user a call acts for: user says whether there
// is one (rather than an anonymous caller) and scopes are those granted to
// it. It returns an error wrapping [ErrUserRequired] or [ErrMissingScope].
func (m *Method) Authorize(user bool, scopes []string) error {
	if m.UserRequired && !user {
		return fmt.Errorf("%w for %s", ErrUserRequired, m.Procedure)
	}
	if !hasAll(scopes, m.Scopes) {
		return fmt.Errorf("%w: %s needs %q", ErrMissingScope, m.Procedure, m.Scopes)
	}
	return nil
}

// TransactionContext returns the values of the method's context fields in
// req, keyed by field name, to be bound into a transaction token. It
// returns nil when the method declares no context.
func (m *Method) TransactionContext(req proto.Message) map[string]string {
	if len(m.ContextFields) == 0 {
		return nil
	}
	values := make(map[string]string, len(m.ContextFields))
	msg := req.ProtoReflect()
	for _, field := range m.ContextFields {
		values[string(field.Name())] = contextValue(field, msg.Get(field))
	}
	return values
}

// CheckTransactionContext returns an error wrapping [ErrContextMismatch]
// when req disagrees with the transaction context bound into the caller's
// token. A field the token does not bind is a mismatch too: a method that
// declares a context may only be called within a transaction about it.
func (m *Method) CheckTransactionContext(req proto.Message, bound map[string]string) error {
	msg := req.ProtoReflect()
	for _, field := range m.ContextFields {
		name := string(field.Name())
		want, ok := bound[name]
		if !ok {
			return fmt.Errorf("%w: %s is not bound", ErrContextMismatch, name)
		}
		if got := contextValue(field, msg.Get(field)); got != want {
			return fmt.Errorf("%w: %s", ErrContextMismatch, name)
		}
	}
	return nil
}

func contextKind(kind protoreflect.Kind) bool {
	switch kind {
	case protoreflect.StringKind, protoreflect.BoolKind, protoreflect.EnumKind,
		protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind,
		protoreflect.Uint32Kind, protoreflect.Fixed32Kind,
		protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return true
	default:
		return false
	}
}

func contextValue(field protoreflect.FieldDescriptor, v protoreflect.Value) string {
	switch field.Kind() {
	case protoreflect.StringKind:
		return v.String()
	case protoreflect.BoolKind:
		return strconv.FormatBool(v.Bool())
	case protoreflect.EnumKind:
		return strconv.FormatInt(int64(v.Enum()), 10)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind,
		protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return strconv.FormatUint(v.Uint(), 10)
	default:
		return strconv.FormatInt(v.Int(), 10)
	}
}
