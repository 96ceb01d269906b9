package oauth

import (
	"cmp"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ssobridge/ssobridge/gitlabapi"
	"github.com/ssobridge/ssobridge/oauth/signin"
	"github.com/ssobridge/ssobridge/oauth/store"
	"github.com/ssobridge/ssobridge/oauth/upstream"
)

// callbackLabel is the callback's arrow in a trace.
const callbackLabel = "302 to /oauth/callback?code&state"

// callback is where GitLab sends the browser back. It takes the parked request by the bridge's
// own state (once: a replayed or forged state finds nothing), trades GitLab's code for a token,
// reads who signed in, and issues the bridge's own code to the client with the client's state
// exactly as it came.
func (s *Server) callback(c echo.Context) error {
	ctx := c.Request().Context()
	s.beginStep(c, requestTrace(c), signin.StepCallback, store.PartGitLab, store.PartBridge, callbackLabel)
	q, err := strictQuery(c)
	if err != nil {
		return &Error{
			Failure:     signin.MalformedQuery,
			Title:       "Invalid return from GitLab",
			Description: "The address's query is not well formed (" + err.Error() + "), so its state and code cannot be read as sent.",
			Fix:         "Start the sign-in again from Mattermost; if it keeps happening, a proxy between GitLab and the bridge rewrites the address.",
		}
	}
	for _, k := range []string{"state", "code", "error"} {
		if len(q[k]) > 1 {
			return &Error{
				Failure:     signin.DuplicateParameter,
				Title:       "Invalid return from GitLab",
				Description: fmt.Sprintf("The parameter %s is given %d times.", k, len(q[k])),
				Fix:         "Start the sign-in again from Mattermost.",
			}
		}
	}
	state := q.Get("state")
	if state == "" || len(state) > maxState {
		return &Error{
			Failure:     signin.StateMissing,
			Title:       "Invalid return from GitLab",
			Description: "The request has no valid state, so the bridge cannot tell which sign-in it belongs to.",
			Fix:         "Start the sign-in again from Mattermost. Do not bookmark or reload this page.",
		}
	}
	key := store.TokenKey(state)
	pending, err := s.store.TakeAuthorization(ctx, key, store.NewAttempt())
	if errors.Is(err, store.ErrEvicted) {
		if traceID, _, ok := s.readUpstreamState(state); ok && traceID != "" {
			s.useTrace(c, traceID)
		}
		return superseded()
	}
	if taken, ok := errors.AsType[*store.TakenError](err); ok {
		return s.replayedState(c, key, state, taken)
	}
	if errors.Is(err, store.ErrNotFound) {
		return s.lostState(c, state)
	}
	if err != nil {
		// Whether or not the take ran, it is this request's own: the state is not reported as
		// used by someone else, and the page says the bridge could not serve. The state names
		// its sign-in, whose trace gets the failure.
		if traceID, _, ok := s.readUpstreamState(state); ok && traceID != "" {
			s.useTrace(c, traceID)
		}
		return storeFailure("take authorization", err)
	}
	s.useTrace(c, pending.TraceID)
	traceMeta(c, store.TraceMeta{ClientID: pending.ClientID})
	prov, ok := s.upstreamNamed(pending.Upstream)
	if !ok {
		return upstreamGone(pending.Upstream)
	}
	traceMeta(c, store.TraceMeta{Upstream: prov.Describe().DisplayName})
	if !s.fromSameBrowser(c, pending.Browser) {
		// The parked request is spent: a link made by someone else works once at most, here.
		return &Error{
			Failure:     signin.StateNotFromThisBrowser,
			Title:       "Sign-in started in another browser",
			Description: "This return from GitLab belongs to a sign-in that was not started in this browser (the bridge's cookie is missing or different), so the bridge does not complete it: someone may have sent you a link to sign you in as them.",
			Fix:         "Go back to the application and sign in again from this browser. If this happens every time, let the browser keep cookies from " + s.public.Host + " (the bridge sets one when a sign-in starts).",
		}
	}

	if upErr := q.Get("error"); upErr != "" {
		if upErr == signin.AccessDenied {
			// The person pressed Deny at GitLab: the client learns it as GitLab would tell it.
			return &Error{
				Failure:     signin.DeniedAtGitLab,
				Description: "The resource owner denied the request at " + prov.Describe().DisplayName + ".",
				RedirectURI: pending.RedirectURI,
				State:       pending.State,
			}
		}
		desc := truncate(q.Get("error_description"), 300)
		if f := signin.UpstreamInteraction(upErr); f != nil && asksInteraction(pending) {
			// The provider was asked for what the client asked (prompt=none, max_age): it cannot
			// sign the person in without them. The person did not fail; the client hears it in
			// OpenID Connect's words (Core §3.1.2.6) and may ask again with interaction.
			return &Error{Failure: f, RedirectURI: pending.RedirectURI, State: pending.State,
				Description: fmt.Sprintf("%s answered %s to the sign-in the client asked for with %s", prov.Describe().DisplayName, upErr, interactionAsked(pending)),
				TraceDetail: "The provider's description: " + desc}
		}
		// The code came through the browser and could be anything: it names a failure only when
		// RFC 6749 defines it, and then the failure says what to change.
		f := signin.UpstreamAuthorize(upErr)
		name := prov.Describe().DisplayName
		return &Error{Failure: f, Title: name + " refused the sign-in",
			Description: fmt.Sprintf("%s answered the bridge's authorization request with %q: %s", name, truncate(upErr, 60), desc),
			Fix:         "Go back to Mattermost and sign in again. Administrators: " + upstreamAuthorizeFix(upErr, prov.Describe())}
	}
	code := q.Get("code")
	if code == "" {
		return &Error{
			Failure:     signin.UpstreamCodeMissing,
			Title:       "Invalid return from " + prov.Describe().DisplayName,
			Description: prov.Describe().DisplayName + " sent the browser back without a code or an error.",
			Fix:         "Go back to Mattermost and sign in again.",
		}
	}

	auth, err := s.openUpstreamAuth(pending, key)
	if err != nil {
		return &Error{Failure: signin.StateUnknown, Title: "Invalid return from " + prov.Describe().DisplayName, Cause: err,
			Description: "The bridge cannot read what it kept of this sign-in: it was kept with another SSOBRIDGE_ENCRYPTION_KEY.",
			Fix:         "Go back to Mattermost and sign in again. Administrators: every instance of the bridge needs the same SSOBRIDGE_ENCRYPTION_KEY (and the old one in SSOBRIDGE_ENCRYPTION_KEYS_PREVIOUS after a change)."}
	}
	s.stepOK(c, http.StatusOK, nil)
	d := prov.Describe()
	start := time.Now()
	tok, err := prov.Exchange(ctx, code, auth)
	s.upstreamStep(c, signin.StepUpstreamToken, "POST token endpoint (code, PKCE verifier)", start, err)
	if err != nil {
		return upstreamPage(err)
	}
	start = time.Now()
	id, err := prov.Identify(ctx, tok, auth)
	ie, refused := errors.AsType[*upstream.IdentityError](err)
	upstreamErr := err
	if refused {
		upstreamErr = nil // the provider answered; what it answered is the bridge's step to refuse
	}
	s.upstreamStep(c, signin.StepUpstreamUser, d.UserCall, start, upstreamErr)
	if upstreamErr != nil {
		return upstreamPage(err)
	}
	if id != nil {
		traceMeta(c, store.TraceMeta{Username: id.Username})
		if id.GroupsProblem != "" {
			s.logger(ctx).Warn("reading the person's groups at the provider failed; the groups claim will be empty and --allow-group rules cannot admit them",
				"provider", d.Name, "cause", id.GroupsProblem)
		}
	}
	s.beginStep(c, currentTrace(c), signin.StepRedirectToClient, store.PartBridge, store.PartClient, "302 to redirect_uri?code&state")
	if refused {
		return identityFailure(d, ie)
	}
	if id.State != "" && id.State != gitlabapi.StateActive {
		return &Error{
			Failure:     signin.UserNotActive,
			Title:       d.DisplayName + " account not active",
			Description: fmt.Sprintf("Your %s account %s is %s, so it cannot sign in.", d.DisplayName, id.Username, id.State),
			Fix:         "Ask a " + d.DisplayName + " administrator to activate your account.",
		}
	}
	now := time.Now().UTC()
	authAt, err := authTime(pending, id, d, now)
	if err != nil {
		return err
	}
	uid, body, err := s.identify(c, prov, id)
	if err != nil {
		return err
	}
	traceMeta(c, store.TraceMeta{GitLabUserID: uid})

	session := &store.Session{
		ID:            store.NewID(16),
		GitLabUserID:  uid,
		Provider:      d.Name,
		Subject:       id.Subject,
		Username:      id.Username,
		ClientID:      pending.ClientID,
		Scope:         pending.Scope,
		Nonce:         pending.Nonce,
		AuthTime:      authAt,
		User:          body,
		UserFetchedAt: now,
		CreatedAt:     now,
		TraceID:       currentTrace(c),
		Groups:        id.Groups,
	}
	s.sealToken(session, tok)
	app, err := s.store.GetApp(ctx, pending.ClientID)
	if err != nil {
		return s.appGone(err)
	}
	if err := s.admit(app, session, body); err != nil {
		return err
	}
	s.logger(ctx).Info("sign-in completed at the provider", "provider", d.Name, "client_id", pending.ClientID, "gitlab_user_id", uid, "username", id.Username)
	ask, err := s.needsConsent(c, app, pending, session)
	if err != nil {
		return err
	}
	if ask && hasPrompt(pending, PromptNone) {
		// Nothing was saved: the session waits only behind a consent page, which is not shown.
		return fail(signin.ConsentNeeded, "%s has not been allowed to use %s for %s, and prompt=none does not allow the bridge to ask", app.Name, session.Scope, id.Username).
			toClient(pending.RedirectURI, pending.State)
	}
	// The session is the family of every token of this sign-in, and lives as long as they may.
	// It is saved with the code, in one exchange with the store; while the person is asked for
	// consent it waits as long as the consent page does, so that an abandoned page leaves no
	// session (holding the sealed GitLab token) behind for long.
	if ask {
		if err := s.store.PutSession(ctx, session, s.cfg.AuthorizationTTL); err != nil {
			return storeFailure("save session", err)
		}
		return s.askConsent(c, app, pending, session, state)
	}
	return s.issueCode(c, app, pending, session)
}

// strictQuery parses the request's query, refusing one with a malformed escape, which Echo's
// QueryParams would silently drop (a state with %zz in it would vanish, not be refused).
func strictQuery(c echo.Context) (url.Values, error) {
	return parseQueryStrictly(c.Request().URL.RawQuery)
}

// parseQueryStrictly parses a raw query, and says what is wrong with one that does not parse:
// url.Values from URL.Query() silently leaves out every pair it cannot parse.
func parseQueryStrictly(raw string) (url.Values, error) {
	q, err := url.ParseQuery(raw)
	if err != nil {
		var esc url.EscapeError
		if errors.As(err, &esc) {
			return nil, fmt.Errorf("%q is not a valid escape", string(esc))
		}
		if strings.Contains(raw, ";") {
			return nil, errors.New("';' does not separate parameters; use '&', and percent-encode a ';' in a value as %3B")
		}
		return nil, errors.New("it cannot be parsed")
	}
	return q, nil
}

// fromSameBrowser reports whether the request carries the cookie whose TokenKey is want (see
// store.Authorization.Browser); a request parked without one passes.
func (s *Server) fromSameBrowser(c echo.Context, want string) bool {
	if want == "" {
		return true
	}
	ck, err := c.Cookie(s.browserCookieName())
	if err != nil {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(store.TokenKey(ck.Value)), []byte(want)) == 1
}

// replayedState explains a return from the provider whose parked request (under key) another
// request took: this very return made a first time (a reload, the back button, a link sent
// again). When that return led to a consent page, the consent page is what was reloaded, and
// consentAgain answers. Otherwise the sign-in's own trace keeps its outcome, and this one, a trace
// of its own, records the replay and names it. The page names the application and the provider
// the first return was for.
func (s *Server) replayedState(c echo.Context, key, state string, taken *store.TakenError) error {
	ctx := c.Request().Context()
	client, provider := "the application", "the provider"
	if first, _, err := s.store.PeekAuthorization(ctx, key); err == nil {
		client = s.clientName(ctx, first.ClientID)
		if p, ok := s.upstreamNamed(first.Upstream); ok {
			provider = p.Describe().DisplayName
		}
		if ok, err := s.consentAgain(c, state, client); ok {
			return err
		}
	}
	return &Error{Failure: signin.StateReplayed, Title: "Sign-in already used", Description: fmt.Sprintf("This return from %s was already used at %s by the sign-in %s (see its trace): a reload (of an error page too), the back button or a link sent again made it twice.",
		provider, taken.At.UTC().Format("15:04:05 UTC"), taken.TraceID), Fix: "Go back to " + client + ". If the first use did not sign you in (its trace says why), sign in again: that is safe."}
}

// lostState explains a return from GitLab whose parked request the store does not hold. The
// state itself says which sign-in it belongs to and when that started (see newUpstreamState): too
// late, it is that sign-in's failure; in time, the store lost it, as a request taken before is
// kept, taken, until it expires.
func (s *Server) lostState(c echo.Context, state string) error {
	traceID, started, ok := s.readUpstreamState(state)
	if !ok {
		return &Error{
			Failure:     signin.StateUnknown,
			Title:       "Sign-in unknown",
			Description: "This return from GitLab names no sign-in of this bridge: its state was altered, or made by a bridge with other keys (SSOBRIDGE_ENCRYPTION_KEY).",
			Fix:         "Go back to Mattermost and sign in again. If it happens every time, every instance of the bridge needs the same SSOBRIDGE_ENCRYPTION_KEY.",
		}
	}
	if traceID == "" {
		return &Error{
			Failure:     signin.StateUnknown,
			Title:       "Sign-in unknown",
			Description: "This return from GitLab belongs to a check of the bridge's configuration (a dry run of `ssobridge doctor`), which never starts a sign-in.",
			Fix:         "Go back to Mattermost and sign in from there.",
		}
	}
	s.useTrace(c, traceID)
	if age := time.Since(started); age >= s.cfg.AuthorizationTTL {
		return &Error{
			Failure:     signin.StateExpired,
			Title:       "Sign-in expired",
			Description: fmt.Sprintf("This sign-in started %s ago, and the bridge waits %s for the return from GitLab.", age.Round(time.Second), s.cfg.AuthorizationTTL),
			Fix:         "Go back to Mattermost and sign in again, without pausing at GitLab's sign-in.",
		}
	}
	return &Error{Failure: signin.StateLost, Title: "Sign-in lost by the bridge", Description: fmt.Sprintf("This sign-in started %s ago and had %s left, but the bridge's store no longer holds it.",
		time.Since(started).Round(time.Second), (s.cfg.AuthorizationTTL - time.Since(started)).Round(time.Second)), Fix: "Go back to Mattermost and sign in again. Administrators: the store lost data it had acknowledged: Redis restarted without persistence, was emptied, or failed over to a replica that had not received the write (see deploy/REDIS.md)."}
}

// upstreamAuthorizeFix says what to change for an error code a provider sent back from its
// authorization endpoint, in the terms of that provider's settings.
func upstreamAuthorizeFix(code string, d upstream.Description) string {
	if d.Type == "gitlab" && d.Settings == upstream.GitLabSettings {
		return signin.UpstreamAuthorize(code).Fix() // the catalogue's words are GitLab's own
	}
	p, set := d.DisplayName, d.Settings
	switch code {
	case signin.InvalidRequest:
		return fmt.Sprintf("the bridge's callback URL (SSOBRIDGE_PUBLIC_URL + %s) must be registered at %s exactly, for the client of %s.", CallbackPath, p, set.ClientID)
	case signin.InvalidClient, signin.UnauthorizedClient:
		return fmt.Sprintf("check %s against the bridge's client at %s (%s).", set.ClientID, p, set.Console)
	case signin.UnsupportedResponseType:
		return fmt.Sprintf("%s refuses the authorization code flow for the bridge's client: allow it there (%s).", p, set.Console)
	case signin.InvalidScope:
		return fmt.Sprintf("give the bridge's client at %s the scopes of %s, or change %s.", p, set.Scopes, set.Scopes)
	case signin.ServerError:
		return fmt.Sprintf("%s failed: check its logs for this request.", p)
	case signin.TemporarilyUnavailable:
		return fmt.Sprintf("%s is overloaded or in maintenance: sign in again later.", p)
	}
	return fmt.Sprintf("check %s's log for this request.", p)
}

// upstreamPage explains a failed upstream call to the person and the administrator.
func upstreamPage(err error) error {
	var ue *upstream.Error
	if !errors.As(err, &ue) {
		return err
	}
	status := http.StatusBadGateway
	name := cmp.Or(ue.Provider, "GitLab")
	title := name + " could not complete the sign-in"
	if ue.Kind == upstream.KindTimeout {
		status = http.StatusGatewayTimeout
		title = name + " did not answer in time"
	}
	if ue.Call == upstream.CallUser && ue.Status == http.StatusForbidden {
		status = http.StatusForbidden
		title = name + " refused your account"
	}
	return &Error{Failure: upstreamFailure(ue), Title: title, Status: status, Description: ue.Error(), Fix: ue.Fix(), Cause: err}
}
