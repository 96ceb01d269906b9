package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ssobridge/ssobridge/e2e/bench"
	"github.com/ssobridge/ssobridge/oauth/store/storetest"
)

// The measuring itself is package bench's, and tested there; these tests check the command's
// flags and wiring: the in-process bridge on dev's GitLab emulator, the output, the exit status.

func TestBenchJSONPrintsTheResultOfTheInProcessBridge(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"bench", "--json", "--count", "20", "--concurrency", "2", "--warmup", "5", "--redis-url", storetest.RedisURL(t)}, &out, &errb); code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errb.String())
	}
	var r bench.Result
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("bench --json printed no JSON object: %v\n%s", err, out.String())
	}
	if r.Completed != 20 || r.Errors != 0 || r.Warmup != 5 || r.Store != "redis" || r.Concurrency != 2 || !strings.HasPrefix(r.Command, "ssobridge bench --json --count 20") {
		t.Errorf("result: %+v", r)
	}
	if r.RedisCommandsPerOp == nil || r.RedisRoundTripsPerOp == nil {
		t.Errorf("Redis not measured: %q %q", r.RedisNote, r.RoundTripsNote)
	}
}

func TestBenchTextOutput(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"bench", "--count", "10", "--concurrency", "2", "--warmup", "0"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{"ssobridge bench --count 10", "CPUs", "sign-ins/s", "p99", "authorize", "gitlab", "callback", "token", "user", "errors       none", "peak RSS"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestBenchBadFlags(t *testing.T) {
	remote := []string{"--bridge-url", "http://127.0.0.1:1", "--app-id", "a", "--app-secret", "s", "--site-url", "http://127.0.0.1:2"}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--mode", "nope"}, `--mode "nope": want login, token or user`},
		{[]string{"--concurrency", "0"}, "--concurrency must be at least 1"},
		{[]string{"--bridge-url", "http://127.0.0.1:1"}, "--bridge-url needs --app-id, --app-secret and --site-url"},
		{[]string{"--app-id", "x"}, "go with --bridge-url"},
		{[]string{"--warmup", "soon"}, `--warmup "soon": want a duration`},
		{append(slices.Clone(remote), "--access-token-ttl", "1m", "--refresh-tokens"), "--access-token-ttl, --refresh-tokens set the in-process bridge"},
		{remote, "--bridge-url: nothing answers at http://127.0.0.1:1/healthz"},
	} {
		var out, errb bytes.Buffer
		if code := run(append([]string{"bench"}, c.args...), &out, &errb); code == 0 || !strings.Contains(errb.String(), c.want) {
			t.Errorf("bench %v: exit %d, %q; want a failure saying %q", c.args, code, errb.String(), c.want)
		}
	}
}

func TestBenchWarmupIsACountOrADuration(t *testing.T) {
	for _, c := range []struct {
		flag  string
		count int
		want  bench.Config
	}{
		{"", 0, bench.Config{WarmupDuration: time.Second}},
		{"", 50, bench.Config{Count: 50, WarmupCount: 100}},
		{"0", 0, bench.Config{}},
		{"250", 0, bench.Config{WarmupCount: 250}},
		{"2s", 50, bench.Config{Count: 50, WarmupDuration: 2 * time.Second}},
	} {
		cfg := bench.Config{Count: c.count}
		if err := parseWarmup(c.flag, &cfg); err != nil || cfg.WarmupCount != c.want.WarmupCount || cfg.WarmupDuration != c.want.WarmupDuration {
			t.Errorf("--warmup %q with --count %d: %d sign-ins, %s (%v); want %d, %s", c.flag, c.count, cfg.WarmupCount, cfg.WarmupDuration, err, c.want.WarmupCount, c.want.WarmupDuration)
		}
	}
}

// A run with failures exits 1, so that a script comparing runs cannot take it for a measurement,
// and the command line it prints never shows the application's secret.
func TestBenchWithFailuresExitsOneAndHidesTheSecret(t *testing.T) {
	// A bridge that is up (its /healthz answers) and refuses every sign-in.
	bridge := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			return
		}
		http.Error(w, "no", http.StatusBadRequest)
	}))
	defer bridge.Close()
	var out, errb bytes.Buffer
	code := run([]string{"bench", "--bridge-url", bridge.URL, "--app-id", "x", "--app-secret", "s3cr3t-value",
		"--site-url", "https://mm.example.com", "--count", "3", "--warmup", "0", "--timeout", "20s"}, &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), "3 operations failed") {
		t.Errorf("exit %d, stderr %q; want 1 saying the 3 operations failed", code, errb.String())
	}
	if strings.Contains(out.String()+errb.String(), "s3cr3t-value") || !strings.Contains(out.String(), "--app-secret REDACTED") {
		t.Errorf("the output shows the secret, or not where it was:\n%s", out.String())
	}
}

func TestRedactSecretsHidesEveryFormOfTheSecretFlags(t *testing.T) {
	got := strings.Join(redactSecrets([]string{"--app-secret", "a", "-admin-token=b", "--app-id", "c", "--admin-token", "d",
		"--redis-url", "redis://:hunter2@127.0.0.1:6379/2", "-redis-url=redis://u:pw@h:1", "--redis-url", "redis://127.0.0.1:6379"}), " ")
	if want := "--app-secret REDACTED -admin-token=REDACTED --app-id c --admin-token REDACTED" +
		" --redis-url redis://:xxxxx@127.0.0.1:6379/2 -redis-url=redis://u:xxxxx@h:1 --redis-url redis://127.0.0.1:6379"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
