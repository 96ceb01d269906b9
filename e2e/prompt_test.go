package e2e

import (
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"
)

// A client that asks for no interaction (prompt=none) of a person not signed in at the provider
// gets login_required back, with its state: the bridge asks the provider for prompt=none, and
// passes on its answer instead of showing a page.
func TestPromptNoneAtTheOpenIDProviderReachesTheClientAsLoginRequired(t *testing.T) {
	s := newOIDCStack(t)
	s.start(t)
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	next := s.bridgeURL + "/oauth/authorize?" + url.Values{"response_type": {"code"}, "client_id": {oidcStackAppID},
		"redirect_uri": {siteURL + "/signup/gitlab/complete"}, "state": {"st-none"}, "prompt": {"none"}}.Encode()
	askedPeer := false
	for range 10 {
		resp, err := browser.Get(next)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc, err := resp.Location()
		if err != nil { // oidc-provider redirects with 303, the bridge with 302
			t.Fatalf("the browser stopped at %s: %d", next, resp.StatusCode)
		}
		if strings.HasPrefix(loc.String(), s.peer.Issuer+"/") && !askedPeer {
			askedPeer = true
			if loc.Query().Get("prompt") != "none" {
				t.Fatalf("the provider is asked without prompt=none: %s", loc)
			}
		}
		if strings.HasPrefix(loc.String(), siteURL+"/") {
			q := loc.Query()
			if !askedPeer || q.Get("error") != "login_required" || q.Get("state") != "st-none" || q.Has("code") {
				t.Fatalf("the client got %s (provider asked: %v), want error=login_required with its state", loc, askedPeer)
			}
			return
		}
		next = loc.String()
	}
	t.Fatalf("no way back to the client after 10 redirects; last at %s", next)
}
