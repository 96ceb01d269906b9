package oauth_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// describable reports whether d holds only the characters RFC 6749 allows in error_description
// (§4.1.2.1, §5.2): %x20-21 / %x23-5B / %x5D-7E.
func describable(d string) bool {
	for i := 0; i < len(d); i++ {
		if c := d[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// issuer is the issuer of the bridge's discovery document.
func (f *fixture) issuer() string {
	f.t.Helper()
	return decodeJSON(f.t, readBody(f.t, f.get(f.bridge.URL+"/.well-known/openid-configuration")))["issuer"].(string)
}

// oddState is a state with every kind of character a client may put in one.
const oddState = "a+b/c=d&e%20f g?h#i~j\u00e9\U0001F600"

// checkAuthorizationResponse checks a redirect to the client: the issuer as iss (RFC 9207), the
// state as sent, and code or error as want says.
func checkAuthorizationResponse(t *testing.T, loc *url.URL, issuer, state, want string) {
	t.Helper()
	q := loc.Query()
	if len(q["iss"]) != 1 || q.Get("iss") != issuer {
		t.Errorf("iss %q, want the discovery document's issuer %q: %s", q["iss"], issuer, loc)
	}
	if len(q["state"]) != 1 || q.Get("state") != state {
		t.Errorf("state %q, want %q", q["state"], state)
	}
	if want == "code" && q.Get("code") == "" || want != "code" && q.Get("error") != want {
		t.Errorf("want %s: %s", want, loc)
	}
}

func TestEveryAuthorizationResponseCarriesTheIssuerAndTheStateAsSent(t *testing.T) {
	f := newFixture(t)
	iss := f.issuer()
	t.Run("a code", func(t *testing.T) {
		checkAuthorizationResponse(t, f.toClient(f.authorizeQuery(oddState)), iss, oddState, "code")
	})
	t.Run("an error at the authorize endpoint", func(t *testing.T) {
		q := f.authorizeQuery(oddState)
		q.Set("response_type", "token")
		checkAuthorizationResponse(t, location(t, f.authorize(q)), iss, oddState, "unsupported_response_type")
	})
	t.Run("a code after consent", func(t *testing.T) {
		q, _, _ := f.untrusted(true)
		body, cookie := f.consentPage(q)
		checkAuthorizationResponse(t, location(t, f.answer(body, cookie, "allow")), iss, "keep", "code")
	})
	t.Run("consent denied", func(t *testing.T) {
		q, _, _ := f.untrusted(true)
		body, cookie := f.consentPage(q)
		checkAuthorizationResponse(t, location(t, f.answer(body, cookie, "deny")), iss, "keep", "access_denied")
	})
}

func TestDiscoveryAdvertisesTheIssuerInAuthorizationResponses(t *testing.T) {
	f := newFixture(t)
	got := decodeJSON(t, readBody(t, f.get(f.bridge.URL+"/.well-known/openid-configuration")))
	if got["authorization_response_iss_parameter_supported"] != true {
		t.Errorf("authorization_response_iss_parameter_supported = %v, want true", got["authorization_response_iss_parameter_supported"])
	}
}

// A value quoted in a description may hold any character; what reaches the client holds only
// those RFC 6749 allows.
const hostileValue = "to\"k\\en \u00e9\u2026\x01"

func TestErrorDescriptionsSentToClientsKeepToTheCharactersRFC6749Allows(t *testing.T) {
	f := newFixture(t)
	q := f.authorizeQuery("s")
	q.Set("response_type", hostileValue+strings.Repeat("\u00e9", 40))
	desc := location(t, f.authorize(q)).Query().Get("error_description")
	if desc == "" || !describable(desc) {
		t.Errorf("authorize: error_description %q", desc)
	}
	for _, tt := range []struct {
		path string
		form url.Values
	}{
		{"/oauth/token", url.Values{"grant_type": {hostileValue}}},
		{"/oauth/token", url.Values{"grant_type": {"authorization_code"}, "code": {"x"}, "client_id": {hostileValue}, "client_secret": {"y"}}},
		{"/oauth/revoke", url.Values{"token": {"x"}, "client_id": {hostileValue}, "client_secret": {"y"}}},
		{"/oauth/introspect", url.Values{"token": {"x"}, "client_id": {hostileValue}, "client_secret": {"y"}}},
	} {
		resp, body := f.postForm(tt.path, tt.form)
		desc, _ := body["error_description"].(string)
		if resp.StatusCode == http.StatusOK || desc == "" || !describable(desc) {
			t.Errorf("%s %v: %d, error_description %q", tt.path, tt.form, resp.StatusCode, desc)
		}
	}
}
