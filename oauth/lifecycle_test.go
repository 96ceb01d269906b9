package oauth_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ssobridge/ssobridge/gitlabapi"
	"github.com/ssobridge/ssobridge/oauth"
	"github.com/ssobridge/ssobridge/oauth/store"
	"github.com/ssobridge/ssobridge/oauth/store/storetest"
)

// tokens runs a sign-in and returns the token response.
func (f *fixture) tokens() map[string]any {
	f.t.Helper()
	resp, body := f.postToken(f.tokenForm(f.code()))
	if resp.StatusCode != http.StatusOK {
		f.t.Fatalf("token: %d %v", resp.StatusCode, body)
	}
	return body
}

func (f *fixture) refreshForm(refresh string) url.Values {
	return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}, "client_id": {f.app.ID}, "client_secret": {f.secret}}
}

func (f *fixture) userStatus(access string) int {
	f.t.Helper()
	resp, _ := f.getUser("Authorization", "Bearer "+access)
	return resp.StatusCode
}

func TestRefreshRotatesThePair(t *testing.T) {
	f := newFixture(t)
	first := f.tokens()
	resp, second := f.postToken(f.refreshForm(first["refresh_token"].(string)))
	if resp.StatusCode != 200 {
		t.Fatalf("refresh: %d %v", resp.StatusCode, second)
	}
	if second["access_token"] == first["access_token"] || second["refresh_token"] == first["refresh_token"] || second["scope"] != "read_user" {
		t.Fatalf("not a new pair: %v", second)
	}
	if f.userStatus(first["access_token"].(string)) != 401 {
		t.Error("the old access token still works after rotation")
	}
	if f.userStatus(second["access_token"].(string)) != 200 {
		t.Error("the new access token does not work")
	}
}

// revokedDuringRenewal is a store on which an administrator's revocation lands while a refresh
// is under way: just before the refresh stores the next pair.
type revokedDuringRenewal struct{ store.Store }

func (r revokedDuringRenewal) FinishRefresh(ctx context.Context, ref store.Ref, attempt string, s *store.Session, next *store.TokenPair, ttl time.Duration) error {
	if err := r.RevokeSession(ctx, s.ID); err != nil {
		return err
	}
	return r.Store.FinishRefresh(ctx, ref, attempt, s, next, ttl)
}

func TestRefreshDoesNotUndoARevocationThatLandsDuringIt(t *testing.T) {
	fixtureConfig = func(c *oauth.Config) { c.Store = revokedDuringRenewal{c.Store} }
	defer func() { fixtureConfig = nil }()
	f := newFixture(t)
	first := f.tokens()
	resp, body := f.postToken(f.refreshForm(first["refresh_token"].(string)))
	if resp.StatusCode != 400 || body["error"] != "invalid_grant" || !strings.Contains(body["error_description"].(string), "revoked") {
		t.Fatalf("refresh during a revocation: %d %v", resp.StatusCode, body)
	}
	if f.userStatus(first["access_token"].(string)) != 401 {
		t.Error("the revoked sign-in's access token still works")
	}
	sessions, err := f.store.ListSessions(t.Context(), f.app.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(sessions) != 0 {
		t.Errorf("the refresh brought the revoked sign-in back: %d sessions", len(sessions))
	}
}

func TestRefreshTokenUsedTwiceRevokesTheWholeFamily(t *testing.T) {
	f := newFixture(t)
	first := f.tokens()
	_, second := f.postToken(f.refreshForm(first["refresh_token"].(string)))
	resp, body := f.postToken(f.refreshForm(first["refresh_token"].(string)))
	if resp.StatusCode != 400 || body["error"] != "invalid_grant" || !strings.Contains(body["error_description"].(string), "revoked") {
		t.Fatalf("reuse: %d %v", resp.StatusCode, body)
	}
	if f.userStatus(second["access_token"].(string)) != 401 {
		t.Error("the access token of the rotated pair survived the reuse")
	}
	if resp, _ := f.postToken(f.refreshForm(second["refresh_token"].(string))); resp.StatusCode != 400 {
		t.Error("the rotated refresh token survived the reuse")
	}
}

func TestRefreshRefusesAnotherClientAndAWiderScope(t *testing.T) {
	f := newFixture(t)
	other, otherSecret := f.register(f.appSpecFor("Other", "https://other.example.com/cb"))
	refresh := f.tokens()["refresh_token"].(string)
	v := f.refreshForm(refresh)
	v.Set("client_id", other.ID)
	v.Set("client_secret", otherSecret)
	if resp, body := f.postToken(v); resp.StatusCode != 400 || body["error"] != "invalid_grant" {
		t.Errorf("another client: %d %v", resp.StatusCode, body)
	}
	v = f.refreshForm(refresh)
	v.Set("scope", "read_user openid")
	if resp, body := f.postToken(v); resp.StatusCode != 400 || body["error"] != "invalid_scope" {
		t.Errorf("wider scope: %d %v", resp.StatusCode, body)
	}
	// Neither mistake spent the token.
	if resp, body := f.postToken(f.refreshForm(refresh)); resp.StatusCode != 200 {
		t.Errorf("the token's own client after the refusals: %d %v", resp.StatusCode, body)
	}
}

func TestRefreshOfAPersonBlockedAtGitLabIsRefused(t *testing.T) {
	f := newFixture(t)
	refresh := f.tokens()["refresh_token"].(string)
	f.gl.SetUserState("ada", gitlabapi.StateBlocked)
	resp, body := f.postToken(f.refreshForm(refresh))
	if resp.StatusCode != 400 || body["error"] != "invalid_grant" || !strings.Contains(body["error_description"].(string), "GitLab") {
		t.Fatalf("got %d %v", resp.StatusCode, body)
	}
}

func TestRefreshWhileGitLabIsDownKeepsTheRefreshToken(t *testing.T) {
	f := newFixture(t)
	refresh := f.tokens()["refresh_token"].(string)
	f.upstreamTokens.down.Store(true)
	resp, body := f.postToken(f.refreshForm(refresh))
	if resp.StatusCode != 503 || body["error"] != "temporarily_unavailable" {
		t.Fatalf("GitLab down: %d %v", resp.StatusCode, body)
	}
	f.upstreamTokens.down.Store(false)
	if resp, body := f.postToken(f.refreshForm(refresh)); resp.StatusCode != 200 {
		t.Fatalf("after GitLab is back: %d %v", resp.StatusCode, body)
	}
}

func TestCodePresentedTwiceRevokesTheTokensIssuedFromIt(t *testing.T) {
	f := newFixture(t)
	code := f.code()
	_, first := f.postToken(f.tokenForm(code))
	resp, body := f.postToken(f.tokenForm(code))
	if resp.StatusCode != 400 || body["error"] != "invalid_grant" || !strings.Contains(body["error_description"].(string), "revoked") {
		t.Fatalf("replay: %d %v", resp.StatusCode, body)
	}
	if f.userStatus(first["access_token"].(string)) != 401 {
		t.Error("the access token issued from the replayed code still works")
	}
	if resp, _ := f.postToken(f.refreshForm(first["refresh_token"].(string))); resp.StatusCode != 400 {
		t.Error("the refresh token issued from the replayed code still works")
	}
}

func (f *fixture) postClientForm(path string, form url.Values) (*http.Response, string) {
	f.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, f.bridge.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := f.http.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	return resp, readBody(f.t, resp)
}

func TestRevocation(t *testing.T) {
	t.Run("revoking an access token ends it, and only it", func(t *testing.T) {
		f := newFixture(t)
		tok := f.tokens()
		resp, body := f.postClientForm("/oauth/revoke", url.Values{"token": {tok["access_token"].(string)}, "client_id": {f.app.ID}, "client_secret": {f.secret}})
		if resp.StatusCode != 200 || strings.TrimSpace(body) != "{}" {
			t.Fatalf("revoke: %d %s", resp.StatusCode, body)
		}
		if f.userStatus(tok["access_token"].(string)) != 401 {
			t.Error("the revoked access token still works")
		}
		if resp, _ := f.postToken(f.refreshForm(tok["refresh_token"].(string))); resp.StatusCode != 200 {
			t.Error("revoking the access token took the refresh token too")
		}
	})
	t.Run("revoking a refresh token ends the whole grant", func(t *testing.T) {
		f := newFixture(t)
		tok := f.tokens()
		f.postClientForm("/oauth/revoke", url.Values{"token": {tok["refresh_token"].(string)}, "token_type_hint": {"refresh_token"}, "client_id": {f.app.ID}, "client_secret": {f.secret}})
		if f.userStatus(tok["access_token"].(string)) != 401 {
			t.Error("the access token survived the revocation of its refresh token")
		}
	})
	t.Run("an unknown token is answered like a revoked one", func(t *testing.T) {
		f := newFixture(t)
		resp, body := f.postClientForm("/oauth/revoke", url.Values{"token": {"nope"}, "client_id": {f.app.ID}, "client_secret": {f.secret}})
		if resp.StatusCode != 200 || strings.TrimSpace(body) != "{}" {
			t.Fatalf("got %d %s", resp.StatusCode, body)
		}
	})
	t.Run("another client may not revoke a token", func(t *testing.T) {
		f := newFixture(t)
		other, otherSecret := f.register(f.appSpecFor("Other", "https://other.example.com/cb"))
		tok := f.tokens()
		resp, _ := f.postClientForm("/oauth/revoke", url.Values{"token": {tok["access_token"].(string)}, "client_id": {other.ID}, "client_secret": {otherSecret}})
		if resp.StatusCode != 400 || f.userStatus(tok["access_token"].(string)) != 200 {
			t.Fatalf("another client's revocation: %d", resp.StatusCode)
		}
	})
	t.Run("revocation needs client authentication", func(t *testing.T) {
		f := newFixture(t)
		resp, _ := f.postClientForm("/oauth/revoke", url.Values{"token": {"x"}, "client_id": {f.app.ID}, "client_secret": {"gloas-wrong"}})
		if resp.StatusCode != 401 {
			t.Fatalf("got %d", resp.StatusCode)
		}
	})
}

func TestIntrospection(t *testing.T) {
	f := newFixture(t)
	other, otherSecret := f.register(f.appSpecFor("Other", "https://other.example.com/cb"))
	tok := f.tokens()
	introspect := func(token, id, secret string) map[string]any {
		t.Helper()
		resp, body := f.postClientForm("/oauth/introspect", url.Values{"token": {token}, "client_id": {id}, "client_secret": {secret}})
		if resp.StatusCode != 200 {
			t.Fatalf("introspect: %d %s", resp.StatusCode, body)
		}
		return decodeJSON(t, body)
	}
	got := introspect(tok["access_token"].(string), f.app.ID, f.secret)
	if got["active"] != true || got["client_id"] != f.app.ID || got["sub"] != "42" || got["username"] != "ada" || got["scope"] != "read_user" || got["token_type"] != "Bearer" {
		t.Errorf("an active access token: %v", got)
	}
	if got := introspect(tok["refresh_token"].(string), f.app.ID, f.secret); got["active"] != true || got["token_type"] != "refresh_token" {
		t.Errorf("an active refresh token: %v", got)
	}
	if got := introspect(tok["access_token"].(string), other.ID, otherSecret); len(got) != 1 || got["active"] != false {
		t.Errorf("another client learns about the token: %v", got)
	}
	if got := introspect("nope", f.app.ID, f.secret); len(got) != 1 || got["active"] != false {
		t.Errorf("an unknown token: %v", got)
	}
}

func TestTokenInfoIsGitLabs(t *testing.T) {
	f := newFixture(t)
	tok := f.tokens()
	resp := f.get(f.bridge.URL+"/oauth/token/info", "Authorization", "Bearer "+tok["access_token"].(string))
	body := readBody(t, resp)
	got := decodeJSON(t, body)
	if resp.StatusCode != 200 || got["resource_owner_id"] != float64(42) || got["application"].(map[string]any)["uid"] != f.app.ID {
		t.Fatalf("got %d %s", resp.StatusCode, body)
	}
	if s, ok := got["scope"].([]any); !ok || len(s) != 1 || s[0] != "read_user" {
		t.Errorf("scope %v", got["scope"])
	}
	if e, _ := got["expires_in"].(float64); e < 7000 || e > 7200 {
		t.Errorf("expires_in %v", got["expires_in"])
	}
	resp = f.get(f.bridge.URL+"/oauth/token/info", "Authorization", "Bearer nope")
	if resp.StatusCode != 401 || !strings.Contains(readBody(t, resp), "invalid_token") {
		t.Errorf("a bad token: %d", resp.StatusCode)
	}
}

func TestRevokeGrantsEndsEverySignInOfTheAppOrOfOnePerson(t *testing.T) {
	f := newFixture(t)
	ada := f.tokens()
	f.gl.SignIn("mallory")
	f.gl.SetUserState("mallory", gitlabapi.StateActive)
	mallory := f.tokens()
	n, err := oauth.RevokeGrants(t.Context(), f.store, f.app.ID, 42)
	if err != nil || n != 1 {
		t.Fatalf("revoked %d: %v", n, err)
	}
	if f.userStatus(ada["access_token"].(string)) != 401 || f.userStatus(mallory["access_token"].(string)) != 200 {
		t.Fatal("--user revoked the wrong person's sign-in")
	}
	if n, err := oauth.RevokeGrants(t.Context(), f.store, f.app.ID, 0); err != nil || n != 1 {
		t.Fatalf("revoked %d: %v", n, err)
	}
	if f.userStatus(mallory["access_token"].(string)) != 401 {
		t.Fatal("revoking everybody's left a sign-in")
	}
}

func TestNoUsableGitLabTokenIsStoredInClear(t *testing.T) {
	f := newFixture(t)
	f.tokens()
	f.srv.FlushTraces(t.Context()) // the traces too
	dump, err := f.store.(storetest.RawDumper).DumpRaw(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(dump), "upstream_token") {
		t.Fatal("the dump holds no trace: the traces were not looked at")
	}
	seen := f.upstreamTokens.list()
	if len(seen) < 2 {
		t.Fatalf("recorded %d upstream tokens; the test sees nothing", len(seen))
	}
	for _, tok := range seen {
		if strings.Contains(string(dump), tok) {
			t.Fatal("an upstream GitLab token is in the store in clear")
		}
	}
}

func TestRevocationAndIntrospectionAnswerErrorsAsOAuthJSON(t *testing.T) {
	f := newFixture(t)
	for _, path := range []string{"/oauth/revoke", "/oauth/introspect"} {
		resp := f.get(f.bridge.URL + path) // they take POST only
		body := readBody(t, resp)
		if resp.StatusCode != http.StatusMethodNotAllowed || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") || !strings.Contains(body, `"error"`) {
			t.Errorf("GET %s: %d %s %s", path, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
	}
}
