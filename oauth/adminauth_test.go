package oauth_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ssobridge/ssobridge/oauth"
)

// operator is a browser on the operators' listener: it follows no redirect and sends only the
// cookies it is given, so that each test says what it presents.
type operator struct {
	t    *testing.T
	base string
	http *http.Client
}

func newOperator(t *testing.T, admin *httptest.Server) *operator {
	c := admin.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &operator{t: t, base: admin.URL, http: c}
}

func (o *operator) do(req *http.Request) (*http.Response, string) {
	o.t.Helper()
	resp, err := o.http.Do(req)
	if err != nil {
		o.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		o.t.Fatal(err)
	}
	return resp, string(body)
}

// page asks for path as a browser does (Accept: text/html), with cookie if not nil.
func (o *operator) page(path string, cookie *http.Cookie, header ...string) (*http.Response, string) {
	o.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, o.base+path, nil)
	req.Header.Set("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
	if cookie != nil {
		req.AddCookie(cookie)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return o.do(req)
}

// signIn posts the sign-in form, as the browser would from the listener's own page.
func (o *operator) signIn(token, next string) (*http.Response, string) {
	o.t.Helper()
	form := url.Values{"token": {token}, "next": {next}}
	req, _ := http.NewRequest(http.MethodPost, o.base+"/-/signin", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", o.base)
	return o.do(req)
}

func sessionCookie(t *testing.T, resp *http.Response) *http.Cookie {
	t.Helper()
	for _, c := range resp.Cookies() {
		if c.Name == "ssobridge_admin" {
			return c
		}
	}
	t.Fatalf("no session cookie: %d %v", resp.StatusCode, resp.Header)
	return nil
}

// failedTrace makes a sign-in that fails at once, and returns its trace id.
func (f *fixture) failedTrace() string {
	q := f.authorizeQuery("s")
	q.Set("client_id", "nope")
	return f.authorize(q).Header.Get(oauth.HeaderTraceID)
}

func TestATracePageAsksABrowserForTheAdminTokenAndSetsAnHttpOnlyStrictCookie(t *testing.T) {
	f := newFixture(t)
	id := f.failedTrace()
	for _, tls := range []bool{false, true} {
		admin := httptest.NewUnstartedServer(f.srv.AdminHandler("s3cret-token"))
		if tls {
			admin.StartTLS()
		} else {
			admin.Start()
		}
		o := newOperator(t, admin)
		want := "/debug/traces/" + id + "?format=html"
		resp, body := o.page(want, nil)
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("Content-Type"), "text/html") ||
			!strings.Contains(body, `<form class="signin" method="post" action="/-/signin">`) ||
			!strings.Contains(body, `type="password" id="token" name="token"`) ||
			!strings.Contains(body, `name="next" value="`+strings.ReplaceAll(want, "?", "?")+`"`) {
			t.Fatalf("a browser without the token: %d %s\n%s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
		if resp.Header.Get("WWW-Authenticate") == "" || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
			t.Errorf("the sign-in page's headers: %v", resp.Header)
		}
		// A client that is no browser is told, as before, which header to send.
		req, _ := http.NewRequest(http.MethodGet, admin.URL+"/debug/traces/"+id, nil)
		if resp, body := o.do(req); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "Authorization: Bearer") ||
			resp.Header.Get("WWW-Authenticate") != `Bearer realm="ssobridge admin"` {
			t.Errorf("JSON without the token: %d %v %s", resp.StatusCode, resp.Header, body)
		}

		resp, _ = o.signIn("s3cret-token", want)
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != want {
			t.Fatalf("sign-in with the token: %d, Location %q; want 303 to %s", resp.StatusCode, resp.Header.Get("Location"), want)
		}
		c := sessionCookie(t, resp)
		if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Secure != tls ||
			c.MaxAge <= 0 || c.MaxAge > int((12*time.Hour).Seconds()) {
			t.Errorf("the session cookie (TLS %v): %s", tls, resp.Header.Get("Set-Cookie"))
		}
		resp, body = o.page(want, &http.Cookie{Name: c.Name, Value: c.Value})
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, "<svg") || !strings.Contains(body, id) {
			t.Errorf("the trace page with the cookie: %d %.300s", resp.StatusCode, body)
		}
		resp, body = o.page("/debug/traces?format=html", &http.Cookie{Name: c.Name, Value: c.Value})
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, `action="/-/signout"`) {
			t.Errorf("the list with the cookie: %d, and a sign-out form? %.300s", resp.StatusCode, body)
		}
		// Bearer access is unchanged.
		req, _ = http.NewRequest(http.MethodGet, admin.URL+"/debug/traces/"+id, nil)
		req.Header.Set("Authorization", "Bearer s3cret-token")
		if resp, body := o.do(req); resp.StatusCode != http.StatusOK || !strings.Contains(body, `"id": "`+id+`"`) {
			t.Errorf("JSON with the token: %d %.200s", resp.StatusCode, body)
		}
		// Signing out drops the cookie.
		req, _ = http.NewRequest(http.MethodPost, admin.URL+"/-/signout", nil)
		req.Header.Set("Origin", admin.URL)
		req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
		if resp, _ := o.do(req); resp.StatusCode != http.StatusSeeOther || sessionCookie(t, resp).MaxAge >= 0 {
			t.Errorf("sign-out: %d %v", resp.StatusCode, resp.Header)
		}
		admin.Close()
	}
}

func TestWrongAdminTokensAreRefusedLimitedAndLoggedWithoutTheirValue(t *testing.T) {
	f := newFixture(t)
	admin := httptest.NewServer(f.srv.AdminHandler("s3cret-token"))
	defer admin.Close()
	o := newOperator(t, admin)
	resp, body := o.signIn("guess-number-0", "/debug/traces?format=html")
	if resp.StatusCode != http.StatusUnauthorized || len(resp.Cookies()) != 0 || !strings.Contains(body, "not the admin token of this bridge") ||
		!strings.Contains(body, `name="token"`) {
		t.Fatalf("a wrong token: %d %v\n%s", resp.StatusCode, resp.Cookies(), body)
	}
	var limited *http.Response
	for i := 1; i < 30 && limited == nil; i++ {
		if resp, _ := o.signIn("guess-number-"+strconv.Itoa(i), "/"); resp.StatusCode == http.StatusTooManyRequests {
			limited = resp
		}
	}
	if limited == nil || limited.Header.Get("Retry-After") == "" {
		t.Fatalf("30 wrong tokens in a row were all tried: %v", limited)
	}
	// Others' wrong tries do not lock the operator out: the right token still signs in.
	if resp, _ := o.signIn("s3cret-token", "/"); resp.StatusCode != http.StatusSeeOther || len(resp.Cookies()) != 1 {
		t.Errorf("while wrong tokens are limited, the right token is answered %d with cookies %v; want 303 and the session", resp.StatusCode, resp.Cookies())
	}
	logs := f.logs.String()
	if !strings.Contains(logs, "operators' sign-in refused: wrong token") || strings.Contains(logs, "guess-number") || strings.Contains(logs, "s3cret-token") {
		t.Errorf("the logs of wrong tokens:\n%s", logs)
	}
	// A form posted from another site is refused, whatever it holds.
	form := url.Values{"token": {"s3cret-token"}}
	req, _ := http.NewRequest(http.MethodPost, admin.URL+"/-/signin", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://elsewhere.example")
	if resp, _ := o.do(req); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a cross-origin sign-in: %d", resp.StatusCode)
	}
	// Behind a TLS proxy the browser's origin is https on the listener's own host: let in.
	req, _ = http.NewRequest(http.MethodPost, admin.URL+"/-/signin", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://"+strings.TrimPrefix(admin.URL, "http://"))
	if resp, _ := o.do(req); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("a sign-in through a TLS proxy keeping the Host: %d, want 303", resp.StatusCode)
	}
}

func TestTheAdminCookieIsNotTheTokenAndDiesWithIt(t *testing.T) {
	f := newFixture(t)
	id := f.failedTrace()
	const token = "the-operators-token-0123456789"
	admin := httptest.NewServer(f.srv.AdminHandler(token))
	o := newOperator(t, admin)
	resp, _ := o.signIn(token, "/debug/traces/"+id+"?format=html")
	c := sessionCookie(t, resp)
	admin.Close()
	for _, leak := range []string{token, url.QueryEscape(token), "dGhlLW9wZXJhdG9ycy10b2tlbi"} {
		if strings.Contains(c.Value, leak) {
			t.Errorf("the cookie %q holds the token (%s)", c.Value, leak)
		}
	}
	page := "/debug/traces/" + id + "?format=html"
	cookie := &http.Cookie{Name: c.Name, Value: c.Value}
	// Another bridge (a replica, a restart) with the same token takes the cookie...
	same := httptest.NewServer(f.srv.AdminHandler(token))
	defer same.Close()
	if resp, _ := newOperator(t, same).page(page, cookie); resp.StatusCode != http.StatusOK {
		t.Errorf("the cookie on a bridge with the same token: %d", resp.StatusCode)
	}
	// ...one with a new token does not, nor a cookie changed to last longer.
	rotated := httptest.NewServer(f.srv.AdminHandler("a-new-token"))
	defer rotated.Close()
	if resp, body := newOperator(t, rotated).page(page, cookie); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, `name="token"`) {
		t.Errorf("the cookie after the token changed: %d", resp.StatusCode)
	}
	exp, mac, _ := strings.Cut(strings.TrimPrefix(c.Value, "v1."), ".")
	n, _ := strconv.ParseInt(exp, 10, 64)
	for _, forged := range []string{"v1." + strconv.FormatInt(n+3600, 10) + "." + mac, "v1." + exp + ".", token, c.Value + "x"} {
		if resp, _ := newOperator(t, same).page(page, &http.Cookie{Name: c.Name, Value: forged}); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("a forged cookie %q: %d", forged, resp.StatusCode)
		}
	}
}

func TestTheAdminSignInRedirectsOnlyToLocalPaths(t *testing.T) {
	f := newFixture(t)
	admin := httptest.NewServer(f.srv.AdminHandler("tok"))
	defer admin.Close()
	o := newOperator(t, admin)
	for next, want := range map[string]string{
		"/debug/traces/abc?format=html":       "/debug/traces/abc?format=html",
		"/metrics":                            "/metrics",
		"https://evil.example/":               "/debug/traces?format=html",
		"//evil.example/debug/traces":         "/debug/traces?format=html",
		"/\\evil.example":                     "/debug/traces?format=html",
		"\\\\evil.example":                    "/debug/traces?format=html",
		"javascript:alert(1)":                 "/debug/traces?format=html",
		"/\t/evil.example":                    "/debug/traces?format=html",
		"":                                    "/debug/traces?format=html",
		"debug/traces":                        "/debug/traces?format=html",
		"http:/evil.example":                  "/debug/traces?format=html",
		"/-/signin?next=https://evil.example": "/debug/traces?format=html",
	} {
		resp, _ := o.signIn("tok", next)
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != want {
			t.Errorf("next=%q: %d to %q; want %q", next, resp.StatusCode, resp.Header.Get("Location"), want)
		}
	}
	// The form itself, asked for with a foreign next, returns to the list.
	if _, body := o.page("/-/signin"+"?next="+url.QueryEscape("https://evil.example/"), nil); !strings.Contains(body, `name="next" value="/debug/traces?format=html"`) {
		t.Errorf("the sign-in form keeps a foreign next:\n%s", body)
	}
}

// listJSON reads the trace list as JSON with the admin token.
func listJSON(t *testing.T, o *operator, query string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, o.base+"/debug/traces?"+query, nil)
	req.Header.Set("Authorization", "Bearer tok")
	resp, body := o.do(req)
	var v map[string]any
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("%s: %d %s", query, resp.StatusCode, body)
	}
	return resp.StatusCode, v
}

func mustList(t *testing.T, o *operator) map[string]any {
	t.Helper()
	status, v := listJSON(t, o, "")
	if status != 200 || len(listed(v)) == 0 {
		t.Fatalf("the trace list: %d %v", status, v)
	}
	return v
}

func listed(v map[string]any) []string {
	var ids []string
	for _, tr := range v["traces"].([]any) {
		ids = append(ids, tr.(map[string]any)["id"].(string))
	}
	return ids
}

func TestABadTraceFilterIsA400ListingTheAllowedValues(t *testing.T) {
	f := newFixture(t)
	f.userStatus(f.tokens()["access_token"].(string))
	admin := httptest.NewServer(f.srv.AdminHandler("tok"))
	defer admin.Close()
	o := newOperator(t, admin)
	for query, want := range map[string][]string{
		"outcome=bogus":                    {"failed", "stalled", "in_progress", "completed"},
		"failure=bogus":                    {"unknown_client", "redirect_uri_not_registered"},
		"usr=ada":                          {"outcome", "user", "app", "failure", "since", "limit"},
		"format=xml":                       {"html", "json"},
		"since=yesterday":                  {"1h", "RFC 3339"},
		"limit=0":                          {"1 to 1000"},
		"outcome=failed&outcome=completed": {"once"},
	} {
		status, v := listJSON(t, o, query)
		msg, _ := v["error"].(string)
		if status != http.StatusBadRequest || v["traces"] != nil {
			t.Errorf("%s: %d %v; want 400", query, status, v)
		}
		for _, w := range want {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: %q does not name %q", query, msg, w)
			}
		}
	}
	req, _ := http.NewRequest(http.MethodGet, o.base+"/debug/traces/"+listed(mustList(t, o))[0]+"?format=xml", nil)
	req.Header.Set("Authorization", "Bearer tok")
	if resp, body := o.do(req); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "html, json or mermaid") {
		t.Errorf("a trace as format=xml: %d %s", resp.StatusCode, body)
	}
	if _, v := listJSON(t, o, "outcome=bogus"); len(v["allowed"].([]any)) != 4 {
		t.Errorf("outcome=bogus: allowed %v", v["allowed"])
	}
	resp, body := o.page("/debug/traces?format=html&outcome=bogus", nil, "Authorization", "Bearer tok")
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, `outcome=&#34;bogus&#34; is no outcome; the outcomes are failed, stalled, in_progress, completed`) ||
		!strings.Contains(body, `<form class="filter"`) || strings.Contains(body, "No sign-in") {
		t.Errorf("the page of a bad outcome: %d\n%s", resp.StatusCode, body)
	}
	// The word an operator would use for an outcome finds it, whatever its case.
	_, all := listJSON(t, o, "outcome=completed")
	for _, q := range []string{"outcome=complete", "outcome=Completed", "outcome=success"} {
		if status, v := listJSON(t, o, q); status != 200 || len(listed(v)) != 1 || listed(v)[0] != listed(all)[0] {
			t.Errorf("%s: %d %v; want the completed sign-in %v", q, status, v, listed(all))
		}
	}
}

func TestTraceFiltersOnUserAndAppIgnoreCase(t *testing.T) {
	f := newFixture(t)
	f.userStatus(f.tokens()["access_token"].(string))
	failed := f.failedTrace()
	admin := httptest.NewServer(f.srv.AdminHandler("tok"))
	defer admin.Close()
	o := newOperator(t, admin)
	_, all := listJSON(t, o, "outcome=completed")
	if len(listed(all)) != 1 {
		t.Fatalf("completed sign-ins: %v", all)
	}
	for _, q := range []string{"user=ADA", "user=Ada", "user=%40ada", "app=mattermost", "app=MATTERMOST", "app=" + url.QueryEscape(strings.ToUpper(f.app.ID)),
		"user=ada&app=Mattermost"} {
		if status, v := listJSON(t, o, q); status != 200 || len(listed(v)) != 1 || listed(v)[0] != listed(all)[0] {
			t.Errorf("%s: %d %v; want %v", q, status, listed(v), listed(all))
		}
	}
	if _, v := listJSON(t, o, "user=ADA&outcome=failed"); len(listed(v)) != 0 {
		t.Errorf("user=ADA&outcome=failed lists %v; the failed sign-in %s never reached GitLab", listed(v), failed)
	}
}

func TestAnEmptyFilteredListNamesTheFilter(t *testing.T) {
	f := newFixture(t)
	f.userStatus(f.tokens()["access_token"].(string))
	f.failedTrace()
	admin := httptest.NewServer(f.srv.AdminHandler("tok"))
	defer admin.Close()
	o := newOperator(t, admin)
	resp, body := o.page("/debug/traces?format=html&outcome=stalled&user=grace", nil, "Authorization", "Bearer tok")
	if resp.StatusCode != 200 || !strings.Contains(body, "No sign-in matches outcome=stalled, user=grace in the retention period (2 traced).") {
		t.Errorf("an empty filtered list:\n%s", body)
	}
	if !strings.Contains(body, `<code>outcome=stalled</code>, <code>user=grace</code>`) || !strings.Contains(body, `id="clear"`) ||
		!strings.Contains(body, `<option selected>stalled</option>`) || !strings.Contains(body, `id="f-user" value="grace"`) {
		t.Errorf("the page does not show the filter in force and in its form:\n%s", body)
	}
	_, body = o.page("/debug/traces?format=html&since=1m&failure=token_expired", nil, "Authorization", "Bearer tok")
	if !strings.Contains(body, "No sign-in matches failure=token_expired since 1m (2 traced).") {
		t.Errorf("an empty list since a time:\n%s", body)
	}
	if status, v := listJSON(t, o, "user=grace"); status != 200 || len(listed(v)) != 0 || v["traced"] != 2.0 || v["filter"].(map[string]any)["user"] != "grace" {
		t.Errorf("JSON of an empty filtered list: %v", v)
	}
}

// Go's profiles are the operators': behind the admin token, on the operators' listener alone.
func TestProfilesAreServedToOperatorsWithTheTokenAlone(t *testing.T) {
	f := newFixture(t)
	admin := httptest.NewServer(f.srv.AdminHandler("tok"))
	defer admin.Close()
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/profile?seconds=1"} {
		if resp := f.get(admin.URL + path); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s without the admin token: %d, want 401", path, resp.StatusCode)
		}
		if resp := f.get(f.bridge.URL + path); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s on the public listener: %d, want 404", path, resp.StatusCode)
		}
	}
	resp := f.get(admin.URL+"/debug/pprof/heap?debug=1", "Authorization", "Bearer tok")
	if body := readBody(t, resp); resp.StatusCode != http.StatusOK || !strings.Contains(body, "heap profile") {
		t.Errorf("the heap profile with the token: %d %.200s", resp.StatusCode, body)
	}
	// The command line, whose flags may carry secrets, is not served, even where no token is
	// asked (a listener on loopback).
	open := httptest.NewServer(f.srv.AdminHandler(""))
	defer open.Close()
	for _, base := range []string{admin.URL, open.URL} {
		if resp := f.get(base+"/debug/pprof/cmdline", "Authorization", "Bearer tok"); resp.StatusCode != http.StatusNotFound {
			t.Errorf("/debug/pprof/cmdline: %d, want 404", resp.StatusCode)
		}
	}
}
