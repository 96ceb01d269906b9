package gitlabapi

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/oauth2"

	"github.com/ssobridge/ssobridge/oauth/upstream"
)

// maxUserBody bounds what the bridge reads of an upstream user body; GitLab's are a few KiB.
const maxUserBody = 1 << 20

// Config is how the bridge reaches the upstream GitLab, as an OAuth client of its own.
type Config struct {
	// URL is GitLab's base URL, e.g. https://gitlab.example.com (a path prefix such as
	// https://example.com/gitlab is kept).
	URL          string
	ClientID     string
	ClientSecret string
	// Scopes asked of GitLab; read_user is what /api/v4/user needs.
	Scopes []string
	// RedirectURL is the bridge's callback, registered at GitLab for the bridge's application.
	RedirectURL string
	// HTTPClient makes the server-to-server calls; nil means upstream.NewHTTPClient().
	HTTPClient *http.Client
	// Name and DisplayName describe the provider (see upstream.Description); "gitlab" and
	// "GitLab" when empty. Settings name where it is configured; upstream.GitLabSettings when
	// zero.
	Name        string
	DisplayName string
	Settings    upstream.Settings
}

// Client signs people in at the upstream GitLab and reads who they are.
type Client struct {
	base   *url.URL
	oauth  oauth2.Config
	http   *http.Client
	userEP string
	desc   upstream.Description
}

// The capabilities of a GitLab provider.
var (
	_ upstream.CallbackProvider = (*Client)(nil)
	_ upstream.UserReader       = (*Client)(nil)
	_ upstream.Refresher        = (*Client)(nil)
	_ upstream.Pinger           = (*Client)(nil)
	_ upstream.Prober           = (*Client)(nil)
	_ upstream.Prompter         = (*Client)(nil)
)

// ParseBaseURL checks the base URL of a GitLab API: absolute http(s), no user, query or fragment,
// no trailing slash. The bridge's own public URL is one too, since it serves GitLab's endpoints.
func ParseBaseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return nil, fmt.Errorf("%q is not a URL: %v", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("%q must start with https:// (or http:// for a test set-up)", raw)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("%q has no host", raw)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("%q must be a base URL only, without user, query or fragment", raw)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// NewClient checks cfg and returns a client for it.
func NewClient(cfg Config) (*Client, error) {
	c, err := newClient(cfg)
	if err != nil {
		return nil, err
	}
	if cfg.ClientID == "" {
		return nil, errors.New("the bridge's client id at GitLab is empty")
	}
	if cfg.ClientSecret == "" {
		return nil, errors.New("the bridge's client secret at GitLab is empty")
	}
	if cb, err := url.Parse(cfg.RedirectURL); err != nil || cb.Scheme == "" || cb.Host == "" {
		return nil, fmt.Errorf("the bridge's callback URL %q is not an absolute URL", cfg.RedirectURL)
	}
	return c, nil
}

// NewProbe returns the client of cfg as a Prober alone, for `ssobridge doctor`: its Probe asks
// only whether GitLab answers, so cfg needs GitLab's URL and nothing else, never the secret.
func NewProbe(cfg Config) (upstream.Prober, error) {
	c, err := newClient(cfg)
	if err != nil {
		return nil, err
	}
	return upstream.ProbeOnly(c), nil
}

// newClient checks cfg's URL and returns the client.
func newClient(cfg Config) (*Client, error) {
	base, err := ParseBaseURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = upstream.NewHTTPClient()
	}
	root := base.String()
	settings := cfg.Settings
	if settings == (upstream.Settings{}) {
		settings = upstream.GitLabSettings
	}
	return &Client{
		desc: upstream.Description{Name: cmp.Or(cfg.Name, "gitlab"), DisplayName: cmp.Or(cfg.DisplayName, "GitLab"), Type: "gitlab",
			URL: root, UserCall: "GET /api/v4/user", GitLabIDs: true, Settings: settings},
		base: base,
		http: hc,
		oauth: oauth2.Config{
			ClientID:     cfg.ClientID,
			ClientSecret: cfg.ClientSecret,
			Scopes:       cfg.Scopes,
			RedirectURL:  cfg.RedirectURL,
			Endpoint: oauth2.Endpoint{
				AuthURL:  root + "/oauth/authorize",
				TokenURL: root + "/oauth/token",
				// GitLab takes both; Basic keeps the secret out of request bodies that proxies log.
				AuthStyle: oauth2.AuthStyleInHeader,
			},
		},
		userEP: root + "/api/v4/user",
	}, nil
}

// Describe says which GitLab this is.
func (c *Client) Describe() upstream.Description { return c.desc }

// BaseURL returns GitLab's base URL.
func (c *Client) BaseURL() string { return c.base.String() }

// ClientID returns the bridge's client id at GitLab.
func (c *Client) ClientID() string { return c.oauth.ClientID }

// AuthCodeURL is where the browser goes to sign in at GitLab: the bridge's own client_id, state
// and a PKCE S256 challenge of the verifier (GitLab's own OpenID nonce is not used: the bridge
// reads the person from the API, not from an ID token), and the prompt and max_age of a, if any
// (see Prompts).
func (c *Client) AuthCodeURL(_ context.Context, state string, a upstream.Auth) (string, error) {
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(a.Verifier)}
	if a.Prompt != "" {
		opts = append(opts, oauth2.SetAuthURLParam("prompt", a.Prompt))
	}
	if a.MaxAge != nil {
		opts = append(opts, oauth2.SetAuthURLParam("max_age", strconv.FormatInt(*a.MaxAge, 10)))
	}
	return c.oauth.AuthCodeURL(state, opts...), nil
}

// Prompts says what GitLab honours: its OpenID Connect (doorkeeper-openid_connect) reads prompt
// and max_age only in a request for the openid scope, and then honours none (login_required,
// consent_required), login and max_age (it signs the person out and in again), and puts
// auth_time in its ID token. GitLab configures nothing for select_account.
func (c *Client) Prompts(context.Context) (upstream.Prompts, error) {
	oidc := c.HasScope("openid")
	return upstream.Prompts{None: oidc, Login: oidc, MaxAge: oidc}, nil
}

func (c *Client) withHTTP(ctx context.Context) context.Context {
	return context.WithValue(ctx, oauth2.HTTPClient, c.http)
}

// Exchange trades an upstream code for GitLab's token.
func (c *Client) Exchange(ctx context.Context, code string, a upstream.Auth) (*oauth2.Token, error) {
	tok, err := c.oauth.Exchange(c.withHTTP(ctx), code, oauth2.VerifierOption(a.Verifier))
	if err != nil {
		return nil, c.classify(upstream.CallToken, c.oauth.Endpoint.TokenURL, err)
	}
	return tok, nil
}

// Refresh renews tok at GitLab, which rotates its refresh token: the token returned must be kept.
func (c *Client) Refresh(ctx context.Context, tok *oauth2.Token) (*oauth2.Token, error) {
	expired := *tok
	expired.Expiry = time.Unix(1, 0) // x/oauth2 refreshes only a token it believes expired
	fresh, err := c.oauth.TokenSource(c.withHTTP(ctx), &expired).Token()
	if err != nil {
		return nil, c.classify(upstream.CallRefresh, c.oauth.Endpoint.TokenURL, err)
	}
	return fresh, nil
}

// Identify reads who signed in from /api/v4/user, and their groups from GitLab's OpenID
// userinfo when the bridge asks GitLab for openid (groups are only for the sign-in rules and the
// groups claim: a failure to read them leaves them unknown, and the sign-in goes on).
func (c *Client) Identify(ctx context.Context, tok *oauth2.Token, _ upstream.Auth) (*upstream.Identity, error) {
	id, err := c.ReadUser(ctx, tok)
	if err != nil {
		return nil, err
	}
	if c.HasScope("openid") {
		if groups, err := c.Groups(ctx, tok); err == nil {
			id.Groups = groups
		} else {
			id.GroupsProblem = err.Error()
		}
		id.AuthTime = c.authTime(tok)
	}
	return id, nil
}

// authTime reads when the person signed in at GitLab from the auth_time of the ID token GitLab
// returned with tok (its Devise current_sign_in_at), or zero if it has none or is not for the
// bridge's client. The token came straight from GitLab's token endpoint over the bridge's own
// connection, which OpenID Connect Core §3.1.3.7 lets stand in for checking its signature; the
// person is read from /api/v4/user, never from it.
func (c *Client) authTime(tok *oauth2.Token) time.Time {
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return time.Time{}
	}
	var claims struct {
		jwt.RegisteredClaims
		AuthTime *jwt.NumericDate `json:"auth_time"`
	}
	if _, _, err := jwt.NewParser().ParseUnverified(raw, &claims); err != nil || claims.AuthTime == nil ||
		!slices.Contains(claims.Audience, c.oauth.ClientID) {
		return time.Time{}
	}
	return claims.AuthTime.UTC()
}

// ReadUser reads the person's /api/v4/user with tok. A user Mattermost would refuse (no id, an id
// that is not a non-zero integer, no email, no username) is an *upstream.IdentityError.
func (c *Client) ReadUser(ctx context.Context, tok *oauth2.Token) (*upstream.Identity, error) {
	u, body, err := c.User(ctx, tok)
	if ie, ok := errors.AsType[*UserIDError](err); ok {
		return nil, &upstream.IdentityError{Reason: upstream.ReasonIncomplete, Detail: ie.Problem,
			Fix: "Administrators: the user id comes from GitLab itself; check that " + c.desc.Settings.URL + " is GitLab and not a proxy or another service answering its /api/v4/user."}
	}
	if err != nil {
		return nil, err
	}
	if p := u.Problem(); p != "" {
		return nil, &upstream.IdentityError{Reason: upstream.ReasonIncomplete, Detail: p,
			Fix: "Administrators: give the bridge's application at GitLab the read_user scope (and keep " + c.desc.Settings.Scopes + " at read_user)."}
	}
	return &upstream.Identity{Subject: strconv.FormatInt(u.ID, 10), GitLabID: u.ID, Username: u.Username, Name: u.Name,
		Email: u.Email, EmailVerified: true, AvatarURL: u.AvatarURL, WebURL: u.WebURL, External: u.External,
		State: u.State, Body: body}, nil
}

// User reads /api/v4/user with tok. It returns the decoded user and the body exactly as GitLab
// sent it.
func (c *Client) User(ctx context.Context, tok *oauth2.Token) (*User, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.userEP, nil)
	if err != nil {
		return nil, nil, c.fail(&upstream.Error{Call: upstream.CallUser, URL: c.userEP, Kind: upstream.KindUnreachable, Err: err})
	}
	req.Header.Set("Accept", "application/json")
	tok.SetAuthHeader(req)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, nil, c.classify(upstream.CallUser, c.userEP, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxUserBody+1))
	if err != nil {
		return nil, nil, c.classify(upstream.CallUser, c.userEP, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, c.fail(&upstream.Error{Call: upstream.CallUser, URL: c.userEP, Kind: upstream.KindRejected,
			Status: resp.StatusCode, Message: ParseMessage(body)})
	}
	if len(body) > maxUserBody {
		return nil, nil, c.fail(&upstream.Error{Call: upstream.CallUser, URL: c.userEP, Kind: upstream.KindBadResponse,
			Status: resp.StatusCode, Message: "the user body is larger than 1 MiB"})
	}
	u, err := DecodeUser(body)
	if err != nil {
		if ie, ok := errors.AsType[*UserIDError](err); ok {
			return nil, nil, ie // a user Mattermost would refuse, not a broken answer
		}
		return nil, nil, c.fail(&upstream.Error{Call: upstream.CallUser, URL: c.userEP, Kind: upstream.KindBadResponse,
			Status: resp.StatusCode, Message: err.Error()})
	}
	return u, body, nil
}

// fail names this GitLab in e.
func (c *Client) fail(e *upstream.Error) *upstream.Error {
	e.Provider, e.Settings = c.desc.DisplayName, c.desc.Settings
	return e
}

// classify turns a transport or x/oauth2 error into an upstream.Error that says what happened.
func (c *Client) classify(call upstream.Call, endpoint string, err error) *upstream.Error {
	return c.fail(upstream.Classify(call, endpoint, err, ParseMessage))
}

// HasScope reports whether the bridge asks GitLab for scope.
func (c *Client) HasScope(scope string) bool {
	return slices.Contains(c.oauth.Scopes, scope)
}

// Groups reads the person's groups (full paths) from GitLab's OpenID Connect userinfo, which
// GitLab fills when the bridge has the openid scope there.
func (c *Client) Groups(ctx context.Context, tok *oauth2.Token) ([]string, error) {
	ep := c.base.String() + "/oauth/userinfo"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ep, nil)
	if err != nil {
		return nil, c.fail(&upstream.Error{Call: upstream.CallUserInfo, URL: ep, Kind: upstream.KindUnreachable, Err: err})
	}
	req.Header.Set("Accept", "application/json")
	tok.SetAuthHeader(req)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.classify(upstream.CallUserInfo, ep, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxUserBody))
	if err != nil {
		return nil, c.classify(upstream.CallUserInfo, ep, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, c.fail(&upstream.Error{Call: upstream.CallUserInfo, URL: ep, Kind: upstream.KindRejected, Status: resp.StatusCode, Message: ParseMessage(body)})
	}
	var claims struct {
		Groups []string `json:"groups"`
	}
	if err := json.Unmarshal(body, &claims); err != nil {
		return nil, c.fail(&upstream.Error{Call: upstream.CallUserInfo, URL: ep, Kind: upstream.KindBadResponse, Status: resp.StatusCode,
			Message: "the userinfo body is not JSON with a groups list"})
	}
	return claims.Groups, nil
}

// Ping checks that GitLab answers at its base URL as GitLab does: its OpenID Connect discovery
// document, whose endpoints are GitLab's (/oauth/authorize, /oauth/token). A port where nothing
// listens, a server that is not GitLab, and a wrong path prefix (a 404) each get an error that
// says what answered and what to change in SSOBRIDGE_GITLAB_URL (see ProbeBaseURL). The bridge
// checks it at start, for readiness, and the doctor through Probe.
func (c *Client) Ping(ctx context.Context) error {
	if err := ProbeBaseURL(ctx, c.http, c.base.String(), c.desc.Settings.URL); err != nil {
		if ue, ok := errors.AsType[*upstream.Error](err); ok {
			c.fail(ue)
		}
		return err
	}
	return nil
}

// maxDiscoveryBody bounds the discovery document read: GitLab's is about 2 KiB.
const maxDiscoveryBody = 256 << 10

// ProbeBaseURL checks that base is a GitLab's base URL: its /.well-known/openid-configuration
// answers 200 with GitLab's discovery document. Its error is an *upstream.Error whose Fix says
// what to change in setting, where base is configured (SSOBRIDGE_GITLAB_URL when empty).
func ProbeBaseURL(ctx context.Context, hc *http.Client, base, setting string) error {
	base = strings.TrimSuffix(base, "/")
	setting = cmp.Or(setting, upstream.GitLabSettings.URL)
	ep := base + "/.well-known/openid-configuration"
	var what string
	fail := func(kind upstream.Kind, status int, advice string) error {
		return &upstream.Error{Call: upstream.CallPing, URL: ep, Kind: kind, Status: status, Message: what, Advice: advice}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ep, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		ue := upstream.Classify(upstream.CallPing, ep, err, ParseMessage)
		if errors.Is(err, syscall.ECONNREFUSED) {
			ue.Advice = fmt.Sprintf("Nothing listens at %s: %s (%s) names a host or port where GitLab is not. Set it to GitLab's own URL (its external_url, where its sign-in page is), and check that GitLab runs.", req.URL.Host, setting, base)
		}
		return ue
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxDiscoveryBody))
	what = describeBody(resp, body)
	answered := fmt.Sprintf("%d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	if what != "" {
		answered += ", " + what
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return fail(upstream.KindRejected, resp.StatusCode, fmt.Sprintf("%s answers 404 at %s (%s): %s (%s) is not GitLab's base URL, most likely a wrong path prefix, or a server that is not GitLab. Set it to GitLab's own URL (its external_url, with its relative URL if GitLab has one, e.g. https://example.com/gitlab), the address of its sign-in page without /users/sign_in.",
			req.URL.Host, ep, answered, setting, base))
	case resp.StatusCode != http.StatusOK:
		return fail(upstream.KindRejected, resp.StatusCode, "")
	}
	var doc struct {
		Issuer                string `json:"issuer"`
		AuthorizationEndpoint string `json:"authorization_endpoint"`
		TokenEndpoint         string `json:"token_endpoint"`
	}
	// GitLab's document names its issuer and its endpoints under /oauth; another provider's names
	// its own (Keycloak's /protocol/openid-connect/auth), and a web server's page is no JSON.
	gitlabs := func(endpoint, path string) bool { return endpoint == "" || strings.HasSuffix(endpoint, path) }
	if json.Unmarshal(body, &doc) != nil || doc.Issuer == "" ||
		!gitlabs(doc.AuthorizationEndpoint, "/oauth/authorize") || !gitlabs(doc.TokenEndpoint, "/oauth/token") {
		return fail(upstream.KindBadResponse, resp.StatusCode, fmt.Sprintf("What answers at %s is not GitLab: it answered %s, where GitLab answers its discovery document naming its /oauth/authorize and /oauth/token. Set %s (%s) to GitLab's own URL (its external_url), not another server's, a proxy's or a sign-in page's.",
			ep, answered, setting, base))
	}
	return nil
}

// describeBody says what answered, for an error: its type, its server, and a page's title or the
// start of its text.
func describeBody(resp *http.Response, body []byte) string {
	var parts []string
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		parts = append(parts, ct)
	}
	if srv := resp.Header.Get("Server"); srv != "" {
		parts = append(parts, "Server: "+srv)
	}
	what := strings.Join(parts, ", ")
	text := strings.Join(strings.Fields(string(body)), " ")
	if m := titlePattern.FindStringSubmatch(text); m != nil {
		text = "a page titled " + strconv.Quote(strings.TrimSpace(html.UnescapeString(m[1])))
	} else if r := []rune(text); len(r) > 120 {
		text = strconv.Quote(string(r[:120]) + "…")
	} else if text != "" {
		text = strconv.Quote(text)
	}
	if text != "" {
		what = strings.TrimPrefix(what+": "+text, ": ")
	}
	return what
}

var titlePattern = regexp.MustCompile(`(?i)<title[^>]*>([^<]{0,200})</title>`)

// Probe checks that GitLab answers. GitLab checks the bridge's client and redirect URI only for a
// signed-in person, so that part is the doctor's --login check, which signs in.
func (c *Client) Probe(ctx context.Context) []upstream.Finding {
	if err := c.Ping(ctx); err != nil {
		return []upstream.Finding{{Check: "answers", Detail: err.Error(), Fix: errorFix(err)}}
	}
	return []upstream.Finding{{Check: "answers", OK: true, Detail: c.desc.DisplayName + " answers at " + c.base.String() + "/.well-known/openid-configuration"}}
}

func errorFix(err error) string {
	if ue, ok := errors.AsType[*upstream.Error](err); ok {
		return ue.Fix()
	}
	return ""
}
