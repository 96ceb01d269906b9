package oauth_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ssobridge/ssobridge/gitlabapi/emulator"
	"github.com/ssobridge/ssobridge/oauth"
)

func publicSpec() oauth.AppSpec {
	return oauth.AppSpec{Name: "CLI", RedirectURIs: []string{"http://127.0.0.1/cb"}, Scopes: []string{"read_user"}, Trusted: true}
}

func TestCallbackReturnsTheClientsStateByteForByte(t *testing.T) {
	f := newFixture(t)
	// Mattermost's state is padded standard base64, with + / and =.
	for _, state := range []string{"eyJhY3Rpb24iOiJsb2dpbiIsInRva2VuIjoiYSsvYj0ifQ==", "a b&c=d%25e", "ünïcödé", strings.Repeat("x", 4000)} {
		got := f.toClient(f.authorizeQuery(state))
		if got.Query().Get("state") != state {
			t.Errorf("state %q came back as %q", state, got.Query().Get("state"))
		}
		if got.Query().Get("code") == "" {
			t.Errorf("no code for state %q", state)
		}
	}
}

func TestCallbackStateIsSingleUse(t *testing.T) {
	f := newFixture(t)
	cb := f.toCallback(f.authorizeQuery("st"))
	location(t, f.get(cb.String()))
	resp := f.get(cb.String())
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(readBody(t, resp), "already used") {
		t.Fatalf("a replayed callback got %d", resp.StatusCode)
	}
}

func TestCallbackRefusesAForgedState(t *testing.T) {
	f := newFixture(t)
	cb := f.toCallback(f.authorizeQuery("st"))
	q := cb.Query()
	q.Set("state", q.Get("state")+"x")
	cb.RawQuery = q.Encode()
	resp := f.get(cb.String())
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
		t.Fatalf("a forged state got %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
}

func TestCallbackPassesDenyAtGitLabBackAsAccessDenied(t *testing.T) {
	f := newFixture(t)
	f.gl.DenyNext()
	got := f.toClient(f.authorizeQuery("keep-me"))
	if got.Query().Get("error") != "access_denied" || got.Query().Get("state") != "keep-me" || got.Query().Get("code") != "" {
		t.Errorf("got %v", got.Query())
	}
	if !strings.HasPrefix(got.String(), mmRedirect+"?") {
		t.Errorf("sent to %s", got)
	}
}

func TestCallbackRefusesAnInactiveUserWithAPageThatSaysSo(t *testing.T) {
	t.Run("GitLab refusing the blocked account is shown", func(t *testing.T) {
		f := newFixture(t)
		// The person is signed in at GitLab, then blocked before GitLab sends them back.
		cb := f.toCallback(f.authorizeQuery("st"))
		f.gl.SetUserState("ada", "blocked")
		resp := f.get(cb.String())
		body := readBody(t, resp)
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "blocked") {
			t.Fatalf("got %d: %s", resp.StatusCode, body)
		}
	})
	t.Run("a user GitLab returns with a state other than active is refused", func(t *testing.T) {
		f := newFixture(t, emulator.WithExposeInactiveUsers())
		cb := f.toCallback(f.authorizeQuery("st"))
		f.gl.SetUserState("ada", "deactivated")
		resp := f.get(cb.String())
		body := readBody(t, resp)
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "is deactivated") || resp.Header.Get("Location") != "" {
			t.Fatalf("got %d: %s", resp.StatusCode, body)
		}
	})
}

func TestCallbackExplainsUpstreamFailures(t *testing.T) {
	t.Run("GitLab refusing the bridge's own secret names the settings to check", func(t *testing.T) {
		f := newFixture(t)
		cb := f.toCallback(f.authorizeQuery("st"))
		up := f.upstream
		up.Secret = "gloas-rotated"
		f.gl.AddApplication(up)
		resp := f.get(cb.String())
		body := readBody(t, resp)
		if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "SSOBRIDGE_GITLAB_CLIENT_SECRET") {
			t.Fatalf("got %d: %s", resp.StatusCode, body)
		}
	})
	t.Run("an upstream error other than access_denied is shown, not sent to the client", func(t *testing.T) {
		f := newFixture(t)
		upstream := location(t, f.authorize(f.authorizeQuery("st")))
		cb := f.bridge.URL + "/oauth/callback?" + url.Values{"state": {upstream.Query().Get("state")},
			"error": {"invalid_scope"}, "error_description": {"The requested scope is invalid."}}.Encode()
		resp := f.get(cb)
		body := readBody(t, resp)
		if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "read_user scope") {
			t.Fatalf("got %d: %s", resp.StatusCode, body)
		}
	})
	t.Run("a callback without state is refused", func(t *testing.T) {
		f := newFixture(t)
		resp := f.get(f.bridge.URL + "/oauth/callback?code=x")
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("got %d", resp.StatusCode)
		}
	})
}

// inAnotherBrowser loads rawURL in a browser without the fixture's cookies.
func (f *fixture) inAnotherBrowser(rawURL string) *http.Response {
	f.t.Helper()
	other := *f.http
	other.Jar = nil
	resp, err := other.Get(rawURL)
	if err != nil {
		f.t.Fatal(err)
	}
	return resp
}

func TestCallbackCompletesTwoSignInsStartedInTwoTabsOfOneBrowser(t *testing.T) {
	f := newFixture(t)
	first := f.toCallback(f.authorizeQuery("tab-1"))
	second := f.toCallback(f.authorizeQuery("tab-2"))
	for _, tab := range []struct {
		cb    string
		state string
	}{{second.String(), "tab-2"}, {first.String(), "tab-1"}} {
		loc := location(t, f.get(tab.cb))
		if loc.Query().Get("state") != tab.state || loc.Query().Get("code") == "" {
			t.Errorf("the sign-in of %s ended at %s", tab.state, loc)
		}
	}
}

func TestAuthorizeGivesTheBrowserACookieForItsSignIns(t *testing.T) {
	f := newFixture(t)
	resp := f.authorize(f.authorizeQuery("s"))
	var found *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "ssobridge_browser" {
			found = c
		}
	}
	if found == nil {
		t.Fatalf("no browser cookie: %v", resp.Header.Values("Set-Cookie"))
	}
	if found.Path != "/" || !found.HttpOnly || found.SameSite != http.SameSiteLaxMode || found.MaxAge <= 0 || len(found.Value) < 43 {
		t.Errorf("cookie %+v: want HttpOnly, SameSite=Lax, path / (authorize and callback), a lifetime and 256 random bits", found)
	}
	// The same browser keeps its value across sign-ins.
	again := f.authorize(f.authorizeQuery("s2"))
	for _, c := range again.Cookies() {
		if c.Name == "ssobridge_browser" && c.Value != found.Value {
			t.Error("a second sign-in in the same browser changed the cookie, which breaks the first")
		}
	}
}

// A return from GitLab after the parked request expired is the failure of the sign-in it
// belongs to, named state_expired in that sign-in's own trace (which would otherwise read as
// never back from GitLab).
func TestAReturnAfterTheSignInExpiredIsNamedInItsOwnTrace(t *testing.T) {
	fixtureConfig = func(c *oauth.Config) { c.AuthorizationTTL = time.Second }
	defer func() { fixtureConfig = nil }()
	f := newFixture(t)
	resp := f.authorize(f.authorizeQuery("s"))
	started := resp.Header.Get(oauth.HeaderTraceID)
	cb := location(t, f.get(location(t, resp).String()))
	time.Sleep(1100 * time.Millisecond)
	back := f.get(cb.String())
	if back.StatusCode != http.StatusBadRequest || back.Header.Get(oauth.HeaderTraceID) != started {
		t.Fatalf("late return: %d in trace %q; want 400 in the sign-in's trace %s", back.StatusCode, back.Header.Get(oauth.HeaderTraceID), started)
	}
	tr := f.traceOf(started)
	if failure, reason, _ := failureOf(t, tr); failure != "state_expired" || !strings.Contains(reason, "waits 1s") {
		t.Errorf("trace failure %q %q; want state_expired saying how long the bridge waits", failure, reason)
	}
}
