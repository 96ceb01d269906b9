package oauth_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ssobridge/ssobridge/gitlabapi"
	"github.com/ssobridge/ssobridge/gitlabapi/emulator"
	"github.com/ssobridge/ssobridge/gitlabapi/gitlabtest"
	"github.com/ssobridge/ssobridge/oauth"
	"github.com/ssobridge/ssobridge/oauth/store"
	"github.com/ssobridge/ssobridge/oauth/store/memstore"
	"github.com/ssobridge/ssobridge/oauth/upstream"
	"github.com/ssobridge/ssobridge/oauth/upstream/openid"
)

const mmRedirect = "https://mm.example.com/signup/gitlab/complete"

// fixtureConfig, when set, changes the configuration of the next fixtures' bridges.
var fixtureConfig func(*oauth.Config)

// fixture is a bridge on the in-memory store in front of a GitLab emulator, with Mattermost
// registered, and an HTTP client that does not follow redirects, so tests see every hop.
type fixture struct {
	t        testing.TB
	gl       *emulator.Server
	store    store.Store
	bridge   *httptest.Server
	app      *store.Application
	secret   string
	http     *http.Client
	upstream emulator.Application
	// upstreamTokens are the tokens GitLab gave the bridge, as seen on the wire.
	upstreamTokens *tokenRecorder
	srv            *oauth.Server
	sealer         *oauth.Sealer
	// logs holds the bridge's JSON log lines.
	logs *lockedBuffer
}

// lockedBuffer is a bytes.Buffer safe for the concurrent writes of a server's handlers.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newFixture(t testing.TB, opts ...emulator.Option) *fixture {
	t.Helper()
	return newFixtureAsking(t, []string{"read_user"}, opts...)
}

// newFixtureAsking is newFixture with the bridge asking GitLab for upstreamScopes.
func newFixtureAsking(t testing.TB, upstreamScopes []string, opts ...emulator.Option) *fixture {
	t.Helper()
	return newFixtureOn(t, memstore.New(), upstreamScopes, opts...)
}

// newFixtureOn is newFixture on the store st, which it closes when the test ends.
func newFixtureOn(t testing.TB, st store.Store, upstreamScopes []string, opts ...emulator.Option) *fixture {
	t.Helper()
	return newFixtureFor(t, st, upstreamScopes, []string{"gitlab"}, opts...)
}

// newFixtureFor is newFixtureOn with the bridge's providers, by kind, all of them the emulator:
// "gitlab" as GitLab, "oidc" as any OpenID provider (called corp, shown as Corp SSO).
func newFixtureFor(t testing.TB, st store.Store, upstreamScopes, kinds []string, opts ...emulator.Option) *fixture {
	t.Helper()
	f := &fixture{t: t, gl: gitlabtest.NewTestServer(t, opts...), store: st}
	t.Cleanup(func() { f.store.Close() })
	f.gl.AddUser(emulator.User{ID: 42, Username: "ada", Name: "Ada Lovelace", Email: "ada@example.com", Groups: []string{"eng", "eng/platform"}})
	f.gl.AddUser(emulator.User{ID: 43, Username: "mallory", Name: "Mallory", Email: "mallory@example.com", State: gitlabapi.StateBlocked})
	f.gl.SignIn("ada")

	// The bridge's address must be known before its callback is registered upstream.
	f.bridge = httptest.NewUnstartedServer(nil)
	public := "http://" + f.bridge.Listener.Addr().String()
	appScopes := upstreamScopes
	if slices.Contains(kinds, "oidc") || slices.Contains(kinds, "oidc-callback-only") {
		appScopes = append(slices.Clone(upstreamScopes), "openid", "email", "profile")
	}
	f.upstream = f.gl.AddApplication(emulator.Application{Name: "ssobridge", RedirectURIs: []string{oauth.CallbackURLFor(public)},
		Scopes: appScopes, Confidential: true}) // untrusted: GitLab shows a consent step, which DenyNext answers
	f.upstreamTokens = &tokenRecorder{next: http.DefaultTransport}
	var ups []upstream.CallbackProvider
	for _, kind := range kinds {
		var up upstream.CallbackProvider
		var err error
		switch kind {
		case "gitlab":
			up, err = gitlabapi.NewClient(gitlabapi.Config{URL: f.gl.URL(), ClientID: f.upstream.UID, ClientSecret: f.upstream.Secret,
				Scopes: upstreamScopes, RedirectURL: oauth.CallbackURLFor(public), HTTPClient: &http.Client{Transport: f.upstreamTokens}})
		case "oidc", "oidc-callback-only":
			up, err = openid.New(openid.Config{Name: "corp", DisplayName: "Corp SSO", Issuer: f.gl.URL(), ClientID: f.upstream.UID,
				ClientSecret: f.upstream.Secret, RedirectURL: oauth.CallbackURLFor(public), HTTPClient: &http.Client{Transport: f.upstreamTokens}})
			if kind == "oidc-callback-only" {
				up = callbackOnly{up}
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		ups = append(ups, up)
	}
	var err error
	f.sealer, err = oauth.NewSealer(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	f.logs = &lockedBuffer{}
	cfg := oauth.Config{PublicURL: public, Store: f.store, Upstreams: ups, Sealer: f.sealer,
		Logger: slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	if fixtureConfig != nil {
		fixtureConfig(&cfg)
	}
	srv, err := oauth.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.srv = srv
	f.bridge.Config.Handler = srv.Handler()
	f.bridge.Start()
	t.Cleanup(f.bridge.Close)

	f.app, f.secret = f.register(oauth.AppSpec{Name: "Mattermost", RedirectURIs: []string{mmRedirect, "https://mm.example.com/login/gitlab/complete"},
		Scopes: []string{"read_user"}, Trusted: true, Confidential: true})
	// The browser: it keeps cookies, and the test follows each redirect itself.
	jar, _ := cookiejar.New(nil)
	f.http = &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return f
}

// callbackOnly is a provider that signs people in and can be asked nothing more: no live read,
// no refresh.
type callbackOnly struct{ upstream.CallbackProvider }

func (f *fixture) register(spec oauth.AppSpec) (*store.Application, string) {
	f.t.Helper()
	app, secret, err := oauth.NewApplication(spec)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := f.store.CreateApp(f.t.Context(), app); err != nil {
		f.t.Fatal(err)
	}
	return app, secret
}

// authorizeQuery is Mattermost's authorize request.
func (f *fixture) authorizeQuery(state string) url.Values {
	return url.Values{"response_type": {"code"}, "client_id": {f.app.ID}, "redirect_uri": {mmRedirect}, "state": {state}}
}

func (f *fixture) get(rawURL string, header ...string) *http.Response {
	f.t.Helper()
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := f.http.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	// Read and close at once, so that connections are reused and a benchmark loop holds nothing.
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		f.t.Fatal(err)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp
}

func (f *fixture) authorize(q url.Values) *http.Response {
	return f.get(f.bridge.URL + "/oauth/authorize?" + q.Encode())
}

func location(t testing.TB, resp *http.Response) *url.URL {
	t.Helper()
	if resp.StatusCode != http.StatusFound {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d, want 302; body: %.500s", resp.StatusCode, body)
	}
	u, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// toCallback runs the authorize request and the upstream sign-in, and returns the URL GitLab
// sends the browser back to, at the bridge.
func (f *fixture) toCallback(q url.Values) *url.URL {
	f.t.Helper()
	upstream := location(f.t, f.authorize(q))
	return location(f.t, f.get(upstream.String()))
}

// toClient runs a whole sign-in and returns where the bridge sends the browser: the client's
// redirect URI with code and state, or an error.
func (f *fixture) toClient(q url.Values) *url.URL {
	f.t.Helper()
	return location(f.t, f.get(f.toCallback(q).String()))
}

func (f *fixture) code() string {
	f.t.Helper()
	got := f.toClient(f.authorizeQuery("st")).Query()
	if got.Get("code") == "" {
		f.t.Fatalf("no code: %v", got)
	}
	return got.Get("code")
}

// tokenForm is Mattermost's token request.
func (f *fixture) tokenForm(code string) url.Values {
	return url.Values{"client_id": {f.app.ID}, "client_secret": {f.secret}, "code": {code},
		"grant_type": {"authorization_code"}, "redirect_uri": {mmRedirect}}
}

func (f *fixture) postToken(form url.Values, header ...string) (*http.Response, map[string]any) {
	f.t.Helper()
	return f.postForm("/oauth/token", form, header...)
}

// postForm posts form to path (which may carry a query, sent as written) and decodes the JSON
// answer.
func (f *fixture) postForm(path string, form url.Values, header ...string) (*http.Response, map[string]any) {
	f.t.Helper()
	req, err := http.NewRequest(http.MethodPost, f.bridge.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		f.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := f.http.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &body); err != nil {
		f.t.Fatalf("token response is not JSON: %v: %s", err, raw)
	}
	return resp, body
}

func (f *fixture) accessToken() string {
	f.t.Helper()
	resp, body := f.postToken(f.tokenForm(f.code()))
	if resp.StatusCode != http.StatusOK {
		f.t.Fatalf("token: %d %v", resp.StatusCode, body)
	}
	return body["access_token"].(string)
}

func readBody(t testing.TB, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func decodeJSON(t testing.TB, body string) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("not JSON: %v: %s", err, body)
	}
	return v
}

// tokenRecorder notes the tokens in GitLab's token responses as they pass to the bridge.
type tokenRecorder struct {
	next   http.RoundTripper
	mu     sync.Mutex
	tokens []string
	// verifiers are the PKCE code verifiers the bridge sent to GitLab's token endpoint.
	verifiers []string
	// down makes GitLab unreachable, as a network failure would.
	down atomic.Bool
	// tokenStatus, when set, is the status of GitLab's token endpoint's every answer, as a proxy
	// in front of a failing GitLab would give it.
	tokenStatus atomic.Int32
	// userBody, when set, rewrites GitLab's /api/v4/user answers, as a GitLab (or a proxy in
	// front of it) that answers oddly would.
	userBody atomic.Pointer[func([]byte) []byte]
	// onUser, when set, is called as each call to GitLab's /api/v4/user goes out.
	onUser atomic.Pointer[func()]
}

func (r *tokenRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	if r.down.Load() {
		return nil, errors.New("dial tcp: connection refused")
	}
	if status := int(r.tokenStatus.Load()); status != 0 && req.URL.Path == "/oauth/token" {
		return &http.Response{StatusCode: status, Status: http.StatusText(status), Header: http.Header{"Content-Type": {"text/html"}},
			Body: io.NopCloser(strings.NewReader("<html><body>" + http.StatusText(status) + "</body></html>")), Request: req}, nil
	}
	if on := r.onUser.Load(); on != nil && req.URL.Path == "/api/v4/user" {
		(*on)()
	}
	if req.URL.Path == "/oauth/token" && req.Body != nil {
		body, _ := io.ReadAll(req.Body)
		req.Body.Close()
		req.Body = io.NopCloser(bytes.NewReader(body))
		if form, err := url.ParseQuery(string(body)); err == nil && form.Get("code_verifier") != "" {
			r.mu.Lock()
			r.verifiers = append(r.verifiers, form.Get("code_verifier"))
			r.mu.Unlock()
		}
	}
	resp, err := r.next.RoundTrip(req)
	if rewrite := r.userBody.Load(); err == nil && rewrite != nil && req.URL.Path == "/api/v4/user" {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = (*rewrite)(body)
		resp.Body, resp.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		resp.Header.Del("Content-Length")
		return resp, nil
	}
	if err != nil || req.URL.Path != "/oauth/token" {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	var tok struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
	}
	if json.Unmarshal(body, &tok) == nil {
		r.mu.Lock()
		for _, v := range []string{tok.AccessToken, tok.RefreshToken} {
			if v != "" {
				r.tokens = append(r.tokens, v)
			}
		}
		r.mu.Unlock()
	}
	return resp, err
}

func (r *tokenRecorder) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.tokens...)
}

// asOtherClient is the token request form v sent by another registered client, with its own
// credentials and redirect URI (https://other.example.com/cb).
func (f *fixture) asOtherClient(v url.Values) url.Values {
	f.t.Helper()
	other, secret := f.register(f.appSpecFor("Other", "https://other.example.com/cb"))
	v.Set("client_id", other.ID)
	v.Set("client_secret", secret)
	v.Set("redirect_uri", "https://other.example.com/cb")
	return v
}

// codeForVerifier runs a sign-in with the S256 challenge of verifier and returns its code.
func (f *fixture) codeForVerifier(verifier string) string {
	f.t.Helper()
	sum := sha256.Sum256([]byte(verifier))
	q := f.authorizeQuery("s")
	q.Set("code_challenge", base64.RawURLEncoding.EncodeToString(sum[:]))
	q.Set("code_challenge_method", "S256")
	return f.toClient(q).Query().Get("code")
}
