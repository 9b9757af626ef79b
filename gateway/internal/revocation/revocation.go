// Package revocation remembers the sessions that ended early, so that the
// gateway refuses their access tokens until those would have expired
// anyway. It is fed by the user service's SessionRevoked events.
package revocation

import (
	"context"
	"sync"
	"time"

	userv1 "example.com/rampart/proto/user/v1"
)

// List is the set of revoked sessions still worth remembering. The zero
// value is not usable; call [New]. It is safe for concurrent use.
type List struct {
	now func() time.Time

	mu       sync.RWMutex
	sessions map[string]time.Time // session id → when its last token expires
}

// New returns an empty list.
func New() *List {
	return &List{now: time.Now, sessions: map[string]time.Time{}}
}

// Revoke records that the session's tokens must be refused until until.
// It also forgets sessions whose tokens have all expired.
func (l *List) Revoke(sessionID string, until time.Time) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, exp := range l.sessions {
		if now.After(exp) {
			delete(l.sessions, id)
		}
	}
	if until.After(l.sessions[sessionID]) {
		l.sessions[sessionID] = until
	}
}

// Revoked reports whether the session was revoked. A token without a
// session is never revoked here.
func (l *List) Revoked(sessionID string) bool {
	if sessionID == "" {
		return false
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	_, ok := l.sessions[sessionID]
	return ok
}

// Len returns how many sessions the list holds.
func (l *List) Len() int {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return len(l.sessions)
}

// HandleSessionRevoked is the handler of the SessionRevoked event.
func (l *List) HandleSessionRevoked(_ context.Context, event *userv1.SessionRevoked) error {
	l.Revoke(event.GetSessionId(), event.GetExpireTime().AsTime())
	return nil
}
