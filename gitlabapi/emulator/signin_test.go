package emulator

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestEveryPageOfTheEmulatorRefusesToBeFramed: the sign-in form, the pages and every other answer
// carry the headers the bridge's pages carry.
func TestEveryPageOfTheEmulatorRefusesToBeFramed(t *testing.T) {
	f := newFixture(t)
	for name, w := range map[string]*httptest.ResponseRecorder{
		"the sign-in form":   serve(f.Server, http.MethodGet, "/users/sign_in", nil, nil),
		"a forged sign-in":   serve(f.Server, http.MethodPost, "/users/sign_in", url.Values{"authenticity_token": {"x"}}, nil),
		"an authorize error": serve(f.Server, http.MethodGet, "/oauth/authorize?client_id=nobody", nil, nil),
		"an unknown path":    serve(f.Server, http.MethodGet, "/nowhere", nil, nil),
		"the API":            serve(f.Server, http.MethodGet, "/api/v4/user", nil, nil),
	} {
		h := w.Header()
		csp := h.Get("Content-Security-Policy")
		if h.Get("X-Frame-Options") != "DENY" || !strings.Contains(csp, "frame-ancestors 'none'") ||
			h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("%s: X-Frame-Options %q, CSP %q, X-Content-Type-Options %q, Referrer-Policy %q", name,
				h.Get("X-Frame-Options"), csp, h.Get("X-Content-Type-Options"), h.Get("Referrer-Policy"))
		}
		if strings.HasPrefix(h.Get("Content-Type"), "text/html") && h.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: a page with Cache-Control %q, want no-store", name, h.Get("Cache-Control"))
		}
	}
}

// signInFrom posts the sign-in form from remoteAddr, with a token the emulator gave that browser.
func signInFrom(t *testing.T, s *Server, remoteAddr, login, password string) *httptest.ResponseRecorder {
	t.Helper()
	send := func(method string, body string, cookies []*http.Cookie) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, "/users/sign_in", strings.NewReader(body))
		r.RemoteAddr = remoteAddr
		if body != "" {
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		for _, c := range cookies {
			r.AddCookie(c)
		}
		w := httptest.NewRecorder()
		s.Handler().ServeHTTP(w, r)
		return w
	}
	page := send(http.MethodGet, "", nil)
	m := authenticityToken.FindStringSubmatch(page.Body.String())
	if m == nil {
		t.Fatalf("no sign-in form: %s", page.Body.String())
	}
	form := url.Values{"authenticity_token": {m[1]}, "user[login]": {login}, "user[password]": {password}}
	return send(http.MethodPost, form.Encode(), page.Result().Cookies())
}

func TestTheSignInFormLimitsFailedAttemptsPerClientAddress(t *testing.T) {
	f := newFixture(t)
	f.AddUser(User{ID: 7, Username: "bob", Email: "bob@example.com", Password: "right one"})
	const attacker, other = "198.51.100.7:5000", "203.0.113.9:6000"
	for i := range signInBurst {
		if w := signInFrom(t, f.Server, attacker, "bob", "guess"); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "Invalid login or password.") {
			t.Fatalf("failed attempt %d: %d", i+1, w.Code)
		}
	}
	for name, password := range map[string]string{"another guess": "guess", "even the right password": "right one"} {
		w := signInFrom(t, f.Server, attacker, "bob", password)
		if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "6" ||
			!strings.Contains(w.Body.String(), "too many failed sign-ins from your address") || !strings.Contains(w.Body.String(), "wait 6 seconds") {
			t.Errorf("%s after %d failures: %d, Retry-After %q: %s", name, signInBurst, w.Code, w.Header().Get("Retry-After"), w.Body.String())
		}
	}
	if w := signInFrom(t, f.Server, other, "bob", "right one"); w.Code != http.StatusFound {
		t.Errorf("another address is limited too: %d", w.Code)
	}
	f.clock.Advance(signInEvery)
	if w := signInFrom(t, f.Server, attacker, "bob", "right one"); w.Code != http.StatusFound {
		t.Errorf("once Retry-After has passed: %d, want the sign-in", w.Code)
	}
}

func TestSuccessfulSignInsAreNotLimited(t *testing.T) {
	f := newFixture(t)
	f.AddUser(User{ID: 7, Username: "bob", Email: "bob@example.com", Password: "right one"})
	for i := range 3 * signInBurst {
		if w := signInFrom(t, f.Server, "198.51.100.7:5000", "bob", "right one"); w.Code != http.StatusFound {
			t.Fatalf("sign-in %d: %d", i+1, w.Code)
		}
	}
}

func TestAnIPv6ClientIsLimitedByItsSlash64(t *testing.T) {
	for _, tt := range []struct{ a, b string }{
		{"[2001:db8:1:2::1]:1", "[2001:db8:1:2:ffff::9]:2"},
		{"192.0.2.1:1", "192.0.2.1:2"},
	} {
		ka, kb := clientKey(&http.Request{RemoteAddr: tt.a}), clientKey(&http.Request{RemoteAddr: tt.b})
		if ka != kb {
			t.Errorf("%s and %s are limited apart (%s, %s)", tt.a, tt.b, ka, kb)
		}
	}
	if clientKey(&http.Request{RemoteAddr: "[2001:db8:1:2::1]:1"}) == clientKey(&http.Request{RemoteAddr: "[2001:db8:1:3::1]:1"}) {
		t.Error("two /64s share a limit")
	}
}

func TestTheSignInLimiterForgetsIdleAddressesAndStaysBounded(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newSignInLimiter(time.Second, 2, 3)
	for _, c := range []string{"a", "b", "c", "d", "e"} {
		if wait, _ := l.attempt(c, now); wait > 0 {
			t.Fatalf("first attempt of %s waits %s", c, wait)
		}
		if len(l.clients) > 3 {
			t.Fatalf("%d addresses held, more than the 3 allowed", len(l.clients))
		}
	}
	// "e" used both its tokens: it must still be limited, though "d" and "e" are the newest.
	if wait, _ := l.attempt("e", now); wait > 0 {
		t.Fatalf("second attempt of e waits %s", wait)
	}
	if wait, _ := l.attempt("e", now); wait != time.Second {
		t.Errorf("third attempt of e waits %s, want 1s", wait)
	}
	// Later, every bucket is full again: a sweep forgets them all, but the one just used.
	later := now.Add(sweepSignInEvery)
	l.attempt("f", later)
	if len(l.clients) != 1 || l.clients["f"] == nil {
		t.Errorf("after the sweep %d addresses are held, want only f", len(l.clients))
	}
}
