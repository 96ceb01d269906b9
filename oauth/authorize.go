package oauth

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
	"golang.org/x/oauth2"

	"github.com/ssobridge/ssobridge/oauth/signin"
	"github.com/ssobridge/ssobridge/oauth/store"
	"github.com/ssobridge/ssobridge/oauth/upstream"
)

// Bounds on authorize parameters; real ones are far smaller (Mattermost's state is ~200 bytes).
const (
	maxClientID  = 256
	maxState     = 4096
	maxScope     = 1024
	maxChallenge = 128
)

// AuthorizeRequest is a parsed GET /oauth/authorize.
type AuthorizeRequest struct {
	ClientID            string
	RedirectURI         string
	ResponseType        string
	State               string
	Scope               string
	CodeChallenge       string
	CodeChallengeMethod string
	Nonce               string
	// Prompt and MaxAge are OpenID Connect's, as sent: ParsePrompt and ParseMaxAge read them.
	Prompt string
	MaxAge string
}

// ParseAuthorizeRequest reads the authorize parameters. A parameter given twice is refused
// (RFC 6749 §3.1), since two parsers could disagree about which one counts.
func ParseAuthorizeRequest(q url.Values) (*AuthorizeRequest, string) {
	for _, k := range []string{"client_id", "redirect_uri", "response_type", "state", "scope", "code_challenge", "code_challenge_method", "nonce", "prompt", "max_age"} {
		if len(q[k]) > 1 {
			return nil, fmt.Sprintf("the parameter %s is given %d times; give it once", k, len(q[k]))
		}
	}
	r := &AuthorizeRequest{
		ClientID:            q.Get("client_id"),
		RedirectURI:         q.Get("redirect_uri"),
		ResponseType:        q.Get("response_type"),
		State:               q.Get("state"),
		Scope:               q.Get("scope"),
		CodeChallenge:       q.Get("code_challenge"),
		CodeChallengeMethod: q.Get("code_challenge_method"),
		Nonce:               q.Get("nonce"),
		Prompt:              q.Get("prompt"),
		MaxAge:              q.Get("max_age"),
	}
	return r, ""
}

// authorize checks a client's request in GitLab's order, parks it, and sends the browser to
// sign in at the upstream GitLab. Until client and redirect_uri are proven, every failure is a
// page: nothing redirects to an unchecked URI.
func (s *Server) authorize(c echo.Context) error {
	ctx := c.Request().Context()
	s.beginStep(c, requestTrace(c), signin.StepAuthorize, store.PartClient, store.PartBridge, "302 to /oauth/authorize (response_type, client_id, redirect_uri, state)")
	query, err := strictQuery(c)
	if err != nil {
		return fail(signin.MalformedQuery, "The sign-in request's query is not well formed (%s), so its parameters cannot be read as sent.", err).
			page("Invalid sign-in request", 0).
			withFix("Start the sign-in again from the application; if it keeps happening, the application builds its authorize URL wrongly (every value must be percent-encoded).")
	}
	req, dup := ParseAuthorizeRequest(query)
	if dup != "" {
		return fail(signin.DuplicateParameter, "%s", dup).page("Invalid sign-in request", 0).
			withFix("Start the sign-in again from the application; if it keeps happening, the application builds its authorize URL wrongly.")
	}
	if req.ClientID == "" {
		return fail(signin.ClientIDMissing, "The request does not say which application is asking (client_id is missing).").
			page("Sign-in request without client_id", 0).
			withFix("Administrators: set the application ID in Mattermost (System Console > Authentication > GitLab > Application ID, or MM_GITLABSETTINGS_ID).")
	}
	if len(req.ClientID) > maxClientID {
		return fail(signin.UnknownClient, "The client_id is longer than any application ID.").page("Unknown application", 0).
			withFix("Administrators: copy the application ID from `ssobridge apps list` into Mattermost's GitLab settings.")
	}
	app, err := s.store.GetApp(ctx, req.ClientID)
	if errors.Is(err, store.ErrNotFound) {
		if lost, _ := s.storeLost(ctx); lost {
			// Every application is unknown then: the ID in Mattermost is not what is wrong.
			return fail(signin.UnknownClient, "No application with client_id %q is registered at this bridge, because the bridge's store lost its data: every application registered is gone.", req.ClientID).
				page("Unknown application", 0).withFix("Administrators: " + StoreLostData + ". Mattermost's Application ID is not what is wrong.")
		}
		return fail(signin.UnknownClient, "No application with client_id %q is registered at this bridge.", req.ClientID).page("Unknown application", 0).
			withFix("Administrators: run `ssobridge apps list` and copy the application's ID into Mattermost's GitLab settings (Application ID, MM_GITLABSETTINGS_ID), or register one with `ssobridge apps create`.")
	}
	if err != nil {
		return storeFailure("get application", err)
	}
	traceMeta(c, store.TraceMeta{ClientID: app.ID, App: app.Name})
	if req.RedirectURI == "" {
		return fail(signin.RedirectURIMissing, "The request from %s does not say where to return (redirect_uri is missing).", app.Name).
			page("Sign-in request without redirect_uri", 0).withFix("Start the sign-in again from the application.")
	}
	if !appRedirectURI(app, req.RedirectURI) {
		// Whoever knows a client_id can send any redirect_uri: the page says which part of it
		// differs, never what is registered, or a near miss would spell the registration out.
		why, detail := explainRedirectURI(app, req.RedirectURI)
		e := fail(signin.RedirectURINotRegistered, "The redirect_uri %q is not registered for the application %s: %s.",
			truncate(req.RedirectURI, 300), app.Name, why).
			page("Redirect URI not registered", 0).withFix(redirectFix(app))
		e.PageFix = "The application sent a redirect URI its registration at this bridge does not list, so the bridge does not send you back to it. Tell the administrator of " + app.Name + ", and give them the trace ID below."
		e.TraceDetail = "(" + detail + ") Registered: " + strings.Join(app.RedirectURIs, ", ") + "."
		return e
	}
	// From here on the redirect URI is the client's own: errors go back to it.
	refuse := func(f *signin.Failure, format string, args ...any) *Error {
		return fail(f, format, args...).toClient(req.RedirectURI, req.State)
	}
	switch {
	case req.ResponseType == "":
		return refuse(signin.ResponseTypeMissing, "response_type is missing; use response_type=code")
	case req.ResponseType != "code":
		return refuse(signin.ResponseTypeUnsupported, "response_type %q is not supported; use response_type=code", truncate(req.ResponseType, 40))
	case len(req.State) > maxState:
		return refuse(signin.ParameterTooLong, "state is longer than %d bytes", maxState)
	case len(req.Scope) > maxScope:
		return refuse(signin.ScopeTooLong, "scope is longer than %d bytes", maxScope)
	case len(req.Nonce) > maxState:
		return refuse(signin.ParameterTooLong, "nonce is longer than %d bytes", maxState)
	}
	granted, missing := grantScope(req.Scope, app.Scopes)
	if len(missing) > 0 && slices.Contains(missing, "openid") && strings.HasSuffix(req.RedirectURI, "/gitlab/complete") {
		return refuse(signin.MattermostScopeOpenID, "the application %s is not allowed the scope openid; clear Mattermost's GitLab Scope setting", app.Name).
			withFix("Clear Mattermost's GitLab Scope (System Console > Authentication > GitLab, MM_GITLABSETTINGS_SCOPE, gitlab.rb gitlab_scope): with openid in it Mattermost also switches to its OpenID provider.")
	}
	if len(missing) > 0 {
		// The answer goes to the client's own redirect URI, but anyone who knows it and the
		// client_id can read it: the scopes the application has are for the trace.
		e := refuse(signin.ScopeNotAllowed, "the application %s is not allowed the scope %s; leave Mattermost's GitLab Scope empty or set it to read_user",
			app.Name, strings.Join(missing, " ")).
			withFix(fmt.Sprintf("Ask only for %s, or give the application the scope with `ssobridge apps update %s --scopes ...`.", strings.Join(app.Scopes, " "), app.ID))
		e.TraceDetail = "(it has " + strings.Join(app.Scopes, " ") + ")"
		return e
	}
	if msg := checkChallenge(req, app); msg != "" {
		return refuse(signin.PKCEChallengeInvalid, "%s", msg)
	}
	prompt, msg := ParsePrompt(req.Prompt)
	if msg != "" {
		return refuse(signin.PromptInvalid, "%s", msg)
	}
	maxAge, msg := ParseMaxAge(req.MaxAge)
	if msg != "" {
		return refuse(signin.MaxAgeInvalid, "%s", msg)
	}

	prov, err := s.pickUpstream(app)
	if err != nil {
		return err
	}
	if prov == nil && slices.Contains(prompt, PromptNone) {
		// The bridge keeps no sign-in of its own: without a provider to ask, it would have to show
		// its chooser, which prompt=none forbids (OpenID Connect Core §3.1.2.1).
		return refuse(signin.PromptNoneNeedsChooser, "the person must choose where to sign in to %s, which prompt=none does not allow", app.Name)
	}
	if c.Request().Header.Get(HeaderProbe) == ProbeDryRun {
		// A check of the request, not a sign-in (ssobridge doctor): answered as one would be, but
		// nothing is parked, counted or traced, so that it leaves no sign-in to stall. Its state
		// names no trace, which tells its return from the provider apart from a sign-in's. Where
		// the person would choose, the first provider stands for all.
		dropTrace(c)
		prov = cmp.Or(prov, s.upstreams[0])
		target, err := prov.AuthCodeURL(ctx, s.newUpstreamState("", time.Now()), upstream.Auth{Verifier: oauth2.GenerateVerifier(), Nonce: randomToken()})
		if err != nil {
			return upstreamPage(err)
		}
		return c.Redirect(http.StatusFound, target)
	}
	pending := &store.Authorization{
		ClientID:            app.ID,
		RedirectURI:         req.RedirectURI,
		State:               req.State,
		Scope:               strings.Join(granted, " "),
		CodeChallenge:       req.CodeChallenge,
		CodeChallengeMethod: req.CodeChallengeMethod,
		Nonce:               req.Nonce,
		Prompt:              strings.Join(prompt, " "),
		MaxAge:              maxAge,
		CreatedAt:           time.Now().UTC(),
		TraceID:             currentTrace(c),
		Browser:             store.TokenKey(s.browserCookie(c)),
	}
	s.metrics.loginsStarted.WithLabelValues(app.ID).Inc()
	s.logger(ctx).Info("sign-in started", "client_id", app.ID, "app", app.Name)
	if prov == nil {
		s.stepOK(c, http.StatusOK, map[string]string{"redirect_uri": req.RedirectURI, "scope": pending.Scope, "state_sha256": hashPrefix(req.State)})
		return s.askChooser(c, app, pending)
	}
	auth, err := s.promptFor(ctx, prov, pending)
	if err != nil {
		return err
	}
	s.stepOK(c, http.StatusFound, map[string]string{"redirect_uri": req.RedirectURI, "scope": pending.Scope, "state_sha256": hashPrefix(req.State)})
	return s.sendUpstream(c, prov, pending, auth)
}

// HeaderProbe with the value ProbeDryRun makes an authorize request a dry run: checked as any,
// and answered with the same redirect to GitLab when it passes, but nothing of a sign-in is kept,
// so it can never be completed. `ssobridge doctor` probes a deployment's registration with it.
const (
	HeaderProbe = "X-Ssobridge-Probe"
	ProbeDryRun = "dry-run"
)

// BrowserCookie names the cookie that ties a sign-in to the browser that started it: the
// callback must come back with it (see store.Authorization.Browser). One value serves every
// sign-in of a browser, so that two started in two tabs both complete. Behind https it is
// SecureBrowserCookie: the __Host- prefix makes browsers refuse it from any other origin, so that
// a site on a sibling domain cannot plant a value it knows (and sign the person in as itself).
const (
	BrowserCookie       = "ssobridge_browser"
	SecureBrowserCookie = "__Host-" + BrowserCookie
)

// browserCookieName is the browser cookie's name at this bridge.
func (s *Server) browserCookieName() string {
	if s.public.Scheme == "https" {
		return SecureBrowserCookie
	}
	return BrowserCookie
}

// browserCookie returns the browser's cookie value, giving it one (renewed for the
// authorization's lifetime) when it has none or an odd one.
func (s *Server) browserCookie(c echo.Context) string {
	value := ""
	if ck, err := c.Cookie(s.browserCookieName()); err == nil && len(ck.Value) == 43 {
		value = ck.Value
	} else {
		value = randomToken()
	}
	// Path / (as __Host- requires) covers /oauth/authorize too, where a second sign-in must
	// find it and keep it.
	c.SetCookie(&http.Cookie{Name: s.browserCookieName(), Value: value, Path: "/", HttpOnly: true,
		Secure: s.public.Scheme == "https", SameSite: http.SameSiteLaxMode, MaxAge: int(s.cfg.AuthorizationTTL.Seconds())})
	return value
}

// checkChallenge validates PKCE parameters (RFC 7636 §4.2). S256 is the method; plain only for
// an application configured to allow it. A public client must use PKCE, since it has no secret
// to prove itself with, and so must an application configured to require it.
func checkChallenge(req *AuthorizeRequest, app *store.Application) string {
	if req.CodeChallenge == "" {
		switch {
		case req.CodeChallengeMethod != "":
			return "code_challenge_method is given without code_challenge"
		case !app.Confidential:
			return fmt.Sprintf("the application %s is public (not confidential) and must use PKCE: send code_challenge with code_challenge_method=S256", app.Name)
		case app.RequirePKCE:
			return fmt.Sprintf("the application %s requires PKCE: send code_challenge with code_challenge_method=S256", app.Name)
		}
		return ""
	}
	switch req.CodeChallengeMethod {
	case "S256":
	case "plain", "":
		// RFC 7636 makes plain the default method; refusing it unless allowed stops a downgrade.
		if !app.AllowPlainPKCE {
			return fmt.Sprintf("code_challenge_method %q is not allowed for %s; use S256", cmp.Or(req.CodeChallengeMethod, "plain (the default)"), app.Name)
		}
		req.CodeChallengeMethod = "plain"
	default:
		return fmt.Sprintf("code_challenge_method %q is not supported; use S256", truncate(req.CodeChallengeMethod, 20))
	}
	if !pkceValue(req.CodeChallenge) {
		return "code_challenge must be 43 to 128 characters of A-Z, a-z, 0-9 and -._~ (RFC 7636)"
	}
	return ""
}

// pkceValue reports whether v has the form RFC 7636 gives a code_verifier (§4.1), and so a
// plain code_challenge, and which a S256 one has too: 43 to 128 characters of A-Z, a-z, 0-9 and
// -._~.
func pkceValue(v string) bool {
	return len(v) >= 43 && len(v) <= maxChallenge &&
		strings.Trim(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~") == ""
}

// truncate cuts s to at most n bytes, marking the cut with an ellipsis.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	// Cut before the character byte n is part of, not inside it: the rest would be invalid UTF-8.
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// redirectFix says how to fix an unregistered redirect URI, in Mattermost's terms for an
// application registered for Mattermost.
func redirectFix(app *store.Application) string {
	for _, u := range app.RedirectURIs {
		if strings.HasSuffix(u, "/gitlab/complete") {
			return "Administrators: the redirect URI is Mattermost's Site URL followed by /signup/gitlab/complete. Check Mattermost's Site URL (scheme, host and port), or add that site's URIs, keeping the others, with `ssobridge apps update " + app.ID + " --add-mattermost-url SITE_URL`."
		}
	}
	return "Administrators: register the client's redirect URI exactly as it sends it, keeping the others, with `ssobridge apps update " + app.ID + " --add-redirect-uri URI`, or correct the client's configuration."
}
