package oauth_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/ssobridge/ssobridge/oauth"
	"github.com/ssobridge/ssobridge/oauth/store/memstore"
)

// FuzzAuthorizeEndpoint: whatever the query, the bridge answers with a page (4xx), a redirect
// to the upstream GitLab, or a redirect to a URI registered for the client, with an
// error_description in the characters RFC 6749 allows; never a 5xx.
// fuzzFixture is a fixture for a fuzz target, whose inputs all come from one address, thousands a
// second: its limits are off, or they would soon answer every input 429 (limits_test.go tests
// them).
func fuzzFixture(f *testing.F, kinds ...string) *fixture {
	fixtureConfig = func(cfg *oauth.Config) { cfg.Limits = unlimited }
	defer func() { fixtureConfig = nil }()
	return newFixtureFor(f, memstore.New(), []string{"read_user"}, kinds)
}

func FuzzAuthorizeEndpoint(f *testing.F) {
	fx := fuzzFixture(f, "gitlab")
	f.Add(fx.authorizeQuery("s").Encode())
	f.Add("response_type=code&client_id=" + fx.app.ID + "&redirect_uri=https%3A%2F%2Fmm.example.com%2Fsignup%2Fgitlab%2Fcomplete%2F..&state=x")
	f.Add("client_id=" + fx.app.ID + "&redirect_uri=https://mm.example.com@evil.com/&response_type=token")
	f.Add("client_id=%zz&&&=")
	f.Add("response_type=%22%5C%C3%A9%E2%80%A6&client_id=" + fx.app.ID + "&redirect_uri=https%3A%2F%2Fmm.example.com%2Fsignup%2Fgitlab%2Fcomplete&state=x")
	for _, extra := range []string{"&prompt=none", "&prompt=login+consent&max_age=0", "&prompt=none+login", "&max_age=-1", "&prompt=select_account"} {
		f.Add(fx.authorizeQuery("s").Encode() + extra)
	}
	f.Fuzz(func(t *testing.T, query string) {
		resp := fx.fuzzGet(t, "/oauth/authorize", query)
		switch {
		case resp.StatusCode >= 500:
			t.Fatalf("status %d for query %q", resp.StatusCode, query)
		case resp.StatusCode == http.StatusFound:
			loc := resp.Header.Get("Location")
			if strings.HasPrefix(loc, fx.gl.URL()+"/oauth/authorize?") {
				return
			}
			if !fx.registered(loc) {
				t.Fatalf("redirected to %q, which is neither GitLab nor registered", loc)
			}
			if u, _ := url.Parse(loc); !describable(u.Query().Get("error_description")) {
				t.Fatalf("error_description %q has a character RFC 6749 does not allow", u.Query().Get("error_description"))
			}
		case resp.StatusCode != http.StatusBadRequest:
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
}

// registered reports whether loc, less the parameters the bridge adds, is a registered URI.
func (f *fixture) registered(loc string) bool {
	u, err := url.Parse(loc)
	if err != nil {
		return false
	}
	q := u.Query()
	for _, k := range []string{"error", "error_description", "state", "code", "iss"} {
		q.Del(k)
	}
	u.RawQuery = q.Encode()
	for _, r := range f.app.RedirectURIs {
		if oauth.MatchRedirectURI(r, u.String(), !f.app.Confidential) {
			return true
		}
	}
	return false
}

// FuzzCallbackEndpoint: no query at the callback yields a 5xx or a redirect to anywhere.
func FuzzCallbackEndpoint(f *testing.F) {
	fx := fuzzFixture(f, "gitlab")
	f.Add("state=x&code=y")
	f.Add("state=&error=access_denied")
	f.Add("state=a&state=b")
	f.Fuzz(func(t *testing.T, query string) {
		resp := fx.fuzzGet(t, "/oauth/callback", query)
		// Without a state the bridge issued, nothing can succeed or redirect.
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("status %d for query %q", resp.StatusCode, query)
		}
	})
}

// FuzzTokenEndpoint: any body and Authorization header get a JSON OAuth error with a
// description in the characters RFC 6749 allows, 400 or 401, never a 5xx or a token.
func FuzzTokenEndpoint(f *testing.F) {
	fx := fuzzFixture(f, "gitlab")
	f.Add(fx.tokenForm("nope").Encode(), "")
	f.Add("grant_type=authorization_code&code=x&redirect_uri=x", "Basic "+strings.Repeat("A", 8))
	f.Add("grant_type=refresh_token&refresh_token=x", "Basic Og==")
	f.Add("grant_type=%22%5C%C3%A9%E2%80%A6", "")
	f.Add("grant_type=authorization_code&code=x&client_id=%22%5C%C3%A9%E2%80%A6&client_secret=y", "")
	f.Fuzz(func(t *testing.T, body, authorization string) {
		req, _ := http.NewRequest(http.MethodPost, fx.bridge.URL+"/oauth/token", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if authorization != "" {
			req.Header["Authorization"] = []string{authorization}
		}
		resp, err := fx.http.Do(req)
		if err != nil {
			t.Skip() // a header value net/http refuses to send
		}
		defer resp.Body.Close()
		if resp.StatusCode != 400 && resp.StatusCode != 401 {
			t.Fatalf("status %d for body %q", resp.StatusCode, body)
		}
		if resp.Header.Get("Cache-Control") != "no-store" {
			t.Fatal("no Cache-Control: no-store")
		}
		var answer struct {
			Error            string `json:"error"`
			ErrorDescription string `json:"error_description"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil || answer.Error == "" {
			t.Fatalf("not an OAuth error: %v", err)
		}
		if !describable(answer.ErrorDescription) {
			t.Fatalf("error_description %q has a character RFC 6749 does not allow", answer.ErrorDescription)
		}
	})
}

// fuzzGet sends a GET with a raw query, as a browser would; a query net/http refuses to send
// (control characters), as browsers do, skips the input.
func (f *fixture) fuzzGet(t *testing.T, path, query string) *http.Response {
	req, err := http.NewRequest(http.MethodGet, f.bridge.URL+path, nil)
	if err != nil {
		t.Skip()
	}
	req.URL.RawQuery = query
	resp, err := f.http.Do(req)
	if err != nil {
		t.Skip()
	}
	resp.Body.Close()
	return resp
}

// FuzzConsentEndpoint: without a consent key the bridge issued, no form and no cookie redirects
// anywhere or yields a 5xx.
func FuzzConsentEndpoint(f *testing.F) {
	fuzzFormEndpoint(f, fuzzFixture(f, "gitlab"), "/oauth/consent", "consent=x&decision=allow", "decision=deny", "consent=%zz")
}

// fuzzFormEndpoint posts any form, with any browser cookie, to a page's answer (the consent
// page's, the chooser's) as anyone could: what names no parked sign-in is refused with a 400
// page, never a redirect.
func fuzzFormEndpoint(f *testing.F, fx *fixture, path string, seeds ...string) {
	for i, s := range seeds {
		f.Add(s, []string{"x", "", "\x00"}[i%3])
	}
	f.Fuzz(func(t *testing.T, body, cookie string) {
		req, _ := http.NewRequest(http.MethodPost, fx.bridge.URL+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header["Cookie"] = []string{"ssobridge_browser=" + cookie}
		resp, err := fx.http.Do(req)
		if err != nil {
			t.Skip() // a header net/http refuses to send
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("status %d for %q", resp.StatusCode, body)
		}
	})
}

// FuzzChooseEndpoint posts the chooser's answer as anyone could.
func FuzzChooseEndpoint(f *testing.F) {
	fx := fuzzFixture(f, "gitlab", "oidc")
	fuzzFormEndpoint(f, fx, "/oauth/choose", "choice=x&upstream=corp", "upstream=gitlab", "choice=%zz&upstream=corp&upstream=gitlab")
}
