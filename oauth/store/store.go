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
	"slices"
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
	// UpstreamVerifier is the PKCE code verifier of the bridge's own request to GitLab.
	UpstreamVerifier string    `json:"upstream_verifier"`
	CreatedAt        time.Time `json:"created_at"`
}

// UpstreamToken is the token the upstream GitLab gave the bridge for one person.
type UpstreamToken struct {
	AccessToken  string    `json:"access_token"`
	RefreshToken string    `json:"refresh_token,omitempty"`
	TokenType    string    `json:"token_type,omitempty"`
	Expiry       time.Time `json:"expiry,omitzero"`
}

// Session is one completed upstream sign-in. Tokens the bridge issues point to it by ID (their
// UserID in go-oauth2's terms), so a client never holds anything that works at GitLab.
type Session struct {
	ID string `json:"id"`
	// GitLabUserID is the person's id at the upstream GitLab, handed to clients unchanged.
	GitLabUserID int64  `json:"gitlab_user_id"`
	Username     string `json:"username"`
	ClientID     string `json:"client_id"`
	// Token is the upstream token; it changes when the bridge refreshes it.
	Token UpstreamToken `json:"token"`
	// User is the upstream /api/v4/user body as last fetched, and UserFetchedAt when.
	User          json.RawMessage `json:"user"`
	UserFetchedAt time.Time       `json:"user_fetched_at"`
	CreatedAt     time.Time       `json:"created_at"`
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

	PutSession(ctx context.Context, s *Session, ttl time.Duration) error
	GetSession(ctx context.Context, id string) (*Session, error)
	// UpdateSession replaces a session and keeps its expiry; ErrNotFound if it has expired.
	UpdateSession(ctx context.Context, s *Session) error

	oauth2.TokenStore

	// Ping reports whether the backend answers.
	Ping(ctx context.Context) error
	Close() error
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
