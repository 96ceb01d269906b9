// Package site is a stand-in for Mattermost's web side of a GitLab sign-in: the
// "GitLab" button (/oauth/gitlab/login) and the page the provider returns to
// (/signup/gitlab/complete). It completes the sign-in with mattermost.Client, checks the state
// against a cookie as Mattermost does, and shows the account Mattermost would create. The dev mode
// serves it so that a person can walk through a whole sign-in in a browser; it is never a
// replacement for Mattermost.
package site

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"html/template"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/ssobridge/ssobridge/mattermost"
)

// cookieName is Mattermost's OAuth cookie (app.CookieOAuth).
const cookieName = "MMOAUTH"

// Site is the stand-in. Set Settings (and TraceURL) before serving; SiteURL is its own address.
type Site struct {
	Settings mattermost.Settings
	// TraceURL, when set, makes the address of a sign-in's trace from its id (the X-Trace-Id the
	// bridge answers the token and user requests with): the page that ends a sign-in links to it.
	// The dev mode points it at its operators' listener.
	TraceURL func(id string) string

	mu      sync.Mutex
	siteURL string
	srv     *http.Server
	mux     *http.ServeMux
}

// New returns a site that signs in with settings.
func New(settings mattermost.Settings) *Site {
	s := &Site{Settings: settings, mux: http.NewServeMux()}
	s.mux.HandleFunc("GET /{$}", s.home)
	s.mux.HandleFunc("GET /oauth/gitlab/login", s.login)
	// Mattermost's ping, which `ssobridge doctor` reads.
	s.mux.HandleFunc("GET /api/v4/system/ping", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"OK"}`))
	})
	for _, p := range []string{mattermost.SignupCompletePath, mattermost.LoginCompletePath, mattermost.OAuthCompletePath} {
		s.mux.HandleFunc("GET "+p, s.complete)
	}
	return s
}

// Handler serves the site; SetSiteURL must name where it is reachable.
func (s *Site) Handler() http.Handler { return s.mux }

// SetSiteURL sets Mattermost's Site URL, from which the redirect URI is made.
func (s *Site) SetSiteURL(u string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.siteURL = strings.TrimRight(u, "/")
}

// URL returns the Site URL.
func (s *Site) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.siteURL
}

// Serve serves on ln and sets the Site URL from its address.
func (s *Site) Serve(ln net.Listener) error {
	s.SetSiteURL("http://" + ln.Addr().String())
	s.mu.Lock()
	s.srv = &http.Server{Handler: s.mux, ReadHeaderTimeout: 10 * time.Second}
	srv := s.srv
	s.mu.Unlock()
	err := srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Close stops a site started with Serve.
func (s *Site) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil {
		return nil
	}
	return s.srv.Close()
}

func (s *Site) client() *mattermost.Client {
	return &mattermost.Client{Settings: s.Settings, SiteURL: s.URL()}
}

func (s *Site) home(w http.ResponseWriter, r *http.Request) {
	render(w, http.StatusOK, pageData{Title: "Sign in to Mattermost (stand-in)", Home: true,
		Message: "This page stands in for Mattermost's login page. The button starts the same sign-in Mattermost's GitLab button does: through the bridge, to GitLab and back."})
}

// login does what Mattermost's /oauth/gitlab/login does: a state with a one-time token, the
// token in a cookie, and a redirect to the AuthEndpoint.
func (s *Site) login(w http.ResponseWriter, r *http.Request) {
	state, token := mattermost.NewState(mattermost.ActionLogin)
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: token, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteLaxMode, MaxAge: 30 * 60})
	http.Redirect(w, r, s.client().AuthorizeURL(state), http.StatusFound)
}

// complete is Mattermost's completeOAuth: it checks the provider's answer and the state, then
// exchanges the code and reads the user, as Mattermost would.
func (s *Site) complete(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if e := q.Get("error"); e != "" {
		msg := "missing code"
		if e == "access_denied" {
			msg = "access denied"
		}
		render(w, http.StatusBadRequest, pageData{Title: "Sign-in failed: " + msg,
			Message: "The provider answered error=" + e + ": " + q.Get("error_description")})
		return
	}
	code := q.Get("code")
	if code == "" {
		render(w, http.StatusBadRequest, pageData{Title: "Sign-in failed: missing code", Message: "The provider returned without a code."})
		return
	}
	props, err := mattermost.StateProps(q.Get("state"))
	cookie, cerr := r.Cookie(cookieName)
	if err != nil || cerr != nil || subtle.ConstantTimeCompare([]byte(props["token"]), []byte(cookie.Value)) != 1 {
		render(w, http.StatusBadRequest, pageData{Title: "Sign-in failed: invalid state",
			Message: "The state came back changed, or this browser did not start the sign-in. Mattermost refuses such a sign-in; start again from the home page."})
		return
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/", MaxAge: -1})
	c := s.client()
	trace := &traceRecorder{next: defaultHTTPClient.Transport}
	c.HTTPClient = &http.Client{Timeout: defaultHTTPClient.Timeout, Transport: trace}
	tok, err := c.Exchange(r.Context(), code)
	if err != nil {
		render(w, http.StatusBadGateway, pageData{Title: "Sign-in failed at the token request", Message: err.Error(), TraceLink: s.traceLink(trace)})
		return
	}
	user, raw, err := c.FetchUser(r.Context(), tok.AccessToken)
	if err != nil {
		render(w, http.StatusBadGateway, pageData{Title: "Sign-in failed at the user request", Message: err.Error(), TraceLink: s.traceLink(trace)})
		return
	}
	var pretty bytes.Buffer
	if json.Indent(&pretty, raw, "", "  ") != nil {
		pretty.Write(raw)
	}
	render(w, http.StatusOK, pageData{Title: "Signed in", User: user, RawUser: pretty.String(),
		Token: tok, TraceLink: s.traceLink(trace),
		Message: "Mattermost would sign in, or create, this account. Its key is AuthService gitlab with AuthData the GitLab user id."})
}

// defaultHTTPClient makes the site's token and user requests as Mattermost would.
var defaultHTTPClient = mattermost.NewHTTPClient(false)

// traceRecorder keeps the trace id the bridge answers with (X-Trace-Id), so that the page can
// link to the sign-in's trace.
type traceRecorder struct {
	next http.RoundTripper
	mu   sync.Mutex
	id   string
}

// traceIDPattern is what the site takes for a trace id before it puts one in a link.
var traceIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func (t *traceRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if resp != nil {
		if id := resp.Header.Get("X-Trace-Id"); traceIDPattern.MatchString(id) {
			t.mu.Lock()
			t.id = id
			t.mu.Unlock()
		}
	}
	return resp, err
}

func (s *Site) traceLink(t *traceRecorder) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s.TraceURL == nil || t.id == "" {
		return ""
	}
	return s.TraceURL(t.id)
}

type pageData struct {
	Title   string
	Message string
	// TraceLink is the address of the sign-in's trace, when the site knows it.
	TraceLink string
	Home      bool
	User      *mattermost.User
	Token     *mattermost.AccessResponse
	RawUser   string
}

var page = template.Must(template.New("p").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}}</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:46rem;margin:3rem auto;padding:0 1rem}
a.button{display:inline-block;background:#1c58d9;color:#fff;padding:.6rem 1.2rem;border-radius:4px;text-decoration:none}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}
pre{background:#f4f4f4;padding:1rem;overflow:auto}</style></head><body>
<p><small>Mattermost stand-in · ssobridge dev</small></p>
<h1 id="title">{{.Title}}</h1>
<p id="message">{{.Message}}</p>
{{with .TraceLink}}<p><a id="trace" href="{{.}}">See this sign-in's trace</a>: every step, as the bridge saw it, on its operators' listener.</p>{{end}}
{{if .Home}}<p><a class="button" id="gitlab" href="/oauth/gitlab/login">Sign in with GitLab</a></p>{{end}}
{{with .User}}<h2>The Mattermost account</h2>
<table id="user">
<tr><th>AuthService</th><td>{{.AuthService}}</td></tr>
<tr><th>AuthData (GitLab id)</th><td id="auth-data">{{.AuthData}}</td></tr>
<tr><th>Username</th><td id="username">{{.Username}}</td></tr>
<tr><th>Email</th><td id="email">{{.Email}}</td></tr>
<tr><th>First name</th><td id="first-name">{{.FirstName}}</td></tr>
<tr><th>Last name</th><td id="last-name">{{.LastName}}</td></tr>
</table>{{end}}
{{with .Token}}<h2>The token response</h2><p>token_type {{.TokenType}}, expires_in {{.ExpiresInSeconds}} s, scope "{{.Scope}}"</p>{{end}}
{{if .RawUser}}<h2>What the bridge returned at /api/v4/user</h2><pre id="raw-user">{{.RawUser}}</pre>{{end}}
{{if not .Home}}<p><a href="/">Start again</a></p>{{end}}
</body></html>`))

func render(w http.ResponseWriter, status int, d pageData) {
	var buf bytes.Buffer
	if err := page.Execute(&buf, d); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}
