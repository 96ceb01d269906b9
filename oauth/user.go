package oauth

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"golang.org/x/oauth2"

	"github.com/ssobridge/ssobridge/gitlabapi"
	"github.com/ssobridge/ssobridge/oauth/store"
)

// bearerToken returns the access token of an API request: the Authorization header, else the
// access_token query parameter that GitLab also accepts.
func bearerToken(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, value, _ := strings.Cut(h, " ")
		if strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(value)
		}
		return ""
	}
	return r.URL.Query().Get("access_token")
}

// user answers /api/v4/user with GitLab's own body for the person the token belongs to, read
// from GitLab with the token the bridge holds for them (refreshed at GitLab when expired).
func (s *Server) user(c echo.Context) error {
	ctx := c.Request().Context()
	access := bearerToken(c.Request())
	if access == "" {
		return &APIError{Status: http.StatusUnauthorized, Cause: errors.New("no access token")}
	}
	ti, err := s.manager.LoadAccessToken(ctx, access)
	if err != nil || ti == nil {
		return &APIError{Status: http.StatusUnauthorized, Cause: errors.New("access token unknown or expired")}
	}
	if !hasScope(ti.GetScope(), "read_user", "api") {
		return &APIError{Status: http.StatusForbidden, Detail: "the token's scope does not include read_user"}
	}
	sess, err := s.store.GetSession(ctx, ti.GetUserID())
	if errors.Is(err, store.ErrNotFound) {
		return &APIError{Status: http.StatusUnauthorized, Cause: errors.New("the token's session has expired")}
	}
	if err != nil {
		return storeFailure("get session", err)
	}
	old := &oauth2.Token{AccessToken: sess.Token.AccessToken, RefreshToken: sess.Token.RefreshToken,
		TokenType: sess.Token.TokenType, Expiry: sess.Token.Expiry}
	u, body, tok, err := s.upstream.User(ctx, s.upstream.TokenSource(ctx, old))
	if err != nil {
		return upstreamAPIError(err)
	}
	if u.ID != sess.GitLabUserID {
		return &APIError{Status: http.StatusBadGateway, Detail: "GitLab returned another user than the one who signed in",
			Cause: errors.New("upstream user id changed")}
	}
	if tok.AccessToken != old.AccessToken {
		sess.Token = store.UpstreamToken{AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, TokenType: tok.TokenType, Expiry: tok.Expiry}
		sess.User, sess.UserFetchedAt = body, time.Now().UTC()
		if err := s.store.UpdateSession(ctx, sess); err != nil && !errors.Is(err, store.ErrNotFound) {
			// The refreshed token is lost; the next request refreshes again, so serve this one.
			s.log.Warn("saving refreshed GitLab token failed", "cause", err.Error())
		}
	}
	noStore(c.Response().Header())
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, body)
}

// upstreamAPIError maps a failed upstream call to what the client sees: GitLab's refusals of the
// person are passed on, the bridge's own trouble with GitLab is a 502 or 504.
func upstreamAPIError(err error) error {
	var ue *gitlabapi.UpstreamError
	if !errors.As(err, &ue) {
		return err
	}
	switch {
	case ue.Kind == gitlabapi.KindRejected && (ue.Status == http.StatusUnauthorized || ue.Call == gitlabapi.CallRefresh && ue.Code == "invalid_grant"):
		return &APIError{Status: http.StatusUnauthorized, Cause: err}
	case ue.Kind == gitlabapi.KindRejected && ue.Status == http.StatusForbidden:
		detail := strings.TrimPrefix(ue.Message, "403 Forbidden - ")
		return &APIError{Status: http.StatusForbidden, Detail: detail, Cause: err}
	case ue.Kind == gitlabapi.KindTimeout:
		return &APIError{Status: http.StatusGatewayTimeout, Detail: "GitLab did not answer in time", Cause: err}
	}
	return &APIError{Status: http.StatusBadGateway, Detail: "the bridge could not read the user from GitLab", Cause: err}
}
