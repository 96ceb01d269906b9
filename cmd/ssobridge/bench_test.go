package main

import (
	"bytes"
	"encoding/json"
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
	for _, args := range [][]string{
		{"--mode", "nope"},
		{"--concurrency", "0"},
		{"--bridge-url", "http://127.0.0.1:1"},
		{"--app-id", "x"},
		{"--warmup", "soon"},
	} {
		var out, errb bytes.Buffer
		if code := run(append([]string{"bench"}, args...), &out, &errb); code == 0 {
			t.Errorf("bench %v succeeded", args)
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
	var out, errb bytes.Buffer
	code := run([]string{"bench", "--bridge-url", "http://127.0.0.1:1", "--app-id", "x", "--app-secret", "s3cr3t-value",
		"--site-url", "https://mm.example.com", "--count", "3", "--warmup", "0", "--timeout", "20s"}, &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), "3 operations failed") {
		t.Errorf("exit %d, stderr %q; want 1 saying the 3 operations failed", code, errb.String())
	}
	if strings.Contains(out.String()+errb.String(), "s3cr3t-value") || !strings.Contains(out.String(), "--app-secret REDACTED") {
		t.Errorf("the output shows the secret, or not where it was:\n%s", out.String())
	}
}

func TestRedactSecretsHidesEveryFormOfTheSecretFlags(t *testing.T) {
	got := strings.Join(redactSecrets([]string{"--app-secret", "a", "-admin-token=b", "--app-id", "c", "--admin-token", "d"}), " ")
	if want := "--app-secret REDACTED -admin-token=REDACTED --app-id c --admin-token REDACTED"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
