package oauth_test

import (
	"errors"
	"html"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ssobridge/ssobridge/oauth"
	"github.com/ssobridge/ssobridge/oauth/store"
)

func TestAuthorizeRefusesWithAPageAndNeverRedirects(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name   string
		modify func(url.Values)
		says   string
	}{
		{"a missing client_id", func(q url.Values) { q.Del("client_id") }, "client_id is missing"},
		{"an unknown client_id", func(q url.Values) { q.Set("client_id", "nope") }, "No application with client_id &#34;nope&#34;"},
		{"a missing redirect_uri", func(q url.Values) { q.Del("redirect_uri") }, "redirect_uri is missing"},
		{"a redirect_uri with another scheme", func(q url.Values) { q.Set("redirect_uri", "http://mm.example.com/signup/gitlab/complete") }, "scheme"},
		{"a redirect_uri on another host", func(q url.Values) { q.Set("redirect_uri", "https://evil.example.com/signup/gitlab/complete") }, "host"},
		{"a redirect_uri with an extra path", func(q url.Values) { q.Set("redirect_uri", mmRedirect+"/x") }, "path"},
		{"a parameter given twice", func(q url.Values) { q.Add("redirect_uri", "https://evil.example.com/") }, "given 2 times"},
	}
	for _, tt := range tests {
		t.Run(tt.name+" gets a 400 page that says so", func(t *testing.T) {
			q := f.authorizeQuery("st")
			tt.modify(q)
			resp := f.authorize(q)
			body := readBody(t, resp)
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("status %d, want 400", resp.StatusCode)
			}
			if resp.Header.Get("Location") != "" {
				t.Fatalf("redirected to %s", resp.Header.Get("Location"))
			}
			if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
				t.Errorf("content type %q", resp.Header.Get("Content-Type"))
			}
			if !strings.Contains(body, tt.says) {
				t.Errorf("the page does not say %q:\n%s", tt.says, body)
			}
			if resp.Header.Get("X-Frame-Options") != "DENY" {
				t.Error("the page may be framed")
			}
		})
	}
}

func TestAuthorizeSendsErrorsAfterTheRedirectURIIsTrustedBackToTheClient(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name   string
		modify func(url.Values)
		code   string
	}{
		{"a missing response_type is invalid_request", func(q url.Values) { q.Del("response_type") }, "invalid_request"},
		{"response_type token is unsupported", func(q url.Values) { q.Set("response_type", "token") }, "unsupported_response_type"},
		{"a scope the app lacks is invalid_scope", func(q url.Values) { q.Set("scope", "read_user api") }, "invalid_scope"},
		{"Mattermost's openid scope on a read_user app is invalid_scope", func(q url.Values) { q.Set("scope", "openid") }, "invalid_scope"},
		{"PKCE plain is refused", func(q url.Values) {
			q.Set("code_challenge", strings.Repeat("a", 43))
			q.Set("code_challenge_method", "plain")
		}, "invalid_request"},
		{"a short code_challenge is refused", func(q url.Values) { q.Set("code_challenge", "abc"); q.Set("code_challenge_method", "S256") }, "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := f.authorizeQuery("state+with/odd=chars")
			tt.modify(q)
			loc := location(t, f.authorize(q))
			if got := loc.Scheme + "://" + loc.Host + loc.Path; got != mmRedirect {
				t.Fatalf("redirected to %s", got)
			}
			if loc.Query().Get("error") != tt.code {
				t.Errorf("error %q, want %q", loc.Query().Get("error"), tt.code)
			}
			if loc.Query().Get("error_description") == "" {
				t.Error("no error_description")
			}
			if loc.Query().Get("state") != "state+with/odd=chars" {
				t.Errorf("state %q", loc.Query().Get("state"))
			}
		})
	}
}

func TestAuthorizeSendsTheBrowserToGitLabWithTheBridgesOwnClientStateAndPKCE(t *testing.T) {
	f := newFixture(t)
	loc := location(t, f.authorize(f.authorizeQuery("mattermost-state")))
	if !strings.HasPrefix(loc.String(), f.gl.URL()+"/oauth/authorize?") {
		t.Fatalf("redirected to %s", loc)
	}
	q := loc.Query()
	if q.Get("client_id") != f.upstream.UID {
		t.Errorf("client_id %q is not the bridge's", q.Get("client_id"))
	}
	if q.Get("state") == "" || q.Get("state") == "mattermost-state" {
		t.Errorf("state %q: the bridge must use its own", q.Get("state"))
	}
	if q.Get("code_challenge_method") != "S256" || len(q.Get("code_challenge")) != 43 {
		t.Errorf("PKCE %q %q", q.Get("code_challenge_method"), q.Get("code_challenge"))
	}
	if q.Get("scope") != "read_user" {
		t.Errorf("scope %q", q.Get("scope"))
	}
}

func TestAuthorizeWithoutScopeGrantsTheAppsScopes(t *testing.T) {
	f := newFixture(t)
	_, body := f.postToken(f.tokenForm(f.code()))
	if body["scope"] != "read_user" {
		t.Errorf("scope %v, want the app's read_user", body["scope"])
	}
}

func TestAuthorizeRequiresPKCEOfPublicApps(t *testing.T) {
	f := newFixture(t)
	pub, _ := f.register(publicSpec())
	q := f.authorizeQuery("st")
	q.Set("client_id", pub.ID)
	q.Set("redirect_uri", "http://127.0.0.1:5555/cb")
	loc := location(t, f.authorize(q))
	if loc.Query().Get("error") != "invalid_request" || !strings.Contains(loc.Query().Get("error_description"), "PKCE") {
		t.Errorf("got %v", loc.Query())
	}
}

func TestPKCESettingsOfAnApp(t *testing.T) {
	f := newFixture(t)
	challenge := strings.Repeat("p", 43)
	t.Run("an app that requires PKCE refuses a request without it", func(t *testing.T) {
		app, _ := f.register(oauth.AppSpec{Name: "Strict", RedirectURIs: []string{"https://s.example.com/cb"}, Scopes: []string{"read_user"},
			Trusted: true, Confidential: true, RequirePKCE: true})
		q := url.Values{"response_type": {"code"}, "client_id": {app.ID}, "redirect_uri": {"https://s.example.com/cb"}, "state": {"s"}}
		if loc := location(t, f.authorize(q)); loc.Query().Get("error") != "invalid_request" || !strings.Contains(loc.Query().Get("error_description"), "requires PKCE") {
			t.Fatalf("got %s", loc)
		}
	})
	t.Run("an app that allows plain accepts it and checks the verifier", func(t *testing.T) {
		app, secret := f.register(oauth.AppSpec{Name: "Old", RedirectURIs: []string{"https://o.example.com/cb"}, Scopes: []string{"read_user"},
			Trusted: true, Confidential: true, AllowPlainPKCE: true})
		q := url.Values{"response_type": {"code"}, "client_id": {app.ID}, "redirect_uri": {"https://o.example.com/cb"}, "state": {"s"},
			"code_challenge": {challenge}, "code_challenge_method": {"plain"}}
		form := func(verifier string) url.Values {
			return url.Values{"grant_type": {"authorization_code"}, "client_id": {app.ID}, "client_secret": {secret},
				"redirect_uri": {"https://o.example.com/cb"}, "code": {f.toClient(q).Query().Get("code")}, "code_verifier": {verifier}}
		}
		if resp, body := f.postToken(form(challenge)); resp.StatusCode != 200 {
			t.Errorf("the right plain verifier: %d %v", resp.StatusCode, body)
		}
		if resp, body := f.postToken(form(strings.Repeat("q", 43))); resp.StatusCode != 400 || body["error"] != "invalid_grant" {
			t.Errorf("a wrong plain verifier: %d %v", resp.StatusCode, body)
		}
	})
}

// Echo drops a query pair with a bad escape: a state with one would have vanished on its way to
// the client, which then refuses the sign-in with no word from the bridge.
func TestAMalformedQueryIsRefusedNotDropped(t *testing.T) {
	f := newFixture(t)
	q := f.authorizeQuery("x").Encode()
	for name, u := range map[string]string{
		"authorize": f.bridge.URL + "/oauth/authorize?" + q + "&state=ab%zz",
		"callback":  f.bridge.URL + oauth.CallbackPath + "?code=c&state=ab%zz",
	} {
		resp := f.get(u)
		body := readBody(t, resp)
		if resp.StatusCode != 400 || resp.Header.Get("Location") != "" || !strings.Contains(body, "%zz") || !strings.Contains(body, "is not a valid escape") {
			t.Errorf("%s: %d %s", name, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
}

// The trace tells the administrator which URIs are registered; the public page does not tell
// whoever knows a client_id.
func TestUnregisteredRedirectURIsTraceListsTheRegisteredOnesAndThePageDoesNot(t *testing.T) {
	f := newFixture(t)
	q := f.authorizeQuery("s")
	q.Set("redirect_uri", "http://chat.example.com:8065/signup/gitlab/complete")
	resp := f.authorize(q)
	page := readBody(t, resp)
	_, reason, _ := failureOf(t, f.traceOf(resp.Header.Get(oauth.HeaderTraceID)))
	for _, want := range []string{"scheme:", "host:", "port:", "Registered: " + mmRedirect + ", https://mm.example.com/login/gitlab/complete."} {
		if !strings.Contains(reason, want) {
			t.Errorf("trace reason %q lacks %q", reason, want)
		}
	}
	if strings.Contains(page, "Registered:") || strings.Contains(page, "mm.example.com/login") {
		t.Errorf("the public page lists the registered redirect URIs:\n%s", page)
	}
}

// A near miss must not spell the registration out to whoever knows a client_id: the page says
// which parts differ, the trace what is registered in each.
func TestANearMissRedirectURIsPageNamesThePartsThatDifferAndNotTheRegisteredValues(t *testing.T) {
	f := newFixture(t)
	registered := "https://chat.internal.example/mm/signup/gitlab/complete?tenant=blue"
	app, _ := f.register(oauth.AppSpec{Name: "Hidden", RedirectURIs: []string{registered}, Scopes: []string{"read_user"}, Confidential: true})
	q := url.Values{"response_type": {"code"}, "client_id": {app.ID}, "state": {"s"},
		"redirect_uri": {"https://chat.example.org/signup/gitlab/complete?tenant=red"}}
	resp := f.authorize(q)
	page := html.UnescapeString(readBody(t, resp))
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(page, "its host, path and query differ from those of the registered redirect URI") {
		t.Errorf("%d, page:\n%s", resp.StatusCode, page)
	}
	for _, secret := range []string{"chat.internal.example", "/mm/", "blue", "ssobridge apps", "--redirect-uri", "--mattermost-url"} {
		if strings.Contains(page, secret) {
			t.Errorf("the page tells whoever knows the client_id %q:\n%s", secret, page)
		}
	}
	_, reason, fix := failureOf(t, f.traceOf(resp.Header.Get(oauth.HeaderTraceID)))
	for _, want := range []string{`host: it names host "chat.example.org" where the registered URI names "chat.internal.example"`,
		`path: it has path "/signup/gitlab/complete" where the registered URI has "/mm/signup/gitlab/complete"`,
		`query: it has query "tenant=red" where the registered URI has "tenant=blue"`, "Registered: " + registered} {
		if !strings.Contains(reason, want) {
			t.Errorf("trace reason %q lacks %q", reason, want)
		}
	}
	if !strings.Contains(fix, "ssobridge apps update "+app.ID+" --add-redirect-uri URI") {
		t.Errorf("trace fix %q", fix)
	}
}

// A dry run is checked and answered as the request would be, and leaves nothing: no parked
// sign-in (its return from GitLab is unknown), no trace, no count.
func TestADryRunAuthorizeLeavesNoSignIn(t *testing.T) {
	f := newFixture(t)
	before := f.traceCount()
	resp := f.get(f.bridge.URL+"/oauth/authorize?"+f.authorizeQuery("s").Encode(), oauth.HeaderProbe, oauth.ProbeDryRun)
	up := location(t, resp)
	if !strings.HasPrefix(up.String(), f.gl.URL()+"/oauth/authorize?") {
		t.Fatalf("dry run: to %s; want GitLab's authorize", up)
	}
	// Its answer names the request's own id, as every answer does, which no trace holds.
	if id := resp.Header.Get(oauth.HeaderTraceID); id == "" || f.hasTrace(id) {
		t.Fatalf("dry run: X-Trace-Id %q; want the request's own id, of no trace", id)
	}
	if cb := location(t, f.get(up.String())); f.get(cb.String()).StatusCode != http.StatusBadRequest {
		t.Error("the dry run's return from GitLab found a sign-in")
	}
	q := f.authorizeQuery("s")
	q.Set("redirect_uri", "https://evil.example/cb")
	if resp := f.get(f.bridge.URL+"/oauth/authorize?"+q.Encode(), oauth.HeaderProbe, oauth.ProbeDryRun); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a dry run with an unregistered redirect_uri: %d, want the same 400 page", resp.StatusCode)
	}
	// The callback of the dry run and the refused probe are traced; the accepted probe is not.
	if got := f.traceCount() - before; got != 2 {
		t.Errorf("%d traces made; want 2 (the unknown return, the refused probe), none for the accepted dry run", got)
	}
}

// traceCount is how many traces the store holds, once the pending ones are written.
// hasTrace reports whether the store holds the trace id.
func (f *fixture) hasTrace(id string) bool {
	f.t.Helper()
	f.srv.FlushTraces(f.t.Context())
	_, err := f.store.GetTrace(f.t.Context(), id)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		f.t.Fatal(err)
	}
	return err == nil
}

func (f *fixture) traceCount() int {
	f.t.Helper()
	f.srv.FlushTraces(f.t.Context())
	all, err := f.store.ListTraces(f.t.Context(), time.Time{}, 1<<20)
	if err != nil {
		f.t.Fatal(err)
	}
	return len(all)
}

// The scope error goes to the client's redirect URI, which anyone who knows it and the client_id
// can read: it names the scope refused, and the trace alone the scopes the application has.
func TestAScopeRefusalNamesTheApplicationsScopesInTheTraceOnly(t *testing.T) {
	f := newFixture(t)
	app, _ := f.register(oauth.AppSpec{Name: "Scoped", RedirectURIs: []string{"https://a.example/cb"}, Scopes: []string{"read_user", "profile"}, Confidential: true})
	q := url.Values{"response_type": {"code"}, "client_id": {app.ID}, "redirect_uri": {"https://a.example/cb"}, "state": {"s"}, "scope": {"api"}}
	resp := f.authorize(q)
	got := location(t, resp).Query()
	if got.Get("error") != "invalid_scope" || !strings.Contains(got.Get("error_description"), "not allowed the scope api") || strings.Contains(got.Get("error_description"), "profile") {
		t.Errorf("error %q: %q", got.Get("error"), got.Get("error_description"))
	}
	if _, reason, _ := failureOf(t, f.traceOf(resp.Header.Get(oauth.HeaderTraceID))); !strings.Contains(reason, "it has read_user profile") {
		t.Errorf("trace reason %q", reason)
	}
}
