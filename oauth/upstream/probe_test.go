package upstream

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The answers providers give an authorize request, by what they mean.
func TestProbeAuthorizeReadsTheProvidersAnswer(t *testing.T) {
	const cb = "https://sso.example.com/oauth/callback"
	d := Description{DisplayName: "IdP", Settings: Settings{ClientID: "SSOBRIDGE_OIDC_CLIENT_ID", Scopes: "SSOBRIDGE_OIDC_SCOPES", Console: "its console"}}
	type want int
	const (
		pass want = iota
		fail
		unsure
	)
	page := func(status int, body string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(status)
			fmt.Fprint(w, body)
		}
	}
	redirect := func(to string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, to, http.StatusFound) }
	}
	tests := []struct {
		name    string
		h       http.HandlerFunc
		want    want
		fixSays string
	}{
		{"a sign-in page passes", page(200, `<form method="post"><input name="username"><input type="password" name="password"></form>`), pass, ""},
		{"a redirect to the provider's sign-in page passes", redirect("/interaction/abc"), pass, ""},
		{"a code sent to the callback at once passes", redirect(cb + "?code=x&state=s"), pass, ""},
		{"Keycloak's 400 for the redirect URI fails", page(400, `<p>Invalid parameter: redirect_uri</p>`), fail, "Register " + cb},
		{"oidc-provider's 400 fails", page(400, `<h1>oops! something went wrong</h1><pre>invalid_redirect_uri</pre>`), fail, "Register " + cb},
		{"Entra ID's error page, written by its script, fails", page(200, `<html><head><script>$Config={"strServiceExceptionMessage":"AADSTS50011: The redirect URI does not match"};</script></head><body><div id="root"></div></body></html>`), fail, "Register " + cb},
		{"Entra ID's unknown application fails naming the client", page(200, `<html><head><script>$Config={"strServiceExceptionMessage":"AADSTS700016: Application not found"};</script></head></html>`), fail, `knows no client "c"`},
		{"Google's redirect to its error page fails", redirect("https://accounts.google.com/signin/oauth/error/v2?authError=Cg9yZWRpcmVjdF91cmlfbWlzbWF0Y2g"), fail, "Register " + cb},
		{"a 200 error page naming redirect_uri_mismatch fails", page(200, `<h1>Error 400: redirect_uri_mismatch</h1>`), fail, "Register " + cb},
		{"GitLab's error page for an unknown client fails naming the client", page(200, `<h2>An error has occurred</h2><p>Client authentication failed due to unknown client</p>`), fail, `knows no client "c"`},
		{"an error sent back to the callback fails with its fix", redirect(cb + "?error=unauthorized_client"), fail, "does not let the bridge's application use this grant"},
		{"a redirect to an error path fails", redirect("/error?code=bad_redirect"), fail, "Register " + cb},
		{"an error sent to a lookalike of the callback fails", redirect(cb + "x?error=access_denied"), fail, ""},
		{"a redirect to the authorize endpoint again cannot tell", redirect("/authorize?client_id=c&again=1"), unsure, "Open "},
		{"a page of nothing known cannot tell", page(200, `<p>Welcome</p>`), unsure, "Open "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.h)
			defer srv.Close()
			f := ProbeAuthorize(t.Context(), srv.Client(), srv.URL+"/authorize?client_id=c&redirect_uri="+cb, cb, d)
			got := fail
			switch {
			case f.OK:
				got = pass
			case f.Unsure:
				got = unsure
			}
			if got != tt.want || !strings.Contains(f.Fix, tt.fixSays) {
				t.Errorf("got %+v", f)
			}
			if f.OK && strings.Contains(f.Detail, "code=") {
				t.Errorf("the detail shows a code: %s", f.Detail)
			}
		})
	}
}
