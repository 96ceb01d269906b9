package doctor

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ssobridge/ssobridge/mattermost"
	"github.com/ssobridge/ssobridge/oauth"
	"github.com/ssobridge/ssobridge/oauth/signin"
)

// newTestDoctor makes a doctor of cfg, with a short timeout.
func newTestDoctor(t *testing.T, cfg Config) *Doctor {
	t.Helper()
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func checkNamed(t *testing.T, r *Report, name string) Check {
	t.Helper()
	for _, c := range r.Checks {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no check %q in %+v", name, r.Checks)
	return Check{}
}

func wantCheck(t *testing.T, c Check, status string, says ...string) {
	t.Helper()
	if c.Status != status {
		t.Errorf("%s: %s, want %s\n  detail: %s\n  fix: %s", c.Name, c.Status, status, c.Detail, c.Fix)
	}
	for _, s := range says {
		if !strings.Contains(c.Detail+"\n"+c.Fix, s) {
			t.Errorf("%s does not say %q\n  detail: %s\n  fix: %s", c.Name, s, c.Detail, c.Fix)
		}
	}
}

// fakeBridge answers its discovery document under its own URL and hands every other request to
// h.
func fakeBridge(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/.well-known/openid-configuration" {
			fmt.Fprintf(w, `{"issuer":%q}`, srv.URL)
			return
		}
		if h == nil {
			http.NotFound(w, r)
			return
		}
		h(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// refuse answers as the bridge refuses: its failure and trace in headers, and, asked for JSON,
// what its page says.
func refuse(w http.ResponseWriter, r *http.Request, f *signin.Failure, title, description, fix string) {
	w.Header().Set(oauth.HeaderFailure, f.Name())
	w.Header().Set(oauth.HeaderTraceID, "trace-1")
	if strings.HasPrefix(r.Header.Get("Accept"), "application/json") {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(f.Status())
		_ = json.NewEncoder(w).Encode(oauth.PageJSON{Error: f.Code(), Failure: f.Name(), Title: title, Description: description, Fix: fix, TraceID: "trace-1"})
		return
	}
	w.Header().Set("Content-Type", "text/html")
	w.WriteHeader(f.Status())
	fmt.Fprintf(w, "<h1>%s</h1><p>%s</p>", title, description)
}

func TestParseFormsReadsMarkupAsABrowserDoes(t *testing.T) {
	// Attributes unquoted, in capitals, with entities, and a '>' inside a quoted value; the form's
	// controls nested in a table.
	page := []byte(`<!doctype html><html><body>
<FORM Action=/users/sign_in METHOD=post><table><tr><td>
<input type=hidden name="authenticity_token" value="a>b&amp;c=&quot;d&quot;">
<INPUT NAME='user[login]' type="text"></td><td><input name=user[password] type=password>
<button type=submit name=commit value="Sign in">Sign in</button></td></tr></table></form>
<form action="/search"><input name="q"></form></body></html>`)
	forms := parseForms(page)
	if len(forms) != 2 {
		t.Fatalf("%d forms, want 2: %+v", len(forms), forms)
	}
	f := forms[0]
	if f.action != "/users/sign_in" || !f.has("user[login]") || !f.has("user[password]") || !f.has("commit") || f.has("q") {
		t.Errorf("%+v", f)
	}
	pageURL, _ := url.Parse("https://gitlab.example.com/users/sign_in?redirect=1")
	form, action, otp := findSignInForm(pageURL, page)
	if form == nil || otp || action.String() != "https://gitlab.example.com/users/sign_in" {
		t.Fatalf("sign-in form %+v at %v (otp %v)", form, action, otp)
	}
	req, err := form.submit(t.Context(), action, url.Values{"user[login]": {"ada"}, "user[password]": {"pw"}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(req.Body)
	got, _ := url.ParseQuery(string(b))
	want := url.Values{"authenticity_token": {`a>b&c="d"`}, "user[login]": {"ada"}, "user[password]": {"pw"}}
	if fmt.Sprint(got) != fmt.Sprint(want) || req.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
		t.Errorf("posts %v, want %v", got, want)
	}
}

func TestFindSignInFormTellsTheTwoFactorFormAndIgnoresOtherForms(t *testing.T) {
	u, _ := url.Parse("https://gitlab.example.com/users/sign_in")
	otpPage := []byte(`<form action="/users/sign_in" method="post"><input type="hidden" name="authenticity_token" value="t"><input name="user[otp_attempt]"></form>`)
	if form, _, otp := findSignInForm(u, otpPage); form != nil || !otp {
		t.Errorf("two-factor form: form %v, otp %v; want otp", form, otp)
	}
	other := []byte(`<form action="/users/password"><input name="user[login]"><input name="user[password]"><input name="authenticity_token"></form>`)
	if form, _, otp := findSignInForm(u, other); form != nil || otp {
		t.Errorf("a form posting elsewhere was taken for the sign-in form")
	}
}

func TestIsBridgeConsentTellsTheBridgesConsentForm(t *testing.T) {
	consent := []byte(`<form method="post" action="/oauth/consent?x=1"><input type="hidden" name="consent" value="k"><button name="decision" value="allow">Allow</button></form>`)
	if !isBridgeConsent(consent) {
		t.Error("the consent form is not recognised")
	}
	if isBridgeConsent([]byte(`<form action="/oauth/consent"><input name="other"></form>`)) {
		t.Error("a form without the consent key is taken for the consent form")
	}
}

func TestPageTextIsTheVisibleTextOnOneLine(t *testing.T) {
	got := pageText([]byte("<html><head><style>p{x:1}</style><script>var a = '<p>no</p>';</script></head><body><h1>An error\n has occurred</h1><p>Client &amp; <b>auth</b> failed.</p></body></html>"))
	if got != "An error has occurred Client & auth failed." {
		t.Errorf("%q", got)
	}
}

func TestReadBridgeFailureTakesThePageFromJSONAndTheCatalogueOtherwise(t *testing.T) {
	h := http.Header{}
	if readBridgeFailure(http.StatusBadGateway, h, []byte("<h1>Bad Gateway</h1>")) != nil {
		t.Error("an answer without the failure header (a proxy's) is taken for the bridge's")
	}
	h.Set(oauth.HeaderFailure, signin.RedirectURINotRegistered.Name())
	h.Set(oauth.HeaderTraceID, "t1")
	h.Set("Content-Type", "application/json; charset=UTF-8")
	body, _ := json.Marshal(oauth.PageJSON{Failure: signin.RedirectURINotRegistered.Name(), Title: "Redirect URI not registered",
		Description: "its host differs", Fix: "register it"})
	bf := readBridgeFailure(http.StatusBadRequest, h, body)
	if !bf.is(signin.RedirectURINotRegistered) || bf.title != "Redirect URI not registered" || bf.description != "its host differs" ||
		bf.fix != "register it" || bf.traceID != "t1" {
		t.Errorf("%+v", bf)
	}
	h.Set("Content-Type", "text/html")
	bf = readBridgeFailure(http.StatusBadRequest, h, []byte("<h1>whatever</h1>"))
	if bf.description != signin.RedirectURINotRegistered.Doc() || bf.fix != signin.RedirectURINotRegistered.Fix() || bf.title != "Bad Request" {
		t.Errorf("a page: %+v; want the catalogue's description and fix", bf)
	}
}

func TestPrintAlignsTheChecksAndPutsFixesUnderThem(t *testing.T) {
	r := &Report{Bridge: "https://sso.example.com", Checks: []Check{
		{Name: "short", Status: StatusPass, Detail: "fine"},
		{Name: "a longer name", Status: StatusFail, Detail: strings.Repeat("word ", 40), Fix: "do this"},
		{Name: "skipped", Status: StatusSkip, Detail: "give --x"},
	}}
	var b bytes.Buffer
	Print(&b, r)
	text := b.String()
	indent := strings.Repeat(" ", 6+len("a longer name")+2)
	for _, want := range []string{
		"ssobridge doctor: the bridge at https://sso.example.com\n\n",
		"PASS  short          fine\n",
		"FAIL  a longer name  word word",
		"\n" + indent + "word word",
		"\n" + indent + "fix: do this\n",
		"SKIP  skipped        give --x\n",
		"\n1 passed, 1 failed, 0 warnings, 1 skipped.\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the report lacks %q:\n%s", want, text)
		}
	}
	for _, line := range strings.Split(text, "\n") {
		if len(line) > 100 {
			t.Errorf("line longer than 100 columns: %q", line)
		}
	}
}

func TestCheckBridgeFailsWhenTheBridgeCallsItselfByAnotherName(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"issuer":"https://sso.example.com"}`)
	}))
	defer srv.Close()
	c := checkNamed(t, newTestDoctor(t, Config{BridgeURL: srv.URL}).Run(t.Context()), CheckBridge)
	wantCheck(t, c, StatusFail, "calls itself https://sso.example.com", "SSOBRIDGE_PUBLIC_URL="+srv.URL, "--bridge-url https://sso.example.com")
}

func TestCheckBridgeFailsOnAnAnswerThatIsNotTheDiscoveryDocument(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, "<html><body><h1>Welcome to nginx!</h1></body></html>")
	}))
	defer srv.Close()
	c := checkNamed(t, newTestDoctor(t, Config{BridgeURL: srv.URL}).Run(t.Context()), CheckBridge)
	wantCheck(t, c, StatusFail, "not with the bridge's discovery document", "Welcome to nginx!", "passes /.well-known/")
}

func TestCheckBridgeReportsAnUnreadyStoreWithItsFix(t *testing.T) {
	bridge := fakeBridge(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/readyz" {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, `{"status":"unavailable","checks":{"store":"failing","gitlab":"ok"}}`)
			return
		}
		http.NotFound(w, r)
	})
	c := checkNamed(t, newTestDoctor(t, Config{BridgeURL: bridge.URL}).Run(t.Context()), CheckBridge)
	wantCheck(t, c, StatusFail, "not ready: store: failing", "SSOBRIDGE_REDIS_URL", "SSOBRIDGE_ADMIN_LISTEN")
}

func TestCheckCredentialsReadsTheTokenEndpointsOAuthError(t *testing.T) {
	for code, want := range map[string]string{signin.InvalidGrant: StatusPass, signin.InvalidClient: StatusFail} {
		bridge := fakeBridge(t, func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != mattermost.TokenPath || r.FormValue("client_id") != "app" || !strings.HasPrefix(r.FormValue("code"), "doctor-") {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(w, `{"error":%q,"error_description":"x"}`, code)
		})
		c := checkNamed(t, newTestDoctor(t, Config{BridgeURL: bridge.URL, AppID: "app", AppSecret: "s"}).Run(t.Context()), CheckCredentials)
		wantCheck(t, c, want, code)
	}
}

func TestCheckRedirectsNamesTheBridgesFailureFromItsJSONAnswer(t *testing.T) {
	const site = "https://mm.example.com"
	for _, tt := range []struct {
		failure *signin.Failure
		says    []string
	}{
		{signin.RedirectURINotRegistered, []string{"refuses Mattermost's redirect URI: its host differs", "ssobridge apps update app"}},
		{signin.UnknownClient, []string{"no application with the ID app: its host differs", "ssobridge apps list"}},
		{signin.StoreUnavailable, []string{"(503, store_unavailable): Title: its host differs", "the page's fix"}},
	} {
		t.Run(tt.failure.Name(), func(t *testing.T) {
			bridge := fakeBridge(t, func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != mattermost.AuthorizePath || r.Header.Get(oauth.HeaderProbe) != oauth.ProbeDryRun {
					http.NotFound(w, r)
					return
				}
				refuse(w, r, tt.failure, "Title", "its host differs", "the page's fix")
			})
			c := checkNamed(t, newTestDoctor(t, Config{BridgeURL: bridge.URL, AppID: "app", SiteURL: site}).Run(t.Context()), CheckRedirects)
			wantCheck(t, c, StatusFail, tt.says...)
		})
	}
}

func TestCheckRedirectsPassesWhenTheBridgeSendsTheBrowserOnAndWarnsOfAMissingLoginURI(t *testing.T) {
	const site = "https://mm.example.com"
	bridge := fakeBridge(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("redirect_uri") == site+mattermost.SignupCompletePath {
			http.Redirect(w, r, "https://gitlab.example.com/oauth/authorize", http.StatusFound)
			return
		}
		refuse(w, r, signin.RedirectURINotRegistered, "Redirect URI not registered", "not registered", "")
	})
	c := checkNamed(t, newTestDoctor(t, Config{BridgeURL: bridge.URL, AppID: "app", SiteURL: site}).Run(t.Context()), CheckRedirects)
	wantCheck(t, c, StatusWarn, site+"/signup/gitlab/complete is registered: the bridge sent the browser on to https://gitlab.example.com",
		site+"/login/gitlab/complete is not registered")
}

func TestCheckMattermostFailsOnAPingThatIsNotOK(t *testing.T) {
	mm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"status":"UNHEALTHY"}`)
	}))
	defer mm.Close()
	c := checkNamed(t, newTestDoctor(t, Config{BridgeURL: "http://127.0.0.1:1", SiteURL: mm.URL}).Run(t.Context()), CheckMattermost)
	wantCheck(t, c, StatusFail, `reports status "UNHEALTHY"`, "Check Mattermost's log")
}

func TestGitLabAuthorizeProblemQuotesGitLabsErrorPage(t *testing.T) {
	page := []byte(`<html><head><title>GitLab</title><script>var x = "unknown client";</script></head><body><main>
<h3>An error has occurred</h3><p>Client authentication failed due to unknown client, no client authentication included, or unsupported authentication method.</p></main></body></html>`)
	detail, fix, ok := gitlabAuthorizeProblem(page, "cid", "https://sso.example.com/oauth/callback")
	if !ok || !strings.Contains(detail, `"Client authentication failed due to unknown client, no client authentication included, or unsupported authentication method."`) ||
		!strings.Contains(fix, "SSOBRIDGE_GITLAB_CLIENT_ID") {
		t.Errorf("%v %q %q", ok, detail, fix)
	}
	if _, _, ok := gitlabAuthorizeProblem([]byte(`<script>"unknown client"</script><p>Hello</p>`), "cid", "cb"); ok {
		t.Error("a script's text is taken for GitLab's message")
	}
}

func TestTheSignInStoppedByTheBridgeNamesItsFailureAndTrace(t *testing.T) {
	bridge := fakeBridge(t, func(w http.ResponseWriter, r *http.Request) {
		refuse(w, r, signin.UpstreamTokenRejected, "GitLab refused the bridge", "GitLab refused the client secret", "Renew the secret.")
	})
	d := newTestDoctor(t, Config{BridgeURL: bridge.URL})
	browser := &http.Client{Transport: &asksBridgeForJSON{d: d, next: http.DefaultTransport}}
	resp, err := browser.Get(bridge.URL + oauth.CallbackPath + "?code=c&state=s")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	page := &mattermost.Page{URL: resp.Request.URL, Status: resp.StatusCode, Header: resp.Header, Body: body}
	_, err = (&loginPages{d: d}).next(t.Context(), page)
	pp, ok := err.(*pageProblem)
	if !ok {
		t.Fatalf("%v, want the bridge's refusal", err)
	}
	for _, want := range []string{"the bridge stopped the sign-in at " + bridge.URL + oauth.CallbackPath, signin.UpstreamTokenRejected.Name(),
		"GitLab refused the client secret", "(trace trace-1)"} {
		if !strings.Contains(pp.detail, want) {
			t.Errorf("detail %q lacks %q", pp.detail, want)
		}
	}
	if !strings.HasPrefix(pp.fix, "Renew the secret.") || !strings.Contains(pp.fix, "GET /debug/traces/trace-1") {
		t.Errorf("fix %q", pp.fix)
	}
}

func TestAnUnknownAuthorityNamesCAFile(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is the point
	srv.StartTLS()
	defer srv.Close()
	c := checkNamed(t, newTestDoctor(t, Config{BridgeURL: srv.URL}).Run(t.Context()), CheckBridge)
	wantCheck(t, c, StatusFail, "not signed by an authority this machine trusts", "--ca-file (SSOBRIDGE_DOCTOR_CA_FILE)")

	c = checkNamed(t, newTestDoctor(t, Config{BridgeURL: srv.URL, CAFile: "/etc/ssl/private-ca.pem", Roots: x509.NewCertPool()}).Run(t.Context()), CheckBridge)
	wantCheck(t, c, StatusFail, "--ca-file /etc/ssl/private-ca.pem does not hold the authority that signed this certificate")
}

func TestACertificateExpiringWithinFourteenDaysIsAWarning(t *testing.T) {
	cert, pool := shortLivedCert(t, 5*24*time.Hour)
	srv := httptest.NewUnstartedServer(nil)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/openid-configuration" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintf(w, `{"issuer":%q}`, srv.URL)
	})
	srv.StartTLS()
	defer srv.Close()

	d, err := New(Config{BridgeURL: srv.URL, Timeout: 5 * time.Second, Roots: pool})
	if err != nil {
		t.Fatal(err)
	}
	report := d.Run(t.Context())
	c := report.Checks[0]
	if c.Status != StatusWarn || !strings.Contains(c.Detail, "expires on") || !strings.Contains(c.Detail, "in 5 days") || !strings.Contains(c.Fix, "Renew") {
		t.Errorf("%+v", c)
	}
}

func TestAProvidersCertificateExpiringSoonIsAWarning(t *testing.T) {
	cert, pool := shortLivedCert(t, 5*24*time.Hour)
	srv := httptest.NewUnstartedServer(nil)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"issuer":%q}`, srv.URL)
	})
	srv.StartTLS()
	defer srv.Close()
	d, err := New(Config{BridgeURL: "http://127.0.0.1:1", GitLabURL: srv.URL, Timeout: 5 * time.Second, Roots: pool})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range d.Run(t.Context()).Checks {
		if strings.HasPrefix(c.Name, "upstream") {
			if c.Status != StatusWarn || !strings.Contains(c.Detail, "expires on") || !strings.Contains(c.Fix, "Renew") {
				t.Errorf("%+v", c)
			}
			return
		}
	}
	t.Fatal("no upstream check")
}

func shortLivedCert(t *testing.T, life time.Duration) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(life),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}
