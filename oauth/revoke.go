package oauth

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ssobridge/ssobridge/oauth/signin"
	"github.com/ssobridge/ssobridge/oauth/store"
)

// bearerSession finds the access token of an API request and the session it belongs to, in one
// read of the store; a token that is missing, unknown, expired or whose sign-in was revoked is a
// 401.
func (s *Server) bearerSession(c echo.Context) (*store.TokenPair, *store.Session, error) {
	ctx := c.Request().Context()
	access := bearerToken(c.Request())
	if access == "" {
		return nil, nil, &Error{Failure: signin.TokenMissing, Cause: errors.New("no access token")}
	}
	found, err := s.store.GetAccess(ctx, store.RefOf(access))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, &Error{Failure: signin.TokenUnknown, Cause: errors.New("access token unknown")}
	}
	if err != nil {
		// The store did not answer: the token may be good, and a 401 would end the person's
		// sign-in at Mattermost for a fault of the bridge's.
		return nil, nil, storeFailure("get access token", err)
	}
	s.useTrace(c, found.TraceID)
	if found.Session == nil || found.Pair == nil {
		return nil, nil, &Error{Failure: signin.SessionRevoked, Cause: errors.New("the token's sign-in was revoked or has expired")}
	}
	p, sess := found.Pair, found.Session
	if now := time.Now(); now.After(p.AccessExpiresAt) {
		// Kept past its expiry, with its sign-in, for this: the trace learns why the client was
		// refused. Detail is for the trace and the log: GitLab's API answers a 401 with its bare
		// message.
		detail := fmt.Sprintf("the access token expired at %s, %s ago (it lived %s)", p.AccessExpiresAt.UTC().Format(time.RFC3339),
			now.Sub(p.AccessExpiresAt).Round(time.Second), p.AccessExpiresAt.Sub(p.IssuedAt).Round(time.Second))
		return nil, nil, &Error{
			Failure:     signin.TokenExpired,
			Description: detail,
			Fix:         "The client used an access token after it expired (SSOBRIDGE_ACCESS_TOKEN_TTL): it must refresh it or sign the person in again. Mattermost reads the user right after the token exchange, so for Mattermost check that its clock and the bridge's agree.",
			Cause:       errors.New("access token expired"),
		}
	}
	// A deleted application's tokens end with it, whatever is left of its sign-ins (ssobridge
	// apps delete revokes them too, but a store that lost the revocation half-way must not keep
	// them working). Applications are cached (SSOBRIDGE_APP_CACHE_TTL), so this costs no round
	// trip on most requests.
	if _, err := s.store.GetApp(ctx, sess.ClientID); errors.Is(err, store.ErrNotFound) {
		return nil, nil, &Error{
			Failure: signin.ApplicationDeleted,
			Cause:   errors.New("the token's application was deleted"),
		}
	} else if err != nil {
		return nil, nil, storeFailure("get application", err)
	}
	return p, sess, nil
}

// lookupToken finds an access or refresh token (in the order token_type_hint suggests), alive
// and with its session; nil when there is none.
func (s *Server) lookupToken(c echo.Context, token, hint string) (p *store.TokenPair, isRefresh bool, sess *store.Session, err error) {
	ctx := c.Request().Context()
	ref := store.RefOf(token)
	lookups := []bool{false, true}
	if hint == "refresh_token" {
		lookups = []bool{true, false}
	}
	for _, refresh := range lookups {
		var f *store.Found
		if refresh {
			f, err = s.store.GetRefresh(ctx, ref)
		} else {
			f, err = s.store.GetAccess(ctx, ref)
		}
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, false, nil, storeFailure("get token", err)
		}
		if f.Pair == nil || f.Session == nil || expired(f.Pair, refresh) {
			return nil, false, nil, nil
		}
		return f.Pair, refresh, f.Session, nil
	}
	return nil, false, nil, nil
}

func expired(p *store.TokenPair, refresh bool) bool {
	now := time.Now()
	if refresh {
		return !p.RefreshExpiresAt.IsZero() && now.After(p.RefreshExpiresAt)
	}
	return now.After(p.AccessExpiresAt)
}

// tokenQuestion is a client asking about a token (revocation, introspection): the request, the
// authenticated client, and the token with its session if it is alive.
type tokenQuestion struct {
	tr      *TokenRequest
	app     *store.Application
	pair    *store.TokenPair
	refresh bool
	sess    *store.Session
}

func (s *Server) tokenQuestion(c echo.Context, purpose string) (*tokenQuestion, error) {
	tr, perr := ParseTokenRequest(c.Request())
	if perr != nil {
		return nil, perr
	}
	if tr.Token == "" {
		return nil, fail(signin.TokenMissing, "token is missing; send the access or refresh token to %s", purpose)
	}
	app, err := s.authenticateClient(c, tr)
	if err != nil {
		return nil, err
	}
	q := &tokenQuestion{tr: tr, app: app}
	q.pair, q.refresh, q.sess, err = s.lookupToken(c, tr.Token, tr.TokenTypeHint)
	return q, err
}

// revoke is RFC 7009 token revocation. An unknown token is answered 200 like a revoked one, so
// the answer tells nothing. Revoking a refresh token revokes the whole grant it belongs to, as
// RFC 7009 §2.1 asks; revoking an access token revokes that token.
func (s *Server) revoke(c echo.Context) error {
	q, err := s.tokenQuestion(c, "revoke")
	if err != nil {
		return err
	}
	app, tr, p, isRefresh, sess := q.app, q.tr, q.pair, q.refresh, q.sess
	if p != nil {
		if p.ClientID != app.ID {
			// RFC 7009 §2.2.1 answers with a §5.2 error, so 400 as for every such code (Doorkeeper
			// says 403); the token stays valid for the client it belongs to.
			return fail(signin.TokenOtherClient, "the token was issued to another client; a client may revoke only its own tokens")
		}
		ctx := c.Request().Context()
		if isRefresh {
			// RFC 7009 §2.1: revoking a refresh token revokes the grant, every token of it.
			err = s.store.RevokeSession(ctx, sess.ID)
			if errors.Is(err, store.ErrNotFound) {
				err = nil
			}
		} else {
			err = s.store.RevokeAccess(ctx, store.RefOf(tr.Token))
		}
		if err != nil {
			return storeFailure("revoke token", err)
		}
		s.logger(ctx).Info("token revoked", "client_id", app.ID, "refresh", isRefresh, "gitlab_user_id", sess.GitLabUserID)
	}
	noStore(c.Response().Header())
	return c.JSON(http.StatusOK, struct{}{})
}

// introspectResponse is RFC 7662's answer.
type introspectResponse struct {
	Active    bool   `json:"active"`
	Scope     string `json:"scope,omitempty"`
	ClientID  string `json:"client_id,omitempty"`
	Username  string `json:"username,omitempty"`
	TokenType string `json:"token_type,omitempty"`
	Exp       int64  `json:"exp,omitempty"`
	Iat       int64  `json:"iat,omitempty"`
	Sub       string `json:"sub,omitempty"`
	Aud       string `json:"aud,omitempty"`
	Iss       string `json:"iss,omitempty"`
}

// introspect is RFC 7662 token introspection. A client learns only about its own tokens: any
// other token is inactive to it, so that introspection cannot probe other clients' tokens.
func (s *Server) introspect(c echo.Context) error {
	q, err := s.tokenQuestion(c, "introspect")
	if err != nil {
		return err
	}
	app, p, isRefresh, sess := q.app, q.pair, q.refresh, q.sess
	noStore(c.Response().Header())
	if p == nil || p.ClientID != app.ID {
		return c.JSON(http.StatusOK, introspectResponse{Active: false})
	}
	resp := introspectResponse{Active: true, Scope: p.Scope, ClientID: p.ClientID, Username: sess.Username,
		Sub: subject(sess), Aud: p.ClientID, Iss: s.issuer(), Iat: p.IssuedAt.Unix()}
	if isRefresh {
		resp.TokenType = "refresh_token"
		if !p.RefreshExpiresAt.IsZero() {
			resp.Exp = p.RefreshExpiresAt.Unix()
		}
	} else {
		resp.TokenType = "Bearer"
		resp.Exp = p.AccessExpiresAt.Unix()
	}
	return c.JSON(http.StatusOK, resp)
}

// tokenInfo is GitLab's (Doorkeeper's) GET /oauth/token/info for the bearer token.
func (s *Server) tokenInfo(c echo.Context) error {
	p, sess, err := s.bearerSession(c)
	if err != nil {
		return err // a refused token is a 401 with a Bearer challenge; a store that did not answer a 503
	}
	left := time.Until(p.AccessExpiresAt)
	noStore(c.Response().Header())
	return c.JSON(http.StatusOK, map[string]any{
		"resource_owner_id":  sess.GitLabUserID,
		"scope":              strings.Fields(p.Scope),
		"expires_in":         int64(left / time.Second),
		"expires_in_seconds": int64(left / time.Second),
		"application":        map[string]string{"uid": p.ClientID},
		"created_at":         p.IssuedAt.Unix(),
	})
}
