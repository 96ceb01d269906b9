// Package upstream is the seam between the bridge and the identity providers it federates: what
// the bridge needs of a provider, said once, by capability, as small interfaces (after Dex's
// connector package), and the errors every provider's calls return.
//
// The providers themselves live beside the shapes they speak: GitLab's in package gitlabapi
// (gitlabapi.Client, which also holds GitLab's REST shapes that the bridge serves back), any
// OpenID Connect provider's in package oauth/upstream/openid. Package oauth holds only this seam,
// never a provider: a new provider is a new package that implements these interfaces, and the
// bridge's handlers, traces, policy, readiness and the doctor work with it unchanged.
//
// A provider never stores anything and never logs; no error it returns carries a token, a code
// or a secret.
package upstream

import (
	"context"
	"errors"
	"time"

	"golang.org/x/oauth2"
)

// Provider is an identity provider the bridge federates.
type Provider interface {
	// Describe says what the provider is; it never changes.
	Describe() Description
}

// Description is what the bridge shows and records of a provider.
type Description struct {
	// Name is the provider's key: in the providers file, in the ids the bridge allocates (see
	// store.Identities), in traces. Lower case letters, digits and dashes.
	Name string
	// DisplayName is what people see: the chooser page, the sequence diagram's participant.
	DisplayName string
	// Type is "gitlab" or "oidc".
	Type string
	// URL is GitLab's base URL or the OpenID issuer.
	URL string
	// UserCall is the sequence diagram's label for Identify, e.g. "GET /api/v4/user".
	UserCall string
	// GitLabIDs is true when the provider gives the GitLab user ids that Mattermost keeps (the
	// GitLab provider): the bridge passes them on. Otherwise the bridge allocates ids.
	GitLabIDs bool
	// Settings name where each part of the provider is configured, for fixes.
	Settings Settings
}

// Auth is what a sign-in at the provider carries from its start to its callback, kept by the
// bridge in the parked authorization.
type Auth struct {
	// Verifier is the PKCE code verifier; the authorize request sends its S256 challenge.
	Verifier string
	// Nonce is the OpenID Connect nonce, which the ID token must repeat.
	Nonce string
	// Prompt is the OpenID Connect prompt (Core §3.1.2.1) AuthCodeURL sends, space-separated:
	// only values the provider said it honours (see Prompter); "" sends none.
	Prompt string
	// MaxAge, when not nil, is the max_age in seconds AuthCodeURL sends: the provider must sign
	// the person in again if they signed in longer ago. Only for a provider that honours it.
	MaxAge *int64
}

// Prompts are what a Prompter honours when AuthCodeURL forwards them.
type Prompts struct {
	// None: asked for prompt=none, the provider shows no page, and answers login_required,
	// consent_required or interaction_required (OpenID Connect Core §3.1.2.6) instead.
	None bool
	// Login: asked for prompt=login, it signs the person in again.
	Login bool
	// SelectAccount: asked for prompt=select_account, it lets the person choose an account.
	SelectAccount bool
	// MaxAge: asked for max_age, it signs the person in again when they signed in longer ago,
	// and its ID token says when they signed in (Identity.AuthTime).
	MaxAge bool
}

// Prompter is a provider that honours some of OpenID Connect's prompt values and max_age at its
// authorization endpoint. A provider that is not one is never sent them: the bridge refuses a
// request it cannot pass on rather than show a page the client asked it not to, or issue a token
// whose auth_time it cannot vouch for.
type Prompter interface {
	CallbackProvider
	// Prompts says what the provider honours; it fails only when the provider must be asked
	// first (an OpenID provider's discovery document).
	Prompts(ctx context.Context) (Prompts, error)
}

// CallbackProvider signs a person in by sending the browser to the provider and trading the code
// it returns.
type CallbackProvider interface {
	Provider
	// AuthCodeURL is where the browser goes to sign in, with the bridge's state. It fails only
	// when the provider must be asked first (an OpenID provider's discovery document).
	AuthCodeURL(ctx context.Context, state string, a Auth) (string, error)
	// Exchange trades the provider's code for its token.
	Exchange(ctx context.Context, code string, a Auth) (*oauth2.Token, error)
	// Identify says who signed in, from what Exchange returned (its ID token, a user call).
	// A person the provider describes incompletely is an *IdentityError.
	Identify(ctx context.Context, tok *oauth2.Token, a Auth) (*Identity, error)
}

// UserReader reads the person again, live, with the token the bridge holds for them, for
// /api/v4/user after the snapshot taken at sign-in has aged. ErrCannotRead means the provider
// offers no way to (no userinfo endpoint): the bridge then answers with the snapshot.
type UserReader interface {
	Provider
	ReadUser(ctx context.Context, tok *oauth2.Token) (*Identity, error)
}

// Refresher renews at the provider a token that has expired. A provider that gave no refresh
// token cannot be asked: the caller checks tok.RefreshToken first.
type Refresher interface {
	Provider
	Refresh(ctx context.Context, tok *oauth2.Token) (*oauth2.Token, error)
}

// Pinger says whether the provider answers, for readiness.
type Pinger interface {
	Provider
	Ping(ctx context.Context) error
}

// Prober checks, from the bridge's side, that the provider is configured for the bridge, for
// `ssobridge doctor`: the provider answers, and accepts the bridge's client and redirect URI.
type Prober interface {
	Provider
	Probe(ctx context.Context) []Finding
}

// ProbeOnly hides every capability of p but Probe, for a provider made without the bridge's
// client secret (`ssobridge doctor` has none): it cannot be mistaken, by a type assertion, for
// one that signs people in.
func ProbeOnly(p Prober) Prober { return probeOnly{p} }

type probeOnly struct{ Prober }

// Finding is one result of a Probe.
type Finding struct {
	// Check names what was checked: "discovery", "signing keys", "redirect URI".
	Check string
	// OK is true when the check passed; Unsure, when the answer could not tell (a warning, with
	// what to try by hand). Detail says what was found, Fix what to change.
	OK     bool
	Unsure bool
	Detail string
	Fix    string
}

// ErrCannotRead is UserReader's answer when the provider offers no way to read the person again.
var ErrCannotRead = errors.New("the provider offers no way to read the person again")

// Identity is a person as a provider describes them.
type Identity struct {
	// Subject is the provider's stable, never reassigned id of the person: GitLab's user id in
	// decimal, an OpenID provider's sub.
	Subject string
	// GitLabID is the person's GitLab user id, from a provider with Description.GitLabIDs; 0
	// otherwise, when the bridge allocates one (see store.Identities).
	GitLabID int64
	Username string
	Name     string
	Email    string
	// EmailVerified says the provider vouches for Email.
	EmailVerified bool
	AvatarURL     string
	WebURL        string
	// Groups are the person's groups (GitLab: full paths); nil when the provider did not say,
	// which is not the same as belonging to none. GroupsProblem says why they could not be
	// read, when the provider was asked and failed: the sign-in goes on without them.
	Groups        []string
	GroupsProblem string
	// External is GitLab's "external" flag (contractors, customers).
	External bool
	// State is GitLab's account state; "" or "active" may sign in.
	State string
	// AuthTime is when the person last signed in at the provider (an ID token's auth_time);
	// zero when the provider did not say.
	AuthTime time.Time
	// Body is the provider's own /api/v4/user body, for a GitLab provider: the bridge hands it
	// to clients unchanged. Nil for others, whose body the bridge writes.
	Body []byte
}

// IdentityError is an identity the bridge must refuse: the provider answered, but without
// something the bridge or Mattermost needs (an email, a verified email, a username, an id), or
// with an ID token that does not hold.
type IdentityError struct {
	// Reason is the refusal's kind.
	Reason Reason
	// Detail says what was wrong, for the person and the trace; Fix what to change, for
	// administrators.
	Detail string
	Fix    string
}

func (e *IdentityError) Error() string { return e.Detail }

// Reason is the kind of an IdentityError.
type Reason string

// Reasons an identity is refused.
const (
	ReasonIncomplete      Reason = "incomplete"       // no id, or none Mattermost accepts
	ReasonEmailMissing    Reason = "email_missing"    // no email
	ReasonEmailUnverified Reason = "email_unverified" // email_verified is false
	ReasonClaimMissing    Reason = "claim_missing"    // a claim the configuration names is absent
	ReasonIDToken         Reason = "id_token"         // the ID token is missing, forged, expired, for another client
	ReasonNonce           Reason = "nonce"            // the ID token's nonce is not the sign-in's
)
