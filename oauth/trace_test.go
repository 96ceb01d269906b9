package oauth_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ssobridge/ssobridge/gitlabapi"
	"github.com/ssobridge/ssobridge/gitlabapi/emulator"
	"github.com/ssobridge/ssobridge/oauth"
)

// traceOf reads a trace from the operators' handler.
func (f *fixture) traceOf(id string) map[string]any {
	f.t.Helper()
	if id == "" {
		f.t.Fatal("no X-Trace-Id")
	}
	admin := httptest.NewServer(f.srv.AdminHandler(""))
	defer admin.Close()
	resp := f.get(admin.URL + "/debug/traces/" + id)
	if resp.StatusCode != 200 {
		f.t.Fatalf("trace %s: %d %s", id, resp.StatusCode, readBody(f.t, resp))
	}
	return decodeJSON(f.t, readBody(f.t, resp))
}

// failureOf returns the named failure of a trace's failed step, with its reason and fix.
func failureOf(t *testing.T, tr map[string]any) (failure, reason, fix string) {
	t.Helper()
	for _, st := range tr["steps"].([]any) {
		step := st.(map[string]any)
		if step["ok"] != true {
			return step["failure"].(string), step["reason"].(string), step["fix"].(string)
		}
	}
	failure, _ = tr["failure"].(string)
	fix, _ = tr["fix"].(string)
	return failure, "", fix
}

func TestTraceNamesEachFailureAndItsFix(t *testing.T) {
	// /api/v4/user asks GitLab each time, so that GitLab's refusals reach it.
	fixtureConfig = liveUser
	defer func() { fixtureConfig = nil }()
	tests := []struct {
		name    string
		upOpts  []emulator.Option
		provoke func(t *testing.T, f *fixture) string // returns the trace id the bridge gave
		failure string
		says    string
	}{
		{"unknown client_id", nil, func(t *testing.T, f *fixture) string {
			q := f.authorizeQuery("s")
			q.Set("client_id", "nope")
			return f.authorize(q).Header.Get(oauth.HeaderTraceID)
		}, "unknown_client", "apps list"},
		{"redirect_uri with another scheme", nil, func(t *testing.T, f *fixture) string {
			q := f.authorizeQuery("s")
			q.Set("redirect_uri", "http://mm.example.com/signup/gitlab/complete")
			return f.authorize(q).Header.Get(oauth.HeaderTraceID)
		}, "redirect_uri_not_registered", "scheme"},
		{"a scope the app lacks", nil, func(t *testing.T, f *fixture) string {
			q := f.authorizeQuery("s")
			q.Set("scope", "api")
			return f.authorize(q).Header.Get(oauth.HeaderTraceID)
		}, "scope_not_allowed", "apps update"},
		{"Mattermost's Scope holding openid", nil, func(t *testing.T, f *fixture) string {
			q := f.authorizeQuery("s")
			q.Set("scope", "openid")
			return f.authorize(q).Header.Get(oauth.HeaderTraceID)
		}, "mattermost_scope_openid", "Scope"},
		{"a state replayed", nil, func(t *testing.T, f *fixture) string {
			cb := f.toCallback(f.authorizeQuery("s"))
			f.get(cb.String())
			return f.get(cb.String()).Header.Get(oauth.HeaderTraceID)
		}, "state_replayed", "already used"},
		{"a state altered", nil, func(t *testing.T, f *fixture) string {
			cb := f.toCallback(f.authorizeQuery("s"))
			q := cb.Query()
			q.Set("state", q.Get("state")+"x")
			cb.RawQuery = q.Encode()
			return f.get(cb.String()).Header.Get(oauth.HeaderTraceID)
		}, "state_unknown", "altered"},
		{"a return from GitLab in another browser than the one that started", nil, func(t *testing.T, f *fixture) string {
			cb := f.toCallback(f.authorizeQuery("s"))
			return f.inAnotherBrowser(cb.String()).Header.Get(oauth.HeaderTraceID)
		}, "state_not_from_this_browser", "this browser"},
		{"GitLab unreachable", nil, func(t *testing.T, f *fixture) string {
			cb := f.toCallback(f.authorizeQuery("s"))
			f.upstreamTokens.down.Store(true)
			return f.get(cb.String()).Header.Get(oauth.HeaderTraceID)
		}, "upstream_unreachable", "SSOBRIDGE_GITLAB_URL"},
		{"GitLab rejecting the bridge's own client", nil, func(t *testing.T, f *fixture) string {
			cb := f.toCallback(f.authorizeQuery("s"))
			up := f.upstream
			up.Secret = "gloas-rotated"
			f.gl.AddApplication(up)
			return f.get(cb.String()).Header.Get(oauth.HeaderTraceID)
		}, "upstream_rejected_bridge_client", "SSOBRIDGE_GITLAB_CLIENT_SECRET"},
		{"a person GitLab blocks", nil, func(t *testing.T, f *fixture) string {
			cb := f.toCallback(f.authorizeQuery("s"))
			f.gl.SetUserState("ada", gitlabapi.StateBlocked)
			return f.get(cb.String()).Header.Get(oauth.HeaderTraceID)
		}, "upstream_user_refused", "account"},
		{"a person who is not active", []emulator.Option{emulator.WithExposeInactiveUsers()}, func(t *testing.T, f *fixture) string {
			cb := f.toCallback(f.authorizeQuery("s"))
			f.gl.SetUserState("ada", gitlabapi.StateDeactivated)
			return f.get(cb.String()).Header.Get(oauth.HeaderTraceID)
		}, "user_not_active", "activate"},
		{"a user Mattermost would refuse (no email)", nil, func(t *testing.T, f *fixture) string {
			f.gl.AddUser(emulator.User{ID: 77, Username: "noemail", Name: "No Email"})
			f.gl.SignIn("noemail")
			return f.get(f.toCallback(f.authorizeQuery("s")).String()).Header.Get(oauth.HeaderTraceID)
		}, "user_incomplete", "read_user"},
		{"a wrong client secret", nil, func(t *testing.T, f *fixture) string {
			v := f.tokenForm(f.code())
			v.Set("client_secret", "gloas-wrong")
			resp, _ := f.postToken(v)
			return resp.Header.Get(oauth.HeaderTraceID)
		}, "wrong_client_secret", "rotate-secret"},
		{"a code replayed", nil, func(t *testing.T, f *fixture) string {
			code := f.code()
			f.postToken(f.tokenForm(code))
			resp, _ := f.postToken(f.tokenForm(code))
			return resp.Header.Get(oauth.HeaderTraceID)
		}, "code_replayed", "twice"},
		{"a code redeemed by another client", nil, func(t *testing.T, f *fixture) string {
			resp, _ := f.postToken(f.asOtherClient(f.tokenForm(f.code())))
			return resp.Header.Get(oauth.HeaderTraceID)
		}, "code_other_client", "Another client"},
		{"a code presented by another client with the code's own redirect_uri", nil, func(t *testing.T, f *fixture) string {
			v := f.asOtherClient(f.tokenForm(f.code()))
			v.Set("redirect_uri", mmRedirect)
			resp, _ := f.postToken(v)
			return resp.Header.Get(oauth.HeaderTraceID)
		}, "code_other_client", "Another client"},
		{"a code presented by another client without redirect_uri", nil, func(t *testing.T, f *fixture) string {
			v := f.asOtherClient(f.tokenForm(f.code()))
			v.Del("redirect_uri")
			resp, _ := f.postToken(v)
			return resp.Header.Get(oauth.HeaderTraceID)
		}, "code_other_client", "Another client"},
		{"a code_verifier outside RFC 7636's form", nil, func(t *testing.T, f *fixture) string {
			v := f.tokenForm(f.codeForVerifier("a"))
			v.Set("code_verifier", "a")
			resp, _ := f.postToken(v)
			return resp.Header.Get(oauth.HeaderTraceID)
		}, "pkce_verifier_malformed", "43 to 128"},
		{"a token request without redirect_uri", nil, func(t *testing.T, f *fixture) string {
			v := f.tokenForm(f.code())
			v.Del("redirect_uri")
			resp, _ := f.postToken(v)
			return resp.Header.Get(oauth.HeaderTraceID)
		}, "redirect_uri_missing", "redirect_uri"},
		{"a token request with another redirect_uri", nil, func(t *testing.T, f *fixture) string {
			v := f.tokenForm(f.code())
			v.Set("redirect_uri", "https://mm.example.com/login/gitlab/complete")
			resp, _ := f.postToken(v)
			return resp.Header.Get(oauth.HeaderTraceID)
		}, "redirect_uri_mismatch", "Site URL"},
		{"GitLab no longer accepting the bridge's token for the person", nil, func(t *testing.T, f *fixture) string {
			tok := f.accessToken()
			f.gl.RevokeTokens("ada")
			return f.get(f.bridge.URL+"/api/v4/user", "Authorization", "Bearer "+tok).Header.Get(oauth.HeaderTraceID)
		}, "upstream_token_rejected", "sign in again"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.upOpts...)
			tr := f.traceOf(tt.provoke(t, f))
			failure, reason, fix := failureOf(t, tr)
			if failure != tt.failure {
				t.Fatalf("failure %q, want %q; trace %v", failure, tt.failure, tr)
			}
			if tr["outcome"] != "failed" {
				t.Errorf("outcome %v", tr["outcome"])
			}
			if !strings.Contains(reason+" "+fix, tt.says) {
				t.Errorf("reason %q and fix %q do not say %q", reason, fix, tt.says)
			}
		})
	}
}

func TestTraceOfACodePresentedAgainAfterARefusalSaysNothingWasRevoked(t *testing.T) {
	f := newFixture(t)
	code := f.code()
	v := f.tokenForm(code)
	v.Set("redirect_uri", "https://mm.example.com/login/gitlab/complete")
	first, _ := f.postToken(v)
	again, _ := f.postToken(f.tokenForm(code))
	if id := again.Header.Get(oauth.HeaderTraceID); id != first.Header.Get(oauth.HeaderTraceID) {
		t.Fatalf("the second request went to trace %q, the sign-in's is %q", id, first.Header.Get(oauth.HeaderTraceID))
	}
	tr := f.traceOf(first.Header.Get(oauth.HeaderTraceID))
	steps := tr["steps"].([]any)
	last := steps[len(steps)-1].(map[string]any)
	if last["failure"] != "code_burned" || !strings.Contains(last["fix"].(string), "redirect_uri_mismatch") || !strings.Contains(last["fix"].(string), "nothing was revoked") {
		t.Errorf("last step %v", last)
	}
	if tr["failure"] != "redirect_uri_mismatch" {
		t.Errorf("the sign-in's failure is %v, want the refusal that spent the code", tr["failure"])
	}
}

func TestTraceOfASuccessfulMattermostSignInFollowsTheDiagram(t *testing.T) {
	f := newFixture(t)
	resp := f.authorize(f.authorizeQuery("s"))
	id := resp.Header.Get(oauth.HeaderTraceID)
	up := location(t, resp)
	cb := location(t, f.get(up.String()))
	back := location(t, f.get(cb.String()))
	_, tok := f.postToken(f.tokenForm(back.Query().Get("code")))
	f.userStatus(tok["access_token"].(string))
	tr := f.traceOf(id)
	var steps []string
	for _, st := range tr["steps"].([]any) {
		s := st.(map[string]any)
		steps = append(steps, s["step"].(string)+":"+s["from"].(string)+">"+s["to"].(string))
	}
	// /api/v4/user answers from what the callback read: no second call to GitLab.
	want := "authorize:Mattermost>Bridge upstream_authorize:Bridge>GitLab callback:GitLab>Bridge upstream_token:Bridge>GitLab " +
		"upstream_user:Bridge>GitLab redirect_to_client:Bridge>Mattermost token:Mattermost>Bridge user:Mattermost>Bridge"
	if got := strings.Join(steps, " "); got != want {
		t.Errorf("steps\n %s\nwant\n %s", got, want)
	}
	if tr["outcome"] != "completed" || tr["username"] != "ada" || tr["app"] != "Mattermost" {
		t.Errorf("trace %v", tr)
	}
	raw, _ := json.Marshal(tr)
	secrets := append([]string{back.Query().Get("code"), tok["access_token"].(string), f.secret}, f.upstreamTokens.list()...)
	if len(secrets) < 5 {
		t.Fatalf("only %d values to look for: GitLab's tokens were not recorded", len(secrets))
	}
	for _, secret := range secrets {
		if strings.Contains(string(raw), secret) {
			t.Errorf("the trace holds a secret value")
		}
	}
}

func TestTraceOfASignInMattermostNeverFinishedIsStalled(t *testing.T) {
	fixtureConfig = func(c *oauth.Config) { c.StallAfter = 50 * time.Millisecond }
	defer func() { fixtureConfig = nil }()
	f := newFixture(t)
	resp := f.authorize(f.authorizeQuery("s"))
	id := resp.Header.Get(oauth.HeaderTraceID)
	f.get(location(t, f.get(location(t, resp).String())).String())
	time.Sleep(100 * time.Millisecond)
	tr := f.traceOf(id)
	if tr["outcome"] != "stalled" || tr["failure"] != "client_never_redeemed_code" || !strings.Contains(tr["fix"].(string), "token") {
		t.Fatalf("trace %v", tr)
	}
	wantStallExplained(t, tr, "Mattermost--x Bridge: POST /oauth/token (never came)")
}

func TestTraceOfASignInWhoseUserMattermostNeverFetchedIsStalled(t *testing.T) {
	fixtureConfig = func(c *oauth.Config) { c.StallAfter = 50 * time.Millisecond }
	defer func() { fixtureConfig = nil }()
	f := newFixture(t)
	resp := f.authorize(f.authorizeQuery("s"))
	id := resp.Header.Get(oauth.HeaderTraceID)
	back := location(t, f.get(location(t, f.get(location(t, resp).String())).String()))
	if resp, body := f.postToken(f.tokenForm(back.Query().Get("code"))); resp.StatusCode != 200 {
		t.Fatalf("token: %d %v", resp.StatusCode, body)
	}
	time.Sleep(100 * time.Millisecond)
	tr := f.traceOf(id)
	if tr["outcome"] != "stalled" || tr["failure"] != "client_never_fetched_user" || !strings.Contains(tr["fix"].(string), "/api/v4/user") {
		t.Fatalf("trace %v", tr)
	}
	wantStallExplained(t, tr, "Mattermost--x Bridge: GET /api/v4/user (never came)")
}

// wantStallExplained checks that a stalled trace's JSON says why, as the page does, and that its
// diagram ends on the arrow that never came, failed, with the failure under it.
func wantStallExplained(t *testing.T, tr map[string]any, arrow string) {
	t.Helper()
	if reason, _ := tr["reason"].(string); !strings.Contains(reason, "since") {
		t.Errorf("a stalled trace's reason is %q; want why, as the page says", reason)
	}
	mermaid, _ := tr["mermaid"].(string)
	if !strings.Contains(mermaid, "\n    "+arrow+"\n    Note over Bridge: ✗ "+tr["failure"].(string)+" — ") {
		t.Errorf("the diagram does not end on the arrow that never came (%s):\n%s", arrow, mermaid)
	}
}

func TestTraceEndpointsListFilterAndRender(t *testing.T) {
	f := newFixture(t)
	f.userStatus(f.tokens()["access_token"].(string)) // a whole Mattermost sign-in
	q := f.authorizeQuery("s")
	q.Set("client_id", "nope")
	failedID := f.authorize(q).Header.Get(oauth.HeaderTraceID)
	admin := httptest.NewServer(f.srv.AdminHandler("tok"))
	defer admin.Close()
	get := func(path string) (*http.Response, string) {
		resp := f.get(admin.URL+path, "Authorization", "Bearer tok")
		return resp, readBody(t, resp)
	}
	if resp := f.get(admin.URL + "/debug/traces"); resp.StatusCode != 401 {
		t.Errorf("traces without the admin token: %d", resp.StatusCode)
	}
	_, body := get("/debug/traces?outcome=failed")
	if !strings.Contains(body, failedID) || strings.Contains(body, `"outcome": "completed"`) {
		t.Errorf("outcome filter: %s", body)
	}
	_, body = get("/debug/traces?app=Mattermost&outcome=completed")
	if !strings.Contains(body, `"username": "ada"`) {
		t.Errorf("app filter: %s", body)
	}
	_, body = get("/debug/traces/" + failedID + "?format=mermaid")
	if !strings.HasPrefix(body, "sequenceDiagram") || !strings.Contains(body, "-x") {
		t.Errorf("mermaid: %s", body)
	}
	resp, body := get("/debug/traces/" + failedID + "?format=html")
	if !strings.Contains(body, "<svg") || !strings.Contains(body, "unknown_client") || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Errorf("html: %.300s", body)
	}
	if resp := f.get(f.bridge.URL + "/debug/traces"); resp.StatusCode != 404 {
		t.Errorf("traces on the public port: %d", resp.StatusCode)
	}
}

func TestErrorPagesShowTheTraceID(t *testing.T) {
	f := newFixture(t)
	q := f.authorizeQuery("s")
	q.Set("client_id", "nope")
	resp := f.authorize(q)
	if id := resp.Header.Get(oauth.HeaderTraceID); id == "" || !strings.Contains(readBody(t, resp), id) {
		t.Fatal("the error page does not show the trace id")
	}
}

func TestTraceNamesACodeRedeemedTooLate(t *testing.T) {
	fixtureConfig = func(c *oauth.Config) { c.CodeTTL = 50 * time.Millisecond }
	defer func() { fixtureConfig = nil }()
	f := newFixture(t)
	code := f.code()
	time.Sleep(100 * time.Millisecond)
	resp, body := f.postToken(f.tokenForm(code))
	if resp.StatusCode != 400 || body["error"] != "invalid_grant" || !strings.Contains(body["error_description"].(string), "expired") {
		t.Fatalf("a late code: %d %v", resp.StatusCode, body)
	}
	failure, _, fix := failureOf(t, f.traceOf(resp.Header.Get(oauth.HeaderTraceID)))
	if failure != "code_expired" || !strings.Contains(fix, "token endpoint") {
		t.Fatalf("failure %q fix %q", failure, fix)
	}
}

func TestTraceNamesAnExpiredAccessToken(t *testing.T) {
	fixtureConfig = func(c *oauth.Config) { c.AccessTokenTTL = time.Second }
	defer func() { fixtureConfig = nil }()
	f := newFixture(t)
	tok := f.tokens()
	if tok["expires_in"] != float64(1) {
		t.Fatalf("expires_in %v: the grace the bridge keeps records for must not show", tok["expires_in"])
	}
	time.Sleep(1100 * time.Millisecond)
	resp := f.get(f.bridge.URL+"/api/v4/user", "Authorization", "Bearer "+tok["access_token"].(string))
	if body := readBody(t, resp); resp.StatusCode != 401 || body != `{"message":"401 Unauthorized"}`+"\n" {
		t.Fatalf("an expired token: %d %s", resp.StatusCode, body)
	}
	failure, reason, fix := failureOf(t, f.traceOf(resp.Header.Get(oauth.HeaderTraceID)))
	if failure != "token_expired" || !strings.Contains(fix, "SSOBRIDGE_ACCESS_TOKEN_TTL") || !strings.Contains(reason, "(it lived 1s)") {
		t.Fatalf("failure %q reason %q fix %q; want token_expired saying when and how long it lived", failure, reason, fix)
	}
	// Introspection agrees that it is over.
	resp2, body := f.postClientForm("/oauth/introspect", url.Values{"token": {tok["access_token"].(string)}, "client_id": {f.app.ID}, "client_secret": {f.secret}})
	if resp2.StatusCode != 200 || !strings.Contains(body, `"active":false`) {
		t.Errorf("introspection of an expired token: %s", body)
	}
}

func TestTraceOfASignInThatNeverCameBackFromGitLabIsStalled(t *testing.T) {
	fixtureConfig = func(c *oauth.Config) { c.StallAfter = 50 * time.Millisecond }
	defer func() { fixtureConfig = nil }()
	f := newFixture(t)
	// The bridge's application at GitLab lost its redirect URI: GitLab shows its error page.
	up := f.upstream
	up.RedirectURIs = []string{"https://elsewhere.example/callback"}
	f.gl.AddApplication(up)
	resp := f.authorize(f.authorizeQuery("s"))
	id := resp.Header.Get(oauth.HeaderTraceID)
	if page := f.get(location(t, resp).String()); page.StatusCode == http.StatusFound {
		t.Fatal("GitLab sent the browser back although the redirect URI is not registered")
	}
	time.Sleep(100 * time.Millisecond)
	tr := f.traceOf(id)
	if tr["outcome"] != "stalled" || tr["failure"] != "never_back_from_gitlab" || !strings.Contains(tr["fix"].(string), "/oauth/callback") {
		t.Fatalf("trace %v", tr)
	}
	wantStallExplained(t, tr, "GitLab--x Bridge: 302 to /oauth/callback?code&state (never came)")
}

// Naming a real client_id proves nothing: anyone can, as often as they like. A request refused
// before its sign-in is parked is traced in the share of unattributed traces, with the
// application it named, and a flood of them never evicts the trace of a sign-in.
func TestRefusedAuthorizeRequestsNamingARealClientCannotEvictASignInsTrace(t *testing.T) {
	fixtureConfig = func(c *oauth.Config) { c.MaxTraces = 20 }
	defer func() { fixtureConfig = nil }()
	eachStore(t, func(t *testing.T, f *fixture) {
		_, signIn := f.signInTraced("kept")
		refused := []func(q url.Values){
			func(q url.Values) { q.Set("redirect_uri", "https://mm.example.com:8443/signup/gitlab/complete") },
			func(q url.Values) { q.Del("redirect_uri") },
			func(q url.Values) { q.Set("response_type", "token") },
			func(q url.Values) { q.Set("scope", "api") },
			func(q url.Values) { q.Set("code_challenge_method", "S256") },
		}
		for i := range 200 {
			q := f.authorizeQuery("flood")
			refused[i%len(refused)](q)
			resp := f.authorize(q)
			if resp.StatusCode != http.StatusBadRequest && resp.StatusCode != http.StatusFound || resp.Header.Get(oauth.HeaderTraceID) == "" {
				t.Fatalf("flood request %d: %d, trace %q", i, resp.StatusCode, resp.Header.Get(oauth.HeaderTraceID))
			}
			if loc := resp.Header.Get("Location"); resp.StatusCode == http.StatusFound && !strings.Contains(loc, "error=") {
				t.Fatalf("flood request %d was accepted: %s", i, loc)
			}
		}
		f.srv.FlushTraces(t.Context())
		if _, err := f.store.GetTrace(t.Context(), signIn); err != nil {
			t.Fatalf("the sign-in's trace is gone after the flood: %v", err)
		}
		// The refused requests are still traced (the newest of them, within their share), with the
		// application they named.
		all, err := f.store.ListTraces(t.Context(), time.Time{}, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		kept := 0
		for _, tr := range all {
			if tr.ID != signIn && tr.ClientID == f.app.ID && tr.App == f.app.Name {
				kept++
			}
		}
		if kept == 0 {
			t.Errorf("no refused request's trace names the application it named: %d traces", len(all))
		}
	})
}
