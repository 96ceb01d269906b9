package oauth

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/ssobridge/ssobridge/oauth/signin"
	"github.com/ssobridge/ssobridge/oauth/store"
	"github.com/ssobridge/ssobridge/oauth/upstream"
)

// Bounds on the work a request may cause.
const (
	// DefaultRequestTimeout is how long a request may take, all of it (the store, GitLab):
	// half of the 30 s Mattermost's HTTP client waits for each request, so that Mattermost is
	// always answered, and told why, before it gives up.
	DefaultRequestTimeout = 15 * time.Second
	// DefaultMaxInFlight is how many requests the bridge answers at once; beyond it, it answers
	// 503 at once. A sign-in at full speed holds a request for a few milliseconds, so that a
	// bridge signing in thousands of people a second has a few dozen in flight: the bound matters
	// when the store or GitLab stalls, when every request waits, and without it they pile up
	// (thousands of goroutines, and their memory) until the stall ends.
	DefaultMaxInFlight = 256
)

// Retry-After values, in seconds: how soon a client may try again after the bridge shed its
// request, and after the store did not answer (a stall, a failover, a restart).
const (
	retryAfterShed  = 1
	retryAfterStore = 5
	// retryAfterFull: a full store has room again only once an administrator makes it.
	retryAfterFull = 60
)

// withDeadline gives every request a deadline (Config.RequestTimeout), under which every call
// to the store and to GitLab runs. An error that comes of it and is not already one the bridge
// explains (the store did not answer, GitLab did not answer) is the request's own timeout.
func (s *Server) withDeadline() echo.MiddlewareFunc {
	return middleware.ContextTimeoutWithConfig(middleware.ContextTimeoutConfig{
		Timeout: s.cfg.RequestTimeout,
		ErrorHandler: func(err error, c echo.Context) error {
			if !errors.Is(err, context.DeadlineExceeded) {
				return err
			}
			if _, ok := errors.AsType[*Error](err); ok {
				return err // the store, or a call to GitLab, that the deadline cut short: said so already
			}
			if _, ok := errors.AsType[*upstream.Error](err); ok {
				return err
			}
			return &Error{Failure: signin.RequestTimeout, Cause: err, RetryAfter: retryAfterStore,
				Description: "The bridge could not answer within " + s.cfg.RequestTimeout.String() + "; try again shortly. Administrators: the bridge's log says what it waited for (SSOBRIDGE_REQUEST_TIMEOUT)."}
		},
	})
}

// inFlight bounds the requests answered at once (Config.MaxInFlight). The health probes are not
// counted: an overloaded bridge must still say it is alive.
type inFlight chan struct{}

// shed answers at once, 503 with Retry-After, a request that finds MaxInFlight requests already
// in flight; the refusal is traced (as a request no application vouches for, since it was not
// read) and counted.
func (s *Server) shed(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		switch c.Path() {
		case "/healthz", "/readyz":
			return next(c)
		}
		select {
		case s.inFlight <- struct{}{}:
			defer func() { <-s.inFlight }()
			return next(c)
		default:
		}
		s.metrics.shed.WithLabelValues(endpointLabel(c)).Inc()
		s.beginStep(c, requestTrace(c), signin.StepRequest, store.PartClient, store.PartBridge, c.Request().Method+" "+c.Request().URL.Path)
		return &Error{Failure: signin.Overloaded, RetryAfter: retryAfterShed,
			Description: "The bridge is answering as many requests as it may at once; try again in a second. Administrators: see ssobridge_requests_shed_total, and SSOBRIDGE_MAX_IN_FLIGHT.",
			TraceDetail: "(" + strconv.Itoa(cap(s.inFlight)) + " requests were already in flight)"}
	}
}

// endpointLabel is the endpoint a request is counted under.
func endpointLabel(c echo.Context) string {
	if p := c.Path(); p != "" {
		return p
	}
	return "unknown"
}

// Limits bound what one client address, one browser, or everybody together may ask of the
// bridge, so that a flood neither takes the store's memory nor answers a guesser thousands of
// times a second, while an office of people behind one address, and the one server address of a
// Mattermost, sign in unhindered. Every instance on one store shares them.
type Limits struct {
	// SignIn is each client address's allowance at each sign-in endpoint a browser visits
	// (/oauth/authorize, the callback, the consent and chooser forms): every request counts.
	SignIn store.Limit
	// ClientAuthFailures is the allowance of failed client authentications at the token,
	// revocation and introspection endpoints, per client and address: only failures count, so
	// that a Mattermost sending the right secret is never limited however many people sign in.
	ClientAuthFailures store.Limit
	// Pending bounds the sign-ins parked at once (store.PendingCaps).
	Pending store.PendingCaps
}

// Defaults for Limits; the README says why each is what it is.
var (
	DefaultSignInLimit             = store.Limit{Rate: 600, Period: time.Minute, Burst: 600}
	DefaultClientAuthFailuresLimit = store.Limit{Rate: 10, Period: time.Minute, Burst: 10}
	DefaultPendingCaps             = store.PendingCaps{PerBrowser: 10, PerSource: 1000, Total: 50000}
)

// withDefaults fills the zero values of l with the defaults; a negative value turns a limit off.
func (l Limits) withDefaults() Limits {
	if l.SignIn == (store.Limit{}) {
		l.SignIn = DefaultSignInLimit
	}
	if l.ClientAuthFailures == (store.Limit{}) {
		l.ClientAuthFailures = DefaultClientAuthFailuresLimit
	}
	p, d := &l.Pending, DefaultPendingCaps
	p.PerBrowser, p.PerSource, p.Total = cmp.Or(p.PerBrowser, d.PerBrowser), cmp.Or(p.PerSource, d.PerSource), cmp.Or(p.Total, d.Total)
	return l
}

// sourceOf names the client address of a request (Echo's RealIP, which believes X-Forwarded-For
// from the trusted proxies alone) as the limits count it: an IPv4 address, or an IPv6 address's
// /64, which one customer of a provider usually has whole. Only a digest is kept in the store.
func sourceOf(c echo.Context) string {
	ip := net.ParseIP(c.RealIP())
	switch {
	case ip == nil:
		return hashPrefix(c.RealIP())
	case ip.To4() == nil:
		ip = ip.Mask(net.CIDRMask(64, 128))
	}
	return store.TokenKey(ip.String())[:16]
}

// limitSignIn spends one of the client address's allowance at a sign-in endpoint; beyond it the
// request is answered 429 with Retry-After before anything else is done, traced (as a request no
// application vouches for) and counted. The store, which every instance shares, is asked once
// per quarter of the burst this instance let an address through unasked, and at every request of
// an address it refused lately (see localUse). A
// store that does not answer lets the request through: the handler meets the same store and says
// so precisely.
func (s *Server) limitSignIn(step signin.Step) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			s.warnUntrustedProxy(c)
			l := s.cfg.Limits.SignIn
			if l.Off() {
				return next(c)
			}
			key := "signin:" + c.Path() + ":" + sourceOf(c)
			res, err := s.signInUse.allow(key, l, time.Now(), func(cost int) (store.LimitResult, error) {
				return s.store.Limit(c.Request().Context(), key, l, cost)
			})
			if err != nil {
				s.logger(c.Request().Context()).Warn("the sign-in rate limit could not be checked; the request goes on", "cause", err.Error())
				return next(c)
			}
			if res.Allowed {
				return next(c)
			}
			s.metrics.rateLimited.WithLabelValues(c.Path(), "sign_in").Inc()
			from, label, id, found := store.PartClient, c.Request().Method+" "+c.Request().URL.Path, requestTrace(c), false
			if step == signin.StepCallback {
				from, label = store.PartGitLab, callbackLabel
				// A return from the provider with the bridge's own state (its tag checks out)
				// belongs to that sign-in: its trace says why it stopped, rather than that the
				// person never came back.
				if traceID, _, ok := s.readUpstreamState(c.QueryParam("state")); ok && traceID != "" {
					id, found = traceID, true
				}
			}
			s.beginStep(c, id, step, from, store.PartBridge, label)
			if found {
				s.useTrace(c, id)
			}
			return &Error{Failure: signin.RateLimited, Status: http.StatusTooManyRequests, RetryAfter: retrySeconds(res.RetryAfter),
				Title:       "Too many sign-in requests",
				Description: "Too many sign-in requests came from your network address in a short time; wait a minute and sign in again.",
				TraceDetail: fmt.Sprintf("(%s, per endpoint and client address: SSOBRIDGE_RATE_LIMIT_SIGN_IN; address %s)", l, c.RealIP())}
		}
	}
}

// clientAuthKey names the allowance of failed authentications of a client from the request's
// address; failures naming no registered client share one per address, so that a guesser cannot
// pass the limit by naming a new client each time.
func clientAuthKey(c echo.Context, app *store.Application) string {
	id := "?"
	if app != nil {
		id = app.ID
	}
	return "clientauth:" + id + ":" + sourceOf(c)
}

// clientAuthLimited answers a client authentication from an address whose failures for the
// client used up their allowance: 429 with Retry-After, before the secret is looked at, so that
// guessing goes no faster than the allowance whatever is guessed.
//
// Only a key this instance saw fail lately is looked up in the store: a Mattermost whose
// authentications succeed costs the store nothing, and a guesser, whose failures every instance
// counts in the store, gets at most one look-free attempt per instance before the shared
// allowance applies.
func (s *Server) clientAuthLimited(c echo.Context, app *store.Application) *Error {
	l := s.cfg.Limits.ClientAuthFailures
	key := clientAuthKey(c, app)
	if l.Off() || !s.failedLately.has(key) {
		return nil
	}
	res, err := s.store.Limit(c.Request().Context(), key, l, 0)
	if err != nil || res.Allowed {
		return nil
	}
	s.metrics.rateLimited.WithLabelValues(endpointLabel(c), "client_auth_failures").Inc()
	// The request had no trace yet (a token request finds its sign-in's through its code): the
	// refusal gets one of its own, in the share no application vouches for.
	s.beginStep(c, requestTrace(c), signin.StepToken, store.PartClient, store.PartBridge, c.Request().Method+" "+c.Request().URL.Path)
	client := "an unknown client_id"
	if app != nil {
		client = app.Name + " (" + app.ID + ")"
	}
	return &Error{Failure: signin.ClientAuthRateLimited, Status: http.StatusTooManyRequests, RetryAfter: retrySeconds(res.RetryAfter),
		Description: "too many failed client authentications from this address; correct the client_id and client_secret, and try again after the Retry-After seconds",
		TraceDetail: fmt.Sprintf("(%s failed for %s from %s: SSOBRIDGE_RATE_LIMIT_CLIENT_AUTH_FAILURES)", l, client, c.RealIP())}
}

// countClientAuthFailure spends one of the allowance of failed authentications.
func (s *Server) countClientAuthFailure(c echo.Context, app *store.Application) {
	if l := s.cfg.Limits.ClientAuthFailures; !l.Off() {
		key := clientAuthKey(c, app)
		// The store forgets an allowance once it is whole again: at most Period/Rate*Burst after
		// the last failure.
		s.failedLately.add(key, time.Duration(l.Burst)*l.Interval())
		if _, err := s.store.Limit(c.Request().Context(), key, l, 1); err != nil {
			s.logger(c.Request().Context()).Warn("a failed client authentication could not be counted", "cause", err.Error())
		}
	}
}

// retrySeconds is a Retry-After value: whole seconds, at least one.
func retrySeconds(d time.Duration) int {
	return max(1, int((d+time.Second-1)/time.Second))
}

// parkPending parks pending under key within the caps on sign-ins parked at once: beyond the cap
// of its address or the total cap it is refused with a page that says why; beyond its browser's,
// the browser's oldest sign-ins are dropped (and counted).
//
// A sign-in the request found already (the chooser's answer, which parks it again for the
// provider) is counted again: its take uncounted it, and it is in progress until it comes back.
func (s *Server) parkPending(c echo.Context, key string, pending *store.Authorization) error {
	pending.Source = sourceOf(c)
	l := s.cfg.Limits.Pending // a negative cap is none
	caps := store.PendingCaps{PerBrowser: max(l.PerBrowser, 0), PerSource: max(l.PerSource, 0), Total: max(l.Total, 0)}
	evicted, err := s.store.PutAuthorization(c.Request().Context(), key, pending, s.cfg.AuthorizationTTL, caps)
	if err != nil {
		// The request's step was recorded as done when the request checked out; it failed after
		// all, and handleError records it so.
		undoStepOK(c)
		return s.parkFailure(c, err)
	}
	if evicted > 0 {
		s.metrics.pendingEvicted.Add(float64(evicted))
	}
	// Every check passed and the sign-in is parked: it is the application's, and so is its trace.
	vouch(c)
	return nil
}

// parkFailure is the answer to a sign-in the store did not park.
func (s *Server) parkFailure(c echo.Context, err error) *Error {
	if capErr, ok := errors.AsType[*store.PendingCapError](err); ok {
		s.metrics.pendingRefused.WithLabelValues(capErr.Which).Inc()
		if capErr.Which == "source" {
			return &Error{Failure: signin.TooManyPendingFromAddress, Status: http.StatusTooManyRequests, RetryAfter: 60,
				Title:       "Too many sign-ins in progress",
				Description: "Too many sign-ins from your network address were started in the last few minutes and are not completed yet; wait a few minutes and sign in again.",
				TraceDetail: fmt.Sprintf("(%d in progress from %s: started within %s and not back from the provider yet; SSOBRIDGE_MAX_PENDING_PER_ADDRESS)", capErr.Cap, c.RealIP(), s.cfg.AuthorizationTTL)}
		}
		return &Error{Failure: signin.TooManyPending, RetryAfter: 60,
			Title:       "Too many sign-ins in progress",
			Description: "The bridge has as many sign-ins in progress as it may hold; wait a few minutes and sign in again.",
			TraceDetail: fmt.Sprintf("(%d in progress: started within %s and not back from the provider yet; SSOBRIDGE_MAX_PENDING)", capErr.Cap, s.cfg.AuthorizationTTL)}
	}
	return storeFailure("save authorization", err)
}

// superseded is the answer to a return to a sign-in dropped for its browser's newer ones.
func superseded() *Error {
	return &Error{Failure: signin.SignInSuperseded, Title: "Sign-in replaced by newer ones",
		Description: "This browser started many sign-ins after this one, so the bridge dropped it.",
		Fix:         "Go back to the application and sign in again, once."}
}

// proxyWarnings remembers the peers warned of (see warnUntrustedProxy), at most
// maxProxyWarnings of them.
type proxyWarnings struct {
	mu   sync.Mutex
	seen map[string]bool
}

const maxProxyWarnings = 100

// warnUntrustedProxy logs, once per peer, a request to a sign-in endpoint that carries
// X-Forwarded-For from a peer not among the trusted proxies: a reverse proxy in front of the
// bridge that nobody listed makes every person behind it one address, which the limits per address
// would soon refuse. (A client may send the header itself; the warning says what to do either way.)
func (s *Server) warnUntrustedProxy(c echo.Context) {
	req := c.Request()
	if req.Header.Get(echo.HeaderXForwardedFor) == "" {
		return
	}
	peer, _, err := net.SplitHostPort(req.RemoteAddr)
	if err != nil || c.RealIP() != peer {
		return // a trusted proxy named the client
	}
	w := &s.proxyWarned
	w.mu.Lock()
	if w.seen == nil {
		w.seen = map[string]bool{}
	}
	first := !w.seen[peer] && len(w.seen) < maxProxyWarnings
	if first {
		w.seen[peer] = true
	}
	w.mu.Unlock()
	if first {
		s.logger(req.Context()).Warn("a request came through a proxy the bridge does not trust: if "+peer+" is a reverse proxy in front of the bridge, add it to SSOBRIDGE_TRUSTED_PROXIES; until then everyone behind it counts as one client address, which the rate limits and the caps per address soon refuse",
			"peer", peer)
	}
}

// recentFailures remembers, per instance, keys until a time of their own: those of failed client
// authentications until their allowance could be whole again (see clientAuthLimited), and the
// access tokens whose read of the user was traced, while their snapshot answers (see
// traceFirstRead). It holds at most maxRecentFailures of them: when full, the ones that lapsed
// are dropped, and if that leaves nine tenths or more, all are (each then costs its guesser one
// more attempt before the store is asked again, or its token one more traced read).
type recentFailures struct {
	mu    sync.Mutex
	until map[string]time.Time
}

const maxRecentFailures = 10000

func (r *recentFailures) add(key string, d time.Duration) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.until == nil {
		r.until = map[string]time.Time{}
	}
	if len(r.until) >= maxRecentFailures {
		for k, t := range r.until {
			if now.After(t) {
				delete(r.until, k)
			}
		}
		// Nine tenths or more left: all go, so that the walk is paid once per tenth of the
		// bound at most, not by every new key.
		if len(r.until) >= maxRecentFailures*9/10 {
			clear(r.until)
		}
	}
	r.until[key] = now.Add(d)
}

func (r *recentFailures) has(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.until[key]
	return ok && time.Now().Before(t)
}
