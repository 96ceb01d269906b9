package oauth_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/ssobridge/ssobridge/oauth"
)

// bearerPaths are the endpoints a client calls with an access token.
var bearerPaths = []string{"/api/v4/user", "/oauth/userinfo", "/oauth/token/info"}

// checkRefusedToken checks the answer of a bearer endpoint to a refused token: a 401 whose
// WWW-Authenticate is challenge exactly (RFC 6750 §3), and the body of the endpoint's kind.
func checkRefusedToken(t *testing.T, f *fixture, path, challenge string, header ...string) {
	t.Helper()
	resp := f.get(f.bridge.URL+path, header...)
	body := readBody(t, resp)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("%s: status %d, want 401: %s", path, resp.StatusCode, body)
	}
	if got := resp.Header.Get("WWW-Authenticate"); got != challenge {
		t.Errorf("%s: WWW-Authenticate %q, want %q", path, got, challenge)
	}
	if strings.HasPrefix(path, "/api/") {
		if body != `{"message":"401 Unauthorized"}`+"\n" {
			t.Errorf("%s: body %s, want GitLab's bare message", path, body)
		}
		return
	}
	if got := decodeJSON(t, body); got["error"] != "invalid_token" || got["error_description"] == "" {
		t.Errorf("%s: body %s, want invalid_token with a description", path, body)
	}
}

func TestABearerRequestWithoutATokenIsChallengedWithoutAnErrorCode(t *testing.T) {
	f := newFixture(t)
	for _, path := range bearerPaths {
		checkRefusedToken(t, f, path, `Bearer realm="ssobridge"`)
		checkRefusedToken(t, f, path, `Bearer realm="ssobridge"`, "Authorization", "Basic "+basicHeader("a", "b"))
	}
}

func TestAnUnknownTokenIsChallengedAsInvalidToken(t *testing.T) {
	f := newFixture(t)
	for _, path := range bearerPaths {
		checkRefusedToken(t, f, path, `Bearer realm="ssobridge", error="invalid_token", error_description="The access token is invalid or was revoked"`,
			"Authorization", "Bearer "+strings.Repeat("x", 43))
	}
}

func TestARevokedTokenIsChallengedSayingItWasRevoked(t *testing.T) {
	f := newFixture(t)
	tok := f.tokens()
	resp, body := f.postClientForm("/oauth/revoke", url.Values{"token": {tok["refresh_token"].(string)}, "client_id": {f.app.ID}, "client_secret": {f.secret}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke: %d %s", resp.StatusCode, body)
	}
	for _, path := range bearerPaths {
		checkRefusedToken(t, f, path, `Bearer realm="ssobridge", error="invalid_token", error_description="The access token was revoked"`,
			"Authorization", "Bearer "+tok["access_token"].(string))
	}
}

func TestAnExpiredTokenIsChallengedSayingItExpired(t *testing.T) {
	fixtureConfig = func(c *oauth.Config) { c.AccessTokenTTL = time.Second }
	defer func() { fixtureConfig = nil }()
	f := newFixture(t)
	access := f.tokens()["access_token"].(string)
	time.Sleep(1100 * time.Millisecond)
	for _, path := range bearerPaths {
		checkRefusedToken(t, f, path, `Bearer realm="ssobridge", error="invalid_token", error_description="The access token expired; refresh it or sign in again"`,
			"Authorization", "Bearer "+access)
	}
}

func TestATokenWithoutTheScopeIsInsufficientScopeNamingTheScope(t *testing.T) {
	f := newFixture(t)
	// Mattermost's token has read_user and no openid; a relying party's has openid and no read_user.
	cfg := f.oidcClient(oauth2.AuthStyleInHeader)
	oidcToken, err := cfg.Exchange(t.Context(), f.signInWith(cfg.AuthCodeURL("s")).Get("code"))
	if err != nil {
		t.Fatal(err)
	}
	for path, tt := range map[string]struct{ token, challenge, body string }{
		"/api/v4/user": {oidcToken.AccessToken,
			`Bearer realm="ssobridge", error="insufficient_scope", error_description="the token's scope does not include read_user", scope="read_user"`,
			`{"message":"403 Forbidden - the token's scope does not include read_user"}`},
		"/oauth/userinfo": {f.accessToken(),
			`Bearer realm="ssobridge", error="insufficient_scope", error_description="the token's scope does not include openid", scope="openid"`,
			`{"error":"insufficient_scope","error_description":"the token's scope does not include openid"}`},
	} {
		resp := f.get(f.bridge.URL+path, "Authorization", "Bearer "+tt.token)
		body := strings.TrimSpace(readBody(t, resp))
		if resp.StatusCode != http.StatusForbidden || resp.Header.Get("WWW-Authenticate") != tt.challenge || body != tt.body {
			t.Errorf("%s: %d, WWW-Authenticate %q, body %s; want 403, %q, %s", path, resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body, tt.challenge, tt.body)
		}
	}
}
