package oauth_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ssobridge/ssobridge/oauth/store"
	"github.com/ssobridge/ssobridge/oauth/store/memstore"
)

// TestSecurityRegressions holds, in one place, every attack the bridge must refuse. Each case is
// named for the attack, drives the bridge end to end, and fails if the defence is lost.
func TestSecurityRegressions(t *testing.T) {
	openRedirects := map[string]string{
		"extra path":             mmRedirect + "/../../evil",
		"extra path segment":     mmRedirect + "/x",
		"different port":         "https://mm.example.com:8443/signup/gitlab/complete",
		"userinfo @":             "https://mm.example.com@evil.example/signup/gitlab/complete",
		"userinfo before host":   "https://evil.example@mm.example.com/signup/gitlab/complete",
		"host case":              "https://MM.EXAMPLE.COM.evil.example/signup/gitlab/complete",
		"path case":              "https://mm.example.com/SIGNUP/gitlab/complete",
		"trailing slash":         mmRedirect + "/",
		"encoded slash":          "https://mm.example.com/signup%2Fgitlab%2Fcomplete",
		"encoded dot segments":   "https://mm.example.com/signup/gitlab/%2e%2e/complete",
		"javascript: scheme":     "javascript:alert(document.domain)//mm.example.com/signup/gitlab/complete",
		"data: scheme":           "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
		"http downgrade":         "http://mm.example.com/signup/gitlab/complete",
		"suffix domain":          "https://evilmm.example.com/signup/gitlab/complete",
		"sub-domain":             "https://a.mm.example.com/signup/gitlab/complete",
		"added query":            mmRedirect + "?next=https://evil.example",
		"fragment":               mmRedirect + "#@evil.example",
		"backslash host confuse": "https://mm.example.com\\@evil.example/signup/gitlab/complete",
		"protocol-relative":      "//evil.example/signup/gitlab/complete",
	}
	for name, uri := range openRedirects {
		t.Run("open redirect through redirect_uri: "+name, func(t *testing.T) {
			f := newFixture(t)
			q := f.authorizeQuery("s")
			q.Set("redirect_uri", uri)
			resp := f.authorize(q)
			if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
				t.Fatalf("%q: got %d, Location %q", uri, resp.StatusCode, resp.Header.Get("Location"))
			}
		})
	}

	attacks := []struct {
		name   string
		attack func(t *testing.T, f *fixture)
	}{
		{"an unknown client_id gets no redirect at all", func(t *testing.T, f *fixture) {
			q := f.authorizeQuery("s")
			q.Set("client_id", "attacker")
			q.Set("redirect_uri", "https://evil.example/")
			if resp := f.authorize(q); resp.StatusCode != 400 || resp.Header.Get("Location") != "" {
				t.Fatalf("got %d %s", resp.StatusCode, resp.Header.Get("Location"))
			}
		}},
		{"code replay fails and revokes the first tokens", func(t *testing.T, f *fixture) {
			code := f.code()
			_, first := f.postToken(f.tokenForm(code))
			if resp, _ := f.postToken(f.tokenForm(code)); resp.StatusCode != 400 {
				t.Fatal("replay accepted")
			}
			if f.userStatus(first["access_token"].(string)) != 401 {
				t.Fatal("tokens of a replayed code survive")
			}
		}},
		{"a code redeemed by another client fails", func(t *testing.T, f *fixture) {
			other, secret := f.register(f.appSpecFor("Evil", "https://evil.example/cb"))
			v := f.tokenForm(f.code())
			v.Set("client_id", other.ID)
			v.Set("client_secret", secret)
			v.Set("redirect_uri", "https://evil.example/cb")
			if resp, body := f.postToken(v); resp.StatusCode != 400 || body["error"] != "invalid_grant" {
				t.Fatalf("got %d %v", resp.StatusCode, body)
			}
		}},
		{"a code presented by another client with a redirect_uri not registered for it is burned", func(t *testing.T, f *fixture) {
			// The thief sends the victim's redirect_uri, which the code was issued for: the
			// request is refused, and the code must not survive it.
			other, secret := f.register(f.appSpecFor("Evil", "https://evil.example/cb"))
			code := f.code()
			v := f.tokenForm(code)
			v.Set("client_id", other.ID)
			v.Set("client_secret", secret)
			if resp, body := f.postToken(v); resp.StatusCode != 400 || body["error"] != "invalid_grant" {
				t.Fatalf("got %d %v", resp.StatusCode, body)
			}
			if resp, body := f.postToken(f.tokenForm(code)); resp.StatusCode != 400 {
				t.Fatalf("the code still works for its client after another presented it: %d %v", resp.StatusCode, body)
			}
		}},
		{"a code presented by another client without redirect_uri is burned", func(t *testing.T, f *fixture) {
			other, secret := f.register(f.appSpecFor("Evil", "https://evil.example/cb"))
			code := f.code()
			v := f.tokenForm(code)
			v.Set("client_id", other.ID)
			v.Set("client_secret", secret)
			v.Del("redirect_uri")
			if resp, body := f.postToken(v); resp.StatusCode != 400 || body["error"] != "invalid_grant" {
				t.Fatalf("got %d %v", resp.StatusCode, body)
			}
			if resp, body := f.postToken(f.tokenForm(code)); resp.StatusCode != 400 {
				t.Fatalf("the code still works for its client after another presented it: %d %v", resp.StatusCode, body)
			}
		}},
		{"a code presented by another, public client without code_verifier is burned", func(t *testing.T, f *fixture) {
			pub, _ := f.register(publicSpec())
			code := f.code()
			v := url.Values{"grant_type": {"authorization_code"}, "client_id": {pub.ID}, "code": {code}, "redirect_uri": {"http://127.0.0.1/cb"}}
			if resp, body := f.postToken(v); resp.StatusCode != 400 || body["error"] != "invalid_grant" {
				t.Fatalf("got %d %v", resp.StatusCode, body)
			}
			if resp, body := f.postToken(f.tokenForm(code)); resp.StatusCode != 400 {
				t.Fatalf("the code still works for its client after another presented it: %d %v", resp.StatusCode, body)
			}
		}},
		{"a code redeemed with another redirect_uri fails", func(t *testing.T, f *fixture) {
			v := f.tokenForm(f.code())
			v.Set("redirect_uri", "https://mm.example.com/login/gitlab/complete")
			if resp, body := f.postToken(v); resp.StatusCode != 400 || body["error"] != "invalid_grant" {
				t.Fatalf("got %d %v", resp.StatusCode, body)
			}
		}},
		{"a refresh token used by another client fails", func(t *testing.T, f *fixture) {
			other, secret := f.register(f.appSpecFor("Evil", "https://evil.example/cb"))
			v := f.refreshForm(f.tokens()["refresh_token"].(string))
			v.Set("client_id", other.ID)
			v.Set("client_secret", secret)
			if resp, body := f.postToken(v); resp.StatusCode != 400 || body["error"] != "invalid_grant" {
				t.Fatalf("got %d %v", resp.StatusCode, body)
			}
		}},
		{"a stolen refresh token used after its owner refreshed revokes the family", func(t *testing.T, f *fixture) {
			stolen := f.tokens()["refresh_token"].(string)
			_, legit := f.postToken(f.refreshForm(stolen))
			f.postToken(f.refreshForm(stolen))
			if f.userStatus(legit["access_token"].(string)) != 401 {
				t.Fatal("the family survived a refresh token reuse")
			}
		}},
		{"a refresh cannot widen the scope", func(t *testing.T, f *fixture) {
			v := f.refreshForm(f.tokens()["refresh_token"].(string))
			v.Set("scope", "read_user api")
			if resp, body := f.postToken(v); resp.StatusCode != 400 || body["error"] != "invalid_scope" {
				t.Fatalf("got %d %v", resp.StatusCode, body)
			}
		}},
		{"PKCE downgrade: a code with an S256 challenge redeemed without a verifier fails", func(t *testing.T, f *fixture) {
			verifier := strings.Repeat("v", 50)
			sum := sha256.Sum256([]byte(verifier))
			q := f.authorizeQuery("s")
			q.Set("code_challenge", base64.RawURLEncoding.EncodeToString(sum[:]))
			q.Set("code_challenge_method", "S256")
			code := f.toClient(q).Query().Get("code")
			if resp, body := f.postToken(f.tokenForm(code)); resp.StatusCode != 400 || body["error"] != "invalid_request" {
				t.Fatalf("got %d %v", resp.StatusCode, body)
			}
		}},
		{"PKCE: a code_verifier too short to be RFC 7636's, whose hash is the challenge, is refused", func(t *testing.T, f *fixture) {
			// A client that makes the challenge from a guessable verifier ("a") defeats PKCE;
			// RFC 7636 §4.1 asks for 43 to 128 characters, which the verifier must have.
			v := f.tokenForm(f.codeForVerifier("a"))
			v.Set("code_verifier", "a")
			if resp, body := f.postToken(v); resp.StatusCode != 400 || body["error"] != "invalid_grant" {
				t.Fatalf("got %d %v", resp.StatusCode, body)
			}
		}},
		{"PKCE downgrade: the plain method is refused unless the app allows it", func(t *testing.T, f *fixture) {
			q := f.authorizeQuery("s")
			q.Set("code_challenge", strings.Repeat("p", 43))
			q.Set("code_challenge_method", "plain")
			if loc := location(t, f.authorize(q)); loc.Query().Get("error") != "invalid_request" {
				t.Fatalf("got %s", loc)
			}
			q.Del("code_challenge_method") // plain is RFC 7636's default
			if loc := location(t, f.authorize(q)); loc.Query().Get("error") != "invalid_request" {
				t.Fatalf("got %s", loc)
			}
		}},
		{"state tampering at the callback finds no sign-in", func(t *testing.T, f *fixture) {
			cb := f.toCallback(f.authorizeQuery("s"))
			q := cb.Query()
			q.Set("state", strings.ToUpper(q.Get("state")))
			cb.RawQuery = q.Encode()
			if resp := f.get(cb.String()); resp.StatusCode != 400 || resp.Header.Get("Location") != "" {
				t.Fatalf("got %d", resp.StatusCode)
			}
		}},
		{"a callback replayed after success finds no sign-in", func(t *testing.T, f *fixture) {
			cb := f.toCallback(f.authorizeQuery("s"))
			f.get(cb.String())
			if resp := f.get(cb.String()); resp.StatusCode != 400 {
				t.Fatalf("got %d", resp.StatusCode)
			}
		}},
		{"an oversized token request is refused", func(t *testing.T, f *fixture) {
			v := f.tokenForm("c")
			v.Set("pad", strings.Repeat("a", 70<<10))
			if resp, body := f.postToken(v); resp.StatusCode != 400 || !strings.Contains(body["error_description"].(string), "larger") {
				t.Fatalf("got %d %v", resp.StatusCode, body)
			}
		}},
		{"an oversized state is refused", func(t *testing.T, f *fixture) {
			if loc := location(t, f.authorize(f.authorizeQuery(strings.Repeat("s", 5000)))); loc.Query().Get("error") != "invalid_request" {
				t.Fatalf("got %s", loc)
			}
		}},
		{"client credentials in the token URL's query are refused", func(t *testing.T, f *fixture) {
			req, _ := http.NewRequest(http.MethodPost, f.bridge.URL+"/oauth/token?"+url.Values{"client_secret": {f.secret}}.Encode(),
				strings.NewReader(f.tokenForm(f.code()).Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			resp, err := f.http.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 400 {
				t.Fatalf("got %d", resp.StatusCode)
			}
		}},
		{"a code in the token URL's query is refused", func(t *testing.T, f *fixture) {
			form := f.tokenForm("")
			form.Del("code")
			req, _ := http.NewRequest(http.MethodPost, f.bridge.URL+"/oauth/token?code="+f.code(), strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			resp, err := f.http.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 400 {
				t.Fatalf("got %d", resp.StatusCode)
			}
		}},
		{"a credential hidden after a ';' in the URL's query of the token, revocation and introspection endpoints is refused", func(t *testing.T, f *fixture) {
			// Go's query parser drops a pair it cannot parse: the check that keeps credentials
			// out of URLs must not look through the same holes.
			for path, form := range credentialEndpointForms(f) {
				resp, body := f.postForm(path+"?x=1;client_secret="+url.QueryEscape(f.secret), form)
				if resp.StatusCode != 400 || body["error"] != "invalid_request" || !strings.Contains(body["error_description"].(string), "query") {
					t.Errorf("%s: got %d %v", path, resp.StatusCode, body)
				}
			}
		}},
		{"a credential beside a malformed escape in the URL's query of the token, revocation and introspection endpoints is refused", func(t *testing.T, f *fixture) {
			for path, form := range credentialEndpointForms(f) {
				resp, body := f.postForm(path+"?client_secret="+url.QueryEscape(f.secret)+"%zz", form)
				if resp.StatusCode != 400 || body["error"] != "invalid_request" || !strings.Contains(body["error_description"].(string), "%zz") {
					t.Errorf("%s: got %d %v", path, resp.StatusCode, body)
				}
			}
		}},
		{"client authentication does not tell unknown clients from wrong secrets", func(t *testing.T, f *fixture) {
			a := f.tokenForm("c")
			a.Set("client_secret", "gloas-wrong")
			b := f.tokenForm("c")
			b.Set("client_id", strings.Repeat("f", 64))
			_, ra := f.postToken(a)
			_, rb := f.postToken(b)
			if ra["error_description"] != rb["error_description"] {
				t.Fatalf("%v vs %v", ra, rb)
			}
		}},
		{"credentials both in Basic and in the body are refused", func(t *testing.T, f *fixture) {
			resp, _ := f.postToken(f.tokenForm(f.code()), "Authorization", basicHeader(f.app.ID, f.secret))
			if resp.StatusCode != 400 {
				t.Fatalf("got %d", resp.StatusCode)
			}
		}},
		{"the implicit grant is not offered", func(t *testing.T, f *fixture) {
			q := f.authorizeQuery("s")
			q.Set("response_type", "token")
			if loc := location(t, f.authorize(q)); loc.Query().Get("error") != "unsupported_response_type" || loc.Fragment != "" {
				t.Fatalf("got %s", loc)
			}
		}},
		{"the password grant is not offered", func(t *testing.T, f *fixture) {
			v := url.Values{"grant_type": {"password"}, "username": {"ada"}, "password": {"x"}, "client_id": {f.app.ID}, "client_secret": {f.secret}}
			if resp, body := f.postToken(v); resp.StatusCode != 400 || body["error"] != "unsupported_grant_type" {
				t.Fatalf("got %d %v", resp.StatusCode, body)
			}
		}},
		{"a return from GitLab started in another browser (login CSRF) is refused, and spends the link", func(t *testing.T, f *fixture) {
			// The attacker starts a sign-in, signs in at GitLab as themself, and sends the link
			// back to the bridge to the victim instead of following it.
			cb := f.toCallback(f.authorizeQuery("attacker"))
			resp := f.inAnotherBrowser(cb.String())
			body := readBody(t, resp)
			if resp.StatusCode != 400 || resp.Header.Get("Location") != "" || !strings.Contains(body, "another browser") {
				t.Fatalf("the victim's browser got %d %s", resp.StatusCode, resp.Header.Get("Location"))
			}
			if resp := f.get(cb.String()); resp.StatusCode != 400 || resp.Header.Get("Location") != "" {
				t.Fatalf("the link still worked afterwards: %d %s", resp.StatusCode, resp.Header.Get("Location"))
			}
		}},
		{"a consent answer posted from another site is refused", func(t *testing.T, f *fixture) {
			q, _, _ := f.untrusted(true)
			body, _ := f.consentPage(q)
			if resp := f.answer(body, nil, "allow"); resp.StatusCode != 403 || resp.Header.Get("Location") != "" {
				t.Fatalf("got %d %s", resp.StatusCode, resp.Header.Get("Location"))
			}
		}},
	}
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) { a.attack(t, newFixture(t)) })
	}
}

// credentialEndpointForms are requests each of the endpoints that take client credentials would
// grant, by path.
func credentialEndpointForms(f *fixture) map[string]url.Values {
	question := func() url.Values {
		return url.Values{"client_id": {f.app.ID}, "client_secret": {f.secret}, "token": {f.accessToken()}}
	}
	return map[string]url.Values{"/oauth/token": f.tokenForm(f.code()), "/oauth/revoke": question(), "/oauth/introspect": question()}
}

func basicHeader(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
}

// A confidential application registered on a loopback address (a web application on the same
// machine, say) gets its codes on its own port alone: any other port there is another program.
// Only a public (native) application, which takes whatever port is free when it starts, may use
// any (RFC 8252 §7.3).
func TestLoopbackRedirectURIOnAnyPortIsForPublicApplicationsAlone(t *testing.T) {
	f := newFixture(t)
	const registered = "http://127.0.0.1:8065/signup/gitlab/complete"
	const otherPort = "http://127.0.0.1:9999/signup/gitlab/complete"
	confidential, _ := f.register(f.appSpecFor("Local web app", registered))
	q := url.Values{"response_type": {"code"}, "client_id": {confidential.ID}, "redirect_uri": {otherPort}, "state": {"s"}}
	resp := f.authorize(q)
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
		t.Fatalf("a confidential application's loopback URI on another port: status %d, Location %q; want a 400 page", resp.StatusCode, resp.Header.Get("Location"))
	}
	q.Set("redirect_uri", registered)
	if loc := location(t, f.authorize(q)); loc.Host == "127.0.0.1:8065" || loc.Query().Get("error") != "" {
		t.Fatalf("the registered port itself was refused: %s", loc)
	}

	spec := f.appSpecFor("Native app", "http://127.0.0.1/callback")
	spec.Confidential = false
	public, _ := f.register(spec)
	sum := sha256.Sum256([]byte(strings.Repeat("v", 43)))
	q = url.Values{"response_type": {"code"}, "client_id": {public.ID}, "redirect_uri": {"http://127.0.0.1:53682/callback"}, "state": {"s"},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"}}
	if got := f.toClient(q); got.Host != "127.0.0.1:53682" || got.Query().Get("code") == "" {
		t.Fatalf("a public application on another loopback port came back to %s", got)
	}
}

// putRecorder is a store that keeps, encoded, every authorization parked in it.
type putRecorder struct {
	store.Store
	mu     sync.Mutex
	parked [][]byte
}

func (r *putRecorder) PutAuthorization(ctx context.Context, key string, a *store.Authorization, ttl time.Duration, caps store.PendingCaps) (int, error) {
	b, _ := store.EncodeAuthorization(a)
	r.mu.Lock()
	r.parked = append(r.parked, b)
	r.mu.Unlock()
	return r.Store.PutAuthorization(ctx, key, a, ttl, caps)
}

// The bridge's own PKCE verifier and nonce at the provider finish its request there: whoever
// reads the store (a backup, a replica, a Redis MONITOR) must not find them, or a code the
// provider sends could be redeemed without the bridge. They are kept sealed, like the tokens.
func TestTheParkedAuthorizationKeepsTheUpstreamVerifierAndNonceSealed(t *testing.T) {
	rec := &putRecorder{Store: memstore.New()}
	f := newFixtureFor(t, rec, []string{"read_user"}, []string{"oidc"})
	toUpstream := location(t, f.authorize(f.authorizeQuery("st")))
	nonce := toUpstream.Query().Get("nonce")
	if nonce == "" {
		t.Fatalf("no nonce sent to the OpenID provider: %s", toUpstream)
	}
	back := location(t, f.get(location(t, f.get(toUpstream.String())).String()))
	if back.Query().Get("code") == "" {
		t.Fatalf("the sign-in did not complete: %s", back)
	}
	verifiers := f.upstreamTokens.verifiers
	if len(verifiers) != 1 {
		t.Fatalf("the bridge sent %d code verifiers to the provider, want 1", len(verifiers))
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.parked) == 0 {
		t.Fatal("nothing was parked")
	}
	for _, b := range rec.parked {
		for what, secret := range map[string]string{"PKCE verifier": verifiers[0], "nonce": nonce} {
			if strings.Contains(string(b), secret) {
				t.Errorf("a parked authorization holds the upstream %s in clear: %s", what, b)
			}
		}
	}
}
