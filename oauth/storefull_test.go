package oauth_test

import (
	"context"
	"encoding/json"
	"html"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ssobridge/ssobridge/oauth/store"
	"github.com/ssobridge/ssobridge/oauth/store/memstore"
	"github.com/ssobridge/ssobridge/oauth/store/redisstore"
	"github.com/ssobridge/ssobridge/oauth/store/storetest"
)

// redisFixture is a bridge on the redis-server r.
func redisFixture(t *testing.T, r *storetest.Redis) *fixture {
	t.Helper()
	opts, err := redisstore.ParseURL(r.URL())
	if err != nil {
		t.Fatal(err)
	}
	return newFixtureOn(t, redisstore.New(redis.NewUniversalClient(opts), ""), []string{"read_user"})
}

// pageTrace is the trace id a bridge page names, and what its paragraph says.
var pageTrace = regexp.MustCompile(`<p class="status" id="trace">(.*?)<code>([^<]+)</code>(.*?)</p>`)

// keptStepsLogged returns the log lines of trace steps the store did not keep, of trace id.
func (f *fixture) keptStepsLogged(id string) []map[string]any {
	f.t.Helper()
	f.srv.FlushTraces(f.t.Context())
	var lines []map[string]any
	for line := range strings.SplitSeq(f.logs.String(), "\n") {
		var l map[string]any
		if json.Unmarshal([]byte(line), &l) == nil && l["msg"] == "sign-in trace step not kept" && l["trace_id"] == id {
			lines = append(lines, l)
		}
	}
	return lines
}

// A Redis at its maxmemory under noeviction refuses every write: the bridge names that
// store_full, not a store that does not answer, on the page a browser meets at the callback, in
// the token endpoint's error_description, in the log and the metrics; the trace steps it cannot
// keep are logged under the page's trace id. Nothing was written: once Redis has room, the same
// code is redeemed.
func TestAFullRedisIsNamedStoreFullOnThePageAndInTheTokenJSON(t *testing.T) {
	r := storetest.StartRedis(t)
	f := redisFixture(t, r)
	code := f.code()                                // a sign-in whose code waits for Mattermost
	callback := f.toCallback(f.authorizeQuery("s")) // a person on their way back from GitLab
	r.Fill()

	resp := f.get(callback.String())
	page := readBody(t, resp)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" ||
		!strings.Contains(page, "store_full") || !strings.Contains(page, "maxmemory") || strings.Contains(page, "not answering") {
		t.Fatalf("the callback on a full Redis: %d (Retry-After %q); want a 503 page naming store_full and maxmemory, with Retry-After:\n%s",
			resp.StatusCode, resp.Header.Get("Retry-After"), page)
	}
	m := pageTrace.FindStringSubmatch(page)
	if m == nil || m[2] != resp.Header.Get("X-Trace-Id") {
		t.Fatalf("the page names trace %v, its X-Trace-Id is %q", m, resp.Header.Get("X-Trace-Id"))
	}

	tokResp, body := f.postToken(f.tokenForm(code))
	desc, _ := body["error_description"].(string)
	if tokResp.StatusCode != http.StatusServiceUnavailable || body["error"] != "temporarily_unavailable" || tokResp.Header.Get("Retry-After") == "" ||
		!strings.Contains(desc, "store_full") || !strings.Contains(desc, "maxmemory") || strings.Contains(desc, "not answering") {
		t.Fatalf("the token request on a full Redis: %d %v (Retry-After %q); want 503 temporarily_unavailable whose description names store_full and maxmemory",
			tokResp.StatusCode, body, tokResp.Header.Get("Retry-After"))
	}

	for _, id := range []string{m[2], tokResp.Header.Get("X-Trace-Id")} {
		steps := f.keptStepsLogged(id)
		if len(steps) == 0 || steps[len(steps)-1]["failure"] != "store_full" {
			t.Errorf("the log's steps of trace %s, which Redis could not keep: %v; want its last naming store_full", id, steps)
		}
	}
	if logs := f.logs.String(); !strings.Contains(logs, `"failure":"store_full"`) {
		t.Errorf("no log line names store_full:\n%s", logs)
	}
	for _, line := range []string{
		`ssobridge_logins_failed_total{endpoint="/oauth/callback",reason="store_full"} 1`,
		`ssobridge_logins_failed_total{endpoint="/oauth/token",reason="store_full"} 1`,
		`ssobridge_store_errors_total{failure="store_full"} 2`,
		`ssobridge_store_errors_total{failure="store_unavailable"} 0`,
	} {
		if !f.metric(t, line) {
			t.Errorf("the metrics lack %s", line)
		}
	}

	r.Unfill()
	if resp, body := f.postToken(f.tokenForm(code)); resp.StatusCode != http.StatusOK {
		t.Fatalf("the code once Redis has room: %d %v; want 200: nothing was written while it was full", resp.StatusCode, body)
	}
}

// fullForCodes is a store that is full for the token endpoint's take of a code, and keeps traces:
// the trace of a store_full failure names it.
type fullForCodes struct{ store.Store }

func (fullForCodes) TakeCode(context.Context, store.Ref, string) (*store.Taken, error) {
	return nil, store.ErrFull
}

func TestAStoreFullFailureIsNamedInItsTrace(t *testing.T) {
	f := newFixtureOn(t, fullForCodes{memstore.New()}, []string{"read_user"})
	resp, body := f.postToken(f.tokenForm(f.code()))
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body["error_description"].(string), "store_full") {
		t.Fatalf("a full store at the token endpoint: %d %v", resp.StatusCode, body)
	}
	failure, _, fix := failureOf(t, f.traceOf(resp.Header.Get("X-Trace-Id")))
	if failure != "store_full" || !strings.Contains(fix, "maxmemory") || !strings.Contains(fix, "deploy/REDIS.md") {
		t.Errorf("the trace says %s (fix %q); want store_full, with maxmemory and deploy/REDIS.md in its fix", failure, fix)
	}
}

// traceRefusingStore refuses to keep traces, as a full store does, and keeps everything else.
type traceRefusingStore struct{ store.Store }

func (traceRefusingStore) AddTraceSteps(context.Context, []store.TraceAppend, time.Duration, int) error {
	return store.ErrFull
}

// A page whose trace the store could not keep says so, and where its steps are: the bridge's log,
// under the id it gives; a page whose trace is kept gives the id to replay as before.
func TestAPageWhoseTraceCouldNotBeKeptSaysSo(t *testing.T) {
	unknownClient := func(f *fixture) (id, para string) {
		t.Helper()
		q := f.authorizeQuery("s")
		q.Set("client_id", "nobody")
		resp := f.get(f.bridge.URL + "/oauth/authorize?" + q.Encode())
		m := pageTrace.FindStringSubmatch(readBody(t, resp))
		if resp.StatusCode != http.StatusBadRequest || m == nil || m[2] != resp.Header.Get("X-Trace-Id") {
			t.Fatalf("an unknown client: %d, trace paragraph %v, X-Trace-Id %q", resp.StatusCode, m, resp.Header.Get("X-Trace-Id"))
		}
		return m[2], html.UnescapeString(m[1] + m[3])
	}

	t.Run("kept", func(t *testing.T) {
		f := newFixture(t)
		id, para := unknownClient(f)
		if !strings.Contains(para, "replay this sign-in") || strings.Contains(para, "not be kept") || !f.hasTrace(id) {
			t.Errorf("a page whose trace is kept says %q (trace kept: %v)", para, f.hasTrace(id))
		}
	})

	t.Run("refused by the store", func(t *testing.T) {
		f := newFixtureOn(t, traceRefusingStore{memstore.New()}, []string{"read_user"})
		first, _ := unknownClient(f)
		if len(f.keptStepsLogged(first)) == 0 {
			t.Fatalf("the steps of trace %s, which the store refused, are not in the log:\n%s", first, f.logs.String())
		}
		id, para := unknownClient(f) // once the store has refused a trace
		if !strings.Contains(para, "may not be kept (the store is full)") || !strings.Contains(para, "the bridge's log has its steps") || strings.Contains(para, "replay") {
			t.Errorf("a page whose trace the store refuses says %q; want that it may not be kept because the store is full, and that the log has its steps", para)
		}
		steps := f.keptStepsLogged(id)
		if len(steps) != 1 || steps[0]["failure"] != "unknown_client" || steps[0]["level"] != "WARN" {
			t.Errorf("the log's steps of trace %s: %v; want its one step, unknown_client, at WARN", id, steps)
		}
	})

	t.Run("full Redis", func(t *testing.T) {
		r := storetest.StartRedis(t)
		f := redisFixture(t, r)
		r.Fill()
		resp := f.get(f.bridge.URL + "/oauth/authorize?" + f.authorizeQuery("s").Encode())
		m := pageTrace.FindStringSubmatch(readBody(t, resp))
		if resp.StatusCode != http.StatusServiceUnavailable || m == nil || !strings.Contains(html.UnescapeString(m[1]), "may not be kept (the store is full)") {
			t.Fatalf("a sign-in started on a full Redis: %d, trace paragraph %v", resp.StatusCode, m)
		}
		if steps := f.keptStepsLogged(m[2]); len(steps) == 0 {
			t.Errorf("the steps of trace %s are not in the log", m[2])
		}
	})
}
