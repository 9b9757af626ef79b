// Package revocation remembers the sessions that ended early, so that the
// gateway refuses their access tokens until those would have expired
// anyway. It is fed by the user service's SessionRevoked events, which
// every gateway process replays at start over the longest lifetime an
// access token may have, and then receives as they are published.
package revocation

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"example.com/rampart/platform/accesstoken"
	userv1 "example.com/rampart/proto/user/v1"
)

// Grace is how long after a session's last token expires the list still
// remembers it: the verifier accepts a token for up to its leeway past its
// "exp", and the list must not forget a session while one of its tokens is
// still accepted.
const Grace = accesstoken.MaxLeeway

// sweepEvery is how often, at most, a [List.Revoke] forgets the sessions
// whose tokens have all expired, so that replaying many revocations at
// start does not cost a sweep each.
const sweepEvery = time.Minute

// List is the set of revoked sessions still worth remembering. The zero
// value is not usable; call [New]. It is safe for concurrent use.
type List struct {
	now    func() time.Time
	loaded atomic.Bool

	mu        sync.RWMutex
	sessions  map[string]time.Time // session id → when its last token expires
	lastSweep time.Time
}

// New returns an empty list, not yet loaded: until [List.MarkLoaded] is
// called, [List.Revoked] cannot vouch for any session.
func New() *List {
	return &List{now: time.Now, sessions: map[string]time.Time{}}
}

// MarkLoaded records that every revocation that may still matter has been
// recorded, as when the replay at start has caught up.
func (l *List) MarkLoaded() { l.loaded.Store(true) }

// Loaded reports whether [List.MarkLoaded] was called.
func (l *List) Loaded() bool { return l.loaded.Load() }

// Revoke records that the session's tokens must be refused until until,
// plus [Grace]. A later call with an earlier time does not shorten the
// ban. Now and then it also forgets the sessions whose bans have ended.
func (l *List) Revoke(sessionID string, until time.Time) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastSweep) >= sweepEvery {
		for id, exp := range l.sessions {
			if now.After(exp.Add(Grace)) {
				delete(l.sessions, id)
			}
		}
		l.lastSweep = now
	}
	if until.After(l.sessions[sessionID]) {
		l.sessions[sessionID] = until
	}
}

// Revoked reports whether the session was revoked and its ban has not
// ended, and, in ok, whether the answer can be trusted: it cannot before
// the list is loaded, unless the token names no session, since no session
// means nothing to revoke.
func (l *List) Revoked(sessionID string) (revoked, ok bool) {
	if sessionID == "" {
		return false, true
	}
	l.mu.RLock()
	until, found := l.sessions[sessionID]
	l.mu.RUnlock()
	revoked = found && !l.now().After(until.Add(Grace))
	return revoked, revoked || l.Loaded()
}

// Len returns how many sessions the list holds, bans ended but not yet
// forgotten included.
func (l *List) Len() int {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return len(l.sessions)
}

// HandleSessionRevoked is the handler of the SessionRevoked event. It never
// fails, as a handler of replayed events must not.
func (l *List) HandleSessionRevoked(_ context.Context, event *userv1.SessionRevoked) error {
	l.Revoke(event.GetSessionId(), event.GetExpireTime().AsTime())
	return nil
}
