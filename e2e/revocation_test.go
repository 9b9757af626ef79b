package e2e

import (
	"net/http"
	"slices"
	"testing"
	"time"

	"example.com/rampart/e2e/internal/scenario"
	userv1 "example.com/rampart/proto/user/v1"
)

// revocationDelay is the longest a logged-out access token may still be
// accepted, counted from the moment Logout returns to the client.
const revocationDelay = time.Second

// TestRevocation logs users out through the gateway and measures how long
// their access tokens go on working: the revocation travels from the user
// service's outbox over NATS to the gateway, which must refuse the token
// within a second of Logout returning. LogoutEverywhere ends every session
// of a user. A gateway that restarts has forgotten nothing: it replays the
// revocations before it serves again. It restarts the gateway, so it does
// not run in parallel with the other tests.
//
//nolint:paralleltest // it restarts the gateway of the stack that every test shares
func TestRevocation(t *testing.T) {
	if stack == nil {
		t.Skip("starts the whole platform; skipped under -short")
	}
	var revoked []string
	var delays []time.Duration
	for range 5 {
		u := scenario.SignUp(t, stack, scenario.ConnectJSON)
		if got := getMe(t, u.Token); got != http.StatusOK {
			t.Fatalf("a fresh session: status %d, want 200", got)
		}
		if _, err := u.Users.Logout(t.Context(), &userv1.LogoutRequest{}); err != nil {
			t.Fatalf("logging out: %v", err)
		}
		delays = append(delays, untilRefused(t, u.Token))
		revoked = append(revoked, u.Token)
	}
	slices.Sort(delays)
	t.Logf("from Logout returning to the token refused: min %v, median %v, max %v",
		delays[0], delays[len(delays)/2], delays[len(delays)-1])

	// Every session of one user, from two logins.
	u := scenario.SignUp(t, stack, scenario.ConnectJSON)
	login, err := scenario.NewClient(stack.GatewayURL(), scenario.ConnectJSON, "").Users.Login(
		t.Context(), &userv1.LoginRequest{Email: u.Email, Password: u.Password})
	if err != nil {
		t.Fatalf("logging in again: %v", err)
	}
	resp, err := u.Users.LogoutEverywhere(t.Context(), &userv1.LogoutEverywhereRequest{})
	if err != nil {
		t.Fatalf("logging out everywhere: %v", err)
	}
	if resp.GetRevokedSessions() != 2 {
		t.Errorf("LogoutEverywhere revoked %d sessions, want 2", resp.GetRevokedSessions())
	}
	for _, token := range []string{u.Token, login.GetAccessToken()} {
		untilRefused(t, token)
		revoked = append(revoked, token)
	}

	// The gateway starts again with nothing in memory.
	live := scenario.SignUp(t, stack, scenario.ConnectJSON)
	if err := stack.StopWorkload("gateway"); err != nil {
		t.Fatalf("stopping the gateway: %v", err)
	}
	if err := stack.StartWorkload(t.Context(), "gateway"); err != nil {
		t.Fatalf("starting the gateway again: %v", err)
	}
	for i, token := range revoked {
		if got := getMe(t, token); got != http.StatusUnauthorized {
			t.Errorf("after a restart, revoked token %d: status %d, want 401", i, got)
		}
	}
	if got := getMe(t, live.Token); got != http.StatusOK {
		t.Errorf("after a restart, a live session: status %d, want 200", got)
	}
}

func getMe(t *testing.T, token string) int {
	t.Helper()
	return scenario.PostJSON(t, stack, "/user.v1.UserService/GetMe", token, "{}").Status
}

// untilRefused calls GetMe with token until the gateway answers 401, and
// returns how long that took; it fails the test if it takes longer than
// revocationDelay. Calls that the rate limit refuses in the meantime are
// not an answer about the token and are retried.
func untilRefused(t *testing.T, token string) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		status := getMe(t, token)
		took := time.Since(start)
		switch {
		case status == http.StatusUnauthorized:
			if took > revocationDelay {
				t.Errorf("the token was refused %v after Logout returned, want under %v",
					took, revocationDelay)
			}
			return took
		case status != http.StatusOK && status != http.StatusTooManyRequests:
			t.Fatalf("status %d while waiting for the token to be refused", status)
		case took > 10*time.Second:
			t.Fatalf("the token is still accepted %v after Logout returned", took)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
