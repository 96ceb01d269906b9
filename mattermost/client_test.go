package mattermost

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeProvider is a small GitLab-like provider: /oauth/authorize checks the request and sends the
// browser through a cookie-setting hop to /back, which redirects to the redirect_uri; the token
// and user endpoints answer what the test sets.
type fakeProvider struct {
	t   *testing.T
	srv *httptest.Server

	clientID, secret, redirectURI string

	// back overrides where /back sends the browser, from the redirect_uri and the state.
	back func(redirectURI, state string) string
	// authorize overrides /oauth/authorize.
	authorize http.HandlerFunc

	tokenBody  string
	userBody   string
	authorized atomic.Int32
}

func newFakeProvider(t *testing.T, siteURL string) *fakeProvider {
	p := &fakeProvider{
		t:           t,
		clientID:    "app-1",
		secret:      "s3cret",
		redirectURI: strings.TrimRight(siteURL, "/") + SignupCompletePath,
		tokenBody:   `{"access_token":"at-1","token_type":"Bearer","expires_in":7200,"refresh_token":"rt-1","scope":"read_user","created_at":1700000000}`,
		userBody:    `{"id":42,"username":"Ada.L","name":"Ada Lovelace","email":"Ada@Example.com","state":"active"}`,
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /oauth/authorize", func(w http.ResponseWriter, r *http.Request) {
		if p.authorize != nil {
			p.authorize(w, r)
			return
		}
		q := r.URL.Query()
		if q.Get("client_id") != p.clientID || q.Get("redirect_uri") != p.redirectURI {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte("<html><head><title>Unknown client or redirect URI</title></head></html>"))
			return
		}
		if q.Get("response_type") != "code" {
			t.Errorf("response_type = %q", q.Get("response_type"))
		}
		p.authorized.Add(1)
		http.SetCookie(w, &http.Cookie{Name: "session", Value: "yes", Path: "/"})
		http.Redirect(w, r, "/back?state="+url.QueryEscape(q.Get("state")), http.StatusFound)
	})
	mux.HandleFunc("GET /back", func(w http.ResponseWriter, r *http.Request) {
		if c, err := r.Cookie("session"); err != nil || c.Value != "yes" {
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte("<title>no session cookie</title>"))
			return
		}
		state := r.URL.Query().Get("state")
		target := p.redirectURI + "?code=code-1&state=" + url.QueryEscape(state)
		if p.back != nil {
			target = p.back(p.redirectURI, state)
		}
		http.Redirect(w, r, target, http.StatusFound)
	})
	mux.HandleFunc("POST /oauth/token", func(w http.ResponseWriter, r *http.Request) {
		if r.PostFormValue("client_id") != p.clientID || r.PostFormValue("client_secret") != p.secret {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"invalid_client","error_description":"Client authentication failed."}`))
			return
		}
		if r.PostFormValue("code") != "code-1" || r.PostFormValue("redirect_uri") != p.redirectURI {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":"invalid_grant","error_description":"bad code"}`))
			return
		}
		_, _ = w.Write([]byte(p.tokenBody))
	})
	mux.HandleFunc("GET /api/v4/user", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer at-1" {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"message":"401 Unauthorized"}`))
			return
		}
		_, _ = w.Write([]byte(p.userBody))
	})
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.srv.Close)
	return p
}

// newMattermostSite stands for Mattermost: the client must never request it.
func newMattermostSite(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("the client requested Mattermost: %s", r.URL)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func newTestClient(t *testing.T) (*Client, *fakeProvider) {
	site := newMattermostSite(t)
	p := newFakeProvider(t, site.URL)
	return &Client{Settings: SettingsForBridge(p.srv.URL, p.clientID, p.secret), SiteURL: site.URL + "/"}, p
}

func TestLogin(t *testing.T) {
	c, p := newTestClient(t)
	res, err := c.Login(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := User{AuthService: "gitlab", AuthData: "42", ID: 42, Username: "ada.l", Email: "ada@example.com", FirstName: "Ada", LastName: "Lovelace"}
	if res.User == nil || *res.User != want {
		t.Fatalf("User = %+v, want %+v", res.User, want)
	}
	if res.Token == nil || res.Token.AccessToken != "at-1" || res.Token.ExpiresInSeconds != 7200 {
		t.Errorf("Token = %+v", res.Token)
	}
	if string(res.RawUser) != p.userBody {
		t.Errorf("RawUser = %s", res.RawUser)
	}
	if !strings.HasPrefix(res.RedirectedTo, p.redirectURI+"?code=code-1&state=") {
		t.Errorf("RedirectedTo = %s", res.RedirectedTo)
	}
	if props, err := StateProps(res.State); err != nil || props["action"] != "login" {
		t.Errorf("State %q: %v %v", res.State, props, err)
	}
	if res.SignupError != nil {
		t.Errorf("SignupError = %v", res.SignupError)
	}
}

func TestLoginLeavesTheCallersBrowserAlone(t *testing.T) {
	c, _ := newTestClient(t)
	jar, _ := cookiejar.New(nil)
	c.Browser = &http.Client{Jar: jar}
	if _, err := c.Login(context.Background()); err != nil {
		t.Fatal(err)
	}
	if c.Browser.CheckRedirect != nil {
		t.Fatal("Login changed the caller's redirect policy")
	}
	u, _ := url.Parse(c.Settings.AuthEndpoint)
	if len(jar.Cookies(u)) == 0 {
		t.Fatal("the provider's cookie did not land in the caller's jar")
	}
}

func TestLoginStopsAtAnyMattermostCallback(t *testing.T) {
	for _, path := range []string{LoginCompletePath, OAuthCompletePath} {
		c, p := newTestClient(t)
		p.back = func(_, state string) string {
			return strings.TrimSuffix(p.redirectURI, SignupCompletePath) + path + "?code=code-1&state=" + url.QueryEscape(state)
		}
		res, err := c.Login(context.Background())
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if !strings.Contains(res.RedirectedTo, path) {
			t.Errorf("RedirectedTo = %s", res.RedirectedTo)
		}
	}
}

func TestLoginCallbackFailures(t *testing.T) {
	tests := []struct {
		name     string
		back     func(redirectURI, state string) string
		reason   error
		contains []string
	}{
		{"access denied", func(ru, st string) string {
			return ru + "?error=access_denied&error_description=The+resource+owner+denied+the+request.&state=" + url.QueryEscape(st)
		}, ErrAccessDenied, []string{"access denied", "You must authorize Mattermost to log in with Gitlab.", "trusted"}},
		{"access denied wins over a code, as in completeOAuth", func(ru, st string) string {
			return ru + "?error=access_denied&code=code-1&state=" + url.QueryEscape(st)
		}, ErrAccessDenied, []string{"access denied"}},
		{"another error without a code", func(ru, st string) string {
			return ru + "?error=invalid_scope&error_description=no+read_user&state=" + url.QueryEscape(st)
		}, ErrMissingCode, []string{"missing code", "did not provide an authorization code", "error=invalid_scope: no read_user"}},
		{"no code and no error", func(ru, st string) string {
			return ru + "?state=" + url.QueryEscape(st)
		}, ErrMissingCode, []string{"missing code"}},
		{"the state is missing", func(ru, _ string) string {
			return ru + "?code=code-1"
		}, ErrStateMismatch, []string{"Invalid state", "missing"}},
		{"the state is cut short", func(ru, st string) string {
			return ru + "?code=code-1&state=" + url.QueryEscape(st[:len(st)-5])
		}, ErrStateMismatch, []string{"Invalid state", "cut short"}},
		{"another state", func(ru, _ string) string {
			other, _ := NewState(ActionLogin)
			return ru + "?code=code-1&state=" + url.QueryEscape(other)
		}, ErrStateMismatch, []string{"Invalid state", "not the one Mattermost sent"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, p := newTestClient(t)
			p.back = tt.back
			res, err := c.Login(context.Background())
			if !errors.Is(err, tt.reason) {
				t.Fatalf("got %v, want %v", err, tt.reason)
			}
			var ce *CallbackError
			if !errors.As(err, &ce) {
				t.Fatalf("got %T", err)
			}
			for _, s := range tt.contains {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("message %q lacks %q", err, s)
				}
			}
			if strings.Contains(err.Error(), "code-1") {
				t.Errorf("the code is in the message: %v", err)
			}
			if res.RedirectedTo == "" || res.Token != nil {
				t.Errorf("result %+v", res)
			}
		})
	}
}

func TestStateDiagnostics(t *testing.T) {
	sent := "eyJhY3Rpb24iOiJsb2dpbiJ9+ab/cd=="
	for _, tt := range []struct{ got, want string }{
		{"eyJhY3Rpb24iOiJsb2dpbiJ9 ab/cd==", "came back as a space"},
		{"eyJhY3Rpb24iOiJsb2dpbiJ9+ab/cd", "padding"},
	} {
		back, _ := url.Parse("https://chat.example.com/signup/gitlab/complete?code=x&state=" + url.QueryEscape(tt.got))
		_, err := checkCallback(back, sent)
		if !errors.Is(err, ErrStateMismatch) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("state %q: got %v, want %q", tt.got, err, tt.want)
		}
	}
	// A provider that puts the state in its Location unescaped turns '+' into spaces.
	back, _ := url.Parse("https://chat.example.com/signup/gitlab/complete?code=x&state=" + sent)
	if _, err := checkCallback(back, sent); !strings.Contains(err.Error(), "came back as a space") {
		t.Errorf("unescaped state: %v", err)
	}
}

func TestLoginBrowserFailures(t *testing.T) {
	tests := []struct {
		name      string
		authorize http.HandlerFunc
		change    func(*Client, *fakeProvider)
		reason    error
		contains  []string
	}{
		{"an unknown client stops at the provider's error page", nil,
			func(c *Client, _ *fakeProvider) { c.Settings.Id = "someone-else" },
			ErrStoppedAtPage, []string{"400 Bad Request", `"Unknown client or redirect URI"`, "GitLabSettings.Id"}},
		{"an unregistered redirect URI stops there too", nil,
			func(c *Client, _ *fakeProvider) { c.SiteURL = "https://other.example.com" },
			ErrStoppedAtPage, []string{"400 Bad Request", "/signup/gitlab/complete"}},
		{"a sign-in form stops the browser", func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte("<html><head><title>Sign in · GitLab</title></head><form></form></html>"))
		}, nil, ErrStoppedAtPage, []string{"200 OK", "Sign in · GitLab", "OnPage"}},
		{"a wrong AuthEndpoint path", nil,
			func(c *Client, p *fakeProvider) { c.Settings.AuthEndpoint = p.srv.URL + "/authorize" },
			ErrStoppedAtPage, []string{"404 Not Found", "/oauth/authorize"}},
		{"a person refused at GitLab is told so, not sent to check client_id", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte("<html><head><title>Sign in refused · GitLab</title></head></html>"))
		}, nil, ErrStoppedAtPage, []string{"403 Forbidden", "The person was refused", "apps show"}},
		{"a redirect loop", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, r.URL.String(), http.StatusFound)
		}, nil, ErrTooManyRedirects, []string{"loop"}},
		{"a redirect to another Mattermost page", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, strings.TrimSuffix(r.URL.Query().Get("redirect_uri"), SignupCompletePath)+"/login?extra=x", http.StatusFound)
		}, nil, ErrUnexpectedRedirect, []string{"/login", "redirect URIs"}},
		{"an unreachable provider", nil,
			func(c *Client, _ *fakeProvider) { c.Settings.AuthEndpoint = "http://127.0.0.1:1/oauth/authorize" },
			ErrBrowserRequest, []string{"127.0.0.1:1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, p := newTestClient(t)
			p.authorize = tt.authorize
			if tt.change != nil {
				tt.change(c, p)
			}
			_, err := c.Login(context.Background())
			if !errors.Is(err, tt.reason) {
				t.Fatalf("got %v, want %v", err, tt.reason)
			}
			var be *BrowserError
			if !errors.As(err, &be) {
				t.Fatalf("got %T", err)
			}
			for _, s := range tt.contains {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("message %q lacks %q", err, s)
				}
			}
		})
	}
}

func TestLoginOnPageSubmitsAForm(t *testing.T) {
	c, p := newTestClient(t)
	p.authorize = func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`<title>Authorize Mattermost?</title><form method="post" action="/consent"></form>`))
	}
	var consentState string
	p.srv.Config.Handler.(*http.ServeMux).HandleFunc("POST /consent", func(w http.ResponseWriter, r *http.Request) {
		if r.PostFormValue("decision") != "allow" {
			t.Errorf("decision = %q", r.PostFormValue("decision"))
		}
		// 303 turns the POST into a GET, as in a browser.
		http.Redirect(w, r, p.redirectURI+"?code=code-1&state="+url.QueryEscape(consentState), http.StatusSeeOther)
	})
	var pages int
	c.OnPage = func(ctx context.Context, page *Page) (*http.Request, error) {
		pages++
		if page.Status != http.StatusOK || !strings.Contains(string(page.Body), "Authorize Mattermost?") {
			t.Errorf("page %d %s", page.Status, page.Body)
		}
		consentState = page.URL.Query().Get("state")
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, page.URL.ResolveReference(&url.URL{Path: "/consent"}).String(),
			strings.NewReader("decision=allow"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		return req, nil
	}
	res, err := c.Login(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if pages != 1 || res.User == nil || res.User.AuthData != "42" {
		t.Fatalf("pages %d, result %+v", pages, res)
	}
}

func TestLoginTokenAndUserFailures(t *testing.T) {
	t.Run("a wrong secret", func(t *testing.T) {
		c, _ := newTestClient(t)
		c.Settings.Secret = "wrong"
		res, err := c.Login(context.Background())
		var te *TokenError
		if !errors.As(err, &te) || te.OAuthError != "invalid_client" || te.Status != http.StatusUnauthorized {
			t.Fatalf("got %v", err)
		}
		if !strings.Contains(err.Error(), "Bad response from token request") || !strings.Contains(err.Error(), "GitLabSettings.Secret") {
			t.Errorf("message %q", err)
		}
		if strings.Contains(err.Error(), "wrong") {
			t.Errorf("the secret is in the message: %v", err)
		}
		if res.RedirectedTo == "" {
			t.Error("RedirectedTo is empty")
		}
	})
	t.Run("a mac token", func(t *testing.T) {
		c, p := newTestClient(t)
		p.tokenBody = `{"access_token":"at-1","token_type":"mac"}`
		if _, err := c.Login(context.Background()); !errors.Is(err, ErrBadTokenType) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("a user without email", func(t *testing.T) {
		c, p := newTestClient(t)
		p.userBody = `{"id":42,"username":"ada"}`
		res, err := c.Login(context.Background())
		if !errors.Is(err, ErrUserParse) || !strings.Contains(err.Error(), "user e-mail should not be empty") {
			t.Fatalf("got %v", err)
		}
		if res.Token == nil || string(res.RawUser) != p.userBody {
			t.Errorf("result %+v", res)
		}
	})
	t.Run("a user Mattermost could not create", func(t *testing.T) {
		c, p := newTestClient(t)
		p.userBody = `{"id":42,"username":"ada","email":"Ada <ada@example.com>"}`
		res, err := c.Login(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if !errors.Is(res.SignupError, ErrSignupRefused) {
			t.Fatalf("SignupError = %v", res.SignupError)
		}
	})
}

func TestLoginRefusesWhatGetSSOProviderRefuses(t *testing.T) {
	c, p := newTestClient(t)
	c.Settings.Enable = false
	if _, err := c.Login(context.Background()); !errors.Is(err, ErrSSODisabled) {
		t.Fatalf("disabled: %v", err)
	}
	c.Settings.Enable = true
	c.Settings.Scope = "openid"
	if _, err := c.Login(context.Background()); !errors.Is(err, ErrOpenIDScope) {
		t.Fatalf("openid: %v", err)
	}
	c.Settings.Scope = ""
	c.SiteURL = ""
	var se *SettingsError
	if _, err := c.Login(context.Background()); !errors.As(err, &se) || se.Setting != "ServiceSettings.SiteURL" {
		t.Fatalf("no Site URL: %v", err)
	}
	if p.authorized.Load() != 0 {
		t.Fatal("the provider was asked although Mattermost would have refused")
	}
}

func TestAuthorizeURLIsBuiltAsMattermostBuildsIt(t *testing.T) {
	state := "eyJhIjoiYiJ9+/=="
	tests := []struct {
		name     string
		settings Settings
		want     string
	}{
		{"no scope, no scope parameter",
			Settings{AuthEndpoint: "https://sso.example.com/oauth/authorize", Id: "app-1"},
			"https://sso.example.com/oauth/authorize?response_type=code&client_id=app-1&redirect_uri=https%3A%2F%2Fchat.example.com%2Fmm%2Fsignup%2Fgitlab%2Fcomplete&state=eyJhIjoiYiJ9%2B%2F%3D%3D"},
		{"scope with its spaces as %20",
			Settings{AuthEndpoint: "https://sso.example.com/oauth/authorize", Id: "app-1", Scope: "read_user api+x"},
			"https://sso.example.com/oauth/authorize?response_type=code&client_id=app-1&redirect_uri=https%3A%2F%2Fchat.example.com%2Fmm%2Fsignup%2Fgitlab%2Fcomplete&state=eyJhIjoiYiJ9%2B%2F%3D%3D&scope=read_user%20api%2Bx"},
		{"client_id is not escaped",
			Settings{AuthEndpoint: "https://sso.example.com/oauth/authorize", Id: "a&b c"},
			"https://sso.example.com/oauth/authorize?response_type=code&client_id=a&b c&redirect_uri=https%3A%2F%2Fchat.example.com%2Fmm%2Fsignup%2Fgitlab%2Fcomplete&state=eyJhIjoiYiJ9%2B%2F%3D%3D"},
		{"an endpoint with a query gets a second '?'",
			Settings{AuthEndpoint: "https://sso.example.com/oauth/authorize?x=1", Id: "app-1"},
			"https://sso.example.com/oauth/authorize?x=1?response_type=code&client_id=app-1&redirect_uri=https%3A%2F%2Fchat.example.com%2Fmm%2Fsignup%2Fgitlab%2Fcomplete&state=eyJhIjoiYiJ9%2B%2F%3D%3D"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Client{Settings: tt.settings, SiteURL: "https://chat.example.com/mm/"}
			if got := c.AuthorizeURL(state); got != tt.want {
				t.Fatalf("AuthorizeURL =\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

var stateToken = regexp.MustCompile(`^[ybndrfg8ejkmcpqxot1uwisza345h769]{64}$`)

func TestNewState(t *testing.T) {
	state, token := NewState(ActionLogin)
	if len(state)%4 != 0 {
		t.Errorf("state %q is not padded base64", state)
	}
	raw, err := base64.StdEncoding.DecodeString(state)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"action":"login","isMobile":"false","token":"` + token + `"}`; string(raw) != want {
		t.Errorf("state JSON %s, want %s", raw, want)
	}
	if !stateToken.MatchString(token) {
		t.Errorf("token %q is not 64 characters of Mattermost's alphabet", token)
	}

	state, token = NewState(ActionSignup)
	props, err := StateProps(state)
	if err != nil {
		t.Fatal(err)
	}
	var want map[string]string
	_ = json.Unmarshal([]byte(`{"action":"signup","token":"`+token+`"}`), &want)
	if len(props) != len(want) || props["action"] != "signup" || props["token"] != token {
		t.Errorf("signup props %v", props)
	}
	if other, _ := NewState(ActionLogin); other == state {
		t.Error("two states are equal")
	}
}

func TestNewHTTPClientHasMattermostsTimeouts(t *testing.T) {
	c := NewHTTPClient(false)
	tr := c.Transport.(*http.Transport)
	if c.Timeout != 30*time.Second || tr.TLSHandshakeTimeout != 3*time.Second || tr.Proxy == nil || tr.TLSClientConfig.InsecureSkipVerify {
		t.Fatalf("client %+v transport %+v", c, tr)
	}
	if !NewHTTPClient(true).Transport.(*http.Transport).TLSClientConfig.InsecureSkipVerify {
		t.Fatal("insecure is ignored")
	}
}
