package oauth

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/http/pprof"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ssobridge/ssobridge/oauth/store"
	"github.com/ssobridge/ssobridge/oauth/upstream"
)

// Metrics are the bridge's Prometheus metrics, on a registry of their own so that two bridges in
// one process (tests) do not collide.
type Metrics struct {
	reg             *prometheus.Registry
	requests        *prometheus.HistogramVec
	upstream        *prometheus.HistogramVec
	loginsStarted   *prometheus.CounterVec
	loginsCompleted *prometheus.CounterVec
	loginsFailed    *prometheus.CounterVec
	storeErrors     *prometheus.CounterVec
	shed            *prometheus.CounterVec
	rateLimited     *prometheus.CounterVec
	pendingRefused  *prometheus.CounterVec
	pendingEvicted  prometheus.Counter
	traceDropped    prometheus.Counter
	traceFailed     prometheus.Counter
	storeLost       prometheus.Gauge
}

// NewMetrics returns the bridge's metrics, with the Go runtime's and the process's.
func NewMetrics() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.requests = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "ssobridge_http_request_duration_seconds",
		Help: "Time to answer a request, by endpoint and status code.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)},
		[]string{"endpoint", "code"})
	m.upstream = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "ssobridge_upstream_request_duration_seconds",
		Help: "Time GitLab took to answer the bridge, by call and outcome (the status code, or the kind of failure).", Buckets: prometheus.ExponentialBuckets(0.001, 2, 15)},
		[]string{"call", "outcome"})
	m.loginsStarted = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ssobridge_logins_started_total",
		Help: "Sign-ins sent on to GitLab, by client."}, []string{"client_id"})
	m.loginsCompleted = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ssobridge_logins_completed_total",
		Help: "Sign-ins whose code the client redeemed, by client."}, []string{"client_id"})
	m.loginsFailed = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ssobridge_logins_failed_total",
		Help: "Sign-ins that failed, by endpoint and reason."}, []string{"endpoint", "reason"})
	m.storeErrors = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ssobridge_store_errors_total",
		Help: "Requests that failed because of the store (Redis), by failure: store_full (Redis at maxmemory refuses writes), store_unavailable (it did not answer), store_not_replicated, store_lost_write."},
		[]string{"failure"})
	for _, f := range storeFailures {
		m.storeErrors.WithLabelValues(f.Name()) // every series exists from the start, so that an alert on its rate sees the first one
	}
	m.shed = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ssobridge_requests_shed_total",
		Help: "Requests answered 503 at once because SSOBRIDGE_MAX_IN_FLIGHT requests were already in flight, by endpoint."}, []string{"endpoint"})
	m.rateLimited = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ssobridge_rate_limited_total",
		Help: "Requests answered 429 because their client address used up a rate limit, by endpoint and limit (sign_in: SSOBRIDGE_RATE_LIMIT_SIGN_IN; client_auth_failures: SSOBRIDGE_RATE_LIMIT_CLIENT_AUTH_FAILURES)."}, []string{"endpoint", "limit"})
	m.pendingRefused = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ssobridge_pending_refused_total",
		Help: "Sign-ins refused because as many were in progress as allowed, by cap (source: SSOBRIDGE_MAX_PENDING_PER_ADDRESS; total: SSOBRIDGE_MAX_PENDING)."}, []string{"cap"})
	m.pendingEvicted = prometheus.NewCounter(prometheus.CounterOpts{Name: "ssobridge_pending_evicted_total",
		Help: "Sign-ins in progress dropped because their browser started more than SSOBRIDGE_MAX_PENDING_PER_BROWSER newer ones."})
	m.traceDropped = prometheus.NewCounter(prometheus.CounterOpts{Name: "ssobridge_trace_steps_dropped_total",
		Help: "Trace steps dropped because too many were waiting for the store."})
	m.traceFailed = prometheus.NewCounter(prometheus.CounterOpts{Name: "ssobridge_trace_steps_failed_total",
		Help: "Trace steps lost because the store refused or did not answer their batch."})
	m.storeLost = prometheus.NewGauge(prometheus.GaugeOpts{Name: "ssobridge_store_data_lost",
		Help: "1 while the store no longer holds the marker the bridge saw at start: Redis lost its data (flushed, restarted without persistence, replaced); restore it with ssobridge import."})
	m.reg.MustRegister(m.storeLost, m.requests, m.upstream, m.loginsStarted, m.loginsCompleted, m.loginsFailed, m.storeErrors, m.shed, m.rateLimited, m.pendingRefused, m.pendingEvicted, m.traceDropped, m.traceFailed,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// countExchanges exports a store's exchanges with its server. A second store on the same metrics
// (two servers in one process) is not counted.
func (m *Metrics) countExchanges(ec store.ExchangeCounter) {
	_ = m.reg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ssobridge_redis_round_trips_total",
		Help: "Round trips to Redis: a command alone, or a pipeline or script, is one."},
		func() float64 { return float64(ec.Exchanges().RoundTrips) }))
	_ = m.reg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ssobridge_redis_commands_total",
		Help: "Commands sent to Redis, counting each command of a pipeline."},
		func() float64 { return float64(ec.Exchanges().Commands) }))
}

// Handler serves the metrics in Prometheus's format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Transport measures the bridge's calls to GitLab; wrap the upstream client's transport with it.
func (m *Metrics) Transport(next http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		start := time.Now()
		resp, err := next.RoundTrip(req)
		outcome := "error"
		if err == nil {
			outcome = http.StatusText(resp.StatusCode)
			outcome = strings.ToLower(strings.ReplaceAll(outcome, " ", "_"))
		} else if strings.Contains(err.Error(), "timeout") || strings.Contains(err.Error(), "deadline") {
			outcome = "timeout"
		}
		m.upstream.WithLabelValues(upstreamCall(req.URL.Path), outcome).Observe(time.Since(start).Seconds())
		return resp, err
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// upstreamCall names a GitLab call by its path, ignoring a path prefix before it.
func upstreamCall(path string) string {
	for _, p := range []string{"/oauth/token", "/api/v4/user", "/oauth/userinfo", "/.well-known/openid-configuration"} {
		if strings.HasSuffix(path, p) {
			return p
		}
	}
	return "other"
}

// requestIDPattern bounds what the bridge accepts as a caller's X-Request-Id, so that a log
// line cannot be forged or bloated through it.
var requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,64}$`)

type loggerKey struct{}

// requestLog is a request's logger; it gains the trace id once the request's sign-in is known.
// It is made on first use: most requests log nothing but their access line, and none at all
// when the level is above info.
type requestLog struct {
	mu    sync.Mutex
	base  *slog.Logger
	attrs []any
	l     *slog.Logger
}

// with sets key to value on the request's log lines from now on, replacing an earlier value of
// the same key (a request that moves to another sign-in's trace logs only that trace's id).
func (r *requestLog) with(key string, value any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.l = nil
	for i := 0; i+1 < len(r.attrs); i += 2 {
		if r.attrs[i] == key {
			r.attrs[i+1] = value
			return
		}
	}
	r.attrs = append(r.attrs, key, value)
}

func (r *requestLog) get() *slog.Logger {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.l == nil {
		r.l = r.base.With(r.attrs...)
	}
	return r.l
}

// requestIDs makes request ids: a random start, counted up, as 16 hex digits. An id must be
// unique, not secret, and making one must not cost a system call.
type requestIDs struct{ n atomic.Uint64 }

func newRequestIDs() *requestIDs {
	ids := &requestIDs{}
	var b [8]byte
	_, _ = rand.Read(b[:])
	ids.n.Store(binary.BigEndian.Uint64(b[:]))
	return ids
}

func (ids *requestIDs) next() string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], ids.n.Add(1))
	return hex.EncodeToString(b[:])
}

// logger returns the request's logger (with its request id, and trace id once known), or the
// server's.
func (s *Server) logger(ctx context.Context) *slog.Logger {
	if l, ok := ctx.Value(loggerKey{}).(*requestLog); ok {
		return l.get()
	}
	return s.log
}

// observe gives every request an id (the caller's X-Request-Id when sane), a logger that puts
// it on every line, and one access log line, and measures it. It logs the path and never the
// query, which carries codes, states and sometimes an access token.
func (s *Server) observe(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		req := c.Request()
		id := req.Header.Get(echo.HeaderXRequestID)
		if id == "" || !requestIDPattern.MatchString(id) {
			id = s.requestIDs.next()
		}
		c.Response().Header().Set(echo.HeaderXRequestID, id)
		// Every answer names a trace, whatever answers it (a handler, a middleware that refuses,
		// the router's 404 and 405, a recovered panic): the request's own, which a request that
		// starts a trace takes and a request of a sign-in replaces with the sign-in's. A request
		// that belongs to no trace (a probe, a client authentication refused before its sign-in is
		// known) finds its id on its log lines.
		traceID := newTrace()
		c.Set(requestTraceKey, traceID)
		c.Set(loggedTraceKey, traceID)
		c.Response().Header().Set(HeaderTraceID, traceID)
		l := &requestLog{base: s.log, attrs: []any{"request_id", id, "trace_id", traceID}}
		ctx := context.WithValue(context.WithValue(req.Context(), loggerKey{}, l), requestIDKey{}, id)
		c.SetRequest(req.WithContext(ctx))
		if err := next(c); err != nil {
			c.Error(err)
		}
		s.sendTrace(c)
		status := c.Response().Status
		endpoint := c.Path()
		if endpoint == "" {
			endpoint = "unknown"
		}
		s.metrics.requests.WithLabelValues(endpoint, statusCode(status)).Observe(time.Since(start).Seconds())
		if s.log.Enabled(req.Context(), slog.LevelInfo) {
			l.get().Info("request", "method", req.Method, "path", req.URL.Path, "status", status,
				"duration_ms", float64(time.Since(start).Microseconds())/1000, "remote", c.RealIP())
		}
		return nil
	}
}

func statusCode(code int) string {
	const digits = "0123456789"
	if code < 100 || code > 999 {
		return "other"
	}
	return string([]byte{digits[code/100], digits[code/10%10], digits[code%10]})
}

// healthz says the process is up.
func (s *Server) healthz(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

// readiness holds each readiness check's last result, so that probes cannot load Redis or a
// provider: a result is reused for readinessCache at most, and a store failure met by a sign-in
// forgets the store's at once (see forgetStoreCheck). Each check runs alone, in the background:
// a probe waits only for the checks it counts (not those in ?exclude=), so that a provider that
// takes its full timeout to fail does not make a probe with ?exclude=upstream time out.
type readiness struct {
	mu     sync.Mutex
	checks map[string]*readinessCheck
}

// readinessCheck is one check's last result, and the run in progress, if any.
type readinessCheck struct {
	result  string // "ok", or why it failed
	latency time.Duration
	at      time.Time // zero: never finished, or forgotten
	running chan struct{}
}

// readinessCache is how stale a readiness answer may be: the README promises it.
const readinessCache = time.Second

// readinessNames are the names readyz accepts in ?exclude=: its checks (the store, and each
// provider by name), and "upstream" for every provider at once.
func (s *Server) readinessNames() []string {
	names := []string{"store", "upstream"}
	for _, p := range s.upstreams {
		names = append(names, p.Describe().Name)
	}
	return names
}

// excludedCheck reports whether the check called name is in excluded (?exclude=).
func (s *Server) excludedCheck(excluded []string, name string) bool {
	if slices.Contains(excluded, name) {
		return true
	}
	_, isProvider := s.upstreamNamed(name)
	return isProvider && name != "" && slices.Contains(excluded, "upstream")
}

// readyz says whether the bridge can serve: its store answers (and still holds its data) and
// every provider answers as it should. On the public listener it names each check and whether it
// passed; on the operators' listener it says why one failed, and how long each took
// (latency_ms). A check named in ?exclude= (repeatable, as Kubernetes' own /readyz takes it) is
// still run and shown, but does not make the answer 503, and the answer does not wait for it (its
// last result is shown): a Kubernetes readiness probe with ?exclude=upstream keeps the replicas
// in their Service while a provider is down, so that people get the bridge's page saying it does
// not answer, with its trace id, instead of a proxy's "no endpoints".
func (s *Server) readyz(c echo.Context) error {
	noStore(c.Response().Header())
	excluded := c.QueryParams()["exclude"]
	for _, name := range excluded {
		if names := s.readinessNames(); !slices.Contains(names, name) {
			return c.JSON(http.StatusBadRequest, map[string]any{"status": "bad request",
				"error": fmt.Sprintf("exclude=%q names no check; the checks are %s", name, strings.Join(names, ", "))})
		}
	}
	checks, latency := s.readinessChecks(c.Request().Context(), func(name string) bool { return !s.excludedCheck(excluded, name) })
	status, word := http.StatusOK, "ready"
	for name, result := range checks {
		if result != "ok" && !s.excludedCheck(excluded, name) {
			status, word = http.StatusServiceUnavailable, "unready"
		}
	}
	body := map[string]any{"status": word, "checks": checks}
	if fromOperators(c.Request().Context()) {
		body["latency_ms"] = latency
	} else {
		body["checks"] = withoutDetails(checks)
	}
	if len(excluded) > 0 {
		body["excluded"] = excluded
	}
	return c.JSON(status, body)
}

// operatorsKey marks, in its context, a request that came through the operators' listener.
type operatorsKey struct{}

func fromOperators(ctx context.Context) bool { return ctx.Value(operatorsKey{}) != nil }

// withoutDetails is what anyone may learn of the checks: each one's name and whether it passed.
// Why one failed (an error naming Redis's address, a provider's DNS or TLS trouble) tells an
// attacker about the bridge's insides, and is for operators: their listener's /readyz says it.
func withoutDetails(checks map[string]string) map[string]string {
	public := make(map[string]string, len(checks))
	for name, result := range checks {
		public[name] = "ok"
		if result != "ok" {
			public[name] = "failing"
		}
	}
	return public
}

// readinessChecks returns each check's result and latency in milliseconds: its result of less
// than readinessCache ago, or a new one. It waits for the checks counted says it counts; for the
// others it gives their last result, or says none has finished yet.
func (s *Server) readinessChecks(ctx context.Context, counted func(string) bool) (map[string]string, map[string]float64) {
	runs := s.readinessRuns()
	names := slices.Sorted(maps.Keys(runs))
	var waits []chan struct{}
	s.ready.mu.Lock()
	if s.ready.checks == nil {
		s.ready.checks = map[string]*readinessCheck{}
	}
	for _, name := range names {
		ch := s.ready.checks[name]
		if ch == nil {
			ch = &readinessCheck{}
			s.ready.checks[name] = ch
		}
		if !ch.at.IsZero() && time.Since(ch.at) <= readinessCache {
			continue
		}
		if ch.running == nil {
			ch.running = make(chan struct{})
			go s.runReadinessCheck(name, ch, runs[name])
		}
		if counted(name) {
			waits = append(waits, ch.running)
		}
	}
	s.ready.mu.Unlock()
	for _, w := range waits {
		select {
		case <-w:
		case <-ctx.Done():
		}
	}
	checks, latency := map[string]string{}, map[string]float64{}
	s.ready.mu.Lock()
	defer s.ready.mu.Unlock()
	for _, name := range names {
		ch := s.ready.checks[name]
		switch {
		case ch.result != "":
			checks[name], latency[name] = ch.result, float64(ch.latency.Microseconds())/1000
		case ctx.Err() != nil:
			checks[name] = "no answer before the probe gave up waiting"
		default:
			checks[name] = "still checking: no result yet"
		}
	}
	return checks, latency
}

// runReadinessCheck runs one check, bounded by the request timeout, which bounds the same calls
// on the sign-in path: a store or a provider that answers in time for a sign-in is ready.
func (s *Server) runReadinessCheck(name string, ch *readinessCheck, run func(context.Context) string) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
	defer cancel()
	start := time.Now()
	result := run(ctx)
	s.ready.mu.Lock()
	defer s.ready.mu.Unlock()
	ch.result, ch.latency, ch.at = result, time.Since(start), time.Now()
	close(ch.running)
	ch.running = nil
}

// readinessRuns are the checks by name: the store, and each provider that can be asked.
func (s *Server) readinessRuns() map[string]func(context.Context) string {
	runs := map[string]func(context.Context) string{"store": s.checkStore}
	for _, p := range s.upstreams {
		if pg, ok := p.(upstream.Pinger); ok {
			runs[p.Describe().Name] = func(ctx context.Context) string {
				if err := pg.Ping(ctx); err != nil {
					return err.Error()
				}
				return "ok"
			}
		}
	}
	return runs
}

// checkStore is the store's readiness: it answers, confirms writes on its replicas, and still
// holds the marker the bridge saw at start.
func (s *Server) checkStore(ctx context.Context) string {
	err := s.store.Ping(ctx)
	switch {
	case errors.Is(err, store.ErrFull):
		return "the store is full (store_full): it refuses writes, so every sign-in fails; Redis reached its maxmemory: raise maxmemory or free memory (deploy/REDIS.md sizes it): " + err.Error()
	case errors.Is(err, store.ErrNotReplicated):
		return "the store (Redis) cannot confirm writes on as many replicas as SSOBRIDGE_REDIS_WAIT_REPLICAS asks, so every sign-in would fail: " + err.Error()
	case err != nil:
		return "the store (Redis) does not answer: " + err.Error()
	}
	lost, err := s.storeLost(ctx)
	switch {
	case err != nil:
		return "the store (Redis) does not answer: " + err.Error()
	case lost:
		return StoreLostData
	}
	return "ok"
}

// forgetStoreCheck drops the store's readiness result, after a request met a store failure: the
// next probe checks again rather than repeat a result the request just proved wrong.
func (s *Server) forgetStoreCheck() {
	s.ready.mu.Lock()
	defer s.ready.mu.Unlock()
	if ch := s.ready.checks["store"]; ch != nil {
		ch.at = time.Time{}
	}
}

// AdminHandler serves what is for operators only: metrics, sign-in traces and Go's profiles
// (/debug/pprof/, which `go tool pprof` reads), with the health probes.
// With a token, everything but the probes needs "Authorization: Bearer TOKEN", or in a browser
// the session cookie its sign-in form (AdminSignInPath) gives for the token. Serve it on a
// separate, private listener.
func (s *Server) AdminHandler(token string) http.Handler {
	mux := http.NewServeMux()
	protect := func(h http.Handler) http.Handler { return h }
	if token != "" {
		auth := newAdminAuth(token, s.log)
		protect = auth.protect
		mux.HandleFunc("GET "+AdminSignInPath, auth.showSignIn)
		mux.HandleFunc("POST "+AdminSignInPath, auth.signIn)
		mux.HandleFunc("POST "+AdminSignOutPath, auth.signOut)
	}
	mux.Handle("GET /metrics", protect(s.metrics.Handler()))
	mux.Handle("GET /debug/traces", protect(http.HandlerFunc(s.traceList)))
	mux.Handle("GET /debug/traces/{id}", protect(http.HandlerFunc(s.traceShow)))
	// Profiles cost nothing until asked for; a CPU profile runs for its ?seconds= only. The
	// command line is not served (it answers 404): its flags may carry secrets, and a listener
	// on loopback needs no token.
	mux.Handle("GET /debug/pprof/cmdline", http.NotFoundHandler())
	mux.Handle("GET /debug/pprof/", protect(http.HandlerFunc(pprof.Index)))
	mux.Handle("GET /debug/pprof/profile", protect(http.HandlerFunc(pprof.Profile)))
	mux.Handle("GET /debug/pprof/symbol", protect(http.HandlerFunc(pprof.Symbol)))
	mux.Handle("GET /debug/pprof/trace", protect(http.HandlerFunc(pprof.Trace)))
	mux.Handle("GET /healthz", s.echo)
	mux.Handle("GET /readyz", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.echo.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), operatorsKey{}, true)))
	}))
	return s.traceAnswers(mux)
}

// traceAnswers gives every answer of h an X-Trace-Id, as the bridge's own handler gives its own
// (which replaces it for what h hands on to it: the probes), and logs h's refusals under it, so
// that the id an operator is shown leads to a log line.
func (s *Server) traceAnswers(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := newTrace()
		w.Header().Set(HeaderTraceID, id)
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(rec, r)
		if rec.status >= http.StatusBadRequest && rec.Header().Get(HeaderTraceID) == id {
			s.log.Info("request refused", "trace_id", id, "method", r.Method, "path", r.URL.Path, "status", rec.status)
		}
	})
}

// statusRecorder keeps the status an http.Handler answered.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(status int) {
	r.status = status
	r.ResponseWriter.WriteHeader(status)
}

// Unwrap lets http.ResponseController reach the writer's flushing and deadlines.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
