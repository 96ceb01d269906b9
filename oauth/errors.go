package oauth

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"

	"github.com/labstack/echo/v4"

	"github.com/ssobridge/ssobridge/gitlabapi"
	"github.com/ssobridge/ssobridge/oauth/store"
)

// RFC 6749 error codes the bridge uses.
const (
	ErrInvalidRequest          = "invalid_request"
	ErrInvalidClient           = "invalid_client"
	ErrInvalidGrant            = "invalid_grant"
	ErrUnauthorizedClient      = "unauthorized_client"
	ErrUnsupportedGrantType    = "unsupported_grant_type"
	ErrUnsupportedResponseType = "unsupported_response_type"
	ErrInvalidScope            = "invalid_scope"
	ErrAccessDenied            = "access_denied"
	ErrServerError             = "server_error"
	ErrTemporarilyUnavailable  = "temporarily_unavailable"
)

// Error is an OAuth error answered as JSON at the token endpoint:
// {"error": Code, "error_description": Description}.
type Error struct {
	Code        string
	Description string
	Status      int
	// Failure names the failure in the sign-in's trace, and Fix says there what to change;
	// both are for administrators and never sent to the client.
	Failure string
	Fix     string
	// Cause is logged, never sent.
	Cause error
}

func (e *Error) Error() string { return e.Code + ": " + e.Description }
func (e *Error) Unwrap() error { return e.Cause }

// tokenError returns an Error with the status PROTOCOL.md gives its code: 401 for
// invalid_client, 503 when the bridge cannot serve, 400 for everything a client got wrong.
func tokenError(code, format string, args ...any) *Error {
	status := http.StatusBadRequest
	switch code {
	case ErrInvalidClient:
		status = http.StatusUnauthorized
	case ErrTemporarilyUnavailable:
		status = http.StatusServiceUnavailable
	case ErrServerError:
		status = http.StatusInternalServerError
	}
	return &Error{Code: code, Description: fmt.Sprintf(format, args...), Status: status}
}

// PageError is a failure shown to the person in the browser, on a page that says what went
// wrong and what to do. It never redirects.
type PageError struct {
	Status  int
	Title   string
	Message string
	Fix     string
	// Failure names the failure in the sign-in's trace.
	Failure string
	// TraceDetail follows Message in the trace only: what the administrator needs and the
	// public page should not show (an application's registered redirect URIs).
	TraceDetail string
	Cause       error
}

func (e *PageError) Error() string { return e.Title + ": " + e.Message }
func (e *PageError) Unwrap() error { return e.Cause }

// RedirectError sends an authorize error back to the client's redirect URI, which must already
// have been checked against the client's registration.
type RedirectError struct {
	RedirectURI string
	State       string
	Code        string
	Description string
	// Failure and Fix are for the sign-in's trace.
	Failure string
	Fix     string
}

func (e *RedirectError) Error() string { return e.Code + ": " + e.Description }

// APIError is an /api/v4 failure, answered in GitLab's shape {"message": "401 Unauthorized"}.
type APIError struct {
	Status int
	// Detail follows the status text in the message, as GitLab writes "403 Forbidden - ...".
	Detail string
	// Failure and Fix are for the sign-in's trace.
	Failure string
	Fix     string
	// Cause is logged, never sent.
	Cause error
}

func (e *APIError) Error() string {
	m := gitlabapi.StatusMessage(e.Status, e.Detail).Message
	if e.Cause != nil {
		m += ": " + e.Cause.Error()
	}
	return m
}
func (e *APIError) Unwrap() error { return e.Cause }

// storeFailure is what a client sees when the store (Redis) does not answer: the bridge
// cannot serve, and says so, whatever the endpoint.
func storeFailure(kind string, err error) error {
	return &storeError{kind: kind, err: err}
}

type storeError struct {
	kind string
	err  error
}

func (e *storeError) Error() string { return "store: " + e.kind + ": " + e.err.Error() }
func (e *storeError) Unwrap() error { return e.err }

// handleError is Echo's HTTPErrorHandler: the one place where errors become responses.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	req := c.Request()
	defer func() {
		failure, reason, fix := describeFailure(err)
		s.stepFailed(c, c.Response().Status, failure, reason, fix)
		s.countFailure(c, failure)
	}()
	var (
		oe   *Error
		pe   *PageError
		re   *RedirectError
		ae   *APIError
		se   *storeError
		shed *overloadError
		te   *timeoutError
		he   *echo.HTTPError
	)
	switch {
	case errors.As(err, &oe):
		s.logFailure(c, oe.Status, oe.Code, oe.Description, oe.Cause)
		writeTokenError(c, oe)
	case errors.As(err, &pe):
		s.logFailure(c, pe.Status, pe.Title, pe.Message, pe.Cause)
		s.renderPage(c, pe)
	case errors.As(err, &re):
		s.logFailure(c, http.StatusFound, re.Code, re.Description, nil)
		_ = c.Redirect(http.StatusFound, redirectWith(re.RedirectURI, url.Values{
			"error": {re.Code}, "error_description": {re.Description}, "state": {re.State},
		}))
	case errors.As(err, &ae):
		s.logFailure(c, ae.Status, "api", gitlabapi.StatusMessage(ae.Status, ae.Detail).Message, ae.Cause)
		writeAPIError(c, ae)
	case errors.As(err, &se):
		s.metrics.storeErrors.Inc()
		retryAfter(c, retryAfterStore)
		if errors.Is(se.err, store.ErrNotReplicated) {
			s.logFailure(c, http.StatusServiceUnavailable, "store_not_replicated", se.kind, se.err)
			s.renderByEndpoint(c, http.StatusServiceUnavailable, ErrTemporarilyUnavailable,
				"The bridge's store did not confirm the write on its replicas in time, so the bridge does not report it done; try again shortly. Administrators: check the Redis replicas (SSOBRIDGE_REDIS_WAIT_REPLICAS) and the bridge's log.")
			break
		}
		s.logFailure(c, http.StatusServiceUnavailable, "store_unavailable", se.kind, se.err)
		s.renderByEndpoint(c, http.StatusServiceUnavailable, ErrTemporarilyUnavailable,
			"The bridge's store is not answering; try again shortly. Administrators: check Redis (SSOBRIDGE_REDIS_URL) and the bridge's log.")
	case errors.As(err, &shed):
		retryAfter(c, retryAfterShed)
		s.logFailure(c, http.StatusServiceUnavailable, "overloaded", shed.Error(), nil)
		s.renderByEndpoint(c, http.StatusServiceUnavailable, ErrTemporarilyUnavailable,
			"The bridge is answering as many requests as it may at once; try again in a second. Administrators: see ssobridge_requests_shed_total, and SSOBRIDGE_MAX_IN_FLIGHT.")
	case errors.As(err, &te):
		s.logFailure(c, http.StatusServiceUnavailable, "request_timeout", te.Error(), te.cause)
		s.renderByEndpoint(c, http.StatusServiceUnavailable, ErrTemporarilyUnavailable,
			"The bridge could not answer within "+te.after.String()+"; try again shortly. Administrators: the bridge's log says what it waited for (SSOBRIDGE_REQUEST_TIMEOUT).")
	case errors.As(err, &he):
		msg := fmt.Sprint(he.Message)
		if he.Code == http.StatusMethodNotAllowed {
			msg = req.Method + " is not allowed on " + req.URL.Path
		} else if he.Code == http.StatusNotFound {
			msg = req.URL.Path + " is not an endpoint of this bridge"
		}
		s.renderByEndpoint(c, he.Code, ErrInvalidRequest, msg)
	default:
		s.logFailure(c, http.StatusInternalServerError, "internal", "unexpected error", err)
		s.renderByEndpoint(c, http.StatusInternalServerError, ErrServerError,
			"The bridge failed unexpectedly; administrators can find the cause in its log.")
	}
}

// renderByEndpoint answers in the shape the endpoint's callers read: OAuth JSON at the token,
// revocation and introspection endpoints, GitLab's message JSON under /api, a page anywhere a browser goes.
func (s *Server) renderByEndpoint(c echo.Context, status int, code, description string) {
	path := c.Request().URL.Path
	switch {
	case path == "/oauth/token", path == "/oauth/revoke", path == "/oauth/introspect":
		writeTokenError(c, &Error{Code: code, Description: description, Status: status})
	case len(path) >= 5 && path[:5] == "/api/":
		writeAPIError(c, &APIError{Status: status, Detail: description})
	default:
		s.renderPage(c, &PageError{Status: status, Title: http.StatusText(status), Message: description})
	}
}

func writeTokenError(c echo.Context, e *Error) {
	h := c.Response().Header()
	noStore(h)
	if e.Code == ErrInvalidClient {
		// RFC 6749 §5.2: a 401 names the scheme the client may authenticate with.
		h.Set("WWW-Authenticate", `Basic realm="ssobridge", error="invalid_client"`)
	}
	_ = c.JSON(e.Status, map[string]string{"error": e.Code, "error_description": e.Description})
}

func writeAPIError(c echo.Context, e *APIError) {
	noStore(c.Response().Header())
	if e.Status == http.StatusUnauthorized {
		// GitLab's API answers every authentication failure with the bare status message.
		_ = c.JSON(e.Status, gitlabapi.StatusMessage(e.Status, ""))
		return
	}
	_ = c.JSON(e.Status, gitlabapi.StatusMessage(e.Status, e.Detail))
}

func noStore(h http.Header) {
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
}

func (s *Server) logFailure(c echo.Context, status int, code, description string, cause error) {
	attrs := []any{"method", c.Request().Method, "path", c.Request().URL.Path, "status", status,
		"error", code, "description", description}
	if cause != nil {
		attrs = append(attrs, "cause", cause.Error())
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

// countFailure counts a failed request of a sign-in under the name its trace gives the failure:
// that of the step that failed (a call to GitLab within a callback fails before its request does),
// else failure, the name of the error the handler returned. The name is one of failureNames, so
// the metric has the trace's vocabulary and a bounded number of series.
func (s *Server) countFailure(c echo.Context, failure string) {
	if !slices.Contains(signInEndpoints, c.Path()) {
		return
	}
	if ref, ok := c.Get(traceKey).(*traceRef); ok && ref.failure != "" {
		failure = ref.failure
	}
	s.metrics.loginsFailed.WithLabelValues(c.Path(), knownFailure(failure)).Inc()
}
