// Package store defines the bridge's persistent state and the interface its two backends
// (memstore, in memory, and redisstore, on Redis) implement.
//
// The bridge keeps four kinds of record:
//   - Applications: the OAuth clients registered with the bridge (what GitLab calls Applications).
//   - Authorizations: an authorize request from a client, parked while the browser is at the
//     upstream GitLab; keyed by a hash of the bridge's own upstream state, taken exactly once.
//   - Sessions: one per completed upstream sign-in: who the person is at GitLab and the GitLab
//     token the bridge holds for them. Clients never see it.
//   - Tokens: the bridge's own codes and access tokens, through go-oauth2's TokenStore interface.
//
// A store never holds a code, an access token, a refresh token or a client secret in clear: codes
// and tokens are found under the SHA-256 of their value and the records carry no raw value.
package store

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-oauth2/oauth2/v4"
)

// ErrNotFound is returned when a record does not exist, has expired, or was already taken.
var ErrNotFound = errors.New("not found")

// ErrExists is returned when creating a record whose key is already in use.
var ErrExists = errors.New("already exists")

// Application is an OAuth client registered with the bridge.
type Application struct {
	// ID is the client_id (GitLab calls it the application's uid).
	ID   string `json:"id"`
	Name string `json:"name"`
	// RedirectURIs are compared exactly (see oauth.MatchRedirectURI); at least one.
	RedirectURIs []string `json:"redirect_uris"`
	// Scopes the application may ask for; an authorize request without scope gets all of them.
	Scopes []string `json:"scopes"`
	// Trusted applications skip the consent page.
	Trusted bool `json:"trusted"`
	// Confidential applications authenticate with their secret at the token endpoint.
	Confidential bool `json:"confidential"`
	// RequirePKCE makes PKCE mandatory for a confidential application too (it always is for a
	// public one); AllowPlainPKCE accepts the "plain" method besides S256, for old clients.
	RequirePKCE    bool `json:"require_pkce,omitempty"`
	AllowPlainPKCE bool `json:"allow_plain_pkce,omitempty"`
	// AllowedUsers (GitLab usernames, in any case) and AllowedGroups (GitLab group full paths,
	// each admitting its subgroups too) say who may sign in: a person named in either. With both
	// empty, everybody GitLab lets in may. DenyExternal refuses GitLab's external users whatever
	// the lists say.
	AllowedUsers  []string `json:"allowed_users,omitempty"`
	AllowedGroups []string `json:"allowed_groups,omitempty"`
	DenyExternal  bool     `json:"deny_external,omitempty"`
	// SecretHash is HashSecret of the client secret; the secret itself is never stored.
	SecretHash string    `json:"secret_hash"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// Authorization is an authorize request from a client, held while the browser signs in upstream.
type Authorization struct {
	ClientID    string `json:"client_id"`
	RedirectURI string `json:"redirect_uri"`
	// State is the client's state parameter, byte for byte, returned unchanged at the end.
	State string `json:"state"`
	// Scope is the space-separated scope granted to the client (already checked against the app).
	Scope               string `json:"scope"`
	CodeChallenge       string `json:"code_challenge,omitempty"`
	CodeChallengeMethod string `json:"code_challenge_method,omitempty"`
	// Nonce is the OpenID Connect nonce, returned in the ID token.
	Nonce string `json:"nonce,omitempty"`
	// UpstreamVerifier is the PKCE code verifier of the bridge's own request to GitLab.
	UpstreamVerifier string    `json:"upstream_verifier"`
	CreatedAt        time.Time `json:"created_at"`
	// SessionID is set while the request waits on the consent page: the session of the person
	// who signed in at GitLab.
	SessionID string `json:"session_id,omitempty"`
	// TraceID is the sign-in's trace (see Trace).
	TraceID string `json:"trace_id,omitempty"`
	// Browser is TokenKey of the value of the cookie the browser that started the sign-in got:
	// the return from GitLab must come with it, so that a link to the bridge's callback made by
	// someone else (a login CSRF) leads nowhere. Empty for a request parked before it existed.
	Browser string `json:"browser,omitempty"`
}

// UpstreamToken is the token the upstream GitLab gave the bridge for one person.
type UpstreamToken struct {
	AccessToken  string    `json:"access_token"`
	RefreshToken string    `json:"refresh_token,omitempty"`
	TokenType    string    `json:"token_type,omitempty"`
	Expiry       time.Time `json:"expiry,omitzero"`
}

// Session is one completed upstream sign-in, and the family of every code and token the bridge
// issues from it: they point to it by ID (their UserID in go-oauth2's terms), and a token whose
// session is gone is dead. Deleting the session revokes the whole family at once (code replay,
// refresh token reuse, revocation, an administrator's revoke-grants). A client never holds
// anything that works at GitLab.
type Session struct {
	ID string `json:"id"`
	// GitLabUserID is the person's id at the upstream GitLab, handed to clients unchanged.
	GitLabUserID int64  `json:"gitlab_user_id"`
	Username     string `json:"username"`
	ClientID     string `json:"client_id"`
	// SealedToken is the upstream token (an UpstreamToken as JSON), encrypted by the bridge so
	// that a copy of the store reveals no usable GitLab credential; it changes on refresh.
	SealedToken []byte `json:"sealed_token"`
	// Scope is what the client was granted; Nonce and AuthTime go into ID tokens.
	Scope    string    `json:"scope,omitempty"`
	Nonce    string    `json:"nonce,omitempty"`
	AuthTime time.Time `json:"auth_time,omitzero"`
	// Groups are the person's GitLab groups (full paths), when the bridge asks GitLab for them.
	Groups []string `json:"groups,omitempty"`
	// TraceID is the trace of the sign-in that made the session.
	TraceID string `json:"trace_id,omitempty"`
	// User is the upstream /api/v4/user body as last fetched, and UserFetchedAt when.
	User          json.RawMessage `json:"user"`
	UserFetchedAt time.Time       `json:"user_fetched_at"`
	CreatedAt     time.Time       `json:"created_at"`
}

// Used is what the mark of a used code or refresh token says (see Store.MarkUsed).
type Used struct {
	// SessionID is the session the code or refresh token belonged to.
	SessionID string `json:"session_id"`
	// Refusal, for a code taken by a redemption that was then refused, names the failure (as the
	// sign-in's trace names it, such as "redirect_uri_mismatch"): no token was handed out from
	// the code. Empty when tokens were issued from it, or may have been.
	Refusal string `json:"refusal,omitempty"`
	// TraceID is the sign-in's trace, which a refused code's deleted session no longer leads to.
	TraceID string `json:"trace_id,omitempty"`
}

// EncodeUsed is the form a backend keeps a mark in: the session id alone when that is all the
// mark says, as TakeCode and TakeRefresh write it in the same step as the take, else JSON.
func EncodeUsed(u Used) (string, error) {
	if u.SessionID == "" || strings.HasPrefix(u.SessionID, "{") {
		return "", errors.New("a used mark needs the id of a session")
	}
	if u.Refusal == "" && u.TraceID == "" {
		return u.SessionID, nil
	}
	b, err := json.Marshal(u)
	return string(b), err
}

// DecodeUsed reads a mark in the form EncodeUsed writes.
func DecodeUsed(v string) (Used, error) {
	if !strings.HasPrefix(v, "{") {
		return Used{SessionID: v}, nil
	}
	var u Used
	if err := json.Unmarshal([]byte(v), &u); err != nil || u.SessionID == "" {
		return Used{}, fmt.Errorf("a used mark does not decode: %.40q", v)
	}
	return u, nil
}

// Store is the bridge's state. Every method is safe for concurrent use, and every Take is atomic:
// of two concurrent callers with the same key, exactly one gets the record.
//
// The embedded oauth2.TokenStore holds the bridge's codes and tokens, keyed by TokenKey of their
// value. Its GetByCode consumes the code (the record is gone once read), so that go-oauth2's
// get-then-delete redemption cannot be won twice; it returns (nil, nil) for an unknown code, as
// go-oauth2 expects, and the returned info carries the code, access or refresh value it was
// asked for (the stored record does not).
type Store interface {
	CreateApp(ctx context.Context, app *Application) error // ErrExists if the ID is taken
	GetApp(ctx context.Context, id string) (*Application, error)
	ListApps(ctx context.Context) ([]*Application, error)  // sorted by Name, then ID
	UpdateApp(ctx context.Context, app *Application) error // ErrNotFound if absent
	DeleteApp(ctx context.Context, id string) error        // ErrNotFound if absent

	PutAuthorization(ctx context.Context, key string, a *Authorization, ttl time.Duration) error
	TakeAuthorization(ctx context.Context, key string) (*Authorization, error)

	// PutSession saves a session for ttl, replacing one with the same ID and its expiry.
	PutSession(ctx context.Context, s *Session, ttl time.Duration) error
	GetSession(ctx context.Context, id string) (*Session, error)
	// RenewSession replaces a live session and gives it ttl from now; ErrNotFound when it is
	// gone (expired or deleted), which it leaves gone: a revocation that lands during a refresh
	// is never undone by the refresh.
	RenewSession(ctx context.Context, s *Session, ttl time.Duration) error
	// UpdateSession replaces a session and keeps its expiry; ErrNotFound if it has expired.
	UpdateSession(ctx context.Context, s *Session) error
	// DeleteSession removes a session, which kills every token of its family; ErrNotFound if
	// absent.
	DeleteSession(ctx context.Context, id string) error
	// ListSessions returns the live sessions of a client (for revoking its grants).
	ListSessions(ctx context.Context, clientID string) ([]*Session, error)

	// MarkUsed remembers for ttl that the code or refresh token stored under key (its TokenKey)
	// was used, by which session, and, for a code whose redemption was refused, why (see Used),
	// replacing an earlier mark; UsedBy returns the mark, or ErrNotFound. A code or refresh token
	// presented again is then recognised as replayed, and its family revoked, or as a code spent
	// without any token being issued from it.
	MarkUsed(ctx context.Context, key string, used Used, ttl time.Duration) error
	UsedBy(ctx context.Context, key string) (Used, error)

	// TakeCode consumes a code as GetByCode does and, in the same atomic step, marks it used by
	// the session its record names for usedTTL (as MarkUsed): there is no moment when a code
	// presented again is neither redeemable nor recognised as replayed.
	TakeCode(ctx context.Context, code string, usedTTL time.Duration) (oauth2.TokenInfo, error)

	// PutSessionCode saves a new session (as PutSession) and the first code of its family (as
	// Create) together: a sign-in's callback writes both at once.
	PutSessionCode(ctx context.Context, s *Session, ttl time.Duration, code oauth2.TokenInfo) error

	// CreateForSession stores an access token and its refresh token (as Create) and returns the
	// session they belong to, in one exchange with the backend. ErrNotFound means the session is
	// gone: the tokens, stored or not, are then dead, as every token of a deleted session is.
	CreateForSession(ctx context.Context, info oauth2.TokenInfo) (*Session, error)

	// GetByAccessWithSession is GetByAccess that also reads session sessionID in the same
	// exchange with the backend: nil when there is no such session. The caller names the session
	// it expects (the bridge's access tokens carry their session's id) and must check that the
	// token's UserID is that session.
	GetByAccessWithSession(ctx context.Context, access, sessionID string) (oauth2.TokenInfo, *Session, error)

	// TakeRefresh consumes a refresh token, like GetByCode consumes a code, marks it used by its
	// session for usedTTL in the same atomic step (as TakeCode does for a code), and deletes the
	// access token issued with it: of two concurrent callers exactly one gets it, and the other
	// finds it marked. (nil, nil) when it is unknown, expired or already taken.
	TakeRefresh(ctx context.Context, refresh string, usedTTL time.Duration) (oauth2.TokenInfo, error)

	// Consents a person gave an application: the scopes allowed, by GitLab user id.
	// GetConsent returns ErrNotFound when there is none. DeleteConsents removes one person's
	// (userID > 0) or everybody's (userID == 0) consents for the application. ListConsents
	// returns every consent of the application by user id, an empty map when there is none: it
	// is what a backup needs, since consents are the one grant that outlives a sign-in.
	PutConsent(ctx context.Context, clientID string, userID int64, scopes []string) error
	GetConsent(ctx context.Context, clientID string, userID int64) ([]string, error)
	ListConsents(ctx context.Context, clientID string) (map[int64][]string, error)
	DeleteConsents(ctx context.Context, clientID string, userID int64) error

	// Lock takes the lock named key, waiting for it until ctx ends (then the error is ctx's),
	// and holds it until unlock is called or ttl has passed, whichever comes first: a holder that
	// dies does not keep it. Every bridge instance on the same store shares its locks. unlock
	// releases the lock only if it still holds it.
	Lock(ctx context.Context, key string, ttl time.Duration) (unlock func(), err error)

	// The bridge's OpenID Connect signing keys, sealed by the bridge: one value shared by every
	// instance. SwapKeySet replaces old with new only if the stored value is still old (nil: none
	// stored), and reports whether it did, so that two instances never overwrite each other's keys.
	GetKeySet(ctx context.Context) ([]byte, error) // ErrNotFound when none
	SwapKeySet(ctx context.Context, old, new []byte) (bool, error)

	oauth2.TokenStore

	// PeekCode returns a code's record without consuming it, (nil, nil) when unknown: a token
	// request that fails before redemption (a wrong secret) uses it to find the sign-in's trace.
	PeekCode(ctx context.Context, code string) (oauth2.TokenInfo, error)

	TraceStore

	// Ping reports whether the backend answers.
	Ping(ctx context.Context) error
	Close() error
}

// Exchanges counts what a store that talks to a server (redisstore) has sent it: round trips (a
// command alone, or a pipeline or script, is one) and the commands they carried.
type Exchanges struct {
	RoundTrips int64 `json:"round_trips"`
	Commands   int64 `json:"commands"`
}

// ExchangeCounter is a store that counts its exchanges with its server.
type ExchangeCounter interface {
	Exchanges() Exchanges
}

// LockPoll is how long Lock waits between two attempts at a taken lock, at first; each wait is
// longer, up to MaxLockPoll. Both backends poll, so that they behave alike.
const (
	LockPoll    = 2 * time.Millisecond
	MaxLockPoll = 50 * time.Millisecond
)

// WaitLock calls try until it takes the lock or ctx ends, waiting between attempts as LockPoll
// says; backends share it.
func WaitLock(ctx context.Context, try func() (bool, error)) error {
	wait := LockPoll
	for {
		ok, err := try()
		if err != nil || ok {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, MaxLockPoll)
	}
}

// SortApps puts apps in ListApps's order (by Name, then ID); the backends share it so that they
// cannot disagree on it.
func SortApps(apps []*Application) {
	slices.SortFunc(apps, func(a, b *Application) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID))
	})
}

// TokenKey is the key a code or token is stored under: the hex SHA-256 of its value.
func TokenKey(value string) string {
	sum := sha256.Sum256([]byte(value))
	return hex.EncodeToString(sum[:])
}
