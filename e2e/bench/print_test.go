package bench

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func ptr(v float64) *float64 { return &v }

func stats(n int, p50, p90, p99, maxMs float64) LatencyStats {
	return LatencyStats{Count: n, P50: p50, P90: p90, P99: p99, Max: maxMs}
}

// printed are results of each kind Print shows differently: a bridge elsewhere measured through
// its /metrics, with errors; token mode in process; user mode where /proc gives no peak RSS; a
// bridge elsewhere where nothing could be measured.
var printed = map[string]*Result{
	"login-remote": {Command: "ssobridge bench --bridge-url http://b --app-secret REDACTED", Machine: Machine{CPUs: 2, GOOS: "linux", GOARCH: "amd64", Go: "go1.26.8"},
		Target: "http://b", Store: "the running bridge's own", Mode: ModeLogin, Concurrency: 64, Warmup: 812, ElapsedSeconds: 10.0123, Completed: 14620, Errors: 7,
		ErrorsByKind: map[string]int64{"timeout": 2, "token: refused (HTTP 400)": 5}, PerSecond: 1460.2,
		ErrorExamples: map[string]string{"timeout": "timeout", "token: refused (HTTP 400)": "token request to http://b/oauth/token: the endpoint answered 400 Bad Request; error=invalid_grant: the code has expired"},
		Latency:       stats(14620, 42.8, 55.1, 68.4, 120.25), Steps: map[string]LatencyStats{"authorize": stats(14620, 5, 6, 7, 8), "gitlab": stats(14620, 1, 2, 3, 4),
			"callback": stats(14620, 9, 10, 11, 12), "token": stats(14620, 4, 5, 6, 7), "user": stats(14620, 2, 3, 4, 5)},
		RedisCommandsPerOp: ptr(31.25), RedisNote: "every client's commands in the window count, not only the bridge's", RedisRoundTripsPerOp: ptr(6.04),
		BridgeCPUPerOpMs: ptr(0.8812), RedisCPUPerOpMs: ptr(0.2531), Memory: &Memory{PeakRSSBytes: 58 << 20, EndRSSBytes: 55 << 20},
		MemoryNote: "the bridge's process alone, from its /metrics", Notes: []string{"3 of the warmup's sign-ins failed"}},
	"token-inprocess": {Command: "ssobridge bench --mode token --count 30", Machine: Machine{CPUs: 8, GOOS: "linux", GOARCH: "arm64", Go: "go1.26.8"},
		Target: "in-process bridge and GitLab emulator on loopback", Store: "memory", Mode: ModeToken, Concurrency: 4, Prepared: 30, ElapsedSeconds: 0.5, Completed: 30,
		ErrorsByKind: map[string]int64{}, PerSecond: 60, Latency: stats(30, 1, 2, 3, 4), Steps: map[string]LatencyStats{"token": stats(30, 1, 2, 3, 4)},
		RedisNote: "not measured: in-memory store", RoundTripsNote: "not measured: in-memory store",
		Memory: &Memory{PeakHeapInUseBytes: 12 << 20, PeakRSSBytes: 40 << 20}, MemoryNote: "the whole process: bridge, GitLab emulator and load generator"},
	"user-nohwm": {Command: "ssobridge bench --mode user", Machine: Machine{CPUs: 1, GOOS: "darwin", GOARCH: "arm64", Go: "go1.26.8"},
		Target: "in-process bridge and GitLab emulator on loopback", Store: "redis", Mode: ModeUser, Concurrency: 64, Warmup: 100, Prepared: 64, ElapsedSeconds: 5, Completed: 78000,
		ErrorsByKind: map[string]int64{}, PerSecond: 15600, Latency: stats(78000, 3.6, 5, 11.8, 40), Steps: map[string]LatencyStats{"user": stats(78000, 3.6, 5, 11.8, 40)},
		RedisCommandsPerOp: ptr(1), RedisRoundTripsPerOp: ptr(1), RedisCPUPerOpMs: ptr(0.013),
		Memory: &Memory{PeakHeapInUseBytes: 30 << 20}, MemoryNote: "the whole process: bridge, GitLab emulator and load generator",
		Notes: []string{"user mode checks each answer's status and that it is a JSON user object; login mode parses it as Mattermost does"}},
	"remote-unmeasured": {Command: "ssobridge bench --bridge-url http://b", Machine: Machine{CPUs: 2, GOOS: "linux", GOARCH: "amd64", Go: "go1.26.8"},
		Target: "http://b", Store: "the running bridge's own", Mode: ModeLogin, Concurrency: 64, ElapsedSeconds: 1, Completed: 0, Errors: 3,
		ErrorsByKind: map[string]int64{"browser: request failed": 3},
		RedisNote:    "not measured: no --redis-url", RoundTripsNote: "not measured: give --admin-url", MemoryNote: "not measured: the bridge runs elsewhere (give --admin-url)"},
}

// The printed layout is the one the README's figures quote: testdata holds it as `ssobridge
// bench` has printed it.
func TestPrintKeepsTheLayoutTheReadmeQuotes(t *testing.T) {
	for name, r := range printed {
		want, err := os.ReadFile(filepath.Join("testdata", "print-"+name+".txt"))
		if err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		Print(&got, r)
		if got.String() != string(want) {
			t.Errorf("%s: printed\n%s\nwant\n%s", name, got.String(), want)
		}
	}
}
