package oauth_test

import (
	"net/http"
	"testing"
)

// A code or an error in a redirect's URL, like a token in a body, is for one person once: no
// cache between the browser and the bridge may keep it (RFC 6749 §5.1, OAuth security BCP).
func TestRedirectsCarryingACodeOrAnErrorAreNotCached(t *testing.T) {
	f := newFixture(t)
	q := f.authorizeQuery("s")
	q.Set("response_type", "token")
	errorRedirect := f.authorize(q)
	codeRedirect := f.get(f.toCallback(f.authorizeQuery("s")).String())
	for name, resp := range map[string]*http.Response{"an error sent back to the client": errorRedirect, "a code sent back to the client": codeRedirect} {
		if resp.StatusCode != http.StatusFound || resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: %d with Cache-Control %q; want 302 with no-store", name, resp.StatusCode, resp.Header.Get("Cache-Control"))
		}
	}
	if got := f.get(f.bridge.URL + "/.well-known/openid-configuration").Header.Get("Cache-Control"); got != "public, max-age=300" {
		t.Errorf("the discovery document: Cache-Control %q; want it cacheable, public, max-age=300", got)
	}
}
