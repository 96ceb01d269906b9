// Package openid is an OpenID Connect provider behind the bridge: any issuer that publishes a
// discovery document (Keycloak, Entra ID, authentik, Google, Dex, Okta, GitLab itself) signs
// people in, and the bridge presents them to Mattermost as GitLab users. It implements the
// capabilities of package upstream: the code flow with PKCE S256 and a nonce, the ID token
// verified with github.com/coreos/go-oidc (signature by the issuer's published keys, issuer,
// audience, expiry, nonce), userinfo merged into the ID token's claims, refresh at the provider
// when it gave a refresh token, and the live read of the person through userinfo.
//
// It only describes people; the ids Mattermost sees are the bridge's (see store.Identities). It
// refuses a person without an email, or whose email the provider does not say is verified, unless
// told to treat the provider's emails as verified (AllowUnverifiedEmail): an email is what binds
// a person to an account Mattermost already has.
package openid

import (
	"cmp"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/oauth2"

	"github.com/ssobridge/ssobridge/oauth/upstream"
)

// Defaults of the claim settings.
const (
	DefaultUsernameClaim = "preferred_username"
	DefaultNameClaim     = "name"
	DefaultGroupsClaim   = "groups"
	DefaultEmailClaim    = "email"
)

// DefaultScopes are asked of the provider when Config.Scopes is empty.
var DefaultScopes = []string{oidc.ScopeOpenID, "email", "profile"}

// SingleSettings are the settings of the provider configured by environment variables.
var SingleSettings = upstream.Settings{URL: "SSOBRIDGE_OIDC_ISSUER", ClientID: "SSOBRIDGE_OIDC_CLIENT_ID",
	ClientSecret: "SSOBRIDGE_OIDC_CLIENT_SECRET", Scopes: "SSOBRIDGE_OIDC_SCOPES", CAFile: "SSOBRIDGE_OIDC_CA_FILE",
	Console: "the provider's administration console"}

// Config is an OpenID provider, and how the bridge reads people from it.
type Config struct {
	// Name and DisplayName describe the provider (see upstream.Description); "oidc" and the
	// issuer's host when empty.
	Name        string
	DisplayName string
	// Issuer is the provider's issuer URL exactly as its discovery document states it.
	Issuer       string
	ClientID     string
	ClientSecret string
	// Scopes asked of the provider; DefaultScopes when empty. openid is required.
	Scopes []string
	// RedirectURL is the bridge's callback, registered at the provider.
	RedirectURL string
	// The claims the person's username, name, groups and email are read from; the defaults
	// above when empty. A missing username falls back to the email's part before the @.
	UsernameClaim string
	NameClaim     string
	GroupsClaim   string
	EmailClaim    string
	// AllowUnverifiedEmail treats the provider's emails as verified when it does not say so
	// (email_verified false or absent, as Entra ID sends none). Only for a provider where nobody
	// can set an email they do not own: an email binds a person to an existing account.
	AllowUnverifiedEmail bool
	// HTTPClient makes the calls to the provider; nil means upstream.NewHTTPClient().
	HTTPClient *http.Client
	// Settings name where the provider is configured, for fixes; SingleSettings when zero.
	Settings upstream.Settings
}

// Provider is an OpenID Connect provider. Its discovery document is read on first use and kept;
// a failed read is tried again at the next use, so that a provider down when the bridge starts
// does not need a restart.
type Provider struct {
	cfg  Config
	desc upstream.Description
	http *http.Client

	mu       sync.Mutex
	found    *discovered
	lastFail time.Time
	lastErr  error
}

// discovered is what the discovery document said.
type discovered struct {
	provider *oidc.Provider
	verifier *oidc.IDTokenVerifier
	oauth    oauth2.Config
	userinfo string
	jwks     string
	// selectAccount: the document lists select_account in prompt_values_supported.
	selectAccount bool
}

// The capabilities of an OpenID provider.
var (
	_ upstream.CallbackProvider = (*Provider)(nil)
	_ upstream.UserReader       = (*Provider)(nil)
	_ upstream.Refresher        = (*Provider)(nil)
	_ upstream.Pinger           = (*Provider)(nil)
	_ upstream.Prober           = (*Provider)(nil)
	_ upstream.Prompter         = (*Provider)(nil)
)

// New checks cfg and returns the provider; it does not call it (see Provider).
func New(cfg Config) (*Provider, error) {
	p, err := newProvider(cfg)
	if err != nil {
		return nil, err
	}
	if cfg.ClientSecret == "" {
		return nil, errors.New("the bridge's client secret at the provider is empty")
	}
	return p, nil
}

// NewProbe checks cfg as New does, but for the client secret, which a probe never sends, and
// returns the provider as a Prober alone: `ssobridge doctor` checks a provider with the bridge's
// issuer, client id, scopes and callback, and without its secret.
func NewProbe(cfg Config) (upstream.Prober, error) {
	p, err := newProvider(cfg)
	if err != nil {
		return nil, err
	}
	return upstream.ProbeOnly(p), nil
}

// newProvider checks cfg, but for its client secret, and returns the provider.
func newProvider(cfg Config) (*Provider, error) {
	if cfg.Issuer == "" {
		return nil, errors.New("the issuer is missing")
	}
	iss, err := url.Parse(cfg.Issuer)
	if err != nil || (iss.Scheme != "https" && iss.Scheme != "http") || iss.Host == "" || iss.RawQuery != "" || iss.Fragment != "" {
		return nil, fmt.Errorf("the issuer %q is not an https URL without query or fragment", cfg.Issuer)
	}
	if cfg.ClientID == "" {
		return nil, errors.New("the bridge's client id at the provider is empty")
	}
	if cb, err := url.Parse(cfg.RedirectURL); err != nil || cb.Scheme == "" || cb.Host == "" {
		return nil, fmt.Errorf("the bridge's callback URL %q is not an absolute URL", cfg.RedirectURL)
	}
	if len(cfg.Scopes) == 0 {
		cfg.Scopes = DefaultScopes
	}
	if !slices.Contains(cfg.Scopes, oidc.ScopeOpenID) {
		return nil, fmt.Errorf("the scopes %q lack openid, without which the provider sends no ID token", strings.Join(cfg.Scopes, " "))
	}
	cfg.UsernameClaim = cmp.Or(cfg.UsernameClaim, DefaultUsernameClaim)
	cfg.NameClaim = cmp.Or(cfg.NameClaim, DefaultNameClaim)
	cfg.GroupsClaim = cmp.Or(cfg.GroupsClaim, DefaultGroupsClaim)
	cfg.EmailClaim = cmp.Or(cfg.EmailClaim, DefaultEmailClaim)
	if cfg.Settings == (upstream.Settings{}) {
		cfg.Settings = SingleSettings
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = upstream.NewHTTPClient()
	}
	return &Provider{cfg: cfg, http: hc, desc: upstream.Description{
		Name: cmp.Or(cfg.Name, "oidc"), DisplayName: cmp.Or(cfg.DisplayName, iss.Host), Type: "oidc", URL: cfg.Issuer,
		UserCall: "ID token verified, GET userinfo", Settings: cfg.Settings,
	}}, nil
}

// Describe says which provider this is.
func (p *Provider) Describe() upstream.Description { return p.desc }

func (p *Provider) fail(e *upstream.Error) *upstream.Error {
	e.Provider, e.Settings = p.desc.DisplayName, p.desc.Settings
	return e
}

func (p *Provider) classify(call upstream.Call, endpoint string, err error) *upstream.Error {
	return p.fail(upstream.Classify(call, endpoint, err, errorMessage))
}

// Discover reads the discovery document now, as the first sign-in would, so that a wrong issuer
// is reported when the bridge starts rather than at someone's sign-in.
func (p *Provider) Discover(ctx context.Context) error {
	_, err := p.discover(ctx)
	return err
}

// discoveryRetry is how long a failed discovery is answered from memory before it is tried
// again, so that a flood of sign-ins while the provider is down does not become a flood there.
const discoveryRetry = 2 * time.Second

// discover returns the discovery document, reading it when it has not been read yet.
func (p *Provider) discover(ctx context.Context) (*discovered, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.found != nil {
		return p.found, nil
	}
	if time.Since(p.lastFail) < discoveryRetry {
		return nil, p.lastErr
	}
	d, err := p.readDiscovery(ctx)
	if err != nil {
		p.lastFail, p.lastErr = time.Now(), err
		return nil, err
	}
	p.found = d
	return d, nil
}

func (p *Provider) discoveryURL() string {
	return strings.TrimSuffix(p.cfg.Issuer, "/") + "/.well-known/openid-configuration"
}

// readDiscovery reads and checks the discovery document: it must name the configured issuer
// exactly, since ID tokens are checked against it.
func (p *Provider) readDiscovery(ctx context.Context) (*discovered, error) {
	ep := p.discoveryURL()
	body, err := p.get(ctx, upstream.CallDiscovery, ep)
	if ue, ok := errors.AsType[*upstream.Error](err); ok && ue.Kind == upstream.KindRejected && ue.Status >= 400 && ue.Status < 500 {
		// The most common mistake: a URL that is the provider's, but not its issuer.
		ue.Advice = fmt.Sprintf("There is no discovery document at %s: %s must be the issuer itself, as the provider names it (Keycloak: https://HOST/realms/REALM; Entra ID: https://login.microsoftonline.com/TENANT/v2.0; authentik: https://HOST/application/o/SLUG/; Google: https://accounts.google.com).",
			ep, p.desc.Settings.URL)
	}
	if err != nil {
		return nil, err
	}
	var pc oidc.ProviderConfig
	if err := json.Unmarshal(body, &pc); err != nil {
		return nil, p.fail(&upstream.Error{Call: upstream.CallDiscovery, URL: ep, Kind: upstream.KindBadResponse, Status: http.StatusOK,
			Message: "the discovery document is not JSON: is " + p.desc.Settings.URL + " the issuer's URL?"})
	}
	switch {
	case pc.IssuerURL != p.cfg.Issuer:
		return nil, p.fail(&upstream.Error{Call: upstream.CallDiscovery, URL: ep, Kind: upstream.KindBadResponse, Status: http.StatusOK,
			Message: fmt.Sprintf("the discovery document names the issuer %q, not %q", pc.IssuerURL, p.cfg.Issuer),
			Advice: fmt.Sprintf("Set %s to exactly %s, the issuer the provider names (its ID tokens carry it, and the bridge checks them against %s).",
				p.desc.Settings.URL, pc.IssuerURL, p.desc.Settings.URL)})
	case pc.AuthURL == "" || pc.TokenURL == "" || pc.JWKSURL == "":
		return nil, p.fail(&upstream.Error{Call: upstream.CallDiscovery, URL: ep, Kind: upstream.KindBadResponse, Status: http.StatusOK,
			Message: "the discovery document lacks authorization_endpoint, token_endpoint or jwks_uri"})
	}
	// prompt_values_supported (OpenID Connect Prompt Create §4.1) is optional: a provider that does
	// not publish it is not sent select_account, which OpenID Connect Core leaves optional.
	var prompts struct {
		Values []string `json:"prompt_values_supported"`
	}
	_ = json.Unmarshal(body, &prompts) // a field of another type is as good as none
	// The keys are fetched with the bridge's client, outliving any request.
	prov := pc.NewProvider(oidc.ClientContext(context.Background(), p.http))
	return &discovered{
		selectAccount: slices.Contains(prompts.Values, "select_account"),
		provider:      prov,
		verifier:      prov.Verifier(&oidc.Config{ClientID: p.cfg.ClientID}),
		oauth: oauth2.Config{ClientID: p.cfg.ClientID, ClientSecret: p.cfg.ClientSecret, Scopes: p.cfg.Scopes,
			RedirectURL: p.cfg.RedirectURL, Endpoint: prov.Endpoint()},
		userinfo: pc.UserInfoURL,
		jwks:     pc.JWKSURL,
	}, nil
}

// get reads a JSON document the provider publishes.
func (p *Provider) get(ctx context.Context, call upstream.Call, ep string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ep, nil)
	if err != nil {
		return nil, p.fail(&upstream.Error{Call: call, URL: ep, Kind: upstream.KindUnreachable, Err: err})
	}
	req.Header.Set("Accept", "application/json")
	resp, err := p.http.Do(req)
	if err != nil {
		return nil, p.classify(call, ep, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, p.classify(call, ep, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, p.fail(&upstream.Error{Call: call, URL: ep, Kind: upstream.KindRejected, Status: resp.StatusCode, Message: errorMessage(body)})
	}
	return body, nil
}

// maxBody bounds what the bridge reads of a provider's document or answer.
const maxBody = 1 << 20

// errorMessage reads an OAuth error body ({"error","error_description"}), or "" if there is none.
func errorMessage(body []byte) string {
	var e struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if json.Unmarshal(body, &e) != nil || e.Error == "" {
		return ""
	}
	if e.Description == "" {
		return e.Error
	}
	return e.Error + ": " + e.Description
}

// AuthCodeURL is where the browser goes to sign in at the provider: the bridge's client_id,
// state, nonce and a PKCE S256 challenge, and the prompt and max_age of a, if any.
func (p *Provider) AuthCodeURL(ctx context.Context, state string, a upstream.Auth) (string, error) {
	d, err := p.discover(ctx)
	if err != nil {
		return "", err
	}
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(a.Verifier), oidc.Nonce(a.Nonce)}
	if a.Prompt != "" {
		opts = append(opts, oauth2.SetAuthURLParam("prompt", a.Prompt))
	}
	if a.MaxAge != nil {
		opts = append(opts, oauth2.SetAuthURLParam("max_age", strconv.FormatInt(*a.MaxAge, 10)))
	}
	return d.oauth.AuthCodeURL(state, opts...), nil
}

// Prompts says what the provider honours: every OpenID provider honours none, login and max_age
// (OpenID Connect Core §3.1.2.1 defines them, and auth_time with max_age), select_account only
// one that lists it in its discovery document.
func (p *Provider) Prompts(ctx context.Context) (upstream.Prompts, error) {
	d, err := p.discover(ctx)
	if err != nil {
		return upstream.Prompts{}, err
	}
	return upstream.Prompts{None: true, Login: true, MaxAge: true, SelectAccount: d.selectAccount}, nil
}

func (p *Provider) withHTTP(ctx context.Context) context.Context {
	return context.WithValue(ctx, oauth2.HTTPClient, p.http)
}

// Exchange trades the provider's code for its tokens.
func (p *Provider) Exchange(ctx context.Context, code string, a upstream.Auth) (*oauth2.Token, error) {
	d, err := p.discover(ctx)
	if err != nil {
		return nil, err
	}
	tok, err := d.oauth.Exchange(p.withHTTP(ctx), code, oauth2.VerifierOption(a.Verifier))
	if err != nil {
		return nil, p.classify(upstream.CallToken, d.oauth.Endpoint.TokenURL, err)
	}
	return tok, nil
}

// Refresh renews tok at the provider.
func (p *Provider) Refresh(ctx context.Context, tok *oauth2.Token) (*oauth2.Token, error) {
	d, err := p.discover(ctx)
	if err != nil {
		return nil, err
	}
	expired := *tok
	expired.Expiry = time.Unix(1, 0) // x/oauth2 refreshes only a token it believes expired
	fresh, err := d.oauth.TokenSource(p.withHTTP(ctx), &expired).Token()
	if err != nil {
		return nil, p.classify(upstream.CallRefresh, d.oauth.Endpoint.TokenURL, err)
	}
	if fresh.RefreshToken == "" {
		fresh.RefreshToken = tok.RefreshToken // a provider that does not rotate keeps the old one
	}
	return fresh, nil
}

// Identify verifies the ID token of tok (signature, issuer, audience, expiry, nonce), merges the
// provider's userinfo into its claims, and reads the person from them.
func (p *Provider) Identify(ctx context.Context, tok *oauth2.Token, a upstream.Auth) (*upstream.Identity, error) {
	d, err := p.discover(ctx)
	if err != nil {
		return nil, err
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return nil, &upstream.IdentityError{Reason: upstream.ReasonIDToken,
			Detail: p.desc.DisplayName + " returned no ID token with its access token",
			Fix:    fmt.Sprintf("Administrators: ask %s for the openid scope (%s) and allow it for the bridge's client there.", p.desc.DisplayName, p.desc.Settings.Scopes)}
	}
	idt, err := d.verifier.Verify(ctx, raw)
	if err != nil {
		if strings.Contains(err.Error(), "fetching keys") || strings.Contains(err.Error(), "get keys failed") {
			return nil, p.classify(upstream.CallKeys, d.jwks, err)
		}
		return nil, &upstream.IdentityError{Reason: upstream.ReasonIDToken,
			Detail: fmt.Sprintf("%s's ID token does not hold: %s", p.desc.DisplayName, strings.TrimPrefix(err.Error(), "oidc: ")),
			Fix: fmt.Sprintf("Administrators: check that %s is exactly the provider's issuer and %s the bridge's client id there, and that the clocks of the bridge's host and the provider agree.",
				p.desc.Settings.URL, p.desc.Settings.ClientID)}
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(a.Nonce)) != 1 || a.Nonce == "" {
		return nil, &upstream.IdentityError{Reason: upstream.ReasonNonce,
			Detail: p.desc.DisplayName + "'s ID token does not carry this sign-in's nonce: it belongs to another sign-in, or was replayed",
			Fix:    "Sign in again. Administrators: if it happens every time, the provider does not return the nonce it is sent."}
	}
	claims := map[string]any{}
	if err := idt.Claims(&claims); err != nil {
		return nil, &upstream.IdentityError{Reason: upstream.ReasonIDToken, Detail: "the ID token's claims are not a JSON object"}
	}
	if d.userinfo != "" {
		info, err := p.userinfo(ctx, d, tok)
		if err != nil {
			return nil, err
		}
		if sub, _ := info["sub"].(string); sub != idt.Subject {
			return nil, &upstream.IdentityError{Reason: upstream.ReasonIDToken,
				Detail: fmt.Sprintf("%s's userinfo describes another person (sub) than its ID token", p.desc.DisplayName),
				Fix:    "Administrators: the provider answers userinfo for another person than the one who signed in; check proxies or caches in front of it."}
		}
		for k, v := range info {
			claims[k] = v
		}
	}
	claims["sub"] = idt.Subject
	id, err := p.identity(claims)
	if err != nil {
		return nil, err
	}
	// auth_time is the ID token's own, signed; userinfo's has no say.
	var at struct {
		AuthTime *jwt.NumericDate `json:"auth_time"`
	}
	if idt.Claims(&at) == nil && at.AuthTime != nil {
		id.AuthTime = at.AuthTime.UTC()
	}
	return id, nil
}

// ReadUser reads the person again from userinfo with tok.
func (p *Provider) ReadUser(ctx context.Context, tok *oauth2.Token) (*upstream.Identity, error) {
	d, err := p.discover(ctx)
	if err != nil {
		return nil, err
	}
	if d.userinfo == "" {
		return nil, upstream.ErrCannotRead
	}
	claims, err := p.userinfo(ctx, d, tok)
	if err != nil {
		return nil, err
	}
	return p.identity(claims)
}

// userinfo reads the claims of the provider's userinfo endpoint.
func (p *Provider) userinfo(ctx context.Context, d *discovered, tok *oauth2.Token) (map[string]any, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.userinfo, nil)
	if err != nil {
		return nil, p.fail(&upstream.Error{Call: upstream.CallUserInfo, URL: d.userinfo, Kind: upstream.KindUnreachable, Err: err})
	}
	req.Header.Set("Accept", "application/json")
	tok.SetAuthHeader(req)
	resp, err := p.http.Do(req)
	if err != nil {
		return nil, p.classify(upstream.CallUserInfo, d.userinfo, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, p.classify(upstream.CallUserInfo, d.userinfo, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, p.fail(&upstream.Error{Call: upstream.CallUserInfo, URL: d.userinfo, Kind: upstream.KindRejected, Status: resp.StatusCode,
			Message: cmp.Or(errorMessage(body), bearerError(resp.Header.Get("WWW-Authenticate")))})
	}
	claims := map[string]any{}
	if err := json.Unmarshal(body, &claims); err != nil {
		// A userinfo signed as a JWT (Content-Type application/jwt) is not asked for, and so
		// not expected.
		return nil, p.fail(&upstream.Error{Call: upstream.CallUserInfo, URL: d.userinfo, Kind: upstream.KindBadResponse, Status: resp.StatusCode,
			Message: "the userinfo answer is not a JSON object"})
	}
	return claims, nil
}

// bearerError reads the error of an RFC 6750 WWW-Authenticate header, for a message.
func bearerError(h string) string {
	_, after, ok := strings.Cut(h, `error="`)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(after, `"`)
	return v
}

// identity reads the person from the claims, and refuses what the bridge cannot present to
// Mattermost.
func (p *Provider) identity(claims map[string]any) (*upstream.Identity, error) {
	sub, _ := claims["sub"].(string)
	if sub == "" {
		return nil, &upstream.IdentityError{Reason: upstream.ReasonClaimMissing, Detail: p.desc.DisplayName + " described the person without a subject (sub)",
			Fix: "Administrators: the provider's answers lack the sub claim that every OpenID provider must send; check that " + p.desc.Settings.URL + " is an OpenID provider."}
	}
	email := strings.TrimSpace(stringClaim(claims, p.cfg.EmailClaim))
	if local, domain, ok := strings.Cut(email, "@"); !ok || local == "" || domain == "" {
		return nil, &upstream.IdentityError{Reason: upstream.ReasonEmailMissing,
			Detail: fmt.Sprintf("%s gave no email address for you (claim %s), and Mattermost needs one", p.desc.DisplayName, p.cfg.EmailClaim),
			Fix: fmt.Sprintf("Administrators: give the person an email at %s, ask it for the email scope (%s), or name the claim that holds the email (SSOBRIDGE_OIDC_EMAIL_CLAIM, e.g. upn at Entra ID).",
				p.desc.DisplayName, p.desc.Settings.Scopes)}
	}
	verified := boolClaim(claims, "email_verified")
	if !verified && !p.cfg.AllowUnverifiedEmail {
		return nil, &upstream.IdentityError{Reason: upstream.ReasonEmailUnverified,
			Detail: fmt.Sprintf("%s does not say that your email address %s is verified", p.desc.DisplayName, email),
			Fix: fmt.Sprintf("Verify the email address at %s, then sign in again. Administrators: only if nobody can set an email they do not own at %s, allow unverified emails (SSOBRIDGE_OIDC_ALLOW_UNVERIFIED_EMAIL=true): an email binds a person to an account Mattermost already has.",
				p.desc.DisplayName, p.desc.DisplayName)}
	}
	username := strings.TrimSpace(stringClaim(claims, p.cfg.UsernameClaim))
	if username == "" {
		username, _, _ = strings.Cut(email, "@")
	}
	name := stringClaim(claims, p.cfg.NameClaim)
	if name == "" {
		name = strings.TrimSpace(stringClaim(claims, "given_name") + " " + stringClaim(claims, "family_name"))
	}
	return &upstream.Identity{Subject: sub, Username: username, Name: cmp.Or(name, username), Email: email, EmailVerified: true,
		AvatarURL: stringClaim(claims, "picture"), WebURL: stringClaim(claims, "profile"), Groups: groupsClaim(claims, p.cfg.GroupsClaim)}, nil
}

func stringClaim(claims map[string]any, name string) string {
	s, _ := claims[name].(string)
	return s
}

// boolClaim reads a boolean claim, which some providers (Amazon Cognito) send as a string.
func boolClaim(claims map[string]any, name string) bool {
	switch v := claims[name].(type) {
	case bool:
		return v
	case string:
		return strings.EqualFold(v, "true")
	}
	return false
}

// groupsClaim reads the groups claim: a list of strings, or one string; nil when the provider
// did not send it, which the sign-in rules tell apart from no group.
func groupsClaim(claims map[string]any, name string) []string {
	switch v := claims[name].(type) {
	case string:
		return []string{v}
	case []any:
		groups := []string{}
		for _, g := range v {
			if s, ok := g.(string); ok && s != "" {
				groups = append(groups, strings.TrimPrefix(s, "/")) // Keycloak writes full paths with a leading slash
			}
		}
		return groups
	}
	return nil
}

// Ping checks that the provider answers at its discovery document.
func (p *Provider) Ping(ctx context.Context) error {
	_, err := p.get(ctx, upstream.CallPing, p.discoveryURL())
	return err
}

// Probe checks the provider end to end from the bridge's side: its discovery document names
// the issuer, its signing keys can be read, and it accepts the bridge's client and redirect URI
// (an authorize request as a sign-in sends it, read without signing in: providers check the
// client and the redirect URI before they ask anyone to sign in).
func (p *Provider) Probe(ctx context.Context) []upstream.Finding {
	p.mu.Lock()
	d, err := p.readDiscovery(ctx)
	p.mu.Unlock()
	if err != nil {
		return []upstream.Finding{{Check: "discovery", Detail: err.Error(), Fix: fixOf(err)}}
	}
	found := []upstream.Finding{{Check: "discovery", OK: true, Detail: "the discovery document at " + p.discoveryURL() + " names the issuer " + p.cfg.Issuer}}
	body, err := p.get(ctx, upstream.CallKeys, d.jwks)
	var keys struct {
		Keys []json.RawMessage `json:"keys"`
	}
	switch {
	case err != nil:
		found = append(found, upstream.Finding{Check: "signing keys", Detail: err.Error(), Fix: fixOf(err)})
	case json.Unmarshal(body, &keys) != nil || len(keys.Keys) == 0:
		found = append(found, upstream.Finding{Check: "signing keys", Detail: d.jwks + " holds no keys", Fix: "The provider publishes no signing keys: ID tokens cannot be verified. Check the provider's realm or tenant."})
	default:
		n := fmt.Sprintf("%d keys", len(keys.Keys))
		if len(keys.Keys) == 1 {
			n = "1 key"
		}
		found = append(found, upstream.Finding{Check: "signing keys", OK: true, Detail: n + " at " + d.jwks})
	}
	authURL := d.oauth.AuthCodeURL("ssobridge-doctor-probe", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oidc.Nonce("ssobridge-doctor-probe"))
	return append(found, upstream.ProbeAuthorize(ctx, p.http, authURL, p.cfg.RedirectURL, p.desc))
}

func fixOf(err error) string {
	if ue, ok := errors.AsType[*upstream.Error](err); ok {
		return ue.Fix()
	}
	return ""
}
