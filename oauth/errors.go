package oauth

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/ssobridge/ssobridge/gitlabapi"
	"github.com/ssobridge/ssobridge/oauth/signin"
	"github.com/ssobridge/ssobridge/oauth/store"
	"github.com/ssobridge/ssobridge/oauth/upstream"
)

// Error is every failure the bridge answers: which failure of the catalogue (package signin) it
// is, what was wrong in this request, and what to change. Handlers return it; handleError alone
// turns it into an answer (see render) and records it in the sign-in's trace, and explain turns
// any other error into one.
type Error struct {
	Failure *signin.Failure
	// Description says what was wrong, to whoever made the request: the error_description of an
	// OAuth answer, the message of a page, the detail after the status of GitLab's message JSON.
	Description string
	// Title is a page's heading; empty takes the status's text.
	Title string
	// Fix says what to change; empty takes the failure's. A page shows it as "What to do"; in an
	// OAuth or /api answer it goes to the trace only.
	Fix string
	// PageFix, when set, is what a page shows as "What to do" instead of Fix, which then goes to
	// the trace only: for a refusal whose fix names what the requester must not learn (an
	// application's rules, its registration, the commands that change them).
	PageFix string
	// TraceDetail follows Description in the trace only: what the administrator needs and the
	// requester should not see (an application's registered redirect URIs, a store's error).
	TraceDetail string
	// RedirectURI and State, once the redirect URI is known to be the client's own, send the
	// error back to the client as RFC 6749 §4.1.2.1 says.
	RedirectURI, State string
	// Status is the status of a page or an /api answer, when not the failure's.
	Status int
	// Scope is the scope a bearer request lacked: a 403 names it in WWW-Authenticate (RFC 6750
	// §3.1).
	Scope string
	// RetryAfter, in seconds, goes with a 503 or 429 the requester may try again after.
	RetryAfter int
	// Cause is logged, never sent.
	Cause error
}

func (e *Error) Error() string {
	msg := e.Failure.Name() + ": " + e.Description
	if e.Cause != nil {
		msg += ": " + e.Cause.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Cause }

// fail makes the Error of failure f, with a description in fmt.Sprintf's form.
func fail(f *signin.Failure, format string, args ...any) *Error {
	return &Error{Failure: f, Description: fmt.Sprintf(format, args...)}
}

// withFix sets what to change, for the trace (and a page).
func (e *Error) withFix(fix string) *Error {
	e.Fix = fix
	return e
}

// withCause sets the error behind the failure, for the log.
func (e *Error) withCause(err error) *Error {
	e.Cause = err
	return e
}

// page makes the Error a page with a title and, unless 0, a status of its own.
func (e *Error) page(title string, status int) *Error {
	e.Title = title
	if status != 0 {
		e.Status = status
	}
	return e
}

// toClient sends the Error back to the client's redirect URI, with its state.
func (e *Error) toClient(redirectURI, state string) *Error {
	e.RedirectURI, e.State = redirectURI, state
	return e
}

// status is the HTTP status of a page or an /api answer of e.
func (e *Error) status() int {
	if e.Status != 0 {
		return e.Status
	}
	return e.Failure.Status()
}

// fix is what to change.
func (e *Error) fix() string {
	if e.Fix != "" {
		return e.Fix
	}
	return e.Failure.Fix()
}

// reason is what the trace says went wrong: the description, or, for an /api answer that has
// none (GitLab's API answers a 401 with its bare status), the status and the cause.
func (e *Error) reason() string {
	if r := strings.TrimSpace(e.Description + " " + e.TraceDetail); r != "" {
		return r
	}
	r := e.apiMessage()
	if e.Cause != nil {
		r += ": " + e.Cause.Error()
	}
	return r
}

// storeFailure is the answer when the store did not do what was asked (kind says what): the
// bridge cannot serve, and says so, whatever the endpoint. A write the replicas did not
// acknowledge is store_not_replicated; a write refused for memory, store_full (an administrator
// raises maxmemory, rather than looks for a Redis that does not answer); anything else, the
// outcome unknown, store_unavailable.
func storeFailure(kind string, err error) *Error {
	e := &Error{Failure: signin.StoreUnavailable, RetryAfter: retryAfterStore, Cause: err,
		Description: "The bridge's store is not answering; wait a moment and sign in again. Administrators: check Redis (SSOBRIDGE_REDIS_URL) and the bridge's log.",
		TraceDetail: "(" + kind + ": " + storeCause(err) + ")"}
	if errors.Is(err, store.ErrLost) {
		e.Failure = signin.StoreLostWrite
		e.Description = "The bridge's store lost what it had recorded earlier in this request (Redis failed over or restarted), so the bridge does not report it done; wait a moment and sign in again. Administrators: see deploy/REDIS.md on SSOBRIDGE_REDIS_WAIT_REPLICAS and persistence."
		e.TraceDetail = "(" + kind + ": " + err.Error() + ")"
	}
	if errors.Is(err, store.ErrFull) {
		e.Failure = signin.StoreFull
		e.RetryAfter = retryAfterFull
		e.Description = "The bridge's store is full (store_full): it refuses to record anything more, so this request cannot go on; try again later. Administrators: Redis reached its maxmemory; raise maxmemory or free memory (see deploy/REDIS.md on sizing)."
		e.TraceDetail = "(" + kind + ": " + err.Error() + ")"
	}
	if errors.Is(err, store.ErrNotReplicated) {
		e.Failure = signin.StoreNotReplicated
		e.Description = "The bridge's store did not confirm the write on its replicas in time, so the bridge does not report it done; wait a moment and sign in again. Administrators: check the Redis replicas (SSOBRIDGE_REDIS_WAIT_REPLICAS) and the bridge's log."
		e.TraceDetail = "(" + kind + ": " + err.Error() + ")"
	}
	return e
}

// storeFailures are the failures of the store itself, which ssobridge_store_errors_total counts
// by name, whatever the endpoint.
var storeFailures = []*signin.Failure{signin.StoreUnavailable, signin.StoreFull, signin.StoreNotReplicated, signin.StoreLostWrite}

// storeCause says why a store call failed: the request's deadline, or the store's own failure.
func storeCause(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "it did not answer within the request's deadline (SSOBRIDGE_REQUEST_TIMEOUT), so the outcome is unknown and nothing is reported done"
	case errors.Is(err, context.Canceled):
		return "the client went away first"
	}
	return err.Error()
}

// explain is the Error of any error a handler returns: an Error as it is, a failed call to GitLab
// as its failure, the router's refusals, and anything else as the bridge's own failure.
func explain(err error, c echo.Context) *Error {
	if e, ok := errors.AsType[*Error](err); ok {
		return e
	}
	if ue, ok := errors.AsType[*upstream.Error](err); ok {
		return &Error{Failure: upstreamFailure(ue), Description: ue.Error(), Fix: ue.Fix(), Cause: err}
	}
	if he, ok := errors.AsType[*echo.HTTPError](err); ok {
		req := c.Request()
		switch he.Code {
		case http.StatusMethodNotAllowed:
			return &Error{Failure: signin.MethodNotAllowed, Status: he.Code, Description: req.Method + " is not allowed on " + req.URL.Path}
		case http.StatusNotFound:
			return &Error{Failure: signin.NotFound, Status: he.Code, Description: req.URL.Path + " is not an endpoint of this bridge"}
		}
		return &Error{Failure: signin.BadRequest, Status: he.Code, Description: fmt.Sprint(he.Message)}
	}
	return &Error{Failure: signin.Internal, Cause: err,
		Description: "The bridge failed unexpectedly; administrators can find the cause in its log."}
}

// handleError is Echo's HTTPErrorHandler: the one place where errors become answers, and are
// recorded in the sign-in's trace and counted.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	e := explain(err, c)
	if e.Failure != nil && strings.HasPrefix(e.Failure.Name(), "store_") {
		s.forgetStoreCheck()
	}
	s.render(c, e)
	s.stepFailed(c, c.Response().Status, e)
	s.countFailure(c, e.Failure)
	if slices.Contains(storeFailures, e.Failure) {
		s.metrics.storeErrors.WithLabelValues(e.Failure.Name()).Inc()
	}
}

// HeaderFailure names, on every error answer, the failure of the catalogue (package signin) the
// answer is, such as redirect_uri_not_registered: a probe (`ssobridge doctor`, a monitor) learns
// what went wrong without reading the page, and looks the name up for what to change.
const HeaderFailure = "X-Ssobridge-Failure"

// PageJSON is the answer, instead of a page, to a request whose Accept header puts
// application/json first: what a page shows, for a probe to read without parsing HTML.
type PageJSON struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
	Failure     string `json:"failure"`
	Title       string `json:"title"`
	Fix         string `json:"fix,omitempty"`
	TraceID     string `json:"trace_id,omitempty"`
}

// tokenEndpoints answer with OAuth's JSON errors (RFC 6749 §5.2).
var tokenEndpoints = []string{"/oauth/token", "/oauth/revoke", "/oauth/introspect"}

// bearerEndpoints are the OAuth endpoints a client calls with an access token (RFC 6750): they
// answer with OAuth's JSON errors, as Doorkeeper does. /api answers GitLab's message JSON.
var bearerEndpoints = []string{"/oauth/userinfo", "/oauth/token/info"}

// render answers e in the shape its requester reads: a redirect to the client when it has a
// redirect URI, OAuth JSON at the token, revocation, introspection and bearer endpoints, GitLab's
// message JSON under /api, and a page anywhere a browser goes, or the page's content as JSON
// (PageJSON) to a request that asks for JSON first. Every answer names its failure in
// HeaderFailure. What goes to a client as an
// error_description is cut down to the characters RFC 6749 allows there (oauthDescription); pages,
// the log and the trace keep the full text.
func (s *Server) render(c echo.Context, e *Error) {
	h := c.Response().Header()
	noStore(h)
	h.Set(HeaderFailure, e.Failure.Name())
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	path := c.Request().URL.Path
	switch {
	case e.RedirectURI != "":
		s.logFailure(c, http.StatusFound, e)
		_ = c.Redirect(http.StatusFound, s.clientRedirect(e.RedirectURI, url.Values{
			"error": {e.Failure.Code()}, "error_description": {oauthDescription(e.Description)}, "state": {e.State},
		}))
	case slices.Contains(tokenEndpoints, path):
		status := signin.CodeStatus(e.Failure.Code())
		if e.Status != 0 {
			status = e.Status // the router's own refusals: 404, 405
		}
		s.logFailure(c, status, e)
		if e.Failure.Code() == signin.InvalidClient {
			// RFC 6749 §5.2: a 401 names the scheme the client may authenticate with.
			h.Set("WWW-Authenticate", `Basic realm="ssobridge", error="invalid_client"`)
		}
		_ = c.JSON(status, map[string]string{"error": e.Failure.Code(), "error_description": oauthDescription(e.Description)})
	case slices.Contains(bearerEndpoints, path):
		status := e.status()
		s.logFailure(c, status, e)
		code, desc := bearerChallenge(h, e, status)
		_ = c.JSON(status, map[string]string{"error": code, "error_description": desc})
	case strings.HasPrefix(path, "/api/"):
		status := e.status()
		s.logFailure(c, status, e)
		bearerChallenge(h, e, status)
		detail := e.Description
		if status == http.StatusUnauthorized {
			detail = "" // GitLab's API answers every authentication failure with the bare status message
		}
		_ = c.JSON(status, gitlabapi.StatusMessage(status, detail))
	case prefersJSON(c.Request()):
		status := e.status()
		s.logFailure(c, status, e)
		_ = c.JSON(status, PageJSON{Error: e.Failure.Code(), Description: e.Description, Failure: e.Failure.Name(),
			Title: cmp.Or(e.Title, http.StatusText(status)), Fix: cmp.Or(e.PageFix, e.Fix), TraceID: currentTrace(c)})
	default:
		s.logFailure(c, e.status(), e)
		s.renderPage(c, e)
	}
}

// prefersJSON tells a request whose Accept header lists application/json first: a program's, as
// a browser lists text/html first.
func prefersJSON(r *http.Request) bool {
	first, _, _ := strings.Cut(r.Header.Get("Accept"), ",")
	first, _, _ = strings.Cut(first, ";")
	return strings.EqualFold(strings.TrimSpace(first), "application/json")
}

// bearerDescriptions tell a client why its access token was refused, in the few words GitLab's
// error_description gives; the trace and the log keep the details (when it expired, and why).
var bearerDescriptions = map[*signin.Failure]string{
	signin.TokenMissing:       "The request has no access token; send it as Authorization: Bearer TOKEN",
	signin.TokenUnknown:       "The access token is invalid or was revoked",
	signin.TokenExpired:       "The access token expired; refresh it or sign in again",
	signin.SessionRevoked:     "The access token was revoked",
	signin.ApplicationDeleted: "The access token's application was deleted",
}

// bearerChallenge sets RFC 6750 §3's WWW-Authenticate on a request to a bearer endpoint that
// was refused for its token, and returns the OAuth error and description of the refusal: a 401
// is invalid_token, with no error in the challenge when the request sent no token (§3.1); a 403
// for the token's scope is insufficient_scope, naming the scope needed. Any other failure is
// not the token's: no challenge, and the failure's own code.
func bearerChallenge(h http.Header, e *Error, status int) (code, description string) {
	challenge := `Bearer realm="ssobridge"`
	switch {
	case status == http.StatusUnauthorized:
		code = "invalid_token"
		description = cmp.Or(bearerDescriptions[e.Failure], oauthDescription(e.Description), "The access token is invalid, expired or revoked")
		if e.Failure != signin.TokenMissing {
			challenge += `, error="invalid_token", error_description="` + description + `"`
		}
	case e.Failure == signin.TokenScopeInsufficient:
		code, description = "insufficient_scope", oauthDescription(e.Description)
		challenge += `, error="insufficient_scope", error_description="` + description + `", scope="` + e.Scope + `"`
	default:
		return e.Failure.Code(), oauthDescription(e.Description)
	}
	h.Set("WWW-Authenticate", challenge)
	return code, description
}

// clientRedirect is the URI that takes an authorization response, params, to the client's
// registered redirect URI, with the bridge's issuer as iss (RFC 9207): a client that signs in at
// more than one authorization server learns which one answered, and cannot be sent a code or an
// error by another in a mix-up (RFC 9700 §4.4.2). The issuer is the one of the discovery
// document, byte for byte, as the client compares them.
func (s *Server) clientRedirect(redirectURI string, params url.Values) string {
	params.Set("iss", s.issuer())
	return redirectWith(redirectURI, params)
}

// descriptionReplacer spells the punctuation the bridge's messages use in ASCII.
var descriptionReplacer = strings.NewReplacer("…", "...", "‘", "'", "’", "'", "“", "'", "”", "'", "–", "-", "—", "-",
	`"`, "'", `\`, "/")

// oauthDescription is d in the characters RFC 6749 allows in error_description (§4.1.2.1, §5.2:
// %x20-21 / %x23-5B / %x5D-7E): double quotes become single ones, backslashes slashes, and
// any other character outside printable ASCII (a quoted request value may hold any) a question
// mark, or a space for a line break or tab. Clients that check the rule, and the quoted-string
// of WWW-Authenticate, read it then; pages and the trace keep d itself.
func oauthDescription(d string) string {
	d = descriptionReplacer.Replace(d)
	var b strings.Builder
	b.Grow(len(d))
	for _, r := range d {
		switch {
		case r >= 0x20 && r <= 0x7e:
			b.WriteRune(r)
		case r == '\n' || r == '\r' || r == '\t':
			b.WriteByte(' ')
		default:
			b.WriteByte('?')
		}
	}
	return b.String()
}

func noStore(h http.Header) {
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
}

func (s *Server) logFailure(c echo.Context, status int, e *Error) {
	attrs := []any{"method", c.Request().Method, "path", c.Request().URL.Path, "status", status,
		"failure", e.Failure.Name(), "description", e.Description}
	if e.TraceDetail != "" {
		attrs = append(attrs, "detail", e.TraceDetail)
	}
	if e.Cause != nil {
		attrs = append(attrs, "cause", e.Cause.Error())
	}
	log := s.logger(c.Request().Context())
	if status >= 500 {
		log.Error("request failed", attrs...)
		return
	}
	log.Info("request refused", attrs...)
}

// signInEndpoints are the endpoints whose failures are failed sign-ins, counted in
// ssobridge_logins_failed_total.
var signInEndpoints = []string{"/oauth/authorize", CallbackPath, consentPath, "/oauth/token", "/api/v4/user"}

// countFailure counts a failed request of a sign-in under the failure its trace names: that of
// the step that failed (a call to GitLab within a callback fails before its request does), else
// f, the failure of the error the handler returned. The metric's label takes the catalogue's
// names alone, so it means in Prometheus what it means in the trace, with a bounded number of
// series.
func (s *Server) countFailure(c echo.Context, f *signin.Failure) {
	if !slices.Contains(signInEndpoints, c.Path()) {
		return
	}
	if ref, ok := c.Get(traceKey).(*traceRef); ok && ref.failure != nil {
		f = ref.failure
	}
	s.metrics.loginsFailed.WithLabelValues(c.Path(), f.Name()).Inc()
}

// upstreamFailure names a failed call to GitLab. GitLab's error codes name a failure only when
// they are among those RFC 6749 defines, so that the failure is in the catalogue whatever GitLab,
// or a proxy in front of it, answers.
func upstreamFailure(ue *upstream.Error) *signin.Failure {
	switch {
	case ue.Code != "":
		if f := signin.UpstreamToken(ue.Code); f != nil {
			return f
		}
		return signin.UpstreamRejected
	case ue.Call == upstream.CallUser && ue.Status == http.StatusForbidden:
		return signin.UpstreamUserRefused
	case ue.Status == http.StatusUnauthorized:
		return signin.UpstreamTokenRejected
	}
	switch ue.Kind {
	case upstream.KindUnreachable:
		return signin.UpstreamUnreachable
	case upstream.KindTimeout:
		return signin.UpstreamTimeout
	case upstream.KindTLS:
		return signin.UpstreamTLS
	case upstream.KindBadResponse:
		return signin.UpstreamBadResponse
	case upstream.KindCanceled:
		return signin.UpstreamCanceled
	}
	return signin.UpstreamRejected
}
