package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ssobridge/ssobridge/cmd/ssobridge/doctor"
	"github.com/ssobridge/ssobridge/gitlabapi"
	"github.com/ssobridge/ssobridge/gitlabapi/emulator"
	"github.com/ssobridge/ssobridge/mattermost"
	"github.com/ssobridge/ssobridge/oauth"
	"github.com/ssobridge/ssobridge/oauth/store"
	"github.com/ssobridge/ssobridge/oauth/store/memstore"
	"github.com/ssobridge/ssobridge/oauth/upstream"
	"github.com/ssobridge/ssobridge/oauth/upstream/openid"
)

// doctorStack is what `ssobridge doctor` is run against: a bridge in front of a GitLab emulator,
// with Mattermost registered at the bridge, and a fake Mattermost that answers its ping.
type doctorStack struct {
	gl        *emulator.Server
	gitlabURL string
	upstream  emulator.Application
	bridgeURL string
	siteURL   string
	app       *store.Application
	secret    string
	// srv and store are the bridge's, for what it kept of the doctor's requests.
	srv   *oauth.Server
	store store.Store
}

type stackOptions struct {
	// password makes GitLab ask for a sign-in at its form, as a real GitLab does, instead of
	// signing the emulator's user in by itself.
	password string
	// untrusted registers Mattermost without the trusted flag, so the bridge asks for consent.
	untrusted bool
	// signupOnly registers only the redirect URI Mattermost sends, not the login one.
	signupOnly bool
}

func newDoctorStack(t *testing.T, opts stackOptions) *doctorStack {
	t.Helper()
	gl := emulator.New()
	gl.AddUser(emulator.User{ID: 42, Username: "ada", Name: "Ada Lovelace", Email: "ada@example.com", Password: opts.password})
	if opts.password != "" {
		gl.SignIn("") // GitLab asks for a sign-in at its form
	} else {
		gl.SignIn("ada")
	}
	gitlab := httptest.NewServer(gl.Handler())
	t.Cleanup(gitlab.Close)

	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v4/system/ping" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("X-Version-Id", "10.11.0")
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"ActiveSearchBackend":"database","AndroidLatestVersion":"","status":"OK"}`)
	}))
	t.Cleanup(site.Close)

	// The bridge's address must be known before its callback is registered at GitLab.
	bridge := httptest.NewUnstartedServer(nil)
	public := "http://" + bridge.Listener.Addr().String()
	upstreamApp := gl.AddApplication(emulator.Application{Name: "ssobridge", RedirectURIs: []string{oauth.CallbackURLFor(public)},
		Scopes: []string{"read_user"}, Confidential: true, Trusted: true})
	up, err := gitlabapi.NewClient(gitlabapi.Config{URL: gitlab.URL, ClientID: upstreamApp.UID, ClientSecret: upstreamApp.Secret,
		Scopes: []string{"read_user"}, RedirectURL: oauth.CallbackURLFor(public)})
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := oauth.NewSealer(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	st := memstore.New()
	t.Cleanup(func() { st.Close() })
	srv, err := oauth.New(oauth.Config{PublicURL: public, Store: st, Upstreams: []upstream.CallbackProvider{up}, Sealer: sealer})
	if err != nil {
		t.Fatal(err)
	}
	bridge.Config.Handler = srv.Handler()
	bridge.Start()
	t.Cleanup(bridge.Close)

	redirects := mattermost.RedirectURIs(site.URL)
	if opts.signupOnly {
		redirects = redirects[:1]
	}
	app, secret, err := oauth.NewApplication(oauth.AppSpec{Name: "Mattermost", RedirectURIs: redirects,
		Scopes: []string{"read_user"}, Trusted: !opts.untrusted, Confidential: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateApp(t.Context(), app); err != nil {
		t.Fatal(err)
	}
	return &doctorStack{gl: gl, gitlabURL: gitlab.URL, upstream: upstreamApp, bridgeURL: public, siteURL: site.URL, app: app, secret: secret,
		srv: srv, store: st}
}

// args are the flags of a doctor run that checks everything but the config file.
func (s *doctorStack) args(more ...string) []string {
	return append([]string{"--bridge-url", s.bridgeURL, "--app-id", s.app.ID, "--app-secret", s.secret,
		"--mattermost-url", s.siteURL, "--gitlab-url", s.gitlabURL, "--gitlab-client-id", s.upstream.UID}, more...)
}

// configFile writes a Mattermost config.json with these GitLab settings and Site URL.
func (s *doctorStack) configFile(t *testing.T, settings mattermost.Settings, siteURL string) string {
	t.Helper()
	doc := map[string]any{
		"ServiceSettings": map[string]any{"SiteURL": siteURL, "ListenAddress": ":8065"},
		"GitLabSettings":  settings,
	}
	b, err := json.MarshalIndent(doc, "", "    ")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// doctorRun runs the doctor with --json and returns its checks by name, in order, and its error.
func doctorRun(t *testing.T, args ...string) (map[string]doctor.Check, []doctor.Check, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := runDoctor(append(args, "--json", "--timeout", "5s"), &out, &errb)
	var report doctor.Report
	if jerr := json.Unmarshal(out.Bytes(), &report); jerr != nil {
		t.Fatalf("the report is not JSON: %v\nstdout: %s\nstderr: %s\nerr: %v", jerr, out.String(), errb.String(), err)
	}
	byName := map[string]doctor.Check{}
	for _, c := range report.Checks {
		byName[c.Name] = c
	}
	return byName, report.Checks, err
}

func wantStatus(t *testing.T, checks map[string]doctor.Check, name, status string, says ...string) doctor.Check {
	t.Helper()
	c, ok := checks[name]
	if !ok {
		t.Fatalf("no check %q in %v", name, checks)
	}
	if c.Status != status {
		t.Errorf("%s: %s, want %s\n  detail: %s\n  fix: %s", name, c.Status, status, c.Detail, c.Fix)
	}
	for _, s := range says {
		if !strings.Contains(c.Detail+"\n"+c.Fix, s) {
			t.Errorf("%s does not say %q\n  detail: %s\n  fix: %s", name, s, c.Detail, c.Fix)
		}
	}
	return c
}

func TestDoctorHealthySetUpPassesEveryCheckIncludingTheLogin(t *testing.T) {
	s := newDoctorStack(t, stackOptions{})
	config := s.configFile(t, mattermost.SettingsForBridge(s.bridgeURL, s.app.ID, s.secret), s.siteURL)
	checks, list, err := doctorRun(t, s.args("--mattermost-config", config, "--login")...)
	if err != nil {
		t.Errorf("doctor failed: %v", err)
	}
	if len(list) != 8 {
		t.Errorf("%d checks, want 8", len(list))
	}
	for _, c := range list {
		if c.Status != doctor.StatusPass {
			t.Errorf("%s: %s: %s (fix: %s)", c.Name, c.Status, c.Detail, c.Fix)
		}
	}
	wantStatus(t, checks, doctor.CheckLogin, doctor.StatusPass, "GitLab user 42", `"ada"`, `"ada@example.com"`, `"Ada"`, `"Lovelace"`)
	wantStatus(t, checks, doctor.CheckRedirects, doctor.StatusPass, s.siteURL+"/signup/gitlab/complete is registered", "/login/gitlab/complete is registered too")
	// The redirect URI probes were dry runs: the bridge kept the --login sign-in alone.
	s.srv.FlushTraces(t.Context())
	if traces, err := s.store.ListTraces(t.Context(), time.Time{}, 100); err != nil || len(traces) != 1 {
		t.Errorf("the bridge holds %d traces (%v) after the doctor's run; want the --login sign-in's alone", len(traces), err)
	}
	wantStatus(t, checks, doctor.CheckMattermost, doctor.StatusPass, "version 10.11.0")
	wantStatus(t, checks, doctor.CheckGitLabApp, doctor.StatusPass, "GitLab accepts the client ID "+s.upstream.UID)
}

func TestDoctorPrintsAnAlignedReportWithFixesUnderTheirCheck(t *testing.T) {
	s := newDoctorStack(t, stackOptions{})
	var out, errb bytes.Buffer
	err := runDoctor([]string{"--bridge-url", s.bridgeURL, "--app-id", s.app.ID, "--app-secret", "wrong", "--mattermost-url", s.siteURL}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "1 of 8 checks failed") {
		t.Errorf("err = %v, want 1 of 8 checks failed", err)
	}
	text := out.String()
	width := len(doctor.CheckGitLabApp)
	for _, want := range []string{
		fmt.Sprintf("PASS  %-*s  %s answers as the bridge", width, doctor.CheckBridge, s.bridgeURL),
		fmt.Sprintf("FAIL  %-*s  the bridge refused the ID\n", width, doctor.CheckCredentials),
		fmt.Sprintf("\n%s  fix: Compare the ID with `ssobridge apps show", strings.Repeat(" ", 4+2+width)),
		fmt.Sprintf("SKIP  %-*s  give --login", width, doctor.CheckLogin),
		"3 passed, 1 failed, 0 warnings, 4 skipped.",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the report lacks %q:\n%s", want, text)
		}
	}
	for _, line := range strings.Split(text, "\n") {
		if len(line) > 100 && strings.Contains(strings.TrimSpace(line), " ") {
			t.Errorf("line longer than 100 columns: %q", line)
		}
	}
}

func TestDoctorWrongSecretFailsTheCredentialsCheckWithTheFix(t *testing.T) {
	s := newDoctorStack(t, stackOptions{})
	args := s.args("--login")
	args[5] = "not-the-secret"
	checks, _, err := doctorRun(t, args...)
	if err == nil {
		t.Error("a failed check must make the doctor fail")
	}
	wantStatus(t, checks, doctor.CheckCredentials, doctor.StatusFail, "invalid_client", "ssobridge apps show "+s.app.ID, "ssobridge apps rotate-secret "+s.app.ID)
	// The ID is right, which the redirect check shows: the secret is at fault.
	wantStatus(t, checks, doctor.CheckRedirects, doctor.StatusPass)
	wantStatus(t, checks, doctor.CheckLogin, doctor.StatusSkip, doctor.CheckCredentials)
}

func TestDoctorUnknownApplicationIDFailsBothBridgeChecksAndTheRedirectCheckSaysWhich(t *testing.T) {
	s := newDoctorStack(t, stackOptions{})
	args := s.args()
	args[3] = "no-such-app"
	checks, _, _ := doctorRun(t, args...)
	wantStatus(t, checks, doctor.CheckCredentials, doctor.StatusFail, "invalid_client")
	wantStatus(t, checks, doctor.CheckRedirects, doctor.StatusFail, "the bridge has no application with the ID no-such-app", "ssobridge apps list")
}

func TestDoctorSiteURLWhoseRedirectURIIsNotRegisteredFailsAndNamesThePartThatDiffers(t *testing.T) {
	s := newDoctorStack(t, stackOptions{})
	otherSite := strings.Replace(s.siteURL, "127.0.0.1", "localhost", 1)
	args := s.args()
	args[7] = otherSite
	checks, _, err := doctorRun(t, args...)
	if err == nil {
		t.Error("a failed check must make the doctor fail")
	}
	wantStatus(t, checks, doctor.CheckRedirects, doctor.StatusFail,
		otherSite+"/signup/gitlab/complete",
		"its host differs from that of the registered redirect URI",
		"ssobridge apps update "+s.app.ID+" --mattermost-url "+otherSite)
}

func TestDoctorMissingLoginRedirectURIIsAWarning(t *testing.T) {
	s := newDoctorStack(t, stackOptions{signupOnly: true})
	checks, _, err := doctorRun(t, s.args()...)
	if err != nil {
		t.Errorf("a warning must not fail the doctor: %v", err)
	}
	wantStatus(t, checks, doctor.CheckRedirects, doctor.StatusWarn, s.siteURL+"/login/gitlab/complete is not registered",
		"ssobridge apps update "+s.app.ID+" --mattermost-url "+s.siteURL)
}

func TestDoctorUnreachableBridgeFailsTheFirstCheckAndSkipsTheRest(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	checks, list, err := doctorRun(t, "--bridge-url", closed, "--app-id", "id", "--app-secret", "secret")
	if err == nil {
		t.Error("a failed check must make the doctor fail")
	}
	wantStatus(t, checks, doctor.CheckBridge, doctor.StatusFail, "connection refused", "ssobridge serve")
	for _, c := range list[1:] {
		if c.Status != doctor.StatusSkip {
			t.Errorf("%s: %s, want SKIP (%s)", c.Name, c.Status, c.Detail)
		}
	}
	wantStatus(t, checks, doctor.CheckCredentials, doctor.StatusSkip, doctor.CheckBridge)
	wantStatus(t, checks, doctor.CheckRedirects, doctor.StatusSkip, doctor.CheckBridge)
}

func TestDoctorBridgeReachedUnderAnotherNameThanItsPublicURLFails(t *testing.T) {
	s := newDoctorStack(t, stackOptions{})
	other := strings.Replace(s.bridgeURL, "127.0.0.1", "localhost", 1)
	checks, _, _ := doctorRun(t, "--bridge-url", other, "--app-id", s.app.ID, "--app-secret", s.secret)
	wantStatus(t, checks, doctor.CheckBridge, doctor.StatusFail, "calls itself "+s.bridgeURL, "SSOBRIDGE_PUBLIC_URL="+other, "--bridge-url "+s.bridgeURL)
	// The bridge answers all the same, so the checks that need it still run.
	wantStatus(t, checks, doctor.CheckCredentials, doctor.StatusPass)
}

func TestDoctorConfigWithOpenIDScopeFailsTheConfigCheck(t *testing.T) {
	s := newDoctorStack(t, stackOptions{})
	settings := mattermost.SettingsForBridge(s.bridgeURL, s.app.ID, s.secret)
	settings.Scope = "openid read_user"
	config := s.configFile(t, settings, s.siteURL)
	// ID, secret and Site URL come from the file.
	checks, _, err := doctorRun(t, "--bridge-url", s.bridgeURL, "--mattermost-config", config)
	if err == nil {
		t.Error("a failed check must make the doctor fail")
	}
	wantStatus(t, checks, doctor.CheckConfig, doctor.StatusFail, "GitLabSettings.Scope", "OpenID Connect provider", "Leave Scope empty")
	wantStatus(t, checks, doctor.CheckCredentials, doctor.StatusPass, "the application ID, the secret, the Site URL from "+config)
	wantStatus(t, checks, doctor.CheckRedirects, doctor.StatusPass)
	wantStatus(t, checks, doctor.CheckMattermost, doctor.StatusPass)
}

func TestDoctorConfigPointingAtAnotherHostOrIDFails(t *testing.T) {
	s := newDoctorStack(t, stackOptions{})
	settings := mattermost.SettingsForBridge(s.gitlabURL, "another-id", s.secret)
	settings.Enable = false
	config := s.configFile(t, settings, s.siteURL)
	checks, _, _ := doctorRun(t, s.args("--mattermost-config", config)...)
	wantStatus(t, checks, doctor.CheckConfig, doctor.StatusFail,
		"GitLabSettings.Enable",
		"GitLabSettings.AuthEndpoint is "+s.gitlabURL+"/oauth/authorize, not the bridge's "+s.bridgeURL+"/oauth/authorize",
		"that is GitLab itself",
		"Set GitLabSettings.AuthEndpoint to "+s.bridgeURL+"/oauth/authorize, TokenEndpoint to "+s.bridgeURL+"/oauth/token, UserAPIEndpoint to "+s.bridgeURL+"/api/v4/user",
		"GitLabSettings.Id is another-id, but --app-id is "+s.app.ID)
}

func TestDoctorUnknownBridgeClientIDAtGitLabFailsTheGitLabApplicationCheck(t *testing.T) {
	s := newDoctorStack(t, stackOptions{})
	args := s.args()
	args[11] = "no-such-client"
	checks, _, err := doctorRun(t, args...)
	if err == nil {
		t.Error("a failed check must make the doctor fail")
	}
	wantStatus(t, checks, doctor.CheckGitLab, doctor.StatusPass)
	wantStatus(t, checks, doctor.CheckGitLabApp, doctor.StatusFail, `it answers "Client authentication failed due to unknown client, no client authentication included, or unsupported authentication method."`, "SSOBRIDGE_GITLAB_CLIENT_ID")
}

func TestDoctorJSONOutputParsesAndTheExitCodeIsOneOnFailure(t *testing.T) {
	s := newDoctorStack(t, stackOptions{})
	args := s.args("--json")
	args[5] = "not-the-secret"
	code, stdout, stderr := runCmd(t, append([]string{"doctor"}, args...)...)
	if code != 1 {
		t.Errorf("exit %d, want 1; stderr: %s", code, stderr)
	}
	var doc map[string][]map[string]string
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, stdout)
	}
	if len(doc) != 1 || len(doc["checks"]) != 8 {
		t.Fatalf("want {checks: [8 checks]}, got %s", stdout)
	}
	for _, c := range doc["checks"] {
		for _, k := range []string{"name", "status", "detail", "fix"} {
			if _, ok := c[k]; !ok {
				t.Errorf("check %v has no %q", c, k)
			}
		}
	}
	if !strings.Contains(stderr, "1 of 8 checks failed") {
		t.Errorf("stderr: %s", stderr)
	}

	code, _, stderr = runCmd(t, "doctor", "--bridge-url", s.bridgeURL, "--json")
	if code != 0 {
		t.Errorf("a set-up with nothing failed: exit %d, want 0; stderr: %s", code, stderr)
	}
}

func TestDoctorFillsGitLabsSignInFormWithTheTestUser(t *testing.T) {
	s := newDoctorStack(t, stackOptions{password: "correct horse"})

	checks, _, _ := doctorRun(t, s.args()...)
	// Without a session GitLab shows its sign-in before it looks at the application.
	wantStatus(t, checks, doctor.CheckGitLabApp, doctor.StatusSkip, "--test-user")

	checks, _, err := doctorRun(t, s.args("--login", "--test-user", "ada", "--test-password", "correct horse")...)
	if err != nil {
		t.Errorf("doctor failed: %v", err)
	}
	wantStatus(t, checks, doctor.CheckGitLabApp, doctor.StatusPass, "GitLab accepts the client ID")
	wantStatus(t, checks, doctor.CheckLogin, doctor.StatusPass, `"ada@example.com"`)
}

func TestDoctorLoginWithoutTestUserStopsAtGitLabsSignInAndSaysWhatToGive(t *testing.T) {
	s := newDoctorStack(t, stackOptions{password: "correct horse"})
	checks, _, _ := doctorRun(t, s.args("--login")...)
	wantStatus(t, checks, doctor.CheckLogin, doctor.StatusFail, "GitLab asks for a sign-in", "--test-user and --test-password")
}

func TestDoctorWrongTestPasswordFailsTheLoginQuotingGitLab(t *testing.T) {
	s := newDoctorStack(t, stackOptions{password: "correct horse"})
	checks, _, _ := doctorRun(t, "--bridge-url", s.bridgeURL, "--app-id", s.app.ID, "--app-secret", s.secret,
		"--mattermost-url", s.siteURL, "--login", "--test-user", "ada", "--test-password", "battery staple")
	wantStatus(t, checks, doctor.CheckLogin, doctor.StatusFail, `GitLab refused the sign-in of ada: "Invalid login or password."`)

	checks, _, _ = doctorRun(t, s.args("--test-user", "ada", "--test-password", "battery staple")...)
	wantStatus(t, checks, doctor.CheckGitLabApp, doctor.StatusFail, "Invalid login or password.")
}

func TestDoctorUntrustedApplicationFailsTheLoginAtTheConsentPage(t *testing.T) {
	s := newDoctorStack(t, stackOptions{untrusted: true})
	checks, _, _ := doctorRun(t, s.args("--login")...)
	wantStatus(t, checks, doctor.CheckLogin, doctor.StatusFail, "consent page", "ssobridge apps update "+s.app.ID+" --trusted")
}

func TestDoctorBridgeWithAWrongGitLabSecretFailsTheLoginWithTheBridgesPageAndTrace(t *testing.T) {
	s := newDoctorStack(t, stackOptions{})
	// The secret renewed at GitLab, and not in the bridge.
	renewed := s.upstream
	renewed.Secret = "gloas-renewed"
	s.gl.AddApplication(renewed)
	checks, _, _ := doctorRun(t, s.args("--login")...)
	// Only a whole sign-in reaches the bridge's token request to GitLab.
	wantStatus(t, checks, doctor.CheckGitLabApp, doctor.StatusPass)
	c := wantStatus(t, checks, doctor.CheckLogin, doctor.StatusFail, "the bridge stopped the sign-in at "+s.bridgeURL+"/oauth/callback", "(trace ")
	if c.Fix == "" {
		t.Error("the bridge's own fix is not passed on")
	}
}

func TestDoctorRefusesBadFlags(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		says string
	}{
		{"without a bridge URL", nil, "--bridge-url is required"},
		{"with a bridge URL without scheme", []string{"--bridge-url", "sso.example.com"}, "--bridge-url"},
		{"with a test user but no password", []string{"--bridge-url", "https://sso.example.com", "--test-user", "ada"}, "go together"},
		{"with --login but no Site URL", []string{"--bridge-url", "https://sso.example.com", "--login"}, "--login needs --mattermost-url"},
		{"with an OpenID issuer but no client id", []string{"--bridge-url", "https://sso.example.com", "--oidc-issuer", "https://id.example.com"}, "--oidc-issuer needs --oidc-client-id"},
		{"with an OpenID issuer and GitLab", []string{"--bridge-url", "https://sso.example.com", "--oidc-issuer", "https://id.example.com", "--oidc-client-id", "c",
			"--gitlab-url", "https://gitlab.example.com"}, "--oidc-issuer (or SSOBRIDGE_OIDC_ISSUER, which it defaults to) and --gitlab-url are both set"},
		{"with an OpenID issuer and a providers file", []string{"--bridge-url", "https://sso.example.com", "--oidc-issuer", "https://id.example.com", "--oidc-client-id", "c",
			"--providers-file", "providers.yaml"}, "--providers-file and --oidc-issuer"},
		{"with an OpenID issuer that is not a URL", []string{"--bridge-url", "https://sso.example.com", "--oidc-issuer", "id.example.com", "--oidc-client-id", "c"}, "not an https URL"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			err := runDoctor(tt.args, &out, &errb)
			if err == nil || !strings.Contains(err.Error(), tt.says) {
				t.Errorf("err = %v, want it to say %q", err, tt.says)
			}
		})
	}
}

// The emulator is an OpenID provider too (issuer: its URL); an application registered there
// with the openid scopes stands for the bridge's client at an OpenID provider.

// oidcClient registers the bridge's client at the stack's emulator as an OpenID provider, with
// these redirect URIs, and returns its client id.
func (s *doctorStack) oidcClient(redirectURIs ...string) string {
	return s.gl.AddApplication(emulator.Application{Name: "ssobridge-oidc", RedirectURIs: redirectURIs,
		Scopes: []string{"openid", "email", "profile"}, Confidential: true, Trusted: true}).UID
}

// oidcArgs are the flags of a doctor run that checks the bridge and an OpenID provider.
func (s *doctorStack) oidcArgs(issuer, clientID string) []string {
	return []string{"--bridge-url", s.bridgeURL, "--app-id", s.app.ID, "--app-secret", s.secret, "--mattermost-url", s.siteURL,
		"--oidc-issuer", issuer, "--oidc-client-id", clientID}
}

// oidcCheck is the name of the emulator's check as an OpenID provider: its host, as the
// provider has no display name.
func (s *doctorStack) oidcCheck() string {
	return fmt.Sprintf("upstream %q (oidc)", strings.TrimPrefix(s.gitlabURL, "http://"))
}

func TestDoctorOpenIDProviderWithItsIssuerKeysAndRedirectURIPassesEveryCheck(t *testing.T) {
	s := newDoctorStack(t, stackOptions{})
	callback := oauth.CallbackURLFor(s.bridgeURL)
	client := s.oidcClient(callback)
	checks, list, err := doctorRun(t, s.oidcArgs(s.gitlabURL, client)...)
	if err != nil {
		t.Errorf("doctor failed: %v", err)
	}
	for _, c := range list {
		if c.Status == doctor.StatusFail || c.Status == doctor.StatusWarn {
			t.Errorf("%s: %s: %s (fix: %s)", c.Name, c.Status, c.Detail, c.Fix)
		}
	}
	c := wantStatus(t, checks, s.oidcCheck(), doctor.StatusPass,
		"discovery: the discovery document at "+s.gitlabURL+"/.well-known/openid-configuration names the issuer "+s.gitlabURL,
		"signing keys: 1 key at "+s.gitlabURL+"/oauth/discovery/keys",
		"redirect URI: ", "accepts the client "+client+" with the redirect URI "+callback)
	if c.Fix != "" {
		t.Errorf("a passed check has a fix: %s", c.Fix)
	}
	// The OpenID provider replaces GitLab's check, and GitLab's application check says why it
	// does not run.
	if _, ok := checks[doctor.CheckGitLab]; ok {
		t.Errorf("the %q check runs beside the OpenID provider's", doctor.CheckGitLab)
	}
	wantStatus(t, checks, doctor.CheckGitLabApp, doctor.StatusSkip, "signs people in at its OpenID provider, not at GitLab")
	if got := list[5].Name; got != s.oidcCheck() {
		t.Errorf("check 6 is %q, want the provider's where GitLab's was", got)
	}
}

func TestDoctorOpenIDIssuerWithATrailingSlashFailsNamingTheIssuerToSet(t *testing.T) {
	s := newDoctorStack(t, stackOptions{})
	client := s.oidcClient(oauth.CallbackURLFor(s.bridgeURL))
	checks, _, err := doctorRun(t, s.oidcArgs(s.gitlabURL+"/", client)...)
	if err == nil {
		t.Error("a failed check must make the doctor fail")
	}
	c := wantStatus(t, checks, s.oidcCheck(), doctor.StatusFail, fmt.Sprintf("names the issuer %q, not %q", s.gitlabURL, s.gitlabURL+"/"))
	if want := "Set SSOBRIDGE_OIDC_ISSUER to exactly " + s.gitlabURL + ","; !strings.Contains(c.Fix, want) {
		t.Errorf("the fix does not say %q: %s", want, c.Fix)
	}
}

func TestDoctorOpenIDRedirectURINotRegisteredFailsWithTheURIToRegister(t *testing.T) {
	s := newDoctorStack(t, stackOptions{})
	callback := oauth.CallbackURLFor(s.bridgeURL)
	client := s.oidcClient("https://elsewhere.example.com/oauth/callback")
	checks, _, err := doctorRun(t, s.oidcArgs(s.gitlabURL, client)...)
	if err == nil {
		t.Error("a failed check must make the doctor fail")
	}
	c := wantStatus(t, checks, s.oidcCheck(), doctor.StatusFail, "discovery: ", "signing keys: ", "redirect URI: ", "invalid_redirect_uri")
	if want := "Register " + callback + " as a redirect URI of the bridge's client"; !strings.Contains(c.Fix, want) {
		t.Errorf("the fix does not say %q: %s", want, c.Fix)
	}
}

func TestDoctorUnreachableOpenIDIssuerFailsWithAFix(t *testing.T) {
	s := newDoctorStack(t, stackOptions{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	checks, _, err := doctorRun(t, s.oidcArgs(closed, "ssobridge")...)
	if err == nil {
		t.Error("a failed check must make the doctor fail")
	}
	c := wantStatus(t, checks, fmt.Sprintf("upstream %q (oidc)", ln.Addr().String()), doctor.StatusFail, "discovery: ", closed+"/.well-known/openid-configuration", "connection refused")
	if !strings.Contains(c.Fix, "SSOBRIDGE_OIDC_ISSUER") {
		t.Errorf("the fix does not name the setting to check: %q", c.Fix)
	}
}

func TestDoctorProvidersFileChecksEveryProviderWithoutTheirSecrets(t *testing.T) {
	s := newDoctorStack(t, stackOptions{})
	callback := oauth.CallbackURLFor(s.bridgeURL)
	good := s.oidcClient(callback)
	wrong := s.oidcClient("https://elsewhere.example.com/oauth/callback")
	// The secrets' files are the bridge's, which the doctor cannot read and does not need.
	file := filepath.Join(t.TempDir(), "providers.yaml")
	yaml := fmt.Sprintf(`providers:
  - name: gitlab
    type: gitlab
    display_name: GitLab
    url: %[1]s
    client_id: %[2]s
    client_secret_file: /nonexistent/gitlab
  - name: staff
    type: oidc
    display_name: Staff account
    issuer: %[1]s
    client_id: %[3]s
    client_secret_file: /nonexistent/staff
  - name: partners
    type: oidc
    display_name: Partner account
    issuer: %[1]s
    client_id: %[4]s
    client_secret_file: /nonexistent/partners
`, s.gitlabURL, s.upstream.UID, good, wrong)
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	checks, list, err := doctorRun(t, "--bridge-url", s.bridgeURL, "--providers-file", file)
	if err == nil || !strings.Contains(err.Error(), "1 of 10 checks failed") {
		t.Errorf("err = %v, want 1 of 10 checks failed: the partners' provider", err)
	}
	var names []string
	for _, c := range list[5:8] {
		names = append(names, c.Name)
	}
	if want := []string{`upstream "GitLab" (gitlab)`, `upstream "Staff account" (oidc)`, `upstream "Partner account" (oidc)`}; !slices.Equal(names, want) {
		t.Errorf("provider checks %q, want %q", names, want)
	}
	wantStatus(t, checks, `upstream "GitLab" (gitlab)`, doctor.StatusPass, "answers: GitLab answers at "+s.gitlabURL)
	wantStatus(t, checks, `upstream "Staff account" (oidc)`, doctor.StatusPass, "accepts the client "+good+" with the redirect URI "+callback)
	wantStatus(t, checks, doctor.CheckGitLabApp, doctor.StatusSkip, "for a GitLab among them, give its --gitlab-url and --gitlab-client-id")
	c := wantStatus(t, checks, `upstream "Partner account" (oidc)`, doctor.StatusFail, "Partner account refuses the bridge's authorize request")
	if !strings.Contains(c.Fix, "Register "+callback) || !strings.Contains(c.Fix, file+":") {
		t.Errorf("the fix does not name the URI to register and the file's client_id line: %s", c.Fix)
	}
}

func TestDoctorProvidersFileWithAFaultIsRefusedNamingItsLine(t *testing.T) {
	file := filepath.Join(t.TempDir(), "providers.yaml")
	if err := os.WriteFile(file, []byte("providers:\n  - name: staff\n    type: oidc\n    issuer: https://id.example.com\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	err := runDoctor([]string{"--bridge-url", "https://sso.example.com", "--providers-file", file}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "--providers-file") || !strings.Contains(err.Error(), file+":2: provider staff: the bridge's client id at the provider is empty") {
		t.Errorf("err = %v, want the file's line 2 and the missing client id", err)
	}
}

// The seam hides all but Probe from a provider made without a secret.
func TestDoctorProbeOnlyProvidersCannotSignPeopleIn(t *testing.T) {
	spec := upstreamSpec{oidc: &openid.Config{Issuer: "https://id.example.com", ClientID: "c", RedirectURL: "https://sso.example.com/oauth/callback"}}
	p, err := spec.prober("https://sso.example.com/oauth/callback", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := p.(upstream.CallbackProvider); ok {
		t.Error("a provider made for probing, without a secret, is a CallbackProvider")
	}
	if _, err := spec.build(nil); err == nil || !strings.Contains(err.Error(), "client secret") {
		t.Errorf("build without a secret: %v, want it refused", err)
	}
}

// A bridge whose certificate a private CA signed is checked with --ca-file, or
// SSOBRIDGE_DOCTOR_CA_FILE, and without it the failure says to give it.
func TestDoctorTrustsThePrivateCAOfCAFile(t *testing.T) {
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "key.pem")
	writeCertPair(t, certPath, keyPath, 1)
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(nil)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the run without the CA is refused
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/openid-configuration" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintf(w, `{"issuer":%q}`, srv.URL)
	})
	srv.StartTLS()
	defer srv.Close()

	checks, _, err := doctorRun(t, "--bridge-url", srv.URL)
	if err == nil {
		t.Error("an untrusted certificate must fail the doctor")
	}
	wantStatus(t, checks, doctor.CheckBridge, doctor.StatusFail, "not signed by an authority this machine trusts", "--ca-file")

	// Its certificate expires within the hour: a warning, not a failure.
	checks, _, err = doctorRun(t, "--bridge-url", srv.URL, "--ca-file", certPath)
	if err != nil {
		t.Errorf("doctor --ca-file: %v", err)
	}
	wantStatus(t, checks, doctor.CheckBridge, doctor.StatusWarn, srv.URL+" answers as the bridge")

	t.Setenv("SSOBRIDGE_DOCTOR_CA_FILE", certPath)
	checks, _, _ = doctorRun(t, "--bridge-url", srv.URL)
	wantStatus(t, checks, doctor.CheckBridge, doctor.StatusWarn, srv.URL+" answers as the bridge")

	var out, errb bytes.Buffer
	if err := runDoctor([]string{"--bridge-url", srv.URL, "--ca-file", filepath.Join(dir, "missing.pem")}, &out, &errb); err == nil || !strings.Contains(err.Error(), "--ca-file") {
		t.Errorf("a missing --ca-file: %v", err)
	}
	_, stdout, stderr := runCmd(t, "doctor", "--help")
	if help := stdout + stderr; !strings.Contains(help, "--ca-file") || !strings.Contains(help, "private CA") {
		t.Errorf("doctor --help does not explain --ca-file:\n%s", help)
	}
}
