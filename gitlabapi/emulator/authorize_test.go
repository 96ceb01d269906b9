package emulator

import (
	"html/template"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/ssobridge/ssobridge/gitlabapi"
)

func TestAuthorize(t *testing.T) {
	type want struct {
		status int
		// page is text the HTML answer must contain; such answers must not redirect.
		page string
		// err is the OAuth error, with status 302 for the redirect that carries it under
		// WithRedirectedErrors; by default it must be GitLab's error page instead. "" means a code.
		err     string
		errDesc string
	}
	tests := []struct {
		name  string
		query url.Values
		want  want
	}{
		{"a registered client gets a code and its state back",
			authorizeParams("mattermost", mmRedirect, "scope", "read_user"),
			want{status: 302}},
		{"the second registered redirect_uri works too",
			authorizeParams("mattermost", "https://mm.example.com/login/gitlab/complete", "scope", "read_user"),
			want{status: 302}},
		{"missing client_id gets an error page and no redirect",
			authorizeParams("", mmRedirect),
			want{status: 200, page: "Missing required parameter: client_id."}},
		{"unknown client gets an error page and no redirect",
			authorizeParams("nobody", mmRedirect),
			want{status: 200, page: "Client authentication failed due to unknown client"}},
		{"missing redirect_uri gets an error page and no redirect",
			authorizeParams("mattermost", ""),
			want{status: 200, page: "doesn&#39;t match client redirect URI"}},
		{"unregistered redirect_uri gets an error page and no redirect",
			authorizeParams("mattermost", "https://evil.example.com/signup/gitlab/complete"),
			want{status: 200, page: "invalid_redirect_uri"}},
		{"a redirect_uri with a fragment gets an error page",
			authorizeParams("mattermost", mmRedirect+"#frag"),
			want{status: 200, page: "invalid_redirect_uri"}},
		{"a bad redirect_uri is reported before a bad response_type",
			authorizeParams("mattermost", "https://evil.example.com/", "response_type", "token"),
			want{status: 200, page: "invalid_redirect_uri"}},
		{"missing response_type goes back as invalid_request",
			authorizeParams("mattermost", mmRedirect, "response_type", ""),
			want{status: 302, err: "invalid_request", errDesc: "Missing required parameter: response_type."}},
		{"response_type token is unsupported, GitLab having dropped the implicit flow",
			authorizeParams("mattermost", mmRedirect, "response_type", "token"),
			want{status: 302, err: "unsupported_response_type"}},
		{"no scope falls back to api, like GitLab, which a read_user app does not have",
			authorizeParams("mattermost", mmRedirect),
			want{status: 302, err: "invalid_scope"}},
		{"a blank scope is no scope",
			authorizeParams("mattermost", mmRedirect, "scope", "  "),
			want{status: 302, err: "invalid_scope"}},
		{"no scope gets api when the app has it",
			authorizeParams("app", appRedirect),
			want{status: 302}},
		{"a scope outside the app's is invalid_scope",
			authorizeParams("mattermost", mmRedirect, "scope", "read_user api"),
			want{status: 302, err: "invalid_scope"}},
		{"an unknown scope is invalid_scope",
			authorizeParams("app", appRedirect, "scope", "read_user bogus"),
			want{status: 302, err: "invalid_scope"}},
		{"a scope with a tab is invalid_scope",
			authorizeParams("app", appRedirect, "scope", "read_user\tapi"),
			want{status: 302, err: "invalid_scope"}},
		{"several scopes within the app's are granted",
			authorizeParams("app", appRedirect, "scope", "openid read_user email"),
			want{status: 302}},
		{"an S256 challenge is accepted",
			authorizeParams("mattermost", mmRedirect, "scope", "read_user", "code_challenge", testChallenge, "code_challenge_method", "S256"),
			want{status: 302}},
		{"a plain challenge is accepted",
			authorizeParams("mattermost", mmRedirect, "scope", "read_user", "code_challenge", testVerifier, "code_challenge_method", "plain"),
			want{status: 302}},
		{"a challenge without a method is refused, like Doorkeeper",
			authorizeParams("mattermost", mmRedirect, "scope", "read_user", "code_challenge", testChallenge),
			want{status: 302, err: "invalid_code_challenge_method"}},
		{"an unknown challenge method is refused",
			authorizeParams("mattermost", mmRedirect, "scope", "read_user", "code_challenge", testChallenge, "code_challenge_method", "s256"),
			want{status: 302, err: "invalid_code_challenge_method"}},
		{"an untrusted app is approved without asking",
			authorizeParams("app", appRedirect, "scope", "read_user"),
			want{status: 302}},
		{"a public client on a loopback URI may use any port",
			authorizeParams("cli", "http://127.0.0.1:53682/callback", "scope", "read_user"),
			want{status: 302}},
	}
	for _, tt := range tests {
		// An error that comes after the redirect_uri check is GitLab's error page by default,
		// and a redirect with WithRedirectedErrors.
		variants := []bool{false}
		if tt.want.err != "" {
			variants = append(variants, true)
		}
		for _, redirected := range variants {
			name := tt.name
			var opts []Option
			if redirected {
				name += " (WithRedirectedErrors)"
				opts = append(opts, WithRedirectedErrors())
			}
			t.Run(name, func(t *testing.T) {
				exp := tt.want
				desc := exp.errDesc
				if desc == "" {
					desc = errorDescriptions[exp.err]
				}
				if exp.err != "" && !redirected {
					exp = want{status: 200, page: "<code>" + exp.err + "</code>"}
				}
				f := newFixture(t, opts...)
				w := authorize(f.Server, tt.query)
				if w.Code != exp.status {
					t.Fatalf("status = %d, want %d; body %s", w.Code, exp.status, w.Body)
				}
				loc := w.Header().Get("Location")
				if exp.page != "" {
					if loc != "" {
						t.Fatalf("redirected to %s, want no redirect", loc)
					}
					if !strings.Contains(w.Body.String(), exp.page) {
						t.Fatalf("page does not say %q:\n%s", exp.page, w.Body)
					}
					if tt.want.err != "" && !strings.Contains(w.Body.String(), template.HTMLEscapeString(desc)) {
						t.Fatalf("page does not say %q:\n%s", desc, w.Body)
					}
					return
				}
				u, err := url.Parse(loc)
				if err != nil {
					t.Fatal(err)
				}
				redirect, _ := url.Parse(tt.query.Get("redirect_uri"))
				if u.Scheme != redirect.Scheme || u.Host != redirect.Host || u.Path != redirect.Path {
					t.Fatalf("redirected to %s, want %s", loc, redirect)
				}
				got := u.Query()
				if got.Get("state") != "xyz" {
					t.Errorf("state = %q, want xyz", got.Get("state"))
				}
				if got.Get("error") != exp.err {
					t.Fatalf("error = %q (%s), want %q", got.Get("error"), got.Get("error_description"), exp.err)
				}
				if exp.err == "" && got.Get("code") == "" {
					t.Fatalf("no code in %s", loc)
				}
				if exp.err != "" {
					if got.Has("code") {
						t.Errorf("an error carries a code: %s", loc)
					}
					if got.Get("error_description") != desc {
						t.Errorf("error_description = %q, want %q", got.Get("error_description"), desc)
					}
				}
			})
		}
	}
}

func TestStateIsReturnedVerbatim(t *testing.T) {
	f := newFixture(t)
	// Mattermost's state is padded standard base64, with + / and =.
	for _, state := range []string{"eyJhIjoiYiJ9+/x==", "a b&c=d%e", "é😀", ""} {
		q := authorizeParams("mattermost", mmRedirect, "scope", "read_user")
		q.Set("state", state)
		w := authorize(f.Server, q)
		u, _ := url.Parse(w.Header().Get("Location"))
		if got := u.Query().Get("state"); got != state {
			t.Errorf("state %q came back as %q", state, got)
		}
		if state == "" && u.Query().Has("state") {
			t.Errorf("an empty state came back as a parameter: %s", u)
		}
	}
}

func TestRegisteredQueryIsPreservedInTheRedirect(t *testing.T) {
	f := newFixture(t)
	w := authorize(f.Server, authorizeParams("app", "https://app.example.com/cb?x=1&tenant=a", "scope", "read_user"))
	loc := w.Header().Get("Location")
	if !strings.HasPrefix(loc, "https://app.example.com/cb?x=1&tenant=a&code=") {
		t.Fatalf("redirected to %s", loc)
	}
	f = newFixture(t, WithRedirectedErrors())
	w = authorize(f.Server, authorizeParams("app", "https://app.example.com/cb?x=1&tenant=a", "scope", "read_user", "response_type", "token"))
	loc = w.Header().Get("Location")
	if !strings.HasPrefix(loc, "https://app.example.com/cb?x=1&tenant=a&error=unsupported_response_type&") {
		t.Fatalf("redirected to %s", loc)
	}
}

func TestDenyNextEndsInAccessDenied(t *testing.T) {
	f := newFixture(t)
	f.DenyNext()
	w := authorize(f.Server, authorizeParams("app", appRedirect, "scope", "read_user"))
	u, _ := url.Parse(w.Header().Get("Location"))
	q := u.Query()
	if q.Get("error") != "access_denied" || q.Get("state") != "xyz" || q.Get("error_description") == "" {
		t.Fatalf("redirected to %s, want access_denied with state and description", u)
	}
	// The Deny is used up.
	mustCode(t, f.Server, authorizeParams("app", appRedirect, "scope", "read_user"))
}

func TestDenyNextWaitsForAnAppThatAsksForConsent(t *testing.T) {
	f := newFixture(t)
	f.DenyNext()
	// Trusted: no consent step, so no Deny to press.
	mustCode(t, f.Server, authorizeParams("mattermost", mmRedirect, "scope", "read_user"))
	w := authorize(f.Server, authorizeParams("app", appRedirect, "scope", "read_user"))
	u, _ := url.Parse(w.Header().Get("Location"))
	if u.Query().Get("error") != "access_denied" {
		t.Fatalf("redirected to %s, want access_denied", u)
	}
}

func TestInactiveUserCannotSignIn(t *testing.T) {
	tests := []struct{ state, says string }{
		{gitlabapi.StateBlocked, "Your account has been blocked."},
		{gitlabapi.StateLDAPBlocked, "Your account has been blocked."},
		{gitlabapi.StateBanned, "Your account has been blocked."},
		{gitlabapi.StateBlockedPendingApproval, "pending approval"},
		{gitlabapi.StateDeactivated, "deactivated"},
	}
	for _, tt := range tests {
		t.Run(tt.state, func(t *testing.T) {
			f := newFixture(t)
			f.SetUserState("alice", tt.state)
			w := authorize(f.Server, authorizeParams("mattermost", mmRedirect, "scope", "read_user"))
			if w.Code != http.StatusForbidden || w.Header().Get("Location") != "" {
				t.Fatalf("status %d, Location %q; want 403 and no redirect", w.Code, w.Header().Get("Location"))
			}
			if !strings.Contains(w.Body.String(), tt.says) {
				t.Fatalf("page does not say %q:\n%s", tt.says, w.Body)
			}
		})
	}
}

func TestNobodySignedInIsSentToSignIn(t *testing.T) {
	f := newFixture(t)
	f.SignIn("")
	w := authorize(f.Server, authorizeParams("mattermost", mmRedirect, "scope", "read_user"))
	if w.Code != http.StatusFound || w.Header().Get("Location") != testBase+"/users/sign_in" {
		t.Fatalf("status %d, Location %q", w.Code, w.Header().Get("Location"))
	}
	if w := serve(f.Server, http.MethodGet, "/users/sign_in", nil, nil); w.Code != http.StatusOK {
		t.Fatalf("sign-in page: status %d", w.Code)
	}
}

func TestSignInChoosesWhoIsSignedIn(t *testing.T) {
	f := newFixture(t)
	f.AddUser(User{Username: "bob", Email: "bob@example.com"})
	for _, tc := range []struct {
		signIn string
		wantID float64
	}{{"", 42}, {"bob", 43}, {"alice", 42}} {
		if tc.signIn != "" {
			f.SignIn(tc.signIn)
		}
		code := mustCode(t, f.Server, authorizeParams("mattermost", mmRedirect, "scope", "read_user"))
		tok := exchange(t, f.Server, tokenForm("grant_type", "authorization_code", "code", code,
			"redirect_uri", mmRedirect, "client_id", "mattermost", "client_secret", mmSecret))
		w := serve(f.Server, http.MethodGet, "/api/v4/user", nil, bearer(tok["access_token"].(string)))
		if got := decode(t, w.Body.Bytes())["id"]; got != tc.wantID {
			t.Errorf("after SignIn(%q): user id %v, want %v", tc.signIn, got, tc.wantID)
		}
	}
}

func TestRedirectURIMatching(t *testing.T) {
	tests := []struct {
		name                string
		registered, request string
		want                bool
	}{
		{"identical", "https://mm.example.com/signup/gitlab/complete", "https://mm.example.com/signup/gitlab/complete", true},
		{"scheme and host ignore case", "https://mm.example.com/cb", "HTTPS://MM.Example.COM/cb", true},
		{"path keeps its case", "https://mm.example.com/cb", "https://mm.example.com/CB", false},
		{"default https port is implicit", "https://mm.example.com/cb", "https://mm.example.com:443/cb", true},
		{"default http port is implicit", "http://mm.example.com:80/cb", "http://mm.example.com/cb", true},
		{"another port is another URI", "https://mm.example.com/cb", "https://mm.example.com:8443/cb", false},
		{"trailing slash matters", "https://mm.example.com/cb", "https://mm.example.com/cb/", false},
		{"no prefix matching", "https://mm.example.com/cb", "https://mm.example.com/cb/evil", false},
		{"no suffix domain matching", "https://example.com/cb", "https://evil-example.com/cb", false},
		{"no subdomain matching", "https://example.com/cb", "https://mm.example.com/cb", false},
		{"http is not https", "https://mm.example.com/cb", "http://mm.example.com/cb", false},
		{"an empty path is the root", "https://mm.example.com", "https://mm.example.com/", true},
		{"user info must match", "https://mm.example.com/cb", "https://user@mm.example.com/cb", false},
		{"a fragment is refused", "https://mm.example.com/cb", "https://mm.example.com/cb#x", false},
		{"an empty fragment is refused", "https://mm.example.com/cb", "https://mm.example.com/cb#", false},
		{"registered query must match as a set", "https://a.example.com/cb?a=1&b=2", "https://a.example.com/cb?b=2&a=1", true},
		{"registered query must be there", "https://a.example.com/cb?a=1", "https://a.example.com/cb", false},
		{"registered query must not differ", "https://a.example.com/cb?a=1", "https://a.example.com/cb?a=2", false},
		{"registered query must not gain pairs", "https://a.example.com/cb?a=1", "https://a.example.com/cb?a=1&b=2", false},
		{"a query is ignored when none is registered, as in Doorkeeper", "https://a.example.com/cb", "https://a.example.com/cb?x=1", true},
		{"loopback IPv4 ignores the port", "http://127.0.0.1/cb", "http://127.0.0.1:5000/cb", true},
		{"loopback IPv6 ignores the port", "http://[::1]:80/cb", "http://[::1]:5000/cb", true},
		{"localhost is a name, not a loopback literal", "http://localhost/cb", "http://localhost:5000/cb", false},
		{"loopback keeps the path exact", "http://127.0.0.1/cb", "http://127.0.0.1:5000/cb2", false},
		{"a custom scheme matches exactly", "com.example.app:/oauth", "com.example.app:/oauth", true},
		{"javascript is refused", "https://a.example.com/cb", "javascript:alert(1)", false},
		{"an http URI needs a host", "https://a.example.com/cb", "https:///cb", false},
		{"empty is refused", "https://a.example.com/cb", "", false},
		{"garbage is refused", "https://a.example.com/cb", "%zz", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := redirectAllowed(tt.request, []string{tt.registered}); got != tt.want {
				t.Errorf("redirectAllowed(%q, %q) = %v, want %v", tt.request, tt.registered, got, tt.want)
			}
		})
	}
}

func TestAddApplicationRefusesWhatGitLabRefuses(t *testing.T) {
	for _, uris := range [][]string{nil, {"/relative"}, {"https://a.example.com/cb#frag"}, {"javascript:alert(1)"}, {"https:///cb"}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("AddApplication with redirect URIs %q did not panic", uris)
				}
			}()
			New().AddApplication(Application{RedirectURIs: uris})
		}()
	}
}

func TestAddApplicationFillsInWhatIsMissing(t *testing.T) {
	s := New()
	conf := s.AddApplication(Application{RedirectURIs: []string{appRedirect}, Confidential: true})
	if len(conf.UID) != 64 || !strings.HasPrefix(conf.Secret, "gloas-") || !conf.Confidential {
		t.Errorf("confidential app stored as %+v", conf)
	}
	public := s.AddApplication(Application{RedirectURIs: []string{appRedirect}})
	if public.Secret != "" || public.Confidential {
		t.Errorf("public app stored as %+v", public)
	}
	withSecret := s.AddApplication(Application{RedirectURIs: []string{appRedirect}, Secret: "s"})
	if !withSecret.Confidential {
		t.Errorf("an app with a secret is not confidential: %+v", withSecret)
	}
}

// browserJar carries cookies between requests sent straight to the handler, as a browser does.
type browserJar map[string]string

func (j browserJar) do(s *Server, method, target string, form url.Values) *httptest.ResponseRecorder {
	h := http.Header{}
	for name, value := range j {
		h.Add("Cookie", (&http.Cookie{Name: name, Value: value}).String())
	}
	w := serve(s, method, target, form, h)
	for _, c := range w.Result().Cookies() {
		if c.MaxAge < 0 {
			delete(j, c.Name)
		} else {
			j[c.Name] = c.Value
		}
	}
	return w
}

var authenticityToken = regexp.MustCompile(`name="authenticity_token" value="([^"]+)"`)

func TestTheSignInFormSignsInOneBrowserAndReturnsItToAuthorize(t *testing.T) {
	f := newFixture(t)
	f.AddUser(User{ID: 42, Username: "alice", Name: "Alice Liddell", Email: "alice@example.com", Password: "correct horse"})
	f.AddUser(User{Username: "nopass", Email: "nopass@example.com"})
	f.SignIn("")
	browser := browserJar{}
	authorizeTarget := "/oauth/authorize?" + authorizeParams("mattermost", mmRedirect, "scope", "read_user", "state", "s t/ä").Encode()
	w := browser.do(f.Server, http.MethodGet, authorizeTarget, nil)
	if w.Code != http.StatusFound || w.Header().Get("Location") != testBase+"/users/sign_in" {
		t.Fatalf("authorize with nobody signed in: %d to %q", w.Code, w.Header().Get("Location"))
	}
	form := func() url.Values {
		t.Helper()
		w := browser.do(f.Server, http.MethodGet, "/users/sign_in", nil)
		m := authenticityToken.FindStringSubmatch(w.Body.String())
		if w.Code != http.StatusOK || m == nil || !strings.Contains(w.Body.String(), `name="user[login]"`) || !strings.Contains(w.Body.String(), `name="user[password]"`) {
			t.Fatalf("sign-in page: %d %s", w.Code, w.Body.String())
		}
		return url.Values{"authenticity_token": {m[1]}}
	}

	t.Run("a wrong password shows the form again and signs nobody in", func(t *testing.T) {
		v := form()
		v.Set("user[login]", "alice")
		v.Set("user[password]", "battery staple")
		w := browser.do(f.Server, http.MethodPost, "/users/sign_in", v)
		if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "Invalid login or password.") {
			t.Errorf("got %d %s", w.Code, w.Body.String())
		}
	})
	t.Run("a user without a password cannot sign in at the form", func(t *testing.T) {
		v := form()
		v.Set("user[login]", "nopass")
		v.Set("user[password]", "")
		if w := browser.do(f.Server, http.MethodPost, "/users/sign_in", v); !strings.Contains(w.Body.String(), "Invalid login or password.") {
			t.Errorf("got %d %s", w.Code, w.Body.String())
		}
	})
	t.Run("a form without this browser's token is refused with 422", func(t *testing.T) {
		v := url.Values{"authenticity_token": {"forged"}, "user[login]": {"alice"}, "user[password]": {"correct horse"}}
		if w := browser.do(f.Server, http.MethodPost, "/users/sign_in", v); w.Code != http.StatusUnprocessableEntity {
			t.Errorf("got %d", w.Code)
		}
	})
	t.Run("the right password, with the email in another case, returns the browser to authorize", func(t *testing.T) {
		v := form()
		v.Set("user[login]", "Alice@Example.com")
		v.Set("user[password]", "correct horse")
		w := browser.do(f.Server, http.MethodPost, "/users/sign_in", v)
		if w.Code != http.StatusFound || w.Header().Get("Location") != testBase+authorizeTarget {
			t.Fatalf("got %d to %q, want 302 to %s", w.Code, w.Header().Get("Location"), testBase+authorizeTarget)
		}
		w = browser.do(f.Server, http.MethodGet, authorizeTarget, nil)
		loc, _ := url.Parse(w.Header().Get("Location"))
		if w.Code != http.StatusFound || loc == nil || loc.Query().Get("code") == "" || loc.Query().Get("state") != "s t/ä" {
			t.Errorf("authorize after signing in: %d to %q", w.Code, w.Header().Get("Location"))
		}
	})
	t.Run("another browser is still asked to sign in", func(t *testing.T) {
		w := browserJar{}.do(f.Server, http.MethodGet, authorizeTarget, nil)
		if w.Code != http.StatusFound || w.Header().Get("Location") != testBase+"/users/sign_in" {
			t.Errorf("got %d to %q", w.Code, w.Header().Get("Location"))
		}
	})
	t.Run("a return address on another host is not followed", func(t *testing.T) {
		other := browserJar{returnToCookie: "//evil.example/x"}
		v := url.Values{"user[login]": {"alice"}, "user[password]": {"correct horse"}}
		w := other.do(f.Server, http.MethodGet, "/users/sign_in", nil)
		v.Set("authenticity_token", authenticityToken.FindStringSubmatch(w.Body.String())[1])
		w = other.do(f.Server, http.MethodPost, "/users/sign_in", v)
		if w.Header().Get("Location") != testBase+"/" {
			t.Errorf("went to %q, want %s/", w.Header().Get("Location"), testBase)
		}
	})
	t.Run("SignIn(\"\") signs the form's browsers out too", func(t *testing.T) {
		f.SignIn("")
		if w := browser.do(f.Server, http.MethodGet, authorizeTarget, nil); w.Header().Get("Location") != testBase+"/users/sign_in" {
			t.Errorf("got %d to %q", w.Code, w.Header().Get("Location"))
		}
	})
}
