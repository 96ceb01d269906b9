package oauth_test

import (
	"bufio"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ssobridge/ssobridge/gitlabapi"
	"github.com/ssobridge/ssobridge/oauth"
)

// failedCounts reads ssobridge_logins_failed_total from the operators' handler, by endpoint and
// reason ("endpoint reason").
func (f *fixture) failedCounts() map[string]float64 {
	f.t.Helper()
	f.srv.FlushTraces(f.t.Context())
	admin := httptest.NewServer(f.srv.AdminHandler(""))
	defer admin.Close()
	body := readBody(f.t, f.get(admin.URL+"/metrics"))
	counts := make(map[string]float64)
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		m := failedLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		n, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			f.t.Fatalf("metrics line %q: %v", sc.Text(), err)
		}
		counts[m[1]+" "+m[2]] = n
	}
	return counts
}

var failedLine = regexp.MustCompile(`^ssobridge_logins_failed_total\{endpoint="([^"]*)",reason="([^"]*)"\} (\S+)$`)

// Every reason the metric counts a failed sign-in under is a failure name of the traces: a closed
// set, whatever the requests, the applications' names or GitLab's answers held.
func TestEveryFailedSignInIsCountedUnderAKnownFailureName(t *testing.T) {
	f := newFixture(t)
	hostile := `evil"} 1` + "\n" + `<script>` + strings.Repeat("x", 300)
	// An application whose name would have become part of the label.
	ruled := f.registerRuled(oauth.AppSpec{AllowedUsers: []string{"grace"}})
	f.get(f.toCallback(ruled).String())

	q := f.authorizeQuery("s")
	q.Set("client_id", hostile)
	f.authorize(q)
	q = f.authorizeQuery("s")
	q.Del("client_id")
	f.authorize(q)
	q = f.authorizeQuery("s")
	q.Set("response_type", hostile)
	f.authorize(q)
	q = f.authorizeQuery("s")
	q.Set("code_challenge", "short")
	f.authorize(q)
	f.get(f.bridge.URL + "/oauth/authorize?client_id=%zz")
	// GitLab sending back an error of its own making.
	cb := f.toCallback(f.authorizeQuery("s"))
	cbq := cb.Query()
	cbq.Del("code")
	cbq.Set("error", hostile)
	cb.RawQuery = cbq.Encode()
	f.get(cb.String())
	f.get(f.bridge.URL + "/oauth/callback?state=" + url.QueryEscape(hostile) + "&code=x")
	f.get(f.bridge.URL + "/oauth/callback")
	// GitLab down at the callback: a page titled for every upstream failure alike.
	cb = f.toCallback(f.authorizeQuery("s"))
	f.upstreamTokens.down.Store(true)
	f.get(cb.String())
	f.upstreamTokens.down.Store(false)

	code := f.code()
	f.postToken(f.tokenForm(code))
	f.postToken(f.tokenForm(code))
	v := f.tokenForm(f.code())
	v.Set("client_secret", "wrong")
	f.postToken(v)
	v = f.tokenForm(f.code())
	v.Set("redirect_uri", "https://mm.example.com/login/gitlab/complete")
	f.postToken(v)
	f.postToken(f.tokenForm(hostile))
	v = f.tokenForm("x")
	v.Set("grant_type", hostile)
	f.postToken(v)
	f.postToken(f.refreshForm(hostile))
	f.postToken(url.Values{"grant_type": {"authorization_code"}, "code": {"x"}, "redirect_uri": {mmRedirect}})

	f.getUser()
	f.getUser("Authorization", "Bearer "+strings.ReplaceAll(hostile, "\n", " "))

	counts := f.failedCounts()
	known := oauth.FailureNames()
	endpoints := []string{"/oauth/authorize", "/oauth/callback", "/oauth/consent", "/oauth/token", "/api/v4/user"}
	for series := range counts {
		endpoint, reason, _ := strings.Cut(series, " ")
		if !slices.Contains(endpoints, endpoint) {
			t.Errorf("a failure counted at %q, not a sign-in endpoint", endpoint)
		}
		if !slices.Contains(known, reason) {
			t.Errorf("a failure counted under %q, which no trace names", reason)
		}
		if reason == "unnamed" {
			t.Errorf("a failure at %s has no name of its own", endpoint)
		}
	}
	for _, want := range []string{
		"/oauth/authorize unknown_client", "/oauth/authorize client_id_missing", "/oauth/authorize response_type_unsupported",
		"/oauth/authorize pkce_challenge_invalid", "/oauth/authorize malformed_query",
		"/oauth/callback user_not_allowed", "/oauth/callback upstream_authorize_error", "/oauth/callback state_unknown",
		"/oauth/callback state_missing", "/oauth/callback upstream_unreachable",
		"/oauth/token code_replayed", "/oauth/token wrong_client_secret", "/oauth/token redirect_uri_mismatch",
		"/oauth/token code_unknown", "/oauth/token grant_type_unsupported", "/oauth/token refresh_token_unknown",
		"/oauth/token client_auth_missing",
		"/api/v4/user token_missing", "/api/v4/user token_unknown",
	} {
		if counts[want] == 0 {
			t.Errorf("no failure counted as %q; counted: %v", want, counts)
		}
	}
}

// The metric counts a failed sign-in under the name its trace gives the failure, for each
// failure the traces name.
func TestAFailedSignInIsCountedUnderItsTracesFailure(t *testing.T) {
	tests := []struct {
		name     string
		endpoint string
		provoke  func(f *fixture) string // the trace id
	}{
		{"GitLab unreachable at the callback", "/oauth/callback", func(f *fixture) string {
			cb := f.toCallback(f.authorizeQuery("s"))
			f.upstreamTokens.down.Store(true)
			return f.get(cb.String()).Header.Get(oauth.HeaderTraceID)
		}},
		{"GitLab rejecting the bridge's client", "/oauth/callback", func(f *fixture) string {
			cb := f.toCallback(f.authorizeQuery("s"))
			up := f.upstream
			up.Secret = "gloas-rotated"
			f.gl.AddApplication(up)
			return f.get(cb.String()).Header.Get(oauth.HeaderTraceID)
		}},
		{"a person GitLab blocks", "/oauth/callback", func(f *fixture) string {
			cb := f.toCallback(f.authorizeQuery("s"))
			f.gl.SetUserState("ada", gitlabapi.StateBlocked)
			return f.get(cb.String()).Header.Get(oauth.HeaderTraceID)
		}},
		{"a person the application does not admit", "/oauth/callback", func(f *fixture) string {
			return f.get(f.toCallback(f.registerRuled(oauth.AppSpec{AllowedUsers: []string{"grace"}})).String()).Header.Get(oauth.HeaderTraceID)
		}},
		{"a code replayed", "/oauth/token", func(f *fixture) string {
			code := f.code()
			f.postToken(f.tokenForm(code))
			resp, _ := f.postToken(f.tokenForm(code))
			return resp.Header.Get(oauth.HeaderTraceID)
		}},
		{"a code redeemed by another client", "/oauth/token", func(f *fixture) string {
			resp, _ := f.postToken(f.asOtherClient(f.tokenForm(f.code())))
			return resp.Header.Get(oauth.HeaderTraceID)
		}},
		{"a token request with another redirect_uri", "/oauth/token", func(f *fixture) string {
			v := f.tokenForm(f.code())
			v.Set("redirect_uri", "https://mm.example.com/login/gitlab/complete")
			resp, _ := f.postToken(v)
			return resp.Header.Get(oauth.HeaderTraceID)
		}},
		{"GitLab no longer accepting the bridge's token for the person", "/api/v4/user", func(f *fixture) string {
			tok := f.accessToken()
			f.gl.RevokeTokens("ada")
			return f.get(f.bridge.URL+"/api/v4/user", "Authorization", "Bearer "+tok).Header.Get(oauth.HeaderTraceID)
		}},
	}
	fixtureConfig = liveUser
	defer func() { fixtureConfig = nil }()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			failure, _, _ := failureOf(t, f.traceOf(tt.provoke(f)))
			counts := f.failedCounts()
			if counts[tt.endpoint+" "+failure] != 1 {
				t.Errorf("the trace names %q, and the metric counted %v", failure, counts)
			}
		})
	}
}

// A stalled sign-in is counted once it has stalled, under its stall's name and the endpoint it
// never reached; a sign-in that goes on is not.
func TestAStalledSignInIsCounted(t *testing.T) {
	fixtureConfig = func(c *oauth.Config) { c.StallAfter = 50 * time.Millisecond }
	defer func() { fixtureConfig = nil }()
	f := newFixture(t)
	// Never back from GitLab: the browser is sent there and nothing follows.
	f.authorize(f.authorizeQuery("a"))
	// Never redeemed: the browser is sent back with a code.
	f.toClient(f.authorizeQuery("b"))
	// Never fetched: Mattermost redeems its code and asks nothing more.
	f.postToken(f.tokenForm(f.code()))
	// A whole sign-in, and one that failed: neither stalls.
	f.userStatus(f.tokens()["access_token"].(string))
	v := f.tokenForm(f.code())
	v.Set("client_secret", "wrong")
	f.postToken(v)

	want := map[string]float64{
		"/oauth/callback never_back_from_gitlab":  1,
		"/oauth/token client_never_redeemed_code": 1,
		"/api/v4/user client_never_fetched_user":  1,
		"/oauth/token wrong_client_secret":        1,
	}
	var counts map[string]float64
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if counts = f.failedCounts(); len(counts) >= len(want) {
			break
		}
	}
	time.Sleep(200 * time.Millisecond) // long enough for a stall counted twice, or wrongly, to show
	if counts = f.failedCounts(); !mapsEqual(counts, want) {
		t.Errorf("failures counted %v, want %v", counts, want)
	}
}

func mapsEqual(a, b map[string]float64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
