package revocation

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	userv1 "example.com/rampart/proto/user/v1"
)

func TestRevokedUntilExpiry(t *testing.T) {
	t.Parallel()
	l := New()
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	l.now = func() time.Time { return now }

	err := l.HandleSessionRevoked(t.Context(), &userv1.SessionRevoked{
		SessionId:  "s1",
		ExpireTime: timestamppb.New(now.Add(5 * time.Minute)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if !l.Revoked("s1") {
		t.Fatal("revoked session not reported")
	}
	if l.Revoked("s2") || l.Revoked("") {
		t.Fatal("session never revoked reported as revoked")
	}

	// An earlier expiry for the same session must not shorten the ban.
	l.Revoke("s1", now.Add(time.Minute))
	now = now.Add(2 * time.Minute)
	l.Revoke("other", now.Add(time.Minute))
	if !l.Revoked("s1") {
		t.Fatal("a later event with an earlier expiry shortened the revocation")
	}

	now = now.Add(4 * time.Minute)
	l.Revoke("third", now.Add(time.Minute))
	if l.Revoked("s1") || l.Len() != 1 {
		t.Errorf("expired sessions kept: s1 revoked %v, %d entries", l.Revoked("s1"), l.Len())
	}
}
