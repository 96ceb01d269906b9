package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ssobridge/ssobridge/mattermost"
)

func TestSummarizeTakesTheNearestRank(t *testing.T) {
	var d []time.Duration
	for i := 100; i >= 1; i-- {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	if got, want := summarize(d), (LatencyStats{Count: 100, P50: 50, P90: 90, P99: 99, Max: 100}); got != want {
		t.Errorf("1..100 ms: got %+v, want %+v", got, want)
	}
	if got, want := summarize([]time.Duration{1500 * time.Microsecond}), (LatencyStats{Count: 1, P50: 1.5, P90: 1.5, P99: 1.5, Max: 1.5}); got != want {
		t.Errorf("one sample: got %+v, want %+v", got, want)
	}
	if got := summarize(nil); got != (LatencyStats{}) {
		t.Errorf("no sample: got %+v", got)
	}
}

// With a count, the phase starts exactly that many operations however many workers race for
// them, counts the failures by kind, and keeps no sample when told not to (the warmup).
func TestRunPhaseStartsTheCountAndCountsFailuresByKind(t *testing.T) {
	var n atomic.Int64
	op := func(ctx context.Context, _ int) error {
		if n.Add(1)%3 == 0 {
			return &mattermost.TokenError{Reason: mattermost.ErrTokenRequestFailed, Status: 503, URL: fmt.Sprintf("http://b/oauth/token?n=%d", n.Load())}
		}
		return nil
	}
	p := runPhase(context.Background(), 4, 30, 0, false, op)
	if p.completed != 20 || p.errors != 10 || n.Load() != 30 {
		t.Errorf("completed %d, failed %d of %d started; want 20, 10 of 30", p.completed, p.errors, n.Load())
	}
	if want := map[string]int64{"token: token request failed (HTTP 503)": 10}; fmt.Sprint(p.byKind) != fmt.Sprint(want) {
		t.Errorf("by kind %v, want %v", p.byKind, want)
	}
	if len(p.total) != 0 {
		t.Errorf("kept %d samples of a phase not kept", len(p.total))
	}

	p = runPhase(context.Background(), 2, 0, 50*time.Millisecond, true, func(context.Context, int) error { return nil })
	if p.completed == 0 || len(p.total) != int(p.completed) {
		t.Errorf("a timed phase: %d completed, %d samples", p.completed, len(p.total))
	}
}

// An operation stopped by the end of the run is not a failure.
func TestRunPhaseDoesNotCountOperationsStoppedByTheEnd(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	p := runPhase(ctx, 3, 0, time.Hour, true, func(ctx context.Context, _ int) error {
		cancel()
		<-ctx.Done()
		return ctx.Err()
	})
	if p.errors != 0 || len(p.byKind) != 0 || p.completed != 0 {
		t.Errorf("errors %d %v, completed %d; want none", p.errors, p.byKind, p.completed)
	}
}

// Each request is charged to the step its host and path name, up to the end of its body: the
// bridge's authorize, callback, token and user endpoints, anything at another host to GitLab, and
// any other path of the bridge to "other".
func TestRunPhaseChargesEachRequestToItsStep(t *testing.T) {
	answer := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, `{"id":1}`) })
	bridgeSrv, gitlabSrv := httptest.NewServer(answer), httptest.NewServer(answer)
	defer bridgeSrv.Close()
	defer gitlabSrv.Close()
	bridge, _ := url.Parse(bridgeSrv.URL)
	tg := &target{bridge: bridge, client: mattermost.Client{Settings: mattermost.SettingsForBridge(bridgeSrv.URL, "id", "secret")}}
	client := &http.Client{Transport: newStepTransport(tg, 2)}
	s := tg.client.Settings
	urls := []string{s.AuthEndpoint, gitlabSrv.URL + "/oauth/authorize", bridgeSrv.URL + "/oauth/callback", s.TokenEndpoint, s.UserAPIEndpoint, bridgeSrv.URL + "/favicon.ico"}
	op := func(ctx context.Context, _ int) error {
		for _, u := range urls {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return nil
	}
	p := runPhase(context.Background(), 2, 10, 0, true, op)
	if p.completed != 10 {
		t.Fatalf("completed %d, by kind %v", p.completed, p.byKind)
	}
	for s := range numSteps {
		if len(p.steps[s]) != 10 {
			t.Errorf("step %s: %d samples, want 10", stepNames[s], len(p.steps[s]))
		}
	}
	if err := fetchUser(context.Background(), client, &tg.client, "token"); err != nil {
		t.Errorf("fetchUser of a JSON user: %v", err)
	}
}

// An error's kind keeps its step, reason and HTTP status but not the URL, state or body that
// make every message different, so that one cause is one line of the result.
func TestErrorKindKeepsStepReasonAndStatusOnly(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{&mattermost.BrowserError{Reason: mattermost.ErrStoppedAtPage, Status: 502, URL: "http://b/oauth/authorize", Title: "Bad gateway"}, "browser: the sign-in stopped at a page (HTTP 502)"},
		{fmt.Errorf("login: %w", &mattermost.BrowserError{Reason: mattermost.ErrBrowserRequest, Err: errors.New("dial tcp 127.0.0.1:1: connection refused")}), "browser: the browser's request failed"},
		{&mattermost.CallbackError{Reason: mattermost.ErrAccessDenied, OAuthError: "access_denied", Description: "blocked", URL: "http://mm/x"}, "callback: access denied: access_denied"},
		{&mattermost.CallbackError{Reason: mattermost.ErrStateMismatch, SentState: "a", ReturnedState: "b"}, "callback: invalid state"},
		{&mattermost.TokenError{Reason: mattermost.ErrTokenRequestFailed, Status: 400, OAuthError: "invalid_grant", Body: `{"error":"invalid_grant"}`}, "token: token request failed: invalid_grant (HTTP 400)"},
		{&mattermost.UserError{Reason: mattermost.ErrUserResponse, Status: 401, Body: []byte("no")}, "user: invalid response from the user endpoint (HTTP 401)"},
		{fmt.Errorf("waiting: %w", context.DeadlineExceeded), "timeout"},
		{errors.New("something else"), "something else"},
	} {
		if got := errorKind(c.err); got != c.want {
			t.Errorf("errorKind(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}

func TestFetchUserRefusesWhatIsNotAUser(t *testing.T) {
	for body, status := range map[string]int{`{"id":1}`: http.StatusUnauthorized, `<html>`: http.StatusOK, `{"message":"x"}`: http.StatusOK} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(status)
			_, _ = io.WriteString(w, body)
		}))
		mm := &mattermost.Client{Settings: mattermost.SettingsForBridge(srv.URL, "id", "secret")}
		err := fetchUser(context.Background(), srv.Client(), mm, "t")
		srv.Close()
		if err == nil || !strings.HasPrefix(err.Error(), "/api/v4/user: ") {
			t.Errorf("%d %s: got %v, want an error naming /api/v4/user", status, body, err)
		}
	}
}

// user mode's request is Mattermost's, headers and all, as the mattermost package makes it.
func TestFetchUserMakesMattermostsRequest(t *testing.T) {
	var got http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		_, _ = io.WriteString(w, `{"id":1,"username":"ada"}`)
	}))
	defer srv.Close()
	mm := &mattermost.Client{Settings: mattermost.SettingsForBridge(srv.URL, "id", "secret")}
	if err := fetchUser(context.Background(), srv.Client(), mm, "tok"); err != nil {
		t.Fatal(err)
	}
	want, _ := mm.UserRequest(context.Background(), "tok")
	for _, h := range []string{"Authorization", "Content-Type", "Accept", "User-Agent"} {
		if got.Get(h) == "" || got.Get(h) != want.Header.Get(h) {
			t.Errorf("%s: %q, want Mattermost's %q", h, got.Get(h), want.Header.Get(h))
		}
	}
}
