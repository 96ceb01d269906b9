package oauth

import (
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/ssobridge/ssobridge/oauth/signin"
	"github.com/ssobridge/ssobridge/oauth/store"
)

// TokenRequest is a parsed POST /oauth/token.
type TokenRequest struct {
	GrantType    string
	Code         string
	RedirectURI  string
	CodeVerifier string
	RefreshToken string
	Scope        string
	// Token and TokenTypeHint are the parameters of revocation and introspection.
	Token         string
	TokenTypeHint string
	ClientID      string
	ClientSecret  string
	// BasicAuth is true when the credentials came in an HTTP Basic header.
	BasicAuth bool
}

// credentialParams must never travel in a URL, where proxies and access logs keep them.
var credentialParams = []string{"client_secret", "code", "code_verifier", "refresh_token", "password", "token"}

// ParseTokenRequest reads a token request's body and client credentials. Basic credentials are
// form-urlencoded before base64 (RFC 6749 §2.3.1), as golang.org/x/oauth2 sends them.
func ParseTokenRequest(r *http.Request) (*TokenRequest, *Error) {
	// The query is parsed strictly: a pair that does not parse (after a ';', or with a bad escape)
	// would slip past the check, and carry a credential into access logs all the same.
	query, err := parseQueryStrictly(r.URL.RawQuery)
	if err != nil {
		return nil, fail(signin.MalformedQuery, "the URL's query is not well formed (%s); send every parameter in the form body, and no query", err)
	}
	for _, k := range credentialParams {
		if query.Has(k) {
			return nil, fail(signin.CredentialsInQuery, "%s was sent in the URL query; send it in the form body, where it is not logged", k)
		}
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, fail(signin.MalformedRequest, "the body must be a form: Content-Type application/x-www-form-urlencoded")
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxFormBody))
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return nil, fail(signin.MalformedRequest, "the body is larger than %d KiB", maxFormBody>>10)
		}
		return nil, fail(signin.MalformedRequest, "the body could not be read")
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, fail(signin.MalformedRequest, "the body is not valid form encoding")
	}
	for k, vs := range form {
		if len(vs) > 1 {
			return nil, fail(signin.DuplicateParameter, "the parameter %s is given %d times; give it once", truncate(k, 40), len(vs))
		}
	}
	tr := &TokenRequest{
		GrantType:     form.Get("grant_type"),
		Code:          form.Get("code"),
		RedirectURI:   form.Get("redirect_uri"),
		CodeVerifier:  form.Get("code_verifier"),
		RefreshToken:  form.Get("refresh_token"),
		Scope:         form.Get("scope"),
		Token:         form.Get("token"),
		TokenTypeHint: form.Get("token_type_hint"),
		ClientID:      form.Get("client_id"),
		ClientSecret:  form.Get("client_secret"),
	}
	if auth := r.Header.Get("Authorization"); auth != "" {
		id, secret, e := parseBasic(auth)
		if e != nil {
			return nil, e
		}
		if tr.ClientSecret != "" {
			return nil, fail(signin.ClientAuthAmbiguous, "client credentials were sent both in the Authorization header and in the body; use one way only")
		}
		if tr.ClientID != "" && tr.ClientID != id {
			return nil, fail(signin.ClientAuthAmbiguous, "client_id in the body differs from the one in the Authorization header")
		}
		tr.ClientID, tr.ClientSecret, tr.BasicAuth = id, secret, true
	}
	return tr, nil
}

func parseBasic(header string) (id, secret string, e *Error) {
	scheme, value, _ := strings.Cut(header, " ")
	if !strings.EqualFold(scheme, "Basic") {
		return "", "", fail(signin.ClientAuthMalformed, "the Authorization header uses %q; the token endpoint takes HTTP Basic client credentials or client_id and client_secret in the body", truncate(scheme, 20))
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(value))
	if err != nil {
		return "", "", fail(signin.ClientAuthMalformed, "the Basic credentials are not valid base64")
	}
	rawID, rawSecret, ok := strings.Cut(string(raw), ":")
	if !ok {
		return "", "", fail(signin.ClientAuthMalformed, "the Basic credentials have no colon between client_id and secret")
	}
	if id, err = url.QueryUnescape(rawID); err == nil {
		secret, err = url.QueryUnescape(rawSecret)
	}
	if err != nil {
		return "", "", fail(signin.ClientAuthMalformed, "the Basic credentials are not form-urlencoded as RFC 6749 §2.3.1 requires")
	}
	return id, secret, nil
}

// tokenResponse is GitLab's token answer. expires_in fits Mattermost's int32 and token_type
// lower-cases to "bearer", as Mattermost checks.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int32  `json:"expires_in"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope"`
	CreatedAt    int64  `json:"created_at"`
	IDToken      string `json:"id_token,omitempty"`
}

func (s *Server) token(c echo.Context) error {
	s.beginStep(c, "", signin.StepToken, store.PartClient, store.PartBridge, "POST /oauth/token")
	tr, perr := ParseTokenRequest(c.Request())
	if perr != nil {
		return perr
	}
	switch tr.GrantType {
	case "":
		return fail(signin.GrantTypeMissing, "grant_type is missing; use grant_type=authorization_code or refresh_token")
	case "authorization_code":
		return s.redeemCode(c, tr)
	case "refresh_token":
		return s.refresh(c, tr)
	}
	return fail(signin.GrantTypeUnsupported, "grant_type %q is not supported; use authorization_code or refresh_token", truncate(tr.GrantType, 40))
}

// redeemCode is the authorization_code grant. The bridge takes the code itself (through the
// store's TakeCode, exactly once, whatever the store's latency) and checks it in GitLab's order:
// the code, whose client it is, its redirect_uri, PKCE; then go-oauth2's manager makes the pair
// from the record taken (see gooauth2.go), and the store keeps it (FinishCode). A code refused
// once taken is burned, and a code presented again revokes every token issued from it (RFC 6749
// §4.1.2): of any number of presentations exactly one is answered with tokens, and if there was
// more than one, the tokens it got are revoked too, whatever came first.
func (s *Server) redeemCode(c echo.Context, tr *TokenRequest) error {
	if tr.Code == "" {
		if tr.RedirectURI == "" {
			return missingRedirectURI()
		}
		return fail(signin.CodeMissing, "code is missing; send the code the authorization returned to redirect_uri")
	}
	s.beginStep(c, "", signin.StepToken, store.PartClient, store.PartBridge, "POST /oauth/token (grant_type=authorization_code, code, client credentials)")
	ctx := c.Request().Context()
	ref := store.RefOf(tr.Code)
	app, terr := s.authenticateClient(c, tr)
	if terr != nil {
		// The code is left to be redeemed; it leads to the trace the failure belongs in.
		if peek, err := s.store.PeekCode(ctx, ref); err == nil {
			s.useTrace(c, peek.TraceID)
		}
		if tr.RedirectURI == "" {
			return missingRedirectURI() // GitLab checks that redirect_uri is present before the client
		}
		return terr
	}
	if tr.RedirectURI == "" {
		// GitLab refuses this before it looks the code up, which leaves a client's own code to be
		// redeemed once it sends redirect_uri. A code of another client, though, is burned
		// whatever else is wrong with the request: it is taken below, and refused as such.
		peek, err := s.store.PeekCode(ctx, ref)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return storeFailure("peek code", err)
		}
		if err != nil || peek.Code == nil || peek.Code.ClientID == app.ID {
			if err == nil {
				s.useTrace(c, peek.TraceID)
			}
			return missingRedirectURI()
		}
	}
	attempt := store.NewAttempt()
	if done, err := s.redeemInOneStep(c, app, tr, ref, attempt); done {
		return err
	}
	taken, err := s.store.TakeCode(ctx, ref, attempt)
	if used, ok := errors.AsType[*store.UsedError](err); ok {
		return s.replayedCode(c, used)
	}
	if errors.Is(err, store.ErrNotFound) {
		return fail(signin.CodeUnknown, "the code is unknown or expired: codes expire after %s; sign in again", s.cfg.CodeTTL)
	}
	if errors.Is(err, store.ErrRevoked) {
		if peek, err := s.store.PeekCode(ctx, ref); err == nil {
			s.useTrace(c, peek.TraceID)
		}
		return fail(signin.SessionRevoked, "the sign-in this code belongs to was revoked; sign in again").
			withFix("An administrator revoked the application's grants, or a token of this sign-in was reused, before the client redeemed its code.")
	}
	if err != nil {
		// The take's outcome is unknown: whether it ran or not, it is this request's own, and a
		// client that tries again is answered as what it then is.
		return storeFailure("take code", err)
	}
	s.useTrace(c, taken.TraceID)
	if taken.Session == nil {
		// Revoked between the read and the take, in the same step: nothing to burn.
		return fail(signin.SessionRevoked, "the sign-in this code belongs to was revoked; sign in again").
			withFix("An administrator revoked the application's grants, or a token of this sign-in was reused, before the client redeemed its code.")
	}
	if e := checkCode(taken.Code, app, tr); e != nil {
		return s.burnCode(c, ref, attempt, e)
	}
	tok, err := s.mint.redeem(ctx, app, tr.Code, taken.Code, tr)
	if err != nil {
		return s.burnCode(c, ref, attempt, explainRedemption(err))
	}
	// The ID token is signed before the tokens are stored: once they are, the request must not
	// fail, or the client's retry would find the code used and revoke them.
	idt, err := s.idToken(ctx, taken.Session, tok.pair, true)
	if err != nil {
		return s.burnCode(c, ref, attempt, err)
	}
	sess, err := s.store.FinishCode(ctx, ref, attempt, tok.pair)
	switch {
	case errors.Is(err, store.ErrReplayed):
		// Another request presented the code while this one redeemed it: this one is the one
		// answered with tokens, and they are revoked already, as a code presented twice asks.
		s.logger(ctx).Warn("code presented again while it was being redeemed; the tokens issued from it are revoked", "client_id", app.ID)
		s.stepOK(c, http.StatusOK, map[string]string{"scope": tok.pair.Scope, "access_token_sha256": hashPrefix(tok.access), "redirect_uri": tr.RedirectURI,
			"revoked": "the code was presented again while it was being redeemed (see the step that refused it): these tokens were revoked as they were issued"})
		return s.writeToken(c, tok, idt)
	case errors.Is(err, store.ErrRevoked):
		return codeSignInRevoked()
	case err != nil:
		// The tokens may or may not be stored: the client is not given them either way, and if it
		// tries again, the code is found taken by this request.
		return storeFailure("save tokens", err)
	}
	return s.codeRedeemed(c, app, tr, sess, tok, idt)
}

// codeRedeemed answers a token request whose code was redeemed, tokens stored.
func (s *Server) codeRedeemed(c echo.Context, app *store.Application, tr *TokenRequest, sess *store.Session, tok *issued, idt string) error {
	traceMeta(c, store.TraceMeta{ClientID: sess.ClientID, GitLabUserID: sess.GitLabUserID, Username: sess.Username})
	s.stepOK(c, http.StatusOK, map[string]string{"scope": tok.pair.Scope, "access_token_sha256": hashPrefix(tok.access), "redirect_uri": tr.RedirectURI})
	s.metrics.loginsCompleted.WithLabelValues(app.ID).Inc()
	s.logger(c.Request().Context()).Info("token issued", "client_id", app.ID, "grant_type", tr.GrantType, "gitlab_user_id", sess.GitLabUserID)
	return s.writeToken(c, tok, idt)
}

// redeemInOneStep redeems the code in one step of the store, a round trip fewer than a take and
// a finish (see store.SignIns.RedeemCode), when the request asks nothing of the code that the
// store cannot check: a PKCE verifier, a public client (which must send one), or a redirect URI
// the application no longer has, goes through checkCode and the manager's checks below. done is
// false when the store left the code to those steps, having taken nothing: a code of another
// client, for another redirect URI, expired, with a PKCE challenge or for an ID token, already
// taken, unknown or revoked is answered there as it always is.
func (s *Server) redeemInOneStep(c echo.Context, app *store.Application, tr *TokenRequest, ref store.Ref, attempt string) (done bool, err error) {
	if tr.CodeVerifier != "" || !app.Confidential || validateURI(app, tr.RedirectURI) != nil {
		return false, nil
	}
	ctx := c.Request().Context()
	tok, err := s.mint.newPair(ctx, app, ref.SessionID, "")
	if err != nil {
		return false, nil
	}
	red, err := s.store.RedeemCode(ctx, ref, attempt, store.CodeRedemption{ClientID: app.ID, RedirectURI: tr.RedirectURI, Now: time.Now()}, tok.pair)
	switch {
	case errors.Is(err, store.ErrSlowPath):
		return false, nil
	case errors.Is(err, store.ErrRevoked):
		return true, codeSignInRevoked()
	case err != nil:
		// The outcome is unknown: the tokens may be stored, and are not given. A client that
		// tries again finds the code redeemed, as after a take whose answer was lost.
		return true, storeFailure("redeem code", err)
	}
	s.useTrace(c, red.TraceID)
	return true, s.codeRedeemed(c, app, tr, red.Session, tok, "")
}

// codeSignInRevoked is the answer to a code whose sign-in was revoked while it was redeemed.
func codeSignInRevoked() *Error {
	return fail(signin.SessionRevoked, "the sign-in this code belongs to was revoked; sign in again").
		withFix("An administrator revoked the application's grants while this sign-in's code was being redeemed.")
}

// missingRedirectURI is the answer to a code redemption without redirect_uri, which GitLab gives
// before any other.
func missingRedirectURI() *Error {
	return fail(signin.RedirectURIMissing, "redirect_uri is missing; send the redirect_uri of the authorization request").
		withFix("The client's token request has no redirect_uri: it must send the one of its authorize request (Mattermost always does; check that nothing between it and the bridge rewrites the request's body).")
}

// checkCode checks a code the request has taken, in GitLab's order after the code is found: not
// expired, this client's, the authorization's redirect_uri, then PKCE. The verifier itself is
// compared by the manager.
func checkCode(code *store.Code, app *store.Application, tr *TokenRequest) *Error {
	switch {
	case time.Now().After(code.ExpiresAt):
		return fail(signin.CodeExpired, "the code has expired (codes expire after %s); sign in again", code.ExpiresAt.Sub(code.IssuedAt).Round(time.Second)).
			withFix("The client redeemed the code too late: check that Mattermost reaches the bridge's token endpoint quickly and that the clocks agree.")
	case code.ClientID != app.ID:
		return fail(signin.CodeOtherClient, "the code was issued to another client; it is now revoked")
	case tr.RedirectURI == "":
		return missingRedirectURI()
	case code.RedirectURI != "" && code.RedirectURI != tr.RedirectURI:
		return fail(signin.RedirectURIMismatch, "redirect_uri does not match the one of the authorization request; send the same redirect_uri (Mattermost's Site URL + /signup/gitlab/complete)").
			withFix("The client's token request names another redirect_uri than its authorize request: Mattermost's Site URL changed during the sign-in, or two Mattermost servers share the application.")
	case tr.CodeVerifier == "" && (code.CodeChallenge != "" || !app.Confidential):
		if code.CodeChallenge == "" {
			return fail(signin.PKCEVerifierMissing, "the application %s is public and must prove itself with PKCE: send code_verifier", app.Name)
		}
		return fail(signin.PKCEVerifierMissing, "code_verifier is missing; the authorization request had a code_challenge")
	case tr.CodeVerifier != "" && code.CodeChallenge == "":
		return fail(signin.PKCEUnexpectedVerifier, "code_verifier was sent but the authorization request had no code_challenge")
	case tr.CodeVerifier != "" && !pkceValue(tr.CodeVerifier):
		// One whose hash is the challenge would pass the manager's comparison, but a verifier
		// outside RFC 7636's form is too weak to prove anything. invalid_grant, as for a wrong
		// verifier: RFC 7636 §4.6 fails the verifier check so, and Doorkeeper (GitLab) and
		// fosite answer every failure of that check with it.
		return fail(signin.PKCEVerifierMalformed, "code_verifier must be 43 to 128 characters of A-Z, a-z, 0-9 and -._~ (RFC 7636 §4.1); this one has %d characters%s", utf8.RuneCountInString(tr.CodeVerifier), outsideUnreserved(tr.CodeVerifier)).
			withFix("The client makes its PKCE code_verifier wrongly: RFC 7636 §4.1 asks for 43 to 128 unreserved characters, such as 32 random bytes in base64url without padding.")
	}
	return nil
}

// outsideUnreserved says, for a description, that v holds a character code_verifier may not.
func outsideUnreserved(v string) string {
	if strings.Trim(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~") != "" {
		return ", some of them outside those"
	}
	return ""
}

// burnCode answers a redemption refused after its code was taken: the code is spent, and its
// sign-in, which will never have tokens, is revoked (store.RefuseCode), with a mark that says why,
// for the code's next presentation to be answered truly; the failure goes to the code's sign-in
// trace.
func (s *Server) burnCode(c echo.Context, ref store.Ref, attempt string, refusal error) error {
	ctx := c.Request().Context()
	failure := signin.Internal
	if e, ok := errors.AsType[*Error](refusal); ok {
		failure = e.Failure
	}
	if err := s.store.RefuseCode(ctx, ref, attempt, failure.Name(), currentTrace(c)); err != nil {
		s.logger(ctx).Warn("recording why a code was refused failed; its sign-in may not be revoked", "cause", err.Error())
	}
	return refusal
}

// replayedCode answers a code another request took before: one whose redemption was refused
// issued nothing, and the answer says what spent it; any other was presented twice, and every
// token issued from it is revoked (the store has done so, or the request that took it does when
// it finishes).
func (s *Server) replayedCode(c echo.Context, used *store.UsedError) error {
	ctx := c.Request().Context()
	m := used.Mark
	if m.State == store.MarkRefused {
		s.useTrace(c, cmp.Or(m.RefusalTrace, used.TraceID))
		s.logger(ctx).Info("code presented again after a refused redemption spent it", "session", used.SessionID, "refusal", m.Refusal)
		return fail(signin.CodeBurned, "the code was already spent by an earlier token request, which was refused because %s, so no token was issued from it; codes are single use: sign in again", refusalCause(m.Refusal)).
			withFix(fmt.Sprintf("An earlier token request with this code was refused (%s), which spends the code without issuing any token; nothing was revoked. Fix what made that request fail (its step in this trace says what), then the person signs in again.", m.Refusal))
	}
	s.useTrace(c, used.TraceID)
	e := fail(signin.CodeReplayed, "the code was already used: codes are single use, and the tokens issued from it are now revoked; sign in again")
	switch m.State {
	case store.MarkTaken:
		s.logger(ctx).Warn("code presented while an earlier request still redeems it, or after one that did not complete; no token issued from it will work", "session", used.SessionID)
		e.Description = "the code was already presented, by a request that is still being answered or that did not complete: codes are single use, and no token issued from it will work; sign in again"
		e.Fix = fmt.Sprintf("The code was presented again while an earlier request (at %s) was redeeming it, or after that request was cut short (the store did not answer it in time: see its step in this trace). Either the client sent its token request twice, or someone else holds a copy of the code (check for proxies or logs that record URLs). The person must sign in again.",
			m.At.UTC().Format(time.RFC3339))
	default:
		s.logger(ctx).Warn("code presented twice; the tokens issued from it are revoked", "session", used.SessionID)
		e.Fix = "A code was presented twice: either the client retried its token request, or someone else holds a copy of the code (check for proxies or logs that record URLs). The person must sign in again."
	}
	return e
}

// refusalCause says, to the client, why a redemption that spent a code was refused, from the
// name of its failure, which the code's mark keeps.
func refusalCause(name string) string {
	f, _ := signin.Lookup(name)
	switch f {
	case signin.RedirectURIMismatch:
		return "its redirect_uri was not the one of the authorization request"
	case signin.RedirectURINotRegistered:
		return "its redirect_uri was not registered for the application"
	case signin.RedirectURIMissing:
		return "it had no redirect_uri"
	case signin.CodeOtherClient:
		return "another client presented the code"
	case signin.CodeExpired:
		return "the code had expired"
	case signin.PKCEVerifierMissing:
		return "it had no code_verifier"
	case signin.PKCEVerifierWrong:
		return "its code_verifier did not match the code_challenge"
	case signin.PKCEVerifierMalformed:
		return "its code_verifier was not 43 to 128 characters of A-Z, a-z, 0-9 and -._~"
	case signin.PKCEUnexpectedVerifier:
		return "it sent a code_verifier, and the authorization request had no code_challenge"
	case signin.SessionRevoked:
		return "the sign-in had been revoked"
	}
	return "of " + name
}

// refresh is the refresh_token grant, which go-oauth2 gets wrong (no client check, scope
// widening, get-then-delete): the refresh token must be the client's, the scope may only narrow,
// it is taken exactly once (TakeRefresh) and rotated, and one presented twice revokes its whole
// family (RFC 6819 §5.2.2.3, OAuth 2.0 Security BCP §4.14).
func (s *Server) refresh(c echo.Context, tr *TokenRequest) error {
	if tr.RefreshToken == "" {
		return fail(signin.RefreshTokenMissing, "refresh_token is missing")
	}
	app, terr := s.authenticateClient(c, tr)
	if terr != nil {
		return terr
	}
	ctx := c.Request().Context()
	s.beginStep(c, "", signin.StepRefresh, store.PartClient, store.PartBridge, "POST /oauth/token (grant_type=refresh_token)")
	ref := store.RefOf(tr.RefreshToken)
	attempt := store.NewAttempt()
	// Everything that can refuse the request is checked before the token is taken, so that a
	// client's mistake (another client, a wider scope) or GitLab being down does not burn it.
	seen, err := s.store.GetRefresh(ctx, ref)
	if errors.Is(err, store.ErrNotFound) {
		// Unknown, or taken before: the take says which, and applies the rule for a replay.
		return s.takeUnknownRefresh(c, ref, attempt)
	}
	if err != nil {
		return storeFailure("get refresh token", err)
	}
	s.useTrace(c, seen.TraceID)
	if seen.Session == nil || seen.Pair == nil {
		return fail(signin.SessionRevoked, "the sign-in this refresh token belongs to was revoked or has expired; sign in again")
	}
	sess := seen.Session
	traceMeta(c, store.TraceMeta{ClientID: sess.ClientID, GitLabUserID: sess.GitLabUserID, Username: sess.Username})
	if e := checkRefresh(seen.Pair, app, tr); e != nil {
		return e
	}
	// The person must still be welcome at GitLab, and still admitted to the application: a
	// refresh must not outlive a block there or a change of the application's rules.
	body, err := s.upstreamUser(ctx, sess, true)
	if err == nil {
		if detail, fix := checkPolicy(app, s.policyUser(app, sess, body)); detail != "" {
			s.revokeSession(ctx, sess.ID, "the person is no longer admitted")
			e := s.notAdmitted(app, sess.Username, detail, fix)
			e.Description = strings.TrimSuffix(e.Description, ".") + "; sign in again"
			return e
		}
	}
	if err != nil {
		ue, ok := errors.AsType[*Error](err)
		if !ok {
			return err
		}
		provider := "GitLab"
		if p, ok := s.upstreamNamed(sess.Provider); ok {
			provider = p.Describe().DisplayName
		}
		switch {
		case ue.Failure == signin.UpstreamTokenRejected || ue.Failure == signin.UpstreamUserRefused || ue.Failure == signin.UserNotActive:
			// The provider answered, and no longer accepts the person, or cannot be asked: the
			// sign-in ends.
			s.revokeSession(ctx, sess.ID, provider+" no longer accepts the person")
			return fail(ue.Failure, "%s does not confirm this person (%s); sign in again", provider, ue.apiMessage()).withFix(ue.fix()).withCause(err)
		case ue.Failure.Where() == signin.AtGitLab:
			// The failure's code (temporarily_unavailable, for the provider's own trouble) tells
			// the client to try again.
			e := fail(ue.Failure, "the bridge could not ask %s whether this person may still sign in (%s); try again shortly, the refresh token stays valid",
				provider, ue.apiMessage()).withFix(ue.fix()).withCause(err)
			e.RetryAfter = ue.RetryAfter
			return e
		}
		// The bridge's own trouble (its store, the GitLab token it keeps), as it is: nothing
		// was taken, and the refresh token stays valid.
		return ue
	}
	taken, err := s.store.TakeRefresh(ctx, ref, attempt)
	if used, ok := errors.AsType[*store.UsedError](err); ok {
		return s.reusedRefresh(c, used) // another request took it while this one checked
	}
	if errors.Is(err, store.ErrNotFound) {
		// It was there a moment ago: its sign-in expired since, or the store lost it.
		return fail(signin.RefreshTokenUnknown, "the refresh token is unknown, expired or revoked; sign in again")
	}
	if errors.Is(err, store.ErrRevoked) {
		return fail(signin.SessionRevoked, "the sign-in this refresh token belongs to was revoked or has expired; sign in again")
	}
	if err != nil {
		return storeFailure("take refresh token", err)
	}
	if taken.Session == nil {
		return fail(signin.SessionRevoked, "the sign-in this refresh token belongs to was revoked; sign in again")
	}
	scope := taken.Pair.Scope
	if tr.Scope != "" {
		scope = strings.Join(ParseScope(tr.Scope), " ")
	}
	tok, err := s.mint.newPair(ctx, app, taken.Session.ID, scope)
	if err != nil {
		return err
	}
	idt, err := s.idToken(ctx, taken.Session, tok.pair, false) // before the tokens are stored
	if err != nil {
		return err
	}
	// The family lives as long as its newest refresh token (or, with none, as its access token:
	// the store sees to it); a family revoked while this request ran stays revoked, and the
	// tokens are not kept.
	err = s.store.FinishRefresh(ctx, ref, attempt, taken.Session, tok.pair, s.cfg.RefreshTokenTTL)
	switch {
	case errors.Is(err, store.ErrReplayed):
		s.logger(ctx).Warn("refresh token presented again while it was being redeemed; its family is revoked", "client_id", app.ID)
		s.stepOK(c, http.StatusOK, map[string]string{"scope": scope,
			"revoked": "the refresh token was presented again while it was being redeemed (see the step that refused it): these tokens were revoked as they were issued"})
		return s.writeToken(c, tok, idt)
	case errors.Is(err, store.ErrRevoked):
		return fail(signin.SessionRevoked, "the sign-in this refresh token belongs to was revoked; sign in again").
			withFix("An administrator revoked the application's grants, or a token of this sign-in was reused, while the refresh was under way.")
	case err != nil:
		return storeFailure("save tokens", err)
	}
	s.stepOK(c, http.StatusOK, map[string]string{"scope": scope})
	s.logger(ctx).Info("token refreshed", "client_id", app.ID, "gitlab_user_id", taken.Session.GitLabUserID)
	return s.writeToken(c, tok, idt)
}

// takeUnknownRefresh answers a refresh token the store does not hold as a live one: unknown, or
// taken before, in which case the take applies the rule for a replay.
func (s *Server) takeUnknownRefresh(c echo.Context, ref store.Ref, attempt string) error {
	_, err := s.store.TakeRefresh(c.Request().Context(), ref, attempt)
	if used, ok := errors.AsType[*store.UsedError](err); ok {
		return s.reusedRefresh(c, used)
	}
	if errors.Is(err, store.ErrRevoked) {
		return fail(signin.SessionRevoked, "the sign-in this refresh token belongs to was revoked or has expired; sign in again")
	}
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return storeFailure("take refresh token", err)
	}
	// Not found, or (it appeared since it was read) taken: either way this request is refused.
	return fail(signin.RefreshTokenUnknown, "the refresh token is unknown, expired or revoked; sign in again")
}

// checkRefresh refuses a refresh token of another client, an expired one, or a scope wider than
// it was granted.
func checkRefresh(p *store.TokenPair, app *store.Application, tr *TokenRequest) *Error {
	if p.ClientID != app.ID {
		return fail(signin.RefreshTokenOtherClient, "the refresh token was issued to another client")
	}
	if !p.RefreshExpiresAt.IsZero() && time.Now().After(p.RefreshExpiresAt) {
		return fail(signin.RefreshTokenUnknown, "the refresh token is unknown, expired or revoked; sign in again")
	}
	if _, wider := grantScope(tr.Scope, ParseScope(p.Scope)); len(wider) > 0 {
		return fail(signin.ScopeWidened, "the refresh token does not cover the scope %s; a refresh may only keep or narrow the scope (%s)", strings.Join(wider, " "), p.Scope)
	}
	return nil
}

// reusedRefresh answers a refresh token another request took before. One whose tokens were
// issued was presented twice: the store has revoked its whole sign-in. One still taken belongs
// to a request still being answered, which will revoke the sign-in when it finishes, or to one
// cut short (the store did not answer it in time), which took the pair with it: either way no
// token of that pair will work.
func (s *Server) reusedRefresh(c echo.Context, used *store.UsedError) error {
	ctx := c.Request().Context()
	s.useTrace(c, used.TraceID)
	if used.Mark.State == store.MarkTaken {
		s.logger(ctx).Warn("refresh token presented while an earlier request still redeems it, or after one that did not complete", "session", used.SessionID)
		return fail(signin.RefreshTokenReplayed, "the refresh token was already presented, by a request that is still being answered or that did not complete: refresh tokens are single use, and no token issued from it will work; sign in again").
			withFix(fmt.Sprintf("The refresh token was presented again while an earlier request (at %s) was redeeming it, or after that request was cut short (the store did not answer it in time: see its step in this trace). Either the client sent its refresh twice, or someone else holds a copy of it. The person must sign in again.",
				used.Mark.At.UTC().Format(time.RFC3339)))
	}
	s.logger(ctx).Warn("refresh token presented twice; its family is revoked", "session", used.SessionID)
	return fail(signin.RefreshTokenReplayed, "the refresh token was already used: refresh tokens are single use, so every token of this sign-in is now revoked; sign in again").
		withFix("A refresh token was presented twice: the client retried, or someone else holds a copy of it. The person must sign in again.")
}

// revokeSession revokes a sign-in the request ends, and says in the log when the store did not:
// the sign-in then lives until it expires.
func (s *Server) revokeSession(ctx context.Context, id, why string) {
	if err := s.store.RevokeSession(ctx, id); err != nil {
		s.logger(ctx).Warn("revoking the sign-in failed; it stays valid until it expires or an administrator revokes it (ssobridge apps revoke-grants)", "session", id, "why", why, "cause", err.Error())
	}
}

// writeToken answers a token request in GitLab's shape, with the ID token idt if not empty.
func (s *Server) writeToken(c echo.Context, tok *issued, idt string) error {
	p := tok.pair
	resp := tokenResponse{
		AccessToken:  tok.access,
		TokenType:    "Bearer",
		ExpiresIn:    int32(p.AccessExpiresAt.Sub(p.IssuedAt) / time.Second),
		RefreshToken: tok.refresh,
		Scope:        p.Scope,
		CreatedAt:    p.IssuedAt.Unix(),
		IDToken:      idt,
	}
	noStore(c.Response().Header())
	return c.JSON(http.StatusOK, resp)
}

// invalidClient is one answer for an unknown client and a wrong secret, so that the answer does
// not tell which client_ids exist: the failure, and the fix, are for the trace.
func invalidClient(f *signin.Failure, fix string) *Error {
	return fail(f, "client authentication failed: the client_id is unknown or the secret is wrong; check Mattermost's GitLab Application ID against `ssobridge apps list`, and its Secret: the bridge keeps only a hash of it, so a lost secret is replaced with `ssobridge apps rotate-secret ID`").
		withFix(fix)
}

// authenticateClient checks the client's credentials at the token, revocation and introspection
// endpoints. Its failures are counted, per client and address, against
// Limits.ClientAuthFailures, whose allowance spent refuses the next attempts before their secret
// is looked at; successes are not counted.
func (s *Server) authenticateClient(c echo.Context, tr *TokenRequest) (*store.Application, error) {
	if tr.ClientID == "" {
		return nil, fail(signin.ClientAuthMissing, "no client authentication: send client_id and client_secret in the body, or HTTP Basic credentials")
	}
	var app *store.Application
	if len(tr.ClientID) <= maxClientID {
		var err error
		app, err = s.store.GetApp(c.Request().Context(), tr.ClientID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, storeFailure("get application", err)
		}
	}
	// Look, check and count one request at a time per client and address on this instance, so
	// that requests in flight together cannot all pass a look that only one allowance remains
	// for. Uncontended (a Mattermost whose secret is right), the lock is held for a hash compare.
	mu := s.clientAuthLocks.of(clientAuthKey(c, app))
	mu.Lock()
	defer mu.Unlock()
	if limited := s.clientAuthLimited(c, app); limited != nil {
		return nil, limited
	}
	if err := checkClient(tr, app); err != nil {
		s.countClientAuthFailure(c, app)
		return nil, err
	}
	return app, nil
}

// checkClient checks the credentials tr sends for app (nil: no application has its client_id).
func checkClient(tr *TokenRequest, app *store.Application) *Error {
	if len(tr.ClientID) > maxClientID {
		return invalidClient(signin.UnknownClient, "The client_id is longer than any application ID: copy the ID from `ssobridge apps list` into the client.")
	}
	if app == nil {
		// Spend the time a hash comparison would, so that timing does not tell either.
		store.VerifySecret(store.HashSecret("unknown client"), tr.ClientSecret)
		return invalidClient(signin.UnknownClient, fmt.Sprintf("No application has the client_id %q: copy the ID from `ssobridge apps list` into the client (Mattermost: GitLab Application ID).", truncate(tr.ClientID, 80)))
	}
	if app.Confidential {
		if !store.VerifySecret(app.SecretHash, tr.ClientSecret) {
			return invalidClient(signin.WrongClientSecret, fmt.Sprintf("The secret sent for %s is not its secret: copy it again into the client (Mattermost: GitLab Application Secret), or make a new one with `ssobridge apps rotate-secret %s`.", app.Name, app.ID))
		}
		return nil
	}
	if tr.ClientSecret != "" {
		return invalidClient(signin.PublicClientWithSecret, fmt.Sprintf("%s is a public application, which has no secret: remove the secret from the client, or make the application confidential with `ssobridge apps update %s --confidential`.", app.Name, app.ID))
	}
	return nil
}
