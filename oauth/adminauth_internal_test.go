package oauth

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestAnAdminSessionEndsWhenItsCookieExpires(t *testing.T) {
	a := newAdminAuth("tok", slog.New(slog.NewTextHandler(io.Discard, nil)))
	start := time.Unix(1_800_000_000, 0)
	a.now = func() time.Time { return start }
	v := a.sessionValue(start.Add(adminSessionTTL))
	if !a.validSession(v) {
		t.Fatalf("a fresh session %q is refused", v)
	}
	a.now = func() time.Time { return start.Add(adminSessionTTL) }
	if a.validSession(v) {
		t.Error("a session is still valid when it expires")
	}
	// A session signed to last longer than any the bridge makes was not made by it.
	a.now = func() time.Time { return start }
	if a.validSession(a.sessionValue(start.Add(30 * 24 * time.Hour))) {
		t.Error("a session of 30 days is accepted")
	}
}

// checkLocal fails unless next is a path a browser resolves on the listener it came from.
func checkLocal(t *testing.T, in, next string) {
	u, err := url.Parse(next)
	if err != nil || !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\t\r\n") ||
		u.Scheme != "" || u.Host != "" {
		t.Fatalf("localPath(%q) = %q, which may leave the listener", in, next)
	}
}

// FuzzAdminSignIn feeds the operators' sign-in what a browser or an attacker can send: a cookie,
// a next page, a form body.
func FuzzAdminSignIn(f *testing.F) {
	f.Add("v1.1800000000.abc", "/debug/traces?format=html", "token=tok&next=%2Fmetrics")
	f.Add("v1..", "//evil.example", "token=a&token=b")
	f.Add("v1.99999999999.x.y", "/\\evil", "next=https%3A%2F%2Fevil.example&token=tok")
	f.Add("", "javascript:alert(1)", "%zz")
	a := newAdminAuth("tok", slog.New(slog.NewTextHandler(io.Discard, nil)))
	f.Fuzz(func(t *testing.T, cookie, next, body string) {
		if a.validSession(cookie) && cookie != a.sessionValue(sessionExpiry(t, cookie)) {
			t.Fatalf("a cookie not made by the bridge is valid: %q", cookie)
		}
		checkLocal(t, next, localPath(next))
		r := httptest.NewRequest(http.MethodPost, AdminSignInPath, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if _, n, err := parseSignInForm(r); err == nil {
			checkLocal(t, body, n)
		}
	})
}

func sessionExpiry(t *testing.T, cookie string) time.Time {
	exp, ok := parseSession(cookie)
	if !ok {
		t.Fatalf("a valid cookie %q does not parse", cookie)
	}
	return exp
}
