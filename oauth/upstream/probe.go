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
// redirect to an error page, or with an error to a registered URI), an acceptance with their
// sign-in page or a redirect to it. It passes only on such evidence of acceptance; an answer it
// cannot read either way is Unsure, with the URL to open in a browser.
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
	clientID := clientIDOf(authURL)
	refused := func(what string) Finding {
		return Finding{Check: check, Detail: fmt.Sprintf("%s refuses the bridge's authorize request: %s", d.DisplayName, what), Fix: refusalFix(what, clientID, redirectURI, d)}
	}
	accepted := func(how string) Finding {
		return Finding{Check: check, OK: true, Detail: fmt.Sprintf("%s accepts the client %s with the redirect URI %s (%s)", d.DisplayName, clientID, redirectURI, how)}
	}
	if loc, err := resp.Location(); err == nil {
		q := loc.Query()
		switch {
		case sameEndpoint(loc, redirectURI) && q.Get("error") != "":
			e := &Error{Provider: d.DisplayName, Settings: d.Settings, Kind: KindRejected, Code: q.Get("error")}
			return Finding{Check: check, Detail: fmt.Sprintf("%s accepts the redirect URI but refuses the request: %s %s", d.DisplayName, q.Get("error"), q.Get("error_description")), Fix: e.Fix()}
		case sameEndpoint(loc, redirectURI) && q.Get("code") != "":
			return accepted("it signed someone in at once and sent a code to it")
		case q.Get("error") != "" || q.Get("authError") != "" || strings.Contains(strings.ToLower(loc.Path), "error"):
			return refused(strings.TrimSpace(q.Get("error") + " " + q.Get("error_description") + " (it redirects to " + withoutQuery(loc) + ")"))
		case sameEndpoint(loc, authURL):
			return unsure(check, authURL, fmt.Sprintf("it redirects the request to itself at %s", withoutQuery(loc)))
		}
		return accepted(fmt.Sprintf("it sends the browser on to sign in, at %s", withoutQuery(loc)))
	}
	text := pageText(body)
	refusal := func(words string) Finding {
		what := excerpt(text, 240)
		if what == "" {
			what = words
		}
		return refused(fmt.Sprintf("%d %s: %s", resp.StatusCode, http.StatusText(resp.StatusCode), what))
	}
	// The page's own words first, then a sign-in form, then what its scripts carry (Entra ID
	// writes its error page's text from a script): a sign-in page's scripts may name errors too.
	if words := refusalWords.FindString(text); words != "" || resp.StatusCode >= 400 {
		return refusal(words)
	}
	if signInForm.Match(body) {
		return accepted("it answers with its sign-in page")
	}
	if words := refusalWords.FindString(string(body)); words != "" {
		return refusal(words)
	}
	return unsure(check, authURL, fmt.Sprintf("it answers %d with a page that is neither a sign-in form nor an error the doctor knows: %s", resp.StatusCode, excerpt(text, 160)))
}

// unsure is a Finding the doctor cannot decide: what to open in a browser to decide it.
func unsure(check, authURL, what string) Finding {
	return Finding{Check: check, Unsure: true, Detail: "the doctor cannot tell whether the provider accepts the bridge's client and redirect URI: " + what,
		Fix: "Open " + authURL + " in a browser: a sign-in page means they are accepted, an error page names what is wrong."}
}

// refusalFix says what to change for a refusal whose words are what: the client, or the
// redirect URI, or either.
func refusalFix(what, clientID, redirectURI string, d Description) string {
	lower := strings.ToLower(what)
	register := fmt.Sprintf("Register %s as a redirect URI of the bridge's client at %s (%s), exactly as written, for the client that %s names.", redirectURI, d.DisplayName, d.Settings.Console, d.Settings.ClientID)
	client := fmt.Sprintf("%s knows no client %q: set %s to the id of the bridge's client there (%s).", d.DisplayName, clientID, d.Settings.ClientID, d.Settings.Console)
	switch {
	case clientWords.MatchString(lower):
		return client
	case strings.Contains(lower, "redirect"), strings.Contains(lower, "aadsts50011"):
		return register
	case strings.Contains(lower, "scope"):
		return fmt.Sprintf("Check the scopes the bridge asks for (%s) against what its client may have at %s.", d.Settings.Scopes, d.DisplayName)
	}
	return register
}

// refusalWords are how providers' error pages name a refused client, redirect URI or request:
// Keycloak's "Invalid parameter: redirect_uri", Doorkeeper's "The redirect URI included is not
// valid", Entra ID's AADSTS codes (in the page's script as often as in its text), Google's
// redirect_uri_mismatch, oidc-provider's invalid_redirect_uri.
var refusalWords = regexp.MustCompile(`(?i)invalid[ _]redirect[ _]?uri|invalid parameter: redirect_uri|redirect uri included is not valid|redirect_uri_mismatch|AADSTS\d{5,}|unknown client|client not found|invalid_client|unauthorized_client|invalid_scope|invalid_request|client authentication failed|an error has occurred`)

// clientWords name an unknown client rather than a redirect URI.
var clientWords = regexp.MustCompile(`unknown client|client not found|invalid_client|client authentication failed|aadsts700016`)

// signInForm is a page asking someone to sign in: a password field, or a login field.
var signInForm = regexp.MustCompile(`(?i)<input[^>]+type=["']?password|<input[^>]+name=["']?(login|username|user\[login\]|email|identifier|loginfmt)["' >]`)

// sameEndpoint reports whether u is raw's endpoint: scheme, host and path, the query aside.
func sameEndpoint(u *url.URL, raw string) bool {
	r, err := url.Parse(raw)
	if err != nil {
		return false
	}
	return strings.EqualFold(u.Scheme, r.Scheme) && strings.EqualFold(u.Host, r.Host) && strings.TrimSuffix(u.Path, "/") == strings.TrimSuffix(r.Path, "/")
}

// withoutQuery is u without its query, which may hold a code.
func withoutQuery(u *url.URL) string {
	c := *u
	c.RawQuery, c.Fragment, c.User = "", "", nil
	return c.String()
}

func clientIDOf(authURL string) string {
	u, err := url.Parse(authURL)
	if err != nil {
		return ""
	}
	return u.Query().Get("client_id")
}

var tags = regexp.MustCompile(`(?is)<script.*?</script>|<style.*?</style>|<[^>]*>`)

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
