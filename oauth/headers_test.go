package oauth

import (
	"net/http"
	"net/http/httptest"
	"testing"

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
