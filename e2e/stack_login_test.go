package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ssobridge/ssobridge/mattermost"
	"github.com/ssobridge/ssobridge/oauth"
)

// These tests run in both modes of startStack (stack_test.go).

// noRedirects is a client that shows the bridge's answers as they are.
var noRedirects = &http.Client{Timeout: 20 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func TestStackSignsMattermostIn(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	// The person the compose file gives the emulator, as Mattermost makes an account of them.
	want := mattermost.User{AuthService: "gitlab", AuthData: "42", ID: 42, Username: "ada", Email: "ada@example.com", FirstName: "Ada", LastName: "Lovelace"}
	users := env(service(t, e2eProject(t), "gitlab"))["SSOBRIDGE_EMULATOR_USERS"]
	if s.GitLabUser != want.Username || !slices.Contains(strings.Split(users, ","), "42:ada:Ada Lovelace:ada@example.com") {
		t.Fatalf("the emulator signs in %q among %q; this test expects %+v", s.GitLabUser, users, want)
	}

	mm := &mattermost.Client{Settings: s.Mattermost, SiteURL: s.MattermostURL}
	if err := mm.Settings.Validate(); err != nil {
		t.Fatalf("Mattermost's GitLab settings would fail: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	res, err := mm.Login(ctx)
	if err != nil {
		t.Fatalf("Mattermost's sign-in through the bridge: %v", err)
	}
	if *res.User != want {
		t.Errorf("Mattermost would sign in\n %+v\nwant\n %+v", *res.User, want)
	}
	if res.SignupError != nil {
		t.Errorf("Mattermost would refuse to create the account: %v", res.SignupError)
	}
	if back := res.RedirectedTo; !strings.HasPrefix(back, s.MattermostURL+mattermost.SignupCompletePath+"?") {
		t.Errorf("the bridge sent the browser back to %s; want Mattermost's %s", back, mattermost.SignupCompletePath)
	}
}

var tracePara = regexp.MustCompile(`id="trace">Trace <code>([^<]+)</code>`)

func TestStackRefusesAnUnregisteredRedirectURIWithATrace(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	q := url.Values{"response_type": {"code"}, "client_id": {s.Mattermost.Id},
		"redirect_uri": {s.MattermostURL + "/not/registered"}, "state": {"e2e"}}
	resp, err := noRedirects.Get(s.Mattermost.AuthEndpoint + "?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("an unregistered redirect URI got %s (%s), want a 400 page that never redirects:\n%s", resp.Status, resp.Header.Get("Content-Type"), body)
	}
	m := tracePara.FindSubmatch(body)
	if m == nil {
		t.Fatalf("the page gives no trace id:\n%s", body)
	}
	id := html.UnescapeString(string(m[1]))
	if h := resp.Header.Get(oauth.HeaderTraceID); h != id {
		t.Errorf("the page names trace %q, the %s header %q", id, oauth.HeaderTraceID, h)
	}

	if s.AdminURL == "" {
		t.Skip("compose mode without SSOBRIDGE_E2E_BRIDGE_ADMIN_URL: the operators' listener (/debug/traces) is not reachable from the runner (deploy/e2e.env opens it as BRIDGE_ADMIN_LISTEN=:9090)")
	}
	req, _ := http.NewRequest(http.MethodGet, s.AdminURL+"/debug/traces/"+url.PathEscape(id), nil)
	req.Header.Set("Authorization", "Bearer "+s.AdminToken)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var trace struct {
		Outcome string `json:"outcome"`
		Failure string `json:"failure"`
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/debug/traces/%s: %s: %s", id, resp.Status, raw)
	}
	if err := json.Unmarshal(raw, &trace); err != nil {
		t.Fatalf("/debug/traces/%s: %v: %s", id, err, raw)
	}
	if trace.Failure != "redirect_uri_not_registered" {
		t.Errorf("the trace names failure %q (outcome %q); want redirect_uri_not_registered:\n%s", trace.Failure, trace.Outcome, raw)
	}
}

func TestStackBridgeIsReady(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	if s.AdminURL == "" {
		t.Skip("compose mode without SSOBRIDGE_E2E_BRIDGE_ADMIN_URL: the operators' listener (/readyz) is not reachable from the runner; it started only once the bridge's health check found the bridge ready")
	}
	resp, err := http.Get(s.AdminURL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var ready struct {
		Status string            `json:"status"`
		Checks map[string]string `json:"checks"`
	}
	if err := json.Unmarshal(raw, &ready); err != nil {
		t.Fatalf("/readyz: %s: %v: %s", resp.Status, err, raw)
	}
	if resp.StatusCode != http.StatusOK || ready.Status != "ready" || ready.Checks["store"] != "ok" || ready.Checks["gitlab"] != "ok" {
		t.Errorf("/readyz: %s: %s; want ready, with Redis and GitLab ok", resp.Status, raw)
	}
}

// TestComposeStackSignsIntoMattermost signs in to the real Mattermost through the bridge and the
// GitLab emulator, as a browser does. Only compose mode has a Mattermost to sign in to.
func TestComposeStackSignsIntoMattermost(t *testing.T) {
	if !composeMode() {
		t.Skip("needs the compose e2e stack: docker compose --env-file deploy/e2e.env --profile e2e up --exit-code-from e2e")
	}
	s := startStack(t)

	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	var hops []string
	client := &http.Client{Jar: jar, Timeout: 60 * time.Second, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		hops = append(hops, req.URL.Scheme+"://"+req.URL.Host+req.URL.Path)
		if len(via) > 20 {
			return errors.New("more than 20 redirects")
		}
		return nil
	}}
	resp, err := client.Get(s.MattermostURL + "/oauth/gitlab/login")
	if err != nil {
		t.Fatalf("signing in: %v (redirects: %v)", err, hops)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || strings.HasPrefix(resp.Request.URL.Path, "/error") {
		t.Fatalf("signing in ended at %s with %s (redirects: %v)", resp.Request.URL, resp.Status, hops)
	}
	for _, want := range []string{s.BridgeURL + mattermost.AuthorizePath, s.GitLabURL + "/oauth/authorize",
		oauth.CallbackURLFor(s.BridgeURL), s.MattermostURL + mattermost.SignupCompletePath} {
		if !slices.Contains(hops, want) {
			t.Errorf("the sign-in did not pass %s (redirects: %v)", want, hops)
		}
	}

	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, s.MattermostURL+"/api/v4/users/me", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Requested-With", "XMLHttpRequest")
	var me struct {
		Username    string `json:"username"`
		AuthService string `json:"auth_service"`
	}
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("Mattermost has no session after the sign-in: /api/v4/users/me answered %s: %s", resp.Status, body)
	}
	if err := json.Unmarshal(body, &me); err != nil {
		t.Fatal(err)
	}
	if me.Username != s.GitLabUser || (me.AuthService != "" && me.AuthService != "gitlab") {
		t.Errorf("Mattermost signed in %q (auth service %q); want %q through GitLab SSO", me.Username, me.AuthService, s.GitLabUser)
	}
}
