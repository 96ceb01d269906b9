package bench

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ssobridge/ssobridge/gitlabapi"
	"github.com/ssobridge/ssobridge/gitlabapi/emulator"
	"github.com/ssobridge/ssobridge/gitlabapi/gitlabtest"
	"github.com/ssobridge/ssobridge/oauth"
	"github.com/ssobridge/ssobridge/oauth/store/storetest"
	"github.com/ssobridge/ssobridge/oauth/upstream"
)

// inProcess is a run's config for a bridge in this process on a GitLab emulator that signs its
// one person in without a form. Durations are never asserted: they depend on the machine.
func inProcess(t *testing.T, mode string, concurrency, count, warmup int) Config {
	return Config{Mode: mode, Concurrency: concurrency, Count: count, WarmupCount: warmup, Timeout: time.Minute,
		AccessTokenTTL: oauth.DefaultAccessTokenTTL, AuthorizationTTL: oauth.DefaultAuthorizationTTL,
		Upstream: func(bridgeURL string) (upstream.CallbackProvider, func(), error) {
			gl := gitlabtest.NewTestServer(t)
			gl.AddUser(emulator.User{ID: 42, Username: "ada", Name: "Ada Lovelace", Email: "ada@example.com"})
			gl.SignIn("ada")
			app := gl.AddApplication(emulator.Application{Name: "ssobridge", RedirectURIs: []string{oauth.CallbackURLFor(bridgeURL)},
				Scopes: []string{"read_user"}, Confidential: true, Trusted: true})
			up, err := gitlabapi.NewClient(gitlabapi.Config{URL: gl.URL(), ClientID: app.UID, ClientSecret: app.Secret,
				Scopes: []string{"read_user"}, RedirectURL: oauth.CallbackURLFor(bridgeURL)})
			return up, func() {}, err
		}}
}

func run(t *testing.T, cfg Config) *Result {
	t.Helper()
	var stderr bytes.Buffer
	r, err := Run(context.Background(), cfg, &stderr)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	return r
}

func checkStats(t *testing.T, name string, s LatencyStats, want int) {
	t.Helper()
	if s.Count != want {
		t.Errorf("%s: %d samples, want %d", name, s.Count, want)
	}
	if !(s.P50 <= s.P90 && s.P90 <= s.P99 && s.P99 <= s.Max) {
		t.Errorf("%s: percentiles out of order: %+v", name, s)
	}
}

func TestRunTimesEveryStepOfInProcessSignIns(t *testing.T) {
	r := run(t, inProcess(t, ModeLogin, 4, 50, 10))
	if r.Completed != 50 || r.Errors != 0 || len(r.ErrorsByKind) != 0 {
		t.Fatalf("completed %d, errors %d %v; want 50 and none", r.Completed, r.Errors, r.ErrorsByKind)
	}
	if r.Mode != ModeLogin || r.Store != "memory" || r.Concurrency != 4 || r.Warmup != 10 || r.Machine.CPUs < 1 {
		t.Errorf("result header: %+v", r)
	}
	checkStats(t, "login", r.Latency, 50)
	for _, step := range []string{"authorize", "gitlab", "callback", "token", "user"} {
		s, ok := r.Steps[step]
		if !ok {
			t.Errorf("no stats for step %s: %v", step, r.Steps)
			continue
		}
		checkStats(t, step, s, 50)
	}
	if _, ok := r.Steps["other"]; ok {
		t.Errorf("a request went to an unexpected path of the bridge: %v", r.Steps)
	}
	if r.PerSecond <= 0 {
		t.Errorf("per second %v", r.PerSecond)
	}
	if r.RedisCommandsPerOp != nil || r.RedisNote != "not measured: in-memory store" || r.RoundTripsNote != "not measured: in-memory store" {
		t.Errorf("Redis measured without Redis: %v %q %q", r.RedisCommandsPerOp, r.RedisNote, r.RoundTripsNote)
	}
	if r.Memory == nil || r.Memory.PeakHeapInUseBytes == 0 {
		t.Errorf("no peak memory for an in-process bridge: %+v", r.Memory)
	}
}

func TestRunTokenModeRedeemsTheCodesMadeFirst(t *testing.T) {
	r := run(t, inProcess(t, ModeToken, 4, 30, 0))
	if r.Completed != 30 || r.Errors != 0 || r.Prepared != 30 || r.Warmup != 0 {
		t.Fatalf("token mode: completed %d, errors %v, prepared %d, warmup %d", r.Completed, r.ErrorsByKind, r.Prepared, r.Warmup)
	}
	checkStats(t, "redemption", r.Latency, 30)
	if len(r.Steps) != 1 || r.Steps["token"].Count != 30 {
		t.Errorf("token mode measured more than the token endpoint: %v", r.Steps)
	}
}

func TestRunUserModeUsesATokenPerWorker(t *testing.T) {
	r := run(t, inProcess(t, ModeUser, 4, 30, 0))
	if r.Completed != 30 || r.Errors != 0 || r.Prepared != 4 {
		t.Fatalf("user mode: completed %d, errors %v, prepared %d", r.Completed, r.ErrorsByKind, r.Prepared)
	}
	if len(r.Steps) != 1 || r.Steps["user"].Count != 30 {
		t.Errorf("user mode measured more than the user endpoint: %v", r.Steps)
	}
}

func TestRunForADuration(t *testing.T) {
	cfg := inProcess(t, ModeLogin, 2, 0, 0)
	cfg.Duration, cfg.WarmupDuration = 200*time.Millisecond, 50*time.Millisecond
	r := run(t, cfg)
	if r.Completed == 0 || r.Errors != 0 {
		t.Fatalf("completed %d, errors %v", r.Completed, r.ErrorsByKind)
	}
}

func TestRunCountsRedisCommandsAndRoundTrips(t *testing.T) {
	cfg := inProcess(t, ModeLogin, 2, 20, 0)
	cfg.RedisURL = storetest.RedisURL(t)
	r := run(t, cfg)
	if r.Completed != 20 || r.Errors != 0 || r.Store != "redis" {
		t.Fatalf("completed %d, errors %v, store %s", r.Completed, r.ErrorsByKind, r.Store)
	}
	if r.RedisCommandsPerOp == nil || *r.RedisCommandsPerOp <= 0 {
		t.Errorf("Redis commands per sign-in %v (%s), want a positive number", r.RedisCommandsPerOp, r.RedisNote)
	}
	if r.RedisRoundTripsPerOp == nil || *r.RedisRoundTripsPerOp <= 0 {
		t.Errorf("Redis round trips per sign-in %v (%s), want a positive number", r.RedisRoundTripsPerOp, r.RoundTripsNote)
	}
	if r.RedisCPUPerOpMs == nil {
		t.Error("Redis CPU per sign-in not measured")
	}
}

// A bridge elsewhere is measured through its operators' /metrics, as a Prometheus client serves
// them: its CPU time and round trips per sign-in, and its memory. Here the bridge's metrics say it
// spent 2 ms and 6 round trips on each token request it answered, and the run says so.
func TestRunReadsABridgeElsewhereThroughItsMetrics(t *testing.T) {
	var tokens atomic.Int64
	cfg := inProcess(t, ModeLogin, 2, 0, 0)
	cfg.Server = func(h http.Handler) *http.Server {
		return &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h.ServeHTTP(w, r)
			if r.URL.Path == "/oauth/token" {
				tokens.Add(1)
			}
		})}
	}
	tg, err := startTarget(context.Background(), cfg, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	defer tg.close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "process_cpu_seconds_total"}, func() float64 { return 0.002 * float64(tokens.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ssobridge_redis_round_trips_total"}, func() float64 { return 6 * float64(tokens.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "process_resident_memory_bytes"}, func() float64 { return float64(50<<20 + 1024*tokens.Load()) }))
	metrics := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	admin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer ops" || r.URL.Path != "/metrics" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		metrics.ServeHTTP(w, r)
	}))
	defer admin.Close()

	remote := Config{Mode: ModeLogin, Concurrency: 2, Count: 20, Timeout: time.Minute, BridgeURL: tg.bridge.String(),
		AppID: tg.client.Settings.Id, AppSecret: tg.client.Settings.Secret, SiteURL: tg.site.String(), AdminURL: admin.URL + "/", AdminToken: "ops"}
	r := run(t, remote)
	if r.Completed != 20 || r.Errors != 0 || r.Store != "the running bridge's own" || r.Target != tg.bridge.String() {
		t.Fatalf("completed %d, errors %v, store %s, target %s", r.Completed, r.ErrorsByKind, r.Store, r.Target)
	}
	near := func(p *float64, want float64) bool { return p != nil && *p > want-1e-9 && *p < want+1e-9 }
	if !near(r.BridgeCPUPerOpMs, 2) {
		t.Errorf("bridge CPU per sign-in %v ms, want 2", deref(r.BridgeCPUPerOpMs))
	}
	if !near(r.RedisRoundTripsPerOp, 6) {
		t.Errorf("round trips per sign-in %v (%s), want 6", deref(r.RedisRoundTripsPerOp), r.RoundTripsNote)
	}
	if r.Memory == nil || r.Memory.EndRSSBytes != 50<<20+1024*uint64(tokens.Load()) || r.Memory.PeakRSSBytes != r.Memory.EndRSSBytes {
		t.Errorf("memory %+v (%s), want the last RSS, %d, as the end and the peak", r.Memory, r.MemoryNote, 50<<20+1024*tokens.Load())
	}
	if r.RedisNote != "not measured: no --redis-url" {
		t.Errorf("Redis note %q", r.RedisNote)
	}
}

func deref(p *float64) any {
	if p == nil {
		return "none"
	}
	return *p
}

func TestRunWithoutAnUpstreamAsksForABridge(t *testing.T) {
	_, err := Run(context.Background(), Config{Mode: ModeLogin, Concurrency: 1, Count: 1}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "--bridge-url") {
		t.Errorf("got %v", err)
	}
}
