package emulator

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	testBase     = "https://gitlab.example.com"
	mmRedirect   = "https://mm.example.com/signup/gitlab/complete"
	mmSecret     = "gloas-mattermost-secret"
	appRedirect  = "https://app.example.com/callback"
	appSecret    = "gloas-app-secret"
	cliRedirect  = "http://127.0.0.1/callback"
	testVerifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
	// testChallenge is the S256 challenge of testVerifier (RFC 7636 appendix B).
	testChallenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
)

// fakeClock is a clock that tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fixture is a server with a user and three applications:
//   - "mattermost": confidential, trusted, read_user only (how admins register Mattermost);
//   - "app": confidential, untrusted, several scopes including api and openid;
//   - "cli": public, on a loopback redirect URI.
type fixture struct {
	*Server
	clock *fakeClock
}

func newFixture(t testing.TB, opts ...Option) fixture {
	t.Helper()
	clock := newFakeClock()
	s := New(append([]Option{WithClock(clock.Now), WithIssuer(testBase)}, opts...)...)
	s.AddUser(User{
		ID: 42, Username: "alice", Name: "Alice Liddell", Email: "alice@example.com",
		PublicEmail: "alice@public.example.com", Groups: []string{"wonderland", "wonderland/tea-party"},
	})
	s.AddApplication(Application{
		UID: "mattermost", Secret: mmSecret, Name: "Mattermost",
		RedirectURIs: []string{mmRedirect + "\nhttps://mm.example.com/login/gitlab/complete"},
		Scopes:       []string{"read_user"}, Confidential: true, Trusted: true,
	})
	s.AddApplication(Application{
		UID: "app", Secret: appSecret, Name: "App",
		RedirectURIs: []string{appRedirect, "https://app.example.com/cb?tenant=a&x=1"},
		Scopes:       []string{"api", "read_user", "openid", "profile", "email"}, Confidential: true,
	})
	s.AddApplication(Application{
		UID: "cli", Name: "CLI", RedirectURIs: []string{cliRedirect}, Scopes: []string{"read_user", "openid"},
	})
	return fixture{Server: s, clock: clock}
}

// serve sends a request straight to the handler.
func serve(s *Server, method, target string, form url.Values, header http.Header) *httptest.ResponseRecorder {
	var body *strings.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	} else {
		body = strings.NewReader("")
	}
	r := httptest.NewRequest(method, target, body)
	if form != nil {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, vs := range header {
		r.Header[k] = vs
	}
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, r)
	return w
}

func authorizeParams(clientID, redirectURI string, extra ...string) url.Values {
	q := url.Values{
		"client_id":     {clientID},
		"redirect_uri":  {redirectURI},
		"response_type": {"code"},
		"state":         {"xyz"},
	}
	for i := 0; i+1 < len(extra); i += 2 {
		if extra[i+1] == "" {
			q.Del(extra[i])
		} else {
			q.Set(extra[i], extra[i+1])
		}
	}
	return q
}

func authorize(s *Server, q url.Values) *httptest.ResponseRecorder {
	return serve(s, http.MethodGet, "/oauth/authorize?"+q.Encode(), nil, nil)
}

// mustCode runs an authorize request that must succeed and returns the code.
func mustCode(t testing.TB, s *Server, q url.Values) string {
	t.Helper()
	w := authorize(s, q)
	if w.Code != http.StatusFound {
		t.Fatalf("authorize: status %d, body %s", w.Code, w.Body)
	}
	loc, err := url.Parse(w.Header().Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	code := loc.Query().Get("code")
	if code == "" {
		t.Fatalf("authorize: no code in %s", loc)
	}
	return code
}

func tokenForm(kv ...string) url.Values {
	f := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		f.Set(kv[i], kv[i+1])
	}
	return f
}

func postToken(s *Server, form url.Values, header http.Header) *httptest.ResponseRecorder {
	return serve(s, http.MethodPost, "/oauth/token", form, header)
}

// exchange redeems a code for the mattermost app with form credentials and returns the
// decoded token response, failing the test on anything but 200.
func exchange(t *testing.T, s *Server, form url.Values) map[string]any {
	t.Helper()
	w := postToken(s, form, nil)
	if w.Code != http.StatusOK {
		t.Fatalf("token: status %d, body %s", w.Code, w.Body)
	}
	return decode(t, w.Body.Bytes())
}

func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("decoding %q: %v", b, err)
	}
	return m
}

// mattermostToken runs the flow Mattermost runs and returns the token response.
func (f fixture) mattermostToken(t *testing.T) map[string]any {
	t.Helper()
	code := mustCode(t, f.Server, authorizeParams("mattermost", mmRedirect, "scope", "read_user"))
	return exchange(t, f.Server, tokenForm("grant_type", "authorization_code", "code", code,
		"redirect_uri", mmRedirect, "client_id", "mattermost", "client_secret", mmSecret))
}

func bearer(tok string) http.Header {
	return http.Header{"Authorization": {"Bearer " + tok}}
}

func basic(id, secret string) http.Header {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	return http.Header{"Authorization": r.Header.Values("Authorization")}
}

// newTestServer starts s on a loopback port until the test ends. It is gitlabtest.NewTestServer,
// which this package's own tests cannot import: gitlabtest imports this package.
func newTestServer(t *testing.T, opts ...Option) *Server {
	t.Helper()
	s := New(opts...)
	if err := s.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}
