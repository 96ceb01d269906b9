package mattermost

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"unicode/utf8"
)

// Reasons a sign-in fails. Each error this package returns wraps one of them, so a caller can
// test with errors.Is whatever the error's type.
var (
	// ErrSSODisabled: GitLabSettings.Enable is false.
	ErrSSODisabled = errors.New("gitlab SSO is turned off in Mattermost")
	// ErrOpenIDScope: GitLabSettings.Scope contains "openid".
	ErrOpenIDScope = errors.New("the scope switches Mattermost to its OpenID Connect provider")

	// ErrBrowserRequest: a request of the browser failed before any answer.
	ErrBrowserRequest = errors.New("the browser's request failed")
	// ErrStoppedAtPage: the browser got a page (a form, an error) instead of a redirect.
	ErrStoppedAtPage = errors.New("the sign-in stopped at a page")
	// ErrTooManyRedirects: the redirects did not reach Mattermost in time.
	ErrTooManyRedirects = errors.New("too many redirects")
	// ErrUnexpectedRedirect: the browser was sent to Mattermost, but not to its OAuth callback.
	ErrUnexpectedRedirect = errors.New("redirected to Mattermost but not to its OAuth callback")

	// ErrAccessDenied: the provider came back with error=access_denied.
	ErrAccessDenied = errors.New("access denied")
	// ErrMissingCode: the provider came back without a code.
	ErrMissingCode = errors.New("missing code")
	// ErrStateMismatch: the provider came back with another state than Mattermost sent.
	ErrStateMismatch = errors.New("invalid state")

	// ErrTokenRequestFailed: the token request got no answer.
	ErrTokenRequestFailed = errors.New("token request failed")
	// ErrBadTokenResponse: the token endpoint answered a status other than 200, or a body that
	// does not decode into Mattermost's AccessResponse.
	ErrBadTokenResponse = errors.New("bad response from token request")
	// ErrBadTokenType: token_type, lower-cased, is not "bearer".
	ErrBadTokenType = errors.New("bad token type")
	// ErrMissingAccessToken: access_token is empty.
	ErrMissingAccessToken = errors.New("missing access token")

	// ErrUserRequestFailed: the user request got no answer.
	ErrUserRequestFailed = errors.New("user request failed")
	// ErrUserResponse: the user endpoint answered a status other than 200.
	ErrUserResponse = errors.New("invalid response from the user endpoint")
	// ErrTermsOfService: the user endpoint answered 403 mentioning "Terms of Service".
	ErrTermsOfService = errors.New("terms of service not accepted")
	// ErrUserParse: the user JSON does not decode, or has no id or no email.
	ErrUserParse = errors.New("could not parse the gitlab user object")
	// ErrSignupRefused: Mattermost would refuse to create an account for this person.
	ErrSignupRefused = errors.New("mattermost would refuse to create the account")
)

// service is what Mattermost calls the service in its messages (strings.Title("gitlab")).
const service = "Gitlab"

// bridgeCallbackPath is where GitLab sends the browser back to the bridge.
const bridgeCallbackPath = "/oauth/callback"

// BrowserError is a failure while the browser follows the provider's redirects, before it is
// sent back to Mattermost.
type BrowserError struct {
	// Reason is ErrBrowserRequest, ErrStoppedAtPage, ErrTooManyRedirects or ErrUnexpectedRedirect.
	Reason error
	// URL is the page the browser was at, without its query.
	URL string
	// Status is the page's HTTP status (ErrStoppedAtPage).
	Status int
	// Title is the page's <title> (ErrStoppedAtPage).
	Title string
	Err   error
}

func (e *BrowserError) Error() string {
	var b strings.Builder
	b.WriteString("sign-in at the provider (the browser following GitLabSettings.AuthEndpoint's redirects): ")
	switch {
	case errors.Is(e.Reason, ErrStoppedAtPage):
		fmt.Fprintf(&b, "the browser stopped at %s, which answered %s instead of a redirect", e.URL, statusText(e.Status))
		if e.Title != "" {
			fmt.Fprintf(&b, " (page title %q)", e.Title)
		}
	case errors.Is(e.Reason, ErrUnexpectedRedirect):
		fmt.Fprintf(&b, "the provider sent the browser to %s, a Mattermost page that is not its GitLab callback", e.URL)
	default:
		fmt.Fprintf(&b, "%v at %s", e.Reason, e.URL)
	}
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	b.WriteString(". ")
	b.WriteString(e.Fix())
	return b.String()
}

func (e *BrowserError) Unwrap() []error { return nonNil(e.Reason, e.Err) }

// Fix says what an administrator should check.
func (e *BrowserError) Fix() string {
	switch {
	case errors.Is(e.Reason, ErrBrowserRequest):
		return "Check that a browser can reach this address: the bridge's public URL (and the GitLab it sends people to) must resolve and answer from where people sign in."
	case errors.Is(e.Reason, ErrTooManyRedirects):
		return "The redirects go round in a loop: check the bridge's public URL and its upstream GitLab settings, and the bridge's log."
	case errors.Is(e.Reason, ErrUnexpectedRedirect):
		return "Check the redirect URIs of Mattermost's application in the bridge: they must be the Site URL followed by " + SignupCompletePath + " and " + LoginCompletePath + ", and ServiceSettings.SiteURL must be the address people use."
	}
	switch {
	case e.Status == http.StatusNotFound || e.Status == http.StatusMethodNotAllowed:
		return "Nothing answers authorize requests there: GitLabSettings.AuthEndpoint should be the bridge's URL followed by " + AuthorizePath + "."
	case e.Status >= 500:
		return "The provider failed: check the bridge's log and health, and the proxy in front of it."
	case e.Status >= 400 && strings.HasSuffix(e.URL, bridgeCallbackPath):
		return "The bridge refused the sign-in on the person's return from GitLab (the page says why: an account that is not active, not allowed to sign in, or that GitLab returned incomplete); the trace id on that page shows every step in the bridge's /debug/traces."
	case e.Status == http.StatusForbidden:
		return "The person was refused (the page says why: an account blocked at GitLab, or not allowed to sign in to this application). Check the account at GitLab, and who may sign in with `ssobridge apps show`."
	case e.Status >= 400 && strings.HasSuffix(e.URL, AuthorizePath):
		return "The provider refused Mattermost's authorize request; an unknown client_id and an unregistered redirect_uri end here. Check GitLabSettings.Id against the application registered in the bridge, and that the Site URL followed by " + SignupCompletePath + " is one of its redirect URIs."
	case e.Status >= 400:
		return "A page on the way refused the sign-in (its title says why); if it is GitLab's, check the bridge's application at GitLab: its redirect URI must be the bridge's public URL followed by " + bridgeCallbackPath + "."
	}
	return "The page wants a person (a sign-in or consent form). Sign in at GitLab in this browser first, mark Mattermost's application as trusted in the bridge to skip consent, or give the client an OnPage handler that fills the form."
}

// CallbackError is a failure read from the redirect back to Mattermost's callback, the checks
// of completeOAuth and AuthorizeOAuthUser.
type CallbackError struct {
	// Reason is ErrAccessDenied, ErrMissingCode or ErrStateMismatch.
	Reason error
	// URL is where the provider sent the browser, without its query.
	URL string
	// OAuthError and Description are the error and error_description parameters, if any.
	OAuthError  string
	Description string
	// SentState and ReturnedState are the state Mattermost sent and the one that came back
	// (ErrStateMismatch).
	SentState     string
	ReturnedState string
}

func (e *CallbackError) Error() string {
	var b strings.Builder
	b.WriteString("redirect back to Mattermost's callback: ")
	switch {
	case errors.Is(e.Reason, ErrAccessDenied):
		fmt.Fprintf(&b, "access denied: Mattermost shows %q", "You must authorize Mattermost to log in with "+service+".")
	case errors.Is(e.Reason, ErrMissingCode):
		fmt.Fprintf(&b, "missing code: Mattermost shows %q", "The service provider "+service+" did not provide an authorization code in the redirect URL.")
	default:
		fmt.Fprintf(&b, "Mattermost fails the sign-in with %q: %s", "Invalid state", e.stateProblem())
	}
	if e.OAuthError != "" {
		fmt.Fprintf(&b, " (error=%s", e.OAuthError)
		if e.Description != "" {
			fmt.Fprintf(&b, ": %s", e.Description)
		}
		b.WriteString(")")
	}
	b.WriteString(". ")
	b.WriteString(e.Fix())
	return b.String()
}

func (e *CallbackError) Unwrap() error { return e.Reason }

// stateProblem names what the provider did to the state, as far as it can be told.
func (e *CallbackError) stateProblem() string {
	got, sent := e.ReturnedState, e.SentState
	switch {
	case got == "":
		return "the state parameter is missing"
	case strings.ReplaceAll(got, " ", "+") == sent:
		return "every '+' of the state came back as a space: the provider put it in the URL without escaping it"
	case strings.TrimRight(got, "=") == strings.TrimRight(sent, "=") && got != sent:
		return "the state's base64 '=' padding was dropped or added; Mattermost decodes it as padded standard base64"
	case len(got) < len(sent) && strings.HasPrefix(sent, got):
		return "the state came back cut short"
	}
	if _, err := StateProps(got); err != nil {
		return "the state that came back is not Mattermost's (it does not decode as base64 JSON: " + err.Error() + ")"
	}
	return "the state that came back is not the one Mattermost sent"
}

// Fix says what an administrator should check.
func (e *CallbackError) Fix() string {
	switch {
	case errors.Is(e.Reason, ErrAccessDenied):
		return "The person refused on the consent page, or the provider denied the request: check the bridge's log for this sign-in, and mark Mattermost's application as trusted in the bridge to skip the consent page."
	case errors.Is(e.Reason, ErrMissingCode):
		return "The provider came back to Mattermost without a code: the error above and the bridge's log say why. Check GitLabSettings.Id and the application's scopes in the bridge."
	}
	return "The provider must return state exactly as Mattermost sent it, URL-encoded, byte for byte; check the bridge's redirect to Mattermost."
}

// TokenError is a failure of the token request, AuthorizeOAuthUser's POST to
// GitLabSettings.TokenEndpoint.
type TokenError struct {
	// Reason is ErrTokenRequestFailed, ErrBadTokenResponse, ErrBadTokenType or ErrMissingAccessToken.
	Reason error
	URL    string
	// Status is the HTTP status of the answer (0 without one).
	Status int
	// Body is what Mattermost read of the answer, with any token in it replaced by "[redacted]".
	Body string
	// OAuthError and Description are the error and error_description of an OAuth error body.
	OAuthError  string
	Description string
	// TokenType is the token_type that came back (ErrBadTokenType).
	TokenType string
	// Err is the transport or JSON decoding error, if any.
	Err error
}

func (e *TokenError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "token request to %s: Mattermost fails the sign-in with %q", orUnset(e.URL, "the token endpoint"), e.mattermostMessage())
	var details []string
	if e.Status != 0 {
		details = append(details, "the endpoint answered "+statusText(e.Status))
	}
	if e.OAuthError != "" {
		d := "error=" + e.OAuthError
		if e.Description != "" {
			d += ": " + e.Description
		}
		details = append(details, d)
	}
	if errors.Is(e.Reason, ErrBadTokenType) {
		details = append(details, fmt.Sprintf("token_type %q", e.TokenType))
	}
	if e.Err != nil {
		details = append(details, e.Err.Error())
	}
	if e.OAuthError == "" && e.Body != "" && (e.Status != http.StatusOK || e.Err != nil) {
		details = append(details, "body "+excerpt(e.Body))
	}
	if len(details) > 0 {
		b.WriteString(" (" + strings.Join(details, "; ") + ")")
	}
	b.WriteString(". ")
	b.WriteString(e.Fix())
	return b.String()
}

func (e *TokenError) Unwrap() []error { return nonNil(e.Reason, e.Err) }

func (e *TokenError) mattermostMessage() string {
	switch {
	case errors.Is(e.Reason, ErrTokenRequestFailed):
		return "Token request failed."
	case errors.Is(e.Reason, ErrBadTokenType):
		return "Bad token type."
	case errors.Is(e.Reason, ErrMissingAccessToken):
		return "Missing access token."
	}
	return "Bad response from token request."
}

// Fix says what an administrator should check.
func (e *TokenError) Fix() string {
	switch {
	case errors.Is(e.Reason, ErrTokenRequestFailed):
		return "Mattermost got no answer from GitLabSettings.TokenEndpoint: check the URL, that the Mattermost server can reach it (DNS, firewall, HTTP_PROXY/HTTPS_PROXY/NO_PROXY in Mattermost's environment) and its TLS certificate (a self-signed one needs ServiceSettings.EnableInsecureOutgoingConnections)."
	case errors.Is(e.Reason, ErrBadTokenType):
		return "The token endpoint must answer token_type \"bearer\" in any case: check GitLabSettings.TokenEndpoint points at the bridge's " + TokenPath + "."
	case errors.Is(e.Reason, ErrMissingAccessToken):
		return "The token endpoint answered without an access_token: check GitLabSettings.TokenEndpoint points at the bridge's " + TokenPath + ", and the bridge's log."
	}
	switch e.OAuthError {
	case "invalid_client":
		return "The bridge does not accept Mattermost's client credentials: check GitLabSettings.Id and GitLabSettings.Secret against the application registered in the bridge (renewing the secret there invalidates the old one at once)."
	case "invalid_grant":
		return "The bridge refused the code: it expired, was used already, or the redirect_uri differs from the authorize request's. Mattermost sends its Site URL followed by " + SignupCompletePath + " in both: check ServiceSettings.SiteURL is the address people use and that URI is registered for the application."
	case "unauthorized_client", "unsupported_grant_type":
		return "The application may not use the authorization_code grant: check its settings in the bridge."
	case "invalid_request", "invalid_scope":
		return "The bridge found the token request incomplete or out of scope: check the bridge's log, and that GitLabSettings.TokenEndpoint is the bridge's " + TokenPath + "."
	}
	switch {
	case e.Status == http.StatusNotFound || e.Status == http.StatusMethodNotAllowed:
		return "Nothing answers token requests there: GitLabSettings.TokenEndpoint should be the bridge's URL followed by " + TokenPath + "."
	case e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden:
		return "The token endpoint refused Mattermost: check GitLabSettings.Id and GitLabSettings.Secret, and that no proxy in front of the bridge asks for its own authentication."
	case e.Status >= 500:
		return "The token endpoint failed: check the bridge's log and health, and the proxy in front of it."
	case e.Status == http.StatusOK:
		return "The answer does not decode into Mattermost's AccessResponse (access_token, token_type, scope, refresh_token and id_token strings; expires_in a JSON integer that fits in 32 bits): check GitLabSettings.TokenEndpoint points at the bridge's " + TokenPath + " and not at a login page or proxy."
	}
	return "Check the bridge's log for this token request, and that GitLabSettings.TokenEndpoint is the bridge's " + TokenPath + "."
}

// readOAuthError picks error and error_description out of an error body, for the administrator:
// Mattermost itself only logs the body.
func (e *TokenError) readOAuthError(body []byte) {
	var oe struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if json.NewDecoder(strings.NewReader(string(body))).Decode(&oe) == nil {
		e.OAuthError, e.Description = oe.Error, oe.Description
	}
}

var tokenValue = regexp.MustCompile(`("(?i:access_token|refresh_token|id_token)"\s*:\s*)"(?:[^"\\]|\\.)*"`)

// redact keeps tokens out of Body, which ends up in logs.
func (e *TokenError) redact(ar *AccessResponse) {
	e.Body = tokenValue.ReplaceAllString(e.Body, `$1"[redacted]"`)
	if ar != nil {
		for _, t := range []string{ar.AccessToken, ar.RefreshToken, ar.IdToken} {
			if t != "" {
				e.Body = strings.ReplaceAll(e.Body, t, "[redacted]")
			}
		}
	}
}

// UserError is a failure of the user request, AuthorizeOAuthUser's GET of
// GitLabSettings.UserAPIEndpoint, of the gitlab provider's decoding of its answer, or of the
// account Mattermost would create from it.
type UserError struct {
	// Reason is ErrUserRequestFailed, ErrUserResponse, ErrTermsOfService, ErrUserParse or
	// ErrSignupRefused.
	Reason error
	URL    string
	// Status is the HTTP status of the answer (0 without one).
	Status int
	// Body is the answer's body.
	Body []byte
	// Err is the transport, decoding or validation error; for ErrUserParse and ErrSignupRefused
	// its text is Mattermost's own ("user id can't be 0", "Invalid email.", ...).
	Err error
}

func (e *UserError) Error() string {
	var b strings.Builder
	switch {
	case errors.Is(e.Reason, ErrSignupRefused):
		fmt.Fprintf(&b, "account creation: %s: %v", invalidUserMessage, e.Err)
		b.WriteString(". ")
		b.WriteString(e.Fix())
		return b.String()
	case errors.Is(e.Reason, ErrUserParse):
		fmt.Fprintf(&b, "user data from %s: Mattermost fails the sign-in with %q", orUnset(e.URL, "the user endpoint"), "Could not parse auth data out of gitlab user object.")
	case errors.Is(e.Reason, ErrTermsOfService):
		fmt.Fprintf(&b, "user request to %s: Mattermost fails the sign-in with %q", orUnset(e.URL, "the user endpoint"), "GitLab's Terms of Service have updated. Please go to "+hostOf(e.URL)+" to accept them and then try logging into Mattermost again.")
	case errors.Is(e.Reason, ErrUserRequestFailed):
		// Mattermost's message for a failed user request does say "Token request".
		fmt.Fprintf(&b, "user request to %s: Mattermost fails the sign-in with %q", orUnset(e.URL, "the user endpoint"), "Token request to gitlab failed.")
	default:
		fmt.Fprintf(&b, "user request to %s: Mattermost fails the sign-in with %q", orUnset(e.URL, "the user endpoint"), "Received invalid response from OAuth service provider.")
	}
	var details []string
	if e.Status != 0 && e.Status != http.StatusOK {
		details = append(details, "the endpoint answered "+statusText(e.Status))
	}
	if e.Err != nil {
		details = append(details, e.Err.Error())
	}
	if len(e.Body) > 0 && (errors.Is(e.Reason, ErrUserResponse) || (errors.Is(e.Reason, ErrUserParse) && !isValidationError(e.Err))) {
		details = append(details, "body "+excerpt(string(e.Body)))
	}
	if len(details) > 0 {
		b.WriteString(" (" + strings.Join(details, "; ") + ")")
	}
	b.WriteString(". ")
	b.WriteString(e.Fix())
	return b.String()
}

func (e *UserError) Unwrap() []error { return nonNil(e.Reason, e.Err) }

// Fix says what an administrator should check.
func (e *UserError) Fix() string {
	switch {
	case errors.Is(e.Reason, ErrUserRequestFailed):
		return "Mattermost got no answer from GitLabSettings.UserAPIEndpoint: check the URL, that the Mattermost server can reach it (DNS, firewall, HTTP_PROXY/HTTPS_PROXY/NO_PROXY in Mattermost's environment) and its TLS certificate (a self-signed one needs ServiceSettings.EnableInsecureOutgoingConnections)."
	case errors.Is(e.Reason, ErrTermsOfService):
		return "The person must accept GitLab's new Terms of Service at " + hostOf(e.URL) + " and then sign in again."
	case errors.Is(e.Reason, ErrSignupRefused):
		return "GitLab's profile of this person does not fit Mattermost (an email in lower case, a bare address of at most 128 characters; first and last name of at most 64 characters each): correct the profile in GitLab. People who already have a Mattermost account are not affected."
	case errors.Is(e.Reason, ErrUserParse):
		switch {
		case errors.Is(e.Err, errZeroID):
			return "The user endpoint answered without a non-zero numeric id, and Mattermost keys accounts by it: check GitLabSettings.UserAPIEndpoint is the bridge's " + UserAPIPath + "."
		case errors.Is(e.Err, errEmptyEmail):
			return "The user endpoint gave no email for this person: the account must have an email in GitLab, and the application needs the read_user scope (leave GitLabSettings.Scope empty or read_user)."
		}
		return "The answer is not GitLab's user JSON (id a JSON integer; username, login, email and name strings): check GitLabSettings.UserAPIEndpoint points at the bridge's " + UserAPIPath + " and not at a login page or proxy."
	}
	switch {
	case e.Status == http.StatusUnauthorized:
		return "The user endpoint did not accept the access token the token endpoint issued: GitLabSettings.UserAPIEndpoint and GitLabSettings.TokenEndpoint must point at the same bridge."
	case e.Status == http.StatusForbidden:
		return "The user endpoint refused this person: the account may be blocked or deactivated in GitLab, or the token lacks the read_user scope (leave GitLabSettings.Scope empty or read_user)."
	case e.Status == http.StatusNotFound || e.Status == http.StatusMethodNotAllowed:
		return "Nothing answers user requests there: GitLabSettings.UserAPIEndpoint should be the bridge's URL followed by " + UserAPIPath + "."
	case e.Status >= 500:
		return "The user endpoint failed: check the bridge's log and health, and the proxy in front of it."
	}
	return "Check the bridge's log for this user request, and that GitLabSettings.UserAPIEndpoint is the bridge's " + UserAPIPath + "."
}

func isValidationError(err error) bool {
	return errors.Is(err, errZeroID) || errors.Is(err, errEmptyEmail)
}

func nonNil(errs ...error) []error {
	out := errs[:0]
	for _, err := range errs {
		if err != nil {
			out = append(out, err)
		}
	}
	return out
}

func statusText(status int) string {
	if t := http.StatusText(status); t != "" {
		return fmt.Sprintf("%d %s", status, t)
	}
	return fmt.Sprintf("status %d", status)
}

func orUnset(u, what string) string {
	if u == "" {
		return what
	}
	return u
}

// hostOf is the host name AuthorizeOAuthUser puts in its Terms of Service message.
func hostOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	return u.Hostname()
}

// withoutQuery drops the query and fragment, where codes and tokens travel.
func withoutQuery(u *url.URL) string {
	c := *u
	c.RawQuery, c.Fragment, c.RawFragment, c.User = "", "", "", nil
	return c.String()
}

const excerptLength = 300

// excerpt quotes the start of a body for an error message.
func excerpt(s string) string {
	return fmt.Sprintf("%q", truncate(strings.TrimSpace(s), excerptLength))
}

// truncate cuts s to at most n bytes without splitting a character.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
