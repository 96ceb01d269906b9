package e2e

import (
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestBrowserOpensASignInsTraceWithTheAdminToken walks, in Chromium, from the end of a dev
// sign-in to its trace on an operators' listener that asks for SSOBRIDGE_ADMIN_TOKEN: the link on
// the last page, the listener's sign-in form (a wrong token, then the right one), the trace, and
// the list with a filter, a case-insensitive one and one it refuses.
func TestBrowserOpensASignInsTraceWithTheAdminToken(t *testing.T) {
	execPath := browserPath(t)
	const token = "e2e-operators-token-4f1c9a"
	info, stop := startDev(t, "SSOBRIDGE_DEV_ADMIN_TOKEN="+token)
	defer stop()
	// Without the token, a script is told which header to send, as before.
	if resp, err := http.Get(info.AdminURL + "/debug/traces"); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the traces without the token: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	b := startBrowser(t, execPath)
	tab := b.tab(t)
	b.do(t, tab, "", chromedp.Navigate(info.WalkthroughURL), chromedp.WaitVisible(chromedp.ID("gitlab")))
	b.do(t, tab, "signed-in-with-trace-link.png", chromedp.Click(chromedp.ID("gitlab")), chromedp.WaitVisible(chromedp.ID("trace")))
	link := evaluate[string](t, tab, `document.getElementById("trace").href`)
	if !strings.HasPrefix(link, info.AdminURL+"/debug/traces/") {
		t.Fatalf("the last page links to %q, not to a trace on the operators' listener %s", link, info.AdminURL)
	}

	b.do(t, tab, "operators-sign-in.png", chromedp.Click(chromedp.ID("trace")), chromedp.WaitVisible(chromedp.ID("token")))
	b.do(t, tab, "operators-sign-in-refused.png", chromedp.SendKeys(chromedp.ID("token"), "not the token"),
		chromedp.Click(chromedp.ID("signin")), chromedp.WaitVisible(chromedp.ID("message")))
	if got := text(t, tab, chromedp.ID("message")); !strings.Contains(got, "not the admin token") {
		t.Errorf("a wrong token says %q", got)
	}
	b.do(t, tab, "trace-after-sign-in.png", chromedp.SendKeys(chromedp.ID("token"), token), chromedp.Click(chromedp.ID("signin")),
		chromedp.WaitVisible(chromedp.CSS(`svg[aria-label="sequence diagram of the sign-in"]`)))
	if got := location(tab); got != link {
		t.Errorf("signed in, the browser is at %s, not the trace it asked for, %s", got, link)
	}
	if got := text(t, tab, chromedp.CSS("dl.meta .outcome")); got != "completed" {
		t.Errorf("the sign-in's trace says %q, want completed", got)
	}
	if cookies := evaluate[string](t, tab, `document.cookie`); strings.Contains(cookies, "ssobridge_admin") {
		t.Errorf("a script reads the session cookie: %q", cookies)
	}

	b.do(t, tab, "traces-filtered.png", chromedp.Navigate(info.TracesURL+"&user=ADA&outcome=complete"), chromedp.WaitVisible(chromedp.ID("active")))
	if got := text(t, tab, chromedp.ID("active")); !strings.Contains(got, "outcome=completed") || !strings.Contains(got, "user=ADA") {
		t.Errorf("the filter in force reads %q", got)
	}
	if rows := evaluate[int](t, tab, `document.querySelectorAll("tbody tr a").length`); rows != 1 {
		t.Errorf("user=ADA&outcome=complete lists %d sign-ins, want ada's one", rows)
	}
	b.do(t, tab, "traces-bad-filter.png", chromedp.Navigate(info.TracesURL+"&outcome=bogus"), chromedp.WaitVisible(chromedp.ID("problem")))
	if got := text(t, tab, chromedp.ID("problem")); !strings.Contains(got, "failed, stalled, in_progress, completed") {
		t.Errorf("outcome=bogus says %q", got)
	}
	b.do(t, tab, "traces-empty.png", chromedp.Navigate(info.TracesURL+"&user=grace"), chromedp.WaitVisible(chromedp.ID("empty")))
	if got := text(t, tab, chromedp.ID("empty")); !strings.HasPrefix(got, "No sign-in matches user=grace in the retention period (") {
		t.Errorf("an empty filtered list says %q", got)
	}
	b.do(t, tab, "operators-signed-out.png", chromedp.Click(chromedp.ID("signout")), chromedp.WaitVisible(chromedp.ID("token")))
}
