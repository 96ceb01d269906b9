package e2e

import (
	"bytes"
	"context"
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// browserHint is what a CI image without a browser needs.
const browserHint = "no Chromium or Chrome found: apt-get install chromium (Debian) to run the browser tests"

// browserPath finds a Chromium-based browser. Without one the test is skipped, except under CI
// (the CI environment variable set to anything but "false"), where a missing browser is a broken
// CI image and fails the test.
func browserPath(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless-shell", "headless_shell", "chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if ci := os.Getenv("CI"); ci != "" && ci != "false" {
		t.Fatal(browserHint)
	}
	t.Skip(browserHint)
	return ""
}

// lockedBuffer collects the browser's output, written from the allocator's goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// browser is one headless Chromium for the whole test, and where its screenshots go.
type browser struct {
	ctx       context.Context
	artefacts string
}

func startBrowser(t *testing.T, execPath string) *browser {
	t.Helper()
	artefacts := os.Getenv("SSOBRIDGE_E2E_ARTIFACTS")
	if artefacts == "" {
		artefacts = t.TempDir()
	} else if err := os.MkdirAll(artefacts, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots in %s", artefacts)

	// Registered before the browser's cancellations, so removed after the browser has exited.
	profile := t.TempDir()
	var output lockedBuffer
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(execPath),
		chromedp.Headless,
		chromedp.NoSandbox, // CI runs as root, where Chromium refuses to start sandboxed
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		// Nothing but the test's loopback servers is contacted, so the test needs no network and
		// its timing depends on nothing outside.
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.WindowSize(1280, 900),
		chromedp.UserDataDir(profile),
		chromedp.CombinedOutput(&output),
	)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(cancel)
	t.Cleanup(func() {
		if t.Failed() {
			out := output.String()
			out = out[max(0, len(out)-8000):]
			t.Logf("the browser's output, its end:\n%s", out)
		}
	})
	// The browser's life is bound to the context of its first run, so it gets no deadline.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v\n%s", execPath, err, output.String())
	}
	return &browser{ctx: ctx, artefacts: artefacts}
}

// browserTab is a tab and the pages it has requested, redirects included: the way the browser
// went, which neither its history nor its location keeps.
type browserTab struct {
	ctx  context.Context
	mu   sync.Mutex
	docs []string
}

// visited is every page the tab requested, as scheme://host/path.
func (tb *browserTab) visited() []string {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return slices.Clone(tb.docs)
}

// tab opens a tab in a browser context of its own: no cookies or storage from another case.
func (b *browser) tab(t *testing.T) *browserTab {
	t.Helper()
	tb := &browserTab{}
	ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithNewBrowserContext(), chromedp.WithListener(func(ev any) {
		if ev, ok := ev.(*network.EventRequestWillBeSent); ok && ev.Type == network.ResourceTypeDocument {
			tb.mu.Lock()
			tb.docs = append(tb.docs, pageOf(ev.Request.URL))
			tb.mu.Unlock()
		}
	}))
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("opening a tab: %v", err)
	}
	tb.ctx = ctx
	return tb
}

// pageOf is u without its query and fragment.
func pageOf(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return u
	}
	return p.Scheme + "://" + p.Host + p.Path
}

// wentThrough reports whether the tab requested the pages want in that order, others between.
func wentThrough(t *testing.T, tb *browserTab, want ...string) {
	t.Helper()
	got := tb.visited()
	i := 0
	for _, page := range got {
		if i < len(want) && page == pageOf(want[i]) {
			i++
		}
	}
	if i < len(want) {
		t.Errorf("the browser did not request %s, in that order; it requested:\n%s", want[i], strings.Join(got, "\n"))
	}
}

// do runs actions in tab within a deadline and then, whether or not they succeeded, saves the
// page as the screenshot shot: after a wait that timed out it shows where the sign-in went.
func (b *browser) do(t *testing.T, tab *browserTab, shot string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab.ctx, 15*time.Second)
	err := chromedp.Do(ctx, actions...)
	cancel()
	if shot != "" {
		b.screenshot(t, tab, shot)
	}
	if err != nil {
		t.Fatalf("browser: %v (the tab is at %s)", err, location(tab))
	}
}

func (b *browser) screenshot(t *testing.T, tab *browserTab, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab.ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Errorf("screenshot %s: %v", name, err)
		return
	}
	if err := os.WriteFile(filepath.Join(b.artefacts, name), png, 0o644); err != nil {
		t.Error(err)
	}
}

func location(tab *browserTab) string {
	ctx, cancel := context.WithTimeout(tab.ctx, 5*time.Second)
	defer cancel()
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		return fmt.Sprintf("an unknown location: %v", err)
	}
	return loc
}

func text[S chromedp.Selectable](t *testing.T, tab *browserTab, sel S) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab.ctx, 10*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(sel))
	if err != nil {
		t.Fatalf("reading %v: %v (the tab is at %s)", sel, err, location(tab))
	}
	return strings.TrimSpace(s)
}

func evaluate[T any](t *testing.T, tab *browserTab, js string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("%s: %v", js, err)
	}
	return v
}

// relyingParty stands in for a client's redirect URI on a loopback port, which the dev clients'
// loopback URIs match whatever the port. It records every request the browser makes to it.
type relyingParty struct {
	*httptest.Server
	requests chan *url.URL
}

func newRelyingParty(t *testing.T) *relyingParty {
	rp := &relyingParty{requests: make(chan *url.URL, 16)}
	rp.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/favicon.ico" {
			http.NotFound(w, r)
			return
		}
		rp.requests <- r.URL
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><title>callback received</title><h1 id="received">callback received</h1><pre id="query">%s</pre>`,
			html.EscapeString(strings.ReplaceAll(r.URL.RawQuery, "&", "\n")))
	}))
	t.Cleanup(rp.Close)
	return rp
}

// next is the request the browser has made; the page it got is loaded, so it is recorded.
func (rp *relyingParty) next(t *testing.T) url.Values {
	t.Helper()
	select {
	case u := <-rp.requests:
		if u.Path != "/callback" {
			t.Fatalf("the browser came back to %s, not /callback", u)
		}
		return u.Query()
	case <-time.After(5 * time.Second):
		t.Fatal("the callback page loaded, yet the relying party recorded no request")
		return nil
	}
}

// signInAtGitLab fills the emulated GitLab's sign-in form (a fresh one: a refused sign-in shows
// the form again, empty), sends it, then does the actions then.
func signInAtGitLab(login, password string, then ...chromedp.Action[chromedp.Void]) []chromedp.Action[chromedp.Void] {
	return append([]chromedp.Action[chromedp.Void]{
		chromedp.SendKeys(chromedp.ID("user_login"), login),
		chromedp.SendKeys(chromedp.ID("user_password"), password), chromedp.Click(chromedp.ID("sign_in")),
	}, then...)
}

func authorizeURL(info devInfo, redirectURI, state string) string {
	return info.BridgeURL + "/oauth/authorize?" + url.Values{
		"response_type": {"code"},
		"client_id":     {info.UntrustedApp.ID},
		"redirect_uri":  {redirectURI},
		"state":         {state},
		"scope":         {"openid profile email"},
	}.Encode()
}

func TestBrowserSignsInThroughTheDevBridge(t *testing.T) {
	execPath := browserPath(t)
	start := time.Now()
	// Nobody signed in at the emulated GitLab: the browser meets its sign-in form, as a person
	// meets GitLab's.
	// The relying party's port counts for the confidential client it signs in as: dev registers
	// its callback.
	rp := newRelyingParty(t)
	info, stop := startDev(t, "SSOBRIDGE_DEV_GITLAB_SIGN_IN=form", "--redirect-uri="+rp.URL+"/callback")
	defer stop()
	ada := info.Users[0]
	if ada.SignedIn || ada.Password == "" {
		t.Fatalf("dev with SSOBRIDGE_DEV_GITLAB_SIGN_IN=form printed %+v; want ada signed out, with a password", ada)
	}
	b := startBrowser(t, execPath)
	t.Cleanup(func() {
		t.Logf("the dev bridge and the browser, built, started and driven, took %s", time.Since(start).Round(time.Millisecond))
	})

	t.Run("walkthrough", func(t *testing.T) {
		tab := b.tab(t)
		b.do(t, tab, "walkthrough.png", chromedp.Navigate(info.WalkthroughURL), chromedp.WaitVisible(chromedp.ID("gitlab")))
		// The button is a link: the bridge and the emulated GitLab's authorize are redirects the
		// browser follows by itself, to GitLab's sign-in form.
		b.do(t, tab, "gitlab-sign-in.png", chromedp.Click(chromedp.ID("gitlab")), chromedp.WaitVisible(chromedp.ID("user_login")))
		b.do(t, tab, "gitlab-sign-in-refused.png", signInAtGitLab(ada.Username, "not the password", chromedp.WaitVisible(chromedp.ID("flash")))...)
		if got := text(t, tab, chromedp.ID("flash")); got != "Invalid login or password." {
			t.Errorf("a wrong password at GitLab shows %q", got)
		}
		// Signed in, GitLab returns the browser to its authorize request, and from there the
		// callback, the bridge's code and the stand-in's completion are redirects again.
		b.do(t, tab, "walkthrough-signed-in.png", signInAtGitLab(ada.Email, ada.Password, chromedp.WaitVisible(chromedp.ID("username")))...)
		wentThrough(t, tab, info.MattermostSiteURL+"/oauth/gitlab/login", info.BridgeURL+"/oauth/authorize",
			info.GitLabURL+"/oauth/authorize", info.GitLabURL+"/users/sign_in", info.GitLabURL+"/users/sign_in",
			info.GitLabURL+"/oauth/authorize", info.BridgeURL+"/oauth/callback", info.RedirectURI)
		if got := text(t, tab, chromedp.ID("title")); got != "Signed in" {
			t.Errorf("title %q, want Signed in", got)
		}
		for id, want := range map[string]string{"username": "ada", "auth-data": "42", "email": "ada@example.com"} {
			if got := text(t, tab, chromedp.ID(id)); got != want {
				t.Errorf("#%s reads %q, want %q", id, got, want)
			}
		}
	})

	// Deny before Allow: once allowed, the bridge does not ask again for this confidential client.
	const denyState, allowState = "deny state/ä+=", "allow-7Qx_z.9~"
	t.Run("consent deny", func(t *testing.T) {
		tab := b.tab(t)
		// Each tab is a browser of its own, with no GitLab session yet.
		b.do(t, tab, "", chromedp.Navigate(authorizeURL(info, rp.URL+"/callback", denyState)), chromedp.WaitVisible(chromedp.ID("user_login")))
		b.do(t, tab, "consent.png", signInAtGitLab(ada.Username, ada.Password, chromedp.WaitVisible(chromedp.ID("deny")))...)
		if title := evaluate[string](t, tab, `document.title`); !strings.Contains(title, "Untrusted client") {
			t.Errorf("consent page titled %q, does not name the app", title)
		}
		b.do(t, tab, "consent-denied.png", chromedp.Click(chromedp.ID("deny")), chromedp.WaitVisible(chromedp.ID("received")))
		wentThrough(t, tab, info.BridgeURL+"/oauth/authorize", info.GitLabURL+"/oauth/authorize", info.BridgeURL+"/oauth/callback",
			info.BridgeURL+"/oauth/consent", rp.URL+"/callback")
		q := rp.next(t)
		if q.Get("error") != "access_denied" || q.Get("state") != denyState || q.Has("code") {
			t.Errorf("Deny came back with %s, want error=access_denied and state %q, no code", q.Encode(), denyState)
		}
	})

	t.Run("consent allow", func(t *testing.T) {
		tab := b.tab(t)
		b.do(t, tab, "", chromedp.Navigate(authorizeURL(info, rp.URL+"/callback", allowState)), chromedp.WaitVisible(chromedp.ID("user_login")))
		b.do(t, tab, "", signInAtGitLab(ada.Username, ada.Password, chromedp.WaitVisible(chromedp.ID("allow")))...)
		if title := evaluate[string](t, tab, `document.title`); !strings.Contains(title, "Untrusted client") {
			t.Errorf("consent page titled %q, does not name the app", title)
		}
		b.do(t, tab, "consent-allowed.png", chromedp.Click(chromedp.ID("allow")), chromedp.WaitVisible(chromedp.ID("received")))
		wentThrough(t, tab, info.BridgeURL+"/oauth/authorize", info.GitLabURL+"/oauth/authorize", info.BridgeURL+"/oauth/callback",
			info.BridgeURL+"/oauth/consent", rp.URL+"/callback")
		q := rp.next(t)
		if q.Get("code") == "" || q.Get("state") != allowState || q.Has("error") {
			t.Errorf("Allow came back with %s, want a code and state %q", q.Encode(), allowState)
		}
	})

	var errorTrace string
	t.Run("unregistered redirect URI", func(t *testing.T) {
		tab := b.tab(t)
		// A live server behind the unregistered URI: a redirect to it would be recorded, not lost.
		authorize := authorizeURL(info, rp.URL+"/not-registered", "s")
		b.do(t, tab, "error-page.png", chromedp.Navigate(authorize), chromedp.WaitVisible(chromedp.ID("trace")))
		if h1 := text(t, tab, chromedp.CSS("h1")); h1 != "Redirect URI not registered" {
			t.Errorf("error page headed %q", h1)
		}
		errorTrace = text(t, tab, chromedp.CSS("#trace code"))
		if errorTrace == "" {
			t.Error("the error page shows no trace id")
		}
		if loc := location(tab); loc != authorize {
			t.Errorf("the browser left the bridge for %s", loc)
		}
		for _, page := range tab.visited() {
			if !strings.HasPrefix(page, info.BridgeURL+"/") {
				t.Errorf("the browser requested %s, away from the bridge", page)
			}
		}
		select {
		case u := <-rp.requests:
			t.Errorf("the browser was sent to the unregistered redirect URI: %s", u)
		default:
		}
	})

	t.Run("trace", func(t *testing.T) {
		tab := b.tab(t)
		b.do(t, tab, "", chromedp.Navigate(info.TracesURL), chromedp.WaitVisible(chromedp.CSS("tbody tr:first-child a")))
		outcome := text(t, tab, chromedp.CSS("tbody tr:first-child .outcome"))
		failure := text(t, tab, chromedp.CSS("tbody tr:first-child td:nth-child(5)"))
		link := evaluate[string](t, tab, `document.querySelector("tbody tr:first-child a").title`)
		if errorTrace != "" && link != "trace "+errorTrace {
			t.Errorf("the newest trace is %q, not the error page's %s", link, errorTrace)
		}
		if outcome != "failed" || failure != "redirect_uri_not_registered" {
			t.Errorf("the newest trace is %s %s, want failed redirect_uri_not_registered", outcome, failure)
		}
		b.do(t, tab, "trace.png", chromedp.Click(chromedp.CSS("tbody tr:first-child a")),
			chromedp.WaitVisible(chromedp.CSS(`svg[aria-label="sequence diagram of the sign-in"]`)))
		if steps := evaluate[int](t, tab, `document.querySelectorAll("svg g.step").length`); steps == 0 {
			t.Error("the sequence diagram has no step")
		}
		if got := text(t, tab, chromedp.CSS("dl.meta .outcome")); got != outcome {
			t.Errorf("trace page outcome %q, the list said %q", got, outcome)
		}
		body := text(t, tab, chromedp.CSS("body"))
		for _, want := range []string{outcome, failure, errorTrace} {
			if !strings.Contains(body, want) {
				t.Errorf("the trace page does not say %q:\n%s", want, body)
			}
		}
	})
}

// TestBrowserChoosesAProvider walks through `ssobridge dev --upstream gitlab,oidc` in Chromium:
// the chooser's answer is a form whose redirect to the chosen provider the browser must be
// allowed to follow (Content-Security-Policy form-action holds redirects too).
func TestBrowserChoosesAProvider(t *testing.T) {
	execPath := browserPath(t)
	info, stop := startDev(t, "SSOBRIDGE_DEV_UPSTREAM=gitlab,oidc")
	defer stop()
	b := startBrowser(t, execPath)
	for _, tt := range []struct{ provider, authData string }{{"oidc", "1000000000"}, {"gitlab", "42"}} {
		t.Run(tt.provider, func(t *testing.T) {
			tab := b.tab(t)
			b.do(t, tab, "", chromedp.Navigate(info.WalkthroughURL), chromedp.WaitVisible(chromedp.ID("gitlab")))
			choice := chromedp.CSS(`button[name="upstream"][value="` + tt.provider + `"]`)
			b.do(t, tab, "chooser.png", chromedp.Click(chromedp.ID("gitlab")), chromedp.WaitVisible(choice))
			b.do(t, tab, "chosen-"+tt.provider+".png", chromedp.Click(choice), chromedp.WaitVisible(chromedp.ID("auth-data")))
			if got := text(t, tab, chromedp.ID("auth-data")); got != tt.authData {
				t.Errorf("signed in through %s with the id %q, want %s", tt.provider, got, tt.authData)
			}
		})
	}
}
