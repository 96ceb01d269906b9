// Package store defines the bridge's persistent state and the interface its two backends
// (memstore, in memory, and redisstore, on Redis) implement.
//
// The bridge keeps these records, all of them its own types (nothing a library defines is
// stored, so that a library upgrade is never a data migration), each with a format version:
//   - Applications: the OAuth clients registered with the bridge (what GitLab calls Applications).
//   - Authorizations: an authorize request from a client, parked while the browser is at the
//     upstream GitLab (or on the consent page); keyed by a hash of the bridge's own upstream state
//     (or of the consent form's key), taken exactly once.
//   - Sign-ins: one per completed upstream sign-in (a Session: who the person is at GitLab and
//     the GitLab token the bridge holds for them, which clients never see), together with every
//     code and token issued from it (its family). Revoking the sign-in revokes the whole family.
//   - Consents a person gave an application, and the bridge's OpenID Connect signing keys.
//   - Traces of sign-ins, and locks.
//
// A store never holds a code, an access token, a refresh token or a client secret in clear: codes
// and tokens are found under the SHA-256 of their value and the records carry no raw value.
//
// # Exactly once
//
// A state, a code, a refresh token and a consent form are each taken exactly once, whatever the
// backend's latency and whatever its client library does about it. Every take names its attempt
// (a random id the caller makes once per take): a take that the client library sends again after
// a timeout, when the first one did run, finds the value taken by its own attempt and gets the
// same answer; a take by any other attempt finds it taken by someone else. A take whose outcome
// is unknown (the backend did not answer in time) returns an error, never ErrNotFound and never
// a *UsedError: the caller answers that it could not serve, not that the value was replayed.
package store

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"time"
)

// FormatVersion is the version of the records this bridge writes. A record without a version is
// version 1, written before versions were recorded.
const FormatVersion = 2

// ErrNotFound is returned when a record does not exist or has expired.
var ErrNotFound = errors.New("not found")

// ErrExists is returned when creating a record whose key is already in use.
var ErrExists = errors.New("already exists")

// ErrRevoked is returned when a write to a sign-in finds it revoked (its session is gone, its
// family's tokens dead): the write is not made, and the sign-in stays revoked.
var ErrRevoked = errors.New("the sign-in was revoked")

// ErrReplayed is returned by a finish whose value (a code, a refresh token) was presented again
// while it was being redeemed: no token is kept, and the sign-in is revoked (see SignIns).
var ErrReplayed = errors.New("presented again while it was being redeemed: the sign-in is revoked")

// ErrLost is returned by a finish that finds the sign-in live but not the take it finishes, or
// finds the sign-in gone altogether (a revoked one keeps its marks far longer than any request
// lasts): the store no longer holds a write it acknowledged (Redis failed over to a replica that
// had not received it, or restarted without persistence). Nothing is stored.
var ErrLost = errors.New("the store no longer holds the take it acknowledged: it lost data")

// ErrNotReplicated is returned when a write was made on the primary but not acknowledged by as
// many replicas as the store was told to wait for (see redisstore.Store.WaitForReplicas): the
// caller must not report it as done, since a failover could lose it.
var ErrNotReplicated = errors.New("the write was not acknowledged by the replicas in time")

// ErrFull is returned when the store refused a write because it holds all it may: Redis at its
// maxmemory under the noeviction policy ("OOM command not allowed"), or an in-memory store at its
// size cap. Nothing of the refused write is kept; the store answers again once memory is freed
// or the bound raised, so the caller says the store is full, not that it does not answer.
var ErrFull = errors.New("the store is full")

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
	// Upstream names the provider the application's sign-ins go to, when the bridge has several:
	// nobody is asked to choose. UpstreamHint names the one the chooser puts first instead.
	Upstream     string `json:"upstream,omitempty"`
	UpstreamHint string `json:"upstream_hint,omitempty"`
	// NoRefreshTokens gives the application access tokens alone (and ID tokens): its sign-ins end
	// with their access token, and the store forgets them then (see SignIns). Mattermost, which
	// never refreshes, needs nothing more. False, as in every record written before it existed,
	// gives refresh tokens.
	NoRefreshTokens bool `json:"no_refresh_tokens,omitempty"`
	// SecretHash is HashSecret of the client secret; the secret itself is never stored.
	SecretHash string    `json:"secret_hash"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// Authorization is an authorize request from a client, held while the browser signs in upstream.
type Authorization struct {
	// Version is FormatVersion when written; 0 for a record written before versions.
	Version  int    `json:"v,omitempty"`
	ClientID string `json:"client_id"`
	// RedirectURI is the client's, already checked against its registration.
	RedirectURI string `json:"redirect_uri"`
	// State is the client's state parameter, byte for byte, returned unchanged at the end.
	State string `json:"state"`
	// Scope is the space-separated scope granted to the client (already checked against the app).
	Scope               string `json:"scope"`
	CodeChallenge       string `json:"code_challenge,omitempty"`
	CodeChallengeMethod string `json:"code_challenge_method,omitempty"`
	// Nonce is the OpenID Connect nonce, returned in the ID token.
	Nonce string `json:"nonce,omitempty"`
	// Prompt is the client's OpenID Connect prompt, checked, its values space-separated; MaxAge
	// its max_age in seconds (nil: none). Both are kept for the return from the provider: whether
	// to show consent, whether the person signed in recently enough (since CreatedAt - MaxAge,
	// or since CreatedAt for prompt=login).
	Prompt string `json:"prompt,omitempty"`
	MaxAge *int64 `json:"max_age,omitempty"`
	// UpstreamSealed holds, sealed by the bridge (oauth.Sealer) and bound to the record's key,
	// what finishes the bridge's own request to the provider: its PKCE code verifier and OpenID
	// nonce. Whoever reads the store cannot redeem a code the provider sent for it.
	UpstreamSealed []byte `json:"upstream_sealed,omitempty"`
	// UpstreamVerifier and UpstreamNonce are the same in clear, as records written before they
	// were sealed have them; nothing writes them any more.
	UpstreamVerifier string `json:"upstream_verifier,omitempty"`
	UpstreamNonce    string `json:"upstream_nonce,omitempty"`
	// Upstream names the provider the person was sent to ("": the only one, or, while the person
	// chooses, none yet).
	Upstream  string    `json:"upstream,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	// SessionID is set while the request waits on the consent page: the session of the person
	// who signed in at GitLab.
	SessionID string `json:"session_id,omitempty"`
	// TraceID is the sign-in's trace (see Trace).
	TraceID string `json:"trace_id,omitempty"`
	// Browser is TokenKey of the value of the cookie the browser that started the sign-in got:
	// the return from GitLab must come with it, so that a link to the bridge's callback made by
	// someone else (a login CSRF) leads nowhere. Empty for a request parked before it existed.
	Browser string `json:"browser,omitempty"`
	// Source is a digest of the client address the request came from (an IPv6 address's /64),
	// under which PendingCaps.PerSource counts it; the address itself is not kept.
	Source string `json:"source,omitempty"`
}

// UpstreamToken is the token the upstream GitLab gave the bridge for one person.
type UpstreamToken struct {
	AccessToken  string    `json:"access_token"`
	RefreshToken string    `json:"refresh_token,omitempty"`
	TokenType    string    `json:"token_type,omitempty"`
	Expiry       time.Time `json:"expiry,omitzero"`
}

// Store is the bridge's state. Every method is safe for concurrent use; what each take promises
// under concurrency and retries is said at the method, and the package comment says why.
type Store interface {
	CreateApp(ctx context.Context, app *Application) error // ErrExists if the ID is taken
	GetApp(ctx context.Context, id string) (*Application, error)
	ListApps(ctx context.Context) ([]*Application, error)  // sorted by Name, then ID
	UpdateApp(ctx context.Context, app *Application) error // ErrNotFound if absent
	DeleteApp(ctx context.Context, id string) error        // ErrNotFound if absent

	// PutAuthorization parks a request under key for ttl, within caps: beyond caps.PerSource or
	// caps.Total it parks nothing and returns a *PendingCapError; beyond caps.PerBrowser the
	// browser's oldest authorizations that are not taken yet are dropped, each leaving a
	// MarkEvicted, and their number is returned. A put sent twice (a retry) counts once.
	PutAuthorization(ctx context.Context, key string, a *Authorization, ttl time.Duration, caps PendingCaps) (evicted int, err error)
	// TakeAuthorization takes the request parked under key, for attempt: of any number of
	// concurrent takes by different attempts exactly one gets it; the same attempt taking it
	// again (its take sent twice) gets it again. A request taken by another attempt is a
	// *TakenError, which says by whom and when; an unknown or expired one is ErrNotFound; one
	// dropped for its browser's newer ones is ErrEvicted. The record taken stays, as taken, until
	// its TTL ends.
	TakeAuthorization(ctx context.Context, key, attempt string) (*Authorization, error)
	// PeekAuthorization reads the request parked under key without taking it: takenAt is zero
	// while it waits, and when it was taken once taken (the record is then the one that was
	// taken). An unknown or expired one is ErrNotFound; one dropped for its browser's newer
	// ones, ErrEvicted. It lets a page that was reloaded say where its sign-in stands.
	PeekAuthorization(ctx context.Context, key string) (a *Authorization, takenAt time.Time, err error)

	Limiter

	SignIns

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
	// releases the lock only if it still holds it. A take sent twice by the backend's client is
	// still one take.
	Lock(ctx context.Context, key string, ttl time.Duration) (unlock func(), err error)

	// The bridge's OpenID Connect signing keys, sealed by the bridge: one value shared by every
	// instance. SwapKeySet replaces old with new only if the stored value is still old (nil: none
	// stored), and reports whether it did, so that two instances never overwrite each other's keys.
	GetKeySet(ctx context.Context) ([]byte, error) // ErrNotFound when none
	SwapKeySet(ctx context.Context, old, new []byte) (bool, error)

	// The store's marker: a small value the bridge writes on its first start on the store and
	// never deletes (see oauth.CheckStore), so that a store that comes back empty (Redis
	// flushed, restarted without persistence, or replaced) is told from one that never held
	// anything. It is kept as the key set is, and swapped the same way.
	GetMarker(ctx context.Context) ([]byte, error) // ErrNotFound when none
	SwapMarker(ctx context.Context, old, new []byte) (bool, error)

	TraceStore
	Identities

	// Ping reports whether the backend answers and takes writes: ErrFull when it refuses them.
	Ping(ctx context.Context) error
	Close() error
}

// TakenError is what a take finds when another attempt took the value first.
type TakenError struct {
	// At is when the value was taken.
	At time.Time
	// TraceID is the trace of the sign-in the value belongs to, "" when the record said none.
	TraceID string
}

func (e *TakenError) Error() string { return "already taken at " + e.At.UTC().Format(time.RFC3339) }

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

// NewAttempt returns a fresh attempt id for one take (see the package comment).
func NewAttempt() string { return NewID(12) }

// SessionIDBytes is the size of a session's random id: NewID(SessionIDBytes).
const SessionIDBytes = 16

// Ref is how the store finds a code or token: its TokenKey and the sign-in it belongs to.
type Ref struct {
	Key string
	// SessionID is the sign-in, or "" for a value issued before the bridge put it in its values
	// (a code or refresh token of format version 1): the backend then looks it up by Key alone.
	SessionID string
}

// RefOf is the Ref of a code or token value as the bridge issues them: random bits, a dot, and
// the id of its sign-in (see SessionIDBytes). The id is no secret (nothing opens with it alone);
// it lets the store find the sign-in the value belongs to in the same exchange as the value.
func RefOf(value string) Ref {
	r := Ref{Key: TokenKey(value)}
	if i := strings.LastIndexByte(value, '.'); i >= 0 && IsID(value[i+1:], SessionIDBytes) {
		r.SessionID = value[i+1:]
	}
	return r
}

// ValueFor makes a code or token value of sign-in sessionID from random, as RefOf reads it.
func ValueFor(random, sessionID string) string {
	return random + "." + sessionID
}
