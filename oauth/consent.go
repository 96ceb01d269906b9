package oauth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/ssobridge/ssobridge/oauth/signin"
	"github.com/ssobridge/ssobridge/oauth/store"
)

const consentPath = "/oauth/consent"

// needsConsent reports whether the person must be asked: an application that is not trusted,
// unless the person already allowed this confidential application these scopes; and any
// application whose client asked for prompt=consent. OpenID Connect Core §3.1.2.1 says the
// provider SHOULD then ask, and GitLab (doorkeeper-openid_connect) shows its authorize page for
// it even to a trusted application: so does the bridge, since a client that asks wants the
// person's answer, not the administrator's.
func (s *Server) needsConsent(c echo.Context, app *store.Application, pending *store.Authorization, sess *store.Session) (bool, error) {
	if hasPrompt(pending, PromptConsent) {
		return true, nil
	}
	if app.Trusted {
		return false, nil
	}
	if !app.Confidential {
		// A public client's identity is not proven, so an earlier consent cannot be reused.
		return true, nil
	}
	allowed, err := s.store.GetConsent(c.Request().Context(), app.ID, sess.GitLabUserID)
	if errors.Is(err, store.ErrNotFound) {
		return true, nil
	}
	if err != nil {
		return false, storeFailure("get consent", err)
	}
	for _, sc := range ParseScope(sess.Scope) {
		if !slices.Contains(allowed, sc) {
			return true, nil
		}
	}
	return false, nil
}

// consentKeyContext keeps a consent key from serving as any other tag of the same key.
const consentKeyContext = "consent key:"

// consentKey is the key under which the sign-in whose return from the provider came with state
// waits at its consent page. It is derived from the state with the bridge's key, so that a reload
// of the page (whose address is that return's) finds the sign-in again, and it is unknown to
// whoever has only the state, which travels in addresses and logs.
func (s *Server) consentKey(state string) string {
	return s.cfg.Sealer.Tag(consentKeyContext + state)
}

// askConsent parks the request and shows the consent page.
func (s *Server) askConsent(c echo.Context, app *store.Application, pending *store.Authorization, sess *store.Session, state string) error {
	// The form carries the key of the parked request; the answer must also come with the
	// browser's cookie (see BrowserCookie), which a page on another site can make the browser
	// post without (SameSite=Lax) and cannot know. One cookie serves every sign-in of a browser,
	// so that consent pages open in two tabs can both be answered.
	key := s.consentKey(state)
	pending.SessionID = sess.ID
	// Not counted against the caps on sign-ins in progress, which bound the sign-ins anyone can
	// start: this one came back from the provider with a person signed in there.
	if _, err := s.store.PutAuthorization(c.Request().Context(), store.TokenKey(key), pending, s.cfg.AuthorizationTTL, store.PendingCaps{}); err != nil {
		return storeFailure("save authorization", err)
	}
	return s.showConsent(c, app, pending, sess, key, "consent page: allow "+app.Name+"?")
}

// showConsent shows the consent page of the request parked under key.
func (s *Server) showConsent(c echo.Context, app *store.Application, pending *store.Authorization, sess *store.Session, key, label string) error {
	var scopes []string
	for _, sc := range ParseScope(sess.Scope) {
		scopes = append(scopes, knownScopes[sc])
	}
	var buf bytes.Buffer
	provider := "GitLab"
	if p, ok := s.upstreamNamed(sess.Provider); ok {
		provider = p.Describe().DisplayName
	}
	if err := consentTemplate.Execute(&buf, consentData{App: app.Name, User: sess.Username, Scopes: scopes, Provider: provider,
		Action: consentPath, Key: key, Redirect: originOf(pending.RedirectURI)}); err != nil {
		return err
	}
	s.beginStep(c, currentTrace(c), signin.StepConsent, store.PartBridge, store.PartUser, label)
	s.stepOK(c, http.StatusOK, map[string]string{"scope": sess.Scope})
	h := c.Response().Header()
	noStore(h)
	// The form's answer redirects to the client, which form-action must allow.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; form-action 'self' "+originOf(pending.RedirectURI))
	return c.HTMLBlob(http.StatusOK, buf.Bytes())
}

// consent takes the person's answer.
func (s *Server) consent(c echo.Context) error {
	ctx := c.Request().Context()
	s.beginStep(c, requestTrace(c), signin.StepConsentAnswer, store.PartUser, store.PartBridge, "POST /oauth/consent")
	req := c.Request()
	req.Body = http.MaxBytesReader(c.Response(), req.Body, maxFormBody)
	if err := req.ParseForm(); err != nil {
		return &Error{
			Failure:     signin.ConsentAnswerInvalid,
			Title:       "Invalid consent answer",
			Description: "The form could not be read.",
			Fix:         "Go back to the application and sign in again.",
		}
	}
	for _, k := range []string{"consent", "decision"} {
		if n := len(req.PostForm[k]); n > 1 {
			// decision=allow&decision=deny must not be read as either.
			return &Error{
				Failure:     signin.DuplicateParameter,
				Title:       "Invalid consent answer",
				Description: fmt.Sprintf("The parameter %s is given %d times.", k, n),
				Fix:         "Go back to the application and sign in again, and answer on the bridge's own page.",
			}
		}
	}
	key, decision := req.PostForm.Get("consent"), req.PostForm.Get("decision")
	if key == "" || (decision != "allow" && decision != "deny") {
		return &Error{
			Failure:     signin.ConsentAnswerInvalid,
			Title:       "Invalid consent answer",
			Description: "The answer does not say which request it is for, or whether you allow it.",
			Fix:         "Go back to the application and sign in again.",
		}
	}
	pending, err := s.store.TakeAuthorization(ctx, store.TokenKey(key), store.NewAttempt())
	if taken, ok := errors.AsType[*store.TakenError](err); ok {
		s.useTrace(c, taken.TraceID)
		client := "the application"
		if first, _, err := s.store.PeekAuthorization(ctx, store.TokenKey(key)); err == nil {
			client = s.clientName(ctx, first.ClientID)
		}
		return &Error{
			Failure:     signin.ConsentReplayed,
			Title:       "Consent already answered",
			Description: fmt.Sprintf("This consent page for %s was answered already, at %s: the form was sent twice (a double click, a reload of this page or of an error page, the back button).", client, taken.At.UTC().Format("15:04:05 UTC")),
			Fix:         "Go back to " + client + ". If the first answer did not sign you in (its trace says why), sign in again: that is safe.",
		}
	}
	if errors.Is(err, store.ErrNotFound) {
		return &Error{
			Failure:     signin.ConsentUnknown,
			Title:       "Consent expired or already answered",
			Description: fmt.Sprintf("This request was answered already, or waited longer than %s.", s.cfg.AuthorizationTTL),
			Fix:         "Go back to the application and sign in again.",
		}
	}
	if err != nil {
		return storeFailure("take authorization", err)
	}
	s.useTrace(c, pending.TraceID)
	traceMeta(c, store.TraceMeta{ClientID: pending.ClientID})
	if pending.Browser == "" || !s.fromSameBrowser(c, pending.Browser) {
		// The request is spent: whoever made this browser post it gains nothing by retrying.
		s.revokeSession(ctx, pending.SessionID, "a consent answer from another page")
		return &Error{
			Failure:     signin.ConsentNotFromThisBrowser,
			Title:       "Consent not accepted",
			Description: "This answer did not come from the page the bridge showed in this browser (cookies off, or a page on another site submitted it).",
			Fix:         "Go back to the application and sign in again, and answer on the bridge's own page.",
		}
	}
	sess, err := s.store.GetSession(ctx, pending.SessionID)
	if errors.Is(err, store.ErrNotFound) {
		return &Error{
			Failure:     signin.SessionRevoked,
			Title:       "Sign-in expired",
			Description: "The sign-in this answer belongs to has ended.",
			Fix:         "Go back to the application and sign in again.",
			Status:      http.StatusBadRequest,
		}
	}
	if err != nil {
		return storeFailure("get session", err)
	}
	if decision == "deny" {
		s.revokeSession(ctx, sess.ID, "consent denied")
		s.logger(ctx).Info("consent denied", "client_id", pending.ClientID, "gitlab_user_id", sess.GitLabUserID)
		return &Error{
			Failure:     signin.ConsentDenied,
			Description: "The resource owner denied the request.",
			RedirectURI: pending.RedirectURI,
			State:       pending.State,
		}
	}
	app, err := s.store.GetApp(ctx, pending.ClientID)
	if err != nil {
		return s.appGone(err)
	}
	if app.Confidential {
		if err := s.store.PutConsent(ctx, app.ID, sess.GitLabUserID, ParseScope(sess.Scope)); err != nil {
			return storeFailure("save consent", err)
		}
	}
	s.logger(ctx).Info("consent given", "client_id", app.ID, "gitlab_user_id", sess.GitLabUserID)
	s.stepOK(c, http.StatusFound, map[string]string{"decision": decision})
	// The session waited under the consent page's lifetime; it is saved for good with the code.
	return s.issueCode(c, app, pending, sess)
}

// consentAgain answers a return from the provider used a second time when it had led to a consent
// page, which is that return's address: a reload of the page while the sign-in waits there shows
// it again, with the same form; once it was answered, the page says so. ok is false when the
// return led to no consent page this browser was shown, and err is then nil.
func (s *Server) consentAgain(c echo.Context, state, client string) (ok bool, err error) {
	ctx := c.Request().Context()
	key := s.consentKey(state)
	pending, answeredAt, err := s.store.PeekAuthorization(ctx, store.TokenKey(key))
	if err != nil || pending.Browser == "" || !s.fromSameBrowser(c, pending.Browser) {
		return false, nil
	}
	if !answeredAt.IsZero() {
		s.useTrace(c, pending.TraceID)
		return true, &Error{
			Failure:     signin.StateReplayed,
			Title:       "Consent already answered",
			Description: fmt.Sprintf("This page is a reload of the consent page for %s, which was answered at %s.", client, answeredAt.UTC().Format("15:04:05 UTC")),
			Fix:         "Go back to " + client + ". If your answer did not sign you in (its trace says why), sign in again: that is safe.",
		}
	}
	app, err := s.store.GetApp(ctx, pending.ClientID)
	if err != nil {
		s.useTrace(c, pending.TraceID)
		return true, s.appGone(err)
	}
	sess, err := s.store.GetSession(ctx, pending.SessionID)
	if errors.Is(err, store.ErrNotFound) {
		// Not this sign-in's page any more: the replay is traced on its own, as any other.
		return false, nil
	}
	s.useTrace(c, pending.TraceID)
	if err != nil {
		return true, storeFailure("get session", err)
	}
	return true, s.showConsent(c, app, pending, sess, key, "consent page shown again (a reload): allow "+app.Name+"?")
}

// clientName is the name of the application clientID, as pages name it to people.
func (s *Server) clientName(ctx context.Context, clientID string) string {
	if app, err := s.store.GetApp(ctx, clientID); err == nil && strings.TrimSpace(app.Name) != "" {
		return app.Name
	}
	return "the application"
}

// issueCode gives the client its code for a completed sign-in, saving the session with it.
func (s *Server) issueCode(c echo.Context, app *store.Application, pending *store.Authorization, sess *store.Session) error {
	ctx := c.Request().Context()
	value, code, err := s.mint.issueCode(ctx, app, pending, sess.ID)
	s.beginStep(c, currentTrace(c), signin.StepRedirectToClient, store.PartBridge, store.PartClient, "302 to redirect_uri?code&state")
	if err != nil {
		if isClientError(err) {
			return s.appGone(store.ErrNotFound)
		}
		return err
	}
	// The session is the family of every token of this sign-in, and lives as long as they may.
	err = s.store.IssueCode(ctx, sess, s.mint.signInTTL(app), store.RefOf(value).Key, code)
	if errors.Is(err, store.ErrRevoked) {
		return &Error{
			Failure:     signin.SessionRevoked,
			Title:       "Sign-in revoked",
			Description: "The sign-in was revoked while it was under way (an administrator revoked the application's grants).",
			Fix:         "Go back to the application and sign in again.",
			Status:      http.StatusBadRequest,
		}
	}
	if err != nil {
		return storeFailure("issue code", err)
	}
	s.stepOK(c, http.StatusFound, map[string]string{"redirect_uri": pending.RedirectURI, "code_sha256": hashPrefix(value)})
	return c.Redirect(http.StatusFound, s.clientRedirect(pending.RedirectURI, url.Values{
		"code": {value}, "state": {pending.State},
	}))
}

// appGone is the page for an application deleted, or its redirect URI removed, while the person
// was signing in.
func (s *Server) appGone(err error) error {
	if !errors.Is(err, store.ErrNotFound) {
		return storeFailure("get application", err)
	}
	return &Error{
		Failure:     signin.ClientRemovedDuringSignIn,
		Title:       "Application changed during sign-in",
		Description: "The application, or its redirect URI, was removed while you were signing in.",
		Fix:         "Go back to the application and sign in again; administrators: check it with `ssobridge apps show`.",
	}
}

func originOf(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return ""
	}
	return u.Scheme + "://" + u.Host
}

type consentData struct {
	App, User, Action, Key, Redirect, Provider string
	Scopes                                     []string
}

var consentTemplate = template.Must(template.New("consent").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Allow {{.App}}? · GitLab sign-in bridge</title>
<style>
body{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem;color:#1f1e24}
h1{font-size:1.4rem} ul{padding-left:1.2rem} .who{color:#737278}
button{font:inherit;padding:.5rem 1.2rem;border-radius:4px;border:1px solid #89888d;background:#fff;margin-right:.5rem;cursor:pointer}
button.allow{background:#1f75cb;border-color:#1f75cb;color:#fff}
</style></head><body>
<p class="who">Signed in to {{.Provider}} as <strong>{{.User}}</strong></p>
<h1 id="title">Allow <strong>{{.App}}</strong> to use your {{.Provider}} account?</h1>
<p>{{.App}} asks to:</p>
<ul id="scopes">{{range .Scopes}}<li>{{.}}</li>{{end}}</ul>
<p>You will then go back to <code>{{.Redirect}}</code>.</p>
<form method="post" action="{{.Action}}">
<input type="hidden" name="consent" value="{{.Key}}">
<button class="allow" id="allow" type="submit" name="decision" value="allow">Allow</button>
<button id="deny" type="submit" name="decision" value="deny">Deny</button>
</form>
</body></html>
`))
