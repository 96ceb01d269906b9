package oauth_test

import (
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ssobridge/ssobridge/oauth"
	"github.com/ssobridge/ssobridge/oauth/store"
)

// untrusted registers an application that is not trusted and returns its authorize query.
func (f *fixture) untrusted(confidential bool) (url.Values, *store.Application, string) {
	f.t.Helper()
	app, secret := f.register(oauth.AppSpec{Name: "Wiki", RedirectURIs: []string{"https://wiki.example.com/cb"},
		Scopes: []string{"read_user"}, Confidential: confidential})
	q := url.Values{"response_type": {"code"}, "client_id": {app.ID}, "redirect_uri": {"https://wiki.example.com/cb"}, "state": {"keep"}}
	if !confidential {
		q.Set("code_challenge", strings.Repeat("c", 43))
		q.Set("code_challenge_method", "S256")
	}
	return q, app, secret
}

var consentKey = regexp.MustCompile(`name="consent" value="([^"]+)"`)

// consentPage runs the sign-in up to the consent page and returns its body and the browser's
// cookie, which the answer must come with.
func (f *fixture) consentPage(q url.Values) (body string, cookie *http.Cookie) {
	f.t.Helper()
	resp := f.get(f.toCallback(q).String())
	body = readBody(f.t, resp)
	if resp.StatusCode != http.StatusOK || !consentKey.MatchString(body) {
		f.t.Fatalf("no consent page: %d %s", resp.StatusCode, body)
	}
	return body, f.browserCookie()
}

// browserCookie is the browser's cookie, which a consent answer must come with.
func (f *fixture) browserCookie() *http.Cookie {
	f.t.Helper()
	bridge, _ := url.Parse(f.bridge.URL + "/oauth/consent")
	for _, c := range f.http.Jar.Cookies(bridge) {
		if c.Name == "ssobridge_browser" {
			return c
		}
	}
	f.t.Fatal("the browser has no ssobridge_browser cookie for /oauth/consent")
	return nil
}

// answer posts the consent form with exactly the cookie given (none when nil), not the
// browser's: the tests decide which browser the answer comes from.
func (f *fixture) answer(body string, cookie *http.Cookie, decision ...string) *http.Response {
	f.t.Helper()
	form := url.Values{"consent": {consentKey.FindStringSubmatch(body)[1]}, "decision": decision}
	req, _ := http.NewRequest(http.MethodPost, f.bridge.URL+"/oauth/consent", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if cookie != nil {
		req.AddCookie(cookie)
	}
	noJar := *f.http
	noJar.Jar = nil
	resp, err := noJar.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func TestConsentPageShowsTheAppAndScopesAndCannotBeFramed(t *testing.T) {
	f := newFixture(t)
	q, _, _ := f.untrusted(true)
	resp := f.get(f.toCallback(q).String())
	body := readBody(t, resp)
	for _, want := range []string{"Allow <strong>Wiki</strong>", "Read your GitLab profile", `id="allow"`, `id="deny"`, "ada"} {
		if !strings.Contains(body, want) {
			t.Errorf("the consent page lacks %q", want)
		}
	}
	if resp.Header.Get("X-Frame-Options") != "DENY" || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
		t.Errorf("the consent page can be framed: %v", resp.Header)
	}
}

func TestConsentAllowIssuesACodeAndDenyReturnsAccessDenied(t *testing.T) {
	f := newFixture(t)
	q, _, _ := f.untrusted(true)
	body, cookie := f.consentPage(q)
	loc := location(t, f.answer(body, cookie, "allow"))
	if loc.Host != "wiki.example.com" || loc.Query().Get("code") == "" || loc.Query().Get("state") != "keep" {
		t.Errorf("allow: %s", loc)
	}
	f2 := newFixture(t)
	q2, _, _ := f2.untrusted(true)
	body, cookie = f2.consentPage(q2)
	loc = location(t, f2.answer(body, cookie, "deny"))
	if loc.Query().Get("error") != "access_denied" || loc.Query().Get("state") != "keep" || loc.Query().Get("code") != "" {
		t.Errorf("deny: %s", loc)
	}
}

func TestConsentAnswerWithoutTheBrowsersCookieIsRefused(t *testing.T) {
	f := newFixture(t)
	q, _, _ := f.untrusted(true)
	body, _ := f.consentPage(q)
	resp := f.answer(body, &http.Cookie{Name: "ssobridge_browser", Value: "forged"}, "allow")
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Location") != "" {
		t.Fatalf("a cross-site answer got %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	// The request is spent: answering again with the right cookie finds nothing.
	if resp := f.answer(body, nil, "allow"); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("second answer: %d", resp.StatusCode)
	}
}

func TestConsentIsRememberedForAConfidentialAppUntilRevoked(t *testing.T) {
	f := newFixture(t)
	q, app, _ := f.untrusted(true)
	body, cookie := f.consentPage(q)
	f.answer(body, cookie, "allow")
	if got := f.toClient(q); got.Query().Get("code") == "" {
		t.Fatalf("asked again after allowing: %s", got)
	}
	if _, err := oauth.RevokeGrants(t.Context(), f.store, app.ID, 0); err != nil {
		t.Fatal(err)
	}
	f.consentPage(q) // asks again
}

func TestConsentIsAskedEveryTimeOfAPublicApp(t *testing.T) {
	f := newFixture(t)
	q, _, _ := f.untrusted(false)
	body, cookie := f.consentPage(q)
	f.answer(body, cookie, "allow")
	f.consentPage(q)
}

func TestConsentPagesOpenInTwoTabsCanBothBeAnswered(t *testing.T) {
	f := newFixture(t)
	q, _, _ := f.untrusted(true)
	first, cookie := f.consentPage(q)
	q.Set("state", "tab-2")
	second, _ := f.consentPage(q)
	for _, tab := range []struct{ body, state string }{{second, "tab-2"}, {first, "keep"}} {
		loc := location(t, f.answer(tab.body, cookie, "allow"))
		if loc.Query().Get("code") == "" || loc.Query().Get("state") != tab.state {
			t.Errorf("the answer of tab %s ended at %s", tab.state, loc)
		}
	}
}

// A consent page left unanswered must not leave a sign-in (holding the sealed GitLab token)
// behind for the refresh token's lifetime: it waits as long as the page does.
func TestAnAbandonedConsentPageLeavesNoSessionBehind(t *testing.T) {
	fixtureConfig = func(c *oauth.Config) { c.AuthorizationTTL = 300 * time.Millisecond }
	defer func() { fixtureConfig = nil }()
	f := newFixture(t)
	q, app, _ := f.untrusted(true)
	f.consentPage(q)
	sessions, err := f.store.ListSessions(t.Context(), app.ID)
	if err != nil || len(sessions) != 1 {
		t.Fatalf("while the page is open: %d sessions (%v), want 1", len(sessions), err)
	}
	time.Sleep(400 * time.Millisecond)
	if sessions, err := f.store.ListSessions(t.Context(), app.ID); err != nil || len(sessions) != 0 {
		t.Errorf("after the page expired: %d sessions (%v), want none", len(sessions), err)
	}
}

// An answer that says both allow and deny is neither: it is refused, and the page stays
// answerable.
func TestConsentAnswerWithTwoDecisionsIsRefused(t *testing.T) {
	f := newFixture(t)
	q, _, _ := f.untrusted(true)
	body, cookie := f.consentPage(q)
	if resp := f.answer(body, cookie, "allow", "deny"); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("an answer with decision=allow and decision=deny: %d, want 400", resp.StatusCode)
	}
	if loc := location(t, f.answer(body, cookie, "deny")); loc.Query().Get("error") != "access_denied" {
		t.Errorf("the page answered once properly after the refusal: %s, want access_denied", loc)
	}
}

// A reload of the consent page (its address is the return from the provider) while the sign-in
// waits there shows the same page again, answerable; once answered, a reload says so. Another
// browser with the same address gets no consent page.
func TestReloadingTheConsentPageShowsItAgainWhileTheSignInWaits(t *testing.T) {
	f := newFixture(t)
	q, _, _ := f.untrusted(true)
	callback := f.toCallback(q).String()
	first := readBody(t, f.get(callback))
	resp := f.get(callback)
	again := readBody(t, resp)
	if resp.StatusCode != http.StatusOK || !consentKey.MatchString(again) || !strings.Contains(again, "Allow <strong>Wiki</strong>") {
		t.Fatalf("the reloaded consent page: %d\n%s", resp.StatusCode, again)
	}
	if consentKey.FindStringSubmatch(again)[1] != consentKey.FindStringSubmatch(first)[1] {
		t.Errorf("the reloaded page answers another request than the first")
	}
	other := *f.http
	other.Jar = nil
	elsewhere, err := other.Get(callback)
	if err != nil {
		t.Fatal(err)
	}
	if body := readBody(t, elsewhere); elsewhere.StatusCode == http.StatusOK || consentKey.MatchString(body) {
		t.Errorf("another browser with the page's address got the consent page: %d", elsewhere.StatusCode)
	}
	loc := location(t, f.answer(again, f.browserCookie(), "allow"))
	if loc.Query().Get("code") == "" || loc.Query().Get("state") != "keep" {
		t.Fatalf("the answer of the reloaded page ended at %s", loc)
	}
	resp = f.get(callback)
	page := html.UnescapeString(readBody(t, resp))
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(page, "Consent already answered") || !strings.Contains(page, "reload of the consent page for Wiki, which was answered at") {
		t.Errorf("a reload after the answer: %d\n%s", resp.StatusCode, page)
	}
}

// The pages of a sign-in through the consent page name its application, whichever it is: none
// says Mattermost to a person signing in to another application.
func TestConsentPagesNameTheApplicationNotMattermost(t *testing.T) {
	f := newFixture(t)
	q, _, _ := f.untrusted(true)
	callback := f.toCallback(q).String()
	body := readBody(t, f.get(callback))
	f.answer(body, f.browserCookie(), "deny")
	pages := map[string]*http.Response{"a reload after the answer": f.get(callback)}
	form := url.Values{"consent": {consentKey.FindStringSubmatch(body)[1]}, "decision": {"allow"}}
	resp, err := f.http.PostForm(f.bridge.URL+"/oauth/consent", form)
	if err != nil {
		t.Fatal(err)
	}
	pages["the form sent again"] = resp
	// A trusted application's return from the provider, used twice.
	app, _ := f.register(oauth.AppSpec{Name: "Grafana", RedirectURIs: []string{"https://grafana.example.com/cb"}, Scopes: []string{"read_user"}, Confidential: true, Trusted: true})
	back := f.toCallback(url.Values{"response_type": {"code"}, "client_id": {app.ID}, "redirect_uri": {"https://grafana.example.com/cb"}, "state": {"g"}}).String()
	f.get(back)
	pages["a return from the provider used twice"] = f.get(back)
	for what, resp := range pages {
		page := html.UnescapeString(readBody(t, resp))
		name := "Wiki"
		if strings.Contains(what, "provider") {
			name = "Grafana"
		}
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(page, "Go back to "+name) || strings.Contains(page, "Mattermost") {
			t.Errorf("%s: %d, want a page that names %s and not Mattermost:\n%s", what, resp.StatusCode, name, page)
		}
	}
}
