package grpcserver

import (
	"context"
	"errors"
	"strings"
	"time"

	middleware "github.com/grpc-ecosystem/go-grpc-middleware/v2"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"example.com/rampart/platform/identity"
	"example.com/rampart/platform/policy"
	"example.com/rampart/platform/txntoken"
)

// RetryAfterKey is the response metadata key that tells a rate-limited
// caller how many seconds to wait, like HTTP's Retry-After.
const RetryAfterKey = "retry-after"

var errNoToken = errors.New("grpcserver: no transaction token, or more than one")

// guard holds the interceptors that apply the platform's checks.
type guard struct{ cfg Config }

// call is what authorization established about a call, for the checks
// after it.
type call struct {
	method *policy.Method
	token  *txntoken.Token
	key    string // the rate-limit principal
}

type callKey struct{}

func callFrom(ctx context.Context) *call {
	c, _ := ctx.Value(callKey{}).(*call)
	return c
}

// Audit records, on the call's one log line, that a handler refused or
// noticed something a security review would want to find: the line gets
// audit=event and reason=reason. It never reaches the caller.
func Audit(ctx context.Context, event, reason string) {
	logging.AddFields(ctx, logging.Fields{"audit", event, "reason", reason})
}

// DenialDomain is the domain of the google.rpc.ErrorInfo that marks the
// platform's own refusals of a call: of the caller's identity, token or
// rights, before any handler ran. It lets a gateway tell a refusal of the
// credentials it sent, which is its own failure, from a handler's answer
// about the end user's, such as a failed login.
const DenialDomain = "rampart.platform"

// IsDenial reports whether st is a refusal by the platform's checks
// rather than a handler's answer.
func IsDenial(st *status.Status) bool {
	for _, detail := range st.Details() {
		if info, ok := detail.(*errdetails.ErrorInfo); ok && info.GetDomain() == DenialDomain {
			return true
		}
	}
	return false
}

// deny records why a call was refused on its log line, as an audit event,
// and returns an error that tells the caller only the category, marked as
// the platform's (see [DenialDomain]).
func deny(ctx context.Context, code codes.Code, reason error) error {
	Audit(ctx, "denied", reason.Error())
	st := status.New(code, denialMessages[code])
	if marked, err := st.WithDetails(&errdetails.ErrorInfo{
		Domain: DenialDomain, Reason: strings.ToUpper(code.String()),
	}); err == nil {
		st = marked
	}
	return st.Err()
}

var denialMessages = map[codes.Code]string{
	codes.Unauthenticated:  "missing or invalid credentials",
	codes.PermissionDenied: "permission denied",
}

// authorize finds the method's policy, checks the calling workload against
// it, verifies the transaction token and checks the end user it names.
func (g *guard) authorize(ctx context.Context, procedure string) (context.Context, error) {
	method, err := g.cfg.Policy.Method(procedure)
	if err != nil {
		return nil, deny(ctx, codes.PermissionDenied, err)
	}
	peerID, err := identity.PeerID(ctx)
	if err != nil {
		return nil, deny(ctx, codes.Unauthenticated, err)
	}
	logging.AddFields(ctx, logging.Fields{"peer_id", peerID.String()})
	if err := method.CheckCaller(peerID); err != nil {
		return nil, deny(ctx, codes.PermissionDenied, err)
	}

	raw, err := tokenFromMetadata(ctx)
	if err != nil {
		return nil, deny(ctx, codes.Unauthenticated, err)
	}
	tok, err := g.cfg.Tokens.Verify(ctx, raw)
	if err != nil {
		return nil, deny(ctx, codes.Unauthenticated, err)
	}
	logging.AddFields(ctx, logging.Fields{"subject", tok.Claims.Subject, "txn", tok.Claims.ID})
	if err := method.Authorize(tok.Claims.User(), tok.Claims.Scopes); err != nil {
		return nil, deny(ctx, codes.PermissionDenied, err)
	}

	c := &call{method: method, token: tok, key: principal(tok, peerID.String())}
	ctx = txntoken.NewContext(ctx, tok)
	return context.WithValue(ctx, callKey{}, c), nil
}

func tokenFromMetadata(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	values := md.Get(txntoken.MetadataKey)
	if len(values) != 1 || values[0] == "" {
		return "", errNoToken
	}
	return values[0], nil
}

// principal is the rate-limit key of a call: the end user when there is
// one, else the external client's address, else the calling workload.
func principal(tok *txntoken.Token, peer string) string {
	switch {
	case tok.Claims.User():
		return "user:" + tok.Claims.Subject
	case tok.Claims.ClientIP != "":
		return "ip:" + tok.Claims.ClientIP
	default:
		return "peer:" + peer
	}
}

// limit takes the method's cost from the principal's bucket.
func (g *guard) limit(ctx context.Context) error {
	c := callFrom(ctx)
	ok, wait := g.cfg.Limiter.Allow(c.key, c.method.Cost)
	if ok {
		return nil
	}
	Audit(ctx, "rate_limited", c.key)
	_ = grpc.SetHeader(ctx, metadata.Pairs(RetryAfterKey, retryAfterSeconds(wait)))
	st, err := status.New(codes.ResourceExhausted, "rate limit exceeded").
		WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(wait)})
	if err != nil {
		return status.Error(codes.ResourceExhausted, "rate limit exceeded")
	}
	return st.Err()
}

// bindContext refuses a request that disagrees with the transaction
// context bound into the caller's token.
func (g *guard) bindContext(ctx context.Context, req any) error {
	c := callFrom(ctx)
	msg, ok := req.(proto.Message)
	if !ok {
		return status.Error(codes.Internal, "internal error")
	}
	if err := c.method.CheckTransactionContext(msg, c.token.Claims.Context); err != nil {
		return deny(ctx, codes.PermissionDenied, err)
	}
	return nil
}

func capDeadline(ctx context.Context, limit time.Duration) (context.Context, context.CancelFunc) {
	if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) <= limit {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, limit)
}

func (g *guard) capDeadlineUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo,
	handler grpc.UnaryHandler) (any, error) {
	ctx, cancel := capDeadline(ctx, g.cfg.MaxUnaryDeadline)
	defer cancel()
	return handler(ctx, req)
}

func (g *guard) capDeadlineStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo,
	handler grpc.StreamHandler) error {
	ctx, cancel := capDeadline(ss.Context(), g.cfg.MaxStreamDeadline)
	defer cancel()
	return handler(srv, withContext(ctx, ss))
}

func (g *guard) authorizeUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo,
	handler grpc.UnaryHandler) (any, error) {
	ctx, err := g.authorize(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (g *guard) authorizeStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo,
	handler grpc.StreamHandler) error {
	ctx, err := g.authorize(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	return handler(srv, withContext(ctx, ss))
}

func (g *guard) limitUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo,
	handler grpc.UnaryHandler) (any, error) {
	if err := g.limit(ctx); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (g *guard) limitStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo,
	handler grpc.StreamHandler) error {
	if err := g.limit(ss.Context()); err != nil {
		return err
	}
	return handler(srv, ss)
}

func (g *guard) bindContextUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo,
	handler grpc.UnaryHandler) (any, error) {
	if err := g.bindContext(ctx, req); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (g *guard) bindContextStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo,
	handler grpc.StreamHandler) error {
	return handler(srv, &boundStream{ServerStream: ss, guard: g})
}

// boundStream checks every message a client streams in.
type boundStream struct {
	grpc.ServerStream
	guard *guard
}

func (s *boundStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return s.guard.bindContext(s.Context(), m)
}

func withContext(ctx context.Context, ss grpc.ServerStream) grpc.ServerStream {
	wrapped := middleware.WrapServerStream(ss)
	wrapped.WrappedContext = ctx
	return wrapped
}
