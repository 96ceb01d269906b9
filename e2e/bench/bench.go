package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/cookiejar"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ssobridge/ssobridge/mattermost"
	"github.com/ssobridge/ssobridge/oauth"
	"github.com/ssobridge/ssobridge/oauth/upstream"
)

// The modes of a run: what one measured operation is.
const (
	ModeLogin = "login" // a whole sign-in
	ModeToken = "token" // a code redemption, the codes made before the measured window
	ModeUser  = "user"  // a GET /api/v4/user, the tokens obtained before the measured window
)

// Config is a run. Its errors name the flags of `ssobridge bench` that set each field.
type Config struct {
	Mode        string        // ModeLogin, ModeToken or ModeUser
	Concurrency int           // operations in flight at once, at least 1
	Duration    time.Duration // how long to measure, when Count is 0
	Count       int           // measure this many operations instead of a duration
	// WarmupDuration or WarmupCount is the whole sign-ins made before the measured window.
	WarmupDuration time.Duration
	WarmupCount    int
	// Timeout stops everything after this long, whatever happens; 0: DefaultTimeout.
	Timeout time.Duration
	// RedisURL is the in-process bridge's store; with BridgeURL, only read for INFO.
	RedisURL string
	// BridgeURL is a running bridge to load instead of one in this process; AppID, AppSecret and
	// SiteURL are its Mattermost application and Mattermost's SiteURL.
	BridgeURL, AppID, AppSecret, SiteURL string
	// AdminURL is a bridge elsewhere's operators' listener, whose /metrics gives its round trips
	// to Redis, its CPU time and its memory; AdminToken is that listener's token, if it has one.
	AdminURL, AdminToken string
	// Profile receives a CPU profile of the measured window; nil: none.
	Profile io.Writer
	// The in-process bridge's access token lifetime, lifetime of a sign-in in progress and
	// whether its Mattermost application gets refresh tokens: they say how long each sign-in is
	// kept.
	AccessTokenTTL, AuthorizationTTL time.Duration
	RefreshTokens                    bool
	// Upstream starts the in-process bridge's provider, for a bridge at bridgeURL: it must sign
	// the test person in without a form, as `ssobridge dev`'s GitLab emulator does. stop stops it.
	Upstream func(bridgeURL string) (up upstream.CallbackProvider, stop func(), err error)
	// Server makes the in-process bridge's HTTP server around its handler, with the settings
	// `ssobridge serve` uses; nil: an http.Server with only the handler.
	Server func(http.Handler) *http.Server
}

// DefaultTimeout is a run's hard stop when Config.Timeout is 0: a few times the expected run, at
// least 2 minutes; with a count, time for 100 operations a second.
func DefaultTimeout(cfg Config) time.Duration {
	expected := cfg.WarmupDuration + 3*cfg.Duration
	if cfg.Count > 0 {
		// Enough for a slow machine or deployment: 100 operations a second.
		expected = cfg.WarmupDuration + time.Duration(cfg.Count+cfg.WarmupCount)*10*time.Millisecond
	}
	return max(2*time.Minute, 3*expected)
}

// LatencyStats are the nearest-rank percentiles of a set of durations, in milliseconds.
type LatencyStats struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

// Machine is where the load generator ran.
type Machine struct {
	CPUs   int    `json:"cpus"`
	GOOS   string `json:"goos"`
	GOARCH string `json:"goarch"`
	Go     string `json:"go"`
}

// Memory is the memory a run measured.
type Memory struct {
	PeakHeapInUseBytes uint64 `json:"peak_heap_in_use_bytes,omitempty"`
	// PeakRSSBytes is VmHWM for an in-process bridge: the process's peak since it started, load
	// generator included; for a bridge elsewhere, the highest process_resident_memory_bytes its
	// /metrics gave while measured.
	PeakRSSBytes uint64 `json:"peak_rss_bytes,omitempty"`
	// EndRSSBytes is a bridge elsewhere's resident memory when the measure ended.
	EndRSSBytes uint64 `json:"end_rss_bytes,omitempty"`
}

// Result is what a run measured; `ssobridge bench --json` prints it as it is.
type Result struct {
	// Command is the command line that ran, its secrets hidden; Run leaves it to its caller.
	Command     string  `json:"command"`
	Machine     Machine `json:"machine"`
	Target      string  `json:"target"`
	Store       string  `json:"store"`
	Mode        string  `json:"mode"`
	Concurrency int     `json:"concurrency"`
	// Warmup is the number of whole sign-ins made before the measured window.
	Warmup int `json:"warmup"`
	// Prepared is the number of codes (token mode) or tokens (user mode) obtained before it.
	Prepared       int              `json:"prepared,omitempty"`
	ElapsedSeconds float64          `json:"elapsed_seconds"`
	Completed      int64            `json:"completed"`
	Errors         int64            `json:"errors"`
	ErrorsByKind   map[string]int64 `json:"errors_by_kind"`
	// ErrorExamples is the first error of each kind, whole.
	ErrorExamples map[string]string       `json:"error_examples,omitempty"`
	PerSecond     float64                 `json:"per_second"`
	Latency       LatencyStats            `json:"latency"`
	Steps         map[string]LatencyStats `json:"steps"`
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
	RedisCPUPerOpMs *float64 `json:"redis_cpu_ms_per_op,omitempty"`
	Memory          *Memory  `json:"memory"`
	MemoryNote      string   `json:"memory_note,omitempty"`
	Notes           []string `json:"notes,omitempty"`
}

// Run loads the bridge as cfg says and returns what it measured. With an error, the result, if
// not nil, holds what was measured before it (an interrupted run, one stopped by its timeout).
// Operations that failed are counted in the result, not returned as an error.
func Run(parent context.Context, cfg Config, stderr io.Writer) (*Result, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout(cfg)
	}
	ctx, cancel := context.WithTimeout(parent, cfg.Timeout)
	defer cancel()
	var mem *memSampler
	if cfg.BridgeURL == "" {
		// Started first so that the peak includes the bridge's start.
		mem = startMemSampler()
	}
	t, err := startTarget(ctx, cfg, stderr)
	if err != nil {
		if mem != nil {
			mem.finish()
		}
		return nil, err
	}
	defer t.close()

	res := &Result{
		Machine:     Machine{CPUs: runtime.NumCPU(), GOOS: runtime.GOOS, GOARCH: runtime.GOARCH, Go: runtime.Version()},
		Target:      "in-process bridge and GitLab emulator on loopback",
		Store:       t.store,
		Mode:        cfg.Mode,
		Concurrency: cfg.Concurrency,
		Steps:       map[string]LatencyStats{},
	}
	if !t.inProcess {
		res.Target = t.bridge.String()
	}

	browserRT := newStepTransport(t, cfg.Concurrency)
	serverRT := newStepTransport(t, cfg.Concurrency)
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

	if cfg.WarmupCount > 0 || cfg.WarmupDuration > 0 {
		w := runPhase(ctx, cfg.Concurrency, cfg.WarmupCount, cfg.WarmupDuration, false, loginOp)
		res.Warmup = int(w.completed)
		if w.errors > 0 {
			res.Notes = append(res.Notes, fmt.Sprintf("%d of the warmup's sign-ins failed", w.errors))
		}
	}

	op := loginOp
	switch cfg.Mode {
	case ModeToken:
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
		m := runPhase(ctx, cfg.Concurrency, cfg.Count, cfg.Duration, false, mintOp)
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
		cfg.Count = len(codes)
		if cfg.Count == 0 {
			return res, errors.New("no code could be made for token mode")
		}
	case ModeUser:
		tokens := make([]string, cfg.Concurrency)
		var wg sync.WaitGroup
		var failed atomic.Int64
		for w := range cfg.Concurrency {
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
			return res, fmt.Errorf("%d of %d sign-ins for tokens failed", failed.Load(), cfg.Concurrency)
		}
		res.Prepared = len(tokens)
		// Each request is Mattermost's, but its answer is only checked (status, and a JSON object
		// naming the user), not turned into a Mattermost user: the load generator shares the
		// machine, and login mode measures that parsing.
		op = func(ctx context.Context, w int) error {
			return fetchUser(ctx, server, &t.client, tokens[w])
		}
		res.Notes = append(res.Notes, "user mode checks each answer's status and that it is a JSON user object; login mode parses it as Mattermost does")
	}

	// settle lets the trace steps of what came before land in the store, so that each window
	// holds the Redis commands of its own operations: an in-process bridge writes them at once;
	// a running bridge holds a sign-in's steps while it awaits the next, for its hold and a batch.
	settle := func() {
		if t.flush != nil {
			t.flush(ctx)
		} else if t.rdb != nil {
			time.Sleep(oauth.DefaultTraceHold + 2*oauth.DefaultTraceBatchDelay)
		}
	}
	settle()
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
	if cfg.AdminURL != "" {
		admin = &adminScraper{url: strings.TrimRight(cfg.AdminURL, "/") + "/metrics", token: cfg.AdminToken}
	}
	rtBefore, rtNote := roundTrips(ctx, t, admin)
	var remoteMem *remoteMemSampler
	cpuBefore := -1.0
	if admin != nil {
		remoteMem = startRemoteMemSampler(ctx, admin)
		if m, err := admin.scrape(ctx); err == nil {
			if v, ok := m.value("process_cpu_seconds_total"); ok {
				cpuBefore = v
			}
		}
	}

	if cfg.Profile != nil {
		if err := pprof.StartCPUProfile(cfg.Profile); err != nil {
			return res, fmt.Errorf("--cpuprofile: %v", err)
		}
	}
	p := runPhase(ctx, cfg.Concurrency, cfg.Count, cfg.Duration, true, op)
	if cfg.Profile != nil {
		pprof.StopCPUProfile()
	}

	settle()
	if admin != nil && cpuBefore >= 0 && p.completed > 0 {
		if m, err := admin.scrape(ctx); err == nil {
			if v, ok := m.value("process_cpu_seconds_total"); ok {
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
		res.Memory = &Memory{PeakHeapInUseBytes: mem.finish(), PeakRSSBytes: vmHWM()}
		res.MemoryNote = "the whole process: bridge, GitLab emulator and load generator"
	} else if remoteMem != nil {
		peak, end, err := remoteMem.finish(ctx)
		if err != nil {
			res.MemoryNote = "not measured: " + err.Error()
		} else {
			res.Memory = &Memory{PeakRSSBytes: peak, EndRSSBytes: end}
			res.MemoryNote = "the bridge's process alone, from its /metrics"
		}
	} else {
		res.MemoryNote = "not measured: the bridge runs elsewhere (give --admin-url)"
	}

	p.fill(res)
	if ctx.Err() != nil {
		if parent.Err() != nil {
			return res, errors.New("interrupted")
		}
		return res, fmt.Errorf("stopped by the hard timeout (--timeout %s)", cfg.Timeout)
	}
	return res, nil
}

// errNoMoreCodes ends token mode's window when the codes made before it are used up; it is no
// failure.
var errNoMoreCodes = errors.New("no more codes")

// fill sets a result's counts, errors and latencies from the measured phase.
func (p *phaseResult) fill(res *Result) {
	delete(p.byKind, errNoMoreCodes.Error())
	delete(p.example, errNoMoreCodes.Error())
	res.ElapsedSeconds = p.elapsed.Seconds()
	res.Completed = p.completed
	res.ErrorsByKind = p.byKind
	if len(p.example) > 0 {
		res.ErrorExamples = p.example
	}
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
}

func summarize(d []time.Duration) LatencyStats {
	if len(d) == 0 {
		return LatencyStats{}
	}
	slices.Sort(d)
	// Nearest rank: the smallest sample with at least p of them at or below it.
	at := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(d)))) - 1
		return ms(d[max(i, 0)])
	}
	return LatencyStats{Count: len(d), P50: at(0.50), P90: at(0.90), P99: at(0.99), Max: ms(d[len(d)-1])}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
