package oauth

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/ssobridge/ssobridge/gitlabapi"
	"github.com/ssobridge/ssobridge/oauth/signin"
	"github.com/ssobridge/ssobridge/oauth/store"
)

// PolicyUser is the person who signed in at a provider, as far as an application's sign-in rules
// need to know them.
type PolicyUser struct {
	Username string
	// Provider is the display name of the provider ("GitLab" when empty), and GroupsFix says how
	// the bridge learns the person's groups there, for a refusal when it does not know them.
	Provider  string
	GroupsFix string
	// ProviderName is the key of the provider the person signed in at ("" for the GitLab that
	// records made before providers had names belong to), and Several says whether the bridge has
	// several providers: together they say which entries of the lists apply (see ruleApplies).
	ProviderName string
	Several      bool
	// External is GitLab's "external" flag on the account (contractors, customers: people GitLab
	// itself keeps out of internal projects).
	External bool
	// Groups are the person's GitLab groups as full paths; nil means the bridge does not know
	// them, which is not the same as belonging to none.
	Groups []string
}

// UnqualifiedProvider is the provider whose people the entries without a provider ("ada", not
// "corp:ada") of an application's lists admit when the bridge has several: the GitLab that the
// bridge signed people in at before it had several providers, so that lists written then keep
// meaning what they meant, and a person of another provider, who may have chosen any username
// there, is admitted only by an entry that names that provider.
const UnqualifiedProvider = "gitlab"

// SplitRule splits an entry of an application's lists into the provider it names and the
// username or group path: "corp:ada" is ada at the provider corp; "ada" names no provider.
func SplitRule(entry string) (provider, name string) {
	if p, n, ok := strings.Cut(entry, ":"); ok {
		return p, n
	}
	return "", entry
}

// ruleApplies reports whether an entry naming provider ("" for none) applies to user: a
// qualified entry at that provider alone; an unqualified one at the bridge's only provider, or,
// with several, at UnqualifiedProvider alone.
func (user PolicyUser) ruleApplies(provider string) bool {
	at := cmp.Or(user.ProviderName, UnqualifiedProvider)
	if provider != "" {
		return provider == at
	}
	return !user.Several || at == UnqualifiedProvider
}

// checkPolicy says whether app admits user: "" if it does. Otherwise detail says which rule
// refused them, and fix tells administrators what the rules are and how to change them. Both
// are for the trace alone: the rules say who may sign in, which is not the business of whoever
// is refused (see notAdmitted).
func checkPolicy(app *store.Application, user PolicyUser) (detail, fix string) {
	if app.DenyExternal && user.External {
		return fmt.Sprintf("(%s is an external user at GitLab, and %s does not admit external users.)", user.Username, app.Name),
			fmt.Sprintf("Administrators: to admit external users, run `ssobridge apps update %s --deny-external=false`; or make %s an internal user at GitLab.", app.ID, user.Username)
	}
	if len(app.AllowedUsers) == 0 && len(app.AllowedGroups) == 0 {
		return "", ""
	}
	if slices.ContainsFunc(app.AllowedUsers, func(entry string) bool {
		provider, u := SplitRule(entry)
		return user.ruleApplies(provider) && strings.EqualFold(u, user.Username)
	}) {
		return "", ""
	}
	rules := fmt.Sprintf("%s admits %s.", app.Name, WhoMaySignIn(app))
	if user.Several {
		rules += fmt.Sprintf(" With several providers, an entry without a provider admits people of %s only; %s signed in at %s.",
			UnqualifiedProvider, user.Username, cmp.Or(user.ProviderName, UnqualifiedProvider))
	}
	if len(app.AllowedGroups) > 0 && user.Groups == nil {
		provider, fix := cmp.Or(user.Provider, "GitLab"), user.GroupsFix
		if fix == "" {
			fix = "The bridge learns a person's groups only when it asks GitLab for openid: add openid to SSOBRIDGE_GITLAB_SCOPES (e.g. \"read_user openid\") and to the scopes of the bridge's application at GitLab. If openid is there already, the bridge's log says why reading the groups at GitLab failed."
		}
		return fmt.Sprintf("(The bridge cannot tell whether %s may sign in to %s: it does not know %s's %s groups.)", user.Username, app.Name, user.Username, provider),
			"Administrators: " + rules + " " + fix
	}
	for _, entry := range app.AllowedGroups {
		provider, allowed := SplitRule(entry)
		if user.ruleApplies(provider) && slices.ContainsFunc(user.Groups, func(g string) bool { return inGroup(g, allowed) }) {
			return "", ""
		}
	}
	name := user.Username
	if user.Several {
		name = cmp.Or(user.ProviderName, UnqualifiedProvider) + ":" + user.Username
	}
	add := append(slices.Clone(app.AllowedUsers), name)
	return fmt.Sprintf("(%s is not among the people allowed to sign in to %s.)", user.Username, app.Name),
		fmt.Sprintf("Administrators: %s To admit %s, run `ssobridge apps update %s --allow-user %s` (the flag replaces the list), or add %s to one of the groups at %s.",
			rules, user.Username, app.ID, strings.Join(add, ","), user.Username, cmp.Or(user.Provider, "GitLab"))
}

// inGroup reports whether group is allowed or one of its subgroups. GitLab resolves paths
// without regard to case, so the rule does too; "eng" does not cover "engineering".
func inGroup(group, allowed string) bool {
	group, allowed = strings.ToLower(group), strings.ToLower(allowed)
	return group == allowed || strings.HasPrefix(group, allowed+"/")
}

// WhoMaySignIn describes an application's sign-in rules in a phrase: "everybody", or the users
// and groups it admits.
func WhoMaySignIn(app *store.Application) string {
	var parts []string
	if len(app.AllowedUsers) > 0 {
		parts = append(parts, "the GitLab users "+strings.Join(app.AllowedUsers, ", "))
	}
	if len(app.AllowedGroups) > 0 {
		parts = append(parts, "members of the GitLab groups "+strings.Join(app.AllowedGroups, ", ")+" and their subgroups")
	}
	who := "everybody"
	if len(parts) > 0 {
		who = strings.Join(parts, "; ")
	}
	if app.DenyExternal {
		who += ", external users excepted"
	}
	return who
}

// isExternal reads GitLab's "external" flag from a /api/v4/user body, as gitlabapi.DecodeUser
// reads it. A body without it reads as internal: GitLab always sends it, and an emulator or
// proxy that drops it has no external users.
func isExternal(body []byte) bool {
	u, err := gitlabapi.DecodeUser(body)
	return err == nil && u.External
}

// policyUser is the person of session, whose /api/v4/user body is body, for the rules.
func (s *Server) policyUser(app *store.Application, session *store.Session, body []byte) PolicyUser {
	u := PolicyUser{Username: session.Username, External: app.DenyExternal && isExternal(body), Groups: session.Groups,
		ProviderName: session.Provider, Several: len(s.upstreams) > 1}
	if p, ok := s.upstreamNamed(session.Provider); ok {
		d := p.Describe()
		u.Provider = d.DisplayName
		if !d.GitLabIDs {
			u.GroupsFix = fmt.Sprintf("%s sent no groups claim (%s): add a mapper that puts the person's groups in the ID token or userinfo, or set the claim's name in the provider's groups claim setting.", d.DisplayName, d.URL)
		}
	}
	return u
}

// admit applies app's sign-in rules to the person of session, whose /api/v4/user body is body.
// It runs before the session is saved: a refused sign-in leaves nothing behind.
func (s *Server) admit(app *store.Application, session *store.Session, body []byte) error {
	detail, fix := checkPolicy(app, s.policyUser(app, session, body))
	if detail == "" {
		return nil
	}
	return s.notAdmitted(app, session.Username, detail, fix)
}

// notAdmitted is the refusal of a person app's rules do not admit. The person learns that they
// are not admitted and whom to ask, never the rules: the lists name who may sign in, and the
// command that would admit them is the administrator's. Those, with the rule that refused them
// (detail), go to the trace, which the administrator reads by the id the page shows.
func (s *Server) notAdmitted(app *store.Application, username, detail, fix string) *Error {
	return &Error{Failure: signin.UserNotAllowed, Title: "Not allowed to sign in to " + app.Name,
		Description: fmt.Sprintf("%s is not allowed to sign in to %s.", username, app.Name),
		TraceDetail: detail, Fix: fix, PageFix: s.askForAccess(app)}
}

// askForAccess is what a page tells a person refused by app's rules to do: ask the contact the
// administrator configured (SSOBRIDGE_SUPPORT_CONTACT), else the application's administrator.
func (s *Server) askForAccess(app *store.Application) string {
	who := "the administrator of " + app.Name
	if s.cfg.SupportContact != "" {
		who = s.cfg.SupportContact
	}
	return fmt.Sprintf("If you need %s, ask %s for access, and give them the trace ID below.", app.Name, who)
}
