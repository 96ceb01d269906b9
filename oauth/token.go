package oauth

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-oauth2/oauth2/v4"
	oerrors "github.com/go-oauth2/oauth2/v4/errors"
	"github.com/labstack/echo/v4"

	"github.com/ssobridge/ssobridge/oauth/store"
)

// TokenRequest is a parsed POST /oauth/token.
type TokenRequest struct {
	GrantType    string
	Code         string
	RedirectURI  string
	CodeVerifier string
	ClientID     string
	ClientSecret string
	// BasicAuth is true when the credentials came in an HTTP Basic header.
	BasicAuth bool
}

// credentialParams must never travel in a URL, where proxies and access logs keep them.
var credentialParams = []string{"client_secret", "code", "code_verifier", "refresh_token", "password"}

// ParseTokenRequest reads a token request's body and client credentials. Basic credentials are
// form-urlencoded before base64 (RFC 6749 §2.3.1), as golang.org/x/oauth2 sends them.
func ParseTokenRequest(r *http.Request) (*TokenRequest, *Error) {
	for _, k := range credentialParams {
		if r.URL.Query().Has(k) {
			return nil, tokenError(ErrInvalidRequest, "%s was sent in the URL query; send it in the form body, where it is not logged", k)
		}
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, tokenError(ErrInvalidRequest, "the body must be a form: Content-Type application/x-www-form-urlencoded")
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxFormBody))
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return nil, tokenError(ErrInvalidRequest, "the body is larger than %d KiB", maxFormBody>>10)
		}
		return nil, tokenError(ErrInvalidRequest, "the body could not be read")
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, tokenError(ErrInvalidRequest, "the body is not valid form encoding")
	}
	for k, vs := range form {
		if len(vs) > 1 {
			return nil, tokenError(ErrInvalidRequest, "the parameter %s is given %d times; give it once", truncate(k, 40), len(vs))
		}
	}
	tr := &TokenRequest{
		GrantType:    form.Get("grant_type"),
		Code:         form.Get("code"),
		RedirectURI:  form.Get("redirect_uri"),
		CodeVerifier: form.Get("code_verifier"),
		ClientID:     form.Get("client_id"),
		ClientSecret: form.Get("client_secret"),
	}
	if auth := r.Header.Get("Authorization"); auth != "" {
		id, secret, e := parseBasic(auth)
		if e != nil {
			return nil, e
		}
		if tr.ClientSecret != "" {
			return nil, tokenError(ErrInvalidRequest, "client credentials were sent both in the Authorization header and in the body; use one way only")
		}
		if tr.ClientID != "" && tr.ClientID != id {
			return nil, tokenError(ErrInvalidRequest, "client_id in the body differs from the one in the Authorization header")
		}
		tr.ClientID, tr.ClientSecret, tr.BasicAuth = id, secret, true
	}
	return tr, nil
}

func parseBasic(header string) (id, secret string, e *Error) {
	scheme, value, _ := strings.Cut(header, " ")
	if !strings.EqualFold(scheme, "Basic") {
		return "", "", tokenError(ErrInvalidClient, "the Authorization header uses %q; the token endpoint takes HTTP Basic client credentials or client_id and client_secret in the body", truncate(scheme, 20))
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(value))
	if err != nil {
		return "", "", tokenError(ErrInvalidClient, "the Basic credentials are not valid base64")
	}
	rawID, rawSecret, ok := strings.Cut(string(raw), ":")
	if !ok {
		return "", "", tokenError(ErrInvalidClient, "the Basic credentials have no colon between client_id and secret")
	}
	if id, err = url.QueryUnescape(rawID); err == nil {
		secret, err = url.QueryUnescape(rawSecret)
	}
	if err != nil {
		return "", "", tokenError(ErrInvalidClient, "the Basic credentials are not form-urlencoded as RFC 6749 §2.3.1 requires")
	}
	return id, secret, nil
}

// tokenResponse is GitLab's token answer. expires_in fits Mattermost's int32 and token_type
// lower-cases to "bearer", as Mattermost checks.
type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int32  `json:"expires_in"`
	Scope       string `json:"scope"`
	CreatedAt   int64  `json:"created_at"`
}

func (s *Server) token(c echo.Context) error {
	tr, perr := ParseTokenRequest(c.Request())
	if perr != nil {
		return perr
	}
	switch {
	case tr.GrantType == "":
		return tokenError(ErrInvalidRequest, "grant_type is missing; use grant_type=authorization_code")
	case tr.GrantType != string(oauth2.AuthorizationCode):
		return tokenError(ErrUnsupportedGrantType, "grant_type %q is not supported; use authorization_code", truncate(tr.GrantType, 40))
	case tr.RedirectURI == "":
		return tokenError(ErrInvalidRequest, "redirect_uri is missing; send the redirect_uri of the authorization request")
	case tr.Code == "":
		return tokenError(ErrInvalidRequest, "code is missing; send the code the authorization returned to redirect_uri")
	}
	app, terr := s.authenticateClient(c, tr)
	if terr != nil {
		return terr
	}

	rd := &redemption{}
	ctx := withApp(c.Request().Context(), app)
	ctx = withRedemptionRecord(ctx, rd)
	ti, err := s.manager.GenerateAccessToken(ctx, oauth2.AuthorizationCode, &oauth2.TokenGenerateRequest{
		ClientID:     app.ID,
		ClientSecret: tr.ClientSecret,
		RedirectURI:  tr.RedirectURI,
		Code:         tr.Code,
		CodeVerifier: tr.CodeVerifier,
		Request:      c.Request(),
	})
	if err != nil {
		return explainRedemption(err, rd, tr)
	}
	s.log.Info("token issued", "client_id", app.ID, "grant_type", tr.GrantType)
	noStore(c.Response().Header())
	return c.JSON(http.StatusOK, tokenResponse{
		AccessToken: ti.GetAccess(),
		TokenType:   "Bearer",
		ExpiresIn:   int32(ti.GetAccessExpiresIn() / time.Second),
		Scope:       ti.GetScope(),
		CreatedAt:   ti.GetAccessCreateAt().Unix(),
	})
}

// invalidClient is one answer for an unknown client and a wrong secret, so that the answer does
// not tell which client_ids exist.
func invalidClient() *Error {
	return tokenError(ErrInvalidClient, "client authentication failed: the client_id is unknown or the secret is wrong; check Mattermost's GitLab Application ID and Secret against `ssobridge apps show`")
}

func (s *Server) authenticateClient(c echo.Context, tr *TokenRequest) (*store.Application, error) {
	if tr.ClientID == "" {
		return nil, tokenError(ErrInvalidClient, "no client authentication: send client_id and client_secret in the body, or HTTP Basic credentials")
	}
	if len(tr.ClientID) > maxClientID {
		return nil, invalidClient()
	}
	app, err := s.store.GetApp(c.Request().Context(), tr.ClientID)
	if errors.Is(err, store.ErrNotFound) {
		// Spend the time a hash comparison would, so that timing does not tell either.
		store.VerifySecret(store.HashSecret("unknown client"), tr.ClientSecret)
		return nil, invalidClient()
	}
	if err != nil {
		return nil, storeFailure("get application", err)
	}
	if app.Confidential {
		if !store.VerifySecret(app.SecretHash, tr.ClientSecret) {
			return nil, invalidClient()
		}
		return app, nil
	}
	if tr.ClientSecret != "" {
		return nil, invalidClient()
	}
	if tr.CodeVerifier == "" {
		return nil, tokenError(ErrInvalidRequest, "the application %s is public and must prove itself with PKCE: send code_verifier", app.Name)
	}
	return app, nil
}

// explainRedemption turns go-oauth2's errors into ones that say what the client got wrong. The
// manager gives one error for every bad code; the record it consumed tells which case it was.
func explainRedemption(err error, rd *redemption, tr *TokenRequest) error {
	switch {
	case errors.Is(err, oerrors.ErrInvalidAuthorizeCode):
		ti := rd.info
		switch {
		case ti == nil:
			return tokenError(ErrInvalidGrant, "the code is unknown, expired or already used: codes are single use and expire after 10 minutes; sign in again")
		case time.Now().After(ti.GetCodeCreateAt().Add(ti.GetCodeExpiresIn())):
			return tokenError(ErrInvalidGrant, "the code has expired (codes expire after 10 minutes); sign in again")
		case ti.GetClientID() != tr.ClientID:
			return tokenError(ErrInvalidGrant, "the code was issued to another client; it is now revoked")
		default:
			return tokenError(ErrInvalidGrant, "redirect_uri does not match the one of the authorization request; send the same redirect_uri (Mattermost's Site URL + /signup/gitlab/complete)")
		}
	case errors.Is(err, oerrors.ErrMissingCodeVerifier):
		if rd.info != nil && rd.info.GetCodeChallenge() == "" {
			return tokenError(ErrInvalidGrant, "code_verifier was sent but the authorization request had no code_challenge")
		}
		return tokenError(ErrInvalidRequest, "code_verifier is missing; the authorization request had a code_challenge")
	case errors.Is(err, oerrors.ErrInvalidCodeChallenge):
		return tokenError(ErrInvalidGrant, "code_verifier does not match the code_challenge of the authorization request")
	case errors.Is(err, oerrors.ErrInvalidRedirectURI):
		return tokenError(ErrInvalidGrant, "redirect_uri is not registered for this application")
	case errors.Is(err, oerrors.ErrInvalidClient):
		return invalidClient()
	}
	return storeFailure("redeem code", err)
}

// withRedemptionRecord asks redeemingStore to record the code record it consumes into rd.
func withRedemptionRecord(ctx context.Context, rd *redemption) context.Context {
	return context.WithValue(ctx, redemptionKey{}, rd)
}
