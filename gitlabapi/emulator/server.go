package emulator

import (
	"context"
	"crypto/rsa"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

const (
	// maxBodyBytes bounds every request body; GitLab's own limits are far larger, but nothing a
	// test client sends legitimately comes near this.
	maxBodyBytes = 64 << 10

	defaultAccessTokenTTL = 7200 * time.Second // GitLab's access_token_expires_in
	defaultCodeTTL        = 600 * time.Second  // Doorkeeper's authorization_code_expires_in
	idTokenTTL            = 120 * time.Second  // doorkeeper-openid_connect's default expiration

	// maxRecorded and maxRecordedValue bound the memory Requests takes, for a dev-mode server
	// that runs for days and a fuzzer that sends large bodies.
	maxRecorded      = 1000
	maxRecordedValue = 4096
	truncated        = "...[TRUNCATED]"
)

// Server is a GitLab emulator. Create it with New (tests use gitlabtest.NewTestServer); all
// methods are safe for concurrent use.
type Server struct {
	now            func() time.Time
	accessTokenTTL time.Duration
	codeTTL        time.Duration
	exposeInactive bool
	redirectErrors bool
	issuer         string
	key            *rsa.PrivateKey

	mu       sync.Mutex
	users    []*userRecord // in the order added; the first is the default signed-in user
	apps     map[string]*Application
	codes    map[string]*authCode
	access   map[string]*token
	refresh  map[string]*token
	signedIn string // username; "" when nobody is signed in
	// sessions are the browsers signed in at the sign-in form: session cookie to username.
	sessions map[string]string
	// signIns limits the sign-in form's failed attempts per client address.
	signIns *signInLimiter
	// signInChosen records that SignIn was called, so AddUser stops picking the first user.
	signInChosen bool
	denyNext     bool
	// requests is a ring of the last maxRecorded requests; oldest indexes the first once full.
	requests []Request
	oldest   int

	handler http.Handler

	srvMu    sync.Mutex
	httpSrv  *http.Server
	baseURL  string
	shutDown bool
}

// Option configures a Server.
type Option func(*Server)

// WithClock makes the server read the time from now, so that tests can move past the expiry of
// codes and tokens without sleeping.
func WithClock(now func() time.Time) Option {
	return func(s *Server) { s.now = now }
}

// WithAccessTokenTTL sets how long access tokens live (GitLab: 7200 s). Zero gives tokens that
// never expire and token responses without expires_in, as GitLab before 15.0 answered.
func WithAccessTokenTTL(d time.Duration) Option {
	return func(s *Server) { s.accessTokenTTL = max(d, 0) }
}

// WithCodeTTL sets how long authorization codes live (GitLab: 600 s).
func WithCodeTTL(d time.Duration) Option {
	return func(s *Server) {
		if d > 0 {
			s.codeTTL = d
		}
	}
}

// WithExposeInactiveUsers makes /api/v4/user and /oauth/userinfo answer for users who are not
// active, with their real state, where GitLab answers 403. It lets a client's own state check be
// tested, which GitLab itself never gives the chance to exercise.
func WithExposeInactiveUsers() Option {
	return func(s *Server) { s.exposeInactive = true }
}

// WithRedirectedErrors sends authorize errors found after the redirect_uri is trusted (a bad
// response_type, scope or code_challenge_method) back to the client as
// redirect_uri?error=...&error_description=...&state=..., as RFC 6749 section 4.1.2.1 and
// Doorkeeper's own controller do. GitLab shows its error page instead, and so does the emulator
// without this option; an unknown client or redirect_uri gets the page either way.
func WithRedirectedErrors() Option {
	return func(s *Server) { s.redirectErrors = true }
}

// WithIssuer sets the external base URL (for example "https://gitlab.example.com") that the
// server writes into id_token iss, discovery documents, web_url and profile links, for a server
// reached through a proxy or under another name than the address it listens on.
func WithIssuer(baseURL string) Option {
	return func(s *Server) { s.issuer = strings.TrimRight(baseURL, "/") }
}

// WithSigningKey sets the RSA key that signs id_tokens. Without it, every Server in the process
// shares one lazily generated 2048-bit key, because generating one per test is slow.
func WithSigningKey(key *rsa.PrivateKey) Option {
	return func(s *Server) { s.key = key }
}

// New returns a Server that is not listening: use Handler with a server of your own, or Start.
func New(opts ...Option) *Server {
	s := &Server{
		now:            time.Now,
		accessTokenTTL: defaultAccessTokenTTL,
		codeTTL:        defaultCodeTTL,
		apps:           make(map[string]*Application),
		codes:          make(map[string]*authCode),
		access:         make(map[string]*token),
		refresh:        make(map[string]*token),
		sessions:       make(map[string]string),
		signIns:        newSignInLimiter(signInEvery, signInBurst, maxSignInLimiters),
	}
	for _, opt := range opts {
		opt(s)
	}
	s.handler = s.routes()
	return s
}

// Handler returns the server's HTTP handler. When the server was not started and has no issuer,
// links in its answers are built from the Host of each request.
func (s *Server) Handler() http.Handler { return s.handler }

// Start listens on addr (for example "127.0.0.1:0" or ":8081") and serves in the background.
func (s *Server) Start(addr string) error {
	s.srvMu.Lock()
	defer s.srvMu.Unlock()
	if s.httpSrv != nil || s.shutDown {
		return errors.New("emulator: server already started")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	s.baseURL = "http://" + reachableAddr(ln.Addr().(*net.TCPAddr))
	s.httpSrv = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func(srv *http.Server) { _ = srv.Serve(ln) }(s.httpSrv)
	return nil
}

// reachableAddr turns a listening address into one a client can dial: a server listening on
// all interfaces (which Go makes dual-stack) is reached on 127.0.0.1.
func reachableAddr(a *net.TCPAddr) string {
	ip := a.IP
	if ip == nil || ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
	}
	return net.JoinHostPort(ip.String(), itoa(int64(a.Port)))
}

// URL returns the server's base URL, such as "http://127.0.0.1:41234": the issuer when one was
// set with WithIssuer, else the listening address, else "" before Start.
func (s *Server) URL() string {
	if s.issuer != "" {
		return s.issuer
	}
	s.srvMu.Lock()
	defer s.srvMu.Unlock()
	return s.baseURL
}

// Close stops the server, giving requests in flight a second to finish. It may be called more
// than once.
func (s *Server) Close() error {
	s.srvMu.Lock()
	defer s.srvMu.Unlock()
	s.shutDown = true
	if s.httpSrv == nil {
		return nil
	}
	srv := s.httpSrv
	s.httpSrv = nil
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		return srv.Close()
	}
	return nil
}

// base returns the URL that links in answers start with.
func (s *Server) base(r *http.Request) string {
	if u := s.URL(); u != "" {
		return u
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /oauth/authorize", s.handleAuthorize)
	mux.HandleFunc("POST /oauth/token", s.handleToken)
	mux.HandleFunc("POST /oauth/revoke", s.handleRevoke)
	mux.HandleFunc("GET /oauth/token/info", s.handleTokenInfo)
	mux.HandleFunc("GET /oauth/userinfo", s.handleUserInfo)
	mux.HandleFunc("POST /oauth/userinfo", s.handleUserInfo)
	mux.HandleFunc("GET /oauth/discovery/keys", s.handleJWKS)
	mux.HandleFunc("GET /.well-known/openid-configuration", s.handleDiscovery)
	mux.HandleFunc("GET /api/v4/user", s.handleAPIUser)
	mux.HandleFunc("GET /users/sign_in", s.handleSignInPage)
	mux.HandleFunc("POST /users/sign_in", s.handleSignIn)
	// Rails answers an unknown route or a known route with the wrong method alike: 404.
	mux.HandleFunc("/", s.handleNotFound)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		protect(w.Header())
		r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
		parseErr := r.ParseForm()
		// Record before answering, so that a test reading Requests right after its call
		// returns sees it.
		s.record(r)
		if parseErr != nil {
			s.badForm(w, r, parseErr)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// badForm answers a request whose query or body could not be read, as Rails answers one it
// cannot parse: with a client error, never a server error.
func (s *Server) badForm(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusBadRequest
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		status = http.StatusRequestEntityTooLarge
	}
	switch {
	case r.URL.Path == "/oauth/token" || r.URL.Path == "/oauth/revoke":
		writeJSON(w, status, oauthError{Error: "invalid_request", Description: errorDescriptions["invalid_request"]})
	case strings.HasPrefix(r.URL.Path, "/api/"):
		writeJSON(w, status, map[string]string{"error": "Bad Request"})
	default:
		http.Error(w, http.StatusText(status), status)
	}
}

func (s *Server) handleNotFound(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/api/") {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "404 Not Found"})
		return
	}
	writeHTML(w, http.StatusNotFound, "The page could not be found", "The page you're looking for could not be found.")
}

// clock returns the emulator's current time, in UTC as GitLab writes its times.
func (s *Server) clock() time.Time {
	return s.now().UTC()
}

// Request is one request the server received, with credentials redacted.
type Request struct {
	Method string
	Path   string
	// Query holds the URL's query parameters and Form the body's form parameters; the values of
	// secrets (client_secret, code, code_verifier, tokens, passwords) read "[REDACTED]", and
	// values over 4 KiB are cut short.
	Query url.Values
	Form  url.Values
	// Header has the request headers; Authorization keeps its scheme and loses its credentials.
	Header http.Header
	// Time is when the request arrived, by the server's clock (see WithClock).
	Time time.Time
}

// redacted is what a recorded secret reads.
const redacted = "[REDACTED]"

var secretParams = map[string]bool{
	"client_secret": true, "code": true, "code_verifier": true, "access_token": true,
	"refresh_token": true, "token": true, "bearer_token": true, "id_token_hint": true,
	"password": true, "private_token": true, "client_assertion": true, "assertion": true,
	"user[password]": true, "authenticity_token": true,
}

func (s *Server) record(r *http.Request) {
	rec := Request{
		Method: r.Method,
		Path:   r.URL.Path,
		Query:  redactValues(r.URL.Query()),
		Form:   redactValues(r.PostForm),
		Header: r.Header.Clone(),
		Time:   s.clock(),
	}
	for _, name := range []string{"Authorization", "Proxy-Authorization"} {
		for i, v := range rec.Header.Values(name) {
			masked := redacted
			if scheme, _, ok := strings.Cut(v, " "); ok {
				masked = scheme + " " + redacted
			}
			rec.Header[http.CanonicalHeaderKey(name)][i] = masked
		}
	}
	for _, name := range []string{"Cookie", "Private-Token", "Job-Token"} {
		if rec.Header.Get(name) != "" {
			rec.Header.Set(name, redacted)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.requests) < maxRecorded {
		s.requests = append(s.requests, rec)
		return
	}
	s.requests[s.oldest] = rec
	s.oldest = (s.oldest + 1) % maxRecorded
}

func redactValues(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for k, vs := range v {
		vs = append([]string(nil), vs...)
		for i := range vs {
			switch {
			case secretParams[strings.ToLower(k)]:
				vs[i] = redacted
			case len(vs[i]) > maxRecordedValue:
				vs[i] = vs[i][:maxRecordedValue] + truncated
			}
		}
		out[k] = vs
	}
	return out
}

// Requests returns the requests received so far, oldest first: the last 1000 at most, each
// parameter value cut at 4 KiB.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Request, 0, len(s.requests))
	for i := range s.requests {
		r := s.requests[(s.oldest+i)%len(s.requests)]
		r.Query = cloneValues(r.Query)
		r.Form = cloneValues(r.Form)
		r.Header = r.Header.Clone()
		out = append(out, r)
	}
	return out
}

// Refreshes counts the refresh_token grants among Requests: how many times a token was renewed.
func (s *Server) Refreshes() int {
	n := 0
	for _, r := range s.Requests() {
		if r.Path == "/oauth/token" && r.Form.Get("grant_type") == "refresh_token" {
			n++
		}
	}
	return n
}

// ClearRequests forgets the requests recorded so far.
func (s *Server) ClearRequests() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = nil
	s.oldest = 0
}

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

// protect sets on every answer the headers the bridge's own pages carry: no page of the emulator
// (its sign-in form above all) can be framed by another site to trick a person into typing a
// password or clicking through (clickjacking), or sniffed into another type, and no page's URL,
// which holds codes and states, leaks in a Referer. The policy has no form-action: the sign-in
// form's answer goes on, through authorize, to the client's redirect URI on another origin, which
// browsers check form-action against.
func protect(h http.Header) {
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
}
