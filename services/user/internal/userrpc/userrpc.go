// Package userrpc serves user.v1.UserService: sign-up, login, refresh-token
// rotation, logout, and the account lookups.
//
// The platform has authorized and validated each request before a handler
// runs; handlers still re-check what is cheap to check, so that a mistake
// in a policy or a rule does not become a hole here.
package userrpc

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"example.com/rampart/platform/accesstoken"
	"example.com/rampart/platform/txntoken"
	userv1 "example.com/rampart/proto/user/v1"
	"example.com/rampart/services/user/internal/password"
	"example.com/rampart/services/user/internal/userissuer"
	"example.com/rampart/services/user/internal/userstore"
)

// TokenType is the token_type of every token response.
const TokenType = "Bearer"

// Bounds that the contract sets and the handlers check again.
const (
	maxEmailBytes       = 254
	minPasswordChars    = 12
	maxPasswordBytes    = 128
	maxDisplayNameChars = 64
)

// Outbox stores events in the transaction of the change they announce and
// relays them once committed. *workload.Outbox implements it.
type Outbox interface {
	Enqueue(ctx context.Context, tx *sql.Tx, event proto.Message) error
	Notify()
}

// Config is what a [Server] needs. Store, Outbox, Tokens and
// RefreshTokenTTL are required.
type Config struct {
	Store  *userstore.Store
	Outbox Outbox
	// Tokens issues the access tokens.
	Tokens *accesstoken.Issuer
	// RefreshTokenTTL is how long a refresh token is valid.
	RefreshTokenTTL time.Duration
	// Password are the argon2id parameters of new password hashes. The zero
	// value means password.DefaultParams. Stored hashes made with other
	// parameters are replaced at the next successful login.
	Password password.Params
	// Logger receives audit events and the causes of internal errors; nil
	// discards them.
	Logger *slog.Logger
}

// Server implements userv1.UserServiceServer.
type Server struct {
	userv1.UnimplementedUserServiceServer

	cfg Config
	log *slog.Logger
	// dummyHash is checked when a login names no account, so that such a
	// login takes as long as one with a wrong password.
	dummyHash string
	// verify is password.Verify, replaced in tests to observe it.
	verify func(password, encoded string) error
}

// New returns a Server, or an error if cfg lacks a required field.
func New(cfg Config) (*Server, error) {
	switch {
	case cfg.Store == nil:
		return nil, errors.New("userrpc: no store")
	case cfg.Outbox == nil:
		return nil, errors.New("userrpc: no outbox")
	case cfg.Tokens == nil:
		return nil, errors.New("userrpc: no access token issuer")
	case cfg.RefreshTokenTTL <= 0:
		return nil, errors.New("userrpc: refresh token lifetime is not positive")
	}
	if cfg.Password == (password.Params{}) {
		cfg.Password = password.DefaultParams
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dummy, err := password.Hash(rand.Text(), cfg.Password)
	if err != nil {
		return nil, fmt.Errorf("userrpc: %w", err)
	}
	return &Server{cfg: cfg, log: log, dummyHash: dummy, verify: password.Verify}, nil
}

// Errors the handlers answer with. Login and Refresh answer every failure
// the same way, so that a caller learns nothing about which accounts or
// tokens exist.
var (
	errInvalidCredentials  = status.Error(codes.Unauthenticated, "invalid email or password")
	errInvalidRefreshToken = status.Error(codes.Unauthenticated, "invalid refresh token")
	errSignInRequired      = status.Error(codes.Unauthenticated, "sign-in required")
	errPermissionDenied    = status.Error(codes.PermissionDenied, "permission denied")
	errNoSession           = status.Error(codes.FailedPrecondition,
		"the access token names no session")
)

// SignUp creates an account with a normalized email address and returns
// it. A taken address is AlreadyExists.
//
// TODO: that answer tells anyone whether an address is registered, a few
// tries a second per client address under the gateway's limit, while Login
// answers alike for both. A sign-up confirmed by email would answer the
// same either way; so would a password check against known breached
// passwords, which the length rule alone does not make (twelve spaces
// pass).
func (s *Server) SignUp(ctx context.Context, req *userv1.SignUpRequest) (*userv1.SignUpResponse, error) {
	email := userstore.NormalizeEmail(req.GetEmail())
	if err := checkSignUp(email, req.GetPassword(), req.GetDisplayName()); err != nil {
		return nil, err
	}

	hash, err := password.Hash(req.GetPassword(), s.cfg.Password)
	if err != nil {
		return nil, s.status(ctx, err)
	}
	user, err := s.cfg.Store.CreateUser(ctx, userstore.User{
		ID:           uuid.NewString(),
		Email:        email,
		DisplayName:  req.GetDisplayName(),
		PasswordHash: hash,
		CreateTime:   time.Now(),
	})
	if err != nil {
		return nil, s.status(ctx, err)
	}
	return &userv1.SignUpResponse{User: userProto(user)}, nil
}

// checkSignUp applies the contract's rules again, cheaply.
func checkSignUp(email, pw, displayName string) error {
	local, domain, ok := strings.Cut(email, "@")
	if !ok || local == "" || domain == "" || len(email) > maxEmailBytes || !utf8.ValidString(email) {
		return status.Error(codes.InvalidArgument, "invalid email address")
	}
	if utf8.RuneCountInString(pw) < minPasswordChars || len(pw) > maxPasswordBytes {
		return status.Error(codes.InvalidArgument, "password must be 12 characters to 128 bytes long")
	}
	n := utf8.RuneCountInString(displayName)
	if n == 0 || n > maxDisplayNameChars || !utf8.ValidString(displayName) ||
		strings.IndexFunc(displayName, isControl) >= 0 {
		return status.Error(codes.InvalidArgument, "invalid display name")
	}
	return nil
}

func isControl(r rune) bool { return unicode.In(r, unicode.Cc, unicode.Cf) }

// Login checks the password and starts a session. An unknown address and
// a wrong password are the same error, and take the same time.
func (s *Server) Login(ctx context.Context, req *userv1.LoginRequest) (*userv1.LoginResponse, error) {
	pw := req.GetPassword()
	if len(pw) > maxPasswordBytes {
		return nil, errInvalidCredentials
	}
	user, err := s.cfg.Store.UserByEmail(ctx, req.GetEmail())
	if errors.Is(err, userstore.ErrNotFound) {
		_ = s.verify(pw, s.dummyHash)
		return nil, errInvalidCredentials
	}
	if err != nil {
		return nil, s.status(ctx, err)
	}
	if err := s.verify(pw, user.PasswordHash); err != nil {
		if !errors.Is(err, password.ErrMismatch) {
			s.log.ErrorContext(ctx, "checking a stored password hash", "user_id", user.ID, "error", err)
		}
		return nil, errInvalidCredentials
	}
	s.upgradeHash(ctx, user.ID, user.PasswordHash, pw)

	access, claims, err := s.issue(user.ID, uuid.NewString())
	if err != nil {
		return nil, s.status(ctx, err)
	}
	refresh, refreshHash := newRefreshToken()
	now := time.Now()
	err = s.cfg.Store.StartSession(ctx,
		userstore.Session{
			ID: claims.SessionID, UserID: user.ID, CreateTime: now, AccessExpiry: claims.Expiry,
		},
		userstore.RefreshToken{Hash: refreshHash, Expiry: now.Add(s.cfg.RefreshTokenTTL)})
	if err != nil {
		return nil, s.status(ctx, err)
	}
	return &userv1.LoginResponse{
		AccessToken:  access,
		RefreshToken: refresh,
		ExpiresIn:    expiresIn(claims),
		TokenType:    TokenType,
	}, nil
}

// upgradeHash replaces a stored hash made with other parameters than the
// configured ones. The login goes on whatever happens: the old hash still
// works.
func (s *Server) upgradeHash(ctx context.Context, userID, stored, pw string) {
	if !password.NeedsRehash(stored, s.cfg.Password) {
		return
	}
	hash, err := password.Hash(pw, s.cfg.Password)
	if err == nil {
		err = s.cfg.Store.SetPasswordHash(ctx, userID, hash)
	}
	if err != nil {
		s.log.WarnContext(ctx, "upgrading a password hash", "user_id", userID, "error", err)
	}
}

// Refresh exchanges a refresh token for a new access token and a new
// refresh token in the same session. A token presented a second time
// revokes its session: the revocation and its SessionRevoked event commit,
// and the caller is refused.
func (s *Server) Refresh(ctx context.Context, req *userv1.RefreshRequest) (*userv1.RefreshResponse, error) {
	presented, ok := parseRefreshToken(req.GetRefreshToken())
	if !ok {
		return nil, errInvalidRefreshToken
	}
	refresh, refreshHash := newRefreshToken()
	now := time.Now()

	var access string
	var claims accesstoken.Claims
	var reuse *userstore.ReuseError
	err := s.cfg.Store.InTx(ctx, func(tx *userstore.Tx) error {
		sess, err := tx.UseRefreshToken(ctx, presented, now)
		if errors.As(err, &reuse) {
			return s.announce(ctx, tx, reuse.Revocation)
		}
		if err != nil {
			return err
		}
		if access, claims, err = s.issue(sess.UserID, sess.ID); err != nil {
			return err
		}
		next := userstore.RefreshToken{Hash: refreshHash, Expiry: now.Add(s.cfg.RefreshTokenTTL)}
		return tx.ContinueSession(ctx, sess.ID, next, claims.Expiry)
	})
	if err != nil {
		return nil, s.status(ctx, err)
	}
	if reuse != nil {
		s.cfg.Outbox.Notify()
		s.log.WarnContext(ctx, "refresh token reused; session revoked",
			"audit", "session_revoked",
			"reason", string(userstore.ReasonRefreshTokenReuse),
			"session_id", reuse.Revocation.SessionID,
			"user_id", reuse.Revocation.UserID)
		return nil, errInvalidRefreshToken
	}
	return &userv1.RefreshResponse{
		AccessToken:  access,
		RefreshToken: refresh,
		ExpiresIn:    expiresIn(claims),
		TokenType:    TokenType,
	}, nil
}

// Logout revokes the session of the caller's access token. Logging out of
// a session that is already revoked succeeds and changes nothing.
func (s *Server) Logout(ctx context.Context, _ *userv1.LogoutRequest) (*userv1.LogoutResponse, error) {
	tok, err := signedIn(ctx)
	if err != nil {
		return nil, err
	}
	if tok.Claims.SessionID == "" {
		return nil, errNoSession
	}
	var revoked bool
	err = s.cfg.Store.InTx(ctx, func(tx *userstore.Tx) error {
		rev, ok, err := tx.RevokeSession(ctx, tok.Claims.Subject, tok.Claims.SessionID,
			userstore.ReasonLogout, time.Now())
		if err != nil || !ok {
			return err
		}
		revoked = true
		return s.announce(ctx, tx, rev)
	})
	if err != nil {
		return nil, s.status(ctx, err)
	}
	if revoked {
		s.cfg.Outbox.Notify()
	}
	return &userv1.LogoutResponse{}, nil
}

// LogoutEverywhere revokes every live session of the caller and says how
// many there were.
func (s *Server) LogoutEverywhere(ctx context.Context, _ *userv1.LogoutEverywhereRequest) (
	*userv1.LogoutEverywhereResponse, error) {
	tok, err := signedIn(ctx)
	if err != nil {
		return nil, err
	}
	var revoked []userstore.Revocation
	err = s.cfg.Store.InTx(ctx, func(tx *userstore.Tx) error {
		var err error
		revoked, err = tx.RevokeSessions(ctx, tok.Claims.Subject,
			userstore.ReasonLogoutEverywhere, time.Now())
		if err != nil {
			return err
		}
		for _, rev := range revoked {
			if err := s.announce(ctx, tx, rev); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, s.status(ctx, err)
	}
	if len(revoked) > 0 {
		s.cfg.Outbox.Notify()
	}
	// No user has two billion sessions; should one, the count saturates
	// rather than wraps.
	n := min(len(revoked), math.MaxInt32)
	return &userv1.LogoutEverywhereResponse{RevokedSessions: int32(n)}, nil
}

// GetMe returns the caller's account.
func (s *Server) GetMe(ctx context.Context, _ *userv1.GetMeRequest) (*userv1.GetMeResponse, error) {
	tok, err := signedIn(ctx)
	if err != nil {
		return nil, err
	}
	user, err := s.cfg.Store.UserByID(ctx, tok.Claims.Subject)
	if err != nil {
		return nil, s.status(ctx, err)
	}
	return &userv1.GetMeResponse{User: userProto(user)}, nil
}

// GetUser returns an account to the order workload, only for the user the
// transaction acts for: any other id is PermissionDenied.
func (s *Server) GetUser(ctx context.Context, req *userv1.GetUserRequest) (*userv1.GetUserResponse, error) {
	tok, err := signedIn(ctx)
	if err != nil {
		return nil, err
	}
	if req.GetUserId() != tok.Claims.Subject {
		s.log.WarnContext(ctx, "request denied",
			"audit", "denied", "reason", "user_id is not the subject of the transaction")
		return nil, errPermissionDenied
	}
	user, err := s.cfg.Store.UserByID(ctx, req.GetUserId())
	if err != nil {
		return nil, s.status(ctx, err)
	}
	return &userv1.GetUserResponse{User: userProto(user)}, nil
}

// signedIn returns the caller's transaction token, which must name a user.
func signedIn(ctx context.Context) (*txntoken.Token, error) {
	tok, ok := txntoken.FromContext(ctx)
	if !ok || !tok.Claims.User() {
		return nil, errSignInRequired
	}
	return tok, nil
}

// issue mints an access token for the user in the session.
func (s *Server) issue(userID, sessionID string) (string, accesstoken.Claims, error) {
	return s.cfg.Tokens.Issue(accesstoken.Request{
		Subject:   userID,
		SessionID: sessionID,
		Scopes:    userissuer.Scopes,
	})
}

// expiresIn is the lifetime of the access token, in whole seconds.
func expiresIn(claims accesstoken.Claims) int64 {
	return int64(claims.Expiry.Sub(claims.IssuedAt) / time.Second)
}

var revocationReasons = map[userstore.Reason]userv1.RevocationReason{
	userstore.ReasonLogout:            userv1.RevocationReason_REVOCATION_REASON_LOGOUT,
	userstore.ReasonLogoutEverywhere:  userv1.RevocationReason_REVOCATION_REASON_LOGOUT_EVERYWHERE,
	userstore.ReasonRefreshTokenReuse: userv1.RevocationReason_REVOCATION_REASON_REFRESH_TOKEN_REUSE,
}

// announce writes the SessionRevoked event of rev into the outbox, in tx.
func (s *Server) announce(ctx context.Context, tx *userstore.Tx, rev userstore.Revocation) error {
	return s.cfg.Outbox.Enqueue(ctx, tx.SQL(), &userv1.SessionRevoked{
		SessionId:  rev.SessionID,
		UserId:     rev.UserID,
		ExpireTime: timestamppb.New(rev.AccessExpiry),
		Reason:     revocationReasons[rev.Reason],
	})
}

func userProto(u userstore.User) *userv1.User {
	return &userv1.User{
		UserId:      u.ID,
		Email:       u.Email,
		DisplayName: u.DisplayName,
		CreateTime:  timestamppb.New(u.CreateTime),
	}
}

// status maps an error of the store or of the libraries to what the client
// sees, in this one place. Nothing internal reaches the client: the cause
// of an Internal error is logged instead, since the call's log line only
// shows the status.
func (s *Server) status(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, userstore.ErrEmailTaken):
		return status.Error(codes.AlreadyExists, "email address already registered")
	case errors.Is(err, userstore.ErrInvalidRefreshToken):
		return errInvalidRefreshToken
	case errors.Is(err, userstore.ErrNotFound):
		return status.Error(codes.NotFound, "not found")
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "deadline exceeded")
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "canceled")
	}
	s.log.ErrorContext(ctx, "internal error", "error", err)
	return status.Error(codes.Internal, "internal error")
}
