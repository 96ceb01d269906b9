package oauth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"golang.org/x/oauth2"

	"github.com/ssobridge/ssobridge/gitlabapi"
	"github.com/ssobridge/ssobridge/oauth/signin"
	"github.com/ssobridge/ssobridge/oauth/store"
	"github.com/ssobridge/ssobridge/oauth/upstream"
)

// DefaultFirstID is the first id the bridge gives a person of a provider without GitLab ids:
// far above the GitLab user ids a Mattermost already holds (GitLab.com's are below 100 million),
// and far below 2^53, so that a JavaScript client reads it exactly.
const DefaultFirstID = 1_000_000_000

// choosePath is where the chooser's answer goes.
const choosePath = "/oauth/choose"

// upstreamNamed returns the provider called name. A record made before providers had names
// ("") belongs to the GitLab of SSOBRIDGE_GITLAB_URL, which is called gitlab: never to another
// provider, which would be sent a GitLab token.
func (s *Server) upstreamNamed(name string) (upstream.CallbackProvider, bool) {
	if name == "" {
		name = "gitlab"
	}
	for _, p := range s.upstreams {
		if p.Describe().Name == name {
			return p, true
		}
	}
	return nil, false
}

// upstreamGone is the failure of a record that names a provider no longer configured.
func upstreamGone(name string) *Error {
	return &Error{Failure: signin.UpstreamUnknown, Title: "Sign-in provider removed",
		Description: fmt.Sprintf("This sign-in went through the provider %q, which the bridge no longer has.", name),
		Fix:         "Sign in again. Administrators: the provider was removed from the bridge's configuration while the person signed in."}
}

// sendUpstream parks pending under a new upstream state and sends the browser to p, asking it
// for the prompt and max_age of auth (see promptFor).
func (s *Server) sendUpstream(c echo.Context, p upstream.CallbackProvider, pending *store.Authorization, auth upstream.Auth) error {
	d := p.Describe()
	pending.Upstream = d.Name
	auth.Verifier, auth.Nonce = oauth2.GenerateVerifier(), randomToken()
	upstreamState := s.newUpstreamState(currentTrace(c), time.Now())
	key := store.TokenKey(upstreamState)
	s.sealUpstreamAuth(pending, key, auth)
	start := time.Now()
	target, err := p.AuthCodeURL(c.Request().Context(), upstreamState, auth)
	if err != nil {
		// Only an OpenID provider's discovery document can fail here: the diagram shows the call.
		s.upstreamStep(c, signin.StepUpstreamAuthorize, "GET "+d.URL+"/.well-known/openid-configuration", start, err)
		return upstreamPage(err)
	}
	if err := s.parkPending(c, key, pending); err != nil {
		return err
	}
	traceMeta(c, store.TraceMeta{Upstream: d.DisplayName})
	s.subStep(c, signin.StepUpstreamAuthorize, store.PartBridge, store.PartGitLab,
		fmt.Sprintf("302 to %s's authorization endpoint (the bridge's client_id, state, PKCE S256)", d.DisplayName),
		time.Now(), http.StatusFound, nil, map[string]string{"provider": d.Name, "url": d.URL})
	return c.Redirect(http.StatusFound, target)
}

// upstreamAuthContext binds the sealed upstream secrets of an authorization to the key it is
// parked under, so that they cannot be moved to another record.
const upstreamAuthContext = "upstream-auth:"

// sealUpstreamAuth keeps auth in pending, sealed, for the record parked under key.
func (s *Server) sealUpstreamAuth(pending *store.Authorization, key string, auth upstream.Auth) {
	plain, _ := store.Encode([2]string{auth.Verifier, auth.Nonce})
	pending.UpstreamSealed = s.cfg.Sealer.Seal(plain, upstreamAuthContext+key)
	pending.UpstreamVerifier, pending.UpstreamNonce = "", ""
}

// openUpstreamAuth returns the upstream secrets of pending, parked under key: sealed, or in
// clear in a record written before they were sealed.
func (s *Server) openUpstreamAuth(pending *store.Authorization, key string) (upstream.Auth, error) {
	if pending.UpstreamSealed == nil {
		return upstream.Auth{Verifier: pending.UpstreamVerifier, Nonce: pending.UpstreamNonce}, nil
	}
	plain, err := s.cfg.Sealer.Open(pending.UpstreamSealed, upstreamAuthContext+key)
	if err != nil {
		return upstream.Auth{}, err
	}
	var v [2]string
	if err := json.Unmarshal(plain, &v); err != nil {
		return upstream.Auth{}, fmt.Errorf("sealed upstream secrets are not JSON: %w", err)
	}
	return upstream.Auth{Verifier: v[0], Nonce: v[1]}, nil
}

// pickUpstream says where app's sign-ins go: the only provider, the application's own, or
// (nil) the person chooses.
func (s *Server) pickUpstream(app *store.Application) (upstream.CallbackProvider, error) {
	if len(s.upstreams) == 1 {
		return s.upstreams[0], nil
	}
	if app.Upstream == "" {
		return nil, nil
	}
	p, ok := s.upstreamNamed(app.Upstream)
	if !ok {
		// Anyone who knows the client_id sees the page: the provider's name is for the trace.
		return nil, &Error{Failure: signin.UpstreamUnknown, Title: "Sign-in provider not configured",
			Description: fmt.Sprintf("The bridge is not configured to sign people in to %s.", app.Name),
			TraceDetail: fmt.Sprintf("(%s signs people in through the provider %q, which this bridge does not have.)", app.Name, app.Upstream),
			Fix:         fmt.Sprintf("Administrators: add the provider to the providers file, or run `ssobridge apps update %s --upstream NAME` with one of its providers.", app.ID),
			PageFix:     "Tell the administrator of " + app.Name + ", and give them the trace ID below."}
	}
	return p, nil
}

// askChooser parks the request and shows the chooser: one button per provider.
func (s *Server) askChooser(c echo.Context, app *store.Application, pending *store.Authorization) error {
	key := randomToken()
	if err := s.parkPending(c, store.TokenKey(key), pending); err != nil {
		return err
	}
	data := chooserData{App: app.Name, Action: choosePath, Key: key}
	for _, p := range s.upstreams {
		d := p.Describe()
		o := chooserOption{Name: d.Name, DisplayName: d.DisplayName, Hint: d.Name == app.UpstreamHint}
		if o.Hint {
			data.Options = append([]chooserOption{o}, data.Options...)
		} else {
			data.Options = append(data.Options, o)
		}
	}
	var buf bytes.Buffer
	if err := chooserTemplate.Execute(&buf, data); err != nil {
		return err
	}
	s.subStep(c, signin.StepChooser, store.PartBridge, store.PartUser, "chooser page: sign in with which provider?",
		time.Now(), http.StatusOK, nil, nil)
	h := c.Response().Header()
	noStore(h)
	// The answer redirects to the chosen provider and, when the person is signed in there
	// already, on through the callback to the client: browsers hold every redirect of a form's
	// answer to form-action.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; form-action 'self' "+
		strings.Join(append(s.authorizeOrigins(c.Request().Context()), originOf(pending.RedirectURI)), " "))
	return c.HTMLBlob(http.StatusOK, buf.Bytes())
}

// choose takes the person's choice and sends them to that provider.
func (s *Server) choose(c echo.Context) error {
	ctx := c.Request().Context()
	s.beginStep(c, requestTrace(c), signin.StepChooserAnswer, store.PartUser, store.PartBridge, "POST "+choosePath)
	req := c.Request()
	req.Body = http.MaxBytesReader(c.Response(), req.Body, maxFormBody)
	invalid := func(desc string) error {
		return &Error{Failure: signin.ChooserUnknown, Title: "Invalid choice", Description: desc, Fix: "Go back to the application and sign in again."}
	}
	if err := req.ParseForm(); err != nil {
		return invalid("The form could not be read.")
	}
	for _, k := range []string{"choice", "upstream"} {
		if n := len(req.PostForm[k]); n > 1 {
			return &Error{Failure: signin.DuplicateParameter, Title: "Invalid choice",
				Description: fmt.Sprintf("The parameter %s is given %d times.", k, n), Fix: "Go back to the application and sign in again."}
		}
	}
	key, name := req.PostForm.Get("choice"), req.PostForm.Get("upstream")
	if key == "" || name == "" {
		return invalid("The answer does not say which sign-in it is for, or which provider.")
	}
	p, ok := s.upstreamNamed(name)
	if !ok {
		return &Error{Failure: signin.UpstreamUnknown, Title: "Unknown provider",
			Description: fmt.Sprintf("The bridge has no provider called %q.", truncate(name, 40)), Fix: "Go back to the application, sign in again, and choose one of the providers shown."}
	}
	pending, err := s.store.TakeAuthorization(ctx, store.TokenKey(key), store.NewAttempt())
	if errors.Is(err, store.ErrEvicted) {
		return superseded()
	}
	if taken, ok := errors.AsType[*store.TakenError](err); ok {
		s.useTrace(c, taken.TraceID)
		return &Error{Failure: signin.ChooserReplayed, Title: "Choice already made",
			Description: fmt.Sprintf("This sign-in's provider was chosen already, at %s (the back button, or a double click).", taken.At.UTC().Format("15:04:05 UTC")),
			Fix:         "Go back to the application and sign in again: that is safe."}
	}
	if errors.Is(err, store.ErrNotFound) {
		return &Error{Failure: signin.ChooserUnknown, Title: "Sign-in expired",
			Description: fmt.Sprintf("This sign-in waited longer than %s for a choice, or was never started here.", s.cfg.AuthorizationTTL),
			Fix:         "Go back to the application and sign in again."}
	}
	if err != nil {
		return storeFailure("take authorization", err)
	}
	s.useTrace(c, pending.TraceID)
	traceMeta(c, store.TraceMeta{ClientID: pending.ClientID})
	if pending.Browser == "" || !s.fromSameBrowser(c, pending.Browser) {
		return &Error{Failure: signin.StateNotFromThisBrowser, Title: "Choice not accepted",
			Description: "This answer did not come from the page the bridge showed in this browser (cookies off, or a page on another site submitted it).",
			Fix:         "Go back to the application and sign in again, and choose on the bridge's own page."}
	}
	auth, err := s.promptFor(ctx, p, pending)
	if err != nil {
		return err
	}
	s.stepOK(c, http.StatusFound, map[string]string{"provider": name})
	return s.sendUpstream(c, p, pending, auth)
}

// authorizeOrigins are the origins of the providers' authorization endpoints, where the chooser's
// answer sends the browser: GitLab's own, an OpenID provider's from its discovery document (its
// issuer's when that cannot be read yet).
func (s *Server) authorizeOrigins(ctx context.Context) []string {
	var origins []string
	for _, p := range s.upstreams {
		target, err := p.AuthCodeURL(ctx, "", upstream.Auth{})
		if err != nil {
			target = p.Describe().URL
		}
		if o := originOf(target); o != "" && !slices.Contains(origins, o) {
			origins = append(origins, o)
		}
	}
	return origins
}

type chooserOption struct {
	Name, DisplayName string
	Hint              bool
}

type chooserData struct {
	App, Action, Key string
	Options          []chooserOption
}

// The chooser works without script: each provider is a submit button of one form, labelled by
// its display name, in a list a screen reader announces as such.
var chooserTemplate = template.Must(template.New("chooser").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in to {{.App}} · sign-in bridge</title>
<style>
body{font:16px/1.5 system-ui,sans-serif;max-width:30rem;margin:3rem auto;padding:0 1rem;color:#1f1e24}
h1{font-size:1.4rem} ul{list-style:none;padding:0}
button{font:inherit;width:100%;text-align:left;padding:.75rem 1rem;margin:.4rem 0;border-radius:4px;border:1px solid #89888d;background:#fff;cursor:pointer}
button:focus{outline:3px solid #1f75cb;outline-offset:2px} button.hint{border-color:#1f75cb;border-width:2px}
</style></head><body>
<main>
<h1 id="title">Sign in to {{.App}}</h1>
<form method="post" action="{{.Action}}" aria-labelledby="title">
<input type="hidden" name="choice" value="{{.Key}}">
<p id="ask">Choose where you sign in:</p>
<ul aria-describedby="ask">{{range .Options}}
<li><button type="submit" name="upstream" value="{{.Name}}"{{if .Hint}} class="hint" autofocus{{end}}>Sign in with {{.DisplayName}}</button></li>{{end}}
</ul>
</form>
</main>
</body></html>
`))

// identify completes who signed in at p: the id clients will see, and the /api/v4/user body they
// will get. A GitLab provider's id and body are GitLab's own; any other provider's person gets
// the id bound to them (see store.Identities) and a body the bridge writes in GitLab's shape.
func (s *Server) identify(c echo.Context, p upstream.CallbackProvider, id *upstream.Identity) (int64, []byte, error) {
	d := p.Describe()
	if d.GitLabIDs {
		if s.mixed && id.GitLabID >= s.cfg.FirstID {
			return 0, nil, &Error{Failure: signin.IDOutOfRange, Title: "Account id out of range",
				Description: fmt.Sprintf("Your %s account's id (%d) is in the range the bridge gives people of other providers.", d.DisplayName, id.GitLabID),
				Fix:         fmt.Sprintf("Administrators: SSOBRIDGE_OIDC_FIRST_ID (%d) must be above every GitLab user id; raise it before any id is allocated (`ssobridge identities list`).", s.cfg.FirstID)}
		}
		return id.GitLabID, id.Body, nil
	}
	start := time.Now()
	b, err := s.store.BindIdentity(c.Request().Context(), d.Name, id.Subject, id.Email, id.EmailVerified, s.cfg.FirstID)
	if err != nil {
		e := storeFailure("bind identity", err)
		if errors.Is(err, store.ErrIDSpaceExhausted) {
			e = &Error{Failure: signin.IdentityFailed, Description: "The bridge has no id left to give.", Fix: "Administrators: SSOBRIDGE_OIDC_FIRST_ID is too close to the largest id; lower it only if no id was allocated.", Cause: err}
		}
		s.subStep(c, signin.StepIdentity, store.PartBridge, store.PartBridge, "find or give the person's id", start, 0, e, nil)
		return 0, nil, e
	}
	detail := map[string]string{"id": fmt.Sprint(b.ID), "provider": d.Name}
	switch {
	case b.How == store.BoundByEmail && b.Made:
		detail["binding"] = "bound by email: the id an import reserved for " + b.Email
	case b.How == store.BoundNew && b.Made:
		detail["binding"] = "new id"
	default:
		detail["binding"] = fmt.Sprintf("bound by subject (since %s, %s)", b.At.UTC().Format(time.RFC3339), bindingWord(b.How))
	}
	s.subStep(c, signin.StepIdentity, store.PartBridge, store.PartBridge, "find or give the person's id", start, http.StatusOK, nil, detail)
	return b.ID, gitlabUserBody(b.ID, id), nil
}

func bindingWord(k store.BindingKind) string {
	switch k {
	case store.BoundByEmail:
		return "first bound by email"
	case store.BoundBySubject:
		return "imported by subject"
	}
	return "first given as a new id"
}

// gitlabUserBody writes id as GitLab's /api/v4/user would describe them, with uid as their id.
func gitlabUserBody(uid int64, id *upstream.Identity) []byte {
	body, _ := json.Marshal(gitlabapi.UserBody{ID: uid, Username: id.Username, Name: id.Name, State: gitlabapi.StateActive,
		AvatarURL: id.AvatarURL, WebURL: id.WebURL, Email: id.Email})
	return body
}

// identityFailure is the failure of an identity the provider described but the bridge refuses.
func identityFailure(d upstream.Description, ie *upstream.IdentityError) *Error {
	f, title := signin.UserIncomplete, d.DisplayName+" returned an incomplete user"
	switch ie.Reason {
	case upstream.ReasonEmailMissing:
		f, title = signin.EmailMissing, "No email address"
	case upstream.ReasonEmailUnverified:
		f, title = signin.EmailUnverified, "Email address not verified"
	case upstream.ReasonClaimMissing:
		f = signin.ClaimMissing
	case upstream.ReasonIDToken:
		f, title = signin.IDTokenInvalid, d.DisplayName+"'s answer could not be verified"
	case upstream.ReasonNonce:
		f, title = signin.NonceMismatch, d.DisplayName+"'s answer could not be verified"
	}
	return &Error{Failure: f, Title: title, Description: ie.Detail + ".", Fix: ie.Fix}
}
