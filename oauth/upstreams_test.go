package oauth_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/ssobridge/ssobridge/gitlabapi/emulator"
	"github.com/ssobridge/ssobridge/oauth"
	"github.com/ssobridge/ssobridge/oauth/store"
	"github.com/ssobridge/ssobridge/oauth/store/memstore"
	"github.com/ssobridge/ssobridge/oauth/upstream"
	"github.com/ssobridge/ssobridge/oauth/upstream/openid"
)

// newOIDCFixture is a bridge whose one provider is an OpenID provider (the emulator's OpenID
// face); with gitlabToo, GitLab (the same emulator) is a provider beside it.
func newOIDCFixture(t *testing.T, gitlabToo bool) *fixture {
	t.Helper()
	kinds := []string{"oidc"}
	if gitlabToo {
		kinds = []string{"gitlab", "oidc"}
	}
	return newFixtureFor(t, memstore.New(), []string{"read_user"}, kinds)
}

// gitlabUser reads /api/v4/user with a token of a whole Mattermost sign-in, and the trace of
// that sign-in.
func (f *fixture) gitlabUser(token string) map[string]any {
	f.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, f.bridge.URL+"/api/v4/user", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := f.http.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	body := readBody(f.t, resp)
	if resp.StatusCode != http.StatusOK {
		f.t.Fatalf("/api/v4/user: %d %s", resp.StatusCode, body)
	}
	var u map[string]any
	d := json.NewDecoder(strings.NewReader(body))
	d.UseNumber()
	if err := d.Decode(&u); err != nil {
		f.t.Fatal(err)
	}
	return u
}

func idOf(t *testing.T, u map[string]any) int64 {
	t.Helper()
	n, err := u["id"].(json.Number).Int64()
	if err != nil {
		t.Fatalf("id %v is not an integer: %v", u["id"], err)
	}
	return n
}

// bindingOf returns the binding the identity step of a sign-in's trace records.
func bindingOf(t *testing.T, f *fixture, traceID string) string {
	t.Helper()
	for _, st := range f.traceOf(traceID)["steps"].([]any) {
		step := st.(map[string]any)
		if step["step"] == "identity" {
			d, _ := step["detail"].(map[string]any)
			b, _ := d["binding"].(string)
			return b
		}
	}
	t.Fatalf("trace %s has no identity step", traceID)
	return ""
}

// signInTraced runs a whole Mattermost sign-in and returns its access token and trace id.
func (f *fixture) signInTraced(state string) (token, traceID string) {
	f.t.Helper()
	resp := f.authorize(f.authorizeQuery(state))
	traceID = resp.Header.Get("X-Trace-Id")
	up := location(f.t, resp)
	back := location(f.t, f.get(up.String()))
	got := location(f.t, f.get(back.String())).Query()
	if got.Get("state") != state || got.Get("code") == "" {
		f.t.Fatalf("back at Mattermost with %v, want a code and the state %q", got, state)
	}
	r, body := f.postToken(f.tokenForm(got.Get("code")))
	if r.StatusCode != http.StatusOK {
		f.t.Fatalf("token: %d %v", r.StatusCode, body)
	}
	return body["access_token"].(string), traceID
}

func TestAnOpenIDProvidersPersonIsPresentedAsAGitLabUserWithAnIDThatStays(t *testing.T) {
	f := newOIDCFixture(t, false)
	token, trace := f.signInTraced("a+b/c=")
	u := f.gitlabUser(token)
	id := idOf(t, u)
	if id < oauth.DefaultFirstID {
		t.Errorf("id %d, want one the bridge allocated (from %d)", id, oauth.DefaultFirstID)
	}
	if u["username"] != "ada" || u["email"] != "ada@example.com" || u["name"] != "Ada Lovelace" || u["state"] != "active" {
		t.Errorf("user %v, want ada's, active", u)
	}
	if got := bindingOf(t, f, trace); got != "new id" {
		t.Errorf("first sign-in's binding %q, want new id", got)
	}
	token2, trace2 := f.signInTraced("again")
	if got := idOf(t, f.gitlabUser(token2)); got != id {
		t.Errorf("second sign-in's id %d, want %d", got, id)
	}
	if got := bindingOf(t, f, trace2); !strings.HasPrefix(got, "bound by subject") {
		t.Errorf("second sign-in's binding %q, want bound by subject", got)
	}
}

func TestTwoPeopleOfAnOpenIDProviderGetTwoIDs(t *testing.T) {
	f := newOIDCFixture(t, false)
	f.gl.AddUser(emulator.User{ID: 44, Username: "bob", Name: "Bob", Email: "bob@example.com"})
	ada, _ := f.signInTraced("s")
	f.gl.SignIn("bob")
	bob, _ := f.signInTraced("s")
	a, b := idOf(t, f.gitlabUser(ada)), idOf(t, f.gitlabUser(bob))
	if a == b {
		t.Fatalf("ada and bob share the id %d", a)
	}
}

func TestAnEmailChangeAtTheProviderKeepsTheID(t *testing.T) {
	f := newOIDCFixture(t, false)
	token, _ := f.signInTraced("s")
	id := idOf(t, f.gitlabUser(token))
	f.gl.SetUserEmail("ada", "ada.lovelace@example.com")
	token2, _ := f.signInTraced("s")
	u := f.gitlabUser(token2)
	if idOf(t, u) != id || u["email"] != "ada.lovelace@example.com" {
		t.Errorf("after an email change: %v, want id %d with the new email", u, id)
	}
}

func TestTheLiveReadOfAnOpenIDPersonComesFromUserinfo(t *testing.T) {
	fixtureConfig = liveUser
	defer func() { fixtureConfig = nil }()
	f := newOIDCFixture(t, false)
	token, _ := f.signInTraced("s")
	id := idOf(t, f.gitlabUser(token))
	f.gl.SetUserEmail("ada", "ada.new@example.com")
	u := f.gitlabUser(token) // same token: read at the provider, not from the snapshot
	if idOf(t, u) != id || u["email"] != "ada.new@example.com" {
		t.Errorf("live read: %v, want id %d with the email userinfo now says", u, id)
	}
}

func TestAnImportedEmailGivesThePersonTheirOldGitLabID(t *testing.T) {
	f := newOIDCFixture(t, false)
	if err := f.store.ImportIdentities(t.Context(), "corp", []store.IdentityImport{{Email: "ADA@example.com", ID: 42, Line: "users.json: user 1"}}, false); err != nil {
		t.Fatal(err)
	}
	token, trace := f.signInTraced("s")
	if id := idOf(t, f.gitlabUser(token)); id != 42 {
		t.Errorf("id %d, want 42, the id Mattermost holds for ada", id)
	}
	if got := bindingOf(t, f, trace); !strings.HasPrefix(got, "bound by email") {
		t.Errorf("binding %q, want bound by email", got)
	}
}

// chooser returns the chooser's form key and the providers it offers, from the authorize answer.
func chooser(t *testing.T, resp *http.Response) (key string, offered []string) {
	t.Helper()
	body := readBody(t, resp)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("authorize: %d %s, want the chooser", resp.StatusCode, body)
	}
	m := regexp.MustCompile(`name="choice" value="([^"]+)"`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no chooser form in %s", body)
	}
	for _, b := range regexp.MustCompile(`name="upstream" value="([^"]+)"`).FindAllStringSubmatch(body, -1) {
		offered = append(offered, b[1])
	}
	return m[1], offered
}

// choose posts the chooser's answer, as the browser that got the page.
func (f *fixture) choose(key, name string) *http.Response {
	f.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, f.bridge.URL+"/oauth/choose", strings.NewReader(url.Values{"choice": {key}, "upstream": {name}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := f.http.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	return resp
}

func TestWithSeveralProvidersThePersonChooses(t *testing.T) {
	for _, tt := range []struct {
		provider string
		wantID   func(int64) bool
	}{
		{"gitlab", func(id int64) bool { return id == 42 }},
		{"corp", func(id int64) bool { return id >= oauth.DefaultFirstID }},
	} {
		t.Run("choosing "+tt.provider, func(t *testing.T) {
			f := newOIDCFixture(t, true)
			key, offered := chooser(t, f.authorize(f.authorizeQuery("st")))
			if strings.Join(offered, ",") != "gitlab,corp" {
				t.Fatalf("offered %v, want gitlab and corp in the configured order", offered)
			}
			up := location(t, f.choose(key, tt.provider))
			back := location(t, f.get(up.String()))
			got := location(t, f.get(back.String())).Query()
			r, body := f.postToken(f.tokenForm(got.Get("code")))
			if r.StatusCode != http.StatusOK {
				t.Fatalf("token: %d %v", r.StatusCode, body)
			}
			if id := idOf(t, f.gitlabUser(body["access_token"].(string))); !tt.wantID(id) {
				t.Errorf("id %d", id)
			}
			// The back button: the choice is made.
			if resp := f.choose(key, tt.provider); resp.StatusCode != http.StatusBadRequest || !strings.Contains(readBody(t, resp), "already") {
				t.Errorf("a second answer: %d", resp.StatusCode)
			}
		})
	}
}

func TestTheChooserRefusesAProviderItDidNotOffer(t *testing.T) {
	f := newOIDCFixture(t, true)
	key, _ := chooser(t, f.authorize(f.authorizeQuery("st")))
	resp := f.choose(key, "evil")
	if body := readBody(t, resp); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "no provider called") {
		t.Errorf("got %d %s", resp.StatusCode, body)
	}
}

func TestTheChooserWantsTheBrowserThatGotIt(t *testing.T) {
	f := newOIDCFixture(t, true)
	key, _ := chooser(t, f.authorize(f.authorizeQuery("st")))
	f.http.Jar, _ = cookiejar.New(nil)
	resp := f.choose(key, "corp")
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a choice from another browser: %d, want 400", resp.StatusCode)
	}
}

func TestAnApplicationsProviderSkipsTheChooser(t *testing.T) {
	f := newOIDCFixture(t, true)
	f.app.Upstream = "corp"
	if err := f.store.UpdateApp(t.Context(), f.app); err != nil {
		t.Fatal(err)
	}
	up := location(t, f.authorize(f.authorizeQuery("st")))
	if !strings.HasPrefix(up.String(), f.gl.URL()+"/oauth/authorize") || up.Query().Get("nonce") == "" {
		t.Errorf("sent to %s, want the OpenID provider's authorize with a nonce", up)
	}
}

func TestTheChooserPutsTheApplicationsHintFirst(t *testing.T) {
	f := newOIDCFixture(t, true)
	f.app.UpstreamHint = "corp"
	if err := f.store.UpdateApp(t.Context(), f.app); err != nil {
		t.Fatal(err)
	}
	_, offered := chooser(t, f.authorize(f.authorizeQuery("st")))
	if strings.Join(offered, ",") != "corp,gitlab" {
		t.Errorf("offered %v, want the hint first", offered)
	}
}

func TestAGitLabIDInTheAllocatedRangeIsRefused(t *testing.T) {
	fixtureConfig = func(c *oauth.Config) { c.FirstID = 40 }
	defer func() { fixtureConfig = nil }()
	f := newOIDCFixture(t, true)
	key, _ := chooser(t, f.authorize(f.authorizeQuery("st")))
	up := location(t, f.choose(key, "gitlab"))
	resp := f.get(location(t, f.get(up.String())).String())
	if body := readBody(t, resp); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "SSOBRIDGE_OIDC_FIRST_ID") {
		t.Errorf("GitLab id 42 with allocated ids from 40: %d %s", resp.StatusCode, body)
	}
}

func TestASignInMadeBeforeProvidersHadNamesIsNeverSentToAnotherProvider(t *testing.T) {
	fixtureConfig = liveUser
	defer func() { fixtureConfig = nil }()
	f := newOIDCFixture(t, false)
	token, _ := f.signInTraced("s")
	sessions, err := f.store.ListSessions(t.Context(), f.app.ID)
	if err != nil || len(sessions) != 1 {
		t.Fatalf("sessions %v, %v", sessions, err)
	}
	// As a session of format 1 reads: no provider, its token GitLab's.
	sessions[0].Provider = ""
	if err := f.store.UpdateSession(t.Context(), sessions[0]); err != nil {
		t.Fatal(err)
	}
	f.gl.ClearRequests()
	resp, body := f.getUser("Authorization", "Bearer "+token)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("got %d %s, want 401: the GitLab this sign-in was made at is gone", resp.StatusCode, body)
	}
	if n := len(f.gl.Requests()); n != 0 {
		t.Errorf("the OpenID provider got %d requests with a token that was GitLab's", n)
	}
}

func TestAnOpenIDProviderCannotBeCalledGitLab(t *testing.T) {
	up, err := openid.New(openid.Config{Name: "gitlab", Issuer: "https://sso.example.com", ClientID: "c", ClientSecret: "s", RedirectURL: "https://b.example.com/oauth/callback"})
	if err != nil {
		t.Fatal(err)
	}
	sealer, _ := oauth.NewSealer(make([]byte, 32))
	_, err = oauth.New(oauth.Config{PublicURL: "https://b.example.com", Store: memstore.New(), Upstreams: []upstream.CallbackProvider{up}, Sealer: sealer})
	if err == nil || !strings.Contains(err.Error(), "the provider called gitlab must be a GitLab") {
		t.Errorf("got %v", err)
	}
}

func TestAnOpenIDProvidersRefusalIsFixedInItsOwnSettings(t *testing.T) {
	f := newOIDCFixture(t, false)
	up := location(t, f.authorize(f.authorizeQuery("st")))
	cb := f.bridge.URL + "/oauth/callback?" + url.Values{"state": {up.Query().Get("state")},
		"error": {"invalid_scope"}, "error_description": {"Invalid scopes: groups"}}.Encode()
	resp := f.get(cb)
	body := readBody(t, resp)
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "Corp SSO refused the sign-in") ||
		!strings.Contains(body, "SSOBRIDGE_OIDC_SCOPES") || strings.Contains(body, "read_user") {
		t.Errorf("got %d: %s", resp.StatusCode, body)
	}
}

func TestAProviderThatCannotBeAskedAgainAnswersTheUserFromTheSignInButRenewsNoToken(t *testing.T) {
	fixtureConfig = liveUser
	defer func() { fixtureConfig = nil }()
	f := newFixtureFor(t, memstore.New(), []string{"read_user"}, []string{"oidc-callback-only"})
	resp := f.authorize(f.authorizeQuery("s"))
	back := location(t, f.get(location(t, resp).String()))
	code := location(t, f.get(back.String())).Query().Get("code")
	r, body := f.postToken(f.tokenForm(code))
	if r.StatusCode != http.StatusOK || body["refresh_token"] == nil {
		t.Fatalf("token: %d %v", r.StatusCode, body)
	}
	if u := f.gitlabUser(body["access_token"].(string)); u["email"] != "ada@example.com" {
		t.Errorf("/api/v4/user %v, want the person of the sign-in", u)
	}
	r, refreshed := f.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {body["refresh_token"].(string)},
		"client_id": {f.app.ID}, "client_secret": {f.secret}})
	if r.StatusCode != http.StatusBadRequest || refreshed["error"] != "invalid_grant" || !strings.Contains(fmt.Sprint(refreshed["error_description"]), "cannot check this person") {
		t.Errorf("a refresh the provider cannot confirm: %d %v, want invalid_grant saying why", r.StatusCode, refreshed)
	}
}

// An application bound to a provider the bridge lacks is the administrator's mistake: the page
// says the application cannot be signed in to, the trace which provider it names.
func TestAnApplicationOfAMissingProviderNamesItInTheTraceOnly(t *testing.T) {
	f := newFixtureFor(t, memstore.New(), []string{"read_user"}, []string{"gitlab", "oidc"})
	app, _ := f.register(oauth.AppSpec{Name: "Bound", RedirectURIs: []string{mmRedirect}, Scopes: []string{"read_user"}, Confidential: true, Upstream: "secret-idp"})
	q := f.authorizeQuery("s")
	q.Set("client_id", app.ID)
	resp := f.authorize(q)
	page := readBody(t, resp)
	if !strings.Contains(page, "The bridge is not configured to sign people in to Bound.") || strings.Contains(page, "secret-idp") || strings.Contains(page, "ssobridge apps") {
		t.Errorf("%d:\n%s", resp.StatusCode, page)
	}
	if _, reason, fix := failureOf(t, f.traceOf(resp.Header.Get(oauth.HeaderTraceID))); !strings.Contains(reason, `"secret-idp"`) || !strings.Contains(fix, "--upstream") {
		t.Errorf("trace reason %q, fix %q", reason, fix)
	}
}
