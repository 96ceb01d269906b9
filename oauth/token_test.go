package oauth_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/ssobridge/ssobridge/oauth"
	"github.com/ssobridge/ssobridge/oauth/store"
	"github.com/ssobridge/ssobridge/oauth/store/storetest"
)

func TestTokenAnswersInGitLabsShape(t *testing.T) {
	f := newFixture(t)
	resp, body := f.postToken(f.tokenForm(f.code()))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %v", resp.StatusCode, body)
	}
	if tok, _ := body["access_token"].(string); len(tok) < 40 {
		t.Errorf("access_token %v", body["access_token"])
	}
	if body["token_type"] != "Bearer" || body["expires_in"] != float64(7200) || body["scope"] != "read_user" {
		t.Errorf("body %v", body)
	}
	if ca, ok := body["created_at"].(float64); !ok || ca < 1e9 {
		t.Errorf("created_at %v", body["created_at"])
	}
	if rt, _ := body["refresh_token"].(string); len(rt) < 40 || rt == body["access_token"] {
		t.Errorf("refresh_token %v", body["refresh_token"])
	}
	if _, ok := body["id_token"]; ok {
		t.Error("an id_token without the openid scope")
	}
	if resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("Pragma") != "no-cache" {
		t.Errorf("headers %v", resp.Header)
	}
}

func TestTokenAcceptsURLEncodedBasicCredentials(t *testing.T) {
	f := newFixture(t)
	form := f.tokenForm(f.code())
	form.Del("client_id")
	form.Del("client_secret")
	basic := base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(f.app.ID) + ":" + url.QueryEscape(f.secret)))
	resp, body := f.postToken(form, "Authorization", "Basic "+basic)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %v", resp.StatusCode, body)
	}
}

// The token endpoint's refusals are the same on both stores: on Redis a code that is anything
// but Mattermost's plain redemption is left by the one-step redemption to the checks that say
// what is wrong with it.
func TestTokenErrors(t *testing.T) {
	for name, open := range stores(t) {
		t.Run(name, func(t *testing.T) { testTokenErrors(t, newFixtureOn(t, open(), []string{"read_user"})) })
	}
}

func testTokenErrors(t *testing.T, f *fixture) {
	other, otherSecret := f.register(f.appSpecFor("Other", "https://other.example.com/cb"))
	tests := []struct {
		name   string
		form   func() url.Values
		status int
		code   string
	}{
		{"a wrong secret is invalid_client", func() url.Values { v := f.tokenForm(f.code()); v.Set("client_secret", "gloas-wrong"); return v }, 401, "invalid_client"},
		{"an unknown client is invalid_client", func() url.Values { v := f.tokenForm("c"); v.Set("client_id", "unknown"); return v }, 401, "invalid_client"},
		{"no client at all is invalid_client", func() url.Values { v := f.tokenForm("c"); v.Del("client_id"); v.Del("client_secret"); return v }, 401, "invalid_client"},
		{"a missing grant_type is invalid_request", func() url.Values { v := f.tokenForm("c"); v.Del("grant_type"); return v }, 400, "invalid_request"},
		{"a refresh without refresh_token is invalid_request", func() url.Values { v := f.tokenForm("c"); v.Set("grant_type", "refresh_token"); return v }, 400, "invalid_request"},
		{"the password grant is unsupported", func() url.Values { v := f.tokenForm("c"); v.Set("grant_type", "password"); return v }, 400, "unsupported_grant_type"},
		{"the client_credentials grant is unsupported", func() url.Values { v := f.tokenForm("c"); v.Set("grant_type", "client_credentials"); return v }, 400, "unsupported_grant_type"},
		{"a missing redirect_uri is invalid_request", func() url.Values { v := f.tokenForm(f.code()); v.Del("redirect_uri"); return v }, 400, "invalid_request"},
		{"a missing code is invalid_request", func() url.Values { v := f.tokenForm(""); v.Del("code"); return v }, 400, "invalid_request"},
		{"an unknown code is invalid_grant", func() url.Values { return f.tokenForm("not-a-code") }, 400, "invalid_grant"},
		{"another redirect_uri than the authorization's is invalid_grant", func() url.Values {
			v := f.tokenForm(f.code())
			v.Set("redirect_uri", "https://mm.example.com/login/gitlab/complete")
			return v
		}, 400, "invalid_grant"},
		{"a code redeemed by another client is invalid_grant", func() url.Values {
			v := f.tokenForm(f.code())
			v.Set("client_id", other.ID)
			v.Set("client_secret", otherSecret)
			v.Set("redirect_uri", "https://other.example.com/cb")
			return v
		}, 400, "invalid_grant"},
		{"a code redeemed by another client with the code's redirect_uri is invalid_grant", func() url.Values {
			v := f.tokenForm(f.code())
			v.Set("client_id", other.ID)
			v.Set("client_secret", otherSecret)
			return v
		}, 400, "invalid_grant"},
		{"a code redeemed by another client without redirect_uri is invalid_grant", func() url.Values {
			v := f.tokenForm(f.code())
			v.Set("client_id", other.ID)
			v.Set("client_secret", otherSecret)
			v.Del("redirect_uri")
			return v
		}, 400, "invalid_grant"},
		{"an unknown code without redirect_uri is invalid_request, as GitLab checks redirect_uri first", func() url.Values {
			v := f.tokenForm("not-a-code")
			v.Del("redirect_uri")
			return v
		}, 400, "invalid_request"},
		{"a verifier without a challenge is invalid_grant", func() url.Values {
			v := f.tokenForm(f.code())
			v.Set("code_verifier", strings.Repeat("v", 43))
			return v
		}, 400, "invalid_grant"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := f.postToken(tt.form())
			if resp.StatusCode != tt.status || body["error"] != tt.code {
				t.Fatalf("got %d %v, want %d %s", resp.StatusCode, body, tt.status, tt.code)
			}
			if d, _ := body["error_description"].(string); len(d) < 20 {
				t.Errorf("error_description %q does not say what to fix", d)
			}
			if resp.Header.Get("Cache-Control") != "no-store" {
				t.Error("error without Cache-Control: no-store")
			}
			if tt.status == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic") {
				t.Errorf("401 without WWW-Authenticate: %v", resp.Header)
			}
		})
	}
}

func (f *fixture) appSpecFor(name, redirect string) oauth.AppSpec {
	return oauth.AppSpec{Name: name, RedirectURIs: []string{redirect}, Scopes: []string{"read_user"}, Trusted: true, Confidential: true}
}

func TestTokenUnknownClientAndWrongSecretGetTheSameAnswer(t *testing.T) {
	f := newFixture(t)
	wrong := f.tokenForm("c")
	wrong.Set("client_secret", "gloas-wrong")
	unknown := f.tokenForm("c")
	unknown.Set("client_id", strings.Repeat("0", 64))
	_, a := f.postToken(wrong)
	_, b := f.postToken(unknown)
	if a["error"] != b["error"] || a["error_description"] != b["error_description"] {
		t.Errorf("answers differ: %v and %v", a, b)
	}
}

func TestTokenCodeIsSingleUse(t *testing.T) {
	for name, open := range stores(t) {
		t.Run(name, func(t *testing.T) { testTokenCodeIsSingleUse(t, newFixtureOn(t, open(), []string{"read_user"})) })
	}
}

func testTokenCodeIsSingleUse(t *testing.T, f *fixture) {
	code := f.code()
	if resp, body := f.postToken(f.tokenForm(code)); resp.StatusCode != 200 {
		t.Fatalf("first redemption: %d %v", resp.StatusCode, body)
	}
	resp, body := f.postToken(f.tokenForm(code))
	if resp.StatusCode != 400 || body["error"] != "invalid_grant" {
		t.Fatalf("second redemption: %d %v", resp.StatusCode, body)
	}
}

func TestTokenCodeOfARevokedSignInIsRefused(t *testing.T) {
	for name, open := range stores(t) {
		t.Run(name, func(t *testing.T) {
			testTokenCodeOfARevokedSignInIsRefused(t, newFixtureOn(t, open(), []string{"read_user"}))
		})
	}
}

func testTokenCodeOfARevokedSignInIsRefused(t *testing.T, f *fixture) {
	code := f.code()
	peek, err := f.store.PeekCode(t.Context(), store.RefOf(code))
	if err != nil || peek.Code == nil {
		t.Fatalf("peek code: %v %v", peek, err)
	}
	// An administrator revokes the application's grants between the callback and the token request.
	if err := f.store.RevokeSession(t.Context(), peek.Code.SessionID); err != nil {
		t.Fatal(err)
	}
	resp, body := f.postToken(f.tokenForm(code))
	if resp.StatusCode != 400 || body["error"] != "invalid_grant" || !strings.Contains(body["error_description"].(string), "revoked") {
		t.Fatalf("redemption of a revoked sign-in's code: %d %v", resp.StatusCode, body)
	}
}

func TestTokenCodeRedeemedByAnotherClientIsBurned(t *testing.T) {
	for name, open := range stores(t) {
		t.Run(name, func(t *testing.T) {
			testTokenCodeRedeemedByAnotherClientIsBurned(t, newFixtureOn(t, open(), []string{"read_user"}))
		})
	}
}

func testTokenCodeRedeemedByAnotherClientIsBurned(t *testing.T, f *fixture) {
	code := f.code()
	if resp, body := f.postToken(f.asOtherClient(f.tokenForm(code))); resp.StatusCode != 400 || body["error"] != "invalid_grant" {
		t.Fatalf("another client's redemption: %d %v", resp.StatusCode, body)
	}
	if resp, body := f.postToken(f.tokenForm(code)); resp.StatusCode != 400 {
		t.Fatalf("the code still works for its client after another presented it: %d %v", resp.StatusCode, body)
	}
}

func TestTokenRequestWithoutRedirectURILeavesTheClientsCode(t *testing.T) {
	// GitLab refuses it before it looks the code up: the client's own code stays redeemable.
	f := newFixture(t)
	code := f.code()
	v := f.tokenForm(code)
	v.Del("redirect_uri")
	if resp, body := f.postToken(v); resp.StatusCode != 400 || body["error"] != "invalid_request" {
		t.Fatalf("without redirect_uri: %d %v", resp.StatusCode, body)
	}
	if resp, body := f.postToken(f.tokenForm(code)); resp.StatusCode != 200 {
		t.Fatalf("the code was spent by a request refused before its lookup: %d %v", resp.StatusCode, body)
	}
}

func TestTokenCodeSpentByARefusedRequestIsNotCalledReplayed(t *testing.T) {
	// A refused redemption burns the code, but issues nothing: the next attempt must say so,
	// not that tokens were revoked.
	f := newFixture(t)
	other, otherSecret := f.register(f.appSpecFor("Other", "https://other.example.com/cb"))
	tests := []struct {
		name  string
		first func(code string) url.Values
		says  string
	}{
		{"a code burned by a wrong redirect_uri says so, and that no token was issued", func(code string) url.Values {
			v := f.tokenForm(code)
			v.Set("redirect_uri", "https://mm.example.com/login/gitlab/complete")
			return v
		}, "redirect_uri"},
		{"a code burned by another client says so, and that no token was issued", func(code string) url.Values {
			v := f.tokenForm(code)
			v.Set("client_id", other.ID)
			v.Set("client_secret", otherSecret)
			return v
		}, "another client"},
		{"a code burned by a verifier sent without a challenge says so, and that no token was issued", func(code string) url.Values {
			v := f.tokenForm(code)
			v.Set("code_verifier", strings.Repeat("v", 43))
			return v
		}, "code_verifier"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code := f.code()
			if resp, body := f.postToken(tt.first(code)); resp.StatusCode != 400 {
				t.Fatalf("first request: %d %v", resp.StatusCode, body)
			}
			resp, body := f.postToken(f.tokenForm(code))
			d, _ := body["error_description"].(string)
			if resp.StatusCode != 400 || body["error"] != "invalid_grant" {
				t.Fatalf("second request: %d %v", resp.StatusCode, body)
			}
			if strings.Contains(d, "revoked") || !strings.Contains(d, "no token") || !strings.Contains(d, tt.says) {
				t.Errorf("the second answer %q does not say what spent the code (%s) and that no token was issued", d, tt.says)
			}
		})
	}
	t.Run("a code replayed after tokens were issued from it still says they are revoked", func(t *testing.T) {
		code := f.code()
		f.postToken(f.tokenForm(code))
		_, body := f.postToken(f.tokenForm(code))
		if d, _ := body["error_description"].(string); !strings.Contains(d, "revoked") {
			t.Errorf("got %v", body)
		}
	})
}

func TestTokenPublicAppSignsInWithPKCE(t *testing.T) {
	f := newFixture(t)
	pub, _ := f.register(publicSpec())
	verifier := strings.Repeat("verifier-", 6)
	sum := sha256.Sum256([]byte(verifier))
	q := url.Values{"response_type": {"code"}, "client_id": {pub.ID}, "redirect_uri": {"http://127.0.0.1:7777/cb"}, "state": {"s"},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"}}
	form := func(code, verifier string) url.Values {
		v := url.Values{"client_id": {pub.ID}, "code": {code}, "grant_type": {"authorization_code"}, "redirect_uri": {"http://127.0.0.1:7777/cb"}}
		if verifier != "" {
			v.Set("code_verifier", verifier)
		}
		return v
	}
	if resp, body := f.postToken(form(f.toClient(q).Query().Get("code"), "")); resp.StatusCode != 400 || body["error"] != "invalid_request" {
		t.Errorf("no verifier: %d %v", resp.StatusCode, body)
	}
	if resp, body := f.postToken(form(f.toClient(q).Query().Get("code"), strings.Repeat("wrong-", 8))); resp.StatusCode != 400 || body["error"] != "invalid_grant" {
		t.Errorf("wrong verifier: %d %v", resp.StatusCode, body)
	}
	if resp, body := f.postToken(form(f.toClient(q).Query().Get("code"), verifier)); resp.StatusCode != 200 {
		t.Errorf("right verifier: %d %v", resp.StatusCode, body)
	}
}

func TestTokenChecksTheCodeVerifiersFormat(t *testing.T) {
	// RFC 7636 §4.1: code_verifier = 43*128unreserved, unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~".
	// Each verifier is the one the challenge was made from, so only its form can refuse it.
	tests := []struct {
		name     string
		verifier string
		ok       bool
	}{
		{"a verifier of 43 characters, the least, is accepted", strings.Repeat("a", 43), true},
		{"a verifier of 128 characters, the most, is accepted", strings.Repeat("Z", 128), true},
		{"a verifier of every unreserved character is accepted", "ABCXYZabcxyz0189-._~" + strings.Repeat("k", 23), true},
		{"a verifier of 42 characters is refused", strings.Repeat("a", 42), false},
		{"a verifier of 129 characters is refused", strings.Repeat("a", 129), false},
		{"a verifier with a character outside the unreserved ones is refused", strings.Repeat("a", 42) + "+", false},
		{"a verifier with a space is refused", strings.Repeat("a", 21) + " " + strings.Repeat("a", 21), false},
		{"a verifier with a non-ASCII letter is refused", strings.Repeat("a", 42) + "é", false},
	}
	f := newFixture(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sum := sha256.Sum256([]byte(tt.verifier))
			q := f.authorizeQuery("s")
			q.Set("code_challenge", base64.RawURLEncoding.EncodeToString(sum[:]))
			q.Set("code_challenge_method", "S256")
			code := f.toClient(q).Query().Get("code")
			v := f.tokenForm(code)
			v.Set("code_verifier", tt.verifier)
			resp, body := f.postToken(v)
			if tt.ok {
				if resp.StatusCode != 200 {
					t.Fatalf("got %d %v", resp.StatusCode, body)
				}
				return
			}
			if resp.StatusCode != 400 || body["error"] != "invalid_grant" || !strings.Contains(body["error_description"].(string), "43 to 128") {
				t.Fatalf("got %d %v", resp.StatusCode, body)
			}
		})
	}
}

func TestTokenRefusesCredentialsInTheURL(t *testing.T) {
	f := newFixture(t)
	req, _ := http.NewRequest(http.MethodPost, f.bridge.URL+"/oauth/token?client_secret="+f.secret, strings.NewReader(f.tokenForm("c").Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := f.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("got %d", resp.StatusCode)
	}
}

func TestTokenEndpointTakesOnlyPOST(t *testing.T) {
	f := newFixture(t)
	resp := f.get(f.bridge.URL + "/oauth/token")
	body := readBody(t, resp)
	if resp.StatusCode != http.StatusMethodNotAllowed || !strings.Contains(body, `"error":"invalid_request"`) {
		t.Fatalf("got %d %s", resp.StatusCode, body)
	}
}

func TestStoreHoldsNoCodeTokenOrSecretInClear(t *testing.T) {
	f := newFixture(t)
	code := f.code()
	resp, body := f.postToken(f.tokenForm(code))
	if resp.StatusCode != 200 {
		t.Fatal(body)
	}
	unused := f.code()
	f.srv.FlushTraces(t.Context()) // the traces too
	dump, err := f.store.(storetest.RawDumper).DumpRaw(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]string{"access token": body["access_token"].(string), "unredeemed code": unused, "client secret": f.secret} {
		if strings.Contains(string(dump), v) {
			t.Errorf("the store holds the %s in clear", name)
		}
	}
}

// A refresh whose GitLab token the bridge cannot open (its encryption key changed) is the bridge's
// own trouble: the answer names it, and the sign-in is not revoked, so that putting the old key
// back (SSOBRIDGE_ENCRYPTION_KEYS_PREVIOUS) restores it.
func TestRefreshWithAnUnreadableGitLabTokenRevokesNothing(t *testing.T) {
	f := newFixture(t)
	tok := f.tokens()
	found, err := f.store.GetAccess(t.Context(), store.RefOf(tok["access_token"].(string)))
	if err != nil {
		t.Fatal(err)
	}
	sess := found.Session
	other, err := oauth.NewSealer(bytes.Repeat([]byte{9}, 32))
	if err != nil {
		t.Fatal(err)
	}
	sess.SealedToken = other.Seal([]byte(`{"access_token":"x"}`), sess.ID)
	if err := f.store.UpdateSession(t.Context(), sess); err != nil {
		t.Fatal(err)
	}
	resp, body := f.postToken(f.refreshForm(tok["refresh_token"].(string)))
	if resp.StatusCode == http.StatusOK || !strings.Contains(fmt.Sprint(body["error_description"]), "cannot open the GitLab token") {
		t.Errorf("refresh with an unreadable GitLab token: %d %v, want a refusal saying the bridge cannot open it", resp.StatusCode, body)
	}
	if tr := f.traceOf(resp.Header.Get(oauth.HeaderTraceID)); tr["failure"] != "sealed_token_unreadable" {
		t.Errorf("the trace names %v, want sealed_token_unreadable", tr["failure"])
	}
	if _, err := f.store.GetSession(t.Context(), sess.ID); err != nil {
		t.Errorf("the sign-in after the refusal: %v, want it kept", err)
	}
	if _, err := f.store.GetRefresh(t.Context(), store.RefOf(tok["refresh_token"].(string))); err != nil {
		t.Errorf("the refresh token after the refusal: %v, want it kept", err)
	}
}
