package oauth

import (
	"context"
	"errors"
	"strconv"
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
		s.beginStep(c, newTrace(), signin.StepRequest, store.PartClient, store.PartBridge, c.Request().Method+" "+c.Request().URL.Path)
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
