package oauth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-oauth2/oauth2/v4"
	oerrors "github.com/go-oauth2/oauth2/v4/errors"
	"github.com/go-oauth2/oauth2/v4/manage"
	"github.com/go-oauth2/oauth2/v4/models"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/ssobridge/ssobridge/gitlabapi"
	"github.com/ssobridge/ssobridge/oauth/store"
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
	Upstream  *gitlabapi.Client
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
	// TrustedProxies are the reverse proxies whose X-Forwarded-For names the client (in the access
	// log); from any other peer the header is ignored and the peer's address is the client's. Nil
	// trusts none. Nothing else is taken from forwarded headers: the bridge's own URLs always come
	// from PublicURL, never from X-Forwarded-Host, X-Forwarded-Proto or Host.
	TrustedProxies []*net.IPNet
}

// Server is the bridge's provider.
type Server struct {
	cfg      Config
	public   *url.URL
	store    store.Store
	upstream *gitlabapi.Client
	manager  *manage.Manager
	log      *slog.Logger
	echo     *echo.Echo
	keys     keyCache
	metrics  *Metrics
	ready    readiness
	// tokens is the store as every token read and write goes through it (see redeemingStore).
	tokens redeemingStore
	// traces writes sign-in traces in the background (see traceWriter).
	traces *traceWriter
	// stalls counts the sign-ins that stall (see stallWatch).
	stalls     *stallWatch
	requestIDs *requestIDs
	// refreshLocks serialise refreshes of one session's GitLab token (see upstreamUser).
	refreshLocks stripedLocks
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
	if cfg.Store == nil || cfg.Upstream == nil || cfg.Sealer == nil {
		return nil, errors.New("oauth.New needs a store, an upstream client and a sealer")
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
	s := &Server{cfg: cfg, public: public, store: cfg.Store, upstream: cfg.Upstream, log: cfg.Logger, metrics: cfg.Metrics}
	if ec, ok := cfg.Store.(store.ExchangeCounter); ok {
		cfg.Metrics.countExchanges(ec)
	}
	s.tokens = redeemingStore{Store: cfg.Store, codeTTL: cfg.CodeTTL}
	s.requestIDs = newRequestIDs()
	s.traces = &traceWriter{store: cfg.Store, retention: cfg.TraceRetention, maxTraces: cfg.MaxTraces, delay: cfg.TraceBatchDelay, log: cfg.Logger,
		dropped: cfg.Metrics.traceDropped, failed: cfg.Metrics.traceFailed}
	s.stalls = newStallWatch(cfg, s.traces.Flush, func(endpoint, failure string) {
		cfg.Metrics.loginsFailed.WithLabelValues(endpoint, knownFailure(failure)).Inc()
	})
	s.manager = newManager(cfg, s.tokens)
	s.echo = s.routes()
	return s, nil
}

// newManager configures go-oauth2's manager with the bridge's stores, exact redirect URI
// matching and random codes and tokens. The manager serves the authorization_code grant only;
// the bridge does the refresh grant itself (see refresh).
func newManager(cfg Config, tokens redeemingStore) *manage.Manager {
	m := manage.NewManager()
	m.MapClientStorage(clientStore{cfg.Store})
	m.MapTokenStorage(tokens)
	m.MapAuthorizeGenerate(randomCodes{})
	m.MapAccessGenerate(randomAccess{})
	m.SetValidateURIHandler(validateURI)
	// Codes are kept codeGrace past their lifetime, so that one redeemed late is recognised and
	// named as expired rather than unknown; redeemingStore enforces the real lifetime.
	m.SetAuthorizeCodeExp(cfg.CodeTTL + codeGrace)
	m.SetAuthorizeCodeTokenCfg(&manage.Config{AccessTokenExp: cfg.AccessTokenTTL, RefreshTokenExp: cfg.RefreshTokenTTL, IsGenerateRefresh: true})
	return m
}

// Handler returns the bridge's HTTP handler.
func (s *Server) Handler() http.Handler { return s.echo }

// CallbackURL is the redirect URI the bridge's application at GitLab must have.
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
	// recorded in its trace, as the 500 it is.
	e.Use(s.observe, middleware.RecoverWithConfig(middleware.RecoverConfig{DisableStackAll: true,
		LogErrorFunc: func(c echo.Context, err error, stack []byte) error {
			s.logger(c.Request().Context()).Error("the request panicked", "cause", err.Error(), "stack", string(stack))
			return fmt.Errorf("panic: %w", err)
		}}), securityHeaders(s.public.Scheme == "https"))
	e.GET("/oauth/authorize", s.authorize)
	e.GET(CallbackPath, s.callback)
	e.POST("/oauth/token", s.token)
	e.GET("/api/v4/user", s.user)
	e.POST(consentPath, s.consent)
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

// clientStore gives go-oauth2 the registered applications.
type clientStore struct{ st store.Store }

type appKey struct{}

// withApp lets the manager reuse an application the handler already loaded in this request,
// saving a store round trip.
func withApp(ctx context.Context, app *store.Application) context.Context {
	return context.WithValue(ctx, appKey{}, app)
}

func (cs clientStore) GetByID(ctx context.Context, id string) (oauth2.ClientInfo, error) {
	if app, ok := ctx.Value(appKey{}).(*store.Application); ok && app.ID == id {
		return clientInfo{app}, nil
	}
	app, err := cs.st.GetApp(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, oerrors.ErrInvalidClient
	}
	if err != nil {
		return nil, err
	}
	return clientInfo{app}, nil
}

// clientInfo is an application as go-oauth2 sees it. GetSecret is always empty: the secret is
// not stored, and go-oauth2 checks it through VerifyPassword, in constant time.
type clientInfo struct{ app *store.Application }

func (c clientInfo) GetID() string     { return c.app.ID }
func (c clientInfo) GetSecret() string { return "" }

// GetDomain returns the registered redirect URIs, one per line, for validateURI.
func (c clientInfo) GetDomain() string { return strings.Join(c.app.RedirectURIs, "\n") }
func (c clientInfo) IsPublic() bool    { return !c.app.Confidential }
func (c clientInfo) GetUserID() string { return "" }
func (c clientInfo) VerifyPassword(secret string) bool {
	if !c.app.Confidential && secret == "" {
		return true
	}
	return store.VerifySecret(c.app.SecretHash, secret)
}

var _ oauth2.ClientPasswordVerifier = clientInfo{}

// validateURI replaces go-oauth2's DefaultValidateURI, which accepts any host that ends with the
// registered one and any path.
func validateURI(registered, requested string) error {
	if matchAny(strings.Split(registered, "\n"), requested) {
		return nil
	}
	return oerrors.ErrInvalidRedirectURI
}

// redeemingStore is the store as the manager sees it. During a redemption (see
// withRedemptionRecord) it hands the manager the code record the handler took, and it reads the
// session of the tokens it stores in the same exchange with the store as it writes them.
type redeemingStore struct {
	store.Store
	codeTTL time.Duration
}

// codeGrace and accessGrace are how long an expired code's or access token's record is kept,
// so that a late use is recognised and named as expired rather than unknown.
const (
	codeGrace   = 10 * time.Minute
	accessGrace = time.Hour
)

// Create stores an access token accessGrace longer than it lives; GetByAccess gives back its
// real lifetime, so go-oauth2 and the bridge still refuse it at its expiry.
func (r redeemingStore) Create(ctx context.Context, info oauth2.TokenInfo) error {
	if t, ok := info.(*models.Token); ok && t.Access != "" && t.AccessExpiresIn > 0 {
		kept := *t
		kept.AccessExpiresIn += accessGrace
		info = &kept
	}
	if ns, ok := ctx.Value(newSessionKey{}).(*newSessionWrite); ok && info.GetCode() != "" {
		return r.Store.PutSessionCode(ctx, ns.session, ns.ttl, info)
	}
	if rd, ok := ctx.Value(redemptionKey{}).(*redemption); ok && info.GetAccess() != "" {
		var err error
		rd.session, err = r.Store.CreateForSession(ctx, info)
		return err
	}
	return r.Store.Create(ctx, info)
}

func (r redeemingStore) GetByAccess(ctx context.Context, access string) (oauth2.TokenInfo, error) {
	var ti oauth2.TokenInfo
	var err error
	if pf, ok := ctx.Value(prefetchKey{}).(*sessionPrefetch); ok && pf.id != "" {
		ti, pf.session, err = r.Store.GetByAccessWithSession(ctx, access, pf.id)
	} else {
		ti, err = r.Store.GetByAccess(ctx, access)
	}
	if ti != nil && ti.GetAccessExpiresIn() > accessGrace {
		ti.SetAccessExpiresIn(ti.GetAccessExpiresIn() - accessGrace)
	}
	return ti, err
}

func (r redeemingStore) GetByRefresh(ctx context.Context, refresh string) (oauth2.TokenInfo, error) {
	ti, err := r.Store.GetByRefresh(ctx, refresh)
	if ti != nil && ti.GetAccessExpiresIn() > accessGrace {
		ti.SetAccessExpiresIn(ti.GetAccessExpiresIn() - accessGrace)
	}
	return ti, err
}

type redemptionKey struct{}

// prefetchKey carries, to GetByAccess, the session an access token names (see accessTokenFor),
// so that the token and its session are read in one exchange with the store.
type prefetchKey struct{}

type sessionPrefetch struct {
	id      string
	session *store.Session // set by GetByAccess: nil when absent
}

// newSessionKey carries, to the manager's Create of a sign-in's code, the session that is to be
// saved with it (see store.Store.PutSessionCode).
type newSessionKey struct{}

type newSessionWrite struct {
	session *store.Session
	ttl     time.Duration
}

// redemption is what a redemption learnt from the store: the code's record, taken by the
// handler, and the session of the tokens issued for it.
type redemption struct {
	info    oauth2.TokenInfo
	session *store.Session
}

// takeCode takes the code and marks it used in one step (see store.Store.TakeCode), so that a
// replay is recognised from the moment the code is redeemed.
func (r redeemingStore) takeCode(ctx context.Context, code string) (oauth2.TokenInfo, error) {
	return r.Store.TakeCode(ctx, code, r.usedTTL())
}

// usedTTL is how long a used code's mark is kept: as long as the code could have been presented.
func (r redeemingStore) usedTTL() time.Duration { return 2 * r.codeTTL }

// GetByCode gives the manager the code record the handler took and checked (see redeemCode),
// which the manager checks again. Called outside a redemption, it takes the code itself.
func (r redeemingStore) GetByCode(ctx context.Context, code string) (oauth2.TokenInfo, error) {
	if rd, ok := ctx.Value(redemptionKey{}).(*redemption); ok && rd.info != nil {
		if rd.info.GetCode() != code {
			return nil, nil
		}
		return rd.info, nil
	}
	ti, err := r.takeCode(ctx, code)
	if ti != nil && time.Now().After(ti.GetCodeCreateAt().Add(r.codeTTL)) {
		// Spent and expired: the manager refuses it as unknown.
		return nil, nil
	}
	return ti, err
}

// RemoveByCode does nothing: the manager calls it after GetByCode, which has already consumed
// the code.
func (r redeemingStore) RemoveByCode(context.Context, string) error { return nil }

// randomCodes and randomAccess make codes and access tokens of 256 random bits; go-oauth2's
// own generators derive them from UUIDs through MD5.
type randomCodes struct{}

func (randomCodes) Token(context.Context, *oauth2.GenerateBasic) (string, error) {
	return randomToken(), nil
}

type randomAccess struct{}

func (randomAccess) Token(_ context.Context, data *oauth2.GenerateBasic, withRefresh bool) (string, string, error) {
	refresh := ""
	if withRefresh {
		refresh = randomToken()
	}
	return accessTokenFor(data.UserID), refresh, nil
}

// accessTokenFor makes an access token of session sessionID: 256 random bits, a dot, and the
// session's id. The id is no secret (nothing opens with it alone); it lets a request read the
// token and its session in one exchange with the store. The token is still looked up whole, by
// its hash, and its record says which session it belongs to.
func accessTokenFor(sessionID string) string {
	return randomToken() + "." + sessionID
}

// sessionOfToken is the session id an access token names, "" when it names none.
func sessionOfToken(access string) string {
	i := strings.LastIndexByte(access, '.')
	if i < 0 {
		return ""
	}
	id := access[i+1:]
	if !store.IsID(id, sessionIDBytes) {
		return ""
	}
	return id
}

// sessionIDBytes is the size of a session's random id.
const sessionIDBytes = 16

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return base64.RawURLEncoding.EncodeToString(b)
}
