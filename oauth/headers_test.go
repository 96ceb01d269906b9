package oauth

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
)

func TestHSTSOnlyBehindHTTPS(t *testing.T) {
	for https, want := range map[bool]string{true: "max-age=31536000", false: ""} {
		e := echo.New()
		rec := httptest.NewRecorder()
		c := e.NewContext(httptest.NewRequest(http.MethodGet, "/", nil), rec)
		_ = securityHeaders(https)(func(echo.Context) error { return nil })(c)
		if got := rec.Header().Get("Strict-Transport-Security"); got != want {
			t.Errorf("https=%v: HSTS %q, want %q", https, got, want)
		}
		if rec.Header().Get("X-Frame-Options") != "DENY" {
			t.Error("no X-Frame-Options")
		}
	}
}

// Behind https the browser cookie has the __Host- prefix, so that no other origin (a sibling
// domain's site) can set it: browsers accept such a cookie only Secure, with Path=/ and no Domain.
func TestBrowserCookieBehindHTTPSHasTheHostPrefix(t *testing.T) {
	for public, want := range map[string]string{
		"https://sso.example.com": "__Host-ssobridge_browser=",
		"http://127.0.0.1:8080":   "ssobridge_browser=",
	} {
		u, _ := url.Parse(public)
		s := &Server{public: u, cfg: Config{AuthorizationTTL: time.Minute}}
		rec := httptest.NewRecorder()
		s.browserCookie(echo.New().NewContext(httptest.NewRequest(http.MethodGet, "/oauth/authorize", nil), rec))
		got := rec.Header().Get("Set-Cookie")
		if !strings.HasPrefix(got, want) || !strings.Contains(got, "Path=/;") || strings.Contains(got, "Domain") ||
			strings.Contains(got, "Secure") != (u.Scheme == "https") {
			t.Errorf("%s: Set-Cookie %q; want %s..., Path=/, no Domain, Secure only behind https", public, got, want)
		}
	}
}
