package mattermost

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Mattermost's outgoing HTTP client (server/platform/services/httpservice).
const (
	connectTimeout = 3 * time.Second
	requestTimeout = 30 * time.Second
	// userAgent is set on every server-to-server request by Mattermost's transport.
	userAgent = "Mattermost-Bot/1.1"
)

// maxBodyBytes bounds what the client reads of an answer. Mattermost reads without a bound; no
// token or user body comes near this.
const maxBodyBytes = 10 << 20

// NewHTTPClient returns an HTTP client built as Mattermost builds the one for its token and user
// requests (MakeClient(true)): 3 s to connect, 3 s for the TLS handshake, 30 s per request, the
// proxy from HTTP_PROXY/HTTPS_PROXY/NO_PROXY, and no filter on private addresses. insecure is
// ServiceSettings.EnableInsecureOutgoingConnections: it turns off certificate checks.
func NewHTTPClient(insecure bool) *http.Client {
	dialer := &net.Dialer{Timeout: connectTimeout, KeepAlive: 30 * time.Second}
	return &http.Client{
		Timeout: requestTimeout,
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           dialer.DialContext,
			MaxIdleConns:          100,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   connectTimeout,
			ExpectContinueTimeout: 1 * time.Second,
			// Mattermost's own switch, off unless the administrator turned it on.
			TLSClientConfig: &tls.Config{InsecureSkipVerify: insecure},
		},
	}
}

var defaultHTTPClient = NewHTTPClient(false)

// Client signs in to a GitLab-like provider the way a Mattermost server does. The zero value
// needs only Settings and SiteURL.
type Client struct {
	Settings Settings
	// SiteURL is Mattermost's ServiceSettings.SiteURL; the redirect_uri is SiteURL followed by
	// /signup/gitlab/complete. A trailing slash is dropped, as Mattermost's config loader does.
	SiteURL string
	// HTTPClient makes the server-to-server calls (token, user). Nil means NewHTTPClient(false).
	HTTPClient *http.Client
	// Browser is the person's browser: it follows redirects and keeps cookies. Its redirect
	// policy is replaced for the sign-in (the client follows redirects itself so as to stop
	// before Mattermost). Nil means a new browser with an empty cookie jar for each Login.
	Browser *http.Client
	// OnPage is called when the browser lands on a page instead of a redirect (a sign-in or
	// consent form). It returns the request the person would make next (a form submission),
	// or nil to give up. Nil means give up at the first page.
	OnPage func(ctx context.Context, page *Page) (*http.Request, error)
}

// Page is a page the browser landed on during the sign-in.
type Page struct {
	URL    *url.URL
	Status int
	Header http.Header
	// Body is the start of the page (at most 1 MiB).
	Body []byte
}

// Result is what a sign-in produced. Login returns it also on failure, filled as far as the
// sign-in got.
type Result struct {
	// User is the Mattermost user the provider's answer makes.
	User *User
	// Token is the token response.
	Token *AccessResponse
	// RawUser is the body of the user endpoint's answer.
	RawUser []byte
	// State is the state Mattermost sent.
	State string
	// RedirectedTo is where the provider sent the browser back to Mattermost, code included.
	RedirectedTo string
	// SignupError is what Mattermost would refuse if this person had no account yet (see
	// User.ValidForSignup); it does not fail the sign-in.
	SignupError error
}

func (c *Client) httpClient() *http.Client {
	if c.HTTPClient != nil {
		return c.HTTPClient
	}
	return defaultHTTPClient
}

func (c *Client) siteURL() string { return strings.TrimRight(c.SiteURL, "/") }

// RedirectURI is the redirect_uri Mattermost sends, for login and signup alike.
func (c *Client) RedirectURI() string { return c.siteURL() + SignupCompletePath }

// AuthorizeURL returns the URL Mattermost sends the browser to, built as GetAuthorizationCode
// builds it: by string concatenation onto AuthEndpoint, with client_id unescaped, redirect_uri
// and state query-escaped, and scope only when set, its spaces as %20.
func (c *Client) AuthorizeURL(state string) string {
	u := c.Settings.AuthEndpoint +
		"?response_type=code&client_id=" + c.Settings.Id +
		"&redirect_uri=" + url.QueryEscape(c.RedirectURI()) +
		"&state=" + url.QueryEscape(state)
	if c.Settings.Scope != "" {
		u += "&scope=" + urlEncode(c.Settings.Scope)
	}
	return u
}

// urlEncode is Mattermost's utils.URLEncode: query-escape each space-separated part, join
// with %20.
func urlEncode(s string) string {
	parts := strings.Split(s, " ")
	for i, p := range parts {
		parts[i] = url.QueryEscape(p)
	}
	return strings.Join(parts, "%20")
}

// Login signs in as a person pressing "GitLab" on Mattermost's login page: it builds the state
// and the authorize URL, lets the Browser follow the provider's redirects until one points back
// at Mattermost (which it does not request), checks what came back as completeOAuth and
// AuthorizeOAuthUser do, then exchanges the code and fetches the user.
func (c *Client) Login(ctx context.Context) (*Result, error) {
	code, state, back, err := c.Authorize(ctx)
	res := &Result{State: state}
	if back != nil {
		res.RedirectedTo = back.String()
	}
	if err != nil {
		return res, err
	}

	tok, err := c.Exchange(ctx, code)
	if err != nil {
		return res, err
	}
	res.Token = tok

	user, raw, err := c.FetchUser(ctx, tok.AccessToken)
	res.User, res.RawUser = user, raw
	if err != nil {
		return res, err
	}
	res.SignupError = user.ValidForSignup()
	return res, nil
}

// Authorize is Login's part in the browser: it builds the state and the authorize URL, lets the
// Browser follow the provider's redirects until one points back at Mattermost, and checks what
// came back as completeOAuth does. It returns the code, the state it sent, and where the browser
// came back to (nil when it never did).
func (c *Client) Authorize(ctx context.Context) (code, state string, back *url.URL, err error) {
	state, _ = NewState(ActionLogin)
	// getSSOProvider refuses before anything is sent.
	if e := c.Settings.checkEnabled(); e != nil {
		return "", state, nil, e
	}
	if e := c.Settings.checkScope(); e != nil {
		return "", state, nil, e
	}
	site, err := c.parseSiteURL()
	if err != nil {
		return "", state, nil, err
	}
	back, err = c.browse(ctx, site, c.AuthorizeURL(state))
	if err != nil {
		return "", state, back, err
	}
	code, err = checkCallback(back, state)
	return code, state, back, err
}

func (c *Client) parseSiteURL() (*url.URL, error) {
	problem := ""
	u, err := url.Parse(c.siteURL())
	switch {
	case c.SiteURL == "":
		problem = "is empty; Mattermost would then build the redirect_uri from the host of each request"
	case err != nil:
		problem = fmt.Sprintf("%q is not a URL (%v)", c.SiteURL, err)
	case (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		problem = fmt.Sprintf("%q is not an absolute http(s) URL", c.SiteURL)
	default:
		return u, nil
	}
	return nil, &SettingsError{Setting: "ServiceSettings.SiteURL", Problem: problem,
		Fix: "Set it to the address people use to reach Mattermost, e.g. https://chat.example.com; the redirect URIs registered in the bridge are built from it."}
}

// checkCallback reads the redirect back to Mattermost as completeOAuth reads it, in its order:
// error=access_denied first, then the code, then (in AuthorizeOAuthUser) the state.
func checkCallback(back *url.URL, sentState string) (string, error) {
	q := back.Query()
	oauthErr, desc := q.Get("error"), q.Get("error_description")
	if oauthErr == "access_denied" {
		return "", &CallbackError{Reason: ErrAccessDenied, URL: withoutQuery(back), OAuthError: oauthErr, Description: desc}
	}
	code := q.Get("code")
	if code == "" {
		return "", &CallbackError{Reason: ErrMissingCode, URL: withoutQuery(back), OAuthError: oauthErr, Description: desc}
	}
	// Mattermost decodes the state and checks the token in it against its one-time token and
	// the MMOAUTH cookie; for a provider that is the same as returning it byte for byte.
	if got := q.Get("state"); got != sentState {
		return "", &CallbackError{Reason: ErrStateMismatch, URL: withoutQuery(back), SentState: sentState, ReturnedState: got}
	}
	return code, nil
}

// Exchange redeems a code at TokenEndpoint as AuthorizeOAuthUser does: a form POST of
// client_id, client_secret, code, grant_type=authorization_code and redirect_uri, no HTTP Basic,
// then the checks of ParseTokenResponse. Errors are *TokenError.
func (c *Client) Exchange(ctx context.Context, code string) (*AccessResponse, error) {
	endpoint := c.Settings.TokenEndpoint
	p := url.Values{}
	p.Set("client_id", c.Settings.Id)
	p.Set("client_secret", c.Settings.Secret)
	p.Set("code", code)
	p.Set("grant_type", "authorization_code")
	p.Set("redirect_uri", c.RedirectURI())

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(p.Encode()))
	if err != nil {
		return nil, &TokenError{Reason: ErrTokenRequestFailed, URL: endpoint, Err: err}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", userAgent)

	resp, err := c.httpClient().Do(req)
	if err != nil {
		return nil, &TokenError{Reason: ErrTokenRequestFailed, URL: endpoint, Err: err}
	}
	defer resp.Body.Close()
	return parseTokenResponse(endpoint, resp.StatusCode, io.LimitReader(resp.Body, maxBodyBytes))
}

// UserRequest is the request Mattermost makes of the user API endpoint with accessToken, headers
// and all.
func (c *Client) UserRequest(ctx context.Context, accessToken string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Settings.UserAPIEndpoint, nil)
	if err != nil {
		return nil, err
	}
	// Mattermost sends a form Content-Type on this GET too.
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "Bearer "+accessToken)
	req.Header.Set("User-Agent", userAgent)
	return req, nil
}

// FetchUser reads the person at UserAPIEndpoint as AuthorizeOAuthUser does (GET with
// "Authorization: Bearer"), then decodes the answer as the gitlab provider does. It returns the
// user, the body, and a *UserError; the body is returned whenever there is one.
func (c *Client) FetchUser(ctx context.Context, accessToken string) (*User, []byte, error) {
	endpoint := c.Settings.UserAPIEndpoint
	req, err := c.UserRequest(ctx, accessToken)
	if err != nil {
		return nil, nil, &UserError{Reason: ErrUserRequestFailed, URL: endpoint, Err: err}
	}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return nil, nil, &UserError{Reason: ErrUserRequestFailed, URL: endpoint, Err: err}
	}
	defer resp.Body.Close()
	body, readErr := readBody(resp.Body)
	if resp.StatusCode != http.StatusOK {
		// Mattermost ignores a read error here: the status alone fails the sign-in.
		if resp.StatusCode == http.StatusForbidden && strings.Contains(string(body), "Terms of Service") {
			return nil, body, &UserError{Reason: ErrTermsOfService, URL: endpoint, Status: resp.StatusCode, Body: body}
		}
		return nil, body, &UserError{Reason: ErrUserResponse, URL: endpoint, Status: resp.StatusCode, Body: body}
	}
	if readErr != nil {
		// LoginByOAuth reads the whole body first and fails with its parse message.
		return nil, body, &UserError{Reason: ErrUserParse, URL: endpoint, Status: resp.StatusCode, Body: body, Err: readErr}
	}
	user, err := UserFromGitLab(body)
	if err != nil {
		if ue, ok := err.(*UserError); ok {
			ue.URL, ue.Status = endpoint, resp.StatusCode
		}
		return nil, body, err
	}
	return user, body, nil
}

// readBody reads a whole body, failing past maxBodyBytes.
func readBody(r io.Reader) ([]byte, error) {
	var buf bytes.Buffer
	n, err := io.Copy(&buf, io.LimitReader(r, maxBodyBytes+1))
	if err != nil {
		return buf.Bytes(), err
	}
	if n > maxBodyBytes {
		return buf.Bytes()[:maxBodyBytes], fmt.Errorf("the body is larger than %d bytes", maxBodyBytes)
	}
	return buf.Bytes(), nil
}
