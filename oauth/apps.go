package oauth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/ssobridge/ssobridge/oauth/store"
)

// AppSpec is what an administrator registers: GitLab's application form.
type AppSpec struct {
	Name         string
	RedirectURIs []string
	Scopes       []string
	Trusted      bool
	Confidential bool
	// RequirePKCE and AllowPlainPKCE: see store.Application.
	RequirePKCE    bool
	AllowPlainPKCE bool
	// AllowedUsers, AllowedGroups and DenyExternal say who may sign in: see store.Application.
	AllowedUsers  []string
	AllowedGroups []string
	DenyExternal  bool
	// Upstream and UpstreamHint: see store.Application.
	Upstream     string
	UpstreamHint string
	// NoRefreshTokens: see store.Application.
	NoRefreshTokens bool
}

// Validate checks a spec, with messages that name the field at fault.
func (spec AppSpec) Validate() error {
	if strings.TrimSpace(spec.Name) == "" {
		return fmt.Errorf("name: an application needs a name (people see it at sign-in)")
	}
	if len(spec.Name) > 255 {
		return fmt.Errorf("name: longer than 255 characters")
	}
	if len(spec.RedirectURIs) == 0 {
		return fmt.Errorf("redirect URIs: an application needs at least one (for Mattermost: SITE_URL/signup/gitlab/complete and SITE_URL/login/gitlab/complete)")
	}
	for _, u := range spec.RedirectURIs {
		if err := ValidateRedirectURI(u); err != nil {
			return fmt.Errorf("redirect URIs: %w", err)
		}
	}
	if err := ValidateScopes(spec.Scopes); err != nil {
		return fmt.Errorf("scopes: %w", err)
	}
	for _, p := range []string{spec.Upstream, spec.UpstreamHint} {
		if p != "" && !store.ValidProviderName(p) {
			return fmt.Errorf("provider %q: a provider's name is lower-case letters, digits and dashes (a name of the providers file, SSOBRIDGE_OIDC_NAME, or gitlab)", p)
		}
	}
	for _, u := range spec.AllowedUsers {
		if err := validateRule(u, validateUsername); err != nil {
			return fmt.Errorf("allowed users: %w", err)
		}
	}
	for _, g := range spec.AllowedGroups {
		if err := validateRule(g, validateGroupPath); err != nil {
			return fmt.Errorf("allowed groups: %w", err)
		}
	}
	return nil
}

// validateRule checks an entry of a list, "NAME" or "PROVIDER:NAME" (see SplitRule), whose name
// validate checks.
func validateRule(entry string, validate func(string) error) error {
	if strings.Contains(entry, "://") {
		return validate(entry) // a URL, not a provider: validate says what to give instead
	}
	provider, name := SplitRule(entry)
	if strings.Contains(entry, ":") && !store.ValidProviderName(provider) {
		return fmt.Errorf("%q: the part before the colon names a provider (lower-case letters, digits and dashes: a name of the providers file, SSOBRIDGE_OIDC_NAME, or gitlab), as in corp:ada", entry)
	}
	return validate(name)
}

// RuleProblems says what is wrong with the entries of the lists (AllowedUsers, AllowedGroups) on
// a bridge whose providers are named providers: an entry naming a provider the bridge does not
// have, which admits nobody, and, with several providers, an entry that names none, which admits
// people of UnqualifiedProvider alone (or nobody, without it). `ssobridge apps` refuses such
// entries when it knows the providers; `ssobridge serve` warns about those already stored.
func RuleProblems(users, groups, providers []string) []string {
	var problems []string
	for _, entry := range slices.Concat(users, groups) {
		provider, name := SplitRule(entry)
		switch {
		case provider != "" && !slices.Contains(providers, provider):
			problems = append(problems, fmt.Sprintf("%s names the provider %q, which the bridge does not have (it has %s): it admits nobody",
				entry, provider, strings.Join(providers, ", ")))
		case provider == "" && len(providers) > 1 && slices.Contains(providers, UnqualifiedProvider):
			problems = append(problems, fmt.Sprintf("%s names no provider: with several providers it admits the people of %s alone; write %s:%s to say so, or NAME:%s for the provider NAME (one of %s)",
				entry, UnqualifiedProvider, UnqualifiedProvider, name, name, strings.Join(providers, ", ")))
		case provider == "" && len(providers) > 1:
			problems = append(problems, fmt.Sprintf("%s names no provider: with several providers it admits only people of a provider called %s, which the bridge does not have, so it admits nobody; write NAME:%s for the provider NAME (one of %s)",
				entry, UnqualifiedProvider, name, strings.Join(providers, ", ")))
		}
	}
	return problems
}

// validateUsername catches what cannot be a GitLab username, so that a typo in a rule is refused
// when it is written rather than found when nobody can sign in.
func validateUsername(u string) error {
	if err := validateName(u); err != nil {
		return err
	}
	if strings.HasPrefix(u, "@") {
		return fmt.Errorf("%q: write the username without @", u)
	}
	if strings.Contains(u, "/") {
		return fmt.Errorf("%q is a path, not a username; a group goes in the allowed groups", u)
	}
	return nil
}

// validateGroupPath checks a group's full path as GitLab writes it ("eng/platform").
func validateGroupPath(g string) error {
	if err := validateName(g); err != nil {
		return err
	}
	if strings.Contains(g, "://") {
		return fmt.Errorf("%q is a URL; give the group's full path, as in eng/platform", g)
	}
	if slices.Contains(strings.Split(g, "/"), "") {
		return fmt.Errorf("%q has an empty segment (a leading, trailing or doubled /); write it as in eng/platform", g)
	}
	return nil
}

func validateName(v string) error {
	switch {
	case v == "":
		return fmt.Errorf("an empty name")
	case len(v) > 255:
		return fmt.Errorf("%.40q...: longer than 255 characters", v)
	case strings.IndexFunc(v, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		return fmt.Errorf("%q contains a space or a control character; GitLab names have none", v)
	}
	return nil
}

// NewApplication returns a new application for spec and its secret ("" for a public one). The
// secret is returned this once; the application holds only its hash.
func NewApplication(spec AppSpec) (*store.Application, string, error) {
	spec.RedirectURIs = dedupe(spec.RedirectURIs)
	spec.Scopes = dedupe(spec.Scopes)
	spec.AllowedUsers = dedupe(spec.AllowedUsers)
	spec.AllowedGroups = dedupe(spec.AllowedGroups)
	if err := spec.Validate(); err != nil {
		return nil, "", err
	}
	now := time.Now().UTC()
	app := &store.Application{
		ID:              store.NewClientID(),
		Name:            strings.TrimSpace(spec.Name),
		RedirectURIs:    spec.RedirectURIs,
		Scopes:          spec.Scopes,
		Trusted:         spec.Trusted,
		Confidential:    spec.Confidential,
		RequirePKCE:     spec.RequirePKCE,
		AllowPlainPKCE:  spec.AllowPlainPKCE,
		AllowedUsers:    spec.AllowedUsers,
		AllowedGroups:   spec.AllowedGroups,
		DenyExternal:    spec.DenyExternal,
		Upstream:        spec.Upstream,
		UpstreamHint:    spec.UpstreamHint,
		NoRefreshTokens: spec.NoRefreshTokens,
		CreatedAt:       now,
		UpdatedAt:       now,
	}
	secret := ""
	if app.Confidential {
		secret = RotateSecret(app)
	}
	return app, secret, nil
}

// RotateSecret gives app a new secret and returns it; the old one stops working as soon as the
// application is saved.
func RotateSecret(app *store.Application) string {
	secret := store.NewSecret()
	app.SecretHash = store.HashSecret(secret)
	app.UpdatedAt = time.Now().UTC()
	return secret
}

func dedupe(in []string) []string {
	var out []string
	for _, s := range in {
		if s = strings.TrimSpace(s); s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// RevokeGrants revokes what an application holds (GitLab's "revoke" of an authorized
// application): every sign-in, and so every code and token, of one person (userID, a GitLab user
// id) or of everybody (userID 0), and their consents, so that the next sign-in asks again. It
// returns how many sign-ins it revoked.
func RevokeGrants(ctx context.Context, st store.Store, clientID string, userID int64) (int, error) {
	sessions, err := st.ListSessions(ctx, clientID)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, sess := range sessions {
		if userID != 0 && sess.GitLabUserID != userID {
			continue
		}
		if err := st.RevokeSession(ctx, sess.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
			return n, err
		}
		n++
	}
	return n, st.DeleteConsents(ctx, clientID, userID)
}
