package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/ssobridge/ssobridge/oauth/store/storetest"
)

// runBenchJSON runs bench with --json and decodes its result. Durations are never asserted:
// they depend on the machine.
func runBenchJSON(t *testing.T, args ...string) benchResult {
	t.Helper()
	var out, errb bytes.Buffer
	if code := run(append([]string{"bench", "--json"}, args...), &out, &errb); code != 0 {
		t.Fatalf("bench %v: exit %d\nstdout:\n%s\nstderr:\n%s", args, code, out.String(), errb.String())
	}
	var r benchResult
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("bench --json printed no JSON object: %v\n%s", err, out.String())
	}
	return r
}

func checkStats(t *testing.T, name string, s latencyStats, want int) {
	t.Helper()
	if s.Count != want {
		t.Errorf("%s: %d samples, want %d", name, s.Count, want)
	}
	if !(s.P50 <= s.P90 && s.P90 <= s.P99 && s.P99 <= s.Max) {
		t.Errorf("%s: percentiles out of order: %+v", name, s)
	}
}

func TestBenchLoginInProcess(t *testing.T) {
	r := runBenchJSON(t, "--count", "50", "--concurrency", "4", "--warmup", "10")
	if r.Completed != 50 || r.Errors != 0 || len(r.ErrorsByKind) != 0 {
		t.Fatalf("completed %d, errors %d %v; want 50 and none", r.Completed, r.Errors, r.ErrorsByKind)
	}
	if r.Mode != "login" || r.Store != "memory" || r.Concurrency != 4 || r.Warmup != 10 || r.Machine.CPUs < 1 {
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
	if r.RedisCommandsPerOp != nil || r.RedisNote == "" {
		t.Errorf("Redis measured without Redis: %v %q", r.RedisCommandsPerOp, r.RedisNote)
	}
	if r.Memory == nil || r.Memory.PeakHeapInUseBytes == 0 {
		t.Errorf("no peak memory for an in-process bridge: %+v", r.Memory)
	}
}

func TestBenchTokenAndUserModes(t *testing.T) {
	r := runBenchJSON(t, "--mode", "token", "--count", "30", "--concurrency", "4", "--warmup", "0")
	if r.Completed != 30 || r.Errors != 0 || r.Prepared != 30 || r.Warmup != 0 {
		t.Fatalf("token mode: completed %d, errors %v, prepared %d, warmup %d", r.Completed, r.ErrorsByKind, r.Prepared, r.Warmup)
	}
	checkStats(t, "redemption", r.Latency, 30)
	if len(r.Steps) != 1 || r.Steps["token"].Count != 30 {
		t.Errorf("token mode measured more than the token endpoint: %v", r.Steps)
	}

	r = runBenchJSON(t, "--mode", "user", "--count", "30", "--concurrency", "4", "--warmup", "0")
	if r.Completed != 30 || r.Errors != 0 || r.Prepared != 4 {
		t.Fatalf("user mode: completed %d, errors %v, prepared %d", r.Completed, r.ErrorsByKind, r.Prepared)
	}
	if len(r.Steps) != 1 || r.Steps["user"].Count != 30 {
		t.Errorf("user mode measured more than the user endpoint: %v", r.Steps)
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

func TestBenchDuration(t *testing.T) {
	r := runBenchJSON(t, "--duration", "200ms", "--concurrency", "2", "--warmup", "50ms")
	if r.Completed == 0 || r.Errors != 0 {
		t.Fatalf("completed %d, errors %v", r.Completed, r.ErrorsByKind)
	}
}

func TestBenchRedisCommands(t *testing.T) {
	url := storetest.RedisURL(t)
	r := runBenchJSON(t, "--count", "20", "--concurrency", "2", "--warmup", "0", "--redis-url", url)
	if r.Completed != 20 || r.Errors != 0 || r.Store != "redis" {
		t.Fatalf("completed %d, errors %v, store %s", r.Completed, r.ErrorsByKind, r.Store)
	}
	if r.RedisCommandsPerOp == nil || *r.RedisCommandsPerOp <= 0 {
		t.Fatalf("Redis commands per login %v (%s), want a positive number", r.RedisCommandsPerOp, r.RedisNote)
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
