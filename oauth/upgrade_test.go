package oauth_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/ssobridge/ssobridge/oauth"
	"github.com/ssobridge/ssobridge/oauth/store"
	"github.com/ssobridge/ssobridge/oauth/store/redisstore"
	"github.com/ssobridge/ssobridge/oauth/store/storetest"
)

// A bridge upgraded over the Redis a bridge of format version 1 (v0.1) left goes on serving its
// sign-ins: the tokens Mattermost holds work, the code it has not redeemed yet redeems, a replay
// is still one, refresh tokens refresh, and the signing keys, consents and applications are read.
func TestSignInsOfFormat1WorkAfterTheUpgrade(t *testing.T) {
	opts, err := redisstore.ParseURL(storetest.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewUniversalClient(opts)
	rs := redisstore.New(c, "")
	fx := storetest.LoadFormat1(t, c, "store/redisstore/testdata/format1.json")
	if _, err := rs.Upgrade(t.Context()); err != nil {
		t.Fatal(err)
	}
	fixtureConfig = func(cfg *oauth.Config) { cfg.Store = rs }
	defer func() { fixtureConfig = nil }()
	f := newFixture(t) // the fixture's sealer has the key the records of the fixture were sealed with
	v := fx.Values
	bearer := func(access string) (*http.Response, string) {
		resp := f.get(f.bridge.URL+"/api/v4/user", "Authorization", "Bearer "+access)
		return resp, readBody(t, resp)
	}

	// Mattermost's access token reads the user (the snapshot taken at sign-in).
	resp, body := bearer(v["access"])
	if resp.StatusCode != http.StatusOK || decodeJSON(t, body)["id"] != float64(42) {
		t.Fatalf("/api/v4/user with an access token of format 1: %d %s", resp.StatusCode, body)
	}
	// The code Mattermost has not redeemed yet redeems, and its tokens work.
	form := url.Values{"client_id": {v["client_id"]}, "client_secret": {v["client_secret"]}, "code": {v["code"]},
		"grant_type": {"authorization_code"}, "redirect_uri": {v["redirect_uri"]}}
	tr, tok := f.postToken(form)
	if tr.StatusCode != http.StatusOK {
		t.Fatalf("redeeming a code of format 1: %d %v", tr.StatusCode, tok)
	}
	if resp, body := bearer(tok["access_token"].(string)); resp.StatusCode != http.StatusOK {
		t.Errorf("the token a code of format 1 redeemed for: %d %s", resp.StatusCode, body)
	}
	// A code redeemed before the upgrade is a replay, which revokes what was issued from it.
	form.Set("code", v["used_code"])
	if tr, tok := f.postToken(form); tr.StatusCode != http.StatusBadRequest || tok["error"] != "invalid_grant" ||
		!strings.Contains(tok["error_description"].(string), "already used") {
		t.Errorf("a code of format 1 presented again: %d %v, want invalid_grant, already used", tr.StatusCode, tok)
	}
	if resp, _ := bearer(v["access"]); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the access token of the replayed code: %d, want 401", resp.StatusCode)
	}

	// A refresh token of format 1 refreshes. The GitLab the fixture was made against is gone:
	// the person gets a token at this test's GitLab, sealed in the upgraded session.
	found, err := rs.GetRefresh(t.Context(), store.RefOf(v["refreshed_refresh"]))
	if err != nil || found.Session == nil {
		t.Fatalf("the refresh token of format 1: %v", err)
	}
	glAccess, glRefresh := f.gl.IssueToken("ada", f.upstream.UID)
	plain, _ := json.Marshal(store.UpstreamToken{AccessToken: glAccess, RefreshToken: glRefresh, TokenType: "Bearer"})
	found.Session.SealedToken = f.sealer.Seal(plain, found.Session.ID)
	if err := rs.UpdateSession(t.Context(), found.Session); err != nil {
		t.Fatal(err)
	}
	refreshForm := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {v["refreshed_refresh"]},
		"client_id": {v["client_id"]}, "client_secret": {v["client_secret"]}}
	if tr, tok := f.postToken(refreshForm); tr.StatusCode != http.StatusOK {
		t.Errorf("refreshing with a refresh token of format 1: %d %v", tr.StatusCode, tok)
	}
	// The one rotated before the upgrade is a reuse.
	refreshForm.Set("refresh_token", v["used_refresh"])
	if tr, tok := f.postToken(refreshForm); tr.StatusCode != http.StatusBadRequest || !strings.Contains(tok["error_description"].(string), "already used") {
		t.Errorf("a refresh token of format 1 rotated before the upgrade: %d %v, want invalid_grant, already used", tr.StatusCode, tok)
	}

	// The OpenID Connect sign-in's access token works, and the signing keys are the ones stored.
	if resp, body := bearer(v["wiki_access"]); resp.StatusCode != http.StatusOK {
		t.Errorf("/api/v4/user with the access token of format 1 of another application: %d %s", resp.StatusCode, body)
	}
	if resp := f.get(f.bridge.URL + "/oauth/discovery/keys"); resp.StatusCode != http.StatusOK || !strings.Contains(readBody(t, resp), `"kid"`) {
		t.Errorf("the signing keys of format 1: %d", resp.StatusCode)
	}
}
