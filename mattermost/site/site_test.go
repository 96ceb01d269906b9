package site

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/ssobridge/ssobridge/mattermost"
)

func newSite(t *testing.T) (*Site, *httptest.Server) {
	t.Helper()
	s := New(mattermost.SettingsForBridge("https://bridge.example.com", "app-id", "secret"))
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	s.SetSiteURL(srv.URL)
	return s, srv
}

var noFollow = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func TestLoginSendsTheBrowserToTheAuthEndpointAsMattermostDoes(t *testing.T) {
	_, srv := newSite(t)
	resp, err := noFollow.Get(srv.URL + "/oauth/gitlab/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc.String(), "https://bridge.example.com/oauth/authorize?response_type=code&client_id=app-id&redirect_uri=") {
		t.Fatalf("got %d %s", resp.StatusCode, loc)
	}
	if loc.Query().Get("redirect_uri") != srv.URL+"/signup/gitlab/complete" {
		t.Errorf("redirect_uri %s", loc.Query().Get("redirect_uri"))
	}
	props, err := mattermost.StateProps(loc.Query().Get("state"))
	if err != nil {
		t.Fatal(err)
	}
	var cookie string
	for _, c := range resp.Cookies() {
		if c.Name == cookieName {
			cookie = c.Value
		}
	}
	if cookie == "" || props["token"] != cookie || props["action"] != "login" {
		t.Errorf("state %v and cookie %q do not pair", props, cookie)
	}
}

func TestCompleteRefusesWhatMattermostRefuses(t *testing.T) {
	_, srv := newSite(t)
	state, _ := mattermost.NewState(mattermost.ActionLogin)
	tests := []struct {
		name, query, cookie, says string
	}{
		{"access_denied", "error=access_denied&state=x", "", "access denied"},
		{"another error", "error=server_error", "", "missing code"},
		{"no code", "state=x", "", "missing code"},
		{"a state the browser did not start", "code=c&state=" + url.QueryEscape(state), "other-token", "invalid state"},
		{"no cookie", "code=c&state=" + url.QueryEscape(state), "", "invalid state"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, srv.URL+"/signup/gitlab/complete?"+tt.query, nil)
			if tt.cookie != "" {
				req.AddCookie(&http.Cookie{Name: cookieName, Value: tt.cookie})
			}
			resp, err := noFollow.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b := new(strings.Builder)
			_, _ = io.Copy(b, resp.Body)
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(b.String(), tt.says) {
				t.Errorf("got %d, want 400 saying %q:\n%s", resp.StatusCode, tt.says, b)
			}
		})
	}
}

func TestTheFinalPageLinksToTheSignInsTrace(t *testing.T) {
	bridge := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Trace-Id", "0123abcd")
		switch r.URL.Path {
		case "/oauth/token":
			_, _ = io.WriteString(w, `{"access_token":"at","token_type":"bearer","expires_in":7200,"scope":"read_user"}`)
		case "/api/v4/user":
			_, _ = io.WriteString(w, `{"id":42,"username":"ada","email":"ada@example.com","name":"Ada Lovelace","state":"active"}`)
		default:
			http.NotFound(w, r)
		}
	}))
	defer bridge.Close()
	s := New(mattermost.SettingsForBridge(bridge.URL, "app-id", "secret"))
	s.TraceURL = func(id string) string { return "http://127.0.0.1:9090/debug/traces/" + id + "?format=html" }
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	s.SetSiteURL(srv.URL)
	state, token := mattermost.NewState(mattermost.ActionLogin)
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/signup/gitlab/complete?code=c&state="+url.QueryEscape(state), nil)
	req.AddCookie(&http.Cookie{Name: cookieName, Value: token})
	resp, err := noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `<a id="trace" href="http://127.0.0.1:9090/debug/traces/0123abcd?format=html">See this sign-in's trace</a>`) {
		t.Errorf("the final page: %d\n%s", resp.StatusCode, body)
	}
}
