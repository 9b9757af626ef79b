package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"strconv"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connectproto"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/types/known/durationpb"

	"example.com/rampart/gateway/internal/edge"
	"example.com/rampart/platform/accesstoken"
	"example.com/rampart/platform/policy"
)

// TraceHeader is the response header that carries the call's trace id, so
// that a client can quote it when reporting a problem.
const TraceHeader = "Trace-Id"

// Messages of the answers the gateway writes itself. Every authentication
// failure gets the same one, whatever its reason: the reason goes to the
// log line only.
const (
	msgUnauthenticated = "missing or invalid credentials"
	msgPermission      = "permission denied"
	msgRateLimited     = "rate limit exceeded"
	msgInternal        = "internal error"
	msgUnavailable     = "service unavailable"
)

var (
	errSessionRevoked     = errors.New("session revoked")
	errRevocationsLoading = errors.New("revoked sessions not loaded yet")
)

// state is what the checks learn about a call, for the log line and for
// minting its transaction token.
type state struct {
	clientIP string
	user     *accesstoken.Claims
	txn      string
	audit    string // why the gateway refused the call
	panicked any
}

type stateKey struct{}

func stateFrom(ctx context.Context) *state {
	if st, ok := ctx.Value(stateKey{}).(*state); ok {
		return st
	}
	return &state{}
}

type checks struct{ cfg Config }

// deny records why a call was refused, for the log line, and returns the
// answer the client sees.
func deny(ctx context.Context, code connect.Code, msg string, reason error) error {
	stateFrom(ctx).audit = reason.Error()
	return connect.NewError(code, msg).WithCause(reason)
}

// observe logs every call once, when it ends, and returns the trace id in
// a response header.
func (c *checks) observe(next connect.ServerFunc) connect.ServerFunc {
	return func(ctx context.Context, spec connect.Spec, stream connect.ServerStream) error {
		start := time.Now()
		st := &state{}
		ctx = context.WithValue(ctx, stateKey{}, st)
		info, _ := connect.CallInfoForServerContext(ctx)
		if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
			info.ResponseHeader().Set(TraceHeader, sc.TraceID().String())
		}
		st.clientIP = clientIP(ctx, info.PeerAddr)

		err := next(ctx, spec, stream)

		code := "ok"
		level := slog.LevelInfo
		if err != nil {
			code = connect.CodeOf(err).String()
			level = levelFor(connect.CodeOf(err))
		}
		attrs := []slog.Attr{
			slog.String("method", spec.Procedure),
			slog.String("protocol", info.Protocol),
			slog.String("code", code),
			slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000),
			slog.String("client_ip", st.clientIP),
		}
		if st.user != nil {
			attrs = append(attrs, slog.String("subject", st.user.Subject))
		}
		if st.txn != "" {
			attrs = append(attrs, slog.String("txn", st.txn))
		}
		if st.audit != "" {
			attrs = append(attrs, slog.String("audit", "denied"), slog.String("reason", st.audit))
		}
		if st.panicked != nil {
			attrs = append(attrs, slog.Any("panic", st.panicked))
		}
		if err != nil && level >= slog.LevelError {
			attrs = append(attrs, slog.String("error", cause(err)))
		}
		c.cfg.Logger.LogAttrs(ctx, level, "call", attrs...)
		return err
	}
}

// cause is the error behind what the client was told, for the log only.
func cause(err error) string {
	var ce *connect.Error
	if errors.As(err, &ce) && ce.Unwrap() != nil {
		return ce.Unwrap().Error()
	}
	return err.Error()
}

func levelFor(code connect.Code) slog.Level {
	switch code {
	case connect.CodeInternal, connect.CodeUnknown, connect.CodeDataLoss, connect.CodeUnavailable:
		return slog.LevelError
	case connect.CodeUnauthenticated, connect.CodePermissionDenied, connect.CodeResourceExhausted:
		return slog.LevelWarn
	default:
		// The caller's own mistakes and outcomes it asked for are routine.
		return slog.LevelInfo
	}
}

// clientIP is the external client's address: the one edge found behind
// trusted proxies, else the connection's peer.
func clientIP(ctx context.Context, peerAddr string) string {
	if ip, ok := edge.ClientIP(ctx); ok {
		return ip
	}
	if host, _, err := net.SplitHostPort(peerAddr); err == nil {
		return host
	}
	return peerAddr
}

// recover turns a panic into an Internal error.
func (c *checks) recover(next connect.ServerFunc) connect.ServerFunc {
	return func(ctx context.Context, spec connect.Spec, stream connect.ServerStream) (err error) {
		defer func() {
			if p := recover(); p != nil {
				stateFrom(ctx).panicked = p
				err = connect.NewError(connect.CodeInternal, msgInternal)
			}
		}()
		return next(ctx, spec, stream)
	}
}

// authenticate verifies the access token of the Authorization header, the
// only place one is read from. A call without the header goes on as
// anonymous; the policy decides whether that is enough.
func (c *checks) authenticate(next connect.ServerFunc) connect.ServerFunc {
	return func(ctx context.Context, spec connect.Spec, stream connect.ServerStream) error {
		info, _ := connect.CallInfoForServerContext(ctx)
		values := info.RequestHeader().Values("Authorization")
		switch len(values) {
		case 0:
			return next(ctx, spec, stream)
		case 1:
		default:
			return deny(ctx, connect.CodeUnauthenticated, msgUnauthenticated,
				errors.New("more than one Authorization header"))
		}
		raw, err := accesstoken.ParseAuthorization(values[0])
		if err != nil {
			return deny(ctx, connect.CodeUnauthenticated, msgUnauthenticated, err)
		}
		claims, err := c.cfg.AccessTokens.Verify(ctx, raw)
		if err != nil {
			return deny(ctx, connect.CodeUnauthenticated, msgUnauthenticated, err)
		}
		// TODO: a token without "sid", which an external issuer may send,
		// names no session and so can never be revoked before it expires
		// (an hour at most); refusing such tokens, or revoking by subject
		// as well, would close that.
		switch revoked, ok := c.cfg.Revocations.Revoked(claims.SessionID); {
		case revoked:
			return deny(ctx, connect.CodeUnauthenticated, msgUnauthenticated, errSessionRevoked)
		case !ok:
			// Fail closed: a token may belong to a session revoked among
			// those not loaded yet. Loading takes moments.
			info.ResponseHeader().Set("Retry-After", "1")
			return deny(ctx, connect.CodeUnavailable, msgUnavailable, errRevocationsLoading)
		}
		stateFrom(ctx).user = claims
		return next(ctx, spec, stream)
	}
}

// authorize applies the method's policy to the caller.
func (c *checks) authorize(next connect.ServerFunc) connect.ServerFunc {
	return func(ctx context.Context, spec connect.Spec, stream connect.ServerStream) error {
		method, err := c.cfg.Policy.Method(spec.Procedure)
		if err != nil || !method.Public {
			return deny(ctx, connect.CodeUnimplemented, "method not found",
				fmt.Errorf("not a public method: %s", spec.Procedure))
		}
		st := stateFrom(ctx)
		if method.UserRequired && st.user == nil {
			return deny(ctx, connect.CodeUnauthenticated, msgUnauthenticated, policy.ErrUserRequired)
		}
		var scopes []string
		if st.user != nil {
			scopes = st.user.Scopes
		}
		if err := method.Authorize(st.user != nil, scopes); err != nil {
			return deny(ctx, connect.CodePermissionDenied, msgPermission, err)
		}
		return next(context.WithValue(ctx, methodKey{}, method), spec, stream)
	}
}

type methodKey struct{}

// limit takes the method's cost from the user's bucket, when there is a
// user, and from the client address's bucket.
func (c *checks) limit(next connect.ServerFunc) connect.ServerFunc {
	return func(ctx context.Context, spec connect.Spec, stream connect.ServerStream) error {
		method, _ := ctx.Value(methodKey{}).(*policy.Method)
		st := stateFrom(ctx)
		if st.user != nil {
			if ok, wait := c.cfg.UserLimits.Allow("user:"+st.user.Subject, method.Cost); !ok {
				return rateLimited(ctx, wait, "user "+st.user.Subject)
			}
		}
		if ok, wait := c.cfg.IPLimits.Allow("ip:"+st.clientIP, method.Cost); !ok {
			return rateLimited(ctx, wait, "client address "+st.clientIP)
		}
		return next(ctx, spec, stream)
	}
}

// rateLimited answers ResourceExhausted with how long to wait, both as a
// Retry-After header (HTTP 429 in the Connect protocol) and as a RetryInfo
// detail.
func rateLimited(ctx context.Context, wait time.Duration, who string) error {
	stateFrom(ctx).audit = "rate limited: " + who
	if info, ok := connect.CallInfoForServerContext(ctx); ok {
		seconds := max(1, int(math.Ceil(wait.Seconds())))
		info.ResponseHeader().Set("Retry-After", strconv.Itoa(seconds))
	}
	err := connect.NewError(connect.CodeResourceExhausted, msgRateLimited)
	if detail, derr := connectproto.NewErrorDetail(&errdetails.RetryInfo{RetryDelay: durationpb.New(wait)}); derr == nil {
		err = err.WithDetail(detail)
	}
	return err
}
