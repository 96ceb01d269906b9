package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"golang.org/x/oauth2"

	"github.com/ssobridge/ssobridge/gitlabapi"
	"github.com/ssobridge/ssobridge/oauth/signin"
	"github.com/ssobridge/ssobridge/oauth/store"
	"github.com/ssobridge/ssobridge/oauth/upstream"
)

// traceFirstRead keeps in the sign-in's trace only the first read of the user with an access
// token that this instance answers from the snapshot: the read that ends a sign-in (Mattermost's
// one read) is traced, while a client that reads the user again and again with one token costs
// the store nothing more than the read. Such reads are still counted, with their latency, in
// ssobridge_http_request_duration_seconds, and a failed one, or one that asks GitLab, is always
// traced. The token is remembered for as long as the snapshot may still answer (snapshotLeft),
// after which its reads ask GitLab and are traced anyway.
func (s *Server) traceFirstRead(c echo.Context, p *store.TokenPair, snapshotLeft time.Duration) {
	if s.readsTraced.has(p.AccessKey) {
		dropSteps(c)
		return
	}
	s.readsTraced.add(p.AccessKey, min(snapshotLeft, time.Until(p.AccessExpiresAt)))
}

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

// user answers /api/v4/user with GitLab's own body for the person the token belongs to: the
// snapshot taken at sign-in while it is younger than UserSnapshotMaxAge, else read from GitLab
// with the token the bridge holds for them (refreshed at GitLab when expired).
func (s *Server) user(c echo.Context) error {
	ctx := c.Request().Context()
	s.beginStep(c, "", signin.StepUser, store.PartClient, store.PartBridge, "GET /api/v4/user (Authorization: Bearer)")
	ti, sess, err := s.bearerSession(c)
	if err != nil {
		return err
	}
	s.useTrace(c, sess.TraceID)
	if !hasScope(ti.Scope, "read_user", "api") {
		return &Error{
			Failure:     signin.TokenScopeInsufficient,
			Scope:       "read_user",
			Description: "the token's scope does not include read_user",
			Fix:         "The client's token lacks read_user: give the application the scope (`ssobridge apps update ID --scopes read_user`) and have the person sign in again.",
		}
	}
	if age := time.Since(sess.UserFetchedAt); len(sess.User) > 0 && age >= 0 && age < s.cfg.UserSnapshotMaxAge {
		s.stepOK(c, http.StatusOK, map[string]string{"user": "snapshot from GitLab " + age.Round(time.Millisecond).String() + " ago"})
		s.traceFirstRead(c, ti, s.cfg.UserSnapshotMaxAge-age)
		noStore(c.Response().Header())
		return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, sess.User)
	}
	start := time.Now()
	body, err := s.upstreamUser(ctx, sess)
	e, _ := errors.AsType[*Error](err)
	switch {
	case e != nil && slices.Contains(providerAnswered, e.Failure):
		// GitLab answered; what it answered is the bridge's step to refuse.
		s.upstreamStep(c, signin.StepUpstreamUser, "GET /api/v4/user (the GitLab token the bridge holds)", start, nil)
	case err == nil || e != nil && e.Failure.Where() == signin.AtGitLab:
		// GitLab's own status (0 when it did not answer), not the one the bridge answers with.
		s.upstreamStep(c, signin.StepUpstreamUser, "GET /api/v4/user (the GitLab token the bridge holds)", start, err)
	}
	// Any other failure is the bridge's own (its store, the GitLab token it keeps), before it
	// could ask GitLab: no call to GitLab is drawn.
	if err != nil {
		return err
	}
	s.stepOK(c, http.StatusOK, nil)
	noStore(c.Response().Header())
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, body)
}

// providerAnswered are the failures of a person the provider described, and the bridge refuses.
var providerAnswered = []*signin.Failure{signin.UserIncomplete, signin.UserNotActive, signin.EmailMissing,
	signin.EmailUnverified, signin.ClaimMissing, signin.IDTokenInvalid}

// upstreamAPIError maps a failed upstream call to what the client sees: GitLab's refusals of the
// person are passed on, the bridge's own trouble with GitLab is a 502 or 504.
func upstreamAPIError(err error) error {
	var ue *upstream.Error
	if !errors.As(err, &ue) {
		return err
	}
	switch {
	case ue.Kind == upstream.KindRejected && (ue.Status == http.StatusUnauthorized || ue.Call == upstream.CallRefresh && ue.Code == "invalid_grant"):
		return &Error{Failure: signin.UpstreamTokenRejected, Fix: ue.Fix(), Cause: err}
	case ue.Kind == upstream.KindRejected && ue.Status == http.StatusForbidden:
		detail := strings.TrimPrefix(ue.Message, "403 Forbidden - ")
		return &Error{Failure: signin.UpstreamUserRefused, Description: detail, Fix: ue.Fix(), Cause: err}
	case ue.Kind == upstream.KindTimeout:
		return &Error{Failure: signin.UpstreamTimeout, Description: "GitLab did not answer in time", Fix: ue.Fix(), Cause: err}
	}
	return &Error{
		Failure:     upstreamFailure(ue),
		Description: "the bridge could not read the user from GitLab",
		Fix:         ue.Fix(),
		Cause:       err,
	}
}

// sealedTokenUnreadable is the failure of a GitLab token the bridge keeps that its keys cannot
// open.
func sealedTokenUnreadable(err error) *Error {
	return &Error{
		Failure:     signin.SealedTokenUnreadable,
		Description: "the bridge cannot open the GitLab token it keeps for this person; sign in again",
		Fix:         "The GitLab token the bridge keeps for this person cannot be opened: SSOBRIDGE_ENCRYPTION_KEY is not the key it was sealed with (put the old key in SSOBRIDGE_ENCRYPTION_KEYS_PREVIOUS). The person must otherwise sign in again.",
		Cause:       err,
	}
}

// saveRefreshedTokenTimeout bounds the save of a GitLab token GitLab renewed, which outlives the
// request that renewed it.
const saveRefreshedTokenTimeout = 5 * time.Second

// upstreamUser reads the person at their provider with the token the bridge holds for them,
// renewing it there when it has expired and keeping the new one, and returns the /api/v4/user
// body clients get. A provider that cannot be asked again (no way to read the person, or an
// expired token and no refresh token) leaves the snapshot of the sign-in standing. Failures come
// back as the Error the client should see.
//
// confirm says the caller must hear from the provider itself, not from the snapshot: a refresh of
// the bridge's tokens, which would otherwise outlive the person's account at the provider.
func (s *Server) upstreamUser(ctx context.Context, sess *store.Session, confirm ...bool) ([]byte, error) {
	snapshot := func(why string) ([]byte, error) {
		if len(confirm) == 0 || !confirm[0] {
			return sess.User, nil
		}
		return nil, &Error{Failure: signin.UpstreamTokenRejected, Status: http.StatusUnauthorized,
			Description: "the bridge cannot check this person at their provider again (" + why + "); sign in again",
			Fix:         "The provider gave the bridge no way to read the person again, so the bridge's tokens are not renewed past its access token: people sign in again. To renew them, ask the provider for a refresh token (add offline_access to the provider's scopes, where it grants one) and a userinfo endpoint."}
	}
	prov, ok := s.upstreamNamed(sess.Provider)
	if !ok {
		e := upstreamGone(sess.Provider)
		e.Status = http.StatusUnauthorized
		return nil, e
	}
	d := prov.Describe()
	reader, canRead := prov.(upstream.UserReader)
	if !canRead {
		return snapshot("it cannot be asked again")
	}
	tok, err := s.openToken(sess)
	if err != nil {
		return nil, sealedTokenUnreadable(err)
	}
	if !tok.Valid() {
		refresher, canRefresh := prov.(upstream.Refresher)
		if !canRefresh || tok.RefreshToken == "" {
			return snapshot("its token has expired, and it gave no refresh token")
		}
		var release func()
		if tok, release, err = s.refreshUpstream(ctx, sess, refresher); err != nil {
			return nil, err
		}
		// The read too is made before another request may refresh: GitLab revokes the access
		// token of a refresh token when it is used.
		defer release()
	}
	id, err := reader.ReadUser(ctx, tok)
	if errors.Is(err, upstream.ErrCannotRead) {
		return snapshot("it has no userinfo endpoint")
	}
	if ie, ok := errors.AsType[*upstream.IdentityError](err); ok {
		e := identityFailure(d, ie)
		e.Description = d.DisplayName + " returned a user Mattermost would refuse: " + ie.Detail
		e.Title = ""
		return nil, e
	}
	if err != nil {
		return nil, upstreamAPIError(err)
	}
	// The checks of the sign-in, again: the person may have changed at the provider since.
	if id.State != "" && id.State != gitlabapi.StateActive {
		return nil, &Error{
			Failure:     signin.UserNotActive,
			Description: fmt.Sprintf("your %s account is %s", d.DisplayName, id.State),
			Fix:         fmt.Sprintf("%s says the account %s is %s: an administrator there must activate it before it can sign in.", d.DisplayName, id.Username, id.State),
			Cause:       errors.New("upstream user " + id.State),
		}
	}
	same := id.Subject == sess.Subject
	if sess.Subject == "" || d.GitLabIDs {
		same = id.GitLabID == sess.GitLabUserID // and sessions made before subjects were kept
	}
	if !same {
		return nil, &Error{
			Failure:     signin.UpstreamUserMismatch,
			Description: d.DisplayName + " returned another user than the one who signed in",
			Fix:         fmt.Sprintf("%s answered with another person than the one who signed in: check that %s is the provider the person signed in at, and that no proxy or cache in front of it shares answers between tokens.", d.DisplayName, d.Settings.URL),
			Cause:       errors.New("upstream user changed"),
		}
	}
	if !d.GitLabIDs {
		return gitlabUserBody(sess.GitLabUserID, id), nil
	}
	return id.Body, nil
}

// refreshUpstream renews the expired token of sess at its provider, and holds the session's
// refresh until release is called. Providers accept each refresh token once: requests of one
// session that must refresh take turns, on this instance (the mutex) and across instances (the
// store's lock), and each rereads the session, so that it uses a refresh another one just made.
func (s *Server) refreshUpstream(ctx context.Context, sess *store.Session, refresher upstream.Refresher) (tok *oauth2.Token, release func(), err error) {
	mu := s.refreshLocks.of(sess.ID)
	mu.Lock()
	unlock := func() {}
	release = func() { unlock(); mu.Unlock() }
	defer func() {
		if err != nil {
			release()
		}
	}()
	// The wait ends a little before the request's own deadline, so that a refresh that takes
	// too long is told apart from a store that does not answer.
	wait := refreshLockWait
	if d, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(d)-time.Second)
	}
	lctx, cancel := context.WithTimeout(ctx, max(wait, 0))
	held, err := s.store.Lock(lctx, "refresh:"+sess.ID, refreshLockTTL)
	cancel()
	if err != nil {
		if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			return nil, nil, &Error{
				Failure:     signin.UpstreamRefreshBusy,
				Description: "another request is renewing this person's token at the provider; try again",
				Fix:         "The provider took longer than " + wait.Round(time.Second).String() + " to renew a token: check its health.",
				Cause:       err,
			}
		}
		return nil, nil, storeFailure("lock the GitLab token's refresh", err)
	}
	unlock = held
	// Another request may have refreshed the token while this one waited: the provider would
	// refuse the refresh token this one read.
	fresh, err := s.store.GetSession(ctx, sess.ID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, &Error{Failure: signin.SessionRevoked, Description: "the sign-in was revoked or has expired; sign in again", Status: http.StatusUnauthorized}
	}
	if err != nil {
		return nil, nil, storeFailure("reread the session", err)
	}
	sess.SealedToken = fresh.SealedToken
	tok, err = s.openToken(sess)
	if err != nil {
		return nil, nil, sealedTokenUnreadable(err)
	}
	if tok.Valid() {
		return tok, release, nil
	}
	tok, err = refresher.Refresh(ctx, tok)
	if err != nil {
		return nil, nil, upstreamAPIError(err)
	}
	// The provider may have spent the refresh token it had: the new one must be kept, before the
	// lock is let go, or the next request to refresh presents the spent one. It is saved even if
	// this request is cut short, and saving it again is harmless.
	s.sealToken(sess, tok)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), saveRefreshedTokenTimeout)
	serr := s.store.UpdateSession(sctx, sess)
	cancel()
	if serr != nil && !errors.Is(serr, store.ErrNotFound) {
		s.logger(ctx).Error("saving the token the provider just renewed failed: the person's next request that needs the provider will fail, and they must sign in again",
			"session", sess.ID, "provider", sess.Provider, "cause", serr.Error())
	}
	return tok, release, nil
}

// sealToken stores tok in sess, encrypted and bound to the session's id.
func (s *Server) sealToken(sess *store.Session, tok *oauth2.Token) {
	plain, _ := store.Encode(store.UpstreamToken{AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken,
		TokenType: tok.TokenType, Expiry: tok.Expiry})
	sess.SealedToken = s.cfg.Sealer.Seal(plain, sess.ID)
}

// openToken returns the upstream token sealed in sess.
func (s *Server) openToken(sess *store.Session) (*oauth2.Token, error) {
	plain, err := s.cfg.Sealer.Open(sess.SealedToken, sess.ID)
	if err != nil {
		return nil, fmt.Errorf("session %s: %w", sess.ID, err)
	}
	var t store.UpstreamToken
	if err := json.Unmarshal(plain, &t); err != nil {
		return nil, fmt.Errorf("session %s: sealed token is not JSON: %w", sess.ID, err)
	}
	return &oauth2.Token{AccessToken: t.AccessToken, RefreshToken: t.RefreshToken, TokenType: t.TokenType, Expiry: t.Expiry}, nil
}

// apiMessage is the message GitLab's API would answer e with: "403 Forbidden - detail".
func (e *Error) apiMessage() string {
	return gitlabapi.StatusMessage(e.status(), e.Description).Message
}

// refreshLockWait bounds how long a request waits for another's refresh of the same GitLab
// token; refreshLockTTL frees the lock of an instance that died while refreshing. The upstream
// client gives up on GitLab after 20 s.
const (
	refreshLockWait = 25 * time.Second
	refreshLockTTL  = 30 * time.Second
)

// stripedLocks is a fixed set of mutexes picked by a session id's hash: bounded memory, and two
// sessions share a lock only by chance, which costs a little waiting and nothing else.
type stripedLocks [64]sync.Mutex

func (l *stripedLocks) of(id string) *sync.Mutex {
	h := fnv.New32a()
	_, _ = h.Write([]byte(id))
	return &l[h.Sum32()%uint32(len(l))]
}
