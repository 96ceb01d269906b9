package oauth

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/ssobridge/ssobridge/gitlabapi"
	"github.com/ssobridge/ssobridge/oauth/store"
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
			var (
				se *storeError
				ue *gitlabapi.UpstreamError
				oe *Error
				pe *PageError
				ae *APIError
			)
			if errors.As(err, &se) || errors.As(err, &ue) || errors.As(err, &oe) || errors.As(err, &pe) || errors.As(err, &ae) {
				return err
			}
			return &timeoutError{after: s.cfg.RequestTimeout, cause: err}
		},
	})
}

// timeoutError is a request that ran out of its deadline in the bridge itself.
type timeoutError struct {
	after time.Duration
	cause error
}

func (e *timeoutError) Error() string { return "the request took longer than " + e.after.String() }
func (e *timeoutError) Unwrap() error { return e.cause }

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
		s.beginStep(c, newTrace(), "request", store.PartClient, store.PartBridge, c.Request().Method+" "+c.Request().URL.Path)
		return &overloadError{max: cap(s.inFlight)}
	}
}

// overloadError is a request shed because too many were in flight.
type overloadError struct{ max int }

func (e *overloadError) Error() string {
	return strconv.Itoa(e.max) + " requests were already in flight"
}

// retryAfter sets Retry-After on a 503 the client may try again after.
func retryAfter(c echo.Context, seconds int) {
	c.Response().Header().Set("Retry-After", strconv.Itoa(seconds))
}

// endpointLabel is the endpoint a request is counted under.
func endpointLabel(c echo.Context) string {
	if p := c.Path(); p != "" {
		return p
	}
	return "unknown"
}
