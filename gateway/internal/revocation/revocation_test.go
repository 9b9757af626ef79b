package revocation

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	userv1 "example.com/rampart/proto/user/v1"
)

// answer is what Revoked says about one session.
type answer struct{ Revoked, OK bool }

func ask(l *List, sessionID string) answer {
	revoked, ok := l.Revoked(sessionID)
	return answer{revoked, ok}
}

// clock is a settable now for a List.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time          { return c.now }
func (c *clock) Advance(d time.Duration) { c.now = c.now.Add(d) }

func newList(t *testing.T) (*List, *clock) {
	t.Helper()
	c := &clock{now: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	l := New()
	l.now = c.Now
	l.MarkLoaded()
	return l, c
}

func TestRevokedUntilExpiryAndGrace(t *testing.T) {
	t.Parallel()
	l, c := newList(t)
	err := l.HandleSessionRevoked(t.Context(), &userv1.SessionRevoked{
		SessionId:  "s1",
		ExpireTime: timestamppb.New(c.now.Add(5 * time.Minute)),
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]answer{"s1": {true, true}, "s2": {false, true}, "": {false, true}}
	got := map[string]answer{"s1": ask(l, "s1"), "s2": ask(l, "s2"), "": ask(l, "")}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Revoked (-want +got):\n%s", diff)
	}

	// An earlier expiry for the same session must not shorten the ban.
	l.Revoke("s1", c.now.Add(time.Minute))
	c.Advance(2 * time.Minute)
	if !ask(l, "s1").Revoked {
		t.Fatal("a later event with an earlier expiry shortened the revocation")
	}

	// Past the token's expiry, but within the leeway a verifier grants:
	// the token may still be accepted, so the session is still refused.
	c.Advance(3*time.Minute + Grace)
	if !ask(l, "s1").Revoked {
		t.Fatal("session let go within the grace after its expiry")
	}
	c.Advance(time.Second)
	if ask(l, "s1").Revoked {
		t.Error("session still refused after its expiry and grace")
	}
}

// TestForgetsEndedBans checks that the list does not grow without bound:
// the sessions whose bans have ended are forgotten.
func TestForgetsEndedBans(t *testing.T) {
	t.Parallel()
	l, c := newList(t)
	l.Revoke("first", c.now) // the first sweep happens here, on an empty list
	for i := range 100 {
		l.Revoke(fmt.Sprint("old-", i), c.now.Add(time.Minute))
	}
	c.Advance(time.Minute + Grace + time.Second)
	l.Revoke("new-0", c.now.Add(time.Minute))
	if l.Len() != 1 {
		t.Errorf("Len() = %d after a sweep, want 1: the ended bans forgotten", l.Len())
	}
	c.Advance(time.Second)
	l.Revoke("new-1", c.now.Add(time.Minute))
	l.Revoke("new-2", c.now.Add(time.Minute))
	if l.Len() != 3 {
		t.Errorf("Len() = %d, want 3", l.Len())
	}
}

func TestNotLoadedCannotVouch(t *testing.T) {
	t.Parallel()
	l := New()
	l.Revoke("revoked", time.Now().Add(time.Minute))

	want := map[string]answer{
		"revoked": {true, true},   // known already: refused for good
		"other":   {false, false}, // may be among those not loaded yet
		"":        {false, true},  // no session: nothing to revoke
	}
	got := map[string]answer{}
	for id := range want {
		got[id] = ask(l, id)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("before loading, Revoked (-want +got):\n%s", diff)
	}

	l.MarkLoaded()
	if got := ask(l, "other"); got != (answer{false, true}) {
		t.Errorf("after loading, Revoked(other) = %+v, want not revoked, ok", got)
	}
}
