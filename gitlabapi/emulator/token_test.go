package emulator

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"
)

func TestTokenErrors(t *testing.T) {
	// Each case gets a fresh fixture and a fresh code for "mattermost" (with an S256 challenge
	// when pkce is set), then posts the form that mutate makes of a valid redemption.
	tests := []struct {
		name    string
		pkce    bool
		mutate  func(f url.Values, h http.Header)
		status  int
		err     string
		errDesc string
	}{
		{name: "missing grant_type is invalid_request",
			mutate: func(f url.Values, h http.Header) { f.Del("grant_type") },
			status: 400, err: "invalid_request", errDesc: "Missing required parameter: grant_type."},
		{name: "the password grant is not offered",
			mutate: func(f url.Values, h http.Header) { f.Set("grant_type", "password") },
			status: 400, err: "unsupported_grant_type"},
		{name: "the client_credentials grant is not offered",
			mutate: func(f url.Values, h http.Header) { f.Set("grant_type", "client_credentials") },
			status: 400, err: "unsupported_grant_type"},
		{name: "missing redirect_uri is invalid_request, checked before the client",
			mutate: func(f url.Values, h http.Header) { f.Del("redirect_uri"); f.Del("client_secret") },
			status: 400, err: "invalid_request", errDesc: "Missing required parameter: redirect_uri."},
		{name: "no client credentials is invalid_client",
			mutate: func(f url.Values, h http.Header) { f.Del("client_id"); f.Del("client_secret") },
			status: 401, err: "invalid_client"},
		{name: "a confidential client without its secret is invalid_client",
			mutate: func(f url.Values, h http.Header) { f.Del("client_secret") },
			status: 401, err: "invalid_client"},
		{name: "a wrong secret is invalid_client",
			mutate: func(f url.Values, h http.Header) { f.Set("client_secret", mmSecret+"x") },
			status: 401, err: "invalid_client"},
		{name: "an unknown client is invalid_client",
			mutate: func(f url.Values, h http.Header) { f.Set("client_id", "nobody") },
			status: 401, err: "invalid_client"},
		{name: "another client's secret is invalid_client",
			mutate: func(f url.Values, h http.Header) { f.Set("client_secret", appSecret) },
			status: 401, err: "invalid_client"},
		{name: "an undecodable Basic header is invalid_client, even with good form credentials",
			mutate: func(f url.Values, h http.Header) { h.Set("Authorization", "Basic !!!") },
			status: 401, err: "invalid_client"},
		{name: "Basic halves that are not valid URL encoding are invalid_client",
			mutate: func(f url.Values, h http.Header) {
				h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("mattermost:%zz")))
			},
			status: 401, err: "invalid_client"},
		{name: "Basic credentials win over the form",
			mutate: func(f url.Values, h http.Header) {
				h.Set("Authorization", basic("mattermost", "wrong").Get("Authorization"))
			},
			status: 401, err: "invalid_client"},
		{name: "missing code is invalid_grant",
			mutate: func(f url.Values, h http.Header) { f.Del("code") },
			status: 400, err: "invalid_grant"},
		{name: "an unknown code is invalid_grant",
			mutate: func(f url.Values, h http.Header) { f.Set("code", "0000") },
			status: 400, err: "invalid_grant"},
		{name: "a code issued to another client is invalid_grant",
			mutate: func(f url.Values, h http.Header) {
				f.Set("client_id", "app")
				f.Set("client_secret", appSecret)
				f.Set("redirect_uri", appRedirect)
			},
			status: 400, err: "invalid_grant"},
		{name: "a redirect_uri other than the authorize one is invalid_grant",
			mutate: func(f url.Values, h http.Header) {
				f.Set("redirect_uri", "https://mm.example.com/login/gitlab/complete")
			},
			status: 400, err: "invalid_grant"},
		{name: "a missing code_verifier is invalid_request", pkce: true,
			mutate: func(f url.Values, h http.Header) { f.Del("code_verifier") },
			status: 400, err: "invalid_request", errDesc: "Missing required parameter: code_verifier."},
		{name: "a wrong code_verifier is invalid_grant", pkce: true,
			mutate: func(f url.Values, h http.Header) { f.Set("code_verifier", testVerifier+"x") },
			status: 400, err: "invalid_grant"},
		{name: "a code_verifier for a code without a challenge is invalid_grant, as in Doorkeeper",
			mutate: func(f url.Values, h http.Header) { f.Set("code_verifier", testVerifier) },
			status: 400, err: "invalid_grant"},
		{name: "a right code_verifier succeeds", pkce: true,
			mutate: func(f url.Values, h http.Header) {},
			status: 200},
		{name: "a redemption without PKCE succeeds",
			mutate: func(f url.Values, h http.Header) {},
			status: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t)
			q := authorizeParams("mattermost", mmRedirect, "scope", "read_user")
			form := tokenForm("grant_type", "authorization_code", "redirect_uri", mmRedirect,
				"client_id", "mattermost", "client_secret", mmSecret)
			if tt.pkce {
				q.Set("code_challenge", testChallenge)
				q.Set("code_challenge_method", "S256")
				form.Set("code_verifier", testVerifier)
			}
			form.Set("code", mustCode(t, fx.Server, q))
			h := http.Header{}
			tt.mutate(form, h)
			w := postToken(fx.Server, form, h)
			if w.Code != tt.status {
				t.Fatalf("status = %d, want %d; body %s", w.Code, tt.status, w.Body)
			}
			if cc, p := w.Header().Get("Cache-Control"), w.Header().Get("Pragma"); cc != "no-store" || p != "no-cache" {
				t.Errorf("Cache-Control %q, Pragma %q", cc, p)
			}
			body := decode(t, w.Body.Bytes())
			if tt.status == 200 {
				return
			}
			desc := tt.errDesc
			if desc == "" {
				desc = errorDescriptions[tt.err]
			}
			if body["error"] != tt.err || body["error_description"] != desc {
				t.Errorf("body = %v, want error %q with %q", body, tt.err, desc)
			}
			wwwAuth := w.Header().Get("WWW-Authenticate")
			if (tt.err == "invalid_client") != (wwwAuth != "") {
				t.Errorf("WWW-Authenticate = %q for %s", wwwAuth, tt.err)
			}
		})
	}
}

func TestTokenResponseHasGitLabsShape(t *testing.T) {
	f := newFixture(t)
	tok := f.mattermostToken(t)
	want := map[string]any{
		"token_type": "Bearer",
		"expires_in": float64(7200),
		"scope":      "read_user",
		"created_at": float64(f.clock.Now().Unix()),
	}
	for k, v := range want {
		if tok[k] != v {
			t.Errorf("%s = %#v, want %#v", k, tok[k], v)
		}
	}
	for _, k := range []string{"access_token", "refresh_token"} {
		if s, _ := tok[k].(string); len(s) != 64 {
			t.Errorf("%s = %#v, want 64 hex digits", k, tok[k])
		}
	}
	if _, ok := tok["id_token"]; ok {
		t.Error("an id_token without the openid scope")
	}
}

func TestCodeIsSingleUse(t *testing.T) {
	f := newFixture(t)
	code := mustCode(t, f.Server, authorizeParams("mattermost", mmRedirect, "scope", "read_user"))
	form := tokenForm("grant_type", "authorization_code", "code", code, "redirect_uri", mmRedirect,
		"client_id", "mattermost", "client_secret", mmSecret)
	tok := exchange(t, f.Server, form)
	w := postToken(f.Server, form, nil)
	if w.Code != http.StatusBadRequest || decode(t, w.Body.Bytes())["error"] != "invalid_grant" {
		t.Fatalf("second redemption: status %d, body %s", w.Code, w.Body)
	}
	// GitLab leaves the tokens of the first redemption alone.
	if w := serve(f.Server, http.MethodGet, "/api/v4/user", nil, bearer(tok["access_token"].(string))); w.Code != http.StatusOK {
		t.Fatalf("token from the first redemption: status %d", w.Code)
	}
}

// The emulator takes a code under its one lock, in-process: of concurrent redemptions exactly one
// wins, round after round (200 rounds catch a race lost once in 50).
func TestCodeIsSingleUseUnderConcurrency(t *testing.T) {
	f := newFixture(t)
	for range 200 {
		code := mustCode(t, f.Server, authorizeParams("mattermost", mmRedirect, "scope", "read_user"))
		form := tokenForm("grant_type", "authorization_code", "code", code, "redirect_uri", mmRedirect,
			"client_id", "mattermost", "client_secret", mmSecret)
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			wins int
		)
		for range 16 {
			wg.Go(func() {
				if postToken(f.Server, form, nil).Code == http.StatusOK {
					mu.Lock()
					wins++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if wins != 1 {
			t.Fatalf("%d redemptions of one code succeeded", wins)
		}
	}
}

func TestCodeLivesSixHundredSeconds(t *testing.T) {
	for _, tc := range []struct {
		after time.Duration
		want  int
	}{{600 * time.Second, http.StatusOK}, {601 * time.Second, http.StatusBadRequest}} {
		f := newFixture(t)
		code := mustCode(t, f.Server, authorizeParams("mattermost", mmRedirect, "scope", "read_user"))
		f.clock.Advance(tc.after)
		w := postToken(f.Server, tokenForm("grant_type", "authorization_code", "code", code,
			"redirect_uri", mmRedirect, "client_id", "mattermost", "client_secret", mmSecret), nil)
		if w.Code != tc.want {
			t.Errorf("after %v: status %d, want %d", tc.after, w.Code, tc.want)
		}
	}
}

func TestAFailedRedemptionLeavesTheCodeUsable(t *testing.T) {
	f := newFixture(t)
	q := authorizeParams("mattermost", mmRedirect, "scope", "read_user", "code_challenge", testChallenge, "code_challenge_method", "S256")
	code := mustCode(t, f.Server, q)
	form := tokenForm("grant_type", "authorization_code", "code", code, "redirect_uri", mmRedirect,
		"client_id", "mattermost", "client_secret", mmSecret, "code_verifier", "wrong")
	if w := postToken(f.Server, form, nil); w.Code != http.StatusBadRequest {
		t.Fatalf("wrong verifier: status %d", w.Code)
	}
	form.Set("code_verifier", testVerifier)
	exchange(t, f.Server, form)
}

func TestPlainPKCE(t *testing.T) {
	f := newFixture(t)
	code := mustCode(t, f.Server, authorizeParams("mattermost", mmRedirect, "scope", "read_user",
		"code_challenge", "plain-verifier-of-sufficient-length-0123456789", "code_challenge_method", "plain"))
	exchange(t, f.Server, tokenForm("grant_type", "authorization_code", "code", code, "redirect_uri", mmRedirect,
		"client_id", "mattermost", "client_secret", mmSecret, "code_verifier", "plain-verifier-of-sufficient-length-0123456789"))
}

func TestBasicCredentialsAreURLDecoded(t *testing.T) {
	const secret = "s3cr+t/with=special%chars:and a space"
	tests := []struct {
		name   string
		header string
		want   int
	}{
		{"encoded halves, as golang.org/x/oauth2 sends them", basic("weird id", secret).Get("Authorization"), 200},
		{"raw halves are decoded too, so a raw + becomes a space", "Basic " + base64.StdEncoding.EncodeToString([]byte("weird+id:"+url.QueryEscape(secret))), 200},
		{"a raw % that is not an escape fails", "Basic " + base64.StdEncoding.EncodeToString([]byte("weird id:"+secret)), 401},
		{"the scheme is case-insensitive", "basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape("weird id")+":"+url.QueryEscape(secret))), 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			f.AddApplication(Application{UID: "weird id", Secret: secret, RedirectURIs: []string{appRedirect}, Scopes: []string{"read_user"}, Trusted: true})
			code := mustCode(t, f.Server, authorizeParams("weird id", appRedirect, "scope", "read_user"))
			w := postToken(f.Server, tokenForm("grant_type", "authorization_code", "code", code, "redirect_uri", appRedirect),
				http.Header{"Authorization": {tt.header}})
			if w.Code != tt.want {
				t.Fatalf("status %d, want %d; body %s", w.Code, tt.want, w.Body)
			}
			if tt.want == 401 && w.Header().Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
}

func TestPublicClientNeedsNoSecret(t *testing.T) {
	f := newFixture(t)
	redirect := "http://127.0.0.1:41000/callback"
	q := authorizeParams("cli", redirect, "scope", "read_user", "code_challenge", testChallenge, "code_challenge_method", "S256")
	tok := exchange(t, f.Server, tokenForm("grant_type", "authorization_code", "code", mustCode(t, f.Server, q),
		"redirect_uri", redirect, "client_id", "cli", "code_verifier", testVerifier))
	// A public client refreshes with its client_id alone as well.
	exchange(t, f.Server, tokenForm("grant_type", "refresh_token", "refresh_token", tok["refresh_token"].(string), "client_id", "cli"))
	// But a secret it does not have is wrong.
	w := postToken(f.Server, tokenForm("grant_type", "refresh_token", "refresh_token", "x", "client_id", "cli", "client_secret", "guess"), nil)
	if w.Code != http.StatusUnauthorized {
		t.Fatalf("public client with a made-up secret: status %d", w.Code)
	}
}

func TestRefreshRotatesAndRevokesTheOldPair(t *testing.T) {
	f := newFixture(t)
	old := f.mattermostToken(t)
	refresh := tokenForm("grant_type", "refresh_token", "refresh_token", old["refresh_token"].(string),
		"client_id", "mattermost", "client_secret", mmSecret)
	fresh := exchange(t, f.Server, refresh)
	if fresh["access_token"] == old["access_token"] || fresh["refresh_token"] == old["refresh_token"] {
		t.Fatal("refresh returned the old tokens")
	}
	if fresh["scope"] != "read_user" {
		t.Errorf("scope = %v", fresh["scope"])
	}
	if w := postToken(f.Server, refresh, nil); w.Code != http.StatusBadRequest || decode(t, w.Body.Bytes())["error"] != "invalid_grant" {
		t.Errorf("old refresh token reused: status %d, body %s", w.Code, w.Body)
	}
	if w := serve(f.Server, http.MethodGet, "/api/v4/user", nil, bearer(old["access_token"].(string))); w.Code != http.StatusUnauthorized {
		t.Errorf("old access token: status %d", w.Code)
	}
	if w := serve(f.Server, http.MethodGet, "/api/v4/user", nil, bearer(fresh["access_token"].(string))); w.Code != http.StatusOK {
		t.Errorf("new access token: status %d", w.Code)
	}
}

func TestRefreshTokenMustBelongToTheClient(t *testing.T) {
	f := newFixture(t)
	tok := f.mattermostToken(t)
	w := postToken(f.Server, tokenForm("grant_type", "refresh_token", "refresh_token", tok["refresh_token"].(string)),
		basic("app", appSecret))
	if w.Code != http.StatusBadRequest || decode(t, w.Body.Bytes())["error"] != "invalid_grant" {
		t.Fatalf("status %d, body %s", w.Code, w.Body)
	}
	// The failed attempt did not revoke anything.
	exchange(t, f.Server, tokenForm("grant_type", "refresh_token", "refresh_token", tok["refresh_token"].(string),
		"client_id", "mattermost", "client_secret", mmSecret))
}

func TestRefreshMayNarrowButNotWidenTheScope(t *testing.T) {
	f := newFixture(t)
	code := mustCode(t, f.Server, authorizeParams("app", appRedirect, "scope", "read_user email"))
	tok := exchange(t, f.Server, tokenForm("grant_type", "authorization_code", "code", code, "redirect_uri", appRedirect,
		"client_id", "app", "client_secret", appSecret))
	wide := tokenForm("grant_type", "refresh_token", "refresh_token", tok["refresh_token"].(string),
		"client_id", "app", "client_secret", appSecret, "scope", "read_user api")
	if w := postToken(f.Server, wide, nil); w.Code != http.StatusBadRequest || decode(t, w.Body.Bytes())["error"] != "invalid_scope" {
		t.Fatalf("widening: status %d, body %s", w.Code, w.Body)
	}
	narrow := tokenForm("grant_type", "refresh_token", "refresh_token", tok["refresh_token"].(string),
		"client_id", "app", "client_secret", appSecret, "scope", "email")
	if got := exchange(t, f.Server, narrow)["scope"]; got != "email" {
		t.Fatalf("narrowed scope = %v", got)
	}
}

func TestRefreshAnswersMissingAndUnknownTokens(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		form url.Values
		err  string
	}{
		{tokenForm("grant_type", "refresh_token", "client_id", "mattermost", "client_secret", mmSecret), "invalid_request"},
		{tokenForm("grant_type", "refresh_token", "refresh_token", "nope", "client_id", "mattermost", "client_secret", mmSecret), "invalid_grant"},
		{tokenForm("grant_type", "refresh_token", "refresh_token", "nope"), "invalid_client"},
	} {
		if got := decode(t, postToken(f.Server, tc.form, nil).Body.Bytes())["error"]; got != tc.err {
			t.Errorf("%v: error %v, want %s", tc.form, got, tc.err)
		}
	}
}

func TestTokensWithoutExpiry(t *testing.T) {
	f := newFixture(t, WithAccessTokenTTL(0))
	tok := f.mattermostToken(t)
	if _, ok := tok["expires_in"]; ok {
		t.Fatalf("expires_in present: %v", tok)
	}
	f.clock.Advance(365 * 24 * time.Hour)
	if w := serve(f.Server, http.MethodGet, "/api/v4/user", nil, bearer(tok["access_token"].(string))); w.Code != http.StatusOK {
		t.Fatalf("a year later: status %d", w.Code)
	}
}

func TestRevoke(t *testing.T) {
	f := newFixture(t)
	tok := f.mattermostToken(t)
	access := tok["access_token"].(string)

	w := serve(f.Server, http.MethodPost, "/oauth/revoke", tokenForm("token", access), nil)
	if w.Code != http.StatusUnauthorized || decode(t, w.Body.Bytes())["error"] != "invalid_client" {
		t.Fatalf("without client credentials: status %d, body %s", w.Code, w.Body)
	}
	w = serve(f.Server, http.MethodPost, "/oauth/revoke", tokenForm("token", access), basic("app", appSecret))
	if w.Code != http.StatusForbidden || decode(t, w.Body.Bytes())["error"] != "unauthorized_client" {
		t.Fatalf("by another confidential client: status %d, body %s", w.Code, w.Body)
	}
	w = serve(f.Server, http.MethodPost, "/oauth/revoke", tokenForm("token", "unknown"), basic("mattermost", mmSecret))
	if w.Code != http.StatusOK || w.Body.String() != "{}\n" {
		t.Fatalf("unknown token: status %d, body %q", w.Code, w.Body)
	}
	w = serve(f.Server, http.MethodPost, "/oauth/revoke", tokenForm("token", tok["refresh_token"].(string), "token_type_hint", "refresh_token"), basic("mattermost", mmSecret))
	if w.Code != http.StatusOK {
		t.Fatalf("own refresh token: status %d", w.Code)
	}
	// Revoking the refresh token revoked its access token too.
	w = serve(f.Server, http.MethodGet, "/api/v4/user", nil, bearer(access))
	if w.Code != http.StatusUnauthorized || decode(t, w.Body.Bytes())["error"] != "invalid_token" {
		t.Fatalf("revoked token at the API: status %d, body %s", w.Code, w.Body)
	}
}

func TestTokenInfo(t *testing.T) {
	f := newFixture(t)
	tok := f.mattermostToken(t)
	f.clock.Advance(100 * time.Second)
	w := serve(f.Server, http.MethodGet, "/oauth/token/info", nil, bearer(tok["access_token"].(string)))
	if w.Code != http.StatusOK {
		t.Fatalf("status %d, body %s", w.Code, w.Body)
	}
	info := decode(t, w.Body.Bytes())
	if info["resource_owner_id"] != float64(42) || info["expires_in"] != float64(7100) ||
		info["expires_in_seconds"] != float64(7100) || info["created_at"] != tok["created_at"] {
		t.Errorf("info = %v", info)
	}
	if app, _ := info["application"].(map[string]any); app["uid"] != "mattermost" {
		t.Errorf("application = %v", info["application"])
	}
	if sc, _ := info["scope"].([]any); len(sc) != 1 || sc[0] != "read_user" {
		t.Errorf("scope = %v", info["scope"])
	}

	// In order: Doorkeeper reports a revoked token as revoked even once it has expired.
	for _, tc := range []struct {
		name  string
		setup func()
		token string
		desc  string
	}{
		{"unknown", func() {}, "nope", "The access token is invalid"},
		{"expired", func() { f.clock.Advance(7200 * time.Second) }, tok["access_token"].(string), "The access token expired"},
		{"revoked", func() { f.RevokeTokens("alice") }, tok["access_token"].(string), "The access token was revoked"},
	} {
		tc.setup()
		w := serve(f.Server, http.MethodGet, "/oauth/token/info?access_token="+tc.token, nil, nil)
		body := decode(t, w.Body.Bytes())
		if w.Code != http.StatusUnauthorized || body["error"] != "invalid_token" || body["error_description"] != tc.desc ||
			w.Header().Get("WWW-Authenticate") == "" {
			t.Errorf("%s: status %d, body %v", tc.name, w.Code, body)
		}
	}
}

func TestSpentCodesAreForgottenWithoutChangingAnswers(t *testing.T) {
	f := newFixture(t)
	q := authorizeParams("mattermost", mmRedirect, "scope", "read_user")
	form := func(code string) url.Values {
		return tokenForm("grant_type", "authorization_code", "code", code, "redirect_uri", mmRedirect,
			"client_id", "mattermost", "client_secret", mmSecret)
	}
	spent := mustCode(t, f.Server, q)
	exchange(t, f.Server, form(spent))
	expired := mustCode(t, f.Server, q)
	f.clock.Advance(601 * time.Second)
	var fresh string
	for range 1001 {
		fresh = mustCode(t, f.Server, q)
	}
	f.mu.Lock()
	_, spentKept := f.codes[spent]
	_, expiredKept := f.codes[expired]
	f.mu.Unlock()
	if spentKept || expiredKept {
		t.Errorf("spent code kept: %v, expired code kept: %v", spentKept, expiredKept)
	}
	for _, code := range []string{spent, expired} {
		if w := postToken(f.Server, form(code), nil); decode(t, w.Body.Bytes())["error"] != "invalid_grant" {
			t.Errorf("forgotten code: status %d, body %s", w.Code, w.Body)
		}
	}
	exchange(t, f.Server, form(fresh))
}
