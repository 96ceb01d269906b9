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

	"github.com/go-oauth2/oauth2/v4"
	oerrors "github.com/go-oauth2/oauth2/v4/errors"
	"github.com/go-oauth2/oauth2/v4/models"
	"github.com/labstack/echo/v4"

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
		return nil, named(tokenError(ErrInvalidRequest, "the URL's query is not well formed (%s); send every parameter in the form body, and no query", err), "malformed_query", "")
	}
	for _, k := range credentialParams {
		if query.Has(k) {
			return nil, named(tokenError(ErrInvalidRequest, "%s was sent in the URL query; send it in the form body, where it is not logged", k), "credentials_in_query", "")
		}
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, named(tokenError(ErrInvalidRequest, "the body must be a form: Content-Type application/x-www-form-urlencoded"), "malformed_request", "")
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxFormBody))
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return nil, named(tokenError(ErrInvalidRequest, "the body is larger than %d KiB", maxFormBody>>10), "malformed_request", "")
		}
		return nil, named(tokenError(ErrInvalidRequest, "the body could not be read"), "malformed_request", "")
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, named(tokenError(ErrInvalidRequest, "the body is not valid form encoding"), "malformed_request", "")
	}
	for k, vs := range form {
		if len(vs) > 1 {
			return nil, named(tokenError(ErrInvalidRequest, "the parameter %s is given %d times; give it once", truncate(k, 40), len(vs)), "duplicate_parameter", "")
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
			return nil, named(tokenError(ErrInvalidRequest, "client credentials were sent both in the Authorization header and in the body; use one way only"), "client_auth_ambiguous", "")
		}
		if tr.ClientID != "" && tr.ClientID != id {
			return nil, named(tokenError(ErrInvalidRequest, "client_id in the body differs from the one in the Authorization header"), "client_auth_ambiguous", "")
		}
		tr.ClientID, tr.ClientSecret, tr.BasicAuth = id, secret, true
	}
	return tr, nil
}

func parseBasic(header string) (id, secret string, e *Error) {
	scheme, value, _ := strings.Cut(header, " ")
	if !strings.EqualFold(scheme, "Basic") {
		return "", "", named(tokenError(ErrInvalidClient, "the Authorization header uses %q; the token endpoint takes HTTP Basic client credentials or client_id and client_secret in the body", truncate(scheme, 20)), "client_auth_malformed", "")
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(value))
	if err != nil {
		return "", "", named(tokenError(ErrInvalidClient, "the Basic credentials are not valid base64"), "client_auth_malformed", "")
	}
	rawID, rawSecret, ok := strings.Cut(string(raw), ":")
	if !ok {
		return "", "", named(tokenError(ErrInvalidClient, "the Basic credentials have no colon between client_id and secret"), "client_auth_malformed", "")
	}
	if id, err = url.QueryUnescape(rawID); err == nil {
		secret, err = url.QueryUnescape(rawSecret)
	}
	if err != nil {
		return "", "", named(tokenError(ErrInvalidClient, "the Basic credentials are not form-urlencoded as RFC 6749 §2.3.1 requires"), "client_auth_malformed", "")
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
	s.beginStep(c, "", "token", store.PartClient, store.PartBridge, "POST /oauth/token")
	tr, perr := ParseTokenRequest(c.Request())
	if perr != nil {
		return perr
	}
	switch tr.GrantType {
	case "":
		return named(tokenError(ErrInvalidRequest, "grant_type is missing; use grant_type=authorization_code or refresh_token"), "grant_type_unsupported", "")
	case string(oauth2.AuthorizationCode):
		return s.redeemCode(c, tr)
	case string(oauth2.Refreshing):
		return s.refresh(c, tr)
	}
	return named(tokenError(ErrUnsupportedGrantType, "grant_type %q is not supported; use authorization_code or refresh_token", truncate(tr.GrantType, 40)), "grant_type_unsupported", "")
}

// redeemCode is the authorization_code grant. The bridge takes the code itself (through the
// store's atomic TakeCode) and checks it in GitLab's order: the code, whose client it is, its
// redirect_uri, PKCE; then go-oauth2's manager issues the pair from the record taken. A code
// refused once taken is burned, and a code presented again revokes every token issued from it
// (RFC 6749 §4.1.2).
func (s *Server) redeemCode(c echo.Context, tr *TokenRequest) error {
	if tr.Code == "" {
		if tr.RedirectURI == "" {
			return missingRedirectURI()
		}
		return named(tokenError(ErrInvalidRequest, "code is missing; send the code the authorization returned to redirect_uri"), "code_missing", "")
	}
	s.beginStep(c, "", "token", store.PartClient, store.PartBridge, "POST /oauth/token (grant_type=authorization_code, code, client credentials)")
	ctx := c.Request().Context()
	app, terr := s.authenticateClient(c, tr)
	if terr != nil {
		// The code is left to be redeemed; it leads to the trace the failure belongs in.
		if peek, err := s.store.PeekCode(ctx, tr.Code); err == nil && peek != nil {
			s.traceOfSession(c, peek.GetUserID())
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
		peek, err := s.store.PeekCode(ctx, tr.Code)
		if err != nil {
			return storeFailure("peek code", err)
		}
		if peek == nil || peek.GetClientID() == app.ID {
			if peek != nil {
				s.traceOfSession(c, peek.GetUserID())
			}
			return missingRedirectURI()
		}
	}
	rd := &redemption{}
	var err error
	if rd.info, err = s.tokens.takeCode(ctx, tr.Code); err != nil {
		return storeFailure("take code", err)
	}
	if rd.info == nil {
		return s.replayedCode(c, tr.Code)
	}
	if e := checkCode(rd.info, app, tr); e != nil {
		return s.burnCode(c, rd.info, e)
	}
	ti, err := s.manager.GenerateAccessToken(withRedemptionRecord(withApp(ctx, app), rd), oauth2.AuthorizationCode, &oauth2.TokenGenerateRequest{
		ClientID:     app.ID,
		ClientSecret: tr.ClientSecret,
		RedirectURI:  tr.RedirectURI,
		Code:         tr.Code,
		CodeVerifier: tr.CodeVerifier,
		Request:      c.Request(),
	})
	if err != nil {
		return s.burnCode(c, rd.info, explainRedemption(err))
	}
	sess := rd.session
	s.useTrace(c, sess.TraceID)
	traceMeta(c, store.TraceMeta{ClientID: sess.ClientID, GitLabUserID: sess.GitLabUserID, Username: sess.Username})
	s.stepOK(c, http.StatusOK, map[string]string{"scope": ti.GetScope(), "access_token_sha256": hashPrefix(ti.GetAccess()), "redirect_uri": tr.RedirectURI})
	s.metrics.loginsCompleted.WithLabelValues(app.ID).Inc()
	s.logger(ctx).Info("token issued", "client_id", app.ID, "grant_type", tr.GrantType, "gitlab_user_id", sess.GitLabUserID)
	return s.writeToken(c, ti, sess, true)
}

// missingRedirectURI is the answer to a code redemption without redirect_uri, which GitLab gives
// before any other.
func missingRedirectURI() *Error {
	return named(tokenError(ErrInvalidRequest, "redirect_uri is missing; send the redirect_uri of the authorization request"), "redirect_uri_missing",
		"The client's token request has no redirect_uri: it must send the one of its authorize request (Mattermost always does; check that nothing between it and the bridge rewrites the request's body).")
}

// checkCode checks a code the request has taken, in GitLab's order after the code is found: not
// expired, this client's, the authorization's redirect_uri, then PKCE. The verifier itself is
// compared by the manager.
func checkCode(ti oauth2.TokenInfo, app *store.Application, tr *TokenRequest) *Error {
	switch {
	case time.Now().After(ti.GetCodeCreateAt().Add(ti.GetCodeExpiresIn() - codeGrace)):
		return named(tokenError(ErrInvalidGrant, "the code has expired (codes expire after %s); sign in again", ti.GetCodeExpiresIn()-codeGrace), "code_expired",
			"The client redeemed the code too late: check that Mattermost reaches the bridge's token endpoint quickly and that the clocks agree.")
	case ti.GetClientID() != app.ID:
		return named(tokenError(ErrInvalidGrant, "the code was issued to another client; it is now revoked"), "code_other_client",
			"Another client presented this sign-in's code: two applications share redirect URIs, or the code leaked.")
	case tr.RedirectURI == "":
		return missingRedirectURI()
	case ti.GetRedirectURI() != "" && ti.GetRedirectURI() != tr.RedirectURI:
		return named(tokenError(ErrInvalidGrant, "redirect_uri does not match the one of the authorization request; send the same redirect_uri (Mattermost's Site URL + /signup/gitlab/complete)"),
			"redirect_uri_mismatch", "The client's token request names another redirect_uri than its authorize request: Mattermost's Site URL changed during the sign-in, or two Mattermost servers share the application.")
	case tr.CodeVerifier == "" && (ti.GetCodeChallenge() != "" || !app.Confidential):
		if ti.GetCodeChallenge() == "" {
			return named(tokenError(ErrInvalidRequest, "the application %s is public and must prove itself with PKCE: send code_verifier", app.Name), "pkce_verifier_missing", "")
		}
		return named(tokenError(ErrInvalidRequest, "code_verifier is missing; the authorization request had a code_challenge"), "pkce_verifier_missing", "")
	case tr.CodeVerifier != "" && ti.GetCodeChallenge() == "":
		return named(tokenError(ErrInvalidGrant, "code_verifier was sent but the authorization request had no code_challenge"), "pkce_unexpected_verifier", "")
	case tr.CodeVerifier != "" && !pkceValue(tr.CodeVerifier):
		// One whose hash is the challenge would pass the manager's comparison, but a verifier
		// outside RFC 7636's form is too weak to prove anything. invalid_grant, as for a wrong
		// verifier: RFC 7636 §4.6 fails the verifier check so, and Doorkeeper (GitLab) and
		// fosite answer every failure of that check with it.
		return named(tokenError(ErrInvalidGrant, "code_verifier must be 43 to 128 characters of A-Z, a-z, 0-9 and -._~ (RFC 7636 §4.1); this one has %d characters%s",
			utf8.RuneCountInString(tr.CodeVerifier), outsideUnreserved(tr.CodeVerifier)), "pkce_verifier_malformed",
			"The client makes its PKCE code_verifier wrongly: RFC 7636 §4.1 asks for 43 to 128 unreserved characters, such as 32 random bytes in base64url without padding.")
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

// burnCode answers a redemption refused after its code was taken. The code is spent, and its
// session, which will never have tokens, is deleted; the failure goes to the code's sign-in trace.
func (s *Server) burnCode(c echo.Context, ti oauth2.TokenInfo, refusal error) error {
	ctx := c.Request().Context()
	s.traceOfSession(c, ti.GetUserID())
	if err := s.store.DeleteSession(ctx, ti.GetUserID()); err != nil && !errors.Is(err, store.ErrNotFound) {
		s.logger(ctx).Warn("deleting the session of a refused code failed", "cause", err.Error())
	}
	// The take marked the code used as if tokens had been issued from it; the mark now says that
	// none was, and why, for the code's next presentation to be answered truly. A store failure
	// leaves the plain mark: tokens may have been stored.
	var e *Error
	if errors.As(refusal, &e) {
		used := store.Used{SessionID: ti.GetUserID(), Refusal: cmp.Or(e.Failure, e.Code), TraceID: currentTrace(c)}
		if err := s.store.MarkUsed(ctx, store.TokenKey(ti.GetCode()), used, s.tokens.usedTTL()); err != nil {
			s.logger(ctx).Warn("recording why a code was refused failed", "cause", err.Error())
		}
	}
	return refusal
}

// replayedCode answers a code that is not (or no longer) stored. One whose redemption was
// refused issued nothing, and the answer says what spent it; one redeemed before has leaked, and
// the tokens issued for it are revoked.
func (s *Server) replayedCode(c echo.Context, code string) error {
	ctx := c.Request().Context()
	used, err := s.store.UsedBy(ctx, store.TokenKey(code))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return named(tokenError(ErrInvalidGrant, "the code is unknown or expired: codes expire after %s; sign in again", s.cfg.CodeTTL), "code_unknown", "")
	case err != nil:
		return storeFailure("look up used code", err)
	}
	if used.TraceID != "" {
		s.useTrace(c, used.TraceID)
	} else {
		s.traceOfSession(c, used.SessionID)
	}
	if err := s.store.DeleteSession(ctx, used.SessionID); err != nil && !errors.Is(err, store.ErrNotFound) {
		return storeFailure("revoke replayed code's tokens", err)
	}
	if used.Refusal != "" {
		s.logger(ctx).Info("code presented again after a refused redemption spent it", "session", used.SessionID, "refusal", used.Refusal)
		return named(tokenError(ErrInvalidGrant, "the code was already spent by an earlier token request, which was refused because %s, so no token was issued from it; codes are single use: sign in again", refusalCause(used.Refusal)),
			"code_burned", fmt.Sprintf("An earlier token request with this code was refused (%s), which spends the code without issuing any token; nothing was revoked. Fix what made that request fail (its step above says what), then the person signs in again.", used.Refusal))
	}
	s.logger(ctx).Warn("code presented twice; the tokens issued from it are revoked", "session", used.SessionID)
	e := tokenError(ErrInvalidGrant, "the code was already used: codes are single use, and the tokens issued from it are now revoked; sign in again")
	e.Failure = "code_replayed"
	e.Fix = "A code was presented twice: either the client retried its token request, or someone else holds a copy of the code (check for proxies or logs that record URLs). The person must sign in again."
	return e
}

// refusalCause says, to the client, why a redemption that spent a code was refused, from the
// failure's name in the trace.
func refusalCause(failure string) string {
	switch failure {
	case "redirect_uri_mismatch":
		return "its redirect_uri was not the one of the authorization request"
	case "redirect_uri_not_registered":
		return "its redirect_uri was not registered for the application"
	case "redirect_uri_missing":
		return "it had no redirect_uri"
	case "code_other_client":
		return "another client presented the code"
	case "code_expired":
		return "the code had expired"
	case "pkce_verifier_missing":
		return "it had no code_verifier"
	case "pkce_verifier_wrong":
		return "its code_verifier did not match the code_challenge"
	case "pkce_verifier_malformed":
		return "its code_verifier was not 43 to 128 characters of A-Z, a-z, 0-9 and -._~"
	case "pkce_unexpected_verifier":
		return "it sent a code_verifier, and the authorization request had no code_challenge"
	case "session_revoked":
		return "the sign-in had been revoked"
	}
	return "of " + failure
}

// refresh is the refresh_token grant, which go-oauth2 gets wrong (no client check, scope
// widening, get-then-delete): the refresh token must be the client's, the scope may only narrow,
// it is taken atomically and rotated, and one presented twice revokes its whole family
// (RFC 6819 §5.2.2.3, OAuth 2.0 Security BCP §4.14).
func (s *Server) refresh(c echo.Context, tr *TokenRequest) error {
	if tr.RefreshToken == "" {
		return named(tokenError(ErrInvalidRequest, "refresh_token is missing"), "refresh_token_missing", "")
	}
	app, terr := s.authenticateClient(c, tr)
	if terr != nil {
		return terr
	}
	ctx := c.Request().Context()
	s.beginStep(c, "", "refresh", store.PartClient, store.PartBridge, "POST /oauth/token (grant_type=refresh_token)")
	// Everything that can refuse the request is checked before the token is taken, so that a
	// client's mistake (another client, a wider scope) or GitLab being down does not burn it.
	seen, err := s.tokens.GetByRefresh(ctx, tr.RefreshToken)
	if err != nil {
		return storeFailure("get refresh token", err)
	}
	if seen == nil {
		return s.reusedRefresh(c, tr.RefreshToken)
	}
	s.traceOfSession(c, seen.GetUserID())
	if e := checkRefresh(seen, app, tr); e != nil {
		return e
	}
	sess, err := s.store.GetSession(ctx, seen.GetUserID())
	if errors.Is(err, store.ErrNotFound) {
		return named(tokenError(ErrInvalidGrant, "the sign-in this refresh token belongs to was revoked or has expired; sign in again"), "session_revoked", "")
	}
	if err != nil {
		return storeFailure("get session", err)
	}
	// The person must still be welcome at GitLab, and still admitted to the application: a
	// refresh must not outlive a block there or a change of the application's rules.
	body, err := s.upstreamUser(ctx, sess)
	if err == nil {
		if reason, fix := checkPolicy(app, PolicyUser{Username: sess.Username, External: app.DenyExternal && isExternal(body), Groups: sess.Groups}); reason != "" {
			_ = s.store.DeleteSession(ctx, sess.ID)
			return named(tokenError(ErrInvalidGrant, "%s; sign in again", reason), "user_not_allowed", fix)
		}
	}
	if err != nil {
		var ae *APIError
		if !errors.As(err, &ae) {
			return err
		}
		if ae.Status == http.StatusUnauthorized || ae.Status == http.StatusForbidden {
			_ = s.store.DeleteSession(ctx, sess.ID)
			return named(tokenError(ErrInvalidGrant, "GitLab no longer accepts this person (%s); sign in again", gitlabapiMessage(ae)), ae.Failure, ae.Fix)
		}
		e := named(tokenError(ErrTemporarilyUnavailable, "the bridge could not ask GitLab whether this person may still sign in (%s); try again shortly, the refresh token stays valid", gitlabapiMessage(ae)), ae.Failure, ae.Fix)
		e.Cause = err
		return e
	}
	ti, err := s.store.TakeRefresh(ctx, tr.RefreshToken, s.cfg.RefreshTokenTTL)
	if err != nil {
		return storeFailure("take refresh token", err)
	}
	if ti == nil {
		// Another request took it while this one checked: a reuse.
		return s.reusedRefresh(c, tr.RefreshToken)
	}
	if ti.GetUserID() != sess.ID {
		return named(tokenError(ErrInvalidGrant, "the refresh token changed while it was checked; sign in again"), "refresh_token_replayed", "")
	}
	if e := checkRefresh(ti, app, tr); e != nil {
		return e
	}
	scope := ti.GetScope()
	if tr.Scope != "" {
		scope = strings.Join(ParseScope(tr.Scope), " ")
	}
	now := time.Now()
	next := models.NewToken()
	next.SetClientID(app.ID)
	next.SetUserID(sess.ID)
	next.SetScope(scope)
	next.SetAccess(accessTokenFor(sess.ID))
	next.SetAccessCreateAt(now)
	next.SetAccessExpiresIn(s.cfg.AccessTokenTTL)
	next.SetRefresh(randomToken())
	next.SetRefreshCreateAt(now)
	next.SetRefreshExpiresIn(s.cfg.RefreshTokenTTL)
	// The family lives as long as its newest refresh token; a family revoked while this request
	// ran stays revoked, and the tokens are not issued.
	if err := s.store.RenewSession(ctx, sess, s.cfg.RefreshTokenTTL); errors.Is(err, store.ErrNotFound) {
		return named(tokenError(ErrInvalidGrant, "the sign-in this refresh token belongs to was revoked; sign in again"), "session_revoked",
			"An administrator revoked the application's grants, or a token of this sign-in was reused, while the refresh was under way.")
	} else if err != nil {
		return storeFailure("extend session", err)
	}
	if err := s.tokens.Create(ctx, next); err != nil {
		return storeFailure("save tokens", err)
	}
	s.stepOK(c, http.StatusOK, map[string]string{"scope": scope})
	s.logger(ctx).Info("token refreshed", "client_id", app.ID, "gitlab_user_id", sess.GitLabUserID)
	return s.writeToken(c, next, sess, false)
}

// checkRefresh refuses a refresh token of another client, or a scope wider than it was granted.
func checkRefresh(ti oauth2.TokenInfo, app *store.Application, tr *TokenRequest) *Error {
	if ti.GetClientID() != app.ID {
		return named(tokenError(ErrInvalidGrant, "the refresh token was issued to another client"), "refresh_token_other_client", "")
	}
	if _, wider := grantScope(tr.Scope, ParseScope(ti.GetScope())); len(wider) > 0 {
		return named(tokenError(ErrInvalidScope, "the refresh token does not cover the scope %s; a refresh may only keep or narrow the scope (%s)",
			strings.Join(wider, " "), ti.GetScope()), "scope_widened", "")
	}
	return nil
}

// reusedRefresh answers a refresh token that is not stored: if it was used before, someone holds
// a copy, and the whole family is revoked.
func (s *Server) reusedRefresh(c echo.Context, refresh string) error {
	ctx := c.Request().Context()
	used, err := s.store.UsedBy(ctx, store.TokenKey(refresh))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return named(tokenError(ErrInvalidGrant, "the refresh token is unknown, expired or revoked; sign in again"), "refresh_token_unknown", "")
	case err != nil:
		return storeFailure("look up used refresh token", err)
	}
	sid := used.SessionID
	s.traceOfSession(c, sid)
	if err := s.store.DeleteSession(ctx, sid); err != nil && !errors.Is(err, store.ErrNotFound) {
		return storeFailure("revoke token family", err)
	}
	s.logger(ctx).Warn("refresh token presented twice; its family is revoked", "session", sid)
	return named(tokenError(ErrInvalidGrant, "the refresh token was already used: refresh tokens are single use, so every token of this sign-in is now revoked; sign in again"), "refresh_token_replayed",
		"A refresh token was presented twice: the client retried, or someone else holds a copy of it. The person must sign in again.")
}

// writeToken answers a token request in GitLab's shape, with an ID token when the scope has
// openid (and the nonce of the authorization only on the code grant, as OpenID Connect says).
func (s *Server) writeToken(c echo.Context, ti oauth2.TokenInfo, sess *store.Session, withNonce bool) error {
	resp := tokenResponse{
		AccessToken:  ti.GetAccess(),
		TokenType:    "Bearer",
		ExpiresIn:    int32(ti.GetAccessExpiresIn() / time.Second),
		RefreshToken: ti.GetRefresh(),
		Scope:        ti.GetScope(),
		CreatedAt:    ti.GetAccessCreateAt().Unix(),
	}
	if hasScope(ti.GetScope(), "openid") {
		tok, err := s.idToken(c.Request().Context(), sess, ti.GetClientID(), ti.GetScope(), withNonce)
		if err != nil {
			return err
		}
		resp.IDToken = tok
	}
	noStore(c.Response().Header())
	return c.JSON(http.StatusOK, resp)
}

// invalidClient is one answer for an unknown client and a wrong secret, so that the answer does
// not tell which client_ids exist.
func invalidClient() *Error {
	return tokenError(ErrInvalidClient, "client authentication failed: the client_id is unknown or the secret is wrong; check Mattermost's GitLab Application ID and Secret against `ssobridge apps show`")
}

// named gives an error its failure name and fix for the sign-in's trace.
func named(e *Error, failure, fix string) *Error {
	e.Failure, e.Fix = failure, fix
	return e
}

func (s *Server) authenticateClient(c echo.Context, tr *TokenRequest) (*store.Application, error) {
	if tr.ClientID == "" {
		return nil, named(tokenError(ErrInvalidClient, "no client authentication: send client_id and client_secret in the body, or HTTP Basic credentials"), "client_auth_missing", "")
	}
	if len(tr.ClientID) > maxClientID {
		return nil, named(invalidClient(), "unknown_client", "The client_id is longer than any application ID: copy the ID from `ssobridge apps list` into the client.")
	}
	app, err := s.store.GetApp(c.Request().Context(), tr.ClientID)
	if errors.Is(err, store.ErrNotFound) {
		// Spend the time a hash comparison would, so that timing does not tell either.
		store.VerifySecret(store.HashSecret("unknown client"), tr.ClientSecret)
		return nil, named(invalidClient(), "unknown_client", fmt.Sprintf("No application has the client_id %q: copy the ID from `ssobridge apps list` into the client (Mattermost: GitLab Application ID).", truncate(tr.ClientID, 80)))
	}
	if err != nil {
		return nil, storeFailure("get application", err)
	}
	if app.Confidential {
		if !store.VerifySecret(app.SecretHash, tr.ClientSecret) {
			return nil, named(invalidClient(), "wrong_client_secret", fmt.Sprintf("The secret sent for %s is not its secret: copy it again into the client (Mattermost: GitLab Application Secret), or make a new one with `ssobridge apps rotate-secret %s`.", app.Name, app.ID))
		}
		return app, nil
	}
	if tr.ClientSecret != "" {
		return nil, named(invalidClient(), "public_client_with_secret", fmt.Sprintf("%s is a public application, which has no secret: remove the secret from the client, or make the application confidential with `ssobridge apps update %s --confidential`.", app.Name, app.ID))
	}
	return app, nil
}

// explainRedemption turns the errors of go-oauth2's manager, which issues the pair once
// checkCode has passed, into ones that say what went wrong.
func explainRedemption(err error) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		// The session went (revoked) between the callback and this request: the tokens just
		// stored belong to no one and are dead.
		return named(tokenError(ErrInvalidGrant, "the sign-in this code belongs to was revoked; sign in again"), "session_revoked",
			"An administrator revoked the application's grants, or the code was replayed, while this sign-in was under way.")
	case errors.Is(err, oerrors.ErrInvalidCodeChallenge):
		return named(tokenError(ErrInvalidGrant, "code_verifier does not match the code_challenge of the authorization request"), "pkce_verifier_wrong", "")
	case errors.Is(err, oerrors.ErrMissingCodeVerifier):
		return named(tokenError(ErrInvalidRequest, "code_verifier is missing; the authorization request had a code_challenge"), "pkce_verifier_missing", "")
	case errors.Is(err, oerrors.ErrInvalidRedirectURI):
		// The application's redirect URIs changed while the person signed in.
		return named(tokenError(ErrInvalidGrant, "redirect_uri is not registered for this application"), "redirect_uri_not_registered",
			"The application's redirect URIs changed during the sign-in (`ssobridge apps update`): the person must sign in again.")
	case errors.Is(err, oerrors.ErrInvalidClient):
		return named(invalidClient(), "unknown_client", "")
	case errors.Is(err, oerrors.ErrInvalidAuthorizeCode):
		return named(tokenError(ErrInvalidGrant, "the code is unknown or expired; sign in again"), "code_unknown", "")
	}
	return storeFailure("redeem code", err)
}

// withRedemptionRecord gives redeemingStore, for the manager, the code record the handler took
// (rd.info), and asks it to record there the session of the tokens it stores.
func withRedemptionRecord(ctx context.Context, rd *redemption) context.Context {
	return context.WithValue(ctx, redemptionKey{}, rd)
}
