package oauth_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ssobridge/ssobridge/gitlabapi/emulator"
	"github.com/ssobridge/ssobridge/oauth"
	"github.com/ssobridge/ssobridge/oauth/signin"
	"github.com/ssobridge/ssobridge/oauth/store"
)

func (f *fixture) getUser(header ...string) (*http.Response, string) {
	f.t.Helper()
	resp := f.get(f.bridge.URL+"/api/v4/user", header...)
	return resp, readBody(f.t, resp)
}

func TestUserReturnsGitLabsOwnUserWithItsOwnID(t *testing.T) {
	f := newFixture(t)
	tok := f.accessToken()
	resp, body := f.getUser("Authorization", "Bearer "+tok)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	var u map[string]any
	if err := json.Unmarshal([]byte(body), &u); err != nil {
		t.Fatal(err)
	}
	if u["id"] != float64(42) || u["username"] != "ada" || u["email"] != "ada@example.com" || u["name"] != "Ada Lovelace" {
		t.Errorf("user %v", u)
	}
	// Fields the bridge does not read pass through.
	for _, k := range []string{"web_url", "avatar_url", "two_factor_enabled", "created_at"} {
		if _, ok := u[k]; !ok {
			t.Errorf("field %s was lost", k)
		}
	}
	if strings.Contains(body, f.upstream.Secret) {
		t.Error("the upstream secret leaked")
	}
}

func TestUserAcceptsTheAccessTokenQueryParameter(t *testing.T) {
	f := newFixture(t)
	resp := f.get(f.bridge.URL + "/api/v4/user?access_token=" + f.accessToken())
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, readBody(t, resp))
	}
}

func TestUserRefusesMissingAndBadTokensLikeGitLab(t *testing.T) {
	f := newFixture(t)
	tok := f.accessToken()
	for name, header := range map[string][]string{
		"no token":                           nil,
		"an unknown token":                   {"Authorization", "Bearer nope"},
		"a Basic header":                     {"Authorization", "Basic " + tok},
		"a token with one character changed": {"Authorization", "Bearer " + tok[:len(tok)-1] + string(tok[len(tok)-1]^1)},
	} {
		t.Run(name, func(t *testing.T) {
			resp, body := f.getUser(header...)
			if resp.StatusCode != 401 || body != `{"message":"401 Unauthorized"}`+"\n" {
				t.Fatalf("got %d %q", resp.StatusCode, body)
			}
		})
	}
}

func TestUserWhoseGitLabTokenWasRevokedIsUnauthorized(t *testing.T) {
	fixtureConfig = liveUser
	defer func() { fixtureConfig = nil }()
	f := newFixture(t)
	tok := f.accessToken()
	f.gl.RevokeTokens("ada")
	if resp, body := f.getUser("Authorization", "Bearer "+tok); resp.StatusCode != 401 {
		t.Fatalf("got %d %s", resp.StatusCode, body)
	}
}

func TestUserBlockedAtGitLabAfterSignInIsForbiddenWithGitLabsMessage(t *testing.T) {
	fixtureConfig = liveUser
	defer func() { fixtureConfig = nil }()
	f := newFixture(t)
	tok := f.accessToken()
	f.gl.SetUserState("ada", "blocked")
	resp, body := f.getUser("Authorization", "Bearer "+tok)
	if resp.StatusCode != 403 || !strings.Contains(body, "blocked") {
		t.Fatalf("got %d %s", resp.StatusCode, body)
	}
}

func TestUserRefreshesAnExpiredGitLabTokenAndKeepsTheNewOne(t *testing.T) {
	// GitLab's tokens live 2 s here, under x/oauth2's 10 s early-expiry margin: every use refreshes.
	fixtureConfig = liveUser
	defer func() { fixtureConfig = nil }()
	f := newFixture(t, emulator.WithAccessTokenTTL(2*time.Second))
	tok := f.accessToken()
	for i := range 3 {
		// GitLab rotates refresh tokens: had the bridge not kept the new one, the next refresh fails.
		if resp, body := f.getUser("Authorization", "Bearer "+tok); resp.StatusCode != 200 {
			t.Fatalf("request %d: %d %s", i, resp.StatusCode, body)
		}
	}
	refreshes := f.gl.Refreshes()
	if refreshes < 3 {
		t.Errorf("%d refreshes at GitLab, want one per request", refreshes)
	}
}

func TestConcurrentRequestsOfOneSessionShareOneGitLabRefresh(t *testing.T) {
	// GitLab's tokens live 2 s, under x/oauth2's 10 s margin: every request must refresh, and
	// GitLab accepts each refresh token once.
	fixtureConfig = liveUser
	defer func() { fixtureConfig = nil }()
	f := newFixture(t, emulator.WithAccessTokenTTL(2*time.Second))
	tok := f.accessToken()
	before := f.gl.Refreshes()
	const n = 8
	var wg sync.WaitGroup
	statuses := make(chan int, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, _ := f.getUser("Authorization", "Bearer "+tok)
			statuses <- resp.StatusCode
		}()
	}
	wg.Wait()
	close(statuses)
	for st := range statuses {
		if st != 200 {
			t.Fatalf("a concurrent request got %d: two refreshes of one GitLab token raced", st)
		}
	}
	// Each request renewed in turn, each with the refresh token the one before it got.
	if got := f.gl.Refreshes() - before; got != n {
		t.Errorf("GitLab saw %d refreshes for %d requests, want one each", got, n)
	}
}

// liveUser makes /api/v4/user ask GitLab on every request.
func liveUser(c *oauth.Config) { c.UserSnapshotMaxAge = -1 }

// userCallsAtGitLab counts the bridge's reads of /api/v4/user at the emulated GitLab.
func userCallsAtGitLab(f *fixture) int {
	n := 0
	for _, r := range f.gl.Requests() {
		if r.Path == "/api/v4/user" {
			n++
		}
	}
	return n
}

func TestUserRightAfterSignInAnswersFromTheCallbacksSnapshot(t *testing.T) {
	f := newFixture(t)
	tok := f.accessToken()
	before := userCallsAtGitLab(f)
	if before != 1 {
		t.Fatalf("the sign-in read the user at GitLab %d times, want once (the callback)", before)
	}
	// Blocked at GitLab after signing in: within the snapshot's age the bridge does not ask.
	f.gl.SetUserState("ada", "blocked")
	resp, body := f.getUser("Authorization", "Bearer "+tok)
	if resp.StatusCode != 200 || !strings.Contains(body, `"username":"ada"`) || !strings.Contains(body, `"state":"active"`) {
		t.Fatalf("got %d %s", resp.StatusCode, body)
	}
	if n := userCallsAtGitLab(f) - before; n != 0 {
		t.Errorf("/api/v4/user called GitLab %d times within the snapshot's age", n)
	}
}

func TestUserSnapshotOlderThanItsMaxAgeIsReadLive(t *testing.T) {
	fixtureConfig = func(c *oauth.Config) { c.UserSnapshotMaxAge = 50 * time.Millisecond }
	defer func() { fixtureConfig = nil }()
	f := newFixture(t)
	tok := f.accessToken()
	time.Sleep(100 * time.Millisecond)
	before := userCallsAtGitLab(f)
	f.gl.SetUserState("ada", "blocked")
	resp, body := f.getUser("Authorization", "Bearer "+tok)
	if resp.StatusCode != 403 || !strings.Contains(body, "blocked") {
		t.Fatalf("an old snapshot was served: %d %s", resp.StatusCode, body)
	}
	if n := userCallsAtGitLab(f) - before; n != 1 {
		t.Errorf("/api/v4/user called GitLab %d times, want 1", n)
	}
}

// tokenLookupsFail is a store whose token lookups fail while failing is set, as when Redis stops
// answering.
type tokenLookupsFail struct {
	store.Store
	failing *atomic.Bool
}

func (s tokenLookupsFail) GetAccess(ctx context.Context, ref store.Ref) (*store.Found, error) {
	if s.failing.Load() {
		return nil, errors.New("dial tcp 127.0.0.1:6379: connect: connection refused")
	}
	return s.Store.GetAccess(ctx, ref)
}

// A store that does not answer is the bridge's fault, not the token's: a 401 would end the
// person's sign-in at Mattermost, and make clients throw good tokens away.
func TestUserEndpointAnswers503NotUnauthorizedWhileTheStoreIsDown(t *testing.T) {
	failing := &atomic.Bool{}
	fixtureConfig = func(c *oauth.Config) { c.Store = tokenLookupsFail{c.Store, failing} }
	defer func() { fixtureConfig = nil }()
	f := newFixture(t)
	access := f.accessToken()
	failing.Store(true)
	for _, path := range []string{"/api/v4/user", "/oauth/token/info"} {
		// No challenge either: the token is not what was wrong (RFC 6750 §3).
		if got := f.get(f.bridge.URL+path, "Authorization", "Bearer "+access); got.StatusCode != http.StatusServiceUnavailable || got.Header.Get("WWW-Authenticate") != "" {
			t.Errorf("%s with the store down: %d, WWW-Authenticate %q; want 503 and none", path, got.StatusCode, got.Header.Get("WWW-Authenticate"))
		}
	}
	failing.Store(false)
	if got := f.userStatus(access); got != http.StatusOK {
		t.Errorf("the token once the store is back: %d, want 200", got)
	}
}

// A deleted application's tokens end with it, even where its sign-ins are still in the store.
func TestTokensOfADeletedApplicationAreRefused(t *testing.T) {
	f := newFixture(t)
	access := f.accessToken()
	if err := f.store.DeleteApp(t.Context(), f.app.ID); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/api/v4/user", "/oauth/token/info"} {
		if got := f.get(f.bridge.URL+path, "Authorization", "Bearer "+access); got.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s after the application's deletion: %d, want 401", path, got.StatusCode)
		}
	}
}

// withoutKey returns a rewrite of a JSON object that drops key; withKey one that sets it.
func withKey(key string, value any) func([]byte) []byte {
	return func(body []byte) []byte {
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			return body
		}
		if value == nil {
			delete(m, key)
		} else {
			m[key] = value
		}
		out, _ := json.Marshal(m)
		return out
	}
}

// What Mattermost would refuse in GitLab's user is refused, and named in the trace, whether
// the user is read at the callback or later, live, for /api/v4/user.
func TestAUserMattermostWouldRefuseIsNamedAtSignInAndWhenReadLive(t *testing.T) {
	cases := []struct {
		name    string
		rewrite func([]byte) []byte
		says    string
	}{
		{"id 0", withKey("id", 0), "the user id is 0"},
		{"an id that is a string", withKey("id", "42"), "not an integer"},
		{"no email", withKey("email", nil), "without an email address"},
	}
	for _, tc := range cases {
		t.Run(tc.name+" at the callback", func(t *testing.T) {
			f := newFixture(t)
			cb := f.toCallback(f.authorizeQuery("s"))
			f.upstreamTokens.userBody.Store(&tc.rewrite)
			resp := f.get(cb.String())
			if body := readBody(t, resp); resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, tc.says) {
				t.Errorf("callback: %d, want 502 saying %q: %.400s", resp.StatusCode, tc.says, body)
			}
			failure, reason, _ := failureOf(t, f.traceOf(resp.Header.Get(oauth.HeaderTraceID)))
			if failure != "user_incomplete" || !strings.Contains(reason, tc.says) {
				t.Errorf("trace: %s %q; want user_incomplete saying %q", failure, reason, tc.says)
			}
		})
		t.Run(tc.name+" read live", func(t *testing.T) {
			fixtureConfig = func(c *oauth.Config) { c.UserSnapshotMaxAge = -1 }
			defer func() { fixtureConfig = nil }()
			f := newFixture(t)
			access := f.accessToken()
			f.upstreamTokens.userBody.Store(&tc.rewrite)
			resp, body := f.getUser("Authorization", "Bearer "+access)
			if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, tc.says) {
				t.Errorf("/api/v4/user: %d, want 502 saying %q: %s", resp.StatusCode, tc.says, body)
			}
			failure, reason, _ := failureOf(t, f.traceOf(resp.Header.Get(oauth.HeaderTraceID)))
			if failure != "user_incomplete" || !strings.Contains(reason, tc.says) {
				t.Errorf("trace: %s %q; want user_incomplete saying %q", failure, reason, tc.says)
			}
		})
	}
}

func TestAPersonNoLongerActiveAtGitLabIsRefusedWhenReadLive(t *testing.T) {
	fixtureConfig = func(c *oauth.Config) { c.UserSnapshotMaxAge = -1 }
	defer func() { fixtureConfig = nil }()
	f := newFixture(t, emulator.WithExposeInactiveUsers())
	access := f.accessToken()
	f.gl.SetUserState("ada", "deactivated")
	resp, body := f.getUser("Authorization", "Bearer "+access)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "deactivated") {
		t.Errorf("/api/v4/user: %d %s; want 403 saying deactivated", resp.StatusCode, body)
	}
	if failure, _, _ := failureOf(t, f.traceOf(resp.Header.Get(oauth.HeaderTraceID))); failure != "user_not_active" {
		t.Errorf("trace failure %s, want user_not_active", failure)
	}
}

// userSteps counts the steps of a trace that read the user.
func userSteps(t *testing.T, tr map[string]any) (ok, failed int) {
	t.Helper()
	for _, st := range tr["steps"].([]any) {
		step := st.(map[string]any)
		if step["step"] != string(signin.StepUser) {
			continue
		}
		if step["ok"] == true {
			ok++
		} else {
			failed++
		}
	}
	return ok, failed
}

// A sign-in's trace shows the read of the user that ends it; a client that reads the user again
// and again with the same token adds no step to the trace (so nothing for the store to write), while a
// read that fails is traced whatever came before.
func TestOnlyTheFirstReadOfTheUserWithATokenIsTracedAndEveryFailureIs(t *testing.T) {
	f := newFixture(t)
	access := f.tokens()["access_token"].(string)
	var id string
	for range 3 {
		resp, _ := f.getUser("Authorization", "Bearer "+access)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("read the user: %d", resp.StatusCode)
		}
		id = resp.Header.Get(oauth.HeaderTraceID)
	}
	f.srv.FlushTraces(context.Background())
	if ok, _ := userSteps(t, f.traceOf(id)); ok != 1 {
		t.Errorf("three reads of the user with one token left %d steps in the sign-in's trace, want 1", ok)
	}
	if err := f.store.RevokeSession(context.Background(), store.RefOf(access).SessionID); err != nil {
		t.Fatal(err)
	}
	resp, _ := f.getUser("Authorization", "Bearer "+access)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("read the user after the revocation: %d", resp.StatusCode)
	}
	f.srv.FlushTraces(context.Background())
	if ok, failed := userSteps(t, f.traceOf(id)); ok != 1 || failed != 1 {
		t.Errorf("the trace has %d reads of the user and %d failed; want the first read and the failed one", ok, failed)
	}
}
