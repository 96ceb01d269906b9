package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Session is one completed upstream sign-in, and the family of every code and token the bridge
// issues from it: they are kept with it, and a token whose session is gone is dead. Revoking the
// session revokes the whole family at once (code replay, refresh token reuse, revocation, an
// administrator's revoke-grants). A client never holds anything that works at GitLab.
type Session struct {
	// Version is FormatVersion when written; 0 for a record written before versions.
	Version int    `json:"v,omitempty"`
	ID      string `json:"id"`
	// GitLabUserID is the id clients see as the person's GitLab user id: GitLab's own, handed on
	// unchanged, for a GitLab provider; the id the bridge bound to the person (see Identities)
	// for any other.
	GitLabUserID int64 `json:"gitlab_user_id"`
	// Provider is the name of the provider the person signed in at ("" for a session made
	// before there were several: the GitLab of SSOBRIDGE_GITLAB_URL), and Subject their id there.
	Provider string `json:"provider,omitempty"`
	Subject  string `json:"subject,omitempty"`
	Username string `json:"username"`
	ClientID string `json:"client_id"`
	// SealedToken is the upstream token (an UpstreamToken as JSON), encrypted by the bridge so
	// that a copy of the store reveals no usable GitLab credential; it changes on refresh.
	SealedToken []byte `json:"sealed_token"`
	// Scope is what the client was granted; Nonce and AuthTime go into ID tokens.
	Scope    string    `json:"scope,omitempty"`
	Nonce    string    `json:"nonce,omitempty"`
	AuthTime time.Time `json:"auth_time,omitzero"`
	// Groups are the person's groups at the provider (GitLab: full paths), when the bridge learns
	// them.
	Groups []string `json:"groups,omitempty"`
	// TraceID is the trace of the sign-in that made the session.
	TraceID string `json:"trace_id,omitempty"`
	// User is the /api/v4/user body clients get, as last read from the provider (GitLab's own
	// body, or the one the bridge writes in GitLab's shape for another provider), and
	// UserFetchedAt when.
	User          json.RawMessage `json:"user"`
	UserFetchedAt time.Time       `json:"user_fetched_at"`
	CreatedAt     time.Time       `json:"created_at"`
}

// Code is an authorization code the bridge issued to a client, kept until it is taken.
type Code struct {
	Version   int    `json:"v"`
	ClientID  string `json:"client_id"`
	SessionID string `json:"session_id"`
	// RedirectURI is the one of the authorize request, which the token request must repeat.
	RedirectURI         string    `json:"redirect_uri"`
	Scope               string    `json:"scope"`
	CodeChallenge       string    `json:"code_challenge,omitempty"`
	CodeChallengeMethod string    `json:"code_challenge_method,omitempty"`
	IssuedAt            time.Time `json:"issued_at"`
	// ExpiresAt is when the code stops being redeemable. The record is kept longer (with its
	// sign-in), so that a code redeemed late is told apart from an unknown one.
	ExpiresAt time.Time `json:"expires_at"`
	// IndexUntil is the latest its sign-in may live if the code is redeemed (its expiry and an
	// access token's lifetime): a backend that indexes sign-ins by client indexes the sign-in
	// until then when it issues the code, so that the redemption need not index it again. Zero
	// for a code of a bridge before it, whose redemption indexes the sign-in.
	IndexUntil time.Time `json:"index_until,omitzero"`
}

// TokenPair is an access token the bridge issued, with the refresh token issued with it if any.
type TokenPair struct {
	Version   int    `json:"v"`
	ClientID  string `json:"client_id"`
	SessionID string `json:"session_id"`
	Scope     string `json:"scope"`
	// AccessKey and RefreshKey are the TokenKey of the access and refresh token ("": none).
	AccessKey  string    `json:"access_key"`
	RefreshKey string    `json:"refresh_key,omitempty"`
	IssuedAt   time.Time `json:"issued_at"`
	// AccessExpiresAt is when the access token stops working; the record is kept longer (with its
	// sign-in), so that a token used late is told apart from an unknown one.
	AccessExpiresAt time.Time `json:"access_expires_at"`
	// RefreshExpiresAt is when the refresh token stops working; zero when it has no expiry of its
	// own and lives as long as its sign-in.
	RefreshExpiresAt time.Time `json:"refresh_expires_at,omitzero"`
}

// MarkState is what became of a taken code or refresh token.
type MarkState string

const (
	// MarkTaken: a request took it and has not finished (it may still be running, or it died:
	// its outcome is unknown to the store).
	MarkTaken MarkState = "taken"
	// MarkIssued: tokens were issued from it (a code redeemed, a refresh token rotated).
	MarkIssued MarkState = "issued"
	// MarkRefused: the request that took it was refused after the take (a code redeemed with a
	// wrong redirect_uri, say): nothing was issued from it, and its sign-in was revoked.
	MarkRefused MarkState = "refused"
	// MarkRevoked: tokens were about to be issued from it when another presentation of it came;
	// none was, and the sign-in was revoked.
	MarkRevoked MarkState = "revoked"
)

// Mark is what the store remembers of a code or refresh token once taken, for as long as its
// sign-in is kept (and a while after the sign-in is revoked): who took it and what became of it,
// so that another presentation is recognised and answered truly.
type Mark struct {
	Version int `json:"v"`
	// Kind is "code" or "refresh".
	Kind  string    `json:"kind"`
	State MarkState `json:"state"`
	// Attempt is the take's attempt id, and At when it took the value.
	Attempt string    `json:"attempt"`
	At      time.Time `json:"at"`
	// Replayed is set when another presentation came while the mark was MarkTaken: the taker
	// must not leave tokens behind (see SignIns.TakeCode).
	Replayed bool `json:"replayed,omitempty"`
	// Refusal names the failure that refused the taker (MarkRefused), as the trace names it.
	Refusal string `json:"refusal,omitempty"`
	// RefusalTrace is the trace the refusal was recorded in.
	RefusalTrace string `json:"refusal_trace,omitempty"`
}

// Taken is what a take of a code or refresh token returns to the attempt that took it.
type Taken struct {
	// Code is the code taken (TakeCode), Pair the pair whose refresh token was taken (TakeRefresh).
	Code *Code
	Pair *TokenPair
	// Session is the sign-in the value belongs to; nil when it was revoked.
	Session *Session
	// TraceID is the sign-in's trace.
	TraceID string
}

// UsedError is the answer to a take of a code or refresh token that another attempt took: the
// value was presented before. The take has applied the replay rule (see SignIns.TakeCode).
type UsedError struct {
	Mark Mark
	// SessionID and TraceID are the sign-in's.
	SessionID string
	TraceID   string
	// Revoked reports that this take revoked the sign-in (tokens had been issued from the value).
	Revoked bool
}

func (e *UsedError) Error() string {
	return fmt.Sprintf("already taken (%s) at %s", e.Mark.State, e.Mark.At.UTC().Format(time.RFC3339))
}

// Found is what a read of a sign-in's code or token returns.
type Found struct {
	Code    *Code
	Pair    *TokenPair
	Session *Session // nil when the sign-in was revoked
	TraceID string
}

// RevokedKept is how long a revoked sign-in's marks (and its trace id) are kept, so that its
// codes and refresh tokens presented again soon after are answered as what they are.
const RevokedKept = time.Hour

// SignInExpiry is how long from now a sign-in is kept once pair p is stored in it: ttl, or, for a
// pair without refresh token (its last credential), until its access token expires. Both
// backends use it, so that they cannot disagree on it.
func SignInExpiry(p *TokenPair, ttl time.Duration, now time.Time) time.Duration {
	if p.RefreshKey != "" {
		return ttl
	}
	// A millisecond at least: an access token issued already expired still ends its sign-in.
	return max(p.AccessExpiresAt.Sub(now), time.Millisecond)
}

// RefreshMarksKept is how many marks of rotated refresh tokens a sign-in keeps, the newest: a
// replay of one of them revokes the sign-in, while an older one, forgotten, is answered as an
// unknown refresh token and revokes nothing. Without a bound, a client that refreshes every
// minute for the 30 days a sign-in lives would leave 43,200 marks in it.
const RefreshMarksKept = 20

// SignIns keeps sign-ins: each a Session and the codes and tokens issued from it (its family),
// which live and die together. A sign-in is revoked by deleting its session and every code and
// token of its family at once; the marks of its taken values stay RevokedKept.
//
// The takes are the bridge's exactly-once promises. Each runs as one atomic step at the backend
// and names its attempt (see the package comment): the same attempt sent twice gets the same
// answer, any other attempt finds the value taken. A presentation by another attempt applies
// the replay rule (RFC 6749 §4.1.2 for codes, RFC 6819 §5.2.2.3 for refresh tokens) in the same
// step: the sign-in is revoked at once if tokens were issued from the value, and is revoked by
// the taker's Finish if the taker has not finished yet; a value whose taker was refused revokes
// nothing more (its sign-in was revoked with the refusal).
type SignIns interface {
	// PutSession saves a session for ttl, creating its sign-in or replacing the session of an
	// existing one and its expiry; ErrRevoked if the sign-in was revoked.
	PutSession(ctx context.Context, s *Session, ttl time.Duration) error
	GetSession(ctx context.Context, id string) (*Session, error) // ErrNotFound when gone
	// UpdateSession replaces a live session and keeps its expiry; ErrNotFound when it is gone.
	UpdateSession(ctx context.Context, s *Session) error
	// RevokeSession revokes a sign-in; ErrNotFound if there was no live session.
	RevokeSession(ctx context.Context, id string) error
	// ListSessions returns the live sessions of a client (for revoking its grants).
	ListSessions(ctx context.Context, clientID string) ([]*Session, error)

	// IssueCode saves session s (as PutSession, for ttl) and its code c under key, together;
	// ErrRevoked if the sign-in was revoked meanwhile.
	IssueCode(ctx context.Context, s *Session, ttl time.Duration, key string, c *Code) error
	// PeekCode reads a code without taking it; ErrNotFound when unknown. Found.Code is nil once
	// it is taken.
	PeekCode(ctx context.Context, ref Ref) (*Found, error)
	// TakeCode takes a code for attempt. ErrNotFound when the code is unknown; ErrRevoked when
	// its sign-in was revoked before it was taken; a *UsedError when another attempt took it (the
	// replay rule applied).
	TakeCode(ctx context.Context, ref Ref, attempt string) (*Taken, error)
	// FinishCode stores the tokens issued from a code attempt took, and returns the session. A
	// pair without refresh token is the last credential its sign-in will have: the sign-in then
	// expires with the access token (p.AccessExpiresAt), and nothing of it is kept after (its
	// trace aside), so that an application that never refreshes (Mattermost) leaves no state
	// behind. A pair with one leaves the sign-in's expiry as IssueCode set it.
	// ErrRevoked when the sign-in was revoked meanwhile; ErrLost when it lives but its take is
	// gone (the store lost data); ErrReplayed when another presentation of
	// the code came since the take: the tokens are then not kept, and the sign-in is revoked. The
	// same attempt finishing twice (its finish sent twice) gets the same answer.
	FinishCode(ctx context.Context, ref Ref, attempt string, p *TokenPair) (*Session, error)
	// RedeemCode takes a code for attempt and stores the pair p issued from it, as TakeCode and
	// FinishCode do, in one step, when the code is one the redemption r may redeem without
	// looking at it first: the code of r.ClientID, issued for r.RedirectURI, not expired at
	// r.Now, without a PKCE challenge, and whose scope has no openid (an ID token is signed from
	// the session before anything is stored). p's Scope is set to the code's. It returns the
	// sign-in's session and trace. ErrSlowPath when the code is not such a code, is not there, is
	// taken, or its sign-in is not live: nothing was taken or stored, and the caller redeems the
	// code with TakeCode and FinishCode, which answer each of those cases. A backend may answer
	// as TakeCode and FinishCode would instead. The same attempt sent twice gets the same answer,
	// or ErrRevoked if the sign-in was revoked in between, never ErrSlowPath: the slow path would
	// find the code redeemed and take the attempt for a replay of it.
	RedeemCode(ctx context.Context, ref Ref, attempt string, r CodeRedemption, p *TokenPair) (*Redeemed, error)
	// RefuseCode records that the request that took a code (attempt) was refused, naming the
	// failure (refusal) and the trace it was recorded in, and revokes the sign-in, which will
	// never have tokens.
	RefuseCode(ctx context.Context, ref Ref, attempt, refusal, traceID string) error

	// GetAccess reads an access token and its session, ErrNotFound when unknown.
	GetAccess(ctx context.Context, ref Ref) (*Found, error)
	// RevokeAccess deletes an access token; nothing when it is unknown.
	RevokeAccess(ctx context.Context, ref Ref) error
	// GetRefresh reads a refresh token and its session without taking it, ErrNotFound when
	// unknown.
	GetRefresh(ctx context.Context, ref Ref) (*Found, error)
	// TakeRefresh takes a refresh token for attempt, as TakeCode takes a code, and deletes the
	// access token issued with it.
	TakeRefresh(ctx context.Context, ref Ref, attempt string) (*Taken, error)
	// FinishRefresh stores the pair issued for the refresh token attempt took, giving the
	// sign-in of s ttl from now (a pair without refresh token: its access token's expiry, as
	// FinishCode); ErrRevoked, ErrLost and ErrReplayed as FinishCode. The stored
	// session is left as it is: an UpdateSession made since the take (a GitLab token renewed by
	// another request) stands. The sign-in keeps the marks of its RefreshMarksKept newest
	// rotated refresh tokens, this one's always among them.
	FinishRefresh(ctx context.Context, ref Ref, attempt string, s *Session, next *TokenPair, ttl time.Duration) error
}

// ErrSlowPath is RedeemCode's answer for a code it does not redeem in one step: nothing was taken.
var ErrSlowPath = errors.New("the code is redeemed in steps")

// CodeRedemption is what a token request asks of a code it redeems (see SignIns.RedeemCode).
type CodeRedemption struct {
	ClientID, RedirectURI string
	Now                   time.Time
}

// Redeemed is what RedeemCode returns: the sign-in's session and trace.
type Redeemed struct {
	Session *Session
	TraceID string
}
