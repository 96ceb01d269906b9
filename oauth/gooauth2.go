package oauth

// This file is the bridge's one use of github.com/go-oauth2/oauth2/v4: its manager issues the
// bridge's codes and tokens and checks a code's redemption (client, redirect URI, PKCE), and
// nothing of the library reaches the store. Each call gets a manager of its own, whose token
// store is a ledger of that call alone: it hands the manager the code the caller took, and keeps
// what the manager creates, which the caller turns into the bridge's own records (store.Code,
// store.TokenPair) and saves itself, in the one atomic step the store offers for it. So the
// manager never reads or writes the store, and no call depends on another through it.
//
// The library's defaults that are unsafe are replaced here: validateURI matches redirect URIs
// exactly (its own accepts any host that ends with the registered one), codes and tokens are 256
// random bits (its own derive them from UUIDs through MD5), the client's secret is verified in
// constant time (clientInfo.VerifyPassword), and its refresh grant, which checks neither the
// client nor the scope, is not used (see Server.refresh).

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/go-oauth2/oauth2/v4"
	oerrors "github.com/go-oauth2/oauth2/v4/errors"
	"github.com/go-oauth2/oauth2/v4/manage"
	"github.com/go-oauth2/oauth2/v4/models"

	"github.com/ssobridge/ssobridge/oauth/signin"
	"github.com/ssobridge/ssobridge/oauth/store"
)

// mint issues codes and tokens with the configured lifetimes.
type mint struct {
	codeTTL, accessTTL, refreshTTL time.Duration
}

// manager returns a manager for one call by app, on ledger l.
func (m mint) manager(app *store.Application, l *ledger) *manage.Manager {
	mg := manage.NewManager()
	mg.MapClientStorage(oneClient{app})
	mg.MapTokenStorage(l)
	mg.MapAuthorizeGenerate(randomCodes{})
	mg.MapAccessGenerate(randomAccess{})
	mg.SetValidateURIHandler(func(_, requested string) error { return validateURI(app, requested) })
	mg.SetAuthorizeCodeExp(m.codeTTL)
	mg.SetAuthorizeCodeTokenCfg(&manage.Config{AccessTokenExp: m.accessTTL, RefreshTokenExp: m.refreshTTL, IsGenerateRefresh: !app.NoRefreshTokens})
	return mg
}

// signInTTL is how long a sign-in of app is kept once its code is issued: as long as its refresh
// token may live; without refresh tokens, until its code expires, and the store then keeps it
// with the access token redeemed from it, no longer (see store.SignIns.FinishCode).
func (m mint) signInTTL(app *store.Application) time.Duration {
	if app.NoRefreshTokens {
		return m.codeTTL
	}
	return m.refreshTTL
}

// issueCode makes the code of a sign-in (session sessionID) for the request pending of app: its
// value, for the client, and its record, for the store.
func (m mint) issueCode(ctx context.Context, app *store.Application, pending *store.Authorization, sessionID string) (string, *store.Code, error) {
	l := &ledger{}
	ti, err := m.manager(app, l).GenerateAuthToken(ctx, oauth2.Code, &oauth2.TokenGenerateRequest{
		ClientID:            app.ID,
		UserID:              sessionID,
		RedirectURI:         pending.RedirectURI,
		Scope:               pending.Scope,
		CodeChallenge:       pending.CodeChallenge,
		CodeChallengeMethod: oauth2.CodeChallengeMethod(pending.CodeChallengeMethod),
	})
	if err != nil {
		return "", nil, err
	}
	created := ti.GetCodeCreateAt().UTC()
	return ti.GetCode(), &store.Code{
		ClientID:            ti.GetClientID(),
		SessionID:           ti.GetUserID(),
		RedirectURI:         ti.GetRedirectURI(),
		Scope:               ti.GetScope(),
		CodeChallenge:       ti.GetCodeChallenge(),
		CodeChallengeMethod: string(ti.GetCodeChallengeMethod()),
		IssuedAt:            created,
		ExpiresAt:           created.Add(ti.GetCodeExpiresIn()),
		IndexUntil:          created.Add(ti.GetCodeExpiresIn() + m.accessTTL),
	}, nil
}

// issued is a token pair the mint made: the values for the client, the record for the store.
type issued struct {
	access, refresh string
	pair            *store.TokenPair
}

// redeem checks the redemption of the code whose record the caller took (value is the code as
// presented) as the manager does (the client and its secret, the redirect URI registered and the
// code's own, PKCE), and makes the pair of tokens it is redeemed for. Its errors are the
// manager's; explainRedemption says what they mean.
func (m mint) redeem(ctx context.Context, app *store.Application, value string, rec *store.Code, tr *TokenRequest) (*issued, error) {
	l := &ledger{code: &models.Token{
		ClientID: rec.ClientID, UserID: rec.SessionID, RedirectURI: rec.RedirectURI, Scope: rec.Scope, Code: value,
		CodeChallenge: rec.CodeChallenge, CodeChallengeMethod: rec.CodeChallengeMethod,
		// The caller has checked the code's expiry; the manager checks it again, so it is given
		// the code's lifetime from now on, which has not run out.
		CodeCreateAt: time.Now(), CodeExpiresIn: time.Until(rec.ExpiresAt) + time.Minute,
	}}
	ti, err := m.manager(app, l).GenerateAccessToken(ctx, oauth2.AuthorizationCode, &oauth2.TokenGenerateRequest{
		ClientID:     app.ID,
		ClientSecret: tr.ClientSecret,
		RedirectURI:  tr.RedirectURI,
		Code:         value,
		CodeVerifier: tr.CodeVerifier,
	})
	if err != nil {
		return nil, err
	}
	return pairOf(ti), nil
}

// newPair makes a pair of a sign-in: the next one of a sign-in whose refresh token was taken,
// and the first one of a code the store redeems in one step (its scope left to the store to
// set from the code, see store.SignIns.RedeemCode). The manager's
// refresh grant is not used (see the file's comment), only its generators and lifetimes. An
// application registered without refresh tokens since its refresh token was issued gets an access
// token alone (RFC 6749 §5.1 makes the refresh token optional), which ends the sign-in with it.
func (m mint) newPair(ctx context.Context, app *store.Application, sessionID, scope string) (*issued, error) {
	now := time.Now()
	ti := models.NewToken()
	ti.SetClientID(app.ID)
	ti.SetUserID(sessionID)
	ti.SetScope(scope)
	ti.SetAccessCreateAt(now)
	ti.SetAccessExpiresIn(m.accessTTL)
	if !app.NoRefreshTokens {
		ti.SetRefreshCreateAt(now)
		ti.SetRefreshExpiresIn(m.refreshTTL)
	}
	access, refresh, err := randomAccess{}.Token(ctx, &oauth2.GenerateBasic{Client: oneClient{app}.info(), UserID: sessionID, CreateAt: now, TokenInfo: ti}, !app.NoRefreshTokens)
	if err != nil {
		return nil, err
	}
	ti.SetAccess(access)
	ti.SetRefresh(refresh)
	return pairOf(ti), nil
}

// pairOf is the bridge's record of a pair the manager made.
func pairOf(ti oauth2.TokenInfo) *issued {
	created := ti.GetAccessCreateAt().UTC()
	p := &store.TokenPair{
		ClientID: ti.GetClientID(), SessionID: ti.GetUserID(), Scope: ti.GetScope(),
		AccessKey: store.TokenKey(ti.GetAccess()), IssuedAt: created, AccessExpiresAt: created.Add(ti.GetAccessExpiresIn()),
	}
	if r := ti.GetRefresh(); r != "" {
		p.RefreshKey = store.TokenKey(r)
		if exp := ti.GetRefreshExpiresIn(); exp > 0 {
			p.RefreshExpiresAt = ti.GetRefreshCreateAt().UTC().Add(exp)
		}
	}
	return &issued{access: ti.GetAccess(), refresh: ti.GetRefresh(), pair: p}
}

// explainRedemption turns the errors of the manager's redemption into ones that say what went
// wrong. It is called once checkCode has passed, so that most of them are the client's.
func explainRedemption(err error) error {
	switch {
	case errors.Is(err, oerrors.ErrInvalidCodeChallenge):
		return fail(signin.PKCEVerifierWrong, "code_verifier does not match the code_challenge of the authorization request")
	case errors.Is(err, oerrors.ErrMissingCodeVerifier):
		return fail(signin.PKCEVerifierMissing, "code_verifier is missing; the authorization request had a code_challenge")
	case errors.Is(err, oerrors.ErrInvalidRedirectURI):
		// The application's redirect URIs changed while the person signed in.
		return fail(signin.RedirectURINotRegistered, "redirect_uri is not registered for this application").
			withFix("The application's redirect URIs changed during the sign-in (`ssobridge apps update`): the person must sign in again.")
	case errors.Is(err, oerrors.ErrInvalidClient):
		return invalidClient(signin.UnknownClient, "")
	case errors.Is(err, oerrors.ErrInvalidAuthorizeCode):
		return fail(signin.CodeUnknown, "the code is unknown or expired; sign in again")
	}
	return err
}

// isClientError reports the manager's errors for a client or redirect URI that no longer checks
// out (an application changed during a sign-in).
func isClientError(err error) bool {
	return errors.Is(err, oerrors.ErrInvalidClient) || errors.Is(err, oerrors.ErrInvalidRedirectURI)
}

// validateURI replaces go-oauth2's DefaultValidateURI, which accepts any host that ends with the
// registered one and any path.
func validateURI(app *store.Application, requested string) error {
	if appRedirectURI(app, requested) {
		return nil
	}
	return oerrors.ErrInvalidRedirectURI
}

// ledger is the token store of one manager call (see the file's comment).
type ledger struct {
	code    *models.Token // what GetByCode answers
	created oauth2.TokenInfo
}

func (l *ledger) Create(_ context.Context, info oauth2.TokenInfo) error {
	l.created = info
	return nil
}

func (l *ledger) GetByCode(_ context.Context, code string) (oauth2.TokenInfo, error) {
	if l.code == nil || l.code.Code != code {
		return nil, nil
	}
	return l.code, nil
}

func (l *ledger) RemoveByCode(context.Context, string) error    { return nil }
func (l *ledger) RemoveByAccess(context.Context, string) error  { return nil }
func (l *ledger) RemoveByRefresh(context.Context, string) error { return nil }
func (l *ledger) GetByAccess(context.Context, string) (oauth2.TokenInfo, error) {
	return nil, nil
}
func (l *ledger) GetByRefresh(context.Context, string) (oauth2.TokenInfo, error) {
	return nil, nil
}

var _ oauth2.TokenStore = (*ledger)(nil)

// oneClient is the client store of one call: the application the caller already loaded.
type oneClient struct{ app *store.Application }

func (o oneClient) GetByID(_ context.Context, id string) (oauth2.ClientInfo, error) {
	if o.app == nil || o.app.ID != id {
		return nil, oerrors.ErrInvalidClient
	}
	return o.info(), nil
}

func (o oneClient) info() clientInfo { return clientInfo(o) }

// clientInfo is an application as go-oauth2 sees it. GetSecret is always empty: the secret is
// not stored, and go-oauth2 checks it through VerifyPassword, in constant time.
type clientInfo struct{ app *store.Application }

func (c clientInfo) GetID() string     { return c.app.ID }
func (c clientInfo) GetSecret() string { return "" }

// GetDomain returns the registered redirect URIs, one per line (validateURI reads the
// application itself).
func (c clientInfo) GetDomain() string { return strings.Join(c.app.RedirectURIs, "\n") }
func (c clientInfo) IsPublic() bool    { return !c.app.Confidential }
func (c clientInfo) GetUserID() string { return "" }
func (c clientInfo) VerifyPassword(secret string) bool {
	if !c.app.Confidential && secret == "" {
		return true
	}
	return store.VerifySecret(c.app.SecretHash, secret)
}

var _ oauth2.ClientPasswordVerifier = clientInfo{}

// randomCodes and randomAccess make codes and tokens as store.ValueFor does: 256 random bits
// and the id of the sign-in (the generator's UserID), which the store finds the sign-in by.
type randomCodes struct{}

func (randomCodes) Token(_ context.Context, data *oauth2.GenerateBasic) (string, error) {
	return store.ValueFor(randomToken(), data.UserID), nil
}

type randomAccess struct{}

func (randomAccess) Token(_ context.Context, data *oauth2.GenerateBasic, withRefresh bool) (string, string, error) {
	refresh := ""
	if withRefresh {
		refresh = store.ValueFor(randomToken(), data.UserID)
	}
	return store.ValueFor(randomToken(), data.UserID), refresh, nil
}
