package gitlabapi

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"
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
	// HTTPClient makes the server-to-server calls; nil means NewHTTPClient().
	HTTPClient *http.Client
}

// Client signs people in at the upstream GitLab and reads who they are.
type Client struct {
	base   *url.URL
	oauth  oauth2.Config
	http   *http.Client
	userEP string
}

// HTTPOption changes how NewHTTPClient reaches GitLab.
type HTTPOption func(*http.Transport)

// WithRootCAs makes the client trust pool's certificate authorities instead of the system's, for
// a GitLab whose certificate a private CA signed. Pass a pool that also holds the system's
// authorities (x509.SystemCertPool) when GitLab may be reached through a public one too.
func WithRootCAs(pool *x509.CertPool) HTTPOption {
	return func(t *http.Transport) {
		t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
}

// WithProxy chooses the proxy for each upstream request in place of http.ProxyFromEnvironment,
// which reads HTTP_PROXY, HTTPS_PROXY and NO_PROXY once per process and so cannot be tested with
// different values in one process.
func WithProxy(proxy func(*http.Request) (*url.URL, error)) HTTPOption {
	return func(t *http.Transport) { t.Proxy = proxy }
}

// NewHTTPClient returns the client used for upstream calls: one pooled transport, proxies from
// the environment (HTTPS_PROXY, HTTP_PROXY, NO_PROXY, as http.ProxyFromEnvironment reads them),
// and timeouts short enough that a GitLab that does not answer fails the login with a clear error
// instead of hanging the browser.
func NewHTTPClient(opts ...HTTPOption) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	// Set rather than inherited: http.DefaultTransport is a global that anything may have changed.
	t.Proxy = http.ProxyFromEnvironment
	t.DialContext = (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	t.TLSHandshakeTimeout = 5 * time.Second
	t.ResponseHeaderTimeout = 15 * time.Second
	t.MaxIdleConns = 256
	t.MaxIdleConnsPerHost = 128
	t.IdleConnTimeout = 90 * time.Second
	for _, o := range opts {
		o(t)
	}
	return &http.Client{Transport: t, Timeout: 20 * time.Second}
}

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
	base, err := ParseBaseURL(cfg.URL)
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
	hc := cfg.HTTPClient
	if hc == nil {
		hc = NewHTTPClient()
	}
	root := base.String()
	return &Client{
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

// BaseURL returns GitLab's base URL.
func (c *Client) BaseURL() string { return c.base.String() }

// ClientID returns the bridge's client id at GitLab.
func (c *Client) ClientID() string { return c.oauth.ClientID }

// AuthCodeURL is where the browser goes to sign in at GitLab: the bridge's own client_id, state
// and a PKCE S256 challenge of verifier.
func (c *Client) AuthCodeURL(state, verifier string) string {
	return c.oauth.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier))
}

func (c *Client) withHTTP(ctx context.Context) context.Context {
	return context.WithValue(ctx, oauth2.HTTPClient, c.http)
}

// Exchange trades an upstream code for GitLab's token.
func (c *Client) Exchange(ctx context.Context, code, verifier string) (*oauth2.Token, error) {
	tok, err := c.oauth.Exchange(c.withHTTP(ctx), code, oauth2.VerifierOption(verifier))
	if err != nil {
		return nil, c.classify(CallToken, c.oauth.Endpoint.TokenURL, err)
	}
	return tok, nil
}

// TokenSource returns a source that yields tok while it is valid and refreshes it at GitLab
// when it has expired.
func (c *Client) TokenSource(ctx context.Context, tok *oauth2.Token) oauth2.TokenSource {
	return c.oauth.TokenSource(c.withHTTP(ctx), tok)
}

// User reads /api/v4/user with a token from ts. It returns the decoded user, the body exactly as
// GitLab sent it, and the token used (which differs from the one ts started with if it was
// refreshed, and must then be saved).
func (c *Client) User(ctx context.Context, ts oauth2.TokenSource) (*User, []byte, *oauth2.Token, error) {
	tok, err := ts.Token()
	if err != nil {
		return nil, nil, nil, c.classify(CallRefresh, c.oauth.Endpoint.TokenURL, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.userEP, nil)
	if err != nil {
		return nil, nil, nil, &UpstreamError{Call: CallUser, URL: c.userEP, Kind: KindUnreachable, Err: err}
	}
	req.Header.Set("Accept", "application/json")
	tok.SetAuthHeader(req)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, nil, nil, c.classify(CallUser, c.userEP, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxUserBody+1))
	if err != nil {
		return nil, nil, nil, c.classify(CallUser, c.userEP, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, nil, &UpstreamError{Call: CallUser, URL: c.userEP, Kind: KindRejected,
			Status: resp.StatusCode, Message: ParseMessage(body)}
	}
	if len(body) > maxUserBody {
		return nil, nil, nil, &UpstreamError{Call: CallUser, URL: c.userEP, Kind: KindBadResponse,
			Status: resp.StatusCode, Message: "the user body is larger than 1 MiB"}
	}
	u, err := DecodeUser(body)
	if err != nil {
		ue := &UpstreamError{Call: CallUser, URL: c.userEP, Kind: KindBadResponse, Status: resp.StatusCode}
		if _, ok := errors.AsType[*UserIDError](err); ok {
			ue.Err = err // for callers that tell a user Mattermost would refuse from a broken answer
		} else {
			ue.Message = err.Error()
		}
		return nil, nil, nil, ue
	}
	return u, body, tok, nil
}

// classify turns a transport or x/oauth2 error into an UpstreamError that says what happened.
func (c *Client) classify(call Call, endpoint string, err error) *UpstreamError {
	ue := &UpstreamError{Call: call, URL: endpoint, Err: err}
	var re *oauth2.RetrieveError
	var ne net.Error
	var ce *tls.CertificateVerificationError
	var ue509 x509.UnknownAuthorityError
	var he x509.HostnameError
	var re2 tls.RecordHeaderError
	switch {
	case errors.As(err, &re):
		ue.Kind = KindRejected
		if re.Response != nil {
			ue.Status = re.Response.StatusCode
		}
		ue.Code = re.ErrorCode
		ue.Message = re.ErrorDescription
		if ue.Code == "" && ue.Message == "" {
			ue.Message = ParseMessage(re.Body)
		}
		if ue.Status == http.StatusOK {
			// x/oauth2 reports a 200 whose body has no access_token this way.
			ue.Kind = KindBadResponse
		}
		ue.Err = nil // its text repeats the body, which may echo what was sent
	case errors.As(err, &ce), errors.As(err, &ue509), errors.As(err, &he), errors.As(err, &re2):
		ue.Kind = KindTLS
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		ue.Kind = KindTimeout
	case errors.Is(err, context.Canceled):
		ue.Kind = KindCanceled
	default:
		switch {
		case strings.Contains(err.Error(), "server response missing access_token"):
			ue.Kind = KindBadResponse
		case strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
			// net/http's words for a tls.RecordHeaderError it met on an https request.
			ue.Kind = KindTLS
		default:
			ue.Kind = KindUnreachable
		}
	}
	return ue
}

// HasScope reports whether the bridge asks GitLab for scope.
func (c *Client) HasScope(scope string) bool {
	for _, s := range c.oauth.Scopes {
		if s == scope {
			return true
		}
	}
	return false
}

// Groups reads the person's groups (full paths) from GitLab's OpenID Connect userinfo, which
// GitLab fills when the bridge has the openid scope there.
func (c *Client) Groups(ctx context.Context, ts oauth2.TokenSource) ([]string, error) {
	ep := c.base.String() + "/oauth/userinfo"
	tok, err := ts.Token()
	if err != nil {
		return nil, c.classify(CallRefresh, c.oauth.Endpoint.TokenURL, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ep, nil)
	if err != nil {
		return nil, &UpstreamError{Call: CallUserInfo, URL: ep, Kind: KindUnreachable, Err: err}
	}
	req.Header.Set("Accept", "application/json")
	tok.SetAuthHeader(req)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.classify(CallUserInfo, ep, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxUserBody))
	if err != nil {
		return nil, c.classify(CallUserInfo, ep, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &UpstreamError{Call: CallUserInfo, URL: ep, Kind: KindRejected, Status: resp.StatusCode, Message: ParseMessage(body)}
	}
	var claims struct {
		Groups []string `json:"groups"`
	}
	if err := json.Unmarshal(body, &claims); err != nil {
		return nil, &UpstreamError{Call: CallUserInfo, URL: ep, Kind: KindBadResponse, Status: resp.StatusCode,
			Message: "the userinfo body is not JSON with a groups list"}
	}
	return claims.Groups, nil
}

// Ping checks that GitLab answers, at its public OpenID Connect discovery document.
func (c *Client) Ping(ctx context.Context) error {
	ep := c.base.String() + "/.well-known/openid-configuration"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ep, nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return c.classify(CallPing, ep, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxUserBody))
	if resp.StatusCode != http.StatusOK {
		return &UpstreamError{Call: CallPing, URL: ep, Kind: KindRejected, Status: resp.StatusCode}
	}
	return nil
}
