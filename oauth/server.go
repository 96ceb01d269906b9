package oauth

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/ssobridge/ssobridge/gitlabapi"
	"github.com/ssobridge/ssobridge/oauth/signin"
	"github.com/ssobridge/ssobridge/oauth/store"
	"github.com/ssobridge/ssobridge/oauth/upstream"
)

// Defaults, as GitLab has them.
const (
	DefaultCodeTTL          = 10 * time.Minute
	DefaultAuthorizationTTL = 10 * time.Minute
	DefaultAccessTokenTTL   = 2 * time.Hour
	// DefaultRefreshTokenTTL bounds an unused sign-in; each refresh starts it again.
	DefaultRefreshTokenTTL = 30 * 24 * time.Hour
	// DefaultUserSnapshotMaxAge is how old the user GitLab returned at sign-in may be for
	// /api/v4/user to answer with it rather than ask GitLab again.
	DefaultUserSnapshotMaxAge = time.Minute
	// maxFormBody bounds a token request; real ones are a few hundred bytes.
	maxFormBody = 64 << 10
)

// Config is what a Server needs.
type Config struct {
	// PublicURL is the bridge's address as browsers and clients reach it, e.g.
	// https://sso.example.com; the callback registered at GitLab is PublicURL + "/oauth/callback".
	PublicURL string
	Store     store.Store
	// Upstreams are the identity providers people sign in at, in the order the chooser shows
	// them; with one, nobody chooses. Each has a unique name (upstream.Description.Name).
	Upstreams []upstream.CallbackProvider
	// FirstID is the first id the bridge gives a person of a provider without GitLab ids (see
	// store.Identities); zero takes DefaultFirstID.
	FirstID int64
	// Sealer encrypts the upstream tokens the bridge keeps in Store.
	Sealer *Sealer
	Logger *slog.Logger
	// Metrics receives the bridge's measurements; nil makes a set of its own.
	Metrics *Metrics
	// Zero values take the defaults above.
	CodeTTL          time.Duration
	AuthorizationTTL time.Duration
	AccessTokenTTL   time.Duration
	RefreshTokenTTL  time.Duration
	// UserSnapshotMaxAge: /api/v4/user answers with the user GitLab returned when the person
	// signed in (or when the bridge last refreshed their GitLab token) while it is younger than
	// this, instead of calling GitLab again: Mattermost reads the user right after its token
	// request, seconds after the bridge read it. Zero takes DefaultUserSnapshotMaxAge; a negative
	// value always asks GitLab.
	UserSnapshotMaxAge time.Duration
	// Traces: how long they are kept, how many at most, and after how long a sign-in whose
	// client never came back is called stalled.
	TraceRetention time.Duration
	MaxTraces      int
	StallAfter     time.Duration
	// TraceBatchDelay is how long trace steps are gathered before they are written (see
	// DefaultTraceBatchDelay, which zero takes).
	TraceBatchDelay time.Duration
	// TraceHold is the longest a trace's steps wait for the next step of their sign-in before
	// they are written (see DefaultTraceHold, which zero takes).
	TraceHold time.Duration
	// RequestTimeout bounds each request, every call it makes to the store and to GitLab
	// included; MaxInFlight bounds the requests answered at once. Zero takes
	// DefaultRequestTimeout and DefaultMaxInFlight.
	RequestTimeout time.Duration
	MaxInFlight    int
	// TrustedProxies are the reverse proxies whose X-Forwarded-For names the client (in the access
	// log); from any other peer the header is ignored and the peer's address is the client's. Nil
	// trusts none. Nothing else is taken from forwarded headers: the bridge's own URLs always come
	// from PublicURL, never from X-Forwarded-Host, X-Forwarded-Proto or Host.
	TrustedProxies []*net.IPNet
	// Limits bound what one address, one browser and everybody may ask; zero values take the
	// defaults (see Limits).
	Limits Limits
	// SupportContact is whom a person refused by an application's sign-in rules is told to ask
	// (free text: "the IT help desk, it@example.com"); empty says the application's administrator.
	SupportContact string
}

// Server is the bridge's provider.
type Server struct {
	cfg       Config
	public    *url.URL
	store     store.Store
	upstreams []upstream.CallbackProvider
	// mixed is true when providers with GitLab ids and without are configured together.
	mixed bool
	// mint issues codes and tokens (see gooauth2.go).
	mint    mint
	log     *slog.Logger
	echo    *echo.Echo
	keys    keyCache
	metrics *Metrics
	ready   readiness
	// traces writes sign-in traces in the background (see traceWriter).
	traces *traceWriter
	// stalls counts the sign-ins that stall (see stallWatch).
	stalls     *stallWatch
	requestIDs *requestIDs
	// inFlight holds a token for each request being answered (see shed).
	inFlight inFlight
	// refreshLocks serialise refreshes of one session's GitLab token (see upstreamUser).
	refreshLocks stripedLocks
	// proxyWarned: see warnUntrustedProxy; failedLately and clientAuthLocks: see
	// clientAuthLimited and authenticateClient.
	proxyWarned     proxyWarnings
	failedLately    recentFailures
	clientAuthLocks stripedLocks
	// signInUse: see limitSignIn; readsTraced: see traceFirstRead.
	signInUse   localUse
	readsTraced recentFailures
	// marked: CheckStore saw or wrote the store's marker; lost: readiness last found it gone
	// (see storeLost).
	marked, lost atomic.Bool
}

// CallbackPath is the bridge's redirect URI at GitLab, under PublicURL.
const CallbackPath = "/oauth/callback"

// ParsePublicURL checks the bridge's public URL. Mattermost appends its own query to the
// authorize endpoint, so the URL must have none, nor a fragment or user.
func ParsePublicURL(raw string) (*url.URL, error) {
	return gitlabapi.ParseBaseURL(raw)
}

// New returns a Server for cfg.
func New(cfg Config) (*Server, error) {
	public, err := ParsePublicURL(cfg.PublicURL)
	if err != nil {
		return nil, fmt.Errorf("public URL: %w", err)
	}
	if cfg.Store == nil || len(cfg.Upstreams) == 0 || cfg.Sealer == nil {
		return nil, errors.New("oauth.New needs a store, an upstream provider and a sealer")
	}
	names := map[string]bool{}
	kinds := map[bool]bool{}
	for _, p := range cfg.Upstreams {
		d := p.Describe()
		if !store.ValidProviderName(d.Name) {
			return nil, fmt.Errorf("provider name %q: use 1 to 32 lower-case letters, digits and dashes, starting with a letter", d.Name)
		}
		if names[d.Name] {
			return nil, fmt.Errorf("two providers are called %q", d.Name)
		}
		if d.Name == "store" || d.Name == "upstream" {
			return nil, fmt.Errorf("a provider cannot be called %s, the name of a readiness check (/readyz?exclude=%s)", d.Name, d.Name)
		}
		if d.Name == "gitlab" && !d.GitLabIDs {
			// Sign-ins made before providers had names belong to the provider called gitlab.
			return nil, fmt.Errorf("the provider called gitlab must be a GitLab: sign-ins made before providers had names belong to it; call the %s provider %s something else", d.Type, d.URL)
		}
		names[d.Name] = true
		kinds[d.GitLabIDs] = true
	}
	if cfg.FirstID <= 0 {
		cfg.FirstID = DefaultFirstID
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.CodeTTL <= 0 {
		cfg.CodeTTL = DefaultCodeTTL
	}
	if cfg.AuthorizationTTL <= 0 {
		cfg.AuthorizationTTL = DefaultAuthorizationTTL
	}
	if cfg.AccessTokenTTL <= 0 {
		cfg.AccessTokenTTL = DefaultAccessTokenTTL
	}
	if cfg.RefreshTokenTTL <= 0 {
		cfg.RefreshTokenTTL = DefaultRefreshTokenTTL
	}
	if cfg.TraceHold <= 0 {
		cfg.TraceHold = DefaultTraceHold
	}
	if cfg.TraceBatchDelay <= 0 {
		cfg.TraceBatchDelay = DefaultTraceBatchDelay
	}
	if cfg.UserSnapshotMaxAge == 0 {
		cfg.UserSnapshotMaxAge = DefaultUserSnapshotMaxAge
	}
	if cfg.TraceRetention <= 0 {
		cfg.TraceRetention = DefaultTraceRetention
	}
	if cfg.MaxTraces <= 0 {
		cfg.MaxTraces = DefaultMaxTraces
	}
	if cfg.StallAfter <= 0 {
		cfg.StallAfter = DefaultStallAfter
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics()
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	cfg.Limits = cfg.Limits.withDefaults()
	s := &Server{cfg: cfg, public: public, store: cfg.Store, upstreams: cfg.Upstreams, mixed: len(kinds) == 2, log: cfg.Logger, metrics: cfg.Metrics}
	if ec, ok := cfg.Store.(store.ExchangeCounter); ok {
		cfg.Metrics.countExchanges(ec)
	}
	s.requestIDs = newRequestIDs()
	s.inFlight = make(inFlight, cfg.MaxInFlight)
	s.traces = &traceWriter{store: cfg.Store, retention: cfg.TraceRetention, maxTraces: cfg.MaxTraces, delay: cfg.TraceBatchDelay, hold: cfg.TraceHold, log: cfg.Logger,
		dropped: cfg.Metrics.traceDropped, failed: cfg.Metrics.traceFailed}
	s.stalls = newStallWatch(cfg, s.traces.FlushTraces, func(endpoint string, failure *signin.Failure) {
		cfg.Metrics.loginsFailed.WithLabelValues(endpoint, failure.Name()).Inc()
	})
	s.mint = mint{codeTTL: cfg.CodeTTL, accessTTL: cfg.AccessTokenTTL, refreshTTL: cfg.RefreshTokenTTL}
	s.echo = s.routes()
	return s, nil
}

// Handler returns the bridge's HTTP handler.
func (s *Server) Handler() http.Handler { return s.echo }

// CallbackURL is the redirect URI the bridge's application at each provider must have.
func (s *Server) CallbackURL() string { return CallbackURLFor(s.public.String()) }

// CallbackURLFor returns the callback under a public URL.
func CallbackURLFor(publicURL string) string {
	return strings.TrimRight(publicURL, "/") + CallbackPath
}

func (s *Server) routes() *echo.Echo {
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = s.handleError
	e.IPExtractor = clientIP(s.cfg.TrustedProxies)
	// Recover sits inside observe, so that a request that panics is still measured, logged, and
	// recorded in its trace, as the 500 it is; so does shed, so that a request shed is too.
	e.Use(s.observe, s.shed, middleware.RecoverWithConfig(middleware.RecoverConfig{DisableStackAll: true,
		LogErrorFunc: func(c echo.Context, err error, stack []byte) error {
			s.logger(c.Request().Context()).Error("the request panicked", "cause", err.Error(), "stack", string(stack))
			return fmt.Errorf("panic: %w", err)
		}}), securityHeaders(s.public.Scheme == "https"), s.withDeadline())
	e.GET("/oauth/authorize", s.authorize, s.limitSignIn(signin.StepAuthorize))
	e.GET(CallbackPath, s.callback, s.limitSignIn(signin.StepCallback))
	e.POST("/oauth/token", s.token)
	e.GET("/api/v4/user", s.user)
	e.POST(consentPath, s.consent, s.limitSignIn(signin.StepConsentAnswer))
	e.POST(choosePath, s.choose, s.limitSignIn(signin.StepChooserAnswer))
	e.POST("/oauth/revoke", s.revoke)
	e.POST("/oauth/introspect", s.introspect)
	e.GET("/oauth/token/info", s.tokenInfo)
	e.GET("/.well-known/openid-configuration", s.discovery)
	e.GET("/oauth/discovery/keys", s.jwks)
	e.GET("/oauth/userinfo", s.userinfo)
	e.POST("/oauth/userinfo", s.userinfo)
	e.GET("/", s.home)
	e.GET("/healthz", s.healthz)
	e.GET("/readyz", s.readyz)
	return e
}

// clientIP believes X-Forwarded-For only as far as it was written by the trusted proxies. Echo
// with no extractor believes any client's header, and its trust options start out trusting every
// loopback, link-local and private address, so that a client on the same network could name any
// address it liked; only what the operator lists is trusted here.
func clientIP(trusted []*net.IPNet) echo.IPExtractor {
	opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
	for _, n := range trusted {
		opts = append(opts, echo.TrustIPRange(n))
	}
	return echo.ExtractIPFromXFFHeader(opts...)
}

// securityHeaders keeps bridge pages out of frames and caches, and its URLs out of Referer
// headers sent to other sites.
// Behind https, browsers are also told to come back only over https (HSTS).
func securityHeaders(https bool) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			h := c.Response().Header()
			if https {
				h.Set("Strict-Transport-Security", "max-age=31536000")
			}
			h.Set("X-Frame-Options", "DENY")
			h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; form-action 'self'")
			h.Set("Referrer-Policy", "no-referrer")
			h.Set("X-Content-Type-Options", "nosniff")
			// Every answer is about one person's sign-in (a code or an error in a redirect's
			// URL, a page, a user) unless its handler says otherwise, as the discovery document
			// and the signing keys do: no cache may keep it.
			h.Set("Cache-Control", "no-store")
			return next(c)
		}
	}
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return base64.RawURLEncoding.EncodeToString(b)
}
