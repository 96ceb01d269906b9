package upstream

import (
	"context"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
)

// ProbeAuthorize sends authURL, an authorize request as a sign-in would send it, and reads the
// provider's answer without signing in or following it: providers check the client and its
// redirect URI before they ask anyone to sign in, and answer a refusal with an error page (or a
// redirect with an error to a registered URI), an acceptance with their sign-in page or a
// redirect to it.
func ProbeAuthorize(ctx context.Context, hc *http.Client, authURL, redirectURI string, d Description) Finding {
	const check = "redirect URI"
	client := *hc
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, authURL, nil)
	if err != nil {
		return Finding{Check: check, Detail: err.Error()}
	}
	resp, err := client.Do(req)
	if err != nil {
		e := Classify(CallPing, authURL, err, nil)
		e.Provider, e.Settings = d.DisplayName, d.Settings
		return Finding{Check: check, Detail: e.Error(), Fix: e.Fix()}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 256<<10))
	fix := fmt.Sprintf("Register %s as a redirect URI of the bridge's client at %s (%s), and check %s.", redirectURI, d.DisplayName, d.Settings.Console, d.Settings.ClientID)
	if loc, err := resp.Location(); err == nil {
		if strings.HasPrefix(loc.String(), redirectURI) {
			if e := loc.Query().Get("error"); e != "" {
				return Finding{Check: check, Detail: fmt.Sprintf("%s accepts the redirect URI but refuses the request: %s %s", d.DisplayName, e, loc.Query().Get("error_description")),
					Fix: fmt.Sprintf("Check the scopes the bridge asks for (%s) against what the client may have at %s.", d.Settings.Scopes, d.DisplayName)}
			}
		}
		if e := loc.Query().Get("error"); e != "" && !strings.HasPrefix(loc.String(), redirectURI) {
			return Finding{Check: check, Detail: fmt.Sprintf("%s refuses the bridge's authorize request: %s %s", d.DisplayName, e, loc.Query().Get("error_description")), Fix: fix}
		}
		return Finding{Check: check, OK: true, Detail: fmt.Sprintf("%s accepts the client %s with the redirect URI %s (it answers %d, to %s)",
			d.DisplayName, clientIDOf(authURL), redirectURI, resp.StatusCode, loc.Redacted())}
	}
	text := pageText(body)
	if resp.StatusCode >= 400 || refusalWords.MatchString(text) {
		return Finding{Check: check, Detail: fmt.Sprintf("%s refuses the bridge's authorize request (%d): %s", d.DisplayName, resp.StatusCode, excerpt(text, 240)), Fix: fix}
	}
	return Finding{Check: check, OK: true, Detail: fmt.Sprintf("%s accepts the client %s with the redirect URI %s (it answers with its sign-in page)", d.DisplayName, clientIDOf(authURL), redirectURI)}
}

// refusalWords are how providers' error pages name a refused client or redirect URI: Keycloak's
// "Invalid parameter: redirect_uri", Doorkeeper's "The redirect URI included is not valid",
// Entra ID's AADSTS50011, oidc-provider's invalid_redirect_uri.
var refusalWords = regexp.MustCompile(`(?i)invalid[ _]redirect[ _]?uri|invalid parameter: redirect_uri|redirect uri included is not valid|AADSTS50011|AADSTS700016|unknown client|client not found|invalid_client|client authentication failed`)

func clientIDOf(authURL string) string {
	u, err := url.Parse(authURL)
	if err != nil {
		return ""
	}
	return u.Query().Get("client_id")
}

var tags = regexp.MustCompile(`(?s)<script.*?</script>|<style.*?</style>|<[^>]*>`)

// pageText is the visible text of an HTML page, on one line.
func pageText(body []byte) string {
	return strings.Join(strings.Fields(html.UnescapeString(tags.ReplaceAllString(string(body), " "))), " ")
}

func excerpt(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n]) + "…"
	}
	return s
}
