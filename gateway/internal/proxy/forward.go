package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connectproto"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	"example.com/rampart/platform/grpcserver"
	"example.com/rampart/platform/policy"
	"example.com/rampart/platform/txntoken"
)

// route forwards the calls of one public method to its workload.
type route struct {
	method    *policy.Method
	upstream  grpc.ClientConnInterface
	request   protoreflect.MessageType
	response  protoreflect.MessageType
	minter    Minter
	cfg       Config
	streaming bool
}

func newRoute(cfg Config, m *policy.Method, upstream grpc.ClientConnInterface) (*route, error) {
	if m.Desc.IsStreamingClient() {
		return nil, fmt.Errorf("%s streams from the client, which the gateway does not forward",
			m.Procedure)
	}
	request, err := messageType(m.Desc.Input())
	if err != nil {
		return nil, err
	}
	response, err := messageType(m.Desc.Output())
	if err != nil {
		return nil, err
	}
	return &route{
		method:    m,
		upstream:  upstream,
		request:   request,
		response:  response,
		minter:    cfg.Minter,
		cfg:       cfg,
		streaming: m.Desc.IsStreamingServer(),
	}, nil
}

func (r *route) spec() connect.Spec {
	spec := connect.Spec{
		Procedure:  r.method.Procedure,
		StreamType: connect.StreamTypeUnary,
		Schema:     r.method.Desc,
	}
	if r.streaming {
		spec.StreamType = connect.StreamTypeServer
	}
	if opts, ok := r.method.Desc.Options().(*descriptorpb.MethodOptions); ok {
		spec.IdempotencyLevel = connect.IdempotencyLevel(opts.GetIdempotencyLevel())
	}
	return spec
}

// serve receives the request, mints the call's transaction token and
// forwards the call.
func (r *route) serve(ctx context.Context, _ connect.Spec, stream connect.ServerStream) error {
	timeout := r.cfg.MaxUnaryTimeout
	if r.streaming {
		timeout = r.cfg.MaxStreamTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	req := r.request.New().Interface()
	if err := stream.Receive(req); err != nil {
		return receiveError(err)
	}
	ctx, err := r.mint(ctx, req)
	if err != nil {
		return connect.NewError(connect.CodeInternal, msgInternal).WithCause(err)
	}
	if r.streaming {
		err = r.forwardStream(ctx, req, stream)
	} else {
		err = r.forwardUnary(ctx, req, stream)
	}
	return shutdownError(ctx, err)
}

// ErrShuttingDown is the cause with which the gateway ends the calls still
// running when it shuts down.
var ErrShuttingDown = errors.New("proxy: gateway shutting down")

// shutdownError turns the failure of a call that the gateway's shutdown
// ended into Unavailable, which tells a client to call again, as it would
// a watcher whose stream ended there, rather than Canceled, which says the
// client gave up itself.
func shutdownError(ctx context.Context, err error) error {
	if err == nil || !errors.Is(context.Cause(ctx), ErrShuttingDown) {
		return err
	}
	return connect.NewError(connect.CodeUnavailable, "gateway shutting down; call again").
		WithCause(err)
}

// receiveError answers a request body that could not be read. Its size
// and shape are the caller's doing and never worth a retry, so both become
// InvalidArgument: Connect reports an oversized body as ResourceExhausted,
// which clients would take for the rate limit (HTTP 429), and a truncated
// envelope as Internal, which would blame the gateway.
func receiveError(err error) error {
	switch connect.CodeOf(err) {
	case connect.CodeResourceExhausted:
		return connect.NewError(connect.CodeInvalidArgument, "request too large").WithCause(err)
	case connect.CodeInternal, connect.CodeUnknown:
		return connect.NewError(connect.CodeInvalidArgument, "malformed request").WithCause(err)
	default:
		return err
	}
}

// mint exchanges the caller's verified identity for a transaction token
// that grants only the scopes the method needs and binds the method's
// transaction context.
func (r *route) mint(ctx context.Context, req proto.Message) (context.Context, error) {
	st := stateFrom(ctx)
	mint := txntoken.Request{
		Subject:  txntoken.Anonymous,
		Scopes:   r.method.Scopes,
		ClientIP: st.clientIP,
		Context:  r.method.TransactionContext(req),
	}
	if st.user != nil {
		mint.Subject = st.user.Subject
		mint.SessionID = st.user.SessionID
	}
	tok, err := r.minter.Mint(mint)
	if err != nil {
		return nil, fmt.Errorf("minting transaction token: %w", err)
	}
	st.txn = tok.Claims.ID
	return txntoken.NewContext(ctx, tok), nil
}

func (r *route) forwardUnary(
	ctx context.Context, req proto.Message, stream connect.ServerStream,
) error {
	resp := r.response.New().Interface()
	var header metadata.MD
	err := r.upstream.Invoke(ctx, r.method.Procedure, req, resp, grpc.Header(&header))
	if err != nil {
		return upstreamError(ctx, err, header)
	}
	return stream.Send(resp)
}

func (r *route) forwardStream(
	ctx context.Context, req proto.Message, stream connect.ServerStream,
) error {
	desc := &grpc.StreamDesc{StreamName: string(r.method.Desc.Name()), ServerStreams: true}
	upstream, err := r.upstream.NewStream(ctx, desc, r.method.Procedure)
	if err != nil {
		return upstreamError(ctx, err, nil)
	}
	if err := upstream.SendMsg(req); err != nil && !errors.Is(err, io.EOF) {
		return upstreamError(ctx, err, nil)
	}
	if err := upstream.CloseSend(); err != nil {
		return upstreamError(ctx, err, nil)
	}
	for {
		resp := r.response.New().Interface()
		if err := upstream.RecvMsg(resp); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			header, _ := upstream.Header()
			return upstreamError(ctx, err, header)
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

// forwardedDetails are the error details a client may see: what was wrong
// with its request, and when to retry.
var forwardedDetails = map[string]bool{
	"buf.validate.Violations": true,
	"google.rpc.BadRequest":   true,
	"google.rpc.RetryInfo":    true,
}

// upstreamError turns a workload's gRPC error into the gateway's answer.
// Codes that mean the platform itself failed are masked to a bare
// message; the others keep the message the service wrote for clients and
// the details in forwardedDetails.
func upstreamError(ctx context.Context, err error, header metadata.MD) error {
	st := status.Convert(err)
	switch st.Code() {
	case codes.Unauthenticated:
		if grpcserver.IsDenial(st) {
			// The workload refused the gateway's own transaction token:
			// the platform's fault, not the caller's.
			return connect.NewError(connect.CodeInternal, msgInternal).WithCause(err)
		}
		// Otherwise a handler judged the end user's credentials, as Login
		// does a password: the answer is the caller's, and passes through.
	case codes.Unknown, codes.Internal, codes.DataLoss, codes.Unimplemented:
		// An unknown method upstream is the platform's fault too.
		return connect.NewError(connect.CodeInternal, msgInternal).WithCause(err)
	case codes.Unavailable:
		return connect.NewError(connect.CodeUnavailable, msgUnavailable).WithCause(err)
	case codes.PermissionDenied:
		return connect.NewError(connect.CodePermissionDenied, msgPermission).WithCause(err)
	case codes.Canceled:
		return connect.NewError(connect.CodeCanceled, "call canceled").WithCause(err)
	case codes.DeadlineExceeded:
		return connect.NewError(connect.CodeDeadlineExceeded, "deadline exceeded").WithCause(err)
	default:
		// Every other code answers the caller's request: it passes through
		// below with the service's message and the allowlisted details.
	}
	out := connect.NewError(connect.Code(st.Code()), st.Message()).WithCause(err)
	for _, detail := range st.Proto().GetDetails() {
		name := string(detail.MessageName())
		if !forwardedDetails[name] {
			continue
		}
		if d, err := connectproto.NewErrorDetail(detail); err == nil {
			out = out.WithDetail(d)
		}
	}
	if st.Code() == codes.ResourceExhausted {
		if v := header.Get(grpcserver.RetryAfterKey); len(v) == 1 {
			if info, ok := connect.CallInfoForServerContext(ctx); ok {
				info.ResponseHeader().Set("Retry-After", v[0])
			}
		}
	}
	return out
}
