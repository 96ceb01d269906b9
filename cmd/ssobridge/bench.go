package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/signal"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ssobridge/ssobridge/mattermost"
	"github.com/ssobridge/ssobridge/oauth"
	"github.com/ssobridge/ssobridge/oauth/store"
	"github.com/ssobridge/ssobridge/oauth/store/memstore"
	"github.com/ssobridge/ssobridge/oauth/store/redisstore"
	"github.com/ssobridge/ssobridge/oauth/upstream"
)

// The steps of a sign-in, told apart by the host and path of each request the client makes.
const (
	stepAuthorize = iota
	stepGitLab
	stepCallback
	stepToken
	stepUser
	stepOther
	numSteps
)

var stepNames = [numSteps]string{"authorize", "gitlab", "callback", "token", "user", "other"}

// benchKeyPrefix keeps an in-process bench's keys apart from a deployment's that shares the Redis.
const benchKeyPrefix = "ssobridge-bench:"

type latencyStats struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

type benchMachine struct {
	CPUs   int    `json:"cpus"`
	GOOS   string `json:"goos"`
	GOARCH string `json:"goarch"`
	Go     string `json:"go"`
}

type benchMemory struct {
	PeakHeapInUseBytes uint64 `json:"peak_heap_in_use_bytes,omitempty"`
	// PeakRSSBytes is VmHWM for an in-process bridge: the process's peak since it started, load
	// generator included; for a bridge elsewhere, the highest process_resident_memory_bytes its
	// /metrics gave while measured.
	PeakRSSBytes uint64 `json:"peak_rss_bytes,omitempty"`
	// EndRSSBytes is a bridge elsewhere's resident memory when the measure ended.
	EndRSSBytes uint64 `json:"end_rss_bytes,omitempty"`
}

type benchResult struct {
	Command     string       `json:"command"`
	Machine     benchMachine `json:"machine"`
	Target      string       `json:"target"`
	Store       string       `json:"store"`
	Mode        string       `json:"mode"`
	Concurrency int          `json:"concurrency"`
	// Warmup is the number of whole sign-ins made before the measured window.
	Warmup int `json:"warmup"`
	// Prepared is the number of codes (token mode) or tokens (user mode) obtained before it.
	Prepared       int                     `json:"prepared,omitempty"`
	ElapsedSeconds float64                 `json:"elapsed_seconds"`
	Completed      int64                   `json:"completed"`
	Errors         int64                   `json:"errors"`
	ErrorsByKind   map[string]int64        `json:"errors_by_kind"`
	PerSecond      float64                 `json:"per_second"`
	Latency        latencyStats            `json:"latency"`
	Steps          map[string]latencyStats `json:"steps"`
	// RedisCommandsPerOp is nil when not measured; RedisNote says why.
	RedisCommandsPerOp *float64 `json:"redis_commands_per_op"`
	RedisNote          string   `json:"redis_note,omitempty"`
	// RedisRoundTripsPerOp is the bridge's own count (its store's, or its /metrics'), trace
	// writes included; nil when not measured.
	RedisRoundTripsPerOp *float64 `json:"redis_round_trips_per_op"`
	RoundTripsNote       string   `json:"round_trips_note,omitempty"`
	// BridgeCPUPerOpMs is the CPU time a bridge elsewhere spent per operation (its /metrics'
	// process_cpu_seconds_total); nil when not measured.
	BridgeCPUPerOpMs *float64 `json:"bridge_cpu_ms_per_op,omitempty"`
	// RedisCPUPerOpMs is the CPU time the Redis server spent per operation (INFO cpu), whoever
	// else it served; nil when not measured.
	RedisCPUPerOpMs *float64     `json:"redis_cpu_ms_per_op,omitempty"`
	Memory          *benchMemory `json:"memory"`
	MemoryNote      string       `json:"memory_note,omitempty"`
	Notes           []string     `json:"notes,omitempty"`
}

type benchConfig struct {
	concurrency int
	duration    time.Duration
	count       int
	mode        string
	warmupDur   time.Duration
	warmupCount int
	timeout     time.Duration
	redisURL    string
	bridgeURL   string
	appID       string
	appSecret   string
	siteURL     string
	adminURL    string
	adminToken  string
	profile     io.Writer // the measured window's CPU profile; nil: none
	// accessTTL and refreshTokens are the in-process bridge's access token lifetime and its
	// Mattermost application's refresh tokens, which say how long each sign-in is kept.
	accessTTL     time.Duration
	authzTTL      time.Duration
	refreshTokens bool
}

func runBench(args []string, stdout, stderr io.Writer) error {
	st := newSettings("bench", "Drives concurrent whole Mattermost sign-ins (authorize, GitLab, callback, token, /api/v4/user) and prints throughput, latency per step, errors, Redis commands per sign-in and peak memory. Without --bridge-url it starts the bridge and a GitLab emulator in this process, as `ssobridge dev` does.", stderr)
	fs := st.fs
	var cfg benchConfig
	fs.IntVar(&cfg.concurrency, "concurrency", 64, "sign-ins in flight at once")
	fs.DurationVar(&cfg.duration, "duration", 10*time.Second, "how long to measure (ignored with --count)")
	fs.IntVar(&cfg.count, "count", 0, "measure this many operations instead of a duration")
	fs.StringVar(&cfg.mode, "mode", "login", "login (whole sign-ins), token (only code redemptions, codes made first) or user (only GET /api/v4/user, tokens obtained first)")
	warmup := fs.String("warmup", "", "whole sign-ins before measuring: a duration (1s) or a count (100); 0 for none (default 1s, or 100 with --count)")
	fs.DurationVar(&cfg.timeout, "timeout", 0, "stop everything after this long whatever happens (default: a few times the expected run, at least 2m; with --count, time for 100 operations a second)")
	asJSON := fs.Bool("json", false, "print the result as one JSON object")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the measured window to this file (go tool pprof reads it); it covers this whole process: an in-process bridge, the emulator and the load generator")
	fs.StringVar(&cfg.redisURL, "redis-url", "", "Redis: the in-process bridge's store; with --bridge-url only read for INFO commandstats")
	fs.StringVar(&cfg.bridgeURL, "bridge-url", "", "a running bridge to load instead of an in-process one (its upstream must sign in without a form, as `ssobridge dev`'s does)")
	fs.StringVar(&cfg.appID, "app-id", "", "with --bridge-url: the Mattermost application's ID")
	fs.StringVar(&cfg.appSecret, "app-secret", "", "with --bridge-url: its secret")
	fs.StringVar(&cfg.siteURL, "site-url", "", "with --bridge-url: Mattermost's SiteURL, whose redirect URIs the application has")
	fs.StringVar(&cfg.adminURL, "admin-url", "", "with --bridge-url: the bridge's operators' listener, e.g. http://127.0.0.1:9090, whose /metrics gives its Redis round trips and its memory")
	fs.StringVar(&cfg.adminToken, "admin-token", "", "with --admin-url: the operators' listener's token, if it has one")
	fs.DurationVar(&cfg.accessTTL, "access-token-ttl", oauth.DefaultAccessTokenTTL, "the in-process bridge's access token lifetime: how long a sign-in without refresh tokens is kept")
	fs.DurationVar(&cfg.authzTTL, "authorization-ttl", oauth.DefaultAuthorizationTTL, "the in-process bridge's lifetime of a sign-in in progress, kept until then once completed (serve's is 10m): shorten it with --access-token-ttl to see a long run's memory level off sooner")
	fs.BoolVar(&cfg.refreshTokens, "refresh-tokens", false, "register the in-process bridge's Mattermost with refresh tokens (its sign-ins are then kept SSOBRIDGE_REFRESH_TOKEN_TTL); without, as `apps create --mattermost-url` registers it")
	if err := st.parse(args); err != nil {
		return err
	}
	switch {
	case cfg.mode != "login" && cfg.mode != "token" && cfg.mode != "user":
		return fmt.Errorf("--mode %q: want login, token or user", cfg.mode)
	case cfg.concurrency < 1:
		return errors.New("--concurrency must be at least 1")
	case cfg.count < 0:
		return errors.New("--count must not be negative")
	case cfg.count == 0 && cfg.duration <= 0:
		return errors.New("--duration must be positive")
	case cfg.bridgeURL != "" && (cfg.appID == "" || cfg.appSecret == "" || cfg.siteURL == ""):
		return errors.New("--bridge-url needs --app-id, --app-secret and --site-url")
	case cfg.bridgeURL == "" && (cfg.appID != "" || cfg.appSecret != "" || cfg.siteURL != "" || cfg.adminURL != ""):
		return errors.New("--app-id, --app-secret, --site-url and --admin-url go with --bridge-url")
	}
	if err := parseWarmup(*warmup, &cfg); err != nil {
		return err
	}
	if cfg.timeout <= 0 {
		expected := cfg.warmupDur + 3*cfg.duration
		if cfg.count > 0 {
			// Enough for a slow machine or deployment: 100 operations a second.
			expected = cfg.warmupDur + time.Duration(cfg.count+cfg.warmupCount)*10*time.Millisecond
		}
		cfg.timeout = max(2*time.Minute, 3*expected)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("--cpuprofile: %v", err)
		}
		defer f.Close()
		cfg.profile = f
	}
	res, err := bench(ctx, cfg, stderr)
	if res != nil {
		res.Command = "ssobridge bench " + strings.Join(redactSecrets(args), " ")
		if *asJSON {
			if jerr := json.NewEncoder(stdout).Encode(res); jerr != nil {
				return jerr
			}
		} else {
			printBench(stdout, res)
		}
	}
	if err == nil && res != nil && res.Errors > 0 {
		// For scripts: a run with failures is not a measurement to compare.
		return fmt.Errorf("%d operations failed (errors by kind above)", res.Errors)
	}
	return err
}

// redactSecrets hides the values of the flags that carry a secret, for the printed command line.
func redactSecrets(args []string) []string {
	out := slices.Clone(args)
	for i, a := range out {
		for _, flagName := range []string{"app-secret", "admin-token"} {
			for _, prefix := range []string{"-" + flagName, "--" + flagName} {
				switch {
				case a == prefix && i+1 < len(out):
					out[i+1] = "REDACTED"
				case strings.HasPrefix(a, prefix+"="):
					out[i] = prefix + "=REDACTED"
				}
			}
		}
	}
	return out
}

func parseWarmup(v string, cfg *benchConfig) error {
	switch {
	case v == "" && cfg.count > 0:
		cfg.warmupCount = 100
	case v == "":
		cfg.warmupDur = time.Second
	case v == "0":
	default:
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			cfg.warmupCount = n
			return nil
		}
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return fmt.Errorf("--warmup %q: want a duration such as 1s or a count such as 100", v)
		}
		cfg.warmupDur = d
	}
	return nil
}

// benchTarget is the bridge being loaded and what the load generator needs to reach it.
type benchTarget struct {
	client    mattermost.Client
	site      *url.URL
	bridge    *url.URL
	store     string
	inProcess bool
	rdb       redis.UniversalClient // for INFO commandstats; nil without Redis
	// exchanges counts an in-process bridge's round trips to Redis; flush writes its pending
	// trace steps, so that they are counted.
	exchanges store.ExchangeCounter
	flush     func(context.Context)
	close     func()
}

// startBenchTarget starts the bridge as dev does, but on free ports and logging only errors,
// since a log line per request would measure the logger.
func startBenchTarget(ctx context.Context, cfg benchConfig, stderr io.Writer) (*benchTarget, error) {
	t := &benchTarget{close: func() {}}
	var closers []func()
	t.close = func() {
		for _, c := range slices.Backward(closers) {
			c()
		}
	}
	if cfg.redisURL != "" {
		opts, err := redisstore.ParseURL(cfg.redisURL)
		if err != nil {
			return nil, fmt.Errorf("--redis-url: %v", err)
		}
		t.rdb = redis.NewUniversalClient(opts)
		closers = append(closers, func() { t.rdb.Close() })
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = t.rdb.Ping(pctx).Err()
		cancel()
		if err != nil {
			t.close()
			return nil, fmt.Errorf("--redis-url: Redis at %s does not answer: %v", strings.Join(opts.Addrs, ","), err)
		}
	}
	if cfg.bridgeURL != "" {
		t.store = "remote"
		bridge, err := url.Parse(strings.TrimRight(cfg.bridgeURL, "/"))
		if err != nil || bridge.Host == "" {
			t.close()
			return nil, fmt.Errorf("--bridge-url %q is not an absolute URL", cfg.bridgeURL)
		}
		t.bridge = bridge
		t.client = mattermost.Client{Settings: mattermost.SettingsForBridge(bridge.String(), cfg.appID, cfg.appSecret), SiteURL: cfg.siteURL}
		t.site, err = url.Parse(strings.TrimRight(cfg.siteURL, "/"))
		if err != nil || t.site.Host == "" {
			t.close()
			return nil, fmt.Errorf("--site-url %q is not an absolute URL", cfg.siteURL)
		}
		return t, nil
	}

	fail := func(err error) (*benchTarget, error) { t.close(); return nil, err }
	t.inProcess = true
	log := newLogger(stderr, "text", slog.LevelError)
	bridgeLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	closers = append(closers, func() { bridgeLn.Close() })
	bridgeURL := "http://" + bridgeLn.Addr().String()
	t.bridge, _ = url.Parse(bridgeURL)
	// Nothing listens there: the client stops at the redirect back to Mattermost, as Mattermost's
	// own completeOAuth would take over.
	siteURL := "http://127.0.0.1:1"
	t.site, _ = url.Parse(siteURL)

	gl, _, _, upstreamApp, err := startDevGitLab("127.0.0.1:0", bridgeURL)
	if err != nil {
		return fail(fmt.Errorf("cannot start the GitLab emulator: %v", err))
	}
	closers = append(closers, func() { gl.Close() })
	var s store.Store = memstore.New()
	t.store = "memory"
	if cfg.redisURL != "" {
		// Its own client rather than t.rdb, so that INFO is not queued behind the bridge's commands.
		opts, _ := redisstore.ParseURL(cfg.redisURL)
		rs := redisstore.New(redis.NewUniversalClient(opts), benchKeyPrefix).CacheApps(time.Second)
		s, t.exchanges, t.store = rs, rs, "redis"
	}
	closers = append(closers, func() { s.Close() })
	up, err := devUpstream(gl, upstreamApp, bridgeURL, "gitlab")
	if err != nil {
		return fail(err)
	}
	sealer, err := (&keySettings{current: &setting{name: "encryption-key"}, previous: &setting{name: "encryption-keys-previous"}}).sealer(true, log)
	if err != nil {
		return fail(err)
	}
	srv, err := oauth.New(oauth.Config{PublicURL: bridgeURL, Store: s, Upstreams: []upstream.CallbackProvider{up}, Sealer: sealer, Logger: log,
		Limits: benchLimits, AccessTokenTTL: cfg.accessTTL, AuthorizationTTL: cfg.authzTTL})
	if err != nil {
		return fail(err)
	}
	t.flush = srv.FlushTraces
	app, secret, err := oauth.NewApplication(oauth.AppSpec{Name: "Mattermost", RedirectURIs: mattermost.RedirectURIs(siteURL),
		Scopes: []string{"read_user"}, Trusted: true, Confidential: true, NoRefreshTokens: !cfg.refreshTokens})
	if err != nil {
		return fail(err)
	}
	if err := s.CreateApp(ctx, app); err != nil {
		return fail(fmt.Errorf("registering the Mattermost application: %w", err))
	}
	hs := newHTTPServer(srv.Handler())
	hs.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	served := make(chan struct{})
	go func() { _ = hs.Serve(bridgeLn); close(served) }()
	closers = append(closers, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
		<-served
	})
	t.client = mattermost.Client{Settings: mattermost.SettingsForBridge(bridgeURL, app.ID, secret), SiteURL: siteURL}
	return t, nil
}

// loginTrace collects the time of each step of one operation. An operation's requests are made
// one after another, so it needs no lock.
type loginTrace struct {
	d [numSteps]time.Duration
	n [numSteps]int
}

type traceKey struct{}

// stepTransport times every request, up to the end of its body, and charges it to the step its
// host and path name.
type stepTransport struct {
	base   http.RoundTripper
	bridge string
	paths  map[string]int
}

func newStepTransport(t *benchTarget, concurrency int) *stepTransport {
	path := func(raw string) string {
		u, err := url.Parse(raw)
		if err != nil {
			return raw
		}
		return u.Path
	}
	s := t.client.Settings
	return &stepTransport{
		// Mattermost's transport keeps 2 idle connections per host; at this concurrency that
		// would open and close a connection for most requests and measure TCP set-up, or run
		// out of ports, so the bench keeps one per worker.
		base: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			DialContext:         (&net.Dialer{Timeout: 3 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        4 * concurrency,
			MaxIdleConnsPerHost: 2 * concurrency,
			IdleConnTimeout:     90 * time.Second,
			TLSHandshakeTimeout: 3 * time.Second,
		},
		bridge: strings.ToLower(t.bridge.Host),
		paths: map[string]int{
			path(s.AuthEndpoint):                          stepAuthorize,
			path(oauth.CallbackURLFor(t.bridge.String())): stepCallback,
			path(s.TokenEndpoint):                         stepToken,
			path(s.UserAPIEndpoint):                       stepUser,
		},
	}
}

func (t *stepTransport) step(r *http.Request) int {
	if !strings.EqualFold(r.URL.Host, t.bridge) {
		return stepGitLab
	}
	if s, ok := t.paths[r.URL.Path]; ok {
		return s
	}
	return stepOther
}

func (t *stepTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	tr, _ := r.Context().Value(traceKey{}).(*loginTrace)
	start := time.Now()
	resp, err := t.base.RoundTrip(r)
	if tr == nil {
		return resp, err
	}
	step := t.step(r)
	if err != nil {
		tr.d[step] += time.Since(start)
		tr.n[step]++
		return resp, err
	}
	resp.Body = &timedBody{ReadCloser: resp.Body, done: func() {
		tr.d[step] += time.Since(start)
		tr.n[step]++
	}}
	return resp, nil
}

// timedBody calls done once, when the body has been read to its end or closed.
type timedBody struct {
	io.ReadCloser
	done     func()
	finished bool
}

func (b *timedBody) finish() {
	if !b.finished {
		b.finished = true
		b.done()
	}
}

func (b *timedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		b.finish()
	}
	return n, err
}

func (b *timedBody) Close() error {
	b.finish()
	return b.ReadCloser.Close()
}

// benchOp is one operation of a phase; worker is the index of the goroutine running it.
type benchOp func(ctx context.Context, worker int) error

type phaseResult struct {
	elapsed   time.Duration
	completed int64
	errors    int64
	byKind    map[string]int64
	total     []time.Duration
	steps     [numSteps][]time.Duration
}

// runPhase runs op on concurrency goroutines until count operations have been started (count >
// 0) or until the duration has passed, and collects their times. keep says whether to keep the
// samples (not for the warmup).
func runPhase(ctx context.Context, concurrency, count int, d time.Duration, keep bool, op benchOp) *phaseResult {
	var started atomic.Int64
	start := time.Now()
	deadline := start.Add(d)
	parts := make([]*phaseResult, concurrency)
	var wg sync.WaitGroup
	for w := range concurrency {
		p := &phaseResult{byKind: map[string]int64{}}
		parts[w] = p
		wg.Go(func() {
			for ctx.Err() == nil {
				if count > 0 {
					if started.Add(1) > int64(count) {
						return
					}
				} else if !time.Now().Before(deadline) {
					return
				}
				tr := &loginTrace{}
				t0 := time.Now()
				err := op(context.WithValue(ctx, traceKey{}, tr), w)
				took := time.Since(t0)
				if err != nil {
					if ctx.Err() != nil {
						return // stopped, not failed
					}
					p.errors++
					p.byKind[errorKind(err)]++
					continue
				}
				p.completed++
				if keep {
					p.total = append(p.total, took)
					for s := range numSteps {
						if tr.n[s] > 0 {
							p.steps[s] = append(p.steps[s], tr.d[s])
						}
					}
				}
			}
		})
	}
	wg.Wait()
	all := &phaseResult{elapsed: time.Since(start), byKind: map[string]int64{}}
	for _, p := range parts {
		all.completed += p.completed
		all.errors += p.errors
		for k, v := range p.byKind {
			all.byKind[k] += v
		}
		all.total = append(all.total, p.total...)
		for s := range numSteps {
			all.steps[s] = append(all.steps[s], p.steps[s]...)
		}
	}
	return all
}

// errorKind is an error's class: its step and reason, with the HTTP status, but not the URL,
// state or body that make every message different.
func errorKind(err error) string {
	var (
		be *mattermost.BrowserError
		ce *mattermost.CallbackError
		te *mattermost.TokenError
		ue *mattermost.UserError
		me *mintError
	)
	withStatus := func(s string, status int) string {
		if status != 0 {
			return fmt.Sprintf("%s (HTTP %d)", s, status)
		}
		return s
	}
	switch {
	case errors.As(err, &be):
		return withStatus("browser: "+be.Reason.Error(), be.Status)
	case errors.As(err, &ce):
		if ce.OAuthError != "" {
			return "callback: " + ce.Reason.Error() + ": " + ce.OAuthError
		}
		return "callback: " + ce.Reason.Error()
	case errors.As(err, &te):
		if te.OAuthError != "" {
			return withStatus("token: "+te.Reason.Error()+": "+te.OAuthError, te.Status)
		}
		return withStatus("token: "+te.Reason.Error(), te.Status)
	case errors.As(err, &ue):
		return withStatus("user: "+ue.Reason.Error(), ue.Status)
	case errors.As(err, &me):
		return me.kind
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	return err.Error()
}

// mintError is a failure to get a code in token mode; kind is already a class.
type mintError struct{ kind string }

func (e *mintError) Error() string { return e.kind }

// mint goes through authorize, GitLab and the callback, as Login does, and returns the code the
// bridge sends back to Mattermost; Login does not stop there, and token mode needs the code alone.
func (t *benchTarget) mint(ctx context.Context, rt http.RoundTripper) (string, error) {
	state, _ := mattermost.NewState(mattermost.ActionLogin)
	jar, _ := cookiejar.New(nil)
	site := strings.ToLower(t.site.Host)
	browser := &http.Client{Jar: jar, Transport: rt, Timeout: 30 * time.Second,
		CheckRedirect: func(r *http.Request, via []*http.Request) error {
			if strings.EqualFold(r.URL.Host, site) || len(via) > 20 {
				return http.ErrUseLastResponse
			}
			return nil
		}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.client.AuthorizeURL(state), nil)
	if err != nil {
		return "", err
	}
	resp, err := browser.Do(req)
	if err != nil {
		return "", &mattermost.BrowserError{Reason: mattermost.ErrBrowserRequest, Err: err}
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	loc, err := resp.Location()
	if err != nil || !strings.EqualFold(loc.Host, site) {
		return "", &mattermost.BrowserError{Reason: mattermost.ErrStoppedAtPage, Status: resp.StatusCode}
	}
	q := loc.Query()
	if q.Get("code") == "" {
		return "", &mintError{kind: "callback: no code: " + q.Get("error")}
	}
	if q.Get("state") != state {
		return "", &mintError{kind: "callback: " + mattermost.ErrStateMismatch.Error()}
	}
	return q.Get("code"), nil
}

// memSampler records the process's peak heap in use every 100 ms.
type memSampler struct {
	peak atomic.Uint64
	stop chan struct{}
	done chan struct{}
}

func startMemSampler() *memSampler {
	m := &memSampler{stop: make(chan struct{}), done: make(chan struct{})}
	// runtime/metrics rather than ReadMemStats: it does not stop the world.
	samples := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/unused:bytes"}}
	read := func() {
		metrics.Read(samples)
		var v uint64
		for _, s := range samples {
			if s.Value.Kind() == metrics.KindUint64 {
				v += s.Value.Uint64()
			}
		}
		if v > m.peak.Load() {
			m.peak.Store(v)
		}
	}
	go func() {
		defer close(m.done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			read()
			select {
			case <-m.stop:
				read()
				return
			case <-tick.C:
			}
		}
	}()
	return m
}

func (m *memSampler) finish() uint64 {
	close(m.stop)
	<-m.done
	return m.peak.Load()
}

// vmHWM is the process's peak resident set, 0 where /proc does not tell it.
func vmHWM() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				kb, _ := strconv.ParseUint(f[0], 10, 64)
				return kb * 1024
			}
		}
	}
	return 0
}

// redisCalls is the total of calls in INFO commandstats, leaving out INFO itself, which only the
// bench sends.
func redisCalls(ctx context.Context, rdb redis.UniversalClient) (int64, error) {
	info, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		return 0, err
	}
	var total int64
	for line := range strings.Lines(info) {
		name, stats, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") || name == "cmdstat_info" {
			continue
		}
		for f := range strings.SplitSeq(stats, ",") {
			if v, ok := strings.CutPrefix(f, "calls="); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				total += n
			}
		}
	}
	return total, nil
}

// redisCPU is the CPU time, in seconds, the Redis server has used (INFO cpu, user and system).
func redisCPU(ctx context.Context, rdb redis.UniversalClient) (float64, error) {
	info, err := rdb.Info(ctx, "cpu").Result()
	if err != nil {
		return 0, err
	}
	var total float64
	for line := range strings.Lines(info) {
		name, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (name == "used_cpu_sys" || name == "used_cpu_user") {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0, fmt.Errorf("INFO cpu: %s: %v", name, err)
			}
			total += f
		}
	}
	return total, nil
}

func bench(parent context.Context, cfg benchConfig, stderr io.Writer) (*benchResult, error) {
	ctx, cancel := context.WithTimeout(parent, cfg.timeout)
	defer cancel()
	var mem *memSampler
	if cfg.bridgeURL == "" {
		// The in-process bridge runs with the collector's target serve gives it.
		tuneGC()
		// Started first so that the peak includes the bridge's start.
		mem = startMemSampler()
	}
	t, err := startBenchTarget(ctx, cfg, stderr)
	if err != nil {
		if mem != nil {
			mem.finish()
		}
		return nil, err
	}
	defer t.close()

	res := &benchResult{
		Machine:     benchMachine{CPUs: runtime.NumCPU(), GOOS: runtime.GOOS, GOARCH: runtime.GOARCH, Go: runtime.Version()},
		Target:      "in-process bridge and GitLab emulator on loopback",
		Store:       t.store,
		Mode:        cfg.mode,
		Concurrency: cfg.concurrency,
		Steps:       map[string]latencyStats{},
	}
	if !t.inProcess {
		res.Target = t.bridge.String()
	}

	browserRT := newStepTransport(t, cfg.concurrency)
	serverRT := newStepTransport(t, cfg.concurrency)
	server := &http.Client{Transport: serverRT, Timeout: 30 * time.Second}
	login := func(ctx context.Context, _ int) (*mattermost.Result, error) {
		c := t.client
		c.HTTPClient = server
		// A new cookie jar for each sign-in, as a new person's browser.
		jar, _ := cookiejar.New(nil)
		c.Browser = &http.Client{Jar: jar, Transport: browserRT, Timeout: 30 * time.Second}
		return c.Login(ctx)
	}
	loginOp := func(ctx context.Context, w int) error { _, err := login(ctx, w); return err }

	if cfg.warmupCount > 0 || cfg.warmupDur > 0 {
		w := runPhase(ctx, cfg.concurrency, cfg.warmupCount, cfg.warmupDur, false, loginOp)
		res.Warmup = int(w.completed)
		if w.errors > 0 {
			res.Notes = append(res.Notes, fmt.Sprintf("%d of the warmup's sign-ins failed", w.errors))
		}
	}

	op := loginOp
	switch cfg.mode {
	case "token":
		// Codes are made first, outside the window: as many as --count, or as many as can be made
		// in --duration, which the redemptions then use up.
		var mu sync.Mutex
		var codes []string
		mintOp := func(ctx context.Context, _ int) error {
			code, err := t.mint(ctx, browserRT)
			if err == nil {
				mu.Lock()
				codes = append(codes, code)
				mu.Unlock()
			}
			return err
		}
		m := runPhase(ctx, cfg.concurrency, cfg.count, cfg.duration, false, mintOp)
		if m.errors > 0 {
			res.Notes = append(res.Notes, fmt.Sprintf("%d of the code-making sign-ins failed", m.errors))
		}
		res.Prepared = len(codes)
		var next atomic.Int64
		op = func(ctx context.Context, _ int) error {
			i := next.Add(1) - 1
			if i >= int64(len(codes)) {
				return errNoMoreCodes
			}
			c := t.client
			c.HTTPClient = server
			_, err := c.Exchange(ctx, codes[i])
			return err
		}
		cfg.count = len(codes)
		if cfg.count == 0 {
			return res, errors.New("no code could be made for token mode")
		}
	case "user":
		tokens := make([]string, cfg.concurrency)
		var wg sync.WaitGroup
		var failed atomic.Int64
		for w := range cfg.concurrency {
			wg.Go(func() {
				r, err := login(context.WithValue(ctx, traceKey{}, &loginTrace{}), w)
				if err != nil {
					failed.Add(1)
					fmt.Fprintf(stderr, "bench: getting a token: %v\n", err)
					return
				}
				tokens[w] = r.Token.AccessToken
			})
		}
		wg.Wait()
		if failed.Load() > 0 {
			return res, fmt.Errorf("%d of %d sign-ins for tokens failed", failed.Load(), cfg.concurrency)
		}
		res.Prepared = len(tokens)
		// Each request is Mattermost's, but its answer is only checked (status, and a JSON object
		// naming the user), not turned into a Mattermost user: the load generator shares the
		// machine, and login mode measures that parsing.
		op = func(ctx context.Context, w int) error {
			return fetchUser(ctx, server, t.client.Settings.UserAPIEndpoint, tokens[w])
		}
		res.Notes = append(res.Notes, "user mode checks each answer's status and that it is a JSON user object; login mode parses it as Mattermost does")
	}

	var before int64
	redisOK := false
	redisCPUBefore := -1.0
	if t.rdb != nil {
		if v, err := redisCPU(ctx, t.rdb); err == nil {
			redisCPUBefore = v
		}
	}
	switch {
	case t.rdb == nil && t.inProcess:
		res.RedisNote = "not measured: in-memory store"
	case t.rdb == nil:
		res.RedisNote = "not measured: no --redis-url"
	default:
		if before, err = redisCalls(ctx, t.rdb); err != nil {
			res.RedisNote = "not measured: INFO commandstats: " + err.Error()
		} else {
			redisOK = true
		}
	}

	var admin *adminScraper
	if cfg.adminURL != "" {
		admin = &adminScraper{url: strings.TrimRight(cfg.adminURL, "/") + "/metrics", token: cfg.adminToken}
	}
	rtBefore, rtNote := roundTrips(ctx, t, admin)
	var remoteMem *remoteMemSampler
	cpuBefore := -1.0
	if admin != nil {
		remoteMem = startRemoteMemSampler(ctx, admin)
		if m, err := admin.scrape(ctx); err == nil {
			if v, ok := m["process_cpu_seconds_total"]; ok {
				cpuBefore = v
			}
		}
	}

	if cfg.profile != nil {
		if err := pprof.StartCPUProfile(cfg.profile); err != nil {
			return res, fmt.Errorf("--cpuprofile: %v", err)
		}
	}
	p := runPhase(ctx, cfg.concurrency, cfg.count, cfg.duration, true, op)
	if cfg.profile != nil {
		pprof.StopCPUProfile()
	}

	if t.flush != nil {
		t.flush(ctx)
	}
	if admin != nil && cpuBefore >= 0 && p.completed > 0 {
		if m, err := admin.scrape(ctx); err == nil {
			if v, ok := m["process_cpu_seconds_total"]; ok {
				perOp := (v - cpuBefore) * 1000 / float64(p.completed)
				res.BridgeCPUPerOpMs = &perOp
			}
		}
	}
	rtAfter, rtNote2 := roundTrips(ctx, t, admin)
	switch {
	case rtNote != "" || rtNote2 != "":
		res.RoundTripsNote = cmp.Or(rtNote, rtNote2)
	case p.completed == 0:
		res.RoundTripsNote = "not measured: nothing completed"
	default:
		v := float64(rtAfter-rtBefore) / float64(p.completed)
		res.RedisRoundTripsPerOp = &v
	}

	if redisCPUBefore >= 0 && p.completed > 0 {
		if v, err := redisCPU(ctx, t.rdb); err == nil {
			perOp := (v - redisCPUBefore) * 1000 / float64(p.completed)
			res.RedisCPUPerOpMs = &perOp
		}
	}
	if redisOK {
		after, err := redisCalls(ctx, t.rdb)
		switch {
		case err != nil:
			res.RedisNote = "not measured: INFO commandstats: " + err.Error()
		case p.completed == 0:
			res.RedisNote = "not measured: nothing completed"
		default:
			v := float64(after-before) / float64(p.completed)
			res.RedisCommandsPerOp = &v
			if !t.inProcess {
				res.RedisNote = "every client's commands in the window count, not only the bridge's"
			}
		}
	}
	if mem != nil {
		res.Memory = &benchMemory{PeakHeapInUseBytes: mem.finish(), PeakRSSBytes: vmHWM()}
		res.MemoryNote = "the whole process: bridge, GitLab emulator and load generator"
	} else if remoteMem != nil {
		peak, end, err := remoteMem.finish(ctx)
		if err != nil {
			res.MemoryNote = "not measured: " + err.Error()
		} else {
			res.Memory = &benchMemory{PeakRSSBytes: peak, EndRSSBytes: end}
			res.MemoryNote = "the bridge's process alone, from its /metrics"
		}
	} else {
		res.MemoryNote = "not measured: the bridge runs elsewhere (give --admin-url)"
	}

	delete(p.byKind, errNoMoreCodes.Error())
	res.ElapsedSeconds = p.elapsed.Seconds()
	res.Completed = p.completed
	res.ErrorsByKind = p.byKind
	for _, n := range p.byKind {
		res.Errors += n
	}
	if p.elapsed > 0 {
		res.PerSecond = float64(p.completed) / p.elapsed.Seconds()
	}
	res.Latency = summarize(p.total)
	for s := range numSteps {
		if len(p.steps[s]) > 0 {
			res.Steps[stepNames[s]] = summarize(p.steps[s])
		}
	}
	if ctx.Err() != nil {
		if parent.Err() != nil {
			return res, errors.New("interrupted")
		}
		return res, fmt.Errorf("stopped by the hard timeout (--timeout %s)", cfg.timeout)
	}
	return res, nil
}

// errNoMoreCodes ends token mode's window when the codes made before it are used up; it is no
// failure.
var errNoMoreCodes = errors.New("no more codes")

func summarize(d []time.Duration) latencyStats {
	if len(d) == 0 {
		return latencyStats{}
	}
	slices.Sort(d)
	// Nearest rank: the smallest sample with at least p of them at or below it.
	at := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(d)))) - 1
		return ms(d[max(i, 0)])
	}
	return latencyStats{Count: len(d), P50: at(0.50), P90: at(0.90), P99: at(0.99), Max: ms(d[len(d)-1])}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func printBench(w io.Writer, r *benchResult) {
	what := map[string]string{"login": "sign-ins", "token": "code redemptions", "user": "user requests"}[r.Mode]
	fmt.Fprintf(w, "%s\n\n", r.Command)
	fmt.Fprintf(w, "  machine      %d CPUs, %s/%s, %s\n", r.Machine.CPUs, r.Machine.GOOS, r.Machine.GOARCH, r.Machine.Go)
	fmt.Fprintf(w, "  target       %s (store: %s)\n", r.Target, r.Store)
	fmt.Fprintf(w, "  mode         %s, concurrency %d, warmup %d sign-ins", r.Mode, r.Concurrency, r.Warmup)
	switch r.Mode {
	case "token":
		fmt.Fprintf(w, ", %d codes made first", r.Prepared)
	case "user":
		fmt.Fprintf(w, ", %d tokens obtained first", r.Prepared)
	}
	fmt.Fprintf(w, "\n  measured     %d %s in %.2fs, %d errors\n", r.Completed, what, r.ElapsedSeconds, r.Errors)
	fmt.Fprintf(w, "  throughput   %.1f %s/s\n\n", r.PerSecond, what)

	fmt.Fprintf(w, "  %-12s %8s %9s %9s %9s %9s\n", "latency (ms)", "count", "p50", "p90", "p99", "max")
	row := func(name string, s latencyStats) {
		fmt.Fprintf(w, "  %-12s %8d %9.3f %9.3f %9.3f %9.3f\n", name, s.Count, s.P50, s.P90, s.P99, s.Max)
	}
	row(map[string]string{"login": "login", "token": "redemption", "user": "user"}[r.Mode], r.Latency)
	for _, name := range stepNames {
		if s, ok := r.Steps[name]; ok {
			row("  "+name, s)
		}
	}

	fmt.Fprintln(w)
	if len(r.ErrorsByKind) == 0 {
		fmt.Fprintln(w, "  errors       none")
	} else {
		kinds := make([]string, 0, len(r.ErrorsByKind))
		for k := range r.ErrorsByKind {
			kinds = append(kinds, k)
		}
		slices.SortFunc(kinds, func(a, b string) int { return int(r.ErrorsByKind[b] - r.ErrorsByKind[a]) })
		fmt.Fprintln(w, "  errors")
		for _, k := range kinds {
			fmt.Fprintf(w, "    %8d  %s\n", r.ErrorsByKind[k], k)
		}
	}
	per := map[string]string{"login": "sign-in", "token": "redemption", "user": "user request"}[r.Mode]
	if r.RedisCommandsPerOp != nil {
		fmt.Fprintf(w, "  Redis        %.1f commands per %s", *r.RedisCommandsPerOp, per)
		if r.RedisNote != "" {
			fmt.Fprintf(w, " (%s)", r.RedisNote)
		}
		fmt.Fprintln(w)
	} else {
		fmt.Fprintf(w, "  Redis        %s\n", r.RedisNote)
	}
	if r.RedisRoundTripsPerOp != nil {
		fmt.Fprintf(w, "  Redis        %.1f round trips per %s, trace writes included (the bridge's count)\n", *r.RedisRoundTripsPerOp, per)
	} else if r.RoundTripsNote != "" {
		fmt.Fprintf(w, "  Redis        round trips %s\n", r.RoundTripsNote)
	}
	if r.RedisCPUPerOpMs != nil {
		fmt.Fprintf(w, "  Redis CPU    %.3f ms per %s (the server's INFO cpu)\n", *r.RedisCPUPerOpMs, per)
	}
	if r.BridgeCPUPerOpMs != nil {
		fmt.Fprintf(w, "  bridge CPU   %.3f ms per %s (its process_cpu_seconds_total)\n", *r.BridgeCPUPerOpMs, per)
	}
	if r.Memory != nil && r.Memory.EndRSSBytes > 0 {
		fmt.Fprintf(w, "  memory       bridge RSS peak %s, at the end %s\n               (%s)\n", mib(r.Memory.PeakRSSBytes), mib(r.Memory.EndRSSBytes), r.MemoryNote)
	} else if r.Memory != nil {
		rss := "not known on this system"
		if r.Memory.PeakRSSBytes > 0 {
			rss = mib(r.Memory.PeakRSSBytes)
		}
		fmt.Fprintf(w, "  memory       peak heap in use %s, peak RSS (VmHWM) %s\n               (%s)\n", mib(r.Memory.PeakHeapInUseBytes), rss, r.MemoryNote)
	} else {
		fmt.Fprintf(w, "  memory       %s\n", r.MemoryNote)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "  note         %s\n", n)
	}
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// roundTrips is the bridge's count of round trips to Redis: its store's when in process, its
// /metrics' when elsewhere; a note says why it is not measured.
func roundTrips(ctx context.Context, t *benchTarget, admin *adminScraper) (int64, string) {
	switch {
	case t.exchanges != nil:
		return t.exchanges.Exchanges().RoundTrips, ""
	case t.inProcess:
		return 0, "not measured: in-memory store"
	case admin == nil:
		return 0, "not measured: give --admin-url"
	}
	m, err := admin.scrape(ctx)
	if err != nil {
		return 0, "not measured: " + err.Error()
	}
	v, ok := m["ssobridge_redis_round_trips_total"]
	if !ok {
		return 0, "not measured: the bridge's /metrics has no ssobridge_redis_round_trips_total (is it on Redis?)"
	}
	return int64(v), ""
}

// adminScraper reads a bridge's /metrics.
type adminScraper struct {
	url, token string
}

// scrape returns the samples without labels of a Prometheus text exposition.
func (a *adminScraper) scrape(ctx context.Context) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.url, nil)
	if err != nil {
		return nil, fmt.Errorf("--admin-url: %v", err)
	}
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("--admin-url: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("--admin-url: %s answered %s", a.url, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return nil, fmt.Errorf("--admin-url: %v", err)
	}
	return parseMetrics(string(body)), nil
}

// parseMetrics reads the samples without labels ("name value") of a Prometheus text exposition.
func parseMetrics(text string) map[string]float64 {
	m := map[string]float64{}
	for line := range strings.Lines(text) {
		f := strings.Fields(line)
		if len(f) < 2 || strings.HasPrefix(f[0], "#") || strings.Contains(f[0], "{") {
			continue
		}
		if v, err := strconv.ParseFloat(f[1], 64); err == nil {
			m[f[0]] = v
		}
	}
	return m
}

// remoteMemSampler follows a bridge's resident memory through its /metrics.
type remoteMemSampler struct {
	admin *adminScraper
	peak  atomic.Uint64
	stop  chan struct{}
	done  chan struct{}
}

func startRemoteMemSampler(ctx context.Context, admin *adminScraper) *remoteMemSampler {
	m := &remoteMemSampler{admin: admin, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(m.done)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			m.sample(ctx)
			select {
			case <-m.stop:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return m
}

func (m *remoteMemSampler) sample(ctx context.Context) (uint64, error) {
	metrics, err := m.admin.scrape(ctx)
	if err != nil {
		return 0, err
	}
	v, ok := metrics["process_resident_memory_bytes"]
	if !ok {
		return 0, errors.New("the bridge's /metrics has no process_resident_memory_bytes")
	}
	rss := uint64(v)
	for {
		old := m.peak.Load()
		if rss <= old || m.peak.CompareAndSwap(old, rss) {
			return rss, nil
		}
	}
}

// finish stops sampling and returns the peak and the memory now.
func (m *remoteMemSampler) finish(ctx context.Context) (peak, end uint64, err error) {
	close(m.stop)
	<-m.done
	end, err = m.sample(ctx)
	return m.peak.Load(), end, err
}

// fetchUser makes Mattermost's /api/v4/user request and checks the answer is a user.
func fetchUser(ctx context.Context, client *http.Client, endpoint, token string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/api/v4/user: %s", resp.Status)
	}
	if !bytes.HasPrefix(body, []byte("{")) || !bytes.Contains(body, []byte(`"id":`)) {
		return errors.New("/api/v4/user: the answer is not a user")
	}
	return nil
}

// benchLimits are the in-process bridge's limits: every sign-in of the load comes from one
// address, so they stay on, and their cost is measured, with bounds the load never reaches.
var benchLimits = oauth.Limits{
	SignIn:  store.Limit{Rate: 1 << 30, Period: time.Minute, Burst: 1 << 30},
	Pending: store.PendingCaps{PerBrowser: oauth.DefaultPendingCaps.PerBrowser, PerSource: 1 << 30, Total: 1 << 30},
}
