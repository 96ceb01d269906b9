package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ssobridge/ssobridge/mattermost"
	"github.com/ssobridge/ssobridge/oauth"
	"github.com/ssobridge/ssobridge/oauth/store/storetest"
)

// These tests run the ssobridge binary as `ssobridge serve` in front of the OpenID provider peer
// (e2e/oidcprovider), on a redis-server of its own, as a deployment with SSOBRIDGE_OIDC_* (or a
// providers file) runs it, and sign in to it as Mattermost does: its authorize URL, its token
// request and its /api/v4/user request, exactly as mattermost.Client makes them, and a browser
// that signs in at the provider's pages.

const (
	// oidcStackFirstID is the bridge's SSOBRIDGE_OIDC_FIRST_ID, not the default, so that an id
	// at or above it is the setting's doing.
	oidcStackFirstID = 2_000_000_000
	// The bridge's client at the peer, and Mattermost's application at the bridge.
	oidcStackClientID     = "ssobridge"
	oidcStackClientSecret = "e2e-oidc-client-secret-not-for-production"
	oidcStackAppID        = "e2e0000000000000000000000000000000000000000000000000000000000003"
	oidcStackAppSecret    = "gloas-e2e-oidc-mattermost-secret-not-for-production"
	oidcStackKey          = "e2e1e2e1e2e1e2e1e2e1e2e1e2e1e2e1e2e1e2e1e2e1e2e1e2e1e2e1e2e1e2e1"
)

// oidcStack is the bridge binary with its Redis and the peer; the bridge runs while a test (or
// subtest) that called start runs.
type oidcStack struct {
	peer      *oidcPeer
	redisURL  string
	bridgeURL string
	adminURL  string
	// env is the bridge's whole environment.
	env map[string]string
	mm  *mattermost.Client
	// gitlabURL is the GitLab emulator's, when the bridge has it too (withGitLab).
	gitlabURL string
	// ports holds the bridge's ports until start, so that no process started before it (the
	// GitLab emulator, another test's) is given one of them.
	ports *loopbackAddrs
}

// newOIDCStack starts the peer, with the bridge registered at it as a client, and a fresh Redis
// holding Mattermost's application; the bridge itself is started by start.
func newOIDCStack(t *testing.T) *oidcStack {
	t.Helper()
	l := newLoopbackAddrs(nil)
	t.Cleanup(l.release)
	listen, admin := l.addr(t, "bridge", "8080"), l.addr(t, "bridge", "9090")
	s := &oidcStack{bridgeURL: "http://" + listen, adminURL: "http://" + admin, ports: l}
	s.peer = startOIDCProvider(t, oidcClient{ID: oidcStackClientID, Secret: oidcStackClientSecret,
		RedirectURIs: []string{oauth.CallbackURLFor(s.bridgeURL)}})
	s.redisURL = storetest.RedisURL(t)
	registerMattermost(t, s.redisURL, siteURL, oidcStackAppID, oidcStackAppSecret)
	s.env = map[string]string{
		"SSOBRIDGE_LISTEN":             listen,
		"SSOBRIDGE_ADMIN_LISTEN":       admin,
		"SSOBRIDGE_PUBLIC_URL":         s.bridgeURL,
		"SSOBRIDGE_REDIS_URL":          s.redisURL,
		"SSOBRIDGE_ENCRYPTION_KEY":     oidcStackKey,
		"SSOBRIDGE_OIDC_ISSUER":        s.peer.Issuer,
		"SSOBRIDGE_OIDC_CLIENT_ID":     oidcStackClientID,
		"SSOBRIDGE_OIDC_CLIENT_SECRET": oidcStackClientSecret,
		"SSOBRIDGE_OIDC_FIRST_ID":      strconv.Itoa(oidcStackFirstID),
		"SSOBRIDGE_LOG_LEVEL":          "debug",
	}
	s.mm = &mattermost.Client{Settings: mattermost.SettingsForBridge(s.bridgeURL, oidcStackAppID, oidcStackAppSecret), SiteURL: siteURL}
	if err := s.mm.Settings.Validate(); err != nil {
		t.Fatalf("Mattermost's GitLab settings would fail: %v", err)
	}
	return s
}

// withGitLab runs the GitLab emulator, signing in gitlabUser (ID:USERNAME:NAME:EMAIL) at every
// authorize request, and gives the bridge a providers file listing it (gitlab, "GitLab") and
// then the peer (oidc, "Company account"), in place of SSOBRIDGE_OIDC_*.
func (s *oidcStack) withGitLab(t *testing.T, gitlabUser string) {
	t.Helper()
	listen := s.ports.addr(t, "gitlab", "8081")
	s.ports.releaseService("gitlab")
	s.gitlabURL = "http://" + listen
	const id, secret = "e2e0000000000000000000000000000000000000000000000000000000000004", "gloas-e2e-oidc-gitlab-secret-not-for-production"
	login := strings.Split(gitlabUser, ":")[1]
	startProcess(t, "gitlab", buildBinary(t), []string{"gitlab-emulator"}, map[string]string{
		"SSOBRIDGE_EMULATOR_LISTEN":        listen,
		"SSOBRIDGE_EMULATOR_PUBLIC_URL":    s.gitlabURL,
		"SSOBRIDGE_EMULATOR_CLIENT_ID":     id,
		"SSOBRIDGE_EMULATOR_CLIENT_SECRET": secret,
		"SSOBRIDGE_EMULATOR_REDIRECT_URI":  oauth.CallbackURLFor(s.bridgeURL),
		"SSOBRIDGE_EMULATOR_USERS":         gitlabUser,
		"SSOBRIDGE_EMULATOR_SIGN_IN":       login,
	}, s.gitlabURL+"/.well-known/openid-configuration")

	file := filepath.Join(t.TempDir(), "providers.yaml")
	yaml := fmt.Sprintf(`providers:
  - name: gitlab
    type: gitlab
    display_name: GitLab
    url: %s
    client_id: %s
    client_secret: %s
  - name: oidc
    type: oidc
    display_name: Company account
    issuer: %s
    client_id: %s
    client_secret: %s
`, s.gitlabURL, id, secret, s.peer.Issuer, oidcStackClientID, oidcStackClientSecret)
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	for k := range s.env {
		if strings.HasPrefix(k, "SSOBRIDGE_OIDC_") && k != "SSOBRIDGE_OIDC_FIRST_ID" {
			delete(s.env, k)
		}
	}
	s.env["SSOBRIDGE_PROVIDERS_FILE"] = file
}

// start runs `ssobridge serve` until t ends, and waits until it is ready: Redis and every
// provider answer it.
func (s *oidcStack) start(t *testing.T) {
	t.Helper()
	s.ports.release()
	startProcess(t, "bridge", buildBinary(t), []string{"serve"}, s.env, s.adminURL+"/readyz")
}

// ssobridge runs the binary's command args against the bridge's Redis, and returns its output.
func (s *oidcStack) ssobridge(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(buildBinary(t), args...)
	cmd.Env = environ(map[string]string{"SSOBRIDGE_REDIS_URL": s.redisURL, "SSOBRIDGE_ENCRYPTION_KEY": oidcStackKey})
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("ssobridge %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// signInAs says who signs in, and how.
type signInAs struct {
	// login is the account at the OpenID provider peer.
	login string
	// provider is the button pressed on the bridge's chooser; the chooser is an error without it.
	provider string
	// state is Mattermost's state; empty: one as Mattermost makes it for its login button.
	state string
}

// signInResult is how a sign-in went.
type signInResult struct {
	state string
	// chooser is the chooser's buttons (provider name, label), when the bridge showed it.
	chooser map[string]string
	// traceID is the sign-in's trace, from the last X-Trace-Id the bridge answered with.
	traceID string
	// stopped is the page the browser stopped at, when the bridge (or the provider) did not send
	// it back to Mattermost; the sign-in then ends there.
	stopped *mattermost.Page
	// back is the redirect to Mattermost, and user and raw what Mattermost got from the bridge's
	// /api/v4/user with the code's token.
	back *url.URL
	user *mattermost.User
	raw  []byte
}

// signIn signs a person in to Mattermost through the bridge in a browser of its own (a fresh
// cookie jar: the provider knows nobody). It fails the test where Mattermost would fail a
// sign-in the bridge sent back to it, and where the bridge or the provider answered what no
// step of a sign-in answers; a page of the bridge it returns as stopped.
//
// signedIn is signIn for a sign-in that must complete: a page it stops at fails the test with
// what the page says.
func (s *oidcStack) signedIn(t *testing.T, as signInAs) *signInResult {
	t.Helper()
	res := s.signIn(t, as)
	if res.stopped != nil || res.user == nil {
		if res.stopped != nil {
			t.Fatalf("%s's sign-in stopped at %s (%d): %s", as.login, res.stopped.URL, res.stopped.Status, pageText(res.stopped.Body))
		}
		t.Fatalf("%s's sign-in ended without a user", as.login)
	}
	return res
}

func (s *oidcStack) signIn(t *testing.T, as signInAs) *signInResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	res := &signInResult{state: as.state}
	if res.state == "" {
		res.state, _ = mattermost.NewState(mattermost.ActionLogin)
	}
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: 20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	bridge, site, peer := parseURL(t, "bridge", s.bridgeURL), parseURL(t, "site", siteURL), parseURL(t, "issuer", s.peer.Issuer)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.mm.AuthorizeURL(res.state), nil)
	for range 20 {
		resp, err := browser.Do(req)
		if err != nil {
			t.Fatalf("signing in as %s: %v", as.login, err)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		atBridge := resp.Request.URL.Host == bridge.Host
		if id := resp.Header.Get(oauth.HeaderTraceID); atBridge && id != "" {
			res.traceID = id
		}
		if loc, err := resp.Location(); err == nil && resp.StatusCode >= 300 && resp.StatusCode < 400 {
			if loc.Host == site.Host {
				res.back = loc
				break
			}
			req, _ = http.NewRequestWithContext(ctx, http.MethodGet, loc.String(), nil)
			continue
		}
		page := &mattermost.Page{URL: resp.Request.URL, Status: resp.StatusCode, Header: resp.Header, Body: body}
		forms := htmlForms(body)
		switch {
		case atBridge && resp.StatusCode == http.StatusOK && len(forms) == 1 && forms[0].action == "/oauth/choose":
			if res.chooser != nil {
				t.Fatalf("the chooser came twice:\n%s", pageText(body))
			}
			res.chooser = chooserButtons(forms[0])
			if as.provider == "" {
				t.Fatalf("the bridge asked which provider, and this sign-in names none:\n%s", pageText(body))
			}
			forms[0].values.Set("upstream", as.provider)
			action, _ := resp.Request.URL.Parse(forms[0].action)
			req, _ = http.NewRequestWithContext(ctx, http.MethodPost, action.String(), strings.NewReader(forms[0].values.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		case resp.Request.URL.Host == peer.Host && resp.StatusCode == http.StatusOK:
			out, err := s.peer.signIn(browser, resp.Request.URL.String(), as.login)
			if err != nil {
				t.Fatalf("signing in as %s at the OpenID provider: %v", as.login, err)
			}
			req, _ = http.NewRequestWithContext(ctx, http.MethodGet, out.String(), nil)
		case atBridge:
			res.stopped = page
			return res
		default:
			t.Fatalf("the sign-in stopped at %s (%d): %s", resp.Request.URL, resp.StatusCode, pageText(body))
		}
	}
	if res.back == nil {
		t.Fatal("the sign-in did not come back to Mattermost in 20 steps")
	}

	// What Mattermost does with the redirect: the state it sent must come back, then the code
	// is redeemed and the user read.
	q := res.back.Query()
	if !strings.HasPrefix(res.back.String(), s.mm.RedirectURI()+"?") || q.Get("code") == "" {
		t.Fatalf("the bridge sent the browser back to %s; want Mattermost's %s with a code", res.back, s.mm.RedirectURI())
	}
	if got := q.Get("state"); got != res.state {
		t.Fatalf("Mattermost sent the state\n %q\nand got back\n %q", res.state, got)
	}
	tok, err := s.mm.Exchange(ctx, q.Get("code"))
	if err != nil {
		t.Fatalf("Mattermost's token request: %v", err)
	}
	res.user, res.raw, err = s.mm.FetchUser(ctx, tok.AccessToken)
	if err != nil {
		t.Fatalf("Mattermost's user request: %v", err)
	}
	return res
}

// chooserButtons are a chooser form's buttons: provider name to label.
func chooserButtons(f *htmlForm) map[string]string {
	buttons := map[string]string{}
	for _, b := range f.buttons {
		if b.name == "upstream" {
			buttons[b.value] = b.label
		}
	}
	return buttons
}

// bridgeTrace is what /debug/traces/{id} says of a sign-in.
type bridgeTrace struct {
	Outcome string      `json:"outcome"`
	Failure string      `json:"failure"`
	Steps   []traceStep `json:"steps"`
}

type traceStep struct {
	Step    string            `json:"step"`
	OK      bool              `json:"ok"`
	Failure string            `json:"failure"`
	Detail  map[string]string `json:"detail"`
}

// trace reads the bridge's trace id from its operators' listener until done says it holds what
// the test looks for, or 10 s have passed (the bridge writes traces in the background, in
// batches): it returns the last one read either way, and its JSON.
func (s *oidcStack) trace(t *testing.T, id string, done func(*bridgeTrace) bool) (*bridgeTrace, string) {
	t.Helper()
	if id == "" {
		t.Fatal("the bridge named no trace (no X-Trace-Id)")
	}
	var tr *bridgeTrace
	var raw []byte
	for deadline := time.Now().Add(10 * time.Second); ; {
		resp, err := http.Get(s.adminURL + "/debug/traces/" + url.PathEscape(id))
		if err != nil {
			t.Fatal(err)
		}
		raw, _ = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			tr = &bridgeTrace{}
			if err := json.Unmarshal(raw, tr); err != nil {
				t.Fatalf("/debug/traces/%s: %v\n%s", id, err, raw)
			}
			if done(tr) {
				return tr, string(raw)
			}
		}
		if time.Now().After(deadline) {
			if tr == nil {
				t.Fatalf("/debug/traces/%s: %s: %s", id, resp.Status, raw)
			}
			return tr, string(raw)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// gitlabUserFields reads a /api/v4/user body, numbers as they are written.
func gitlabUserFields(t *testing.T, raw []byte) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var fields map[string]any
	if err := dec.Decode(&fields); err != nil {
		t.Fatalf("/api/v4/user: %v: %s", err, raw)
	}
	return fields
}

func TestOIDCStackSignsAdaInWithAGitLabShapedUserAndHerStateIntact(t *testing.T) {
	t.Parallel()
	s := newOIDCStack(t)
	s.start(t)
	// Mattermost's state for its login button with a redirect_to, as it makes it: standard
	// base64, here with '+', '/' and '=' in it, which the bridge must send back as they were.
	props, _ := json.Marshal(map[string]string{"action": mattermost.ActionLogin, "isMobile": "false",
		"redirect_to": "/ada/channels/town-square?x=~", "token": strings.Repeat("ybndrfg8ejkmcpqxot1uwisza345h769", 2)})
	state := base64.StdEncoding.EncodeToString(props)
	if !strings.Contains(state, "+") || !strings.Contains(state, "/") || !strings.Contains(state, "=") {
		t.Fatalf("the state %s was meant to hold '+', '/' and '='", state)
	}

	res := s.signIn(t, signInAs{login: "ada", state: state})
	if res.stopped != nil {
		t.Fatalf("ada's sign-in stopped at %s (%d): %s", res.stopped.URL, res.stopped.Status, pageText(res.stopped.Body))
	}
	// signIn has checked, as Mattermost does, that the state came back as it was sent.

	fields := gitlabUserFields(t, res.raw)
	id, err := strconv.ParseInt(fmt.Sprint(fields["id"]), 10, 64)
	if _, isNumber := fields["id"].(json.Number); !isNumber || err != nil || id < oidcStackFirstID {
		t.Errorf("/api/v4/user id %#v: want an integer at or above SSOBRIDGE_OIDC_FIRST_ID (%d)", fields["id"], oidcStackFirstID)
	}
	for k, want := range map[string]string{"username": "ada", "name": "Ada Lovelace", "email": "ada@example.com", "state": "active"} {
		if fields[k] != want {
			t.Errorf("/api/v4/user %s %#v, want %q", k, fields[k], want)
		}
	}
	if _, ok := fields["avatar_url"]; !ok {
		t.Errorf("/api/v4/user has no avatar_url, which GitLab always sends: %s", res.raw)
	}
	want := mattermost.User{AuthService: "gitlab", AuthData: strconv.FormatInt(id, 10), ID: id, Username: "ada",
		Email: "ada@example.com", FirstName: "Ada", LastName: "Lovelace"}
	if *res.user != want {
		t.Errorf("Mattermost would sign in\n %+v\nwant\n %+v", *res.user, want)
	}
}

func TestOIDCStackKeepsEachPersonsIDAcrossSignInsAndARestart(t *testing.T) {
	t.Parallel()
	s := newOIDCStack(t)
	var ada, bob int64
	t.Run("first process", func(t *testing.T) {
		s.start(t)
		ada = s.signedIn(t, signInAs{login: "ada"}).user.ID
		if again := s.signedIn(t, signInAs{login: "ada"}).user.ID; again != ada {
			t.Errorf("ada's id was %d, and %d at her next sign-in", ada, again)
		}
		bob = s.signedIn(t, signInAs{login: "bob"}).user.ID
		if bob == ada || bob < oidcStackFirstID {
			t.Errorf("bob got the id %d, ada %d: want an id of his own, at or above %d", bob, ada, oidcStackFirstID)
		}
	})
	if ada == 0 {
		t.FailNow()
	}
	t.Run("a new process on the same Redis", func(t *testing.T) {
		s.start(t)
		if again := s.signedIn(t, signInAs{login: "ada"}).user.ID; again != ada {
			t.Errorf("ada's id was %d, and %d once the bridge was started again", ada, again)
		}
		if again := s.signedIn(t, signInAs{login: "bob"}).user.ID; again != bob {
			t.Errorf("bob's id was %d, and %d once the bridge was started again", bob, again)
		}
	})
}

func TestOIDCStackKeepsTheIDWhenTheEmailChangesAtTheProvider(t *testing.T) {
	t.Parallel()
	s := newOIDCStack(t)
	s.start(t)
	before := s.signIn(t, signInAs{login: "ada"}).user
	s.peer.setEmail(t, "ada", "ada.lovelace@example.org")
	after := s.signIn(t, signInAs{login: "ada"}).user
	if after.Email != "ada.lovelace@example.org" {
		t.Errorf("after the change at the provider Mattermost sees the email %q, want ada.lovelace@example.org", after.Email)
	}
	if after.ID != before.ID || after.AuthData != before.AuthData {
		t.Errorf("ada's id was %d (%q), and %d (%q) after her email changed", before.ID, before.AuthData, after.ID, after.AuthData)
	}
}

func TestOIDCStackRefusesAnUnverifiedEmailWithATrace(t *testing.T) {
	t.Parallel()
	s := newOIDCStack(t)
	s.start(t)
	res := s.signIn(t, signInAs{login: "eve"})
	if res.back != nil || res.stopped == nil {
		t.Fatalf("eve, whose email the provider has not verified, was sent back to Mattermost: %s", res.back)
	}
	page := res.stopped
	if page.URL.Path != oauth.CallbackPath || page.Status != http.StatusForbidden || !strings.Contains(pageText(page.Body), "not verified") {
		t.Errorf("eve's sign-in stopped at %s with %d, want the bridge's callback refusing with 403 and saying the email is not verified:\n%s",
			page.URL, page.Status, pageText(page.Body))
	}
	tr, raw := s.trace(t, res.traceID, func(tr *bridgeTrace) bool { return tr.Failure != "" })
	if tr.Failure != "email_unverified" {
		t.Errorf("the trace names failure %q (outcome %q), want email_unverified:\n%s", tr.Failure, tr.Outcome, raw)
	}
}

func TestOIDCStackGivesAnImportedMattermostUserTheirGitLabID(t *testing.T) {
	t.Parallel()
	s := newOIDCStack(t)
	// An export of Mattermost's users (mmctl user list --all --json): ada signed in with GitLab,
	// where her id was 42; carol signs in with a password.
	export := `[
  {"id": "kq8n6xk3n3g7mbgrd1x5uzo6ha", "create_at": 1700000000000, "update_at": 1700000000000, "delete_at": 0,
   "username": "ada", "auth_data": "42", "auth_service": "gitlab", "email": "ada@example.com", "nickname": "",
   "first_name": "Ada", "last_name": "Lovelace", "position": "", "roles": "system_user", "locale": "en"},
  {"id": "wq1sm3bdcfrqbc5n7o6kkzbh5e", "create_at": 1700000000000, "update_at": 1700000000000, "delete_at": 0,
   "username": "carol", "auth_data": "", "auth_service": "", "email": "carol@example.com", "nickname": "",
   "first_name": "Carol", "last_name": "Shaw", "position": "", "roles": "system_user", "locale": "en"}
]`
	file := filepath.Join(t.TempDir(), "users.json")
	if err := os.WriteFile(file, []byte(export), 0o600); err != nil {
		t.Fatal(err)
	}
	s.ssobridge(t, "identities", "import", "--provider", "oidc", file)
	s.start(t)

	res := s.signedIn(t, signInAs{login: "ada"})
	if res.user.ID != 42 || res.user.AuthData != "42" || res.user.Email != "ada@example.com" {
		t.Errorf("ada signed in as %+v, want the id 42 she had at GitLab", *res.user)
	}
	tr, raw := s.trace(t, res.traceID, func(tr *bridgeTrace) bool { return identityStep(tr) != nil })
	if step := identityStep(tr); step == nil || !strings.HasPrefix(step.Detail["binding"], "bound by email") || step.Detail["id"] != "42" {
		t.Errorf("the trace's identity step does not say ada was bound by email to 42:\n%s", raw)
	}
}

// identityStep is the trace's identity step, nil without one.
func identityStep(tr *bridgeTrace) *traceStep {
	for i := range tr.Steps {
		if tr.Steps[i].Step == "identity" {
			return &tr.Steps[i]
		}
	}
	return nil
}

func TestOIDCStackWithGitLabToo(t *testing.T) {
	t.Parallel()
	s := newOIDCStack(t)
	s.withGitLab(t, "7:grace:Grace Hopper:grace@example.com")
	s.start(t)
	wantChooser := map[string]string{"gitlab": "Sign in with GitLab", "oidc": "Sign in with Company account"}

	t.Run("the OpenID provider", func(t *testing.T) {
		res := s.signIn(t, signInAs{login: "ada", provider: "oidc"})
		if fmt.Sprint(res.chooser) != fmt.Sprint(wantChooser) {
			t.Errorf("the chooser offered %v, want %v", res.chooser, wantChooser)
		}
		if u := res.user; u.Username != "ada" || u.Email != "ada@example.com" || u.ID < oidcStackFirstID {
			t.Errorf("choosing the OpenID provider signed in %+v, want ada with an id the bridge gave", *u)
		}
	})
	t.Run("GitLab", func(t *testing.T) {
		res := s.signIn(t, signInAs{provider: "gitlab"})
		if fmt.Sprint(res.chooser) != fmt.Sprint(wantChooser) {
			t.Errorf("the chooser offered %v, want %v", res.chooser, wantChooser)
		}
		want := mattermost.User{AuthService: "gitlab", AuthData: "7", ID: 7, Username: "grace", Email: "grace@example.com", FirstName: "Grace", LastName: "Hopper"}
		if *res.user != want {
			t.Errorf("choosing GitLab signed in\n %+v\nwant GitLab's own\n %+v", *res.user, want)
		}
	})
}
