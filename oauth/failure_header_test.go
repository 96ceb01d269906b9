package oauth_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/ssobridge/ssobridge/oauth"
	"github.com/ssobridge/ssobridge/oauth/signin"
)

// A probe reads what went wrong from the answer's headers, whatever its shape: a page, a
// redirect to the client, OAuth's JSON or GitLab's message JSON.
func TestErrorAnswersNameTheirFailureInAHeader(t *testing.T) {
	f := newFixture(t)
	unregistered := f.authorizeQuery("s")
	unregistered.Set("redirect_uri", "https://elsewhere.example.com/signup/gitlab/complete")
	badScope := f.authorizeQuery("s")
	badScope.Set("scope", "api")
	for _, tt := range []struct {
		name string
		get  func() *http.Response
		want *signin.Failure
	}{
		{"a page", func() *http.Response { return f.authorize(unregistered) }, signin.RedirectURINotRegistered},
		{"a redirect to the client", func() *http.Response { return f.authorize(badScope) }, signin.ScopeNotAllowed},
		{"OAuth's JSON", func() *http.Response {
			resp, _ := f.postToken(f.tokenForm("no-such-code"))
			return resp
		}, signin.CodeUnknown},
		{"GitLab's message JSON", func() *http.Response { return f.get(f.bridge.URL + "/api/v4/user") }, signin.TokenMissing},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp := tt.get()
			if resp.StatusCode < 300 {
				t.Fatalf("status %d, want an error answer", resp.StatusCode)
			}
			if got := resp.Header.Get(oauth.HeaderFailure); got != tt.want.Name() {
				t.Errorf("%s: %q, want %q", oauth.HeaderFailure, got, tt.want.Name())
			}
		})
	}
}

// A browser's request gets the page; a request that asks for JSON first gets what the page says,
// as JSON, with the trace a browser would be shown.
func TestErrorPagesAnswerJSONWhenJSONIsAskedForFirst(t *testing.T) {
	f := newFixture(t)
	q := f.authorizeQuery("s")
	q.Set("redirect_uri", "https://elsewhere.example.com/signup/gitlab/complete")
	target := f.bridge.URL + "/oauth/authorize?" + q.Encode()

	page := f.get(target, "Accept", "text/html,application/xhtml+xml,application/json;q=0.9,*/*;q=0.8")
	if ct := page.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("a browser's request: %s, want the page", ct)
	}

	resp := f.get(target, "Accept", "application/json")
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusBadRequest || !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("%d %s, want 400 JSON", resp.StatusCode, ct)
	}
	var got oauth.PageJSON
	if err := json.Unmarshal([]byte(readBody(t, resp)), &got); err != nil {
		t.Fatal(err)
	}
	if got.Failure != signin.RedirectURINotRegistered.Name() || got.Error != signin.RedirectURINotRegistered.Code() ||
		!strings.Contains(got.Description, "elsewhere.example.com") || got.Title == "" || got.Fix == "" {
		t.Errorf("%+v", got)
	}
	if trace := resp.Header.Get(oauth.HeaderTraceID); trace == "" || got.TraceID != trace {
		t.Errorf("trace_id %q, X-Trace-Id %q: want the same id", got.TraceID, trace)
	}
}
