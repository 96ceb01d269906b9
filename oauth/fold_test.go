package oauth_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/ssobridge/ssobridge/oauth"
	"github.com/ssobridge/ssobridge/oauth/store"
)

// failedAlike returns the traces whose failed step names failure, and how many sign-ins they
// stand for: each itself, and those folded into it.
func (f *fixture) failedAlike(failure string) (traces []*store.Trace, signIns int) {
	f.t.Helper()
	f.srv.FlushTraces(f.t.Context())
	all, err := f.store.ListTraces(f.t.Context(), time.Time{}, 1<<20)
	if err != nil {
		f.t.Fatal(err)
	}
	for _, tr := range all {
		for _, st := range tr.Steps {
			if st.Failure == failure {
				traces = append(traces, tr)
				signIns++
				if tr.Folded != nil {
					signIns += tr.Folded.Count
				}
				break
			}
		}
	}
	return traces, signIns
}

// failAtCallback starts a sign-in and brings the browser back from GitLab, whose token endpoint
// then fails as the fixture makes it; it returns the callback's answer.
func (f *fixture) failAtCallback(state string) *http.Response {
	f.t.Helper()
	resp := f.get(f.toCallback(f.authorizeQuery(state)).String())
	if resp.StatusCode < 500 || resp.Header.Get(oauth.HeaderTraceID) == "" {
		f.t.Fatalf("the callback answered %d, trace %q; want a failure of GitLab's, traced", resp.StatusCode, resp.Header.Get(oauth.HeaderTraceID))
	}
	return resp
}

// During an upstream outage every sign-in fails the same way, each in a trace of its own: without
// folding, they evict within seconds the one trace of a different failure that an administrator
// needs. The failures alike fold into one trace (one a window) with their count, and the other
// failure's trace stays, while the metric counts every failure.
func TestAnOutagesRepeatedFailuresFoldIntoOneTraceAndARealFailureStays(t *testing.T) {
	fixtureConfig = func(c *oauth.Config) { c.MaxTraces = 20 }
	defer func() { fixtureConfig = nil }()
	eachStore(t, func(t *testing.T, f *fixture) {
		// One sign-in meets a 502 at GitLab's token endpoint: a real failure, to be looked into.
		f.upstreamTokens.tokenStatus.Store(http.StatusBadGateway)
		real := f.failAtCallback("real").Header.Get(oauth.HeaderTraceID)
		f.upstreamTokens.tokenStatus.Store(0)
		failure, _, _ := failureOf(t, f.traceOf(real))
		if failure == "upstream_unreachable" {
			t.Fatalf("GitLab's 502 is named %q, as the outage's failures are", failure)
		}

		// Then GitLab goes down, and ten times the cap of sign-ins fail alike.
		before := f.failedCounts()["/oauth/callback upstream_unreachable"]
		const outage = 200
		f.upstreamTokens.down.Store(true)
		for range outage {
			f.failAtCallback("outage")
		}
		f.upstreamTokens.down.Store(false)

		if failed, _, _ := failureOf(t, f.traceOf(real)); failed != failure {
			t.Errorf("the real failure's trace now names %q, want %q", failed, failure)
		}
		traces, signIns := f.failedAlike("upstream_unreachable")
		// One window, or two if the outage straddled the end of one.
		if len(traces) == 0 || len(traces) > 2 || signIns != outage {
			t.Errorf("%d sign-ins failing alike left %d traces standing for %d sign-ins; want 1 (or 2 across windows) for all %d",
				outage, len(traces), signIns, outage)
		}
		for _, tr := range traces {
			if names := stepNames(tr); len(names) < 2 || names[0] != "authorize" {
				t.Errorf("the first trace of the outage's failure is not whole: steps %q", names)
			}
		}
		// The list says as much: its counts add up to every sign-in of the outage.
		admin := httptest.NewServer(f.srv.AdminHandler(""))
		defer admin.Close()
		listed := 0
		for _, row := range decodeJSON(t, readBody(t, f.get(admin.URL+"/debug/traces")))["traces"].([]any) {
			if row := row.(map[string]any); row["failure"] == "upstream_unreachable" {
				listed++
				if folded, ok := row["folded"].(map[string]any); ok {
					listed += int(folded["count"].(float64))
				}
			}
		}
		if listed != outage {
			t.Errorf("the list of traces counts %d sign-ins of the outage, want %d", listed, outage)
		}
		if got := f.failedCounts()["/oauth/callback upstream_unreachable"] - before; got != outage {
			t.Errorf("ssobridge_logins_failed_total counted %v of the outage's %d failures", got, outage)
		}
	})
}

// Sign-ins failing alike at once are each counted: the first is kept, and the count on it is
// every other, however their trace writes interleave.
func TestSignInsFailingAlikeAtOnceAreEachCountedInTheirFold(t *testing.T) {
	eachStore(t, func(t *testing.T, f *fixture) {
		// Each in a browser of its own, as the people are.
		const n = racers * 4
		f.upstreamTokens.down.Store(true)
		replies := race(n, func() reply {
			b := newBrowser()
			rep := sendWith(b, mustRequest(f.bridge.URL+"/oauth/authorize?"+f.authorizeQuery("s").Encode()))
			for range 2 { // to GitLab, and back to the bridge's callback
				if rep.status != http.StatusFound {
					return rep
				}
				rep = sendWith(b, mustRequest(rep.header.Get("Location")))
			}
			return rep
		})
		for _, rep := range replies {
			if rep.status != http.StatusBadGateway {
				t.Fatalf("a callback with GitLab down answered %d", rep.status)
			}
		}
		if traces, signIns := f.failedAlike("upstream_unreachable"); len(traces) == 0 || len(traces) > 2 || signIns != n {
			t.Errorf("%d sign-ins failing alike at once left %d traces standing for %d sign-ins, want all %d", n, len(traces), signIns, n)
		}
	})
}

// A client's request on a sign-in that reached it (here Mattermost's user request, which asks
// GitLab each time) fails in the trace of the whole sign-in: folding it would delete that story,
// and appending to it evicts nothing. Such failures never fold.
func TestAFailureAfterTheClientHasItsCodeNeverFoldsTheSignInsTrace(t *testing.T) {
	fixtureConfig = liveUser
	defer func() { fixtureConfig = nil }()
	eachStore(t, func(t *testing.T, f *fixture) {
		var traces []string
		var tokens []string
		for range 3 {
			token, trace := f.signInTraced("s")
			tokens, traces = append(tokens, token), append(traces, trace)
		}
		f.upstreamTokens.down.Store(true)
		for _, token := range tokens {
			if resp := f.get(f.bridge.URL+"/api/v4/user", "Authorization", "Bearer "+token); resp.StatusCode < 500 {
				t.Fatalf("/api/v4/user with GitLab down answered %d", resp.StatusCode)
			}
		}
		for _, id := range traces {
			tr := f.traceOf(id)
			if failure, _, _ := failureOf(t, tr); failure != "upstream_unreachable" || tr["folded"] != nil {
				t.Errorf("trace %s: failure %q, folded %v; want its own upstream_unreachable, nothing folded", id, failure, tr["folded"])
			}
		}
	})
}

func stepNames(tr *store.Trace) []string {
	names := make([]string, len(tr.Steps))
	for i, st := range tr.Steps {
		names[i] = st.Step
	}
	return names
}

func mustRequest(rawURL string) *http.Request {
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		panic(err)
	}
	return req
}
