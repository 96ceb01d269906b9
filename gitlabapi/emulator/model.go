package emulator

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ssobridge/ssobridge/gitlabapi"
)

var knownStates = []string{
	gitlabapi.StateActive, gitlabapi.StateBlocked, gitlabapi.StateLDAPBlocked, gitlabapi.StateBlockedPendingApproval, gitlabapi.StateBanned, gitlabapi.StateDeactivated,
}

// defaultCreatedAt stands in for a zero User.CreatedAt, so that answers are the same on every run.
var defaultCreatedAt = time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)

// User is a GitLab account.
type User struct {
	// ID is GitLab's numeric user id; AddUser assigns the next free one when it is zero.
	ID       int64
	Username string
	Name     string
	// Email is the primary email. It is left empty when empty, so that a client's handling of
	// a user without one can be tested, although GitLab always has one.
	Email string
	// State is one of gitlabapi's State constants; empty means active.
	State       string
	PublicEmail string
	// AvatarURL is empty for GitLab's default, a Gravatar URL derived from Email.
	AvatarURL  string
	WebsiteURL string
	Bio        string
	Location   string
	Admin      bool
	Bot        bool
	External   bool
	// TwoFactorEnabled is reported as is; the emulator never asks for a second factor.
	TwoFactorEnabled bool
	// Groups are full paths ("group/subgroup"), given as both the groups and groups_direct claims.
	Groups []string
	// CreatedAt is zero for a fixed date in 2020.
	CreatedAt time.Time
	// Password lets the user sign in at the sign-in form (/users/sign_in) with their username
	// or email; empty, the form refuses them.
	Password string
}

// Application is an OAuth application registered with the emulated GitLab.
type Application struct {
	// UID is the client_id; AddApplication generates one in GitLab's form when it is empty.
	UID string
	// Secret is the client secret. AddApplication generates one (with GitLab's "gloas-" prefix)
	// for a confidential application that has none.
	Secret string
	Name   string
	// RedirectURIs are the registered callback URIs; an entry may also hold several separated
	// by newlines, as GitLab's form takes them.
	RedirectURIs []string
	// Scopes the application may be granted, such as "read_user", "openid" or "api". Empty
	// means any scope GitLab knows, as Doorkeeper treats an application without scopes.
	Scopes []string
	// Confidential applications must authenticate with their secret at the token endpoint, which
	// is GitLab's default. Because a Go bool cannot default to true, an application is public
	// (client_id only, protected by PKCE) only when Confidential is false and Secret is empty:
	// one given a Secret is confidential.
	Confidential bool
	// Trusted applications skip the consent step.
	Trusted bool
}

type userRecord struct {
	User
	currentSignInAt time.Time
	lastSignInAt    time.Time
	// signedIn is false until the next authorize request signs the user in afresh.
	signedIn bool
}

type authCode struct {
	clientID    string
	redirectURI string
	scopes      []string
	userID      int64
	challenge   string
	method      string
	nonce       string
	createdAt   time.Time
	authTime    time.Time
	used        bool
}

type token struct {
	accessToken  string
	refreshToken string
	clientID     string
	userID       int64
	scopes       []string
	createdAt    time.Time
	ttl          time.Duration // zero: never expires
	authTime     time.Time
	revoked      bool
}

func (t *token) expired(now time.Time) bool {
	return t.ttl > 0 && now.After(t.createdAt.Add(t.ttl))
}

// AddUser adds a user, or replaces the one with the same username, and returns it as stored
// (with its ID assigned). The first user added is the one authorize signs in until SignIn says
// otherwise. It panics on an empty username, an unknown state or an ID used by another user.
func (s *Server) AddUser(u User) User {
	if u.Username == "" {
		panic("emulator: AddUser needs a Username")
	}
	if u.State == "" {
		u.State = gitlabapi.StateActive
	}
	if !slices.Contains(knownStates, u.State) {
		panic(fmt.Sprintf("emulator: unknown user state %q", u.State))
	}
	u.Groups = slices.Clone(u.Groups)
	s.mu.Lock()
	defer s.mu.Unlock()
	if u.ID == 0 {
		for _, r := range s.users {
			u.ID = max(u.ID, r.ID)
		}
		u.ID++
	}
	for _, r := range s.users {
		if r.ID == u.ID && r.Username != u.Username {
			panic(fmt.Sprintf("emulator: user id %d already belongs to %q", u.ID, r.Username))
		}
	}
	if r := s.userByName(u.Username); r != nil {
		r.User = u
	} else {
		s.users = append(s.users, &userRecord{User: u})
	}
	if !s.signInChosen && s.signedIn == "" {
		s.signedIn = u.Username
	}
	return u
}

// AddApplication registers an application, or replaces the one with the same UID, and returns
// it as stored, with any generated UID or secret. It panics on an application GitLab would
// refuse to save: no redirect URI, or one that is not absolute, has a fragment or a script scheme.
func (s *Server) AddApplication(a Application) Application {
	var uris []string
	for _, entry := range a.RedirectURIs {
		for _, uri := range strings.Fields(entry) {
			if err := validRegisteredURI(uri); err != nil {
				panic(fmt.Sprintf("emulator: redirect URI %q: %v", uri, err))
			}
			uris = append(uris, uri)
		}
	}
	if len(uris) == 0 {
		panic("emulator: AddApplication needs a redirect URI")
	}
	a.RedirectURIs = uris
	var scopes []string
	for _, entry := range a.Scopes {
		scopes = append(scopes, strings.Fields(entry)...)
	}
	a.Scopes = dedupe(scopes)
	if a.UID == "" {
		a.UID = randomHex(32)
	}
	if a.Name == "" {
		a.Name = "Application"
	}
	a.Confidential = a.Confidential || a.Secret != ""
	if a.Confidential && a.Secret == "" {
		a.Secret = "gloas-" + randomHex(32)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	stored := a
	stored.RedirectURIs = slices.Clone(a.RedirectURIs)
	stored.Scopes = slices.Clone(a.Scopes)
	s.apps[a.UID] = &stored
	return a
}

func validRegisteredURI(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return err
	case u.Scheme == "":
		return fmt.Errorf("not absolute")
	case forbiddenSchemes[strings.ToLower(u.Scheme)]:
		return fmt.Errorf("scheme %q is forbidden", u.Scheme)
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return fmt.Errorf("has a fragment")
	case (u.Scheme == "http" || u.Scheme == "https") && u.Host == "":
		return fmt.Errorf("has no host")
	}
	return nil
}

// SignIn makes username the user that authorize signs in, for every browser that has not
// signed in at the sign-in form, as if they had just signed in at GitLab; "" signs everybody
// out, browsers of the form included, so that authorize sends the browser to the sign-in page.
// It panics on an unknown username.
func (s *Server) SignIn(username string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.signInChosen = true
	s.signedIn = ""
	if username == "" {
		clear(s.sessions)
		return
	}
	r := s.mustUser(username)
	r.signedIn = false
	s.signedIn = username
}

// SetUserState changes a user's state (one of the State constants; "" is active). It panics on
// an unknown username or state.
func (s *Server) SetUserState(username, state string) {
	if state == "" {
		state = gitlabapi.StateActive
	}
	if !slices.Contains(knownStates, state) {
		panic(fmt.Sprintf("emulator: unknown user state %q", state))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mustUser(username).State = state
}

// SetUserEmail changes a user's email, as a person does in their profile: what the user API,
// userinfo and later ID tokens say. It panics on an unknown username.
func (s *Server) SetUserEmail(username, email string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mustUser(username).Email = email
}

// RevokeTokens revokes every access token, refresh token and unused code the user holds, as
// GitLab does when the user revokes an application's access (here, every application's). It
// panics on an unknown username.
func (s *Server) RevokeTokens(username string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.mustUser(username).ID
	for _, t := range s.access {
		if t.userID == id {
			t.revoked = true
		}
	}
	for _, c := range s.codes {
		if c.userID == id {
			c.used = true
		}
	}
}

// DenyNext makes the next authorize request that reaches the consent step end as if the user
// pressed Deny. Trusted applications have no consent step, so it waits for an untrusted one.
func (s *Server) DenyNext() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.denyNext = true
}

// IssueToken gives username a token for the application clientUID with the given scopes (the
// application's own when none are given) without going through authorize, and returns the access
// and refresh tokens. It panics on an unknown user or application.
func (s *Server) IssueToken(username, clientUID string, scopes ...string) (accessToken, refreshToken string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.mustUser(username)
	app, ok := s.apps[clientUID]
	if !ok {
		panic(fmt.Sprintf("emulator: unknown application %q", clientUID))
	}
	if len(scopes) == 0 {
		scopes = app.Scopes
	}
	now := s.clock()
	t := s.newToken(clientUID, u.ID, dedupe(scopes), now, now)
	return t.accessToken, t.refreshToken
}

// newToken creates and stores an access/refresh token pair. s.mu must be held.
func (s *Server) newToken(clientID string, userID int64, scopes []string, now, authTime time.Time) *token {
	t := &token{
		accessToken:  randomHex(32),
		refreshToken: randomHex(32),
		clientID:     clientID,
		userID:       userID,
		scopes:       slices.Clone(scopes),
		createdAt:    now,
		ttl:          s.accessTokenTTL,
		authTime:     authTime,
	}
	s.access[t.accessToken] = t
	s.refresh[t.refreshToken] = t
	return t
}

// userByName returns the user or nil. s.mu must be held.
func (s *Server) userByName(username string) *userRecord {
	for _, r := range s.users {
		if r.Username == username {
			return r
		}
	}
	return nil
}

// userByID returns the user or nil. s.mu must be held.
func (s *Server) userByID(id int64) *userRecord {
	for _, r := range s.users {
		if r.ID == id {
			return r
		}
	}
	return nil
}

func (s *Server) mustUser(username string) *userRecord {
	r := s.userByName(username)
	if r == nil {
		panic(fmt.Sprintf("emulator: unknown user %q", username))
	}
	return r
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails: crypto/rand panics rather than return weak bytes
	return hex.EncodeToString(b)
}

// dedupe drops repeated scopes and keeps the first order, as Doorkeeper's Scopes does.
func dedupe(scopes []string) []string {
	out := make([]string, 0, len(scopes))
	for _, sc := range scopes {
		if !slices.Contains(out, sc) {
			out = append(out, sc)
		}
	}
	return out
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
