package bench

import (
	"context"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	"github.com/ssobridge/ssobridge/oauth"
)

func parse(t *testing.T, text string) exposition {
	t.Helper()
	e, err := parseExposition(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parsing %q: %v", text, err)
	}
	return e
}

// The bridge's own /metrics, Go and process collectors included, is read whole: its labelled
// families do not stop the parse, and the samples the bench reads are found.
func TestScrapeReadsTheBridgesOwnMetrics(t *testing.T) {
	bridge := httptest.NewServer(oauth.NewMetrics().Handler())
	defer bridge.Close()
	e, err := (&adminScraper{url: bridge.URL}).scrape(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := e.value("go_goroutines"); !ok || v < 1 {
		t.Errorf("go_goroutines: %v, %v", v, ok)
	}
	if _, ok := e["go_info"]; !ok {
		t.Errorf("the labelled go_info is missing: %v", len(e))
	}
	if runtime.GOOS == "linux" {
		if _, ok := e.value("process_cpu_seconds_total"); !ok {
			t.Error("no process_cpu_seconds_total")
		}
		if v, ok := e.value("process_resident_memory_bytes"); !ok || v <= 0 {
			t.Errorf("process_resident_memory_bytes: %v, %v", v, ok)
		}
	}
}

func TestValueAddsUpTheSeriesOfALabelledMetric(t *testing.T) {
	e := parse(t, "# TYPE ssobridge_redis_round_trips_total counter\n"+
		"ssobridge_redis_round_trips_total{instance=\"a\"} 2\n"+
		"ssobridge_redis_round_trips_total{instance=\"b\"} 3\n")
	if v, ok := e.value("ssobridge_redis_round_trips_total"); !ok || v != 5 {
		t.Errorf("got %v, %v; want 5, the total over both instances", v, ok)
	}
}

func TestValueReadsCountersGaugesAndUntypedSamples(t *testing.T) {
	e := parse(t, "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n"+
		"# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 1.25\n"+
		"# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes 5.8e+07\n"+
		"plain 7\n")
	for name, want := range map[string]float64{"process_cpu_seconds_total": 1.25, "process_resident_memory_bytes": 5.8e7, "plain": 7} {
		if v, ok := e.value(name); !ok || v != want {
			t.Errorf("%s: got %v, %v; want %v", name, v, ok, want)
		}
	}
}

// A histogram's _sum and _count are not a value of the histogram's name, nor of their own: the
// bench never takes one for a counter.
func TestValueHasNoneForAHistogramOrAMissingMetric(t *testing.T) {
	e := parse(t, "# TYPE d histogram\nd_bucket{le=\"0.1\"} 1\nd_bucket{le=\"+Inf\"} 2\nd_sum 0.3\nd_count 2\n")
	for _, name := range []string{"d", "d_sum", "d_count", "absent"} {
		if v, ok := e.value(name); ok {
			t.Errorf("%s: got %v, want none", name, v)
		}
	}
}

func TestScrapeSendsTheOperatorsToken(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer s3cret" {
			http.Error(w, "sign in", http.StatusUnauthorized)
			return
		}
		_, _ = w.Write([]byte("process_resident_memory_bytes 1024\n"))
	}))
	defer srv.Close()
	if _, err := (&adminScraper{url: srv.URL, token: "s3cret"}).scrape(context.Background()); err != nil {
		t.Errorf("with the token: %v", err)
	}
	_, err := (&adminScraper{url: srv.URL, token: "wrong"}).scrape(context.Background())
	if err == nil || !strings.Contains(err.Error(), "--admin-url: "+srv.URL+" answered 401 Unauthorized") {
		t.Errorf("with a wrong token: %v; want the status named", err)
	}
}

// An answer that is not an exposition (a sign-in page in front of the listener, the wrong port)
// is an error that says so, not a bridge without metrics.
func TestScrapeSaysAnAnswerIsNotMetrics(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("<!doctype html>\n<html><title>Sign in</title></html>\n"))
	}))
	defer srv.Close()
	_, err := (&adminScraper{url: srv.URL}).scrape(context.Background())
	if err == nil || !strings.Contains(err.Error(), srv.URL+" is not Prometheus metrics") {
		t.Errorf("got %v", err)
	}
}
